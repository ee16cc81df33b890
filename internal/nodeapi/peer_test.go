package nodeapi

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/pki"
)

// TestClientChecksPeerIdentity: a call meant for one node manager refuses a
// server presenting another node's certificate of the same CA, even one
// holding the right address.
func TestClientChecksPeerIdentity(t *testing.T) {
	ca, err := pki.NewCA("Test")
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.IssueKeyPair(pki.NodeManagerCommonName("nodemanager-1", "host-1"), []string{"localhost"}, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"result":{}}`))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	defer srv.Close()
	addr := "localhost:" + srv.URL[strings.LastIndexByte(srv.URL, ':')+1:]
	c := newNodeClientTLS(&tls.Config{RootCAs: ca.Pool()})
	defer c.Close()
	ctx := context.Background()
	if err := c.call(ctx, Peer{NodeManagerID: "nodemanager-1", HostID: "host-1", Addr: addr}, "GET", "/nm/status", nil, nil); err != nil {
		t.Fatalf("the right node manager: %v", err)
	}
	c.Close() // no pooled connection: the next call dials again
	err = c.call(ctx, Peer{NodeManagerID: "nodemanager-2", HostID: "host-2", Addr: addr}, "GET", "/nm/status", nil, nil)
	var pe *PeerError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "not the node manager nodemanager-2 of host-2") {
		t.Fatalf("another node's certificate: got %v, want refused", err)
	}
}
