package instance

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
)

// kaConn is one client connection kept alive by hand, so that a test knows
// which connection each request uses.
type kaConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialKA(t *testing.T, port int) *kaConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatalf("dial port %d: %v", port, err)
	}
	t.Cleanup(func() { c.Close() })
	return &kaConn{t: t, c: c, br: bufio.NewReader(c)}
}

// send writes a GET for path without reading the answer.
func (k *kaConn) send(path string) {
	k.t.Helper()
	if _, err := fmt.Fprintf(k.c, "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path); err != nil {
		k.t.Fatalf("GET %s: writing: %v", path, err)
	}
}

// read reads one answer (within 10 s).
func (k *kaConn) read() (response, error) {
	_ = k.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(k.br, nil)
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return response{}, err
	}
	return response{res.StatusCode, res.Header, string(b), res.Close}, nil
}

// get sends GET path and reads the answer; it fails the test when there is
// none.
func (k *kaConn) get(path string) response {
	k.t.Helper()
	k.send(path)
	r, err := k.read()
	if err != nil {
		k.t.Fatalf("GET %s on the kept-alive connection: %v", path, err)
	}
	return r
}

// closedByServer reports whether the server closed the connection (a read
// sees EOF or a reset within 10 s).
func (k *kaConn) closedByServer() bool {
	_ = k.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := k.br.ReadByte()
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// refuses reports whether nothing accepts connections on port.
func refuses(port int) bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 2*time.Second)
	if err != nil {
		return true
	}
	c.Close()
	return false
}

const twoAPIs = `
backends:
  - {name: sample, sample: true}
apis:
  - {name: sample, pathPrefix: /sample, stripPrefix: true, backend: sample}
  - {name: v2, pathPrefix: /v2, stripPrefix: true, backend: sample}
`

// A swap that changes no listener setting, under load: a kept-alive
// connection, an open WebSocket and an SSE stream opened before it keep
// working; the next request on the kept-alive connection uses the new
// routes; no request of the load fails.
func TestHotSwapKeepsConnections(t *testing.T) {
	p := newPorts(t)
	cfgA := loadConfig(t, quickstartYAML(p, sampleAPI))
	cfgB := loadConfig(t, quickstartYAML(p, twoAPIs))
	ti := startInstance(t, quickstartYAML(p, sampleAPI))
	ports := ti.Ports()

	ka := dialKA(t, p.traffic)
	if r := ka.get("/sample/echo"); r.status != 200 {
		t.Fatalf("kept-alive GET /sample/echo: got %d, want 200", r.status)
	}
	if r := ka.get("/v2/echo"); r.status != 404 {
		t.Fatalf("kept-alive GET /v2/echo before the swap: got %d, want 404", r.status)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, fmt.Sprintf("ws://127.0.0.1:%d/sample/ws", p.traffic), nil)
	if err != nil {
		t.Fatalf("WebSocket: %v", err)
	}
	defer ws.CloseNow()
	echo := func(msg string) {
		t.Helper()
		if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatalf("WebSocket write %q: %v", msg, err)
		}
		_, got, err := ws.Read(ctx)
		if err != nil || string(got) != msg {
			t.Fatalf("WebSocket echo: got %q, %v, want %q", got, err, msg)
		}
	}
	echo("before the swap")

	const events = 12
	sse := dialKA(t, p.traffic)
	sse.send(fmt.Sprintf("/sample/sse?n=%d&ms=50", events))
	_ = sse.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	res, err := http.ReadResponse(sse.br, nil)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("SSE: got %v, %v, want 200", res, err)
	}
	body := bufio.NewReader(res.Body)
	readEvent := func() string {
		t.Helper()
		var ev strings.Builder
		for {
			line, err := body.ReadString('\n')
			if err != nil {
				t.Fatalf("SSE: reading an event: %v (got %q)", err, ev.String())
			}
			if line == "\n" {
				return ev.String()
			}
			ev.WriteString(line)
		}
	}
	if ev := readEvent(); !strings.HasPrefix(ev, "id: 1\n") {
		t.Fatalf("SSE first event: got %q", ev)
	}

	// Load: keep-alive clients asking all the time.
	var sent, failed atomic.Int64
	var firstErr atomic.Value
	done := make(chan struct{}, 1024) // one per finished request, when there is room
	awaitRequests := func(n int) {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for range n {
			select {
			case <-done:
			case <-timeout:
				t.Fatalf("load: fewer than %d requests in 20 s", n)
			}
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer c.CloseIdleConnections()
			for {
				select {
				case <-stop:
					return
				default:
				}
				sent.Add(1)
				res, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/sample/echo", p.traffic))
				if err == nil {
					_, err = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if err == nil && res.StatusCode != 200 {
						err = fmt.Errorf("status %d", res.StatusCode)
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
				select {
				case done <- struct{}{}:
				default:
				}
			}
		})
	}
	awaitRequests(20)
	for n := range 10 {
		cfg := cfgB
		if n%2 == 1 {
			cfg = cfgA
		}
		if err := ti.Swap(cfg); err != nil {
			t.Fatalf("Swap %d: %v", n, err)
		}
		for len(done) > 0 { // only requests after this swap count
			<-done
		}
		awaitRequests(8)
	}
	if err := ti.Swap(cfgB); err != nil {
		t.Fatalf("Swap: %v", err)
	}
	close(stop)
	wg.Wait()
	if failed.Load() > 0 || sent.Load() == 0 {
		t.Errorf("load during the swaps: %d of %d requests failed (first: %v), want none of some", failed.Load(), sent.Load(), firstErr.Load())
	}

	if r := ka.get("/v2/echo"); r.status != 200 || r.close {
		t.Errorf("kept-alive GET /v2/echo after the swap: got %d (close %v), want 200 on the same connection", r.status, r.close)
	}
	echo("after the swap")
	for n := 2; n <= events; n++ {
		if ev := readEvent(); !strings.HasPrefix(ev, fmt.Sprintf("id: %d\n", n)) {
			t.Fatalf("SSE event %d: got %q", n, ev)
		}
	}
	if b, err := io.ReadAll(body); err != nil || len(b) != 0 {
		t.Errorf("SSE end: got %q, %v, want the stream to end cleanly", b, err)
	}
	res.Body.Close()
	if got := ti.Ports(); got != ports {
		t.Errorf("ports: got %+v, want %+v (unchanged)", got, ports)
	}
	if got, want := ti.Status().ConfigChecksum, cfgB.Checksum(); got != want {
		t.Errorf("configChecksum: got %s, want %s", got, want)
	}
}

