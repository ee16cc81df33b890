package anm

import (
	"slices"
	"sync"
	"time"
)

// Failed-login slow-down (docs/sessions.md#failed-logins). Counted per
// client address and per (client address, user name), in memory on each
// Admin Node Manager: wrong guesses from one address slow down that address
// and never lock a user out from another address.
const (
	throttleFreePair  = 3                // failures of one user from one address before delays start
	throttleFreeAddr  = 10               // failures from one address (any users) before delays start
	throttleBaseDelay = time.Second      // the first delay; doubled by each further failure
	throttleMaxDelay  = time.Minute      // the cap
	throttleForget    = 15 * time.Minute // a count is forgotten this long after its last failure
	throttleMaxKeys   = 10000            // counts kept at most: the oldest goes when a new one comes
)

// throttle counts login attempts by key ("addr:IP", "pair:IP\x00USER") and
// tells how long the next attempt must wait. An attempt is counted before
// its password is checked (reserve), and forgiven when it was right
// (reset), so that attempts in parallel are slowed down as sequential ones
// are. It is safe for concurrent use.
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

func pairKey(addr, user string) string { return "pair:" + addr + "\x00" + user }
func addrKey(addr string) string       { return "addr:" + addr }

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

// keys are the counts an attempt for user from addr touches.
func keys(addr, user string) [2]struct {
	k    string
	free int
} {
	return [2]struct {
		k    string
		free int
	}{{pairKey(addr, user), throttleFreePair}, {addrKey(addr), throttleFreeAddr}}
}

// reserve decides an attempt for user from addr: when it must still wait,
// it returns how long (and counts nothing); otherwise it counts the
// attempt as a failure, to be forgiven by reset if the password was right,
// and returns 0.
func (t *throttle) reserve(user, addr string) time.Duration {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	var w time.Duration
	ks := keys(addr, user)
	for _, kf := range ks {
		f := t.m[kf.k]
		if f == nil || now.Sub(f.last) >= throttleForget {
			continue
		}
		w = max(w, f.last.Add(throttleDelay(f.n, f.free)).Sub(now))
	}
	if w > 0 {
		return w
	}
	for _, kf := range ks {
		f := t.m[kf.k]
		if f != nil && now.Sub(f.last) >= throttleForget {
			f.n = 0
		}
		if f == nil {
			t.makeRoom(now)
			f = &failures{free: kf.free}
			t.m[kf.k] = f
		}
		f.n++
		f.last = now
	}
	return 0
}

// reset forgives the attempt of user from addr that reserve counted: the
// password was right. The user's count from that address is forgotten;
// the address keeps the failures of other attempts.
func (t *throttle) reset(user, addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, pairKey(addr, user))
	if f := t.m[addrKey(addr)]; f != nil && f.n > 0 {
		f.n--
	}
}

// makeRoom keeps the table within throttleMaxKeys before a new count:
// forgotten counts go first; if it is still full, the sixteenth of the
// counts whose last failure is oldest (so that the work is paid once per
// many new keys). A new key is always counted.
func (t *throttle) makeRoom(now time.Time) {
	if len(t.m) < throttleMaxKeys {
		return
	}
	type aged struct {
		k    string
		last time.Time
	}
	all := make([]aged, 0, len(t.m))
	for k, f := range t.m {
		if now.Sub(f.last) >= throttleForget {
			delete(t.m, k)
			continue
		}
		all = append(all, aged{k, f.last})
	}
	if len(t.m) < throttleMaxKeys {
		return
	}
	slices.SortFunc(all, func(a, b aged) int { return a.last.Compare(b.last) })
	for _, a := range all[:len(all)/16+1] {
		delete(t.m, a.k)
	}
}
