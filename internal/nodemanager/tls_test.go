package nodemanager

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apitest"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
)

// startNM starts a real node manager (its HTTPS listener on 127.0.0.1).
func startNM(t *testing.T) (*NodeManager, *pki.CA) {
	t.Helper()
	h := apitest.Domain(t)
	n, err := New(Options{Home: h})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown(t.Context()) })
	ca, err := pki.LoadCA(h)
	if err != nil {
		t.Fatal(err)
	}
	return n, ca
}

func clientCert(t *testing.T, ca *pki.CA) tls.Certificate {
	t.Helper()
	return certNamed(t, ca, pki.NodeManagerCommonName("nodemanager-1", "host-1"))
}

// certNamed is a certificate of ca with common name cn.
func certNamed(t *testing.T, ca *pki.CA, cn string) tls.Certificate {
	t.Helper()
	kp, err := ca.IssueKeyPair(cn, []string{"localhost"}, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTLSListener(t *testing.T) {
	n, ca := startNM(t)
	h := n.opts.Home
	base := "https://" + n.Addr()

	// The certificate: issued on first start, signed by the domain CA, with
	// the expected names; the key 0600.
	tc, err := pki.LoadKeyPair(h, pki.NodeManagerCertFile(h), pki.NodeManagerKeyFile(h))
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.CheckLeaf(tc.Leaf, ca.Cert, []string{"localhost", "gw1"}, []net.IP{net.ParseIP("127.0.0.1")}, time.Hour); err != nil {
		t.Errorf("certificate: %v", err)
	}
	if fi, err := os.Stat(pki.NodeManagerKeyFile(h)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", fi.Mode(), err)
	}

	good := clientCert(t, ca)
	other, _ := pki.NewCA("Other")
	bad := clientCert(t, other)

	// Without the domain CA the server is not trusted.
	if _, err := apitest.TLSClient(nil).Get(base + "/api/topology"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without the CA: got %v, want a certificate error", err)
	}
	// /api with credentials, over TLS.
	req, _ := http.NewRequest("GET", base+"/api/topology", nil)
	req.SetBasicAuth(apitest.User, apitest.Pass)
	if a := apitest.Do(t, apitest.TLSClient(ca.Pool()), req); a.Code != 200 {
		t.Errorf("/api/topology: got %d %s", a.Code, a.Body)
	}
	req, _ = http.NewRequest("GET", base+"/api/topology", nil)
	apitest.Do(t, apitest.TLSClient(ca.Pool()), req).WantError(t, 401)

	// /nm: a domain certificate is accepted; none is 403; one from another
	// CA fails the handshake.
	req, _ = http.NewRequest("GET", base+"/nm/status", nil)
	a := apitest.Do(t, apitest.TLSClient(ca.Pool(), good), req)
	if a.Code != 200 || !strings.Contains(a.Body, `"nodeManagerID":"nodemanager-1"`) || !strings.Contains(a.Body, `"admin":true`) {
		t.Errorf("/nm/status with a domain certificate: got %d %s", a.Code, a.Body)
	}
	req, _ = http.NewRequest("GET", base+"/nm/status", nil)
	apitest.Do(t, apitest.TLSClient(ca.Pool()), req).WantError(t, 403, "client certificate")
	// Signed by the domain CA but not a node manager's of the topology:
	// an instance's certificate, a node manager the topology does not
	// hold, one on another host, a name that only starts right.
	for _, cn := range []string{pki.InstanceCommonName("group-2", "instance-1"), pki.NodeManagerCommonName("nodemanager-9", "host-9"),
		pki.NodeManagerCommonName("nodemanager-1", "host-2"), pki.NodeManagerCNPrefix + "nodemanager-1", "peer"} {
		req, _ = http.NewRequest("GET", base+"/nm/status", nil)
		a := apitest.Do(t, apitest.TLSClient(ca.Pool(), certNamed(t, ca, cn)), req)
		if a.Code != 403 {
			t.Errorf("/nm/status with a certificate named %q: got %d %s, want 403", cn, a.Code, a.Body)
		}
	}
	// (A Go client sends a certificate only when its issuer is one the
	// server asks for; GetClientCertificate sends it anyway.)
	forced := apitest.TLSClient(ca.Pool())
	forced.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &bad, nil }
	if _, err := forced.Get(base + "/nm/status"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a certificate of another CA: got %v, want the handshake refused", err)
	}
	// Paths outside /nm and /api: 404 naming /api.
	req, _ = http.NewRequest("GET", base+"/elsewhere", nil)
	req.SetBasicAuth(apitest.User, apitest.Pass)
	apitest.Do(t, apitest.TLSClient(ca.Pool()), req).WantError(t, 404, "/api")
	// TLS 1.1 is refused.
	c, err := tls.Dial("tcp", n.Addr(), &tls.Config{RootCAs: ca.Pool(), MaxVersion: tls.VersionTLS11})
	if err == nil {
		c.Close()
		t.Errorf("TLS 1.1: got a connection")
	}

	// A restart keeps the certificate.
	serial := tc.Leaf.SerialNumber
	if err := n.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	n2, err := New(Options{Home: h})
	if err != nil {
		t.Fatal(err)
	}
	if err := n2.Start(); err != nil {
		t.Fatal(err)
	}
	defer n2.Shutdown(t.Context())
	tc2, _ := pki.LoadKeyPair(h, pki.NodeManagerCertFile(h), pki.NodeManagerKeyFile(h))
	if tc2.Leaf.SerialNumber.Cmp(serial) != 0 {
		t.Errorf("restart issued a new certificate")
	}
}

func TestNodeManagerCertWithoutCAKey(t *testing.T) {
	h := apitest.Domain(t)
	os.Remove(pki.KeyFile(h))
	n, err := New(Options{Home: h})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err == nil || !strings.Contains(err.Error(), "cannot issue") {
		t.Errorf("start without certificate nor CA key: got %v", err)
		n.Shutdown(t.Context())
	}
}

// TestListenerOffersOnlyAEAD: over TLS 1.2 the listener takes only ECDHE
// with AEAD ciphers (Mozilla's intermediate profile): a client offering CBC
// or static RSA suites alone cannot connect.
func TestListenerOffersOnlyAEAD(t *testing.T) {
	n, ca := startNM(t)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	dial := func(suites ...uint16) error {
		c, err := tls.Dial("tcp", n.Addr(), &tls.Config{RootCAs: roots, ServerName: "localhost", MaxVersion: tls.VersionTLS12, CipherSuites: suites})
		if err == nil {
			c.Close()
		}
		return err
	}
	for _, weak := range []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
		tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256} {
		if err := dial(weak); err == nil {
			t.Errorf("%s: handshake succeeded, want refused", tls.CipherSuiteName(weak))
		}
	}
	if err := dial(tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256); err != nil {
		t.Errorf("ECDHE with AES-GCM: %v", err)
	}
}

// TestSlowBodyCutOff: a request whose body trickles in (a login sending a
// byte at a time) is ended by the read timeout instead of holding the
// connection for as long as the client likes.
func TestSlowBodyCutOff(t *testing.T) {
	old := readTimeout
	readTimeout = 500 * time.Millisecond
	t.Cleanup(func() { readTimeout = old })
	n, ca := startNM(t)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	c, err := tls.Dial("tcp", n.Addr(), &tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	fmt.Fprintf(c, "POST /api/rbac/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 40\r\n\r\n")
	ended := make(chan struct{})
	go func() {
		io.Copy(io.Discard, c) // until the server answers and closes
		close(ended)
	}()
	for i := 0; i < 40; i++ { // 40 bytes, one per 200 ms: 8 s if nothing cuts it off
		select {
		case <-ended:
			if i*200 > 4000 {
				t.Errorf("the connection ended only after %d ms of trickling", i*200)
			}
			return
		case <-time.After(200 * time.Millisecond):
			c.Write([]byte("u"))
		}
	}
	t.Fatal("the server read the whole trickled body: no read timeout")
}
