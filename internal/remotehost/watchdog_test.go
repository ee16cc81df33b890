package remotehost

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
)

// checker answers watchdog checks (GET /check) one at a time: next waits
// for a check to arrive, answer answers it with a status and waits for the
// next one. Because the watchdog records a check's effect before it sends
// the next, the next arrival means the answer was recorded. Each check has
// its own reply channel, so an answer never goes to a check abandoned by a
// stopped watchdog.
type checker struct {
	t       *testing.T
	port    int
	arrived chan chan int
	pending chan int
	stop    func() // ends pending checks (they answer 200) and the server
}

func newChecker(t *testing.T) *checker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &checker{t: t, port: ln.Addr().(*net.TCPAddr).Port, arrived: make(chan chan int)}
	done := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reply := make(chan int, 1)
		select {
		case c.arrived <- reply:
		case <-done:
			return
		case <-r.Context().Done():
			return
		}
		select {
		case code := <-reply:
			w.WriteHeader(code)
		case <-done:
		case <-r.Context().Done():
		}
	})}
	go srv.Serve(ln)
	var once sync.Once
	c.stop = func() { once.Do(func() { close(done); srv.Close() }) }
	t.Cleanup(c.stop)
	return c
}

func (c *checker) next() {
	c.t.Helper()
	select {
	case c.pending = <-c.arrived:
	case <-time.After(10 * time.Second):
		c.t.Fatal("watchdog checks stopped")
	}
}

func (c *checker) answer(code int) {
	c.t.Helper()
	c.pending <- code
	c.next()
}

func (c *checker) config(t *testing.T, watchdog string) *groupconf.Config {
	return load(t, fmt.Sprintf("    addresses:\n      - {address: 127.0.0.1, port: %d}\n    watchdog: {enabled: true, method: GET, path: /check, %s}\n", c.port, watchdog))
}

// watch builds cfg in r and makes it current; a pending check is ended
// before the registry waits for its watchdogs at cleanup (h1 can miss a
// cancellation that arrives just before it arms the response wait: the
// check would then last its timeout).
func (c *checker) watch(t *testing.T, r *Registry, cfg *groupconf.Config) *Host {
	h := host(t, r, cfg)
	t.Cleanup(c.stop)
	return h
}

// TestWatchdogThresholds: unhealthyThreshold failures in a row take the
// address out, healthyThreshold passes in a row bring it back (and end a
// failure skip); 2xx to 4xx pass, 5xx fail; both transitions are logged.
func TestWatchdogThresholds(t *testing.T) {
	c := newChecker(t)
	lr := &logRec{}
	r := NewRegistry(Options{Logger: slog.New(lr)})
	h := c.watch(t, r, c.config(t, "interval: 20ms, timeout: 5, healthyThreshold: 2, unhealthyThreshold: 2"))
	st := h.groups.Load().all[0].st
	c.next()
	steps := []struct {
		code int
		down bool
	}{
		{500, false}, // the first failure of two
		{499, false}, // a pass resets the failures
		{503, false},
		{500, true},
		{200, true}, // the first pass of two
	}
	for i, s := range steps {
		c.answer(s.code)
		if got := st.watchdogDown.Load(); got != s.down {
			t.Fatalf("step %d (%d): got down %v, want %v", i, s.code, got, s.down)
		}
	}
	if n := lr.count("WARN watchdog: address out of rotation"); n != 1 {
		t.Errorf("got %d out-of-rotation warnings, want 1", n)
	}
	if le := st.lastErr.Load(); le == nil || le.msg != "watchdog: status outside 2xx-4xx" {
		t.Errorf("last error: got %+v, want the watchdog's status", le)
	}
	st.failN(mono(), int64(time.Hour), 1, fmt.Errorf("refused"))
	c.answer(200)
	if st.watchdogDown.Load() || !st.eligible(mono()) || lr.count("INFO watchdog: address back in rotation") != 1 {
		t.Errorf("after two passes: got down %v, eligible %v, %d infos; want back in rotation, the failure skip ended, logged once",
			st.watchdogDown.Load(), st.eligible(mono()), lr.count("back in rotation"))
	}
}

