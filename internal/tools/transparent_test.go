package tools_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v4"

	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
)

// Transparent load balancing, inbound (docs/transparent-lb.md): the gateway
// trusts 127.0.0.1 as its load balancer; other loopback addresses (127.0.0.2
// and up) are direct clients.

// tlbGateway starts one instance with protoGroup (log level debug) and the
// given traffic settings (keys under traffic:), and returns its home and
// ports.
func tlbGateway(t *testing.T, traffic map[string]any) (*gwtest.Home, ports) {
	t.Helper()
	return tlbGatewayWith(t, func(*gwtest.Home) map[string]any { return traffic })
}

// tlbGatewayWith is tlbGateway with the traffic settings made once the
// install directory exists.
func tlbGatewayWith(t *testing.T, settings func(h *gwtest.Home) map[string]any) (*gwtest.Home, ports) {
	t.Helper()
	h := gwtest.NewHome(t)
	p := newInstance(t, h, "G", "S", false)
	traffic := settings(h)
	if err := os.WriteFile(h.Path("groups", "group-2", "conf", "group.yaml"), []byte(protoGroup+"log:\n  level: debug\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := h.Path("groups", "group-2", "instance-1", "conf", "instance.yaml")
	data, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	tr, _ := doc["traffic"].(map[string]any)
	if tr == nil {
		tr = map[string]any{}
		doc["traffic"] = tr
	}
	for k, v := range traffic {
		tr[k] = v
	}
	if data, err = yaml.Marshal(doc); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
	h.MustRun("", "startinstance", "-d", "-q", "-n", "S", "-g", "G")
	t.Cleanup(func() { h.Run("", "startinstance", "-k", "-q", "-n", "S", "-g", "G") })
	return h, p
}

// clientFrom returns an HTTP client whose connections leave from the local
// address ip (a loopback address), one connection per request.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

// echoed is what /sample/echo says the back end received.
type echoed struct {
	Headers map[string][]string
}

func (e echoed) get(name string) string {
	return strings.Join(e.Headers[http.CanonicalHeaderKey(name)], " | ")
}

// echo sends GET /sample/echo with the headers (and the correlation id id)
// through c, and returns what the back end received.
func echo(t *testing.T, c *http.Client, url, id string, headers [][2]string) echoed {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("X-CorrelationID", id)
	for _, kv := range headers {
		req.Header.Add(kv[0], kv[1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", id, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s: got status %d (%s), want 200", id, resp.StatusCode, body)
	}
	var e echoed
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("%s: echo body %q: %v", id, body, err)
	}
	return e
}

// stopAndReadLogs stops the instance (flushing its logs) and returns the
// access log's client per correlation id, and the instance log's text.
func stopAndReadLogs(t *testing.T, h *gwtest.Home) (clients map[string]string, instanceLog string) {
	t.Helper()
	h.MustRun("", "startinstance", "-k", "-q", "-n", "S", "-g", "G")
	logs := h.Path("groups", "group-2", "instance-1", "logs")
	data, err := os.ReadFile(filepath.Join(logs, "access.log"))
	if err != nil {
		t.Fatal(err)
	}
	clients = map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var e struct{ CorrelationID, Client string }
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("access log line %q: %v", line, err)
		}
		clients[e.CorrelationID] = e.Client
	}
	il, err := os.ReadFile(filepath.Join(logs, "instance.log"))
	if err != nil {
		t.Fatal(err)
	}
	return clients, string(il)
}