// A traffic port change: the new port serves at once, the old one refuses;
// on the old port a request in flight finishes (with Connection: close) and
// an idle kept-alive connection is closed. A port that cannot be bound
// refuses the whole swap and changes nothing.
func TestHotSwapTrafficPort(t *testing.T) {
	p := newPorts(t)
	zdt := "zeroDowntime: {shutdown: {drainTimeout: 20}}\n"
	ti := startInstance(t, quickstartYAML(p, zdt+sampleAPI))

	idle := dialKA(t, p.traffic)
	if r := idle.get("/sample/echo"); r.status != 200 {
		t.Fatalf("GET /sample/echo: got %d, want 200", r.status)
	}
	busy := dialKA(t, p.traffic)
	busy.send("/sample/delay/700")
	ti.awaitEntered(t, "/sample/delay/700")

	// A port held by someone else (the test) refuses the swap.
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	p2 := p
	p2.traffic = held.Addr().(*net.TCPAddr).Port
	before := ti.Status()
	err = ti.Swap(loadConfig(t, quickstartYAML(p2, zdt+twoAPIs)))
	var pe *PortInUseError
	if !errors.Is(err, ErrListen) || !errors.As(err, &pe) || pe.Port != p2.traffic || pe.PID != os.Getpid() {
		t.Fatalf("Swap to a held port: got %v, want ErrListen with a *PortInUseError naming port %d and pid %d", err, p2.traffic, os.Getpid())
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("port %d", p2.traffic)) {
		t.Errorf("error: got %q, want it to name port %d", err, p2.traffic)
	}
	if after := ti.Status(); after.ConfigChecksum != before.ConfigChecksum || after.Ports != before.Ports {
		t.Errorf("after a refused swap: got checksum %s ports %+v, want %s %+v", after.ConfigChecksum, after.Ports, before.ConfigChecksum, before.Ports)
	}
	if r := idle.get("/v2/echo"); r.status != 404 {
		t.Errorf("after a refused swap GET /v2/echo: got %d, want 404 (old routes)", r.status)
	}

	// A free port: moved.
	p2.traffic = freePort(t)
	if err := ti.Swap(loadConfig(t, quickstartYAML(p2, zdt+twoAPIs))); err != nil {
		t.Fatalf("Swap to port %d: %v", p2.traffic, err)
	}
	if got := ti.Ports().Traffic; got != p2.traffic {
		t.Errorf("Ports().Traffic: got %d, want %d", got, p2.traffic)
	}
	if r := do(t, nil, "GET", fmt.Sprintf("http://127.0.0.1:%d/v2/echo", p2.traffic), nil); r.status != 200 {
		t.Errorf("new port GET /v2/echo: got %d, want 200", r.status)
	}
	if !refuses(p.traffic) {
		t.Errorf("old port %d: got a connection, want refused", p.traffic)
	}
	r, err := busy.read()
	if err != nil || r.status != 200 || !r.close {
		t.Errorf("request in flight on the old port: got %d close=%v err=%v, want 200 with Connection: close", r.status, r.close, err)
	}
	if !idle.closedByServer() {
		t.Errorf("idle kept-alive connection on the old port: still open, want closed")
	}
}

