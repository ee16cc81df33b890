package anm

import (
	"sync"
	"time"
)

// Failed-login slow-down (docs/sessions.md#failed-logins). Counted per user
// name and per client address, in memory on each Admin Node Manager.
const (
	throttleFreeUser  = 3                // failures of one user name before delays start
	throttleFreeAddr  = 10               // failures from one address before delays start
	throttleBaseDelay = time.Second      // the first delay; doubled by each further failure
	throttleMaxDelay  = time.Minute      // the cap
	throttleForget    = 15 * time.Minute // a count is forgotten this long after its last failure
	throttleMaxKeys   = 10000            // counts kept at most (forgotten ones pruned first)
)

// throttle counts failed logins by key ("user:NAME", "addr:IP") and tells
// how long the next attempt must wait. It is safe for concurrent use.
type throttle struct {
	now func() time.Time

	mu sync.Mutex
	m  map[string]*failures
}

type failures struct {
	n    int
	last time.Time
	free int
}

func newThrottle() *throttle { return &throttle{now: time.Now, m: map[string]*failures{}} }

func throttleUserKey(user string) string { return "user:" + user }
func addrKey(addr string) string         { return "addr:" + addr }

// delay after n failures when the first free ones are free.
func throttleDelay(n, free int) time.Duration {
	if n < free {
		return 0
	}
	d := throttleBaseDelay
	for i := free; i < n && d < throttleMaxDelay; i++ {
		d *= 2
	}
	return min(d, throttleMaxDelay)
}

// wait is how long an attempt for user from addr must still wait; 0 lets
// it through.
func (t *throttle) wait(user, addr string) time.Duration {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	var w time.Duration
	for _, k := range []string{throttleUserKey(user), addrKey(addr)} {
		f := t.m[k]
		if f == nil || now.Sub(f.last) >= throttleForget {
			continue
		}
		w = max(w, f.last.Add(throttleDelay(f.n, f.free)).Sub(now))
	}
	return w
}

// fail records a failed attempt for user from addr.
func (t *throttle) fail(user, addr string) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, kf := range []struct {
		k    string
		free int
	}{{throttleUserKey(user), throttleFreeUser}, {addrKey(addr), throttleFreeAddr}} {
		f := t.m[kf.k]
		if f != nil && now.Sub(f.last) >= throttleForget {
			f.n = 0
		}
		if f == nil {
			if len(t.m) >= throttleMaxKeys {
				t.prune(now)
				if len(t.m) >= throttleMaxKeys {
					continue
				}
			}
			f = &failures{free: kf.free}
			t.m[kf.k] = f
		}
		f.n++
		f.last = now
	}
}

// reset forgets the failures of user and addr after a good login.
func (t *throttle) reset(user, addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, throttleUserKey(user))
	delete(t.m, addrKey(addr))
}

func (t *throttle) prune(now time.Time) {
	for k, f := range t.m {
		if now.Sub(f.last) >= throttleForget {
			delete(t.m, k)
		}
	}
}