func TestTransparentForwardedHeaders(t *testing.T) {
	h, p := tlbGateway(t, map[string]any{
		"trustedProxies":   []string{"127.0.0.1"},
		"clientCertHeader": "X-SSL-Client-Cert",
	})
	url := p.url("/sample/echo")
	host := "127.0.0.1:" + strconv.Itoa(p.traffic)
	forgedXFF := "1.2.3.4, 11.22.33.44, 111.122.133.144, 9.9.9.9"
	tests := []struct {
		id      string
		from    string
		headers [][2]string
		client  string // in the access log
		xff     string // what the back end receives
		proto   string
		xfh     string
		cert    string
	}{
		{id: "tlb-untrusted-forged", from: "127.0.0.2", headers: [][2]string{
			{"X-Forwarded-For", forgedXFF}, {"Forwarded", "for=5.6.7.8;proto=https;host=evil.example"},
			{"X-Forwarded-Proto", "https"}, {"X-Forwarded-Host", "evil.example"}, {"X-SSL-Client-Cert", "FORGED-CERT"},
		}, client: "127.0.0.2", xff: "127.0.0.2", proto: "http", xfh: host},
		{id: "tlb-untrusted-plain", from: "127.0.0.2", client: "127.0.0.2", xff: "127.0.0.2", proto: "http", xfh: host},
		{id: "tlb-trusted-plain", from: "127.0.0.1", client: "127.0.0.1", xff: "127.0.0.1", proto: "http", xfh: host},
		{id: "tlb-trusted-xff", from: "127.0.0.1", headers: [][2]string{{"X-Forwarded-For", "203.0.113.9"}},
			client: "203.0.113.9", xff: "203.0.113.9, 127.0.0.1", proto: "http", xfh: host},
		{id: "tlb-trusted-xff-forged-left", from: "127.0.0.1", headers: [][2]string{{"X-Forwarded-For", "6.6.6.6, 203.0.113.9"}},
			client: "203.0.113.9", xff: "203.0.113.9, 127.0.0.1", proto: "http", xfh: host},
		{id: "tlb-trusted-xff-lines", from: "127.0.0.1", headers: [][2]string{{"X-Forwarded-For", "6.6.6.6"}, {"X-Forwarded-For", "198.51.100.4, 127.0.0.1"}},
			client: "198.51.100.4", xff: "198.51.100.4, 127.0.0.1, 127.0.0.1", proto: "http", xfh: host},
		{id: "tlb-trusted-xfp-xfh", from: "127.0.0.1", headers: [][2]string{
			{"X-Forwarded-For", "203.0.113.10"}, {"X-Forwarded-Proto", "https"}, {"X-Forwarded-Host", "shop.example.com"},
		}, client: "203.0.113.10", xff: "203.0.113.10, 127.0.0.1", proto: "https", xfh: "shop.example.com"},
		{id: "tlb-trusted-forwarded", from: "127.0.0.1", headers: [][2]string{
			{"Forwarded", `for=6.6.6.6;proto=http;host=evil, for="[2001:db8::9]:1234";proto=https;host=api.example.com`},
			{"X-Forwarded-For", "198.51.100.1"},
		}, client: "2001:db8::9", xff: "2001:db8::9, 127.0.0.1", proto: "https", xfh: "api.example.com"},
		{id: "tlb-trusted-cert", from: "127.0.0.1", headers: [][2]string{{"X-SSL-Client-Cert", "CERT-FROM-LB"}},
			client: "127.0.0.1", xff: "127.0.0.1", proto: "http", xfh: host, cert: "CERT-FROM-LB"},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			e := echo(t, clientFrom(tt.from), url, tt.id, tt.headers)
			for _, c := range []struct{ name, got, want string }{
				{"X-Forwarded-For", e.get("X-Forwarded-For"), tt.xff},
				{"X-Forwarded-Proto", e.get("X-Forwarded-Proto"), tt.proto},
				{"X-Forwarded-Host", e.get("X-Forwarded-Host"), tt.xfh},
				{"X-SSL-Client-Cert", e.get("X-SSL-Client-Cert"), tt.cert},
				{"Forwarded", e.get("Forwarded"), ""},
			} {
				if c.got != c.want {
					t.Errorf("back end's %s: got %q, want %q", c.name, c.got, c.want)
				}
			}
		})
	}
	clients, ilog := stopAndReadLogs(t, h)
	for _, tt := range tests {
		if got := clients[tt.id]; got != tt.client {
			t.Errorf("%s: access log client: got %q, want %q", tt.id, got, tt.client)
		}
	}
	for _, want := range []string{"forwarding header from an untrusted peer ignored", "client-certificate header from an untrusted peer removed"} {
		if !strings.Contains(ilog, want) {
			t.Errorf("instance log: no %q", want)
		}
	}
	for _, secret := range []string{forgedXFF, "FORGED-CERT", "host=evil.example"} {
		if strings.Contains(ilog, secret) {
			t.Errorf("instance log holds the header value %q", secret)
		}
	}
}

