package nodemanager

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/apitest"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
)

// The limits of docs/management-api.md ("Limits and timeouts") against a
// real node manager: its own listener, server settings and handlers.

// tlsTo is the client TLS configuration for n's listener, speaking proto
// ("h2" or "http/1.1").
func tlsTo(ca *pki.CA, proto string) *tls.Config {
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return &tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: []string{proto}}
}

// goClient is net/http's client over HTTP/1.1 or HTTP/2 only.
func goClient(ca *pki.CA, h2 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: tlsTo(ca, "http/1.1"), Protocols: new(http.Protocols)}
	if h2 {
		tr.TLSClientConfig = tlsTo(ca, "h2")
		tr.Protocols.SetHTTP2(true)
	} else {
		tr.Protocols.SetHTTP1(true)
	}
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

// wantAPIError fails unless body is the API's error shape with code.
func wantAPIError(t *testing.T, what string, status int, body []byte, code int) {
	t.Helper()
	var eb apihttp.ErrorBody
	if status != code || json.Unmarshal(body, &eb) != nil || len(eb.Errors) != 1 || eb.Errors[0].Code != code {
		t.Errorf("%s: got %d %q, want %d in the API's JSON error shape", what, status, body, code)
	}
}

// curlTo runs curl against n (verifying with the domain CA) and returns
// the status, the body and curl's exit code and stderr.
func curlTo(t *testing.T, n *NodeManager, ca *pki.CA, args ...string) (int, string, int, string) {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatalf("curl is needed (scripts/test installs it): %v", err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}), 0o644)
	base := []string{"-sS", "--max-time", "60", "--cacert", caFile, "-u", apitest.User + ":" + apitest.Pass, "-o", "-", "-w", "\n%{http_code}"}
	for i, a := range args {
		if strings.HasPrefix(a, "/") {
			args[i] = "https://localhost:" + n.Addr()[strings.LastIndexByte(n.Addr(), ':')+1:] + a
		}
	}
	cmd := exec.Command("curl", append(base, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	exit := 0
	if ee, ok := err.(*exec.ExitError); ok {
		exit = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	i := strings.LastIndexByte(s, '\n')
	if i < 0 {
		return 0, s, exit, stderr.String()
	}
	code := 0
	fmt.Sscan(s[i+1:], &code)
	return code, s[:i], exit, stderr.String()
}

// h2Conn is a raw HTTP/2 connection to n: requests as frames, so that a
// header field can be larger than the server's advertised limit (a client
// library refuses to send it).
type h2Conn struct {
	t   *testing.T
	c   *tls.Conn
	fr  *http2.Framer
	dec *hpack.Decoder
}

func dialH2(t *testing.T, n *NodeManager, ca *pki.CA) *h2Conn {
	t.Helper()
	c, err := tls.Dial("tcp", n.Addr(), tlsTo(ca, "h2"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	return &h2Conn{t: t, c: c, fr: fr, dec: hpack.NewDecoder(4096, nil)}
}

// get sends GET path on stream id (the header block in frames of 16 KiB)
// and returns the status and body, or 0 and the frame that ended the
// exchange (RST_STREAM, GOAWAY) or the read error.
func (h *h2Conn) get(id uint32, path string) (int, string, string) {
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", path}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	block := hb.Bytes()
	const frame = 16 << 10
	first := block[:min(frame, len(block))]
	block = block[len(first):]
	h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: true, EndHeaders: len(block) == 0})
	for len(block) > 0 {
		part := block[:min(frame, len(block))]
		block = block[len(part):]
		h.fr.WriteContinuation(id, len(block) == 0, part)
	}
	status, body := 0, ""
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			return 0, "", err.Error()
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				h.fr.WriteSettingsAck()
			}
		case *http2.HeadersFrame:
			if f.StreamID != id {
				continue
			}
			fields, err := h.dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				h.t.Fatal(err)
			}
			for _, hf := range fields {
				if hf.Name == ":status" {
					fmt.Sscan(hf.Value, &status)
				}
			}
			if f.StreamEnded() {
				return status, body, ""
			}
		case *http2.DataFrame:
			if f.StreamID != id {
				continue
			}
			body += string(f.Data())
			if f.StreamEnded() {
				return status, body, ""
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				return 0, "", "RST_STREAM " + f.ErrCode.String()
			}
		case *http2.GoAwayFrame:
			return 0, "", "GOAWAY " + f.ErrCode.String()
		}
	}
}