// TestWatchdogSwaps: a swap that keeps an address's watchdog settings keeps
// its watchdog; changed settings restart it (the address stays out until
// healthyThreshold passes of the new one); a watchdog that goes away puts
// its address back.
func TestWatchdogSwaps(t *testing.T) {
	c := newChecker(t)
	r := NewRegistry(Options{})
	cfg := c.config(t, "interval: 20ms, timeout: 1, healthyThreshold: 2, unhealthyThreshold: 1")
	h := c.watch(t, r, cfg)
	st := h.groups.Load().all[0].st
	wd := func() *watchdog { r.mu.Lock(); defer r.mu.Unlock(); return r.watchdogs[st.key] }
	activate := func(cfg *groupconf.Config) {
		t.Helper()
		s, err := r.Build(cfg)
		if err != nil {
			t.Fatal(err)
		}
		r.Activate(s)
	}
	c.next()
	c.answer(500)
	if !st.watchdogDown.Load() {
		t.Fatal("after a failure (threshold 1): got up, want down")
	}
	first := wd()
	activate(cfg)
	if wd() != first {
		t.Error("same settings: got a new watchdog, want the same")
	}
	activate(c.config(t, "interval: 30ms, timeout: 1, healthyThreshold: 2, unhealthyThreshold: 1"))
	select {
	case <-first.done:
	default:
		t.Error("changed settings: the old watchdog still runs")
	}
	if wd() == first || wd() == nil {
		t.Fatal("changed settings: got no new watchdog")
	}
	c.next()
	c.answer(200)
	if !st.watchdogDown.Load() {
		t.Error("one pass of the new watchdog: got up, want still down (threshold 2)")
	}
	c.answer(200)
	if st.watchdogDown.Load() {
		t.Error("two passes of the new watchdog: got down, want up")
	}
	c.answer(500)
	if !st.watchdogDown.Load() {
		t.Fatal("after a failure: got up, want down")
	}
	activate(load(t, fmt.Sprintf("    addresses:\n      - {address: 127.0.0.1, port: %d}\n", c.port)))
	if st.watchdogDown.Load() || wd() != nil {
		t.Error("watchdog turned off: got the address still down, want it back")
	}
}

// TestWatchdogStopDuringCheck: stopping a watchdog while a check waits
// does not count that check as a failure.
func TestWatchdogStopDuringCheck(t *testing.T) {
	c := newChecker(t)
	r := NewRegistry(Options{})
	h := host(t, r, c.config(t, "interval: 20ms, timeout: 1, unhealthyThreshold: 1"))
	st := h.groups.Load().all[0].st
	c.next()
	r.Close()
	if st.watchdogDown.Load() || st.lastErr.Load() != nil {
		t.Errorf("got down %v, last error %+v; want the cancelled check not counted", st.watchdogDown.Load(), st.lastErr.Load())
	}
	// Nothing starts after Close.
	s, err := r.Build(c.config(t, "interval: 20ms, timeout: 5"))
	if err != nil {
		t.Fatal(err)
	}
	r.Activate(s)
	r.mu.Lock()
	n := len(r.watchdogs)
	r.mu.Unlock()
	if n != 0 {
		t.Errorf("Activate after Close: got %d watchdogs, want 0", n)
	}
}

func TestWatchdogUnreachable(t *testing.T) {
	r := NewRegistry(Options{})
	h := host(t, r, load(t, fmt.Sprintf("    addresses:\n      - {address: 127.0.0.1, port: %d}\n    watchdog: {enabled: true, interval: 1h, timeout: 5, unhealthyThreshold: 1}\n", refusedPort(t))))
	st := h.groups.Load().all[0].st
	waitFor(t, "the watchdog's verdict", func() bool { return st.watchdogDown.Load() })
	if le := st.lastErr.Load(); le == nil || !strings.Contains(le.msg, "watchdog: forwarding: connect") {
		t.Errorf("got last error %+v, want the connect error", le)
	}
}

func TestWatchdogRefusesUpgrade(t *testing.T) {
	if _, _, err := (&discard{}).Hijack(); err == nil {
		t.Error("got a hijacked connection, want an error")
	}
}
