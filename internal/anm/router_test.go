package anm

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
	"github.com/gatehouse-gw/gatehouse/internal/nodeapi"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
)

// withIdentity gives e's router its certificate, as the node manager's listener does when it starts.
func (e *apiEnv) withIdentity(t *testing.T) {
	t.Helper()
	dns, ips := nodeapi.CertNames("gw1", "127.0.0.1")
	live, err := nodeapi.NodeManagerLive(e.h, slog.New(slog.DiscardHandler), "nm", dns, ips)
	if err != nil {
		t.Fatal(err)
	}
	e.mgmt.SetIdentity(live)
}

// fakeInstance serves handler on a management listener as an instance does:
// mutual TLS with the certificate of instance-1 of group-2 (issued by
// CreateInstance) or, with ca set, one of that CA.
func fakeInstance(t *testing.T, e *apiEnv, ca *pki.CA, handler http.Handler) *httptest.Server {
	t.Helper()
	return fakeInstanceOn(t, e, ca, handler, 0)
}

// fakeInstanceOn is fakeInstance listening on port (0: any).
func fakeInstanceOn(t *testing.T, e *apiEnv, ca *pki.CA, handler http.Handler, port int) *httptest.Server {
	t.Helper()
	caCert, err := pki.LoadCACert(e.h)
	if err != nil {
		t.Fatal(err)
	}
	var cert tls.Certificate
	if ca == nil {
		if cert, err = pki.LoadKeyPair(e.h, pki.InstanceCertFile(e.h, "group-2", "instance-1"), pki.InstanceKeyFile(e.h, "group-2", "instance-1")); err != nil {
			t.Fatal(err)
		}
	} else {
		dns, ips := pki.InstanceCertNames("127.0.0.1")
		kp, err := ca.IssueKeyPair("other", dns, ips, true)
		if err != nil {
			t.Fatal(err)
		}
		if cert, err = tls.X509KeyPair(kp.CertPEM, kp.KeyPEM.Reveal()); err != nil {
			t.Fatal(err)
		}
	}
	inst := httptest.NewUnstartedServer(handler)
	if port != 0 {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		inst.Listener.Close()
		inst.Listener = ln
	}
	inst.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	inst.TLS = pki.MutualTLSServer(cert, caCert)
	inst.StartTLS()
	t.Cleanup(inst.Close)
	return inst
}

func TestAPIRouter(t *testing.T) {
	e := newAPIEnv(t)
	e.withIdentity(t)
	e.do("POST", "/api/topology/groups", `{"name":"G"}`)
	// The port is taken back by the fake instance below.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mp := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	if a := e.do("POST", "/api/topology/services/group-2", fmt.Sprintf(`{"name":"one","trafficPort":%d,"managementPort":%d}`, gwtest.FreePort(t), mp)); a.Code != 201 {
		t.Fatal(a.Body)
	}
	var seenMu sync.Mutex
	var seenReq *http.Request
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seenMu.Lock()
		seenReq = r.Clone(context.Background())
		seenMu.Unlock()
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/xml")
		w.Header().Set("X-Instance", "yes")
		w.WriteHeader(http.StatusTeapot)
		fmt.Fprintf(w, "<status>ok</status>%s %s?%s %s", r.Method, r.URL.Path, r.URL.RawQuery, body)
	})
	// The fake instance's TLS settings, served on the instance's port by a
	// server of our own (the httptest server's listener is not replaced
	// while its goroutine reads it).
	inst := fakeInstance(t, e, nil, handler)
	tlsConf := inst.TLS
	inst.Close()
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", mp))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler}
	go srv.Serve(tls.NewListener(l, tlsConf))
	t.Cleanup(func() { srv.Close() })

	a := e.do("GET", "/api/router/service/instance-1/healthcheck?x=1", "", "Connection", "X-Drop", "X-Drop", "1")
	if a.Code != 418 || a.Body != "<status>ok</status>GET /healthcheck?x=1 " || a.Header.Get("X-Instance") != "yes" || a.Header.Get("Content-Type") != "text/xml" {
		t.Errorf("relayed: got %d %q %v", a.Code, a.Body, a.Header)
	}
	seenMu.Lock()
	seen := seenReq
	seenMu.Unlock()
	if seen.Header.Get("Authorization") != "" || seen.Header.Get("X-Drop") != "" {
		t.Errorf("instance saw Authorization %q, X-Drop %q; want neither", seen.Header.Get("Authorization"), seen.Header.Get("X-Drop"))
	}
	// The instance saw the node manager's certificate, verified against the
	// domain CA.
	if seen.TLS == nil || len(seen.TLS.VerifiedChains) == 0 || !strings.Contains(seen.TLS.PeerCertificates[0].Subject.CommonName, "nm") {
		t.Errorf("instance's view of the client: got %+v, want the node manager's verified certificate", seen.TLS)
	}
	if a := e.do("POST", "/api/router/service/instance-1/status", "hello"); a.Body != "<status>ok</status>POST /status? hello" {
		t.Errorf("POST relayed: got %q", a.Body)
	}
	e.do("POST", "/api/router/service/instance-1/x", strings.Repeat("a", apihttp.MaxBodyBytes+1)).WantError(t, 413)
	e.do("GET", "/api/router/service/instance-9/status", "").WantError(t, 404, `"instance-9"`)
	e.do("GET", "/api/router/service/nodemanager-1/status", "").WantError(t, 400, "is a nodemanager")
	srv.Close()
	e.do("GET", "/api/router/service/instance-1/status", "").WantError(t, 502, "instance-1", "did not answer")
}

// The router verifies the instance: a listener with a certificate of
// another CA is not trusted, and without its own certificate the node
// manager does not call instances at all.
func TestAPIRouterRefusesUntrustedInstance(t *testing.T) {
	e := newAPIEnv(t)
	e.do("POST", "/api/topology/groups", `{"name":"G"}`)
	other, err := pki.NewCA("Other")
	if err != nil {
		t.Fatal(err)
	}
	// One instance created and deleted, so that the next is instance-2; its
	// management port is then the fake's (taken after the instance is
	// created: a port held by a process is refused).
	if a := e.do("POST", "/api/topology/services/group-2", fmt.Sprintf(`{"name":"one","trafficPort":%d,"managementPort":%d}`, gwtest.FreePort(t), gwtest.FreePort(t))); a.Code != 201 {
		t.Fatal(a.Body)
	}
	e.do("DELETE", "/api/topology/services/group-2/instance-1", "")
	port := gwtest.FreePort(t)
	if a := e.do("POST", "/api/topology/services/group-2", fmt.Sprintf(`{"name":"two","trafficPort":%d,"managementPort":%d}`, gwtest.FreePort(t), port)); a.Code != 201 {
		t.Fatal(a.Body)
	}
	called := false
	fakeInstanceOn(t, e, other, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { called = true }), port)
	e.do("GET", "/api/router/service/instance-2/status", "").WantError(t, 502, "instance-2", "no certificate yet")
	e.withIdentity(t)
	e.do("GET", "/api/router/service/instance-2/status", "").WantError(t, 502, "instance-2", "certificate")
	if called {
		t.Errorf("the untrusted instance was called")
	}
}
