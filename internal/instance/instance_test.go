package instance

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/h1"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
	"github.com/gatehouse-gw/gatehouse/internal/proxy"
	"github.com/gatehouse-gw/gatehouse/internal/sample"
)

const (
	groupID    = "group-2"
	instanceID = "instance-1"
)

// handedOut holds every port freePorts has returned in this test process, so
// that two calls (newPorts, then freePort for a bus route) never return the
// same port while the first is not yet listening.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// freePorts returns n distinct TCP ports of 127.0.0.1 that were free a
// moment ago and that no earlier call returned. They are taken below the
// kernel's ephemeral range, so that neither outgoing connections nor other
// listeners on port 0 pick them in the meantime.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			t.Fatal("no free port found")
		}
		port := 20000 + rand.IntN(12000)
		if handedOut.ports[port] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		lns = append(lns, ln)
		ports = append(ports, port)
		handedOut.ports[port] = true
	}
	return ports
}

func freePort(t *testing.T) int { return freePorts(t, 1)[0] }

// refusingPort returns a port of 127.0.0.1 that refuses connections until the
// end of the test: a socket is bound to it but does not listen, so that no
// one else can listen there.
func refusingPort(t *testing.T) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return sa.(*syscall.SockaddrInet4).Port
}

// ports of one test instance.
type testPorts struct{ traffic, management, sample int }

func newPorts(t *testing.T) testPorts {
	p := freePorts(t, 3)
	return testPorts{p[0], p[1], p[2]}
}

// quickstartYAML is the QuickStart configuration, on the given ports, with
// extra YAML appended (more APIs or back ends are given in full by extra).
func quickstartYAML(p testPorts, extra string) string {
	return fmt.Sprintf(`
traffic: {address: 127.0.0.1, port: %d}
management: {address: 127.0.0.1, port: %d}
sample: {enabled: true, address: 127.0.0.1, port: %d}
log: {level: debug}
%s`, p.traffic, p.management, p.sample, extra)
}

const sampleAPI = `
backends:
  - name: sample
    sample: true
apis:
  - name: sample
    pathPrefix: /sample
    stripPrefix: true
    backend: sample
`

func loadConfig(t *testing.T, yaml string) *groupconf.Config {
	t.Helper()
	cfg, err := groupconf.Load(groupconf.Layer{Name: "group.yaml", YAML: []byte(yaml)})
	if err != nil {
		t.Fatalf("loading configuration: %v", err)
	}
	return cfg
}

type testInstance struct {
	*Instance
	home    home.Home
	base    string // http://127.0.0.1:<traffic port>
	mgmt    string // http://127.0.0.1:<management port>
	phases  chan Phase
	entered chan string // paths of traffic requests as they enter
}

