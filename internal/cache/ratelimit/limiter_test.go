package ratelimit

import (
	"fmt"
	"strconv"
	"testing"
	"time"
)

func newLocal(t *testing.T, clk *clock, sp Spec) (*Service, *Limiter) {
	t.Helper()
	s := New(Options{InstanceID: "instance-1", Now: clk.now, Manual: true})
	t.Cleanup(s.Close)
	l, err := s.Limiter(sp)
	if err != nil {
		t.Fatal(err)
	}
	return s, l
}

// allowN asks n times for key and returns how many were allowed.
func allowN(l *Limiter, key string, n int) int {
	ok := 0
	for range n {
		if l.Allow([]byte(key)).Allowed {
			ok++
		}
	}
	return ok
}

// TestSlidingWindow: the previous window's count weighs by the part of it
// still inside the sliding window.
func TestSlidingWindow(t *testing.T) {
	clk := newClock()
	s, l := newLocal(t, clk, Spec{API: "a", Name: "default", Requests: 10, Window: time.Second})
	clk.add(100 * time.Millisecond)
	if got := allowN(l, "k", 15); got != 10 {
		t.Fatalf("window 0: got %d allowed, want 10", got)
	}
	d := l.Allow([]byte("k"))
	if d.Allowed || d.Limit != 10 || d.Remaining != 0 {
		t.Errorf("beyond the limit: got %+v, want refused with limit 10, remaining 0", d)
	}
	// 10 in this window: room again when 10×(1−f) ≤ 9, f = 0.1 of the next.
	if d.RetryAfter != time.Second {
		t.Errorf("RetryAfter: got %v, want 1s", d.RetryAfter)
	}
	if d.Reset != 900*time.Millisecond {
		t.Errorf("Reset: got %v, want 900ms", d.Reset)
	}
	if got := allowN(l, "other", 3); got != 3 {
		t.Errorf("another key: got %d allowed, want 3 (keys count apart)", got)
	}
	s.Tick()
	clk.add(950 * time.Millisecond) // 1.05: the previous window weighs 0.95 → 9.5
	if got := allowN(l, "k", 5); got != 0 {
		t.Errorf("at 1.05s: got %d allowed, want 0", got)
	}
	clk.add(450 * time.Millisecond) // 1.5: 10×0.5 = 5 → room for 5
	if got := allowN(l, "k", 10); got != 5 {
		t.Errorf("at 1.5s: got %d allowed, want 5", got)
	}
	clk.add(time.Second) // 2.5: previous (window 1) 5 × 0.5 = 2.5 → room for 7
	if got := allowN(l, "k", 10); got != 7 {
		t.Errorf("at 2.5s: got %d allowed, want 7", got)
	}
	clk.add(2 * time.Second) // 4.5: two windows later, nothing weighs
	if got := allowN(l, "k", 12); got != 10 {
		t.Errorf("at 4.5s: got %d allowed, want 10", got)
	}
	st := l.Stats()
	if st.Allowed != 10+3+5+7+10 || st.Limited != 6+5+5+3+2 {
		t.Errorf("stats: got %+v", st)
	}
}

// TestRemainingCountsDown: each allowed request says how many remain.
func TestRemainingCountsDown(t *testing.T) {
	clk := newClock()
	s, l := newLocal(t, clk, Spec{API: "a", Name: "default", Requests: 5, Window: 10 * time.Second})
	for i := range 5 {
		d := l.Allow([]byte("k"))
		if !d.Allowed || d.Remaining != int64(4-i) {
			t.Errorf("request %d: got %+v, want allowed with %d remaining", i+1, d, 4-i)
		}
		if i == 2 {
			s.Tick() // a tick resizes the reservation: the count stays right
		}
	}
	if d := l.Allow([]byte("k")); d.Allowed {
		t.Errorf("6th: got %+v, want refused", d)
	}
}

