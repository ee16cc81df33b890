package tools_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
)

// protoGroup routes /sample to the sample back end (10 MiB body limit by
// default), /big to it with no body limit, /small with a 1000-byte limit.
const protoGroup = `backends:
  - name: sample
    sample: true
apis:
  - name: small
    pathPrefix: /small
    stripPrefix: true
    maxBodyBytes: 1000
    backend: sample
  - name: big
    pathPrefix: /big
    stripPrefix: true
    maxBodyBytes: 0
    backend: sample
  - name: sample
    pathPrefix: /sample
    stripPrefix: true
    backend: sample
`

// gateway starts one instance with protoGroup and the given instance
// settings (dotted keys), and returns its ports and pid.
func gateway(t *testing.T, settings map[string]string) (*gwtest.Home, ports, int) {
	t.Helper()
	return gatewayWith(t, settings)
}

// gatewayWith is gateway with allowedConfigDirs set in nodemanager.yaml.
func gatewayWith(t *testing.T, settings map[string]string, allowedDirs ...string) (*gwtest.Home, ports, int) {
	t.Helper()
	h := gwtest.NewHome(t)
	p := newInstance(t, h, "G", "S", false)
	if len(allowedDirs) > 0 {
		allowConfigDirs(t, h, allowedDirs...)
	}
	if err := os.WriteFile(h.Path("groups", "group-2", "conf", "group.yaml"), []byte(protoGroup), 0o644); err != nil {
		t.Fatal(err)
	}
	if len(settings) > 0 {
		if err := groupconf.SetKeys(h.Path("groups", "group-2", "instance-1", "conf", "instance.yaml"), settings, nil, ""); err != nil {
			t.Fatal(err)
		}
	}
	h.MustRun("", "startinstance", "-d", "-q", "-n", "S", "-g", "G")
	t.Cleanup(func() { h.Run("", "startinstance", "-k", "-q", "-n", "S", "-g", "G") })
	return h, p, readPID(t, h)
}

// selfSigned writes a certificate for 127.0.0.1 and its key into dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = dir+"/traffic.pem", dir+"/traffic.key"
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestHTTP2AndTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	// The certificate lies outside the group's directory: the host's
	// operator allows its directory (allowedConfigDirs).
	_, p, _ := gatewayWith(t, map[string]string{"traffic.tls.certFile": certFile, "traffic.tls.keyFile": keyFile}, dir)
	base := fmt.Sprintf("https://127.0.0.1:%d", p.traffic)

	// Go's client negotiates h2 through ALPN.
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	resp, err := c.Post(base+"/sample/echo?q=1", "text/plain", strings.NewReader("hello h2"))
	if err != nil {
		t.Fatal(err)
	}
	var echo struct {
		Method, Path, Query, Body string
		Headers                   map[string][]string
	}
	json.NewDecoder(resp.Body).Decode(&echo)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
		t.Fatalf("got %s %d, want HTTP/2 200", resp.Proto, resp.StatusCode)
	}
	if echo.Method != "POST" || echo.Path != "/echo" || echo.Query != "q=1" || echo.Body != "hello h2" {
		t.Errorf("back end saw %+v", echo)
	}
	if got := echo.Headers["X-Forwarded-Proto"]; len(got) != 1 || got[0] != "https" {
		t.Errorf("X-Forwarded-Proto: got %v, want https", got)
	}
	if resp.Header.Get("X-CorrelationID") == "" {
		t.Errorf("no correlation id on the HTTP/2 response")
	}
	// Health check and 404 over HTTP/2 take the same path.
	if resp, err := c.Get(base + "/healthcheck"); err != nil || resp.StatusCode != 200 {
		t.Errorf("healthcheck over h2: %v %v", resp, err)
	}
	if resp, err := c.Get(base + "/nope"); err != nil || resp.StatusCode != 404 {
		t.Errorf("404 over h2: %v %v", resp, err)
	}

	// curl, a real HTTP/2 client (nghttp2), and HTTP/1.1 over TLS.
	for _, tc := range []struct{ flag, want string }{{"--http2", "2"}, {"--http1.1", "1.1"}} {
		out, err := exec.Command("curl", "-sS", tc.flag, "--cacert", certFile, "-o", "/dev/null", "-w", "%{http_version} %{http_code}", base+"/sample/echo").CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s: %v %s", tc.flag, err, out)
		}
		if got := string(out); got != tc.want+" 200" {
			t.Errorf("curl %s: got %q, want %q", tc.flag, got, tc.want+" 200")
		}
	}
}