// newInstance creates (but does not start) an instance in a fresh install
// directory. Phase changes and entering requests are reported on channels.
func newInstance(t *testing.T, yaml string, mod ...func(*Options)) *testInstance {
	t.Helper()
	h, err := home.At(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"conf", "logs", "trace"} {
		if err := os.MkdirAll(filepath.Join(h.InstanceDir(groupID, instanceID), d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := Options{
		Home: h, GroupID: groupID, InstanceID: instanceID,
		GroupName: "QuickStart Group", InstanceName: "QuickStart Server",
		Config: loadConfig(t, yaml), Quiet: true,
	}
	for _, m := range mod {
		m(&opts)
	}
	inst, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ti := &testInstance{Instance: inst, home: h, phases: make(chan Phase, 16), entered: make(chan string, 64)}
	inst.testHookPhase = func(p Phase) { ti.phases <- p }
	inst.testHookRequest = func(r *h1.Request) {
		select {
		case ti.entered <- string(r.Path):
		default:
		}
	}
	return ti
}

// startInstance creates and starts an instance; it is closed at the end of
// the test.
func startInstance(t *testing.T, yaml string, mod ...func(*Options)) *testInstance {
	t.Helper()
	ti := newInstance(t, yaml, mod...)
	if err := ti.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = ti.Close() })
	p := ti.Ports()
	ti.base = fmt.Sprintf("http://127.0.0.1:%d", p.Traffic)
	ti.mgmt = fmt.Sprintf("http://127.0.0.1:%d", p.Management)
	if got := <-ti.phases; got != PhaseServing {
		t.Fatalf("first phase: got %v, want serving", got)
	}
	return ti
}

// awaitPhase reads phase changes until p.
func (ti *testInstance) awaitPhase(t *testing.T, p Phase) {
	t.Helper()
	for got := range ti.phases {
		if got == p {
			return
		}
		if got > p {
			t.Fatalf("phase: got %v, want %v", got, p)
		}
	}
}

// awaitEntered waits until a traffic request for path has entered the gateway.
func (ti *testInstance) awaitEntered(t *testing.T, path string) {
	t.Helper()
	for p := range ti.entered {
		if p == path {
			return
		}
	}
}

type response struct {
	status int
	header http.Header
	body   string
	close  bool // the server asked to close the connection
}

func do(t *testing.T, c *http.Client, method, url string, header http.Header) response {
	t.Helper()
	if c == nil {
		c = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	}
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return response{res.StatusCode, res.Header, string(b), res.Close}
}

var generatedID = regexp.MustCompile(`^Id-[0-9a-f]{24}$`)

func TestHealthChecks(t *testing.T) {
	ti := startInstance(t, quickstartYAML(newPorts(t), sampleAPI))
	tests := []struct {
		url, method string
		wantStatus  int
		wantBody    string
	}{
		{ti.base + "/healthcheck", "GET", 200, "<status>ok</status>"},
		{ti.base + "/healthchecklb", "GET", 200, "<status>ok</status>"},
		{ti.base + "/healthcheck", "HEAD", 200, ""},
		{ti.mgmt + "/healthcheck", "GET", 200, "<status>ok</status>"},
	}
	for _, tt := range tests {
		r := do(t, nil, tt.method, tt.url, nil)
		if r.status != tt.wantStatus || r.body != tt.wantBody {
			t.Errorf("%s %s: got %d %q, want %d %q", tt.method, tt.url, r.status, r.body, tt.wantStatus, tt.wantBody)
		}
		if ct := r.header.Get("Content-Type"); ct != "text/xml" {
			t.Errorf("%s %s: Content-Type: got %q, want text/xml", tt.method, tt.url, ct)
		}
		if strings.HasPrefix(tt.url, ti.base) && !generatedID.MatchString(r.header.Get(HeaderCorrelationID)) {
			t.Errorf("%s %s: X-CorrelationID: got %q, want a generated id", tt.method, tt.url, r.header.Get(HeaderCorrelationID))
		}
	}
	if r := do(t, nil, "POST", ti.base+"/healthcheck", nil); r.status != 405 || r.header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /healthcheck: got %d Allow %q, want 405 Allow %q", r.status, r.header.Get("Allow"), "GET, HEAD")
	}
}

func TestManagementStatus(t *testing.T) {
	p := newPorts(t)
	ti := startInstance(t, quickstartYAML(p, sampleAPI))
	r := do(t, nil, "GET", ti.mgmt+"/status", nil)
	if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /status: got %d %q, want 200 application/json", r.status, r.header.Get("Content-Type"))
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(r.body), &st); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"groupId": groupID, "instanceId": instanceID, "groupName": "QuickStart Group",
		"instanceName": "QuickStart Server", "pid": float64(os.Getpid()), "phase": "serving",
		"inFlight": float64(0),
		"ports":    map[string]any{"traffic": float64(p.traffic), "management": float64(p.management), "sample": float64(p.sample)},
	}
	for k, v := range want {
		if got := fmt.Sprint(st[k]); got != fmt.Sprint(v) {
			t.Errorf("status %s: got %v, want %v", k, got, v)
		}
	}
	for _, k := range []string{"startedAt", "configLoadedAt"} {
		if s, _ := st[k].(string); s == "" || strings.HasPrefix(s, "0001") {
			t.Errorf("status %s: got %v, want a time", k, st[k])
		}
	}
	if r := do(t, nil, "GET", ti.mgmt+"/nothing", nil); r.status != 404 || !strings.Contains(r.body, `"code":404`) {
		t.Errorf("GET /nothing: got %d %s, want 404 JSON", r.status, r.body)
	}
	if got := ti.Phase(); got != PhaseServing {
		t.Errorf("Phase(): got %v, want serving", got)
	}
}

