package domain

import (
	"errors"
	"net"
	"os"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/pki"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// A joining host gets the CA certificate, its own key and the certificate
// signed for its CSR on the ANM's host — never the CA key.
func TestJoinWritesNoCAKey(t *testing.T) {
	anm := initDomain(t)
	ca, err := pki.LoadCA(anm)
	if err != nil {
		t.Fatal(err)
	}
	topo, err := topology.NewStore(anm, nil).Load()
	if err != nil {
		t.Fatal(err)
	}
	csrPEM, keyPEM, err := pki.NewKeyAndCSR("joining", []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.3")})
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.ParseCSR(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.SignCSR(csr, "Gatehouse Node Manager nodemanager-2 (host-2)", true)
	if err != nil {
		t.Fatal(err)
	}
	h := newHome(t)
	o := JoinOptions{CACertPEM: ca.CertPEM(), CertPEM: certPEM, KeyPEM: keyPEM, Topology: topo,
		Conf: NodeManagerConf{HostID: "host-2", NodeManagerID: "nodemanager-2", Port: 8090, Address: "127.0.0.3", ANMAddress: "127.0.0.2", ANMPort: 8090}}
	if err := Join(t.Context(), h, o); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(h.CertsPrivateDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("groups/certs/private on the joined host: got %v, want it missing", err)
	}
	if _, err := pki.LoadCA(h); err == nil {
		t.Error("the joined host can load the CA with its key")
	}
	if fi, err := os.Stat(pki.NodeManagerKeyFile(h)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("node manager key: %v %v", fi, err)
	}
	c, err := LoadNodeManagerConf(h)
	if err != nil || c.ANMAddress != "127.0.0.2" || c.HostID != "host-2" {
		t.Errorf("nodemanager.yaml: got %+v %v", c, err)
	}
	if err := Join(t.Context(), h, o); !errors.Is(err, topology.ErrExists) {
		t.Errorf("second join: got %v, want ErrExists", err)
	}
	// A certificate from another CA is refused and nothing is left.
	other, _ := pki.NewCA("other")
	kp, _ := other.IssueKeyPair("x", nil, nil, true)
	h2 := newHome(t)
	o.CertPEM = kp.CertPEM
	if err := Join(t.Context(), h2, o); err == nil {
		t.Error("join with a certificate of another CA: got nil, want an error")
	}
	if _, err := os.Stat(pki.CertFile(h2)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("files left after a refused join: %v", err)
	}
}
