package h1

import (
	"errors"
	"testing"
	"time"
)

// TestIdleDeadlineLazy: an idle wait's read deadline is set again only when
// the one in force is before the wanted one, or more than the slack (an
// eighth of the wait, at most a second) after it; never earlier than asked.
func TestIdleDeadlineLazy(t *testing.T) {
	fc := newFakeConn()
	c := &conn{c: fc}
	now := time.Unix(1000, 0)
	wait := 80 * time.Millisecond // slack 10 ms
	sets := func() int { fc.mu.Lock(); defer fc.mu.Unlock(); return len(fc.rdl) }
	last := func() time.Time { fc.mu.Lock(); defer fc.mu.Unlock(); return fc.rdl[len(fc.rdl)-1].d }

	if err := c.idleDeadline(now, now.Add(wait)); err != nil {
		t.Fatal(err)
	}
	if sets() != 1 || !last().Equal(now.Add(wait+10*time.Millisecond)) {
		t.Fatalf("first wait: %d deadlines, last %v; want one at want + 10ms", sets(), last().Sub(now))
	}
	// 9 ms later the deadline in force is still within [want, want+slack].
	later := now.Add(9 * time.Millisecond)
	c.idleDeadline(later, later.Add(wait))
	if sets() != 1 {
		t.Fatalf("a wait within the slack set the deadline again (%d)", sets())
	}
	// 10 ms later: exactly want + 0, kept.
	later = now.Add(10 * time.Millisecond)
	c.idleDeadline(later, later.Add(wait))
	if sets() != 1 {
		t.Fatalf("a wait at the end of the slack set the deadline again (%d)", sets())
	}
	// 11 ms later the deadline in force would be before want: set again.
	later = now.Add(11 * time.Millisecond)
	c.idleDeadline(later, later.Add(wait))
	if sets() != 2 || !last().Equal(later.Add(wait+10*time.Millisecond)) {
		t.Fatalf("a wait past the slack: %d deadlines, last %v after it", sets(), last().Sub(later))
	}
	// A much shorter wait: the deadline in force is too late, set again.
	short := 8 * time.Millisecond // slack 1 ms
	c.idleDeadline(later, later.Add(short))
	if sets() != 3 || !last().Equal(later.Add(short+time.Millisecond)) {
		t.Fatalf("a shorter wait: %d deadlines, last %v after it", sets(), last().Sub(later))
	}
	// Another read deadline in between is forgotten by the next wait.
	c.setRead(later.Add(time.Hour))
	c.idleDeadline(later, later.Add(short))
	if sets() != 5 || !last().Equal(later.Add(short+time.Millisecond)) {
		t.Fatalf("after another deadline: %d deadlines, last %v after it", sets(), last().Sub(later))
	}
	// A long wait's slack is at most a second.
	c.setRead(time.Time{})
	c.idleDeadline(later, later.Add(time.Minute))
	if !last().Equal(later.Add(time.Minute + time.Second)) {
		t.Fatalf("a minute's wait: deadline %v after it, want 1m1s", last().Sub(later))
	}
	// A deadline that could not be set is not trusted by the next wait.
	fc.mu.Lock()
	fc.readDeadlineErr = errors.New("closed")
	fc.mu.Unlock()
	c.rdl = time.Time{}
	if err := c.idleDeadline(later, later.Add(wait)); err == nil {
		t.Fatal("a failed SetReadDeadline was not returned")
	}
	if !c.rdl.IsZero() {
		t.Fatalf("a failed deadline is remembered: %v", c.rdl)
	}
}