func TestForwardToSample(t *testing.T) {
	ti := startInstance(t, quickstartYAML(newPorts(t), sampleAPI))
	tests := []struct {
		name     string
		clientID string // sent X-CorrelationID; "" sends none
		wantSame bool   // the client's id is kept
	}{
		{"generated", "", false},
		{"accepted", "order-42:retry.1_a", true},
		{"replaced bad characters", "bad id!", false},
		{"replaced too long", strings.Repeat("a", 129), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{"X-Forwarded-For": {"10.1.1.1"}, "Forwarded": {"for=10.1.1.1"}}
			if tt.clientID != "" {
				h.Set(HeaderCorrelationID, tt.clientID)
			}
			r := do(t, nil, "GET", ti.base+"/sample/echo/x?q=1", h)
			if r.status != 200 {
				t.Fatalf("status: got %d, want 200 (%s)", r.status, r.body)
			}
			var e sample.Echo
			if err := json.Unmarshal([]byte(r.body), &e); err != nil {
				t.Fatal(err)
			}
			gotID := r.header.Get(HeaderCorrelationID)
			checks := []struct{ what, got, want string }{
				{"path at the back end", e.Path, "/echo/x"},
				{"query", e.Query, "q=1"},
				{"X-Forwarded-For", strings.Join(e.Headers["X-Forwarded-For"], ","), "127.0.0.1"},
				{"X-Forwarded-Proto", strings.Join(e.Headers["X-Forwarded-Proto"], ","), "http"},
				{"X-Forwarded-Host", strings.Join(e.Headers["X-Forwarded-Host"], ","), strings.TrimPrefix(ti.base, "http://")},
				{"Forwarded", strings.Join(e.Headers["Forwarded"], ","), ""},
				{"id at the back end", strings.Join(http.Header(e.Headers).Values(HeaderCorrelationID), ","), gotID},
				{"ids returned", strings.Join(r.header.Values(HeaderCorrelationID), ","), gotID},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s: got %q, want %q", c.what, c.got, c.want)
				}
			}
			if tt.wantSame {
				if gotID != tt.clientID {
					t.Errorf("X-CorrelationID: got %q, want the client's %q", gotID, tt.clientID)
				}
			} else if !generatedID.MatchString(gotID) {
				t.Errorf("X-CorrelationID: got %q, want a generated id", gotID)
			}
		})
	}
	if r := do(t, nil, "GET", ti.base+"/sample/status/418", nil); r.status != 418 {
		t.Errorf("/sample/status/418: got %d, want 418", r.status)
	}
}

