package tools_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
)

// servedLeaf connects to addr with the client certificate of h's node
// manager, trusting only caFile, and returns the certificate the server
// presented (an error when the handshake fails).
func servedLeaf(t *testing.T, h *gwtest.Home, caFile, addr string) (*x509.Certificate, error) {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(h.Path("system", "conf", "certs", "nodemanager.pem"), h.Path("system", "conf", "certs", "private", "nodemanager-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	host, _, _ := net.SplitHostPort(addr)
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: host})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	// A TLS 1.3 server refuses a client certificate after the client's
	// handshake is done: read so that such a refusal shows.
	c.Write([]byte("GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
	if _, err := c.Read(make([]byte, 1)); err != nil {
		return nil, fmt.Errorf("after the handshake: %w", err)
	}
	return c.ConnectionState().PeerCertificates[0], nil
}

func fileBytes(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRegenCerts (menu 24): a domain of two hosts with a running instance
// on each; --regen_certs --retain_domain_cert and then --regen_certs (a new
// CA) give every node manager and instance a new certificate, which the
// running processes present at once (the instances are not restarted),
// and the domain works afterwards: the router reaches both instances, the
// topologies are in sync, a new instance on the second host gets a
// certificate of the new CA. A host whose node manager is down makes the
// regeneration fail with nothing changed.
func TestRegenCerts(t *testing.T) {
	pw := adminPasswordFile(t)
	anm, fingerprint := startANMHost(t, "127.0.0.2", pw)
	second, join := newHostOn(t, "127.0.0.3", anm, pw)
	second.h.MustRun("", append(join, "--anm_fingerprint", fingerprint)...)
	t.Cleanup(func() { second.h.Run("", "nodemanager", "-k", "-q") })
	second.h.MustRun("", "nodemanager", "-d")
	inStep(t, "the join", anm.h, second.h)

	var group struct{ ID string }
	result(t, anm.api("POST", "/api/topology/groups", `{"name":"G"}`), 201, &group)
	mp1, mp2 := gwtest.FreePort(t), gwtest.FreePort(t)
	var svc struct{ ID string }
	result(t, anm.api("POST", "/api/topology/services/"+group.ID, fmt.Sprintf(`{"name":"one","hostID":"host-1","trafficPort":%d,"managementPort":%d}`, gwtest.FreePort(t), mp1)), 201, &svc)
	result(t, anm.api("POST", "/api/topology/services/"+group.ID, fmt.Sprintf(`{"name":"two","hostID":"host-2","trafficPort":%d,"managementPort":%d}`, gwtest.FreePort(t), mp2)), 201, &svc)
	inStep(t, "the instances", anm.h, second.h)
	for _, id := range []string{"instance-1", "instance-2"} {
		result(t, anm.api("POST", "/api/management/start/"+group.ID+"/"+id, ""), 200, nil)
		t.Cleanup(func() { anm.api("POST", "/api/management/stop/"+group.ID+"/"+id, "") })
	}
	healthy := func(when string) {
		t.Helper()
		for _, id := range []string{"instance-1", "instance-2"} {
			if r := anm.curl(anm.h, "-u", adminCreds, "/api/router/service/"+id+"/healthcheck"); r.code != 200 || r.body != "<status>ok</status>" {
				t.Errorf("%s: %s through the router: got %d %q %s", when, id, r.code, r.body, r.stderr)
			}
		}
		for _, h := range []*gwtest.Home{anm.h, second.h} {
			if r := h.Run("", "managedomain", "--check_topology"); r.Code != 0 || !strings.Contains(r.Stdout, "All topologies are in sync") {
				t.Errorf("%s: check_topology: %s", when, r)
			}
		}
	}
	healthy("before")
	caFile := func(h *gwtest.Home) string { return h.Path("groups", "certs", "domaincert.pem") }
	nmCert := func(h *gwtest.Home) []byte { return fileBytes(t, h.Path("system", "conf", "certs", "nodemanager.pem")) }
	instAddr := map[string]string{"instance-1": fmt.Sprintf("127.0.0.1:%d", mp1), "instance-2": fmt.Sprintf("127.0.0.1:%d", mp2)}
	instHome := map[string]*gwtest.Home{"instance-1": anm.h, "instance-2": second.h}
	served := func(id string) *x509.Certificate {
		t.Helper()
		h := instHome[id]
		leaf, err := servedLeaf(t, h, caFile(h), instAddr[id])
		if err != nil {
			t.Fatalf("%s's management listener: %v", id, err)
		}
		return leaf
	}
	oldCA := fileBytes(t, caFile(anm.h))
	oldNM1, oldNM2 := nmCert(anm.h), nmCert(second.h)
	oldServed := map[string]*x509.Certificate{"instance-1": served("instance-1"), "instance-2": served("instance-2")}

	// Refused where the CA key is not, and with a node manager down
	// (nothing changes anywhere).
	wantFail(t, second.h.Run("", "managedomain", "--regen_certs"), 1, "domain CA's key is not on this host")
	second.h.MustRun("", "nodemanager", "-k")
	r := anm.h.Run("", "managedomain", "--regen_certs")
	wantFail(t, r, 1, "host-2", "nothing was changed")
	if !bytes.Equal(fileBytes(t, caFile(anm.h)), oldCA) || !bytes.Equal(nmCert(anm.h), oldNM1) {
		t.Error("a failed regeneration changed the ANM host's certificates")
	}
	if _, err := os.Stat(anm.h.Path("system", "conf", "certs", "pending")); err == nil {
		t.Error("a failed regeneration left a pending set on the ANM's host")
	}
	second.h.MustRun("", "nodemanager", "-d")
	time.Sleep(2 * time.Second) // the supervisor finds its running instance again

	// Keep the CA: new leaves everywhere, presented at once.
	r = anm.h.MustRun("", "managedomain", "--regen_certs", "--retain_domain_cert")
	if !strings.Contains(r.Stdout, "Every host answers with its new certificate") {
		t.Errorf("regen_certs --retain_domain_cert: %s", r)
	}
	if !bytes.Equal(fileBytes(t, caFile(anm.h)), oldCA) || !bytes.Equal(fileBytes(t, caFile(second.h)), oldCA) {
		t.Error("--retain_domain_cert changed the domain CA")
	}
	if bytes.Equal(nmCert(anm.h), oldNM1) || bytes.Equal(nmCert(second.h), oldNM2) {
		t.Error("a node manager certificate was not renewed")
	}
	for id, old := range oldServed {
		if now := served(id); now.SerialNumber.Cmp(old.SerialNumber) == 0 {
			t.Errorf("%s still presents its old certificate (serial %x)", id, old.SerialNumber)
		}
	}
	healthy("after --retain_domain_cert")

	// A new CA.
	r = anm.h.MustRun("", "managedomain", "--regen_certs")
	if !strings.Contains(r.Stdout, "Every host answers with its new certificate") || !strings.Contains(r.Stdout, "SHA-256 fingerprint") {
		t.Errorf("regen_certs: %s", r)
	}
	newCA := fileBytes(t, caFile(anm.h))
	if bytes.Equal(newCA, oldCA) || !bytes.Equal(fileBytes(t, caFile(second.h)), newCA) {
		t.Fatal("the new domain CA is not on both hosts")
	}
	ca, err := pki.LoadCA(home.Home{Dir: anm.h.Dir})
	if err != nil {
		t.Fatalf("the ANM host's CA (key and certificate): %v", err)
	}
	for id := range oldServed {
		leaf := served(id)
		if err := pki.CheckPeerCA(leaf, ca.Cert); err != nil {
			t.Errorf("%s presents a certificate not of the new CA: %v", id, err)
		}
	}
	for _, h := range []*gwtest.Home{anm.h, second.h} {
		leaf, err := pki.ParseCertPEM(nmCert(h))
		if err != nil || pki.CheckPeerCA(leaf, ca.Cert) != nil {
			t.Errorf("%s's node manager certificate is not the new CA's: %v", h.Dir, err)
		}
	}
	healthy("after a new CA")
	// The old CA no longer opens the ANM; the new one does.
	old := filepath.Join(t.TempDir(), "old.pem")
	os.WriteFile(old, oldCA, 0o644)
	if err := exec.Command("curl", "-sS", "-o", "/dev/null", "--max-time", "10", "--cacert", old, "-u", adminCreds, anm.base()+"/api/topology").Run(); err == nil {
		t.Error("curl trusting the old CA reached the ANM")
	}
	// A new instance on the second host gets a certificate of the new CA.
	result(t, anm.api("POST", "/api/topology/services/"+group.ID, fmt.Sprintf(`{"name":"three","hostID":"host-2","trafficPort":%d,"managementPort":%d}`, gwtest.FreePort(t), gwtest.FreePort(t))), 201, &svc)
	leaf, err := pki.ParseCertPEM(fileBytes(t, second.h.Path("groups", group.ID, svc.ID, "conf", "certs", "instance.pem")))
	if err != nil || pki.CheckPeerCA(leaf, ca.Cert) != nil {
		t.Errorf("the new instance's certificate is not the new CA's: %v", err)
	}
	// Audit: the three regenerations recorded, the failed one with its error.
	if log := string(fileBytes(t, anm.h.Path("conf", "audit", "audit.log"))); strings.Count(log, `"regenerate certificates"`) != 3 {
		t.Errorf("audit log: want 3 regenerate certificates entries:\n%s", log)
	}
}
