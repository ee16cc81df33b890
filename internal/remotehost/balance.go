package remotehost

import (
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// addrState is what the registry keeps of an address across
// configurations. Counters are atomics; the decaying average has a tiny
// mutex of its own (no lock is shared between addresses).
type addrState struct {
	key  addrKey
	addr string // ip:port

	failedUntil  atomic.Int64 // mono time until which the address is skipped
	watchdogDown atomic.Bool
	inFlight     atomic.Int64
	requests     atomic.Uint64
	failures     atomic.Uint64
	unsolicited  atomic.Uint64 // connections closed for bytes beyond a response
	fallback     atomic.Uint64 // requests sent while skipped, every address being skipped
	avgBits      atomic.Uint64 // float64 seconds; 0 = no sample yet
	lastErr      atomic.Pointer[lastError]
	wdPasses     atomic.Int32 // the watchdog's current run of passes
	wdFails      atomic.Int32 // and of failures

	mu     sync.Mutex // guards sum, weight, last, windowStart, windowCount
	sum    float64    // decayed sum of samples (seconds)
	weight float64    // decayed number of samples
	last   int64      // mono time of the last sample
	// failures counted towards failedAddressThreshold since windowStart
	windowStart int64
	windowCount int32
}

type lastError struct {
	msg string
	at  time.Time
}

// observe adds a response time d (ns) taken at mono time now: history
// loses half its weight every halfLife seconds.
func (s *addrState) observe(now, d int64, halfLife float64) {
	x := float64(d) / 1e9
	if x <= 0 {
		x = 1e-6
	}
	s.mu.Lock()
	// mutate:equivalent boundary at now == s.last the factor is 2^0 = 1 and last stays now
	if now > s.last {
		// The history decays (a first sample decays zeros); a sample
		// taken before the last one (requests end out of order) does not
		// make the history heavier.
		f := math.Exp2(-float64(now-s.last) / 1e9 / halfLife)
		s.sum *= f
		s.weight *= f
		s.last = now
	}
	s.sum += x
	s.weight++
	avg := s.sum / s.weight
	s.mu.Unlock()
	s.avgBits.Store(math.Float64bits(avg))
}

func (s *addrState) avg() float64 { return math.Float64frombits(s.avgBits.Load()) }

// failN records a failure; the address is skipped until now+skip when this
// is the threshold-th failure within skip of the first one counted (as
// nginx's max_fails within fail_timeout). A threshold under 1 counts as 1.
func (s *addrState) failN(now, skip int64, threshold int32, err error) {
	s.failures.Add(1)
	s.recordErr(err)
	s.mu.Lock()
	if s.windowCount == 0 || now-s.windowStart > skip {
		s.windowStart, s.windowCount = now, 0
	}
	s.windowCount++
	trip := s.windowCount >= threshold
	if trip {
		s.windowCount = 0
	}
	s.mu.Unlock()
	if trip {
		s.failedUntil.Store(now + skip)
	}
}

func (s *addrState) unsolicitedClose() { s.unsolicited.Add(1) }

// recordErr keeps err as the last error (without taking the address out).
func (s *addrState) recordErr(err error) {
	s.lastErr.Store(&lastError{msg: err.Error(), at: time.Now()})
}

// down reports why the address is out of rotation at mono time now ("" when
// it is up).
func (s *addrState) down(now int64) string {
	switch {
	case s.watchdogDown.Load():
		return "watchdog"
	case s.failedUntil.Load() > now:
		return "failed"
	}
	return ""
}

func (s *addrState) eligible(now int64) bool {
	return !s.watchdogDown.Load() && s.failedUntil.Load() <= now
}

// pick chooses an address for a request that already tried the addresses
// in tried (bits of Address.idx): the lowest priority group with an
// eligible address, and within it round robin or a weighted random choice.
// When no address of any group is eligible because all are skipped after
// failures (failedAddressSkip), it falls back to the untried address that
// failed least recently (fallback is then true): like nginx, which never
// marks the only server of an upstream unavailable, and Envoy's panic
// threshold, one bad exchange must not take a whole back end away. An
// address the watchdog found down is never picked. pick returns nil when
// no address can be tried.
func (h *Host) pick(g *groupList, tried uint64, now int64) (a *Address, fallback bool) {
	for _, gr := range g.groups {
		if h.weighted {
			a = pickWeighted(gr, tried, now)
		} else {
			a = pickRoundRobin(gr, tried, now)
		}
		if a != nil {
			return a, false
		}
	}
	var best *Address
	for _, c := range g.all {
		if tried&(1<<uint(c.idx)) != 0 || c.st.watchdogDown.Load() {
			continue
		}
		if best == nil || c.st.failedUntil.Load() < best.st.failedUntil.Load() {
			best = c
		}
	}
	return best, best != nil
}

func usable(a *Address, tried uint64, now int64) bool {
	return tried&(1<<uint(a.idx)) == 0 && a.st.eligible(now)
}

func pickRoundRobin(gr *group, tried uint64, now int64) *Address {
	n := uint64(len(gr.addrs))
	start := gr.rr.Add(1) - 1
	for i := range n {
		if a := gr.addrs[(start+i)%n]; usable(a, tried, now) {
			return a
		}
	}
	return nil
}

// pickWeighted chooses among the usable addresses of gr with probability
// proportional to 1/average response time; an address without samples gets
// the best weight of the group (so that it is tried). It returns nil when
// no address of gr is usable.
func pickWeighted(gr *group, tried uint64, now int64) *Address {
	var (
		cand [MaxAddresses]*Address
		w    [MaxAddresses]float64 // 0: no sample yet
	)
	n := 0
	best := 0.0
	for _, a := range gr.addrs {
		if !usable(a, tried, now) {
			continue
		}
		cand[n] = a
		if avg := a.st.avg(); avg > 0 {
			w[n] = 1 / avg
			best = max(best, w[n])
		}
		n++
	}
	if n == 0 {
		return nil
	}
	if best == 0 {
		return cand[rand.IntN(n)] // no samples yet: equal chances
	}
	sum := 0.0
	for i := range n {
		if w[i] == 0 {
			w[i] = best
		}
		sum += w[i]
	}
	x := rand.Float64() * sum
	for i := range n {
		if x < w[i] { // mutate:equivalent boundary x == w[i] exactly has a probability of about 2^-53
			return cand[i]
		}
		x -= w[i]
	}
	// mutate:equivalent const reached only when floating-point rounding leaves x at the sum (about 2^-53)
	return cand[n-1]
}
