package remotehost

import (
	"fmt"
	"math"
	"testing"
	"time"
)

func near(got, want float64) bool { return math.Abs(got-want) < 1e-9 }

// TestAverageResponseTime: the decaying average of an address's response
// times, sample by sample.
func TestAverageResponseTime(t *testing.T) {
	const hl = 10.0 // half-life, s
	s10, s20 := int64(10*time.Second), int64(20*time.Second)
	ms := func(n int) int64 { return int64(n) * int64(time.Millisecond) }
	tests := []struct {
		name    string
		samples [][2]int64 // {mono time, duration}
		want    float64    // seconds
	}{
		{"a response in no measurable time is still a sample", [][2]int64{{s10, 0}}, 1e-6},
		{"one half-life later the history weighs half", [][2]int64{{s10, ms(100)}, {s20, ms(300)}}, (0.1*0.5 + 0.3) / 1.5},
		{"a sample taken before the last one does not decay the history", [][2]int64{{s10, ms(100)}, {0, ms(300)}}, 0.2},
		{"samples at the same time weigh the same", [][2]int64{{s10, ms(100)}, {s10, ms(300)}}, 0.2},
		{"the decay runs from the latest sample", [][2]int64{{s10, ms(100)}, {s20, ms(300)}, {s20 + s10, ms(500)}},
			((0.1*0.5+0.3)*0.5 + 0.5) / ((1*0.5+1)*0.5 + 1)},
	}
	for _, tt := range tests {
		var s addrState
		for _, smp := range tt.samples {
			s.observe(smp[0], smp[1], hl)
		}
		if got := s.avg(); !near(got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestFailureWindow: with failedAddressThreshold 2, an address is skipped
// at its second failure within failedAddressSkip of the first counted one
// (the window's end included); a skip restarts the count.
func TestFailureWindow(t *testing.T) {
	const skip = int64(10 * time.Second)
	t0 := 1000 * skip
	err := fmt.Errorf("refused")
	tests := []struct {
		name      string
		failures  []int64 // mono times
		threshold int32
		at        int64
		eligible  bool
	}{
		{"one failure of two", []int64{t0}, 2, t0 + 1, true},
		{"two failures at once", []int64{t0, t0}, 2, t0 + 1, false},
		{"the second failure at the window's end counts", []int64{t0, t0 + skip}, 2, t0 + skip + 1, false},
		{"the second failure after the window starts a new one", []int64{t0, t0 + skip + 1}, 2, t0 + skip + 2, true},
		{"a new window after that counts from its own start", []int64{t0, t0 + skip + 1, t0 + 2*skip + 1}, 2, t0 + 2*skip + 2, false},
		{"the skip ends exactly failedAddressSkip after the tripping failure", []int64{t0, t0 + 1}, 2, t0 + 1 + skip, true},
		{"just before the skip ends", []int64{t0, t0 + 1}, 2, t0 + skip, false},
		// After a skip the count restarts: a failure while skipped (the
		// fallback) does not extend the skip.
		{"a failure while skipped starts a new count", []int64{t0, t0 + 1, t0 + 2}, 2, t0 + 1 + skip, true},
		{"threshold 1: the first failure skips", []int64{t0}, 1, t0 + skip - 1, false},
		{"threshold 0 counts as 1", []int64{t0}, 0, t0 + skip - 1, false},
	}
	for _, tt := range tests {
		var s addrState
		for _, at := range tt.failures {
			s.failN(at, skip, tt.threshold, err)
		}
		if got := s.eligible(tt.at); got != tt.eligible {
			t.Errorf("%s: eligible got %v, want %v", tt.name, got, tt.eligible)
		}
		wantDown := ""
		if !tt.eligible {
			wantDown = "failed"
		}
		if got := s.down(tt.at); got != wantDown {
			t.Errorf("%s: down got %q, want %q", tt.name, got, wantDown)
		}
		if got := s.failures.Load(); got != uint64(len(tt.failures)) {
			t.Errorf("%s: failures got %d, want %d", tt.name, got, len(tt.failures))
		}
	}
}

func TestRoundRobinTakesAddressesInOrder(t *testing.T) {
	h := host(t, NewRegistry(Options{}), load(t, `    addresses:
      - {address: 10.0.0.1}
      - {address: 10.0.0.2}
      - {address: 10.0.0.3}
`))
	g := h.groups.Load()
	var got []string
	for range 4 {
		a, _ := h.pick(g, 0, mono())
		got = append(got, a.Addr())
	}
	want := "[10.0.0.1:8080 10.0.0.2:8080 10.0.0.3:8080 10.0.0.1:8080]"
	if fmt.Sprint(got) != want {
		t.Errorf("got %v, want %v", got, want)
	}
}

// TestFallbackTakesLeastRecentlyFailed: every address skipped, the
// fallback takes the one whose skip ends first, and among equals the first
// in the configuration.
func TestFallbackTakesLeastRecentlyFailed(t *testing.T) {
	h := host(t, NewRegistry(Options{}), load(t, `    addresses:
      - {address: 10.0.0.1}
      - {address: 10.0.0.2}
      - {address: 10.0.0.3}
`))
	g := h.groups.Load()
	now := mono()
	skip := int64(time.Hour)
	err := fmt.Errorf("refused")
	g.all[0].st.failN(now, skip, 1, err)
	g.all[1].st.failN(now, skip, 1, err)
	g.all[2].st.failN(now+1, skip, 1, err)
	for i, want := range []int{0, 0, 0} {
		if a, fb := h.pick(g, 0, now+2); a != g.all[want] || !fb {
			t.Errorf("pick %d: got %v (fallback %v), want %s as a fallback", i, a, fb, g.all[want].Addr())
		}
	}
	if a, fb := h.pick(g, 1, now+2); a != g.all[1] || !fb {
		t.Errorf("10.0.0.1 tried: got %v (fallback %v), want 10.0.0.2", a, fb)
	}
	if a, fb := h.pick(g, 1|2, now+2); a != g.all[2] || !fb {
		t.Errorf("10.0.0.1 and .2 tried: got %v (fallback %v), want 10.0.0.3", a, fb)
	}
}

func weightedHost(t *testing.T) *Host {
	return host(t, NewRegistry(Options{}), load(t, `    loadBalancing: responseTime
    addresses:
      - {address: 10.0.0.1}
      - {address: 10.0.0.2}
      - {address: 10.0.0.3}
`))
}

func TestWeightedWithoutSamplesSpreadsEvenly(t *testing.T) {
	h := weightedHost(t)
	c := counts(h, 3000, mono())
	for _, a := range []string{"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"} {
		if c[a] < 700 {
			t.Errorf("%s: got %d of 3000, want about 1000 (%v)", a, c[a], c)
		}
	}
}

// TestWeightedSkipsUnusable: the weighted choice never takes an address
// the request tried or that is skipped, and takes the only usable one.
func TestWeightedSkipsUnusable(t *testing.T) {
	h := weightedHost(t)
	g := h.groups.Load()
	now := mono()
	for i, a := range g.all {
		a.st.observe(now, int64(i+1)*int64(time.Millisecond), h.halfLife)
	}
	seen := map[*Address]int{}
	for range 1000 {
		a, fb := h.pick(g, 1, now)
		if a == nil || fb {
			t.Fatalf("10.0.0.1 tried: got %v (fallback %v), want another address in rotation", a, fb)
		}
		seen[a]++
	}
	if seen[g.all[0]] != 0 || seen[g.all[1]] == 0 || seen[g.all[2]] == 0 {
		t.Errorf("10.0.0.1 tried: got %d/%d/%d picks, want 0 for the tried one and some for each other", seen[g.all[0]], seen[g.all[1]], seen[g.all[2]])
	}
	g.all[1].st.failN(now, int64(time.Hour), 1, fmt.Errorf("refused"))
	for range 100 {
		if a, _ := h.pick(g, 1, now); a != g.all[2] {
			t.Fatalf("10.0.0.1 tried, .2 skipped: got %v, want 10.0.0.3", a)
		}
	}
	if a := pickWeighted(g.groups[0], 1|4, now); a != nil {
		t.Errorf("nothing usable: got %v, want nil", a.Addr())
	}
}

func TestWeightedTwoAddresses(t *testing.T) {
	h := host(t, NewRegistry(Options{}), load(t, `    loadBalancing: responseTime
    addresses:
      - {address: 10.0.0.1}
      - {address: 10.0.0.2}
`))
	g := h.groups.Load()
	now := mono()
	g.all[0].st.observe(now, int64(time.Millisecond), h.halfLife)
	g.all[1].st.observe(now, int64(100*time.Millisecond), h.halfLife)
	c := counts(h, 2000, now)
	if fast, slow := c["10.0.0.1:8080"], c["10.0.0.2:8080"]; fast < 20*slow || slow == 0 {
		t.Errorf("got fast %d, slow %d; want the 100 times faster address to get most, the slow some", fast, slow)
	}
}
