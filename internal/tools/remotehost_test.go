package tools_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
)

// lbServer is a back end on one loopback address (127.0.0.x) that counts
// the requests it serves and can be slowed, made to answer the watchdog
// badly, or to close connections without answering.
type lbServer struct {
	ip       string
	port     int
	n        atomic.Int64
	delay    atomic.Int64 // ns added to every request
	wdStatus atomic.Int32 // status of GET /check
	closer   bool         // read the request, then close without answering
	ln       net.Listener
	srv      *http.Server
}

func startLB(t *testing.T, ip string, closer bool) *lbServer {
	t.Helper()
	s := &lbServer{ip: ip, closer: closer}
	s.wdStatus.Store(200)
	s.listen(t, 0)
	return s
}

func (s *lbServer) listen(t *testing.T, port int) {
	t.Helper()
	ln, err := net.Listen("tcp", fmt.Sprintf("%s:%d", s.ip, port))
	if err != nil {
		t.Fatalf("listening on %s (Linux routes 127/8 to lo): %v", s.ip, err)
	}
	s.ln, s.port = ln, ln.Addr().(*net.TCPAddr).Port
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve)}
	go s.srv.Serve(ln)
	t.Cleanup(func() { s.srv.Close() })
}

func (s *lbServer) stop() { s.srv.Close() }

func (s *lbServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/check" {
		w.WriteHeader(int(s.wdStatus.Load()))
		return
	}
	io.Copy(io.Discard, r.Body)
	s.n.Add(1)
	if s.closer {
		c, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			c.Close()
		}
		return
	}
	if d := s.delay.Load(); d > 0 {
		time.Sleep(time.Duration(d))
	}
	switch {
	case strings.HasSuffix(r.URL.Path, "/drop"):
		// One bad exchange: closed without an answer.
		if c, _, err := w.(http.Hijacker).Hijack(); err == nil {
			c.Close()
		}
		return
	case strings.HasSuffix(r.URL.Path, "/hang"):
		time.Sleep(3 * time.Second)
	case strings.HasSuffix(r.URL.Path, "/proto"):
		fmt.Fprintf(w, "%s %s", r.Proto, r.Header.Get("Connection"))
		return
	case strings.HasSuffix(r.URL.Path, "/big"):
		w.Header().Set("Content-Length", "2000")
		w.Write([]byte(strings.Repeat("b", 2000)))
		return
	case strings.HasSuffix(r.URL.Path, "/bigchunked"):
		for range 4 {
			w.Write([]byte(strings.Repeat("c", 500)))
			w.(http.Flusher).Flush()
		}
		return
	}
	fmt.Fprint(w, s.ip)
}

func (s *lbServer) addr(prio int) string {
	return fmt.Sprintf("      - {address: %s, port: %d, priority: %d}\n", s.ip, s.port, prio)
}

// lbGroup writes a group configuration with one back end per entry of
// hosts (name → remoteHosts entry body) and an API /<name> for each.
func lbGroup(hosts [][2]string) string {
	var b, rh, apis strings.Builder
	b.WriteString("backends:\n")
	for _, h := range hosts {
		fmt.Fprintf(&b, "  - name: %s\n    url: http://%s.test:8000\n", h[0], h[0])
		fmt.Fprintf(&rh, "  - host: %s.test\n%s", h[0], h[1])
		fmt.Fprintf(&apis, "  - name: %s\n    pathPrefix: /%s\n    backend: %s\n", h[0], h[0], h[0])
	}
	return b.String() + "remoteHosts:\n" + rh.String() + "apis:\n" + apis.String()
}

type rhState struct {
	RemoteHosts []struct {
		Name      string
		Fallback  bool
		Addresses []struct {
			Address          string
			Up               bool
			DownReason       string
			Requests         uint64
			Failures         uint64
			FallbackRequests uint64
			LastError        string
		}
	}
}