func TestRetryAfter(t *testing.T) {
	w := time.Second
	cases := []struct {
		limit, cur, prev, frac float64
		want                   time.Duration
	}{
		{10, 10, 0, 0.1, time.Second},                                 // next window at f=0.1
		{10, 5, 10, 0.2, 400 * time.Millisecond},                      // 5 + 10(1−f) ≤ 9 at f=0.6
		{10, 0, 0, 0.5, 0},                                            // room now
		{10, 20, 0, 0.5, 500*time.Millisecond + 550*time.Millisecond}, // 20(1−f) ≤ 9 at f=0.55 of the next
	}
	for _, tc := range cases {
		got := retryAfter(tc.limit, tc.cur, tc.prev, tc.frac, w)
		if diff := got - tc.want; diff < -time.Millisecond || diff > time.Millisecond {
			t.Errorf("retryAfter(%v, %v, %v, %v): got %v, want %v", tc.limit, tc.cur, tc.prev, tc.frac, got, tc.want)
		}
	}
}

// TestMaxKeys: keys beyond the bound share one counter, never unlimited.
func TestMaxKeys(t *testing.T) {
	clk := newClock()
	s, l := newLocal(t, clk, Spec{API: "a", Name: "default", Requests: 3, Window: time.Second, MaxKeys: 5})
	for i := range 5 {
		allowN(l, "k"+strconv.Itoa(i), 1)
	}
	got := 0
	for i := 5; i < 20; i++ {
		got += allowN(l, "k"+strconv.Itoa(i), 1)
	}
	if got != 3 {
		t.Errorf("15 new keys beyond maxKeys: got %d allowed, want 3 (one shared counter)", got)
	}
	if l.Keys() != 5 {
		t.Errorf("Keys: got %d, want 5", l.Keys())
	}
	// Two windows later the sweep forgets them all.
	clk.add(2500 * time.Millisecond)
	for range fullEvery {
		s.Tick()
	}
	if l.Keys() != 0 {
		t.Errorf("after the sweep: got %d keys, want 0", l.Keys())
	}
	if got := allowN(l, "k19", 3); got != 3 {
		t.Errorf("after the sweep: got %d allowed, want 3", got)
	}
}

// TestSameSpecSameLimiter: a limiter with unchanged settings is kept
// (its counts survive a configuration swap); changed settings count anew.
func TestSameSpecSameLimiter(t *testing.T) {
	clk := newClock()
	s, l := newLocal(t, clk, Spec{API: "a", Name: "default", Requests: 3, Window: time.Second})
	allowN(l, "k", 3)
	l2, _ := s.Limiter(Spec{API: "a", Name: "default", Requests: 3, Window: time.Second})
	if l2 != l || l2.Allow([]byte("k")).Allowed {
		t.Errorf("the same settings: got a new limiter or a fresh count")
	}
	l3, _ := s.Limiter(Spec{API: "a", Name: "default", Requests: 4, Window: time.Second})
	if l3 == l {
		t.Fatal("changed settings: got the old limiter")
	}
	s.Retain([]*Limiter{l3})
	if got := len(s.limiterList()); got != 1 {
		t.Errorf("after Retain: got %d limiters, want 1", got)
	}
}

// TestPartitionShare: an instance that sees 1 of 4 enforces a quarter of
// the limit; one that sees every instance, the whole limit; never zero.
func TestPartitionShare(t *testing.T) {
	clk := newClock()
	h := newHub(clk, 4, 0)
	s := New(Options{InstanceID: "i1", Now: clk.now, Manual: true, Transport: h.node("i1")})
	defer s.Close()
	l, _ := s.Limiter(Spec{API: "a", Name: "default", Requests: 100, Window: time.Second})
	if got := allowN(l, "k", 200); got != 25 {
		t.Errorf("alone in a group of 4: got %d allowed, want 25", got)
	}
	if p, live, size := s.Partitioned(); !p || live != 1 || size != 4 {
		t.Errorf("Partitioned: got %v %d %d, want true 1 4", p, live, size)
	}
	small, _ := s.Limiter(Spec{API: "a", Name: "small", Requests: 2, Window: time.Second})
	if got := allowN(small, "k", 10); got != 1 {
		t.Errorf("limit 2, alone in 4: got %d allowed, want 1 (never zero)", got)
	}
	for _, id := range []string{"i2", "i3", "i4"} {
		h.node(id)
	}
	s.Tick()
	clk.add(2 * time.Second)
	if p, _, _ := s.Partitioned(); p {
		t.Error("every instance connected: still partitioned")
	}
	if got := allowN(l, "k", 200); got != 100 {
		t.Errorf("whole group: got %d allowed, want 100", got)
	}
}