// haproxyPath finds HAProxy (scripts/test installs it).
func haproxyPath(t *testing.T) string {
	return gwtest.HAProxy(t, "the tests of PROXY protocol and of zero-downtime deployment need a real HAProxy")
}

// startHAProxy runs HAProxy in TCP mode in the foreground with two
// frontends on 127.0.0.3 that forward to target, one with PROXY protocol v1
// (send-proxy) and one with v2 (send-proxy-v2); it returns their addresses
// when both accept connections.
// runHAProxy runs HAProxy in the foreground with configuration cfg, its
// output in dir/haproxy.out, until the test ends; the channel is closed if
// it exits.
func runHAProxy(t *testing.T, bin, dir, cfg string) <-chan struct{} {
	t.Helper()
	file := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-db", "-f", file)
	out, _ := os.Create(filepath.Join(dir, "haproxy.out"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting haproxy: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cancel(); <-exited; out.Close() })
	return exited
}

func startHAProxy(t *testing.T, target int) (v1, v2 string) {
	t.Helper()
	bin := haproxyPath(t)
	dir := t.TempDir()
	p1, p2 := gwtest.FreePort(t), gwtest.FreePort(t)
	cfg := fmt.Sprintf(`global
  maxconn 200
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend v1
  bind 127.0.0.3:%d
  default_backend gw1
frontend v2
  bind 127.0.0.3:%d
  default_backend gw2
backend gw1
  server gw 127.0.0.1:%d send-proxy
backend gw2
  server gw 127.0.0.1:%d send-proxy-v2
`, p1, p2, target, target)
	exited := runHAProxy(t, bin, dir, cfg)
	v1, v2 = "127.0.0.3:"+strconv.Itoa(p1), "127.0.0.3:"+strconv.Itoa(p2)
	deadline := time.Now().Add(10 * time.Second)
	for _, a := range []string{v1, v2} {
		for {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-exited:
				data, _ := os.ReadFile(filepath.Join(dir, "haproxy.out"))
				t.Fatalf("haproxy exited: %s", data)
			case <-time.After(20 * time.Millisecond): // polling for readiness, not synchronising
			}
			if time.Now().After(deadline) {
				t.Fatalf("haproxy does not accept on %s", a)
			}
		}
	}
	return v1, v2
}

