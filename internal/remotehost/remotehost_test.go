package remotehost

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/h1"
)

// load builds a configuration with one back end "be" on http://api.test:8080
// and its remoteHosts entry (YAML of the entry's keys, indented by 4).
func load(t *testing.T, entry string) *groupconf.Config {
	t.Helper()
	y := "backends:\n  - name: be\n    url: http://api.test:8080\nremoteHosts:\n  - host: api.test\n" + entry +
		"apis:\n  - name: a\n    pathPrefix: /\n    backend: be\n"
	cfg, err := groupconf.Load(groupconf.Layer{Name: "group.yaml", YAML: []byte(y)})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func host(t *testing.T, r *Registry, cfg *groupconf.Config) *Host {
	t.Helper()
	s, err := r.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.Activate(s)
	t.Cleanup(r.Close)
	return s.Host(0)
}

const threeAddrs = `    addresses:
      - {address: 10.0.0.1, priority: 1}
      - {address: 10.0.0.2, priority: 1}
      - {address: 10.0.0.3, priority: 2}
`

func counts(h *Host, n int, now int64) map[string]int {
	g := h.groups.Load()
	c := map[string]int{}
	for range n {
		a, _ := h.pick(g, 0, now)
		if a == nil {
			c["none"]++
			continue
		}
		c[a.Addr()]++
	}
	return c
}

func TestRoundRobinSpread(t *testing.T) {
	h := host(t, NewRegistry(Options{}), load(t, threeAddrs))
	got := counts(h, 100, mono())
	want := map[string]int{"10.0.0.1:8080": 50, "10.0.0.2:8080": 50}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestPriorityFailoverAndSkip(t *testing.T) {
	h := host(t, NewRegistry(Options{}), load(t, threeAddrs+"    failedAddressSkip: 30\n"))
	g := h.groups.Load()
	now := mono()
	skip := int64(30 * time.Second)
	g.all[0].st.failN(now, skip, 1, fmt.Errorf("refused"))
	tests := []struct {
		name string
		now  int64
		want map[string]int
	}{
		{"one of group 1 failed", now, map[string]int{"10.0.0.2:8080": 10}},
		{"both of group 1 failed", now, map[string]int{"10.0.0.3:8080": 10}},
		{"after the skip period", now + skip + 1, map[string]int{"10.0.0.1:8080": 5, "10.0.0.2:8080": 5}},
	}
	for i, tt := range tests {
		if i == 1 {
			g.all[1].st.failN(now, skip, 1, fmt.Errorf("refused"))
		}
		if got := counts(h, 10, tt.now); fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
	// Group 2 down by the watchdog, group 1 skipped after failures: the
	// requests still go to group 1, the least recently failed first.
	g.all[2].st.watchdogDown.Store(true)
	g.all[0].st.failN(now-int64(time.Second), skip, 1, fmt.Errorf("refused"))
	if got := counts(h, 3, now); fmt.Sprint(got) != fmt.Sprint(map[string]int{"10.0.0.1:8080": 3}) {
		t.Errorf("all skipped: got %v, want every request to 10.0.0.1 (failed least recently)", got)
	}
	if a, fb := h.pick(g, 1, now); a != g.all[1] || !fb {
		t.Errorf("all skipped, 10.0.0.1 tried: got %v (fallback %v), want 10.0.0.2 as a fallback", a, fb)
	}
	if a, fb := h.pick(g, 0, now+skip+1); a == nil || fb {
		t.Errorf("after the skip period: got %v (fallback %v), want an address in rotation", a, fb)
	}
	// The watchdog's verdict still removes an address.
	g.all[0].st.watchdogDown.Store(true)
	g.all[1].st.watchdogDown.Store(true)
	if got := counts(h, 1, now); got["none"] != 1 {
		t.Errorf("all down by the watchdog: got %v, want none", got)
	}
	// A request never goes to an address it tried.
	for i := range g.all {
		g.all[i].st.watchdogDown.Store(false)
	}
	if a, _ := h.pick(g, 1|2, now+skip+1); a != g.all[2] {
		t.Errorf("tried 1 and 2: got %v, want 10.0.0.3", a)
	}
	if a, _ := h.pick(g, 1|2|4, now); a != nil {
		t.Errorf("tried all: got %v, want none", a.Addr())
	}
}

// TestJudge is the table of how a failed exchange can end and whom it
// blames (docs/remotehosts.md): a fault of the client's side never takes
// an address out of rotation.
func TestJudge(t *testing.T) {
	fe := func(k h1.ErrKind, err error) *h1.ForwardError { return &h1.ForwardError{Kind: k, Err: err} }
	tests := []struct {
		name string
		fe   *h1.ForwardError
		want Verdict
	}{
		{"client body too large", fe(h1.ErrClient, h1.ErrBodyTooLarge), Verdict{Blame: BlameNone}},
		{"client body over maxSentBytes", fe(h1.ErrClient, h1.ErrMaxSent), Verdict{Blame: BlameNone}},
		{"client gone mid-upload", fe(h1.ErrClient, fmt.Errorf("reading request body: %w", net.ErrClosed)), Verdict{Blame: BlameNone}},
		{"client response write failed", &h1.ForwardError{Kind: h1.ErrClient, Responded: true, Err: net.ErrClosed}, Verdict{Blame: BlameNone}},
		{"length required", fe(h1.ErrClient, h1.ErrLengthRequired), Verdict{Blame: BlameNone}},
		{"busy", fe(h1.ErrNoConnAvailable, h1.ErrNoConn), Verdict{Blame: BlameNoted}},
		{"response over maxReceivedBytes", fe(h1.ErrUpstreamProtocol, h1.ErrMaxReceived), Verdict{Blame: BlameNoted}},
		{"malformed response", fe(h1.ErrUpstreamProtocol, fmt.Errorf("bad")), Verdict{Blame: BlameAddress}},
		{"refused", fe(h1.ErrConnect, fmt.Errorf("refused")), Verdict{Blame: BlameAddress}},
		{"timeout", fe(h1.ErrTimeout, fmt.Errorf("slow")), Verdict{Blame: BlameAddress, ObserveTime: true}},
	}
	for _, tt := range tests {
		if got := Judge(tt.fe); got != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestWeightedFavoursFast(t *testing.T) {
	h := host(t, NewRegistry(Options{}), load(t, `    loadBalancing: responseTime
    addresses:
      - {address: 10.0.0.1}
      - {address: 10.0.0.2}
      - {address: 10.0.0.3}
`))
	g := h.groups.Load()
	now := mono()
	g.all[0].st.observe(now, int64(time.Millisecond), h.halfLife)
	g.all[1].st.observe(now, int64(20*time.Millisecond), h.halfLife)
	// 10.0.0.3 has no sample: it gets the best weight.
	c := counts(h, 20000, now)
	fast, slow, fresh := c["10.0.0.1:8080"], c["10.0.0.2:8080"], c["10.0.0.3:8080"]
	if !(fast > 10*slow && slow > 0 && fresh > 10*slow) {
		t.Errorf("got fast %d, slow %d, no samples %d; want fast and no-samples each over 10 times slow, slow above 0", fast, slow, fresh)
	}
}

func TestDecayingAverage(t *testing.T) {
	var s addrState
	s.observe(0, int64(100*time.Millisecond), 10)
	s.observe(0, int64(300*time.Millisecond), 10)
	if got := s.avg(); got < 0.199 || got > 0.201 {
		t.Errorf("two samples at once: got %v, want 0.2", got)
	}
	// 10 s later the history weighs half: (0.2*2*0.5 + 0.5) / (2*0.5 + 1)
	s.observe(int64(10*time.Second), int64(500*time.Millisecond), 10)
	if got := s.avg(); got < 0.349 || got > 0.351 {
		t.Errorf("after one half-life: got %v, want 0.35", got)
	}
}

func TestRetryable(t *testing.T) {
	tests := []struct {
		name       string
		kind       h1.ErrKind
		res        h1.Result
		replayable bool
		idem       bool
		want       bool
	}{
		{"connect failed, POST", h1.ErrConnect, h1.Result{}, true, false, true},
		{"connect timeout, POST", h1.ErrTimeout, h1.Result{}, true, false, true},
		{"no connection free", h1.ErrNoConnAvailable, h1.Result{}, true, false, true},
		{"sent, closed, GET", h1.ErrUpstreamProtocol, h1.Result{Sent: true}, true, true, true},
		{"sent, closed, POST", h1.ErrUpstreamProtocol, h1.Result{Sent: true}, true, false, false},
		{"sent, body streamed, PUT", h1.ErrUpstreamProtocol, h1.Result{Sent: true}, false, true, false},
		{"response bytes arrived, GET", h1.ErrUpstreamProtocol, h1.Result{Sent: true, Received: true}, true, true, false},
		{"sent, timed out, GET", h1.ErrTimeout, h1.Result{Sent: true}, true, true, false},
		{"client error", h1.ErrClient, h1.Result{}, true, true, false},
	}
	for _, tt := range tests {
		if got := retryable(tt.kind, tt.res, tt.replayable, tt.idem); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestStateKeptAcrossBuilds(t *testing.T) {
	r := NewRegistry(Options{})
	h1st := host(t, r, load(t, threeAddrs))
	a := h1st.groups.Load().all[0].st
	a.requests.Add(7)
	cfg2 := load(t, `    addresses:
      - {address: 10.0.0.1}
      - {address: 10.0.0.9}
`)
	s2, err := r.Build(cfg2)
	if err != nil {
		t.Fatal(err)
	}
	r.Activate(s2)
	g2 := s2.Host(0).groups.Load()
	if g2.all[0].st != a || a.requests.Load() != 7 {
		t.Errorf("10.0.0.1 after rebuild: got a new state (%d requests), want the same (7)", g2.all[0].st.requests.Load())
	}
	r.mu.Lock()
	n := len(r.states)
	r.mu.Unlock()
	if n != 2 {
		t.Errorf("states kept: got %d, want 2 (10.0.0.2 and .3 forgotten)", n)
	}
	if st := r.State(); len(st.RemoteHosts) != 1 || st.RemoteHosts[0].Addresses[0].Requests != 7 {
		t.Errorf("State: got %+v, want one host whose first address has 7 requests", st)
	}
}

// checkServer answers watchdog checks (GET /check) in lockstep with the
// test: each check announces itself on arrived, then waits for the status
// to answer with on answer. Because the watchdog records a check's effect
// before it sends the next one, the arrival of check N+1 means check N was
// recorded. release unblocks pending checks: register it as a cleanup after
// the registry's, so that it runs first.
func checkServer(t *testing.T) (port int, arrived <-chan struct{}, answer chan<- int, release func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	arr := make(chan struct{})
	ans := make(chan int)
	done := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := 200
		if r.Method == "GET" && r.RequestURI == "/check" {
			select {
			case arr <- struct{}{}:
			case <-done:
				return
			}
			select {
			case code = <-ans:
			case <-done:
				return
			}
		}
		w.WriteHeader(code)
	})}
	go srv.Serve(ln)
	var once sync.Once
	release = func() { once.Do(func() { close(done) }) }
	t.Cleanup(func() { release(); srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port, arr, ans, release
}

func TestWatchdogOutAndIn(t *testing.T) {
	port, arrived, answer, release := checkServer(t)
	r := NewRegistry(Options{})
	h := host(t, r, load(t, fmt.Sprintf(`    addresses:
      - {address: 127.0.0.1, port: %d}
    watchdog: {enabled: true, method: GET, path: /check, interval: 20ms, timeout: 5, healthyThreshold: 2, unhealthyThreshold: 2}
`, port)))
	t.Cleanup(release) // before the registry's cleanup waits for the watchdog
	st := h.groups.Load().all[0].st
	arrive := func() {
		t.Helper()
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("watchdog checks stopped")
		}
	}
	// Each step answers the pending check, then waits for the next one to
	// arrive: by then the answer has been recorded.
	step := func(code int) {
		t.Helper()
		answer <- code
		arrive()
	}
	arrive()
	step(200)
	step(503)
	if st.watchdogDown.Load() {
		t.Errorf("after one failure: got down, want up (threshold 2)")
	}
	step(503)
	if !st.watchdogDown.Load() {
		t.Errorf("after two failures: got up, want down")
	}
	if got := r.State().RemoteHosts[0].Addresses[0].DownReason; got != "watchdog" {
		t.Errorf("down reason: got %q, want watchdog", got)
	}
	step(200)
	if !st.watchdogDown.Load() {
		t.Errorf("after one pass: got up, want still down (threshold 2)")
	}
	step(200)
	if st.watchdogDown.Load() {
		t.Errorf("after two passes: got down, want up")
	}
}

func TestWatchdogsFollowSwapsWithoutLeak(t *testing.T) {
	r := NewRegistry(Options{})
	mk := func(addrs ...string) *groupconf.Config {
		var b strings.Builder
		b.WriteString("    addresses:\n")
		for _, a := range addrs {
			fmt.Fprintf(&b, "      - {address: %s, port: 1}\n", a)
		}
		b.WriteString("    watchdog: {enabled: true, interval: 1h}\n")
		return load(t, b.String())
	}
	tests := []struct {
		addrs []string
		want  int
	}{
		{[]string{"127.0.0.2", "127.0.0.3"}, 2},
		{[]string{"127.0.0.2", "127.0.0.4", "127.0.0.5"}, 3},
		{[]string{"127.0.0.5"}, 1},
	}
	var running []*watchdog
	for _, tt := range tests {
		s, err := r.Build(mk(tt.addrs...))
		if err != nil {
			t.Fatal(err)
		}
		r.Activate(s)
		r.mu.Lock()
		got := len(r.watchdogs)
		for _, wd := range r.watchdogs {
			running = append(running, wd)
		}
		r.mu.Unlock()
		if got != tt.want {
			t.Errorf("%v: got %d watchdogs, want %d", tt.addrs, got, tt.want)
		}
	}
	r.Close()
	for _, wd := range running {
		select {
		case <-wd.done:
		default:
			t.Errorf("watchdog of %s still running after Close", wd.spec.cmp.addr)
		}
	}
}

// TestFailedAddressThreshold: with a threshold of 3, an address is skipped
// at the third failure within failedAddressSkip, not before; failures
// spread wider than the window never add up.
func TestFailedAddressThreshold(t *testing.T) {
	var s addrState
	skip := int64(10 * time.Second)
	now := mono()
	err := fmt.Errorf("bad")
	s.failN(now, skip, 3, err)
	s.failN(now+1, skip, 3, err)
	if !s.eligible(now + 2) {
		t.Fatal("skipped after 2 failures, threshold 3")
	}
	s.failN(now+2, skip, 3, err)
	if s.eligible(now+3) || !s.eligible(now+2+skip+1) {
		t.Fatal("third failure: want skipped for failedAddressSkip, then back")
	}
	// Spread out: one failure per window never trips.
	var w addrState
	for i := range 5 {
		w.failN(now+int64(i)*(skip+1), skip, 3, err)
	}
	if !w.eligible(now + 4*(skip+1)) {
		t.Error("failures further apart than the window added up")
	}
	if w.failures.Load() != 5 {
		t.Errorf("failures counted: got %d, want 5", w.failures.Load())
	}
	// Threshold 1 (the default): the first failure skips.
	var one addrState
	one.failN(now, skip, 1, err)
	if one.eligible(now + 1) {
		t.Error("threshold 1: not skipped after a failure")
	}
}

// rec is a minimal h1.ResponseWriter that keeps the status and body.
type rec struct {
	h      h1.Header
	status int
	body   strings.Builder
}

func (r *rec) Header() *h1.Header { return &r.h }
func (r *rec) WriteHeader(s int) {
	if r.status == 0 {
		r.status = s
	}
}
func (r *rec) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = 200
	}
	return r.body.Write(p)
}
func (r *rec) Flush() error { return nil }
func (r *rec) Hijack() (net.Conn, *bufio.Reader, error) {
	return nil, nil, fmt.Errorf("no hijack")
}
func (r *rec) Written() int64 { return int64(r.body.Len()) }
func (r *rec) Status() int    { return r.status }

type failingBody struct{ n int }

func (b *failingBody) Read(p []byte) (int, error) {
	if b.n > 0 {
		k := min(len(p), b.n)
		b.n -= k
		return k, nil
	}
	return 0, fmt.Errorf("client went away")
}

// TestForwardThroughRegistry: the per-address counters an operator sees
// (/remotehosts, metrics) follow what happened on the wire: a back end's
// extra bytes are counted, one bad exchange with the only address is
// followed by a fallback request that puts it back, and a client's fault
// leaves the address alone.
func TestForwardThroughRegistry(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					switch req.URL.Path {
					case "/evil":
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED")
					case "/drop":
						return
					default:
						fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(req.URL.Path), req.URL.Path)
					}
				}
			}()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	r := NewRegistry(Options{})
	h := host(t, r, load(t, fmt.Sprintf("    addresses:\n      - {address: 127.0.0.1, port: %d}\n", port)))
	send := func(method, path string, body io.Reader, cl int64) (*rec, error) {
		w := &rec{}
		var a h1.Attempt
		out := &h1.Outgoing{Method: []byte(method), Path: []byte(path), Body: body, ContentLength: cl}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := h.Forward(ctx, w, out, &a)
		return w, err
	}
	state := func() AddressState { return r.State().RemoteHosts[0].Addresses[0] }
	if w, err := send("GET", "/evil", nil, 0); err != nil || w.body.String() != "ok" {
		t.Fatalf("/evil: %v %q", err, w.body.String())
	}
	if w, err := send("GET", "/next", nil, 0); err != nil || w.body.String() != "/next" {
		t.Fatalf("after /evil: got %v %q, want /next (never the extra response)", err, w.body.String())
	}
	if got := state().UnsolicitedCloses; got != 1 {
		t.Errorf("unsolicitedCloses: got %d, want 1", got)
	}
	if m := r.AppendMetrics(nil); len(m) != 1 || m[0].Unsolicited != 1 {
		t.Errorf("metrics: got %+v, want Unsolicited 1", m)
	}

	// One bad exchange with the only address.
	if _, err := send("GET", "/drop", nil, 0); err == nil {
		t.Fatal("/drop: want an error")
	}
	if s := state(); s.Up || s.Failures != 1 {
		t.Fatalf("after /drop: got %+v, want down (failed) with 1 failure", s)
	}
	if w, err := send("GET", "/again", nil, 0); err != nil || w.body.String() != "/again" {
		t.Fatalf("fallback: got %v %q, want /again from the only address", err, w.body.String())
	}
	if s := state(); !s.Up || s.FallbackRequests != 1 || r.State().RemoteHosts[0].Fallback {
		t.Errorf("after the fallback request: got %+v, want up again after 1 fallback request", s)
	}

	// A client whose body fails: its fault, not the address's.
	if _, err := send("POST", "/up", &failingBody{n: 40 << 10}, 1<<20); err == nil {
		t.Fatal("failing client body: want an error")
	}
	if s := state(); !s.Up || s.Failures != 1 {
		t.Errorf("after a client's fault: got %+v, want still up with 1 failure", s)
	}
}