func TestWebSocketThroughGateway(t *testing.T) {
	_, p, _ := gateway(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, fmt.Sprintf("ws://127.0.0.1:%d/sample/ws", p.traffic), nil)
	if err != nil {
		t.Fatalf("dial through the gateway: %v", err)
	}
	defer c.CloseNow()
	if resp.Header.Get("X-CorrelationID") == "" {
		t.Errorf("no correlation id on the 101 answer")
	}
	for i := 0; i < 20; i++ {
		msg := []byte(strings.Repeat(strconv.Itoa(i), 1+i*500))
		if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("message %d: got %d bytes %v, want %d bytes", i, len(got), err, len(msg))
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
}

func TestServerSentEventsStream(t *testing.T) {
	_, p, _ := gateway(t, nil)
	resp, err := (&http.Client{Transport: &http.Transport{}}).Get(p.url("/sample/sse?n=4&ms=400"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type: got %q", ct)
	}
	// Each event says when the back end produced it. An event must reach us
	// before the next one is produced: the gateway does not buffer.
	sc := bufio.NewScanner(resp.Body)
	var received []time.Time
	var produced []time.Time
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "data: ") {
			continue
		}
		received = append(received, time.Now())
		at, err := time.Parse(time.RFC3339Nano, line[strings.LastIndex(line, " ")+1:])
		if err != nil {
			t.Fatalf("event %q: %v", line, err)
		}
		produced = append(produced, at)
	}
	if len(received) != 4 {
		t.Fatalf("got %d events, want 4", len(received))
	}
	for i := 0; i+1 < len(received); i++ {
		if !received[i].Before(produced[i+1]) {
			t.Errorf("event %d arrived at %v, after event %d was produced at %v: the stream was buffered", i+1, received[i], i+2, produced[i+1])
		}
	}
}

// rss returns the resident set size of pid in KiB.
func rss(t *testing.T, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			n, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// patternReader yields n bytes of a repeating pattern (period 251) without
// holding them.
type patternReader struct{ n, off int64 }

var pattern = func() []byte {
	b := make([]byte, 251*256)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}()

func (r *patternReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	if int64(len(p)) > r.n-r.off {
		p = p[:r.n-r.off]
	}
	start := int(r.off % 251)
	n := copy(p, pattern[start:])
	r.off += int64(n)
	return n, nil
}

func TestGigabyteUploadStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("1 GiB upload")
	}
	_, p, pid := gateway(t, nil)
	const size = 1 << 30
	want := sha256.New()
	io.Copy(want, &patternReader{n: size})

	// Warm up so that the baseline includes the engine's pools.
	gwtest.Get(t, p.url("/sample/echo"))
	before := rss(t, pid)
	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if v := rss(t, pid); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	req, _ := http.NewRequest("POST", p.url("/big/upload"), &patternReader{n: size})
	req.ContentLength = size
	resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
	close(stop)
	<-sampled
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Bytes  int64
		SHA256 string
	}
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if resp.StatusCode != 200 || got.Bytes != size || got.SHA256 != hex.EncodeToString(want.Sum(nil)) {
		t.Fatalf("upload: got %d %+v, want 200 with %d bytes and the right digest", resp.StatusCode, got, size)
	}
	growth := peak.Load() - before
	t.Logf("instance RSS %d KiB before, %d KiB peak during a 1 GiB upload (+%d KiB)", before, peak.Load(), growth)
	if growth > 16<<10 {
		t.Errorf("RSS grew by %d KiB during the upload, want at most 16 MiB: the body is being held", growth)
	}
}

