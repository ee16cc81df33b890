package apiclient

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// seen is what the test server received.
type seen struct {
	method, path, ctype, body, ifMatch, csrf, cookie, user, pass string
	basic                                                        bool
}

func server(t *testing.T) (*httptest.Server, *seen) {
	t.Helper()
	var s seen
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s = seen{method: r.Method, path: r.URL.Path, ctype: r.Header.Get("Content-Type"), body: string(b),
			ifMatch: r.Header.Get("If-Match"), csrf: r.Header.Get("csrf-token")}
		if ck, err := r.Cookie(SessionCookie); err == nil {
			s.cookie = ck.Value
		}
		s.user, s.pass, s.basic = r.BasicAuth()
		switch r.URL.Path {
		case "/api/rbac/login":
			http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "tok1"})
			fmt.Fprint(w, `{"result":{"user":"ann","csrfToken":"c1","expires":"later"}}`)
		case "/api/renew":
			http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "tok2"})
			w.Header().Set("ETag", `"7"`)
			fmt.Fprint(w, `{"result":{"ok":true}}`)
		case "/api/conflict":
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(http.StatusConflict)
			fmt.Fprint(w, `{"errors":[{"code":409,"message":"stale If-Match"},{"code":409,"message":"second"}]}`)
		case "/api/text":
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprint(w, "  plain failure  ")
		case "/api/notjson":
			fmt.Fprint(w, `<html>`)
		default:
			fmt.Fprint(w, `{"result":{"ok":true}}`)
		}
	}))
	t.Cleanup(ts.Close)
	return ts, &s
}

func caFile(t *testing.T, ts *httptest.Server) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw})
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func client(t *testing.T, ts *httptest.Server) *Client {
	t.Helper()
	tc, _, err := TLSConfig(caFile(t, ts), false)
	if err != nil {
		t.Fatal(err)
	}
	return &Client{Base: ts.URL + "/api", HTTP: NewHTTPClient(tc)}
}

func TestSessionAndBasic(t *testing.T) {
	ts, s := server(t)
	ctx := context.Background()
	c := client(t, ts)
	c.Username, c.Password = "ann", secret.FromString("pw")

	// Login never sends Basic; it returns the session the API set.
	sess, _, err := c.Login(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.basic || s.method != "POST" || !strings.Contains(s.body, "username=ann") || !strings.Contains(s.body, "password=pw") || s.ctype != "application/x-www-form-urlencoded" {
		t.Errorf("login request: %+v", *s)
	}
	if sess.Cookie != "tok1" || sess.CSRFToken != "c1" || sess.User != "ann" || sess.Expires != "later" || sess.URL != c.Base {
		t.Errorf("session: %+v", sess)
	}

	// Basic on other paths without a session.
	if _, _, err := c.Send(ctx, Request{Method: "GET", Path: "/x"}); err != nil || !s.basic || s.user != "ann" || s.pass != "pw" {
		t.Errorf("basic: %v %+v", err, *s)
	}

	// With the session: cookie always, CSRF only on changes, never Basic.
	c.Session = sess
	var renewed *Session
	c.SessionRenewed = func(x *Session) { renewed = x }
	if _, _, err := c.Send(ctx, Request{Method: "GET", Path: "/x"}); err != nil || s.cookie != "tok1" || s.csrf != "" || s.basic {
		t.Errorf("GET with session: %v %+v", err, *s)
	}
	raw, resp, err := c.Send(ctx, Request{Method: "PUT", Path: "/renew", JSON: map[string]int{"a": 1}, Version: 5})
	if err != nil || s.csrf != "c1" || s.ifMatch != `"5"` || s.ctype != "application/json" || s.body != `{"a":1}` {
		t.Errorf("PUT with session: %v %+v", err, *s)
	}
	if string(raw) != `{"ok":true}` || VersionOf(resp) != 7 {
		t.Errorf("result %s, version %d", raw, VersionOf(resp))
	}
	if renewed == nil || renewed.Cookie != "tok2" || c.Session.Cookie != "tok2" {
		t.Errorf("renewed cookie: %+v", renewed)
	}
	// A raw body goes as its content type.
	if _, _, err := c.SendRaw(ctx, Request{Method: "POST", Path: "/x", Body: []byte("tar"), ContentType: "application/gzip", Accept: "*/*"}); err != nil || s.body != "tar" || s.ctype != "application/gzip" {
		t.Errorf("raw body: %v %+v", err, *s)
	}
}

func TestErrors(t *testing.T) {
	ts, _ := server(t)
	ctx := context.Background()
	c := client(t, ts)
	_, _, err := c.Send(ctx, Request{Method: "DELETE", Path: "/conflict", Version: 4})
	var se *StatusError
	if !errors.As(err, &se) || se.Status != 409 || se.RetryAfter != "3" || se.Version != 4 || se.Path != "/conflict" ||
		strings.Join(se.Messages, "|") != "stale If-Match|second" {
		t.Errorf("409: %#v", err)
	}
	if _, _, err := c.Send(ctx, Request{Method: "GET", Path: "/text"}); !errors.As(err, &se) || se.Status != 502 || strings.Join(se.Messages, "|") != "plain failure" {
		t.Errorf("text error: %#v", err)
	}
	if _, _, err := c.Send(ctx, Request{Method: "GET", Path: "/notjson"}); err == nil || !strings.Contains(err.Error(), "not a management API answer") {
		t.Errorf("not an envelope: %v", err)
	}

	// A CA that did not sign the server's certificate: its fingerprint.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other CA"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	otherCA := filepath.Join(t.TempDir(), "other.pem")
	os.WriteFile(otherCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	tc, _, err := TLSConfig(otherCA, false)
	if err != nil {
		t.Fatal(err)
	}
	c.HTTP = NewHTTPClient(tc)
	_, _, err = c.Send(ctx, Request{Method: "GET", Path: "/x"})
	var te *TransportError
	if !errors.As(err, &te) || te.Cert == nil || !te.Cert.Unknown {
		t.Fatalf("unknown CA: %#v", err)
	}
	sum := sha256.Sum256(ts.Certificate().Raw)
	if te.Cert.Fingerprint != Fingerprint(sum[:]) || te.Base != c.Base {
		t.Errorf("fingerprint: got %s, want %s", te.Cert.Fingerprint, Fingerprint(sum[:]))
	}

	// Nobody listening.
	ln := httptest.NewServer(http.NotFoundHandler())
	addr := ln.URL
	ln.Close()
	c.Base = addr + "/api"
	if _, _, err = c.Send(ctx, Request{Method: "GET", Path: "/x"}); !errors.As(err, &te) || te.Cert != nil {
		t.Errorf("refused: %#v", err)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		t.Errorf("the url.Error is unwrapped: %v", err)
	}
}

func TestTLSConfig(t *testing.T) {
	if _, _, err := TLSConfig(filepath.Join(t.TempDir(), "missing.pem"), false); err == nil {
		t.Error("missing CA file: want an error")
	}
	bad := filepath.Join(t.TempDir(), "bad.pem")
	os.WriteFile(bad, []byte("not pem"), 0o600)
	if _, _, err := TLSConfig(bad, false); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("not PEM: %v", err)
	}
	if tc, _, err := TLSConfig(bad, true); err != nil || !tc.InsecureSkipVerify {
		t.Errorf("insecure: %v", err)
	}
	if Fingerprint([]byte{0xab, 0x01}) != "AB:01" {
		t.Errorf("fingerprint format: %s", Fingerprint([]byte{0xab, 0x01}))
	}
}