// TestConnectionListKeepsGatewayFields: a client's Connection list removes
// what the client sent, never the fields the gateway adds.
func TestConnectionListKeepsGatewayFields(t *testing.T) {
	ti := startInstance(t, quickstartYAML(newPorts(t), sampleAPI))
	c, err := net.Dial("tcp", strings.TrimPrefix(ti.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /sample/echo HTTP/1.1\r\nHost: gw.example\r\n"+
		"Connection: keep-alive, X-Forwarded-For, x-forwarded-proto, X-Forwarded-Host, X-CorrelationID, X-Private\r\n"+
		"Connection: X-Other\r\nX-Private: secret\r\nX-Other: o\r\nX-Kept: k\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e sample.Echo
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatal(err)
	}
	h := http.Header(e.Headers)
	for name, want := range map[string]string{
		"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "gw.example",
		HeaderCorrelationID: resp.Header.Get(HeaderCorrelationID), "X-Kept": "k", "X-Private": "", "X-Other": "", "Connection": "",
	} {
		if got := strings.Join(h.Values(name), ","); got != want {
			t.Errorf("%s at the back end: got %q, want %q", name, got, want)
		}
	}
	if resp.Header.Get(HeaderCorrelationID) == "" {
		t.Errorf("no X-CorrelationID on the response")
	}
}

func TestErrorResponses(t *testing.T) {
	closedPort := refusingPort(t)
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // longer than the back end's timeout: until the gateway gives up
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	yaml := quickstartYAML(newPorts(t), fmt.Sprintf(`
backends:
  - {name: sample, sample: true}
  - {name: closed, url: "http://127.0.0.1:%d"}
  - {name: slow, url: %q, timeout: 0.2}
apis:
  - {name: sample, pathPrefix: /sample, stripPrefix: true, backend: sample}
  - {name: only-get, path: /only, methods: [GET, HEAD], backend: sample}
  - {name: closed, pathPrefix: /closed, backend: closed}
  - {name: slow, pathPrefix: /slow, backend: slow}
`, closedPort, slow.URL))
	ti := startInstance(t, yaml)
	tests := []struct {
		method, path string
		wantStatus   int
		wantAllow    string
	}{
		{"GET", "/nothing/here", 404, ""},
		{"POST", "/only", 405, "GET, HEAD"},
		{"GET", "/sample/../etc/passwd", 400, ""},
		{"GET", "/sample/%2e%2e/x", 400, ""},
		{"GET", "/sample//echo", 400, ""},
		{"GET", "/closed/x", 502, ""},
		{"GET", "/slow/x", 504, ""},
	}
	for _, tt := range tests {
		r := rawRequest(t, ti.base, tt.method, tt.path)
		if r.status != tt.wantStatus {
			t.Errorf("%s %s: status: got %d, want %d (%s)", tt.method, tt.path, r.status, tt.wantStatus, r.body)
			continue
		}
		var body proxy.ErrorBody
		if err := json.Unmarshal([]byte(r.body), &body); err != nil || len(body.Errors) != 1 || body.Errors[0].Code != tt.wantStatus || body.Errors[0].Message == "" {
			t.Errorf("%s %s: body: got %s, want {\"errors\":[{\"code\":%d,...}]}", tt.method, tt.path, r.body, tt.wantStatus)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: Content-Type: got %q, want application/json", tt.method, tt.path, ct)
		}
		if got := r.header.Get("Allow"); got != tt.wantAllow {
			t.Errorf("%s %s: Allow: got %q, want %q", tt.method, tt.path, got, tt.wantAllow)
		}
		if !generatedID.MatchString(r.header.Get(HeaderCorrelationID)) {
			t.Errorf("%s %s: X-CorrelationID: got %q, want a generated id", tt.method, tt.path, r.header.Get(HeaderCorrelationID))
		}
		if strings.Contains(r.body, "127.0.0.1") || strings.Contains(r.body, "dial") {
			t.Errorf("%s %s: body leaks internals: %s", tt.method, tt.path, r.body)
		}
	}
}

// rawRequest sends the request line exactly as given (no client-side path
// cleaning) on a new connection.
func rawRequest(t *testing.T, base, method, path string) response {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n", method, path)
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return response{res.StatusCode, res.Header, string(b), res.Close}
}

func TestPortInUse(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	p := newPorts(t)
	p.management = held.Addr().(*net.TCPAddr).Port
	ti := newInstance(t, quickstartYAML(p, sampleAPI))
	err = ti.Start()
	if err == nil {
		t.Fatal("Start: got nil error, want port in use")
	}
	var pe *PortInUseError
	if !errors.As(err, &pe) || !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("Start: got %v, want a *PortInUseError wrapping EADDRINUSE", err)
	}
	comm, _ := os.ReadFile("/proc/self/comm")
	want := fmt.Sprintf("management listener: port %d on 127.0.0.1 is in use by pid %d (%s)", p.management, os.Getpid(), strings.TrimSpace(string(comm)))
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error: got %q, want it to contain %q", err, want)
	}
	// The traffic listener bound before the failure must have been released.
	ln, lerr := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p.traffic))
	if lerr != nil {
		t.Errorf("traffic port after a failed Start: got %v, want it free", lerr)
	} else {
		ln.Close()
	}
	if werr := ti.Wait(); !errors.As(werr, &pe) {
		t.Errorf("Wait after a failed Start: got %v, want the start error", werr)
	}
	if got := ti.Phase(); got != PhaseStopped {
		t.Errorf("phase: got %v, want stopped", got)
	}
}