// sim is a deterministic simulation of n services on the hub, with the
// request load of each given by weights.
type sim struct {
	clk      *clock
	h        *hub
	svcs     []*Service
	lims     []*Limiter
	perWin   map[int64]int64 // admitted, by window index
	perMilli []int64         // admitted, by millisecond
}

func newSim(t testing.TB, n int, sp Spec, delay time.Duration) *sim {
	clk := newClock()
	s := &sim{clk: clk, h: newHub(clk, n, delay), perWin: map[int64]int64{}}
	for i := range n {
		id := fmt.Sprintf("instance-%d", i+1)
		svc := New(Options{InstanceID: id, Now: clk.now, Manual: true, Transport: s.h.node(id)})
		t.Cleanup(svc.Close)
		l, err := svc.Limiter(sp)
		if err != nil {
			t.Fatal(err)
		}
		s.svcs, s.lims = append(s.svcs, svc), append(s.lims, l)
	}
	for _, svc := range s.svcs {
		svc.Tick()
	}
	return s
}

// run offers rate requests per second of one key for d, spread by
// weights, stepping 1 ms: each service ticks every 50 ms (phases
// staggered) and publishes new reservations 1 ms after they are taken;
// messages arrive after the hub's delay.
func (s *sim) run(d time.Duration, rate float64, weights []float64) {
	var sum float64
	for _, w := range weights {
		sum += w
	}
	acc := make([]float64, len(s.svcs))
	key := []byte("client-1")
	steps := int(d / time.Millisecond)
	for ms := range steps {
		s.h.deliver()
		idx, _ := s.lims[0].at(s.clk.now())
		var admitted int64
		for i, l := range s.lims {
			acc[i] += rate * weights[i] / sum / 1000
			for acc[i] >= 1 {
				acc[i]--
				if l.Allow(key).Allowed {
					admitted++
				}
			}
		}
		s.perWin[idx] += admitted
		s.perMilli = append(s.perMilli, admitted)
		for i, svc := range s.svcs {
			svc.flushUrgent()
			if (ms+i*50/len(s.svcs))%50 == 0 {
				svc.Tick()
			}
		}
		s.clk.add(time.Millisecond)
	}
}

// overshoot is the largest excess over limit of the admitted requests in
// one window (aligned), as a fraction of limit, and the largest excess in
// any sliding window of the same length (1 ms steps).
func (s *sim) overshoot(limit int64, w time.Duration) (aligned, sliding float64) {
	for _, n := range s.perWin {
		aligned = max(aligned, float64(n-limit)/float64(limit))
	}
	wm := int(w / time.Millisecond)
	var sum int64
	for i, n := range s.perMilli {
		sum += n
		if i >= wm {
			sum -= s.perMilli[i-wm]
		}
		sliding = max(sliding, float64(sum-limit)/float64(limit))
	}
	return max(aligned, 0), max(sliding, 0)
}

// TestSimulatedOvershoot: N instances, the load even or uneven at three
// times the limit, bus delay 1 ms: at most 5 % over the limit in any
// window.
func TestSimulatedOvershoot(t *testing.T) {
	const limit = 1000
	for _, n := range []int{2, 4, 8} {
		for _, spread := range []string{"even", "uneven"} {
			t.Run(fmt.Sprintf("%d-%s", n, spread), func(t *testing.T) {
				w := make([]float64, n)
				for i := range w {
					w[i] = 1
					if spread == "uneven" {
						w[i] = float64(int(1) << i) // 1, 2, 4, …: the last takes about half
					}
				}
				s := newSim(t, n, Spec{API: "a", Name: "default", Requests: limit, Window: time.Second}, time.Millisecond)
				s.run(5*time.Second, 3*limit, w)
				aligned, sliding := s.overshoot(limit, time.Second)
				var total int64
				for _, v := range s.perWin {
					total += v
				}
				t.Logf("n=%d %s: admitted %d in 5 windows; overshoot: aligned %.2f%%, sliding %.2f%%", n, spread, total, 100*aligned, 100*sliding)
				if aligned > 0.05 {
					t.Errorf("overshoot %.2f%% in one window, want at most 5%%", 100*aligned)
				}
				if total < 4*limit {
					t.Errorf("admitted %d in 5 windows at 3× the limit, want at least %d (the limit is not a ceiling to stay far under)", total, 4*limit)
				}
			})
		}
	}
}