// A request still running on a replaced listener after the drain timeout
// has its connection closed.
func TestHotSwapDrainTimeout(t *testing.T) {
	p := newPorts(t)
	zdt := "zeroDowntime: {shutdown: {drainTimeout: 300ms}}\n"
	ti := startInstance(t, quickstartYAML(p, zdt+sampleAPI))
	busy := dialKA(t, p.traffic)
	busy.send("/sample/delay/8000")
	ti.awaitEntered(t, "/sample/delay/8000")
	p2 := p
	p2.traffic = freePort(t)
	start := time.Now()
	if err := ti.Swap(loadConfig(t, quickstartYAML(p2, zdt+sampleAPI))); err != nil {
		t.Fatalf("Swap: %v", err)
	}
	if r, err := busy.read(); err == nil {
		t.Errorf("request past the drain timeout: got %d, want its connection closed", r.status)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("connection closed after %v, want about the drain timeout (300ms)", d)
	}
}

// Settings that keep the socket (here idleTimeout) get a new server on the
// same port: new connections are served by it, idle ones of the old server
// are closed; nothing refuses in between.
func TestHotSwapSameSocket(t *testing.T) {
	p := newPorts(t)
	ti := startInstance(t, quickstartYAML(p, sampleAPI))
	idle := dialKA(t, p.traffic)
	if r := idle.get("/sample/echo"); r.status != 200 {
		t.Fatalf("GET: got %d, want 200", r.status)
	}
	yaml := strings.Replace(quickstartYAML(p, twoAPIs), "traffic: {", "traffic: {idleTimeout: 30, ", 1)
	if err := ti.Swap(loadConfig(t, yaml)); err != nil {
		t.Fatalf("Swap: %v", err)
	}
	if r := do(t, nil, "GET", ti.base+"/v2/echo", nil); r.status != 200 {
		t.Errorf("GET /v2/echo on a new connection: got %d, want 200", r.status)
	}
	if !idle.closedByServer() {
		t.Errorf("idle connection of the replaced server: still open, want closed")
	}
	if got := ti.rt.Load().cfg.Traffic.IdleTimeout; got != groupconf.Seconds(30) {
		t.Errorf("idleTimeout: got %v, want 30s", got)
	}
}