func TestPortInUseMessageWithoutHolder(t *testing.T) {
	e := &PortInUseError{Listener: "traffic", Port: 8080}
	if got, want := e.Error(), "traffic listener: port 8080 on 0.0.0.0 is in use (holder not found)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestZeroDowntimeShutdown: with a delay, /healthchecklb turns 503 while
// other routes are still served; a request started before Shutdown finishes
// with 200 (through the sample service, which closes last); afterwards the
// port refuses connections.
func TestZeroDowntimeShutdown(t *testing.T) {
	ti := startInstance(t, quickstartYAML(newPorts(t), sampleAPI+`
zeroDowntime:
  shutdown: {enabled: true, delay: 1, drainTimeout: 30}
`))
	type result struct {
		status int
		body   string
		err    error
	}
	inflight := make(chan result, 1)
	go func() {
		res, err := http.Get(ti.base + "/sample/delay/1500")
		if err != nil {
			inflight <- result{err: err}
			return
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		inflight <- result{res.StatusCode, string(b), err}
	}()
	ti.awaitEntered(t, "/sample/delay/1500")

	shutdownErr := make(chan error, 1)
	go func() { shutdownErr <- ti.Shutdown(t.Context()) }()
	ti.awaitPhase(t, PhaseDraining)

	if r := do(t, nil, "GET", ti.base+"/healthchecklb", nil); r.status != 503 || r.body != "<status>unavailable</status>" || r.header.Get("Content-Type") != "text/xml" {
		t.Errorf("draining /healthchecklb: got %d %q %q, want 503 <status>unavailable</status> text/xml", r.status, r.body, r.header.Get("Content-Type"))
	}
	if r := do(t, nil, "GET", ti.base+"/healthcheck", nil); r.status != 200 {
		t.Errorf("draining /healthcheck: got %d, want 200", r.status)
	}
	keepAlive := &http.Client{Transport: &http.Transport{}}
	r := do(t, keepAlive, "GET", ti.base+"/sample/echo", nil)
	if r.status != 200 {
		t.Errorf("draining /sample/echo: got %d, want 200", r.status)
	}
	if !r.close {
		t.Errorf("draining /sample/echo: got a kept-alive connection, want Connection: close")
	}
	if st := ti.Status(); st.Phase != PhaseDraining {
		t.Errorf("status phase: got %v, want draining", st.Phase)
	}

	if err := <-shutdownErr; err != nil {
		t.Errorf("Shutdown: got %v, want nil", err)
	}
	if got := <-inflight; got.err != nil || got.status != 200 || !strings.Contains(got.body, `"delayedMs":1500`) {
		t.Errorf("in-flight request: got %d %q %v, want 200 delayedMs 1500", got.status, got.body, got.err)
	}
	if err := ti.Wait(); err != nil {
		t.Errorf("Wait: got %v, want nil", err)
	}
	ti.awaitPhase(t, PhaseStopped)
	for _, port := range []int{ti.Ports().Traffic, ti.Ports().Management, ti.Ports().Sample} {
		if conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			conn.Close()
			t.Errorf("port %d after shutdown: connection accepted, want refused", port)
		} else if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("port %d after shutdown: got %v, want connection refused", port, err)
		}
	}
}