// TestOversizedHeadAnswered431: a request head over 64 KiB (a 100 KB URL)
// is answered 431 in the API's JSON error shape over HTTP/1.1 and HTTP/2,
// and over HTTP/2 the connection goes on serving. Up to
// apihttp.ServerMaxHeaderBytes the answer is the API's; beyond it the
// standard library's (HTTP/2: the connection is closed).
func TestOversizedHeadAnswered431(t *testing.T) {
	n, ca := startNM(t)
	long := "/api/topology?x=" + strings.Repeat("a", 100_000)

	for _, h2 := range []bool{false, true} {
		c := goClient(ca, h2)
		req, _ := http.NewRequest("GET", "https://"+n.Addr()+long, nil)
		req.SetBasicAuth(apitest.User, apitest.Pass)
		resp, err := c.Do(req)
		if err != nil {
			t.Errorf("net/http client, HTTP/2 %v: %.300v", h2, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		wantAPIError(t, fmt.Sprintf("net/http client, %s", resp.Proto), resp.StatusCode, body, 431)
	}

	code, body, exit, stderr := curlTo(t, n, ca, "--http1.1", long)
	if exit != 0 {
		t.Errorf("curl --http1.1: exit %d %s", exit, stderr)
	}
	wantAPIError(t, "curl --http1.1", code, []byte(body), 431)

	// Raw frames: the connection answers 431 on stream 1 and goes on with
	// stream 3.
	h := dialH2(t, n, ca)
	if status, body, end := h.get(1, long); end != "" {
		t.Errorf("HTTP/2, a 100 KB path: the exchange ended with %s, want a 431 answer", end)
	} else {
		wantAPIError(t, "HTTP/2 frames, a 100 KB path", status, []byte(body), 431)
		if status, body, end := h.get(3, "/api/topology"); status != 401 {
			t.Errorf("HTTP/2, the next request on the connection: %d %.100s %s, want 401", status, body, end)
		}
	}

	// Beyond the standard library's limit its HPACK decoder ends the
	// connection (docs/management-api.md says so).
	h = dialH2(t, n, ca)
	if status, _, end := h.get(1, "/api/topology?x="+strings.Repeat("a", apihttp.ServerMaxHeaderBytes+1024)); status != 0 || !strings.Contains(end, "GOAWAY") {
		t.Errorf("HTTP/2, a path over %d bytes: got %d %s, want a GOAWAY", apihttp.ServerMaxHeaderBytes, status, end)
	}
}

// TestRefusedUploadAnswerArrives: an upload over the limit is answered 413,
// and the client receives the whole answer although it is still sending:
// the server reads and throws away the rest of the body (up to
// apihttp.LingerBytes, for up to apihttp.LingerTime) before it closes.
func TestRefusedUploadAnswerArrives(t *testing.T) {
	n, ca := startNM(t)
	const path = "/api/deployment/group/configuration/file/group-2?deploy=false"
	size := 20 << 20 // the limit is 9 MiB: 11 MiB left to read when refused
	big := bytes.Repeat([]byte("a"), size)

	// A client that sends its whole request before it reads the answer
	// (many do): before the fix the server stopped reading at the limit
	// and closed, and the client saw a reset instead of the answer.
	t.Run("HTTP/1.1 sending all first", func(t *testing.T) {
		c, err := tls.Dial("tcp", n.Addr(), tlsTo(ca, "http/1.1"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		req, _ := http.NewRequest("POST", "https://localhost"+path, bytes.NewReader(big))
		req.SetBasicAuth(apitest.User, apitest.Pass)
		req.Header.Set("Content-Type", "application/yaml")
		if err := req.Write(c); err != nil {
			t.Fatalf("sending the request: %v (the server closed before reading the rest)", err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), req)
		if err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("reading the answer's body: %v", err)
		}
		wantAPIError(t, "HTTP/1.1", resp.StatusCode, body, 413)
		if !resp.Close {
			t.Errorf("HTTP/1.1: the answer lacks Connection: close")
		}
	})

	// A client that never stops sending is cut off after the bounds.
	t.Run("HTTP/1.1 endless body", func(t *testing.T) {
		c, err := tls.Dial("tcp", n.Addr(), tlsTo(ca, "http/1.1"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		auth := base64.StdEncoding.EncodeToString([]byte(apitest.User + ":" + apitest.Pass))
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic %s\r\nContent-Type: application/yaml\r\nTransfer-Encoding: chunked\r\n\r\n", path, auth)
		sent := make(chan int64, 1)
		go func() {
			var total int64
			chunk := append(append([]byte("10000\r\n"), bytes.Repeat([]byte("a"), 0x10000)...), "\r\n"...)
			for {
				if _, err := c.Write(chunk); err != nil {
					break
				}
				total += 0x10000
			}
			sent <- total
		}()
		start := time.Now()
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		wantAPIError(t, "HTTP/1.1 endless", resp.StatusCode, body, 413)
		total := <-sent
		limit := int64(9<<20 + apihttp.LingerBytes + 16<<20) // the limit, the lingering, buffers
		if d := time.Since(start); d > apihttp.LingerTime+5*time.Second {
			t.Errorf("the connection was closed after %v, over the %v of lingering", d, apihttp.LingerTime)
		}
		if total > limit {
			t.Errorf("the server read %d MiB of an endless body, over %d MiB", total>>20, limit>>20)
		}
		t.Logf("an endless body: %d MiB sent before the connection was closed, after %v", total>>20, time.Since(start).Round(time.Millisecond))
	})

	t.Run("net/http HTTP/2", func(t *testing.T) {
		req, _ := http.NewRequest("POST", "https://"+n.Addr()+path, bytes.NewReader(big))
		req.SetBasicAuth(apitest.User, apitest.Pass)
		resp, err := goClient(ca, true).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil && !errors.Is(err, io.EOF) {
			t.Errorf("reading the answer's body: %v", err)
		}
		wantAPIError(t, "net/http HTTP/2", resp.StatusCode, body, 413)
	})

	file := filepath.Join(t.TempDir(), "big.yaml")
	os.WriteFile(file, big, 0o644)
	for _, proto := range []string{"--http1.1", "--http2"} {
		for i := range 3 {
			code, body, exit, stderr := curlTo(t, n, ca, proto, "-X", "POST", "--data-binary", "@"+file, path)
			if exit != 0 {
				t.Errorf("curl %s, upload %d: exit %d %s", proto, i, exit, stderr)
			}
			wantAPIError(t, fmt.Sprintf("curl %s, upload %d", proto, i), code, []byte(body), 413)
		}
	}
}