// The management and sample listeners move too.
func TestHotSwapManagementAndSample(t *testing.T) {
	p := newPorts(t)
	ti := startInstance(t, quickstartYAML(p, sampleAPI))
	p2 := testPorts{traffic: p.traffic}
	q := freePorts(t, 2)
	p2.management, p2.sample = q[0], q[1]
	if err := ti.Swap(loadConfig(t, quickstartYAML(p2, sampleAPI))); err != nil {
		t.Fatalf("Swap: %v", err)
	}
	if got := ti.Ports(); got.Management != p2.management || got.Sample != p2.sample || got.Traffic != p.traffic {
		t.Errorf("Ports: got %+v, want %+v", got, p2)
	}
	if r := do(t, nil, "GET", fmt.Sprintf("http://127.0.0.1:%d/status", p2.management), nil); r.status != 200 {
		t.Errorf("new management port /status: got %d, want 200", r.status)
	}
	if r := do(t, nil, "GET", fmt.Sprintf("http://127.0.0.1:%d/echo", p2.sample), nil); r.status != 200 {
		t.Errorf("new sample port /echo: got %d, want 200", r.status)
	}
	if r := do(t, nil, "GET", ti.base+"/sample/echo", nil); r.status != 200 {
		t.Errorf("through the gateway /sample/echo: got %d, want 200", r.status)
	}
	for _, port := range []int{p.management, p.sample} {
		if !refuses(port) {
			t.Errorf("old port %d: got a connection, want refused", port)
		}
	}
	// Shutdown stops the new generations.
	if err := ti.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for _, port := range []int{p.traffic, p2.management, p2.sample} {
		if !refuses(port) {
			t.Errorf("port %d after Shutdown: got a connection, want refused", port)
		}
	}
}

func postJSON(t *testing.T, c *http.Client, url, body string) response {
	t.Helper()
	if c == nil {
		c = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	}
	res, err := c.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return response{res.StatusCode, res.Header, string(b), res.Close}
}

// POST /deployment/lb takes the instance out of the load balancer and back:
// /healthchecklb follows, everything else is served throughout, /status
// and /metrics say so, and shutdown works from out of service.
func TestOutOfService(t *testing.T) {
	ti := startInstance(t, quickstartYAML(newPorts(t), sampleAPI))
	check := func(when string, lb int, inService bool, gauge string) {
		t.Helper()
		r := do(t, nil, "GET", ti.base+"/healthchecklb", nil)
		wantBody := "<status>ok</status>"
		if lb != 200 {
			wantBody = "<status>unavailable</status>"
		}
		if r.status != lb || r.body != wantBody {
			t.Errorf("%s: /healthchecklb got %d %q, want %d %q", when, r.status, r.body, lb, wantBody)
		}
		if r := do(t, nil, "GET", ti.base+"/healthcheck", nil); r.status != 200 {
			t.Errorf("%s: /healthcheck got %d, want 200", when, r.status)
		}
		if r := do(t, nil, "GET", ti.base+"/sample/echo", nil); r.status != 200 {
			t.Errorf("%s: /sample/echo got %d, want 200", when, r.status)
		}
		var st Status
		if err := json.Unmarshal([]byte(do(t, nil, "GET", ti.mgmt+"/status", nil).body), &st); err != nil || st.InService != inService {
			t.Errorf("%s: /status inService got %v (%v), want %v", when, st.InService, err, inService)
		}
		if m := do(t, nil, "GET", ti.mgmt+"/metrics", nil).body; !strings.Contains(m, "\ngatehouse_in_service "+gauge+"\n") {
			t.Errorf("%s: /metrics: want gatehouse_in_service %s", when, gauge)
		}
	}
	check("at start", 200, true, "1")
	r := postJSON(t, nil, ti.mgmt+"/deployment/lb", `{"inService": false}`)
	if r.status != 200 || !strings.Contains(r.body, `"inService":false`) {
		t.Fatalf("POST /deployment/lb false: got %d %s, want 200 with the status", r.status, r.body)
	}
	check("out of service", 503, false, "0")
	if r := postJSON(t, nil, ti.mgmt+"/deployment/lb", `{"inService": true}`); r.status != 200 {
		t.Fatalf("POST /deployment/lb true: got %d %s, want 200", r.status, r.body)
	}
	check("back in service", 200, true, "1")

	for _, body := range []string{``, `{}`, `{"inService": "no"}`, `{"inService": false, "x": 1}`, `{"inService": false} {}`, `[]`, strings.Repeat(" ", 2000) + `{"inService": false}`} {
		if r := postJSON(t, nil, ti.mgmt+"/deployment/lb", body); r.status != 400 || !strings.Contains(r.body, `"error"`) {
			t.Errorf("POST /deployment/lb %q: got %d %s, want 400 with an error", body, r.status, r.body)
		}
	}
	if r := do(t, nil, "GET", ti.mgmt+"/deployment/lb", nil); r.status != 405 || r.header.Get("Allow") != "POST" {
		t.Errorf("GET /deployment/lb: got %d Allow=%q, want 405 Allow=POST", r.status, r.header.Get("Allow"))
	}
	check("after refused bodies", 200, true, "1")

	postJSON(t, nil, ti.mgmt+"/deployment/lb", `{"inService": false}`)
	if err := ti.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown out of service: %v", err)
	}
	if got := ti.Phase(); got != PhaseStopped {
		t.Errorf("phase: got %v, want stopped", got)
	}
}