// TestShutdownWithoutZeroDowntime: no draining phase, but in-flight requests
// still finish.
func TestShutdownWithoutZeroDowntime(t *testing.T) {
	ti := startInstance(t, quickstartYAML(newPorts(t), sampleAPI))
	status := make(chan int, 1)
	go func() {
		res, err := http.Get(ti.base + "/sample/delay/300")
		if err != nil {
			status <- 0
			return
		}
		res.Body.Close()
		status <- res.StatusCode
	}()
	ti.awaitEntered(t, "/sample/delay/300")
	if err := ti.Shutdown(t.Context()); err != nil {
		t.Errorf("Shutdown: got %v, want nil", err)
	}
	if got := <-status; got != 200 {
		t.Errorf("in-flight request: got %d, want 200", got)
	}
	if got := <-ti.phases; got != PhaseClosing {
		t.Errorf("phase after serving: got %v, want closing", got)
	}
	if got := <-ti.phases; got != PhaseStopped {
		t.Errorf("last phase: got %v, want stopped", got)
	}
	if err := ti.Wait(); err != nil {
		t.Errorf("Wait: got %v, want nil", err)
	}
}

// TestShutdownCancel: cancelling Shutdown's context stops at once, even
// during a long delay and with a long request in flight.
func TestShutdownCancel(t *testing.T) {
	ti := startInstance(t, quickstartYAML(newPorts(t), sampleAPI+`
zeroDowntime:
  shutdown: {enabled: true, delay: 1h, drainTimeout: 1h}
`))
	inflight := make(chan error, 1)
	go func() {
		res, err := http.Get(ti.base + "/sample/delay/60000")
		if err == nil {
			_, err = io.ReadAll(res.Body)
			res.Body.Close()
		}
		inflight <- err
	}()
	ti.awaitEntered(t, "/sample/delay/60000")
	ctx, cancel := context.WithCancel(t.Context())
	shutdownErr := make(chan error, 1)
	go func() { shutdownErr <- ti.Shutdown(ctx) }()
	ti.awaitPhase(t, PhaseDraining)
	cancel()
	if err := <-shutdownErr; !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown: got %v, want context.Canceled", err)
	}
	if err := ti.Wait(); err != nil {
		t.Errorf("Wait: got %v, want nil", err)
	}
	if err := <-inflight; err == nil {
		t.Errorf("in-flight request: got a complete answer, want it cut")
	}
	if got := ti.Phase(); got != PhaseStopped {
		t.Errorf("phase: got %v, want stopped", got)
	}
}

// TestCloseDuringShutdown: Close cuts a graceful shutdown short.
func TestCloseDuringShutdown(t *testing.T) {
	ti := startInstance(t, quickstartYAML(newPorts(t), sampleAPI+`
zeroDowntime:
  shutdown: {enabled: true, delay: 1h}
`))
	shutdownErr := make(chan error, 1)
	go func() { shutdownErr <- ti.Shutdown(context.Background()) }()
	ti.awaitPhase(t, PhaseDraining)
	if err := ti.Close(); err != nil {
		t.Errorf("Close: got %v, want nil", err)
	}
	if err := <-shutdownErr; !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown: got %v, want context.Canceled", err)
	}
	if err := ti.Wait(); err != nil {
		t.Errorf("Wait: got %v, want nil", err)
	}
	// A second Shutdown after the stop returns at once.
	if err := ti.Shutdown(t.Context()); err != nil {
		t.Errorf("second Shutdown: got %v, want nil", err)
	}
}

// TestDrainTimeout: a request that outlives the drain timeout is cut and
// Shutdown says so.
func TestDrainTimeout(t *testing.T) {
	ti := startInstance(t, quickstartYAML(newPorts(t), sampleAPI+`
zeroDowntime:
  shutdown: {drainTimeout: 0.1}
`))
	inflight := make(chan error, 1)
	go func() {
		res, err := http.Get(ti.base + "/sample/delay/60000")
		if err == nil {
			_, err = io.ReadAll(res.Body)
			res.Body.Close()
		}
		inflight <- err
	}()
	ti.awaitEntered(t, "/sample/delay/60000")
	if err := ti.Shutdown(t.Context()); !errors.Is(err, ErrDrainTimeout) {
		t.Errorf("Shutdown: got %v, want ErrDrainTimeout", err)
	}
	if err := <-inflight; err == nil {
		t.Errorf("in-flight request: got a complete answer, want it cut")
	}
	if err := ti.Wait(); err != nil {
		t.Errorf("Wait: got %v, want nil", err)
	}
}

