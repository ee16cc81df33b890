package tools_test

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
)

// hsConn is a client connection kept alive by hand, so that the test knows
// that requests reuse it.
type hsConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func hsDial(t *testing.T, port int) *hsConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatalf("dial port %d: %v", port, err)
	}
	t.Cleanup(func() { c.Close() })
	return &hsConn{t: t, c: c, br: bufio.NewReader(c)}
}

// get sends GET path on the connection and returns the status; the server
// must keep the connection open.
func (k *hsConn) get(path string) int {
	k.t.Helper()
	if _, err := fmt.Fprintf(k.c, "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path); err != nil {
		k.t.Fatalf("GET %s on the kept-alive connection: %v", path, err)
	}
	_ = k.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(k.br, nil)
	if err != nil {
		k.t.Fatalf("GET %s on the kept-alive connection: %v", path, err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.Close {
		k.t.Errorf("GET %s on the kept-alive connection: the server asked to close it", path)
	}
	return res.StatusCode
}

// hsNodeManagerClient is a management client with a certificate of the
// domain CA whose name is a node manager's (only node managers may POST to
// an instance's /deployment endpoints).
func hsNodeManagerClient(t *testing.T, h *gwtest.Home) *http.Client {
	t.Helper()
	ca, err := pki.LoadCA(home.Home{Dir: h.Dir})
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.IssueKeyPair("Gatehouse Node Manager nodemanager-1 (host-1)", []string{"localhost"}, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true,
		TLSClientConfig: pki.MutualTLSClient(cert, ca.Cert)}}
}

func hsPost(t *testing.T, c *http.Client, port int, path, body string) (int, string) {
	t.Helper()
	resp, err := c.Post(gwtest.MgmtURL(port, path), "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func hsStatus(t *testing.T, h *gwtest.Home, port int) map[string]any {
	t.Helper()
	code, body := h.MgmtGet(port, "/status")
	var st map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
		t.Fatalf("GET /status: got %d %s", code, body)
	}
	return st
}

// TestHotSwapReload: a running instance (startinstance -d) takes a changed
// group.yaml through POST /deployment/reload and through SIGHUP: the new
// APIs answer, a connection kept alive from before still works, /status
// shows the new checksum; an invalid file is refused with file and line and
// changes nothing; a traffic port change moves the listener; only node
// managers may POST.
func TestHotSwapReload(t *testing.T) {
	h := gwtest.NewHome(t)
	p := newInstance(t, h, "Group A", "Server One", false)
	id := []string{"-n", "Server One", "-g", "Group A"}
	h.MustRun("", append([]string{"startinstance", "-d"}, id...)...)
	t.Cleanup(func() { h.Run("", append([]string{"startinstance", "-k"}, id...)...) })
	groupFile, _ := filepath.Glob(h.Path("groups", "group-*", "conf", "group.yaml"))
	if len(groupFile) != 1 {
		t.Fatalf("group.yaml: got %v, want one", groupFile)
	}
	writeGroup := func(extra string) {
		t.Helper()
		if err := os.WriteFile(groupFile[0], []byte(fmt.Sprintf(sampleGroup, false)+extra), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	nm := hsNodeManagerClient(t, h)

	ka := hsDial(t, p.traffic)
	if got := ka.get("/sample/echo"); got != 200 {
		t.Fatalf("GET /sample/echo: got %d, want 200", got)
	}
	if got := ka.get("/v2/echo"); got != 404 {
		t.Fatalf("GET /v2/echo before the reload: got %d, want 404", got)
	}
	before := hsStatus(t, h, p.mgmt)

	// POST /deployment/reload.
	writeGroup("  - {name: v2, pathPrefix: /v2, stripPrefix: true, backend: sample}\n")
	if code, body := hsPost(t, h.MgmtClient(), p.mgmt, "/deployment/reload", ""); code != 403 {
		t.Errorf("reload with a certificate that is not a node manager's: got %d %s, want 403", code, body)
	}
	code, body := hsPost(t, nm, p.mgmt, "/deployment/reload", "")
	var st map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
		t.Fatalf("reload: got %d %s, want 200 with the status", code, body)
	}
	if st["configChecksum"] == before["configChecksum"] || st["inService"] != true || st["phase"] != "serving" {
		t.Errorf("status after reload: got checksum %v (before %v), inService %v, phase %v", st["configChecksum"], before["configChecksum"], st["inService"], st["phase"])
	}
	if got := ka.get("/v2/echo"); got != 200 {
		t.Errorf("GET /v2/echo on the connection kept alive from before: got %d, want 200", got)
	}
	if code, _ := gwtest.Get(t, p.url("/v2/echo")); code != 200 {
		t.Errorf("GET /v2/echo on a new connection: got %d, want 200", code)
	}
	afterPost := hsStatus(t, h, p.mgmt)["configChecksum"]

	// An invalid file: 422 naming file and line, nothing changes.
	writeGroup("  - {name: v3, pathPrefix: /v3, backend: sample, colour: blue}\n")
	code, body = hsPost(t, nm, p.mgmt, "/deployment/reload", "")
	wantLine := strconv.Itoa(strings.Count(fmt.Sprintf(sampleGroup, false), "\n") + 1)
	if code != 422 || !strings.Contains(body, "group.yaml:"+wantLine) {
		t.Errorf("reload of an invalid file: got %d %s, want 422 naming group.yaml:%s", code, body, wantLine)
	}
	if got := hsStatus(t, h, p.mgmt)["configChecksum"]; got != afterPost {
		t.Errorf("checksum after a refused reload: got %v, want %v", got, afterPost)
	}

	// SIGHUP.
	writeGroup("  - {name: v3, pathPrefix: /v3, stripPrefix: true, backend: sample}\n")
	if err := syscall.Kill(readPID(t, h), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	awaitStatus(t, h, p, func(st map[string]any) bool { return st["configChecksum"] != afterPost })
	if got := ka.get("/v3/echo"); got != 200 {
		t.Errorf("GET /v3/echo after SIGHUP on the connection kept alive from before: got %d, want 200", got)
	}
	if got := ka.get("/v2/echo"); got != 404 {
		t.Errorf("GET /v2/echo after SIGHUP: got %d, want 404 (no longer configured)", got)
	}

	// Out of the load balancer and back.
	if code, body := hsPost(t, nm, p.mgmt, "/deployment/lb", `{"inService": false}`); code != 200 || !strings.Contains(body, `"inService":false`) {
		t.Errorf("POST /deployment/lb false: got %d %s", code, body)
	}
	if code, body := gwtest.Get(t, p.url("/healthchecklb")); code != 503 || body != "<status>unavailable</status>" {
		t.Errorf("/healthchecklb out of service: got %d %q, want 503", code, body)
	}
	if got := ka.get("/v3/echo"); got != 200 {
		t.Errorf("GET /v3/echo out of service: got %d, want 200", got)
	}
	hsPost(t, nm, p.mgmt, "/deployment/lb", `{"inService": true}`)
	if code, _ := gwtest.Get(t, p.url("/healthchecklb")); code != 200 {
		t.Errorf("/healthchecklb back in service: got %d, want 200", code)
	}

	// A traffic port change in instance.yaml: the new port serves, the old
	// refuses, the idle kept-alive connection of the old port is closed.
	newPort := gwtest.FreePort(t)
	instFile, _ := filepath.Glob(h.Path("groups", "group-*", "instance-*", "conf", "instance.yaml"))
	if err := groupconf.SetKeys(instFile[0], map[string]string{"traffic.port": strconv.Itoa(newPort)}, nil, ""); err != nil {
		t.Fatal(err)
	}
	code, body = hsPost(t, nm, p.mgmt, "/deployment/reload", "")
	if code != 200 || !strings.Contains(body, fmt.Sprintf(`"traffic":%d`, newPort)) {
		t.Fatalf("reload with a new traffic port: got %d %s, want 200 with the port", code, body)
	}
	if code, _ := gwtest.Get(t, fmt.Sprintf("http://127.0.0.1:%d/v3/echo", newPort)); code != 200 {
		t.Errorf("new port %d: got %d, want 200", newPort, code)
	}
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p.traffic), 2*time.Second); err == nil {
		c.Close()
		t.Errorf("old port %d: got a connection, want refused", p.traffic)
	}
	_ = ka.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := ka.br.ReadByte(); err == nil {
		t.Errorf("idle connection on the old port: got data, want it closed")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Errorf("idle connection on the old port: still open after 10 s, want it closed")
	}

	// The log names each reload with its checksum and how long it took.
	logData, err := os.ReadFile(filepath.Join(filepath.Dir(filepath.Dir(instFile[0])), "logs", "instance.log"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(logData), `"msg":"configuration reloaded"`); n != 3 {
		t.Errorf("instance.log: got %d 'configuration reloaded' lines, want 3", n)
	}
	if !strings.Contains(string(logData), `"msg":"configuration reload refused; nothing changed"`) {
		t.Errorf("instance.log: no line for the refused reload")
	}
}