// FuzzLBBody: the body parser of POST /deployment/lb never panics and
// accepts only {"inService": bool} and {"inService": false,
// "leaseSeconds": 1..3600}.
func FuzzLBBody(f *testing.F) {
	for _, s := range []string{`{"inService": false}`, `{"inService":true}`, `{}`, `null`, `{"inService": null}`, `{"inService": 1}`,
		`{"inService": false, "leaseSeconds": 30}`, `{"inService": true, "leaseSeconds": 30}`, `{"inService": false, "leaseSeconds": 0}`,
		`{"inService": false, "leaseSeconds": 3601}`, `{"inService": false, "leaseSeconds": 1.5}`, `{"inService": false, "leaseSeconds": null}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		on, lease, err := parseLBBody(strings.NewReader(s))
		if err != nil {
			return
		}
		// The rules, on what encoding/json makes of the body (keys match
		// case-insensitively, the last of two wins, as for every JSON body
		// of the management APIs): only these fields, inService given,
		// leaseSeconds a whole number from 1 to 3600 with inService false.
		var b struct {
			InService    *bool    `json:"inService"`
			LeaseSeconds *float64 `json:"leaseSeconds"`
		}
		dec := json.NewDecoder(strings.NewReader(s))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&b); err != nil || b.InService == nil || *b.InService != on {
			t.Fatalf("parseLBBody(%q) = %v %v, want an error (%v)", s, on, lease, err)
		}
		switch n := b.LeaseSeconds; {
		case n == nil:
			if lease != 0 {
				t.Fatalf("parseLBBody(%q): lease %v without leaseSeconds", s, lease)
			}
		case on || *n < 1 || *n > 3600 || *n != float64(int64(*n)) || time.Duration(*n)*time.Second != lease:
			t.Fatalf("parseLBBody(%q) = %v %v", s, on, lease)
		}
	})
}

// An out-of-service lease: the instance goes back in service by itself
// when it runs out; renewing it (another POST) pushes the end back; putting
// the instance back or taking it out without a lease ends it; /status shows
// when it runs out.
func TestOutOfServiceLease(t *testing.T) {
	ti := startInstance(t, quickstartYAML(newPorts(t), sampleAPI))
	status := func() Status {
		t.Helper()
		var st Status
		if err := json.Unmarshal([]byte(do(t, nil, "GET", ti.mgmt+"/status", nil).body), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	lb := func() int { return do(t, nil, "GET", ti.base+"/healthchecklb", nil).status }
	before := time.Now()
	if r := postJSON(t, nil, ti.mgmt+"/deployment/lb", `{"inService": false, "leaseSeconds": 2}`); r.status != 200 {
		t.Fatalf("POST a lease: %d %s", r.status, r.body)
	}
	st := status()
	if st.InService || st.OutOfServiceUntil.Before(before.Add(2*time.Second)) || st.OutOfServiceUntil.After(time.Now().Add(2*time.Second)) || lb() != 503 {
		t.Fatalf("with a lease of 2 s: %+v, /healthchecklb %d", st, lb())
	}
	// Renewed at half time: still out after the first lease would have ended.
	time.Sleep(time.Second)
	postJSON(t, nil, ti.mgmt+"/deployment/lb", `{"inService": false, "leaseSeconds": 2}`)
	time.Sleep(time.Until(before.Add(2300 * time.Millisecond)))
	if st := status(); st.InService || lb() != 503 {
		t.Fatalf("renewed: back in service 2.3 s into a lease of 2 s renewed at 1 s: %+v", st)
	}
	// Runs out: back in service, no end shown.
	deadline := time.Now().Add(5 * time.Second)
	for lb() != 200 {
		if time.Now().After(deadline) {
			t.Fatalf("the lease did not run out: %+v", status())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := status(); !st.InService || !st.OutOfServiceUntil.IsZero() {
		t.Fatalf("after the lease: %+v", st)
	}
	// Taken out without a lease after a lease: stays out (the old timer
	// does nothing).
	postJSON(t, nil, ti.mgmt+"/deployment/lb", `{"inService": false, "leaseSeconds": 1}`)
	postJSON(t, nil, ti.mgmt+"/deployment/lb", `{"inService": false}`)
	time.Sleep(1300 * time.Millisecond)
	if st := status(); st.InService || !st.OutOfServiceUntil.IsZero() || lb() != 503 {
		t.Fatalf("out without a lease after a lease: %+v", st)
	}
	// Back in, then a lease ended by putting it back: the timer does not
	// fire later on a new state.
	postJSON(t, nil, ti.mgmt+"/deployment/lb", `{"inService": false, "leaseSeconds": 1}`)
	postJSON(t, nil, ti.mgmt+"/deployment/lb", `{"inService": true}`)
	postJSON(t, nil, ti.mgmt+"/deployment/lb", `{"inService": false}`)
	time.Sleep(1300 * time.Millisecond)
	if st := status(); st.InService {
		t.Fatalf("a lease ended by inService true came back: %+v", st)
	}
	for _, body := range []string{`{"inService": true, "leaseSeconds": 5}`, `{"inService": false, "leaseSeconds": 0}`, `{"inService": false, "leaseSeconds": 3601}`, `{"inService": false, "leaseSeconds": "5"}`} {
		if r := postJSON(t, nil, ti.mgmt+"/deployment/lb", body); r.status != 400 || !strings.Contains(r.body, "leaseSeconds") && !strings.Contains(r.body, "inService") {
			t.Errorf("POST %s: %d %s, want 400", body, r.status, r.body)
		}
	}
	if r := postJSON(t, nil, ti.mgmt+"/deployment/lb", `{"inService": false, "leaseSeconds": 3600}`); r.status != 200 {
		t.Errorf("a lease of 3600 s: %d %s", r.status, r.body)
	}
}

// POST /deployment/reload loads the configuration again (Options.Load) and
// swaps it in: 200 with the new status; a configuration that does not load
// is 422 naming file and line, a port that cannot be bound 409 naming the
// port, and nothing changes.
func TestReloadEndpoint(t *testing.T) {
	p := newPorts(t)
	file := filepath.Join(t.TempDir(), "group.yaml")
	write := func(yaml string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	load := func() (*groupconf.Config, error) {
		l, err := groupconf.FileLayer(file)
		if err != nil {
			return nil, err
		}
		return groupconf.Load(l)
	}
	write(quickstartYAML(p, sampleAPI))
	ti := startInstance(t, quickstartYAML(p, sampleAPI), func(o *Options) { o.Load = load })
	reload := func() response { return postJSON(t, nil, ti.mgmt+"/deployment/reload", "") }

	write(quickstartYAML(p, twoAPIs))
	want, err := load()
	if err != nil {
		t.Fatal(err)
	}
	r := reload()
	var st Status
	if r.status != 200 || json.Unmarshal([]byte(r.body), &st) != nil || st.ConfigChecksum != want.Checksum() {
		t.Fatalf("reload: got %d %s, want 200 with configChecksum %s", r.status, r.body, want.Checksum())
	}
	if r := do(t, nil, "GET", ti.base+"/v2/echo", nil); r.status != 200 {
		t.Errorf("after reload /v2/echo: got %d, want 200", r.status)
	}

	// Invalid: an unknown key on line 3.
	write("traffic:\n  port: 1\n  colour: blue\n")
	r = reload()
	if r.status != 422 || !strings.Contains(r.body, file+":3") || !strings.Contains(r.body, `"error"`) {
		t.Errorf("reload of an invalid file: got %d %s, want 422 naming %s:3", r.status, r.body, file)
	}
	// A route that does not compile.
	write(quickstartYAML(p, twoAPIs+"  - {name: bad, path: /a/{x, backend: sample}\n"))
	if r := reload(); r.status != 422 {
		t.Errorf("reload with a bad route: got %d %s, want 422", r.status, r.body)
	}
	// A traffic port that is taken.
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	p2 := p
	p2.traffic = held.Addr().(*net.TCPAddr).Port
	write(quickstartYAML(p2, twoAPIs))
	r = reload()
	if r.status != 409 || !strings.Contains(r.body, fmt.Sprintf("port %d", p2.traffic)) || !strings.Contains(r.body, fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("reload onto a taken port: got %d %s, want 409 naming port %d and pid %d", r.status, r.body, p2.traffic, os.Getpid())
	}
	if got := ti.Status().ConfigChecksum; got != want.Checksum() {
		t.Errorf("configChecksum after refused reloads: got %s, want %s (unchanged)", got, want.Checksum())
	}
	if r := do(t, nil, "GET", ti.base+"/v2/echo", nil); r.status != 200 {
		t.Errorf("after refused reloads /v2/echo: got %d, want 200", r.status)
	}
	if r := do(t, nil, "GET", ti.mgmt+"/deployment/reload", nil); r.status != 405 {
		t.Errorf("GET /deployment/reload: got %d, want 405", r.status)
	}
	// Reloads are serialized: several at once all succeed.
	write(quickstartYAML(p, sampleAPI))
	var wg sync.WaitGroup
	codes := make([]int, 4)
	for n := range codes {
		wg.Go(func() {
			res, err := http.Post(ti.mgmt+"/deployment/reload", "application/json", nil)
			if err == nil {
				codes[n] = res.StatusCode
				res.Body.Close()
			}
		})
	}
	wg.Wait()
	for n, c := range codes {
		if c != 200 {
			t.Errorf("concurrent reload %d: got %d, want 200", n, c)
		}
	}
	// The log names every reload.
	if err := ti.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	logData, err := os.ReadFile(filepath.Join(ti.home.InstanceLogsDir(groupID, instanceID), "instance.log"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(logData), `"msg":"configuration reloaded"`); n != 5 {
		t.Errorf("instance.log: got %d 'configuration reloaded' lines, want 5", n)
	}
	if n := strings.Count(string(logData), `"msg":"configuration reload refused; nothing changed"`); n != 3 {
		t.Errorf("instance.log: got %d 'reload refused' lines, want 3", n)
	}
}

// Without Options.Load a reload is refused as a configuration error.
func TestReloadWithoutLoad(t *testing.T) {
	ti := startInstance(t, quickstartYAML(newPorts(t), sampleAPI))
	if err := ti.Reload(); !errors.Is(err, ErrConfig) {
		t.Errorf("Reload: got %v, want ErrConfig", err)
	}
}

// With mutual TLS only node managers may POST: an instance's certificate
// (or any other domain certificate) reads the status but gets 403 on the
// POST endpoints.
func TestDeploymentEndpointsNodeManagersOnly(t *testing.T) {
	ti, ca, base := startDomainTLSInstance(t, quickstartYAML(newPorts(t), sampleAPI))
	client := func(cn string) *http.Client { return domainClient(t, ca, cn) }
	nm := client("Gatehouse Node Manager nodemanager-1 (host-1)")
	for _, cn := range []string{pki.InstanceCommonName("group-9", "instance-9"), "gwtest client"} {
		c := client(cn)
		if r := postJSON(t, c, base+"/deployment/lb", `{"inService": false}`); r.status != 403 || !strings.Contains(r.body, "node manager") {
			t.Errorf("%s: POST /deployment/lb got %d %s, want 403", cn, r.status, r.body)
		}
		if r := postJSON(t, c, base+"/deployment/reload", ``); r.status != 403 {
			t.Errorf("%s: POST /deployment/reload got %d %s, want 403", cn, r.status, r.body)
		}
		if r := do(t, c, "GET", base+"/status", nil); r.status != 200 {
			t.Errorf("%s: GET /status got %d, want 200", cn, r.status)
		}
	}
	if !ti.InService() {
		t.Fatal("in service: got false after refused requests, want true")
	}
	if r := postJSON(t, nm, base+"/deployment/lb", `{"inService": false}`); r.status != 200 {
		t.Errorf("node manager: POST /deployment/lb got %d %s, want 200", r.status, r.body)
	}
	if ti.InService() {
		t.Error("in service: got true after the node manager's request, want false")
	}
}

// /status names the deployment archive of the configuration, and nothing
// when it was not deployed.
func TestStatusDeployment(t *testing.T) {
	p := newPorts(t)
	ti := startInstance(t, quickstartYAML(p, sampleAPI))
	if r := do(t, nil, "GET", ti.mgmt+"/status", nil); strings.Contains(r.body, `"deployment"`) || !strings.Contains(r.body, `"inService":true`) {
		t.Errorf("undeployed /status: got %s, want no deployment and inService true", r.body)
	}
	cfg := loadConfig(t, quickstartYAML(p, twoAPIs))
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cfg.Deployment = &groupconf.Deployed{Group: groupID, Archive: 7, Checksum: "abc123", DeployedAt: at, DeployedBy: "admin", Comment: "v2 API"}
	if err := ti.Swap(cfg); err != nil {
		t.Fatalf("Swap: %v", err)
	}
	var st struct {
		Deployment *Deployment `json:"deployment"`
	}
	r := do(t, nil, "GET", ti.mgmt+"/status", nil)
	if err := json.Unmarshal([]byte(r.body), &st); err != nil || st.Deployment == nil {
		t.Fatalf("/status: got %s (%v), want a deployment", r.body, err)
	}
	want := Deployment{Archive: 7, Checksum: "abc123", DeployedAt: at, DeployedBy: "admin", Comment: "v2 API"}
	if *st.Deployment != want {
		t.Errorf("deployment: got %+v, want %+v", *st.Deployment, want)
	}
}

// With TLS and HTTP/2: a swap of APIs keeps the HTTP/2 connection; a swap
// that turns HTTP/2 off keeps the port and serves the next connections with
// HTTP/1.1 (the old HTTP/2 connection is drained with a GOAWAY).
func TestHotSwapTLS(t *testing.T) {
	ca, err := pki.NewCA("D")
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.IssueKeyPair("localhost", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, false)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "private", "key.pem")
	if err := kp.Save(home.Home{Dir: dir}, certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	p := newPorts(t)
	yaml := func(http2 bool, apis string) string {
		return strings.Replace(quickstartYAML(p, apis), "traffic: {", fmt.Sprintf("traffic: {tls: {certFile: %s, keyFile: %s}, http2: %v, ", certFile, keyFile, http2), 1)
	}
	ti := startInstance(t, yaml(true, sampleAPI))
	var reused atomic.Bool
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { reused.Store(info.Reused) }}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{ForceAttemptHTTP2: true,
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}}}
	defer client.CloseIdleConnections()
	get := func(path string) (int, int) {
		t.Helper()
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), "GET", fmt.Sprintf("https://127.0.0.1:%d%s", p.traffic, path), nil)
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode, res.ProtoMajor
	}
	if code, proto := get("/sample/echo"); code != 200 || proto != 2 {
		t.Fatalf("GET /sample/echo: got %d HTTP/%d, want 200 HTTP/2", code, proto)
	}
	if err := ti.Swap(loadConfig(t, yaml(true, twoAPIs))); err != nil {
		t.Fatalf("Swap: %v", err)
	}
	if code, proto := get("/v2/echo"); code != 200 || proto != 2 || !reused.Load() {
		t.Errorf("GET /v2/echo after an API swap: got %d HTTP/%d reused=%v, want 200 on the same HTTP/2 connection", code, proto, reused.Load())
	}
	if err := ti.Swap(loadConfig(t, yaml(false, twoAPIs))); err != nil {
		t.Fatalf("Swap turning HTTP/2 off: %v", err)
	}
	if got := ti.Ports().Traffic; got != p.traffic {
		t.Errorf("traffic port: got %d, want %d (kept)", got, p.traffic)
	}
	// The old server drains: a request sent before its GOAWAY reached the
	// client may still be served on the old HTTP/2 connection (and must
	// succeed); the next ones go over HTTP/1.1 on a new connection.
	for deadline := time.Now().Add(5 * time.Second); ; {
		code, proto := get("/v2/echo")
		if code != 200 {
			t.Fatalf("GET /v2/echo after turning HTTP/2 off: got %d", code)
		}
		if proto == 1 && !reused.Load() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /v2/echo after turning HTTP/2 off: still HTTP/%d reused=%v after 5 s, want HTTP/1.1 on a new connection", proto, reused.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