// TestSwap: a new configuration takes effect for the next request on a
// keep-alive connection that stays open across the swap.
func TestSwap(t *testing.T) {
	p := newPorts(t)
	ti := startInstance(t, quickstartYAML(p, sampleAPI))
	var mu sync.Mutex
	var reused []bool
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		mu.Lock()
		reused = append(reused, info.Reused)
		mu.Unlock()
	}}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	get := func(path string) int {
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), "GET", ti.base+path, nil)
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	if got := get("/sample/echo"); got != 200 {
		t.Fatalf("before swap /sample/echo: got %d, want 200", got)
	}
	if got := get("/v2/echo"); got != 404 {
		t.Fatalf("before swap /v2/echo: got %d, want 404", got)
	}
	before := ti.Status().ConfigLoadedAt
	err := ti.Swap(loadConfig(t, quickstartYAML(p, `
backends:
  - {name: sample, sample: true}
apis:
  - {name: v2, pathPrefix: /v2, stripPrefix: true, backend: sample}
`)))
	if err != nil {
		t.Fatalf("Swap: %v", err)
	}
	if got := get("/v2/echo"); got != 200 {
		t.Errorf("after swap /v2/echo: got %d, want 200", got)
	}
	if got := get("/sample/echo"); got != 404 {
		t.Errorf("after swap /sample/echo: got %d, want 404", got)
	}
	mu.Lock()
	for n, r := range reused[1:] {
		if !r {
			t.Errorf("request %d: got a new connection, want the kept-alive one", n+2)
		}
	}
	mu.Unlock()
	if after := ti.Status().ConfigLoadedAt; !after.After(before) {
		t.Errorf("configLoadedAt: got %v, want after %v", after, before)
	}
}

// TestLogs: the access log has a line per request with the correlation id,
// no query string and no header values; the instance log has the phases.
func TestLogs(t *testing.T) {
	ti := startInstance(t, quickstartYAML(newPorts(t), sampleAPI))
	h := http.Header{
		HeaderCorrelationID: {"trace-me-1"},
		"Authorization":     {"Bearer s3cr3t-token"},
		"Cookie":            {"session=s3cr3t-cookie"},
	}
	if r := do(t, nil, "POST", ti.base+"/sample/echo?apikey=s3cr3t-query", h); r.status != 200 {
		t.Fatalf("POST: got %d, want 200", r.status)
	}
	do(t, nil, "GET", ti.base+"/missing", http.Header{HeaderCorrelationID: {"trace-me-2"}})
	if err := ti.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := ti.Wait(); err != nil {
		t.Fatal(err)
	}
	dir := ti.home.InstanceLogsDir(groupID, instanceID)
	access, err := os.ReadFile(filepath.Join(dir, "access.log"))
	if err != nil {
		t.Fatal(err)
	}
	lines := map[string]map[string]any{}
	for _, l := range strings.Split(strings.TrimSpace(string(access)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("access log line %q: %v", l, err)
		}
		id, _ := m["correlationId"].(string)
		lines[id] = m
	}
	tests := []struct {
		id   string
		want map[string]any
	}{
		{"trace-me-1", map[string]any{"method": "POST", "path": "/sample/echo", "status": 200.0, "api": "sample", "backend": "sample", "client": "127.0.0.1"}},
		{"trace-me-2", map[string]any{"method": "GET", "path": "/missing", "status": 404.0, "api": "", "backend": ""}},
	}
	for _, tt := range tests {
		m, ok := lines[tt.id]
		if !ok {
			t.Errorf("access log: no line with correlationId %s in\n%s", tt.id, access)
			continue
		}
		for k, v := range tt.want {
			if m[k] != v {
				t.Errorf("access log %s %s: got %v, want %v", tt.id, k, m[k], v)
			}
		}
		for _, k := range []string{"time", "bytes", "durationMs"} {
			if _, ok := m[k]; !ok {
				t.Errorf("access log %s: no %s", tt.id, k)
			}
		}
		if _, ok := m["msg"]; ok {
			t.Errorf("access log %s: has a msg key", tt.id)
		}
	}
	instLog, err := os.ReadFile(filepath.Join(dir, "instance.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"phase":"serving"`, `"phase":"closing"`, `"phase":"stopped"`, `"component":"instance"`} {
		if !strings.Contains(string(instLog), want) {
			t.Errorf("instance.log: no %s in\n%s", want, instLog)
		}
	}
	for _, f := range [][]byte{access, instLog} {
		if strings.Contains(string(f), "s3cr3t") {
			t.Errorf("a log holds a secret:\n%s", f)
		}
	}
}

func TestConsoleLog(t *testing.T) {
	var mu sync.Mutex
	var buf strings.Builder
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return buf.Write(p) })
	ti := startInstance(t, quickstartYAML(newPorts(t), sampleAPI), func(o *Options) { o.Quiet = false; o.Console = w })
	if err := ti.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(buf.String(), "msg=\"instance started\"") {
		t.Errorf("console: got %q, want the start line in text form", buf.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestNewErrors(t *testing.T) {
	h, _ := home.At(t.TempDir())
	cfg := loadConfig(t, "")
	tests := []Options{
		{Home: h, GroupID: groupID, InstanceID: instanceID},
		{Home: h, InstanceID: instanceID, Config: cfg},
		{GroupID: groupID, InstanceID: instanceID, Config: cfg},
	}
	for _, o := range tests {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v): got nil error, want one", o)
		}
	}
}