func TestRemoteHosts(t *testing.T) {
	ips := func(from, n int) []*lbServer {
		var out []*lbServer
		for i := range n {
			out = append(out, startLB(t, fmt.Sprintf("127.0.0.%d", from+i), false))
		}
		return out
	}
	rr := ips(2, 3)
	prio := ips(5, 2)
	wfast, wslow := startLB(t, "127.0.0.7", false), startLB(t, "127.0.0.8", false)
	wslow.delay.Store(int64(20 * time.Millisecond))
	bad, good := startLB(t, "127.0.0.9", true), startLB(t, "127.0.0.10", false)
	bad2, good2 := startLB(t, "127.0.0.11", true), startLB(t, "127.0.0.12", false)
	misc := startLB(t, "127.0.0.13", false)
	single := startLB(t, "127.0.0.16", false)
	wd := startLB(t, "127.0.0.14", false)
	deadPort := gwtest.FreePort(t)

	group := lbGroup([][2]string{
		{"rr", "    addresses:\n" + rr[0].addr(1) + rr[1].addr(1) + rr[2].addr(1)},
		{"prio", "    failedAddressSkip: 500ms\n    addresses:\n" + prio[0].addr(1) + prio[1].addr(2)},
		{"weighted", "    loadBalancing: responseTime\n    addresses:\n" + wfast.addr(1) + wslow.addr(1)},
		{"retryget", "    addresses:\n" + bad.addr(1) + good.addr(1)},
		{"retrypost", "    addresses:\n" + bad2.addr(1) + good2.addr(1)},
		{"down", fmt.Sprintf("    failedAddressSkip: 60\n    addresses:\n      - {address: 127.0.0.15, port: %d}\n", deadPort)},
		{"active", "    activeTimeout: 300ms\n    addresses:\n" + misc.addr(1)},
		{"single", "    addresses:\n" + single.addr(1)},
		{"tx", "    activeTimeout: 10\n    transactionTimeout: 300ms\n    addresses:\n" + misc.addr(1)},
		{"busy", "    maxConnections: 1\n    connectionWait: 100ms\n    addresses:\n" + misc.addr(1)},
		{"limits", "    maxSentBytes: 100\n    maxReceivedBytes: 1000\n    addresses:\n" + misc.addr(1)},
		{"h10", "    http10: true\n    addresses:\n" + misc.addr(1)},
		{"wd", "    watchdog: {enabled: true, method: GET, path: /check, interval: 50ms, timeout: 1, healthyThreshold: 1, unhealthyThreshold: 1}\n    addresses:\n" + wd.addr(1)},
	})
	h := gwtest.NewHome(t)
	p := newInstance(t, h, "G", "S", false)
	if err := os.WriteFile(h.Path("groups", "group-2", "conf", "group.yaml"), []byte(group), 0o644); err != nil {
		t.Fatal(err)
	}
	h.MustRun("", "startinstance", "-d", "-q", "-n", "S", "-g", "G")
	t.Cleanup(func() { h.Run("", "startinstance", "-k", "-q", "-n", "S", "-g", "G") })

	do := func(method, path, body string) (int, string, error) {
		req, _ := http.NewRequest(method, p.url(path), strings.NewReader(body))
		if body == "" {
			req.Body = nil
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	get := func(path string) (int, string) {
		t.Helper()
		code, body, err := do("GET", path, "")
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return code, body
	}
	state := func() rhState {
		t.Helper()
		_, body := h.MgmtGet(p.mgmt, "/remotehosts")
		var s rhState
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			t.Fatalf("GET /remotehosts: %v: %s", err, body)
		}
		return s
	}
	// until repeats f until it reports true (a condition, not a timing).
	until := func(what string, f func() bool) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); !f(); {
			if time.Now().After(deadline) {
				t.Fatalf("%s: never happened", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	t.Run("round robin spread", func(t *testing.T) {
		for range 30 {
			get("/rr")
		}
		for _, s := range rr {
			if got := s.n.Load(); got != 10 {
				t.Errorf("%s: got %d requests, want 10", s.ip, got)
			}
		}
	})

	t.Run("priority failover and recovery", func(t *testing.T) {
		if _, body := get("/prio"); body != prio[0].ip {
			t.Errorf("healthy: got %q, want %s (priority 1)", body, prio[0].ip)
		}
		port := prio[0].port
		prio[0].stop()
		for range 3 {
			if code, body := get("/prio"); code != 200 || body != prio[1].ip {
				t.Errorf("priority 1 down: got %d %q, want 200 %s", code, body, prio[1].ip)
			}
		}
		prio[0].listen(t, port)
		until("priority 1 used again after failedAddressSkip", func() bool { _, b := get("/prio"); return b == prio[0].ip })
	})

	t.Run("weighted favours the fast address", func(t *testing.T) {
		for range 200 {
			get("/weighted")
		}
		fast, slow := wfast.n.Load(), wslow.n.Load()
		if fast <= 2*slow || slow == 0 {
			t.Errorf("got fast %d, slow %d; want fast over twice slow, slow above 0", fast, slow)
		}
	})

	t.Run("retry only when safe", func(t *testing.T) {
		if code, body := get("/retryget"); code != 200 || body != good.ip {
			t.Errorf("GET after a closed connection: got %d %q, want 200 from %s", code, body, good.ip)
		}
		code, _, err := do("POST", "/retrypost", "payload")
		if err != nil || code != 502 {
			t.Errorf("POST after a closed connection: got %d (%v), want 502", code, err)
		}
		if bad2.n.Load() != 1 || good2.n.Load() != 0 {
			t.Errorf("POST: got %d and %d requests at the two addresses, want 1 and 0 (not retried)", bad2.n.Load(), good2.n.Load())
		}
	})

	t.Run("statuses", func(t *testing.T) {
		tests := []struct {
			name, method, path, body string
			want                     int
		}{
			{"connect refused", "GET", "/down", "", 502},
			// Its only address is skipped after failing, and still tried
			// (the fallback): refused again, not 503.
			{"only address skipped, still tried", "GET", "/down", "", 502},
			{"active timeout", "GET", "/active/hang", "", 504},
			{"transaction timeout", "GET", "/tx/hang", "", 504},
			{"over maxSentBytes", "POST", "/limits", strings.Repeat("x", 200), 413},
			{"under maxSentBytes", "POST", "/limits", strings.Repeat("x", 50), 200},
			{"declared response over maxReceivedBytes", "GET", "/limits/big", "", 502},
		}
		for _, tt := range tests {
			code, body, err := do(tt.method, tt.path, tt.body)
			if err != nil || code != tt.want {
				t.Errorf("%s: got %d (%v), want %d", tt.name, code, err, tt.want)
			}
			if tt.want >= 400 && !strings.Contains(body, fmt.Sprintf(`"code":%d`, tt.want)) {
				t.Errorf("%s: body %q is not the JSON error", tt.name, body)
			}
		}
		// A streamed response over the limit: the client connection is
		// aborted (the head may or may not have been flushed yet).
		code, body, err := do("GET", "/limits/bigchunked", "")
		if err == nil {
			t.Errorf("chunked response over maxReceivedBytes: got %d with %d bytes, want the connection aborted", code, len(body))
		}
	})

	t.Run("one bad exchange does not take the only address away", func(t *testing.T) {
		if code, _ := get("/single/drop"); code != 502 {
			t.Fatalf("closed without an answer: got %d, want 502", code)
		}
		for i := range 3 {
			if code, body := get("/single"); code != 200 || body != single.ip {
				t.Fatalf("request %d after one bad exchange: got %d %q, want 200 from the only address (failedAddressSkip is 30 s)", i, code, body)
			}
		}
		for _, rh := range state().RemoteHosts {
			switch rh.Name {
			case "single.test":
				if a := rh.Addresses[0]; a.Failures != 1 || a.FallbackRequests != 1 || !a.Up || rh.Fallback {
					t.Errorf("single.test: got %+v (fallback %v), want 1 failure, 1 fallback request, then up again", a, rh.Fallback)
				}
			case "down.test":
				if !rh.Fallback || rh.Addresses[0].FallbackRequests < 1 {
					t.Errorf("down.test: got fallback %v, %+v; want the fallback on", rh.Fallback, rh.Addresses[0])
				}
			}
		}
	})

	t.Run("maxConnections then 503", func(t *testing.T) {
		misc.delay.Store(int64(time.Second))
		defer misc.delay.Store(0)
		var wg sync.WaitGroup
		codes := make([]int, 2)
		for i := range codes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				codes[i], _, _ = do("GET", "/busy", "")
			}()
		}
		wg.Wait()
		if !(codes[0] == 503 && codes[1] == 200 || codes[0] == 200 && codes[1] == 503) {
			t.Errorf("two requests, one connection: got %v, want one 200 and one 503", codes)
		}
	})

	t.Run("upstream HTTP/1.0 and 1.1", func(t *testing.T) {
		if _, body := get("/h10/proto"); body != "HTTP/1.0 close" {
			t.Errorf("http10: back end saw %q, want HTTP/1.0 close", body)
		}
		if _, body := get("/limits/proto"); body != "HTTP/1.1 " {
			t.Errorf("default: back end saw %q, want HTTP/1.1 with keep-alive", body)
		}
	})

	t.Run("watchdog out and back", func(t *testing.T) {
		addrUp := func() (bool, string) {
			for _, rh := range state().RemoteHosts {
				if rh.Name == "wd.test" {
					return rh.Addresses[0].Up, rh.Addresses[0].DownReason
				}
			}
			t.Fatal("wd.test not in /remotehosts")
			return false, ""
		}
		wd.wdStatus.Store(500)
		until("watchdog takes the address out", func() bool { up, why := addrUp(); return !up && why == "watchdog" })
		if code, _ := get("/wd"); code != 503 {
			t.Errorf("address out: got %d, want 503", code)
		}
		wd.wdStatus.Store(404) // 2xx-4xx is alive
		until("watchdog brings the address back", func() bool { up, _ := addrUp(); return up })
		if code, _ := get("/wd"); code != 200 {
			t.Errorf("address back: got %d, want 200", code)
		}
	})

	t.Run("state JSON", func(t *testing.T) {
		s := state()
		var found bool
		for _, rh := range s.RemoteHosts {
			if rh.Name == "rr.test" {
				found = true
				if len(rh.Addresses) != 3 || rh.Addresses[0].Requests != 10 || !rh.Addresses[0].Up {
					t.Errorf("rr.test: got %+v, want 3 addresses up with 10 requests each", rh.Addresses)
				}
			}
			if rh.Name == "down.test" && (rh.Addresses[0].Up || rh.Addresses[0].DownReason != "failed" || rh.Addresses[0].LastError == "") {
				t.Errorf("down.test: got %+v, want down (failed) with its last error", rh.Addresses[0])
			}
		}
		if !found {
			t.Errorf("rr.test missing from %+v", s)
		}
	})
}
