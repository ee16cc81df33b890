package cache

import (
	"fmt"
	"testing"
	"time"
)

func TestTombBounds(t *testing.T) {
	clk := newClock()
	c := New(Config{Name: "r", MaxEntries: 10, MaxBytes: 1 << 20, Replicated: true, Mode: Sync}, Options{Now: clk.Now, Origin: "a"})
	at := func(i int) int64 { return int64(i) + 1 }
	for i := range maxTombs {
		c.bury(fmt.Sprint(i), Version{Time: at(i), Origin: "a"}, at(i))
	}
	if len(c.tombs) != maxTombs {
		t.Fatalf("%d tombstones, want %d", len(c.tombs), maxTombs)
	}
	c.bury("new", Version{Time: at(maxTombs), Origin: "a"}, at(maxTombs))
	if len(c.tombs) != maxTombs {
		t.Errorf("%d tombstones after one more, want %d", len(c.tombs), maxTombs)
	}
	if _, ok := c.tombs["0"]; ok {
		t.Error("the oldest tombstone was kept when the bound was reached")
	}
	if _, ok := c.tombs["1"]; !ok {
		t.Error("a tombstone other than the oldest was dropped")
	}
	// An older removal does not replace a newer tombstone.
	c.bury("new", Version{Time: 1, Origin: "a"}, 0)
	if c.tombs["new"].v.Time != at(maxTombs) {
		t.Errorf("an older removal replaced the newer tombstone: %+v", c.tombs["new"])
	}
}

func TestTombLifeAndClear(t *testing.T) {
	clk := newClock()
	c := New(Config{Name: "r", MaxEntries: 10, MaxBytes: 1 << 20, Replicated: true, Mode: Sync}, Options{Now: clk.Now, Origin: "a"})
	now := clk.Now().UnixNano()
	c.bury("k", Version{Time: 5, Origin: "a"}, now)
	// Without a TTL, a tombstone lives 1 h: kept at exactly its life, gone after.
	c.pruneTombs(now + int64(time.Hour))
	if _, ok := c.tombs["k"]; !ok {
		t.Error("a tombstone dropped at exactly its life")
	}
	c.pruneTombs(now + int64(time.Hour) + 1)
	if _, ok := c.tombs["k"]; ok {
		t.Error("a tombstone kept past its life")
	}
	// With a TTL, the TTL.
	ttl := New(Config{Name: "t", MaxEntries: 10, MaxBytes: 1 << 20, TTL: time.Minute, Replicated: true, Mode: Sync}, Options{Now: clk.Now})
	ttl.bury("k", Version{Time: 5}, now)
	ttl.pruneTombs(now + int64(time.Minute) + 1)
	if len(ttl.tombs) != 0 {
		t.Error("a tombstone kept past the cache's TTL")
	}
	// buried: a key's put older than its removal, or than the last clear.
	c.bury("k", Version{Time: 10}, now)
	if !c.buried("k", Version{Time: 9}) || c.buried("k", Version{Time: 11}) || c.buried("other", Version{Time: 1}) {
		t.Error("buried by a key's tombstone")
	}
	c.buryAll(Version{Time: 20})
	if _, ok := c.tombs["k"]; ok {
		t.Error("a tombstone older than the clear was kept")
	}
	c.bury("later", Version{Time: 30}, now)
	c.buryAll(Version{Time: 25})
	if _, ok := c.tombs["later"]; !ok || c.cleared.Time != 25 {
		t.Errorf("a clear dropped a newer tombstone, or was not recorded: %+v %+v", c.tombs, c.cleared)
	}
	c.buryAll(Version{Time: 22})
	if c.cleared.Time != 25 {
		t.Errorf("an older clear replaced the newer: %+v", c.cleared)
	}
	if !c.buried("any", Version{Time: 24}) || c.buried("any", Version{Time: 26}) {
		t.Error("buried by the last clear")
	}
	// A local cache records none.
	local := New(Config{Name: "l", MaxEntries: 10, MaxBytes: 1 << 20}, Options{Now: clk.Now})
	local.bury("k", Version{Time: 1}, now)
	local.buryAll(Version{Time: 2})
	if len(local.tombs) != 0 || local.cleared != (Version{}) {
		t.Errorf("a local cache recorded %v %+v", local.tombs, local.cleared)
	}
}