func TestBodyLimit(t *testing.T) {
	_, p, _ := gateway(t, nil)
	c := &http.Client{Transport: &http.Transport{}}
	post := func(path string, n int, chunked bool) int {
		var body io.Reader = bytes.NewReader(bytes.Repeat([]byte("x"), n))
		if chunked {
			body = io.MultiReader(body) // hides the length: chunked
		}
		resp, err := c.Post(p.url(path), "application/octet-stream", body)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		path    string
		n       int
		chunked bool
		want    int
	}{
		{"/small/upload", 1000, false, 200},
		{"/small/upload", 1001, false, 413},
		{"/small/upload", 1000, true, 200},
		{"/small/upload", 5000, true, 413},
		{"/sample/upload", 11 << 20, false, 413}, // the 10 MiB default
	} {
		if got := post(tc.path, tc.n, tc.chunked); got != tc.want {
			t.Errorf("POST %s with %d bytes (chunked %v): got %d, want %d", tc.path, tc.n, tc.chunked, got, tc.want)
		}
	}
}

// rawExchange sends raw bytes on a new connection and returns what the
// gateway answered before closing (it must close after a refusal).
func rawExchange(t *testing.T, port int, raw string) (status int, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, true
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	// After a refusal the connection must be closed: nothing more to read.
	_, err = br.ReadByte()
	return resp.StatusCode, err == io.EOF
}

func TestSmugglingRefused(t *testing.T) {
	h, p, _ := gateway(t, map[string]string{"traffic.maxHeaderBytes": "4096", "traffic.maxHeaderCount": "50"})
	const path = "/sample/echo"
	cases := []struct {
		name string
		raw  string
		want int
	}{
		{"CL and TE", "POST " + path + " HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"TE and CL", "POST " + path + " HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400},
		{"two different CL", "POST " + path + " HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400},
		{"CL list", "POST " + path + " HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!", 400},
		{"CL with sign", "POST " + path + " HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400},
		{"TE list", "POST " + path + " HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400},
		{"TE unknown coding", "POST " + path + " HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"TE in HTTP/1.0", "POST " + path + " HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"bad chunk size", "POST " + path + " HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400},
		{"0x chunk size", "POST " + path + " HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", 400},
		{"chunk without CRLF", "POST " + path + " HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX0\r\n\r\n", 400},
		{"obs-fold", "GET " + path + " HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400},
		{"bare LF", "GET " + path + " HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n", 400},
		{"bare CR", "GET " + path + " HTTP/1.1\r\nHost: a\rX-A: b\r\n\r\n", 400},
		{"space before colon", "GET " + path + " HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", 400},
		{"no Host", "GET " + path + " HTTP/1.1\r\n\r\n", 400},
		{"two Hosts", "GET " + path + " HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"bad percent-escape", "GET /sample/a%zz HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"NUL in value", "GET " + path + " HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", 400},
		{"header too large", "GET " + path + " HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("a", 5000) + "\r\n\r\n", 431},
		{"too many headers", "GET " + path + " HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X-A: b\r\n", 60) + "\r\n", 431},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, closed := rawExchange(t, p.traffic, tc.raw)
			if status != tc.want || !closed {
				t.Errorf("got status %d (connection closed %v), want %d and closed", status, closed, tc.want)
			}
		})
	}
	// A valid chunked request on the same listener still works.
	status, _ := rawExchange(t, p.traffic, "POST "+path+" HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
	if status != 200 {
		t.Errorf("valid chunked request: got %d, want 200", status)
	}
	// Every refusal is in the access log (flushed at stop), and only the
	// valid request was answered by the back end. (A chunked request whose
	// head is valid is streamed to the back end as it arrives; when its
	// body turns out malformed, the client gets 400 and the back-end
	// connection is closed, never reused, so nothing can be smuggled.)
	h.MustRun("", "startinstance", "-k", "-q", "-n", "S", "-g", "G")
	data, err := os.ReadFile(h.Path("groups", "group-2", "instance-1", "logs", "access.log"))
	if err != nil {
		t.Fatal(err)
	}
	rejected, forwarded := 0, 0
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var e struct {
			Rejected string
			API      string
			Status   int
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("access log line %q: %v", line, err)
		}
		if e.Rejected != "" {
			rejected++
		}
		if e.API != "" && e.Status == 200 {
			forwarded++
		}
	}
	if rejected != len(cases) || forwarded != 1 {
		t.Errorf("access log: got %d rejected and %d forwarded lines, want %d and 1", rejected, forwarded, len(cases))
	}
}

// awaitClosed reads from c until the server closes it, or fails after limit.
func awaitClosed(t *testing.T, c net.Conn, limit time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(limit))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the gateway kept the connection open for %v", limit)
	}
}

func TestSlowClientTimeouts(t *testing.T) {
	_, p, _ := gateway(t, map[string]string{"traffic.readHeaderTimeout": "1", "traffic.idleTimeout": "1", "traffic.bodyIdleTimeout": "1"})
	addr := fmt.Sprintf("127.0.0.1:%d", p.traffic)
	t.Run("slow headers", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /sample/echo HTTP/1.1\r\nHost: a\r\n") // and never the end
		awaitClosed(t, c, 15*time.Second)
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /healthcheck HTTP/1.1\r\nHost: a\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("first request: %v %v", resp, err)
		}
		io.Copy(io.Discard, resp.Body)
		awaitClosed(t, c, 15*time.Second)
	})
	t.Run("slow body", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "POST /sample/upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789") // 90 bytes never come
		awaitClosed(t, c, 15*time.Second)
	})
}