func TestStartTwice(t *testing.T) {
	ti := startInstance(t, quickstartYAML(newPorts(t), sampleAPI))
	if err := ti.Start(); err == nil {
		t.Error("second Start: got nil error, want one")
	}
}

// rejectPolicy rejects every request with 401.
type rejectPolicy struct{}

func (rejectPolicy) Name() string { return "reject" }
func (rejectPolicy) Apply(ex *policy.Exchange) error {
	if ex.CorrelationID == "" || ex.Route == nil || ex.ClientAddr.String() != "127.0.0.1" {
		return fmt.Errorf("incomplete exchange: %+v", ex)
	}
	return &policy.Error{Status: http.StatusUnauthorized, Message: "an API key is required", Err: errors.New("no KeyId header")}
}

// failPolicy fails internally.
type failPolicy struct{}

func (failPolicy) Name() string                 { return "fail" }
func (failPolicy) Apply(*policy.Exchange) error { return errors.New("store unreachable at 10.0.0.9") }

// TestPolicyChain: the instance turns a policy's rejection into the JSON
// error body, and an internal failure into a 500 that does not leak.
func TestPolicyChain(t *testing.T) {
	ti := startInstance(t, quickstartYAML(newPorts(t), sampleAPI))
	tests := []struct {
		chain      policy.Chain
		wantStatus int
		wantMsg    string
	}{
		{nil, 200, ""},
		{policy.Chain{rejectPolicy{}}, 401, "an API key is required"},
		{policy.Chain{failPolicy{}}, 500, "internal error"},
	}
	for _, tt := range tests {
		rt := *ti.rt.Load()
		rt.chains = make([]policy.Chain, len(rt.chains))
		for i := range rt.chains {
			rt.chains[i] = tt.chain
		}
		ti.rt.Store(&rt)
		r := do(t, nil, "GET", ti.base+"/sample/echo", nil)
		if r.status != tt.wantStatus {
			t.Errorf("chain %v: status: got %d, want %d", tt.chain, r.status, tt.wantStatus)
		}
		if tt.wantMsg != "" && !strings.Contains(r.body, `"message":"`+tt.wantMsg+`"`) {
			t.Errorf("chain %v: body: got %s, want message %q", tt.chain, r.body, tt.wantMsg)
		}
		if strings.Contains(r.body, "10.0.0.9") {
			t.Errorf("chain %v: body leaks the cause: %s", tt.chain, r.body)
		}
	}
}