// TestSimulatedOvershootDetects: the measurement sees an overshoot when
// the instances cannot tell each other their claims (a bus that delivers
// nothing while every instance believes the others connected).
func TestSimulatedOvershootDetects(t *testing.T) {
	const limit = 1000
	s := newSim(t, 4, Spec{API: "a", Name: "default", Requests: limit, Window: time.Second}, time.Hour)
	s.run(2*time.Second, 3*limit, []float64{1, 1, 1, 1})
	aligned, _ := s.overshoot(limit, time.Second)
	t.Logf("claims never delivered, 4 instances: overshoot %.0f%%", 100*aligned)
	if aligned < 1 {
		t.Errorf("got %.2f%% over the limit, want the measurement to show at least 100%%", 100*aligned)
	}
}

// TestSimulatedOvershootTable prints the overshoot of the simulation for
// limits of 50, 1000 and 100000 per second, offered 1.2, 3 and 10 times
// the limit over 2 and 8 instances (uneven: 1, 2, 4, … shares), bus delay
// 2 ms, and holds each aligned window within 5 % of the limit or, for
// small limits, within one request per instance.
//
//	go test ./internal/cache/ratelimit -run OvershootTable -v
func TestSimulatedOvershootTable(t *testing.T) {
	for _, limit := range []int64{50, 1000, 100000} {
		for _, over := range []float64{1.2, 3, 10} {
			for _, n := range []int{2, 8} {
				w := make([]float64, n)
				for i := range w {
					w[i] = float64(int(1) << i)
				}
				s := newSim(t, n, Spec{API: "a", Name: "default", Requests: limit, Window: time.Second}, 2*time.Millisecond)
				s.run(4*time.Second, over*float64(limit), w)
				aligned, sliding := s.overshoot(limit, time.Second)
				var total int64
				for _, v := range s.perWin {
					total += v
				}
				t.Logf("limit %6d/s offered %4.1f× n=%d: admitted %7d in 4 s; worst aligned window +%.2f%%, worst sliding window +%.2f%%", limit, over, n, total, 100*aligned, 100*sliding)
				if excess := aligned * float64(limit); aligned > 0.05 && excess > float64(n) {
					t.Errorf("limit %d, %.1f×, n=%d: +%.0f requests (%.2f%%) in one window, want at most 5%% or %d", limit, over, n, excess, 100*aligned, n)
				}
			}
		}
	}
}

// TestPublishSplits: the claims of many keys go out in messages of at most
// 64 KiB of records, and every one arrives whole.
func TestPublishSplits(t *testing.T) {
	s := newSim(t, 2, Spec{API: "a", Name: "default", Requests: 10, Window: time.Second}, 0)
	const keys = 3000
	for i := range keys {
		s.lims[0].Allow([]byte("client-" + strconv.Itoa(i)))
	}
	s.h.pending = nil // the urgent claims of the reservations, not published here
	s.svcs[0].Tick()
	n := len(s.h.pending)
	var bytes int
	for _, m := range s.h.pending {
		bytes += len(m.data)
		if len(m.data) > maxBatch+recordMax+16 {
			t.Errorf("a message of %d bytes, want at most %d", len(m.data), maxBatch+recordMax+16)
		}
	}
	s.h.deliver()
	if n < 2 || s.lims[1].Keys() != keys {
		t.Errorf("%d keys' claims: %d messages (%d bytes), the peer knows %d keys; want at least 2 messages and %d keys", keys, n, bytes, s.lims[1].Keys(), keys)
	}
}