// allowConfigDirs adds dirs to allowedConfigDirs of the host's
// nodemanager.yaml.
func allowConfigDirs(t *testing.T, h *gwtest.Home, dirs ...string) {
	t.Helper()
	f := h.Path("system", "conf", "nodemanager.yaml")
	data, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	data = append(data, "allowedConfigDirs:\n"...)
	for _, d := range dirs {
		data = append(data, fmt.Sprintf("  - %q\n", d)...)
	}
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestConfigFilesConfined: a configuration that names a file outside its
// group's directory, or the domain's own key, does not start; the refusal
// names the key, the file and the rule.
func TestConfigFilesConfined(t *testing.T) {
	h := gwtest.NewHome(t)
	newInstance(t, h, "G", "S", false)
	inst := h.Path("groups", "group-2", "instance-1", "conf", "instance.yaml")
	outside := t.TempDir()
	certFile, keyFile, _ := selfSigned(t, outside)
	for _, tc := range []struct {
		name, cert, key, want string
	}{
		{"the domain CA's key as the traffic key", certFile, h.Path("groups", "certs", "private", "domainkey.pem"), "key material"},
		{"a key outside the group", certFile, keyFile, "only files under its group's directory"},
	} {
		if err := groupconf.SetKeys(inst, map[string]string{"traffic.tls.certFile": tc.cert, "traffic.tls.keyFile": tc.key}, nil, ""); err != nil {
			t.Fatal(err)
		}
		r := h.Run("", "startinstance", "-d", "-q", "-n", "S", "-g", "G")
		if r.Code == 0 {
			h.Run("", "startinstance", "-k", "-q", "-n", "S", "-g", "G")
			t.Fatalf("%s: the instance started", tc.name)
		}
		if out := r.Stdout + r.Stderr; !strings.Contains(out, "traffic.tls.keyFile") || !strings.Contains(out, tc.key) || !strings.Contains(out, tc.want) {
			t.Errorf("%s: got %s, want the key, the file and %q", tc.name, r, tc.want)
		}
	}
	// Allowed by the host's operator: it starts.
	allowConfigDirs(t, h, outside)
	h.MustRun("", "startinstance", "-d", "-q", "-n", "S", "-g", "G")
	h.Run("", "startinstance", "-k", "-q", "-n", "S", "-g", "G")
}