func TestProxyProtocolFromHAProxy(t *testing.T) {
	h, p := tlbGateway(t, map[string]any{
		"trustedProxies": []string{"127.0.0.1"},
		"proxyProtocol":  true,
	})
	v1, v2 := startHAProxy(t, p.traffic)
	via := func(from, lb string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			DialContext:       func(ctx context.Context, network, _ string) (net.Conn, error) { return d.DialContext(ctx, network, lb) },
			DisableKeepAlives: true,
		}}
	}
	url := p.url("/sample/echo")
	tests := []struct {
		id      string
		c       *http.Client
		headers [][2]string
		client  string
		xff     string
	}{
		// Through HAProxy: the PROXY header's source is the client.
		{id: "pp-v1", c: via("127.0.0.4", v1), client: "127.0.0.4", xff: "127.0.0.4"},
		{id: "pp-v2", c: via("127.0.0.5", v2), client: "127.0.0.5", xff: "127.0.0.5"},
		// The declared source is the peer of the walk: an untrusted one's
		// X-Forwarded-For is ignored, a trusted one's believed.
		{id: "pp-v1-forged", c: via("127.0.0.4", v1), headers: [][2]string{{"X-Forwarded-For", "6.6.6.6"}}, client: "127.0.0.4", xff: "127.0.0.4"},
		{id: "pp-v2-trusted-source", c: via("127.0.0.1", v2), headers: [][2]string{{"X-Forwarded-For", "203.0.113.7"}}, client: "203.0.113.7", xff: "203.0.113.7, 127.0.0.1"},
		// Without HAProxy: a trusted peer need not send a header, and an
		// untrusted one is served as itself.
		{id: "pp-direct-trusted", c: clientFrom("127.0.0.1"), client: "127.0.0.1", xff: "127.0.0.1"},
		{id: "pp-direct-untrusted", c: clientFrom("127.0.0.6"), client: "127.0.0.6", xff: "127.0.0.6"},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			e := echo(t, tt.c, url, tt.id, tt.headers)
			if got := e.get("X-Forwarded-For"); got != tt.xff {
				t.Errorf("back end's X-Forwarded-For: got %q, want %q", got, tt.xff)
			}
		})
	}

	// An untrusted peer that sends a PROXY header itself is cut off.
	t.Run("pp-untrusted-header-refused", func(t *testing.T) {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", "127.0.0.1:"+strconv.Itoa(p.traffic))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "PROXY TCP4 9.9.9.9 127.0.0.1 1111 80\r\nGET /sample/echo HTTP/1.1\r\nHost: x\r\nX-CorrelationID: pp-refused\r\n\r\n")
		line, err := bufio.NewReader(c).ReadString('\n')
		if err == nil || line != "" {
			t.Errorf("got %q, %v; want the connection closed without an answer", line, err)
		}
	})

	clients, ilog := stopAndReadLogs(t, h)
	for _, tt := range tests {
		if got := clients[tt.id]; got != tt.client {
			t.Errorf("%s: access log client: got %q, want %q", tt.id, got, tt.client)
		}
	}
	if _, ok := clients["pp-refused"]; ok {
		t.Errorf("the refused connection's request reached the gateway")
	}
	if !strings.Contains(ilog, "PROXY header from an untrusted peer refused") {
		t.Errorf("instance log: no debug line for the refused PROXY header")
	}
}

// TestProxyProtocolTLSFromHAProxy: the PROXY header comes before the TLS
// handshake; HTTP/1.1 and HTTP/2 (ALPN) both see the declared client.
func TestProxyProtocolTLSFromHAProxy(t *testing.T) {
	// The certificate in the group's own directory (allowed by default):
	// tlbGateway's home is made inside it, so write it after.
	var certFile, keyFile string
	var pool *x509.CertPool
	h, p := tlbGatewayWith(t, func(h *gwtest.Home) map[string]any {
		certFile, keyFile, pool = selfSigned(t, h.Path("groups", "group-2"))
		return map[string]any{
			"trustedProxies": []string{"127.0.0.1"},
			"proxyProtocol":  true,
			"tls":            map[string]any{"certFile": certFile, "keyFile": keyFile},
		}
	})
	_, v2 := startHAProxy(t, p.traffic)
	url := fmt.Sprintf("https://127.0.0.1:%d/sample/echo", p.traffic)
	for _, h2 := range []bool{false, true} {
		id := "pp-tls-h1"
		if h2 {
			id = "pp-tls-h2"
		}
		t.Run(id, func(t *testing.T) {
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.4")}, Timeout: 5 * time.Second}
			tr := &http.Transport{
				DialContext:       func(ctx context.Context, network, _ string) (net.Conn, error) { return d.DialContext(ctx, network, v2) },
				TLSClientConfig:   &tls.Config{RootCAs: pool},
				ForceAttemptHTTP2: h2,
				DisableKeepAlives: true,
			}
			if !h2 {
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			e := echo(t, &http.Client{Timeout: 10 * time.Second, Transport: tr}, url, id, nil)
			if got, want := e.get("X-Forwarded-For"), "127.0.0.4"; got != want {
				t.Errorf("back end's X-Forwarded-For: got %q, want %q", got, want)
			}
			if got, want := e.get("X-Forwarded-Proto"), "https"; got != want {
				t.Errorf("back end's X-Forwarded-Proto: got %q, want %q", got, want)
			}
		})
	}
	clients, _ := stopAndReadLogs(t, h)
	for _, id := range []string{"pp-tls-h1", "pp-tls-h2"} {
		if got := clients[id]; got != "127.0.0.4" {
			t.Errorf("%s: access log client: got %q, want %q", id, got, "127.0.0.4")
		}
	}
}