// TestOvershootMetric: the overshoot estimate of the metrics follows the
// overshoot measured: claims that arrive 300 ms late let the group
// overshoot, and the instances see it once the counts are in.
func TestOvershootMetric(t *testing.T) {
	const limit = 1000
	s := newSim(t, 4, Spec{API: "a", Name: "default", Requests: limit, Window: time.Second}, 300*time.Millisecond)
	s.run(4*time.Second, 3*limit, []float64{1, 1, 1, 1})
	aligned, _ := s.overshoot(limit, time.Second)
	var est float64
	var reqs int64
	for _, l := range s.lims {
		st := l.Stats()
		est = max(est, st.OvershootMaxRatio)
		reqs = max(reqs, st.OvershootRequests)
	}
	t.Logf("claims 300 ms late: measured +%.1f%%, estimated by the instances +%.1f%% (%d requests over, summed over windows)", 100*aligned, 100*est, reqs)
	if aligned < 0.1 || est < aligned/2 || est > aligned*1.5 {
		t.Errorf("measured +%.1f%%, estimated +%.1f%%: want a real overshoot (≥ 10%%) estimated within a factor of 2", 100*aligned, 100*est)
	}
}

// TestSimulatedLatency prints how the overshoot grows with the bus's
// delay (limit 1000/s, even load; docs/rate-limits.md has the table) and
// holds it within 5 % up to 5 ms.
//
//	go test ./internal/cache/ratelimit -run SimulatedLatency -v
func TestSimulatedLatency(t *testing.T) {
	for _, d := range []time.Duration{time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond} {
		for _, n := range []int{2, 8} {
			for _, over := range []float64{3, 10} {
				w := make([]float64, n)
				for i := range w {
					w[i] = 1
				}
				s := newSim(t, n, Spec{API: "a", Name: "default", Requests: 1000, Window: time.Second}, d)
				s.run(4*time.Second, over*1000, w)
				aligned, _ := s.overshoot(1000, time.Second)
				t.Logf("bus delay %v, n=%d, offered %v×: worst window +%.2f%%", d, n, over, 100*aligned)
				if d <= 5*time.Millisecond && aligned > 0.05 {
					t.Errorf("bus delay %v, n=%d, %v×: +%.2f%%, want at most 5%%", d, n, over, 100*aligned)
				}
			}
		}
	}
}

// TestSilentPeer: a peer whose route passes nothing while the bus still
// counts it connected is counted out once it has not been heard for
// silentAfter sync intervals: each side then enforces its share, and the
// group stays within the limit; heard again, it is counted back in.
func TestSilentPeer(t *testing.T) {
	const limit = 1000
	s := newSim(t, 4, Spec{API: "a", Name: "default", Requests: limit, Window: time.Second}, time.Millisecond)
	even := []float64{1, 1, 1, 1}
	s.run(time.Second, 3*limit, even)
	for _, id := range []string{"instance-1", "instance-2", "instance-3"} {
		s.h.silence(id, "instance-4")
	}
	s.perWin = map[int64]int64{}
	s.run(2*time.Second, 3*limit, even) // detection within 1 s
	during, _ := s.overshoot(limit, time.Second)
	t.Logf("until the silent peer is counted out: worst window +%.2f%%", 100*during)
	for i, svc := range s.svcs {
		p, live, size := svc.Partitioned()
		want := 3
		if i == 3 {
			want = 1
		}
		if !p || live != want || size != 4 {
			t.Errorf("%s: Partitioned() = %v, %d of %d; want true, %d of 4", svc.self, p, live, size, want)
		}
	}
	s.perWin = map[int64]int64{}
	s.run(3*time.Second, 3*limit, even)
	aligned, _ := s.overshoot(limit, time.Second)
	t.Logf("silent peer counted out: worst window +%.2f%%", 100*aligned)
	if aligned > 0.05 {
		t.Errorf("after detection: +%.2f%% in one window, want at most 5%%", 100*aligned)
	}
	s.h.heal()
	s.run(time.Second, 3*limit, even)
	for _, svc := range s.svcs {
		if p, live, _ := svc.Partitioned(); p || live != 4 {
			t.Errorf("%s after healing: Partitioned() = %v, %d live; want false, 4", svc.self, p, live)
		}
	}
}
