package tools_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
)

// corpCA is an operator's own root CA, made as any PKI would (not with
// Gatehouse's code).
type corpCA struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
	file string // its certificate, PEM
}

func newCorpCA(t *testing.T) *corpCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Corp Root CA", Organization: []string{"Corp"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(20 * 365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	file := filepath.Join(t.TempDir(), "corp-root.pem")
	os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	return &corpCA{key: key, cert: cert, file: file}
}

// sign makes a certificate for pub with subject, as a CA (intermediate)
// when isCA, valid for validity.
func (c *corpCA) sign(t *testing.T, subject pkix.Name, pub any, isCA bool, validity time.Duration) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: subject,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(validity),
		KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: isCA,
	}
	if isCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, pub, c.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(f, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// curlOK reports whether curl, trusting only caFile, gets 200 from url.
func curlOK(caFile, url string) (bool, string) {
	out, err := exec.Command("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "--cacert", caFile, "-u", adminCreds, url).CombinedOutput()
	return err == nil && string(out) == "200", string(out)
}

// TestInitWithOperatorCA: managedomain -i --domain_cert --domain_key makes
// the operator's CA (here an intermediate of a corporate root, its key in
// SEC 1 form) the domain CA: node managers' and instances' certificates
// are its, the listener sends it along so that a client trusting only the
// corporate root verifies the ANM. Wrong inputs are refused with nothing
// created.
func TestInitWithOperatorCA(t *testing.T) {
	pw := adminPasswordFile(t)
	corp := newCorpCA(t)
	ikey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sec1, _ := x509.MarshalECPrivateKey(ikey)
	keyFile := writeTemp(t, "key.pem", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}))
	certFile := writeTemp(t, "ca.pem", corp.sign(t, pkix.Name{CommonName: "Corp Gatehouse CA"}, ikey.Public(), true, 5*365*24*time.Hour))
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafFile := writeTemp(t, "leaf.pem", corp.sign(t, pkix.Name{CommonName: "not a CA"}, ikey.Public(), false, 365*24*time.Hour))
	shortFile := writeTemp(t, "short.pem", corp.sign(t, pkix.Name{CommonName: "short"}, ikey.Public(), true, 30*24*time.Hour))
	otherFile := writeTemp(t, "other.pem", corp.sign(t, pkix.Name{CommonName: "other"}, otherKey.Public(), true, 365*24*time.Hour))

	h := gwtest.NewHome(t)
	ip := "127.0.0.2"
	port := gwtest.FreePortOn(t, ip)
	init := []string{"managedomain", "-i", "--domain_name", "D", "--username", "admin", "--password_file", pw, "--host_name", "first", "--nm_address", ip, "--port", strconv.Itoa(port)}
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"certificate alone", []string{"--domain_cert", certFile}, 2, "go together"},
		{"not a CA", []string{"--domain_cert", leafFile, "--domain_key", keyFile}, 1, "not a CA certificate"},
		{"expires too soon", []string{"--domain_cert", shortFile, "--domain_key", keyFile}, 1, "at least 90 days"},
		{"key of another certificate", []string{"--domain_cert", otherFile, "--domain_key", keyFile}, 1, "does not match"},
		{"no such file", []string{"--domain_cert", certFile + ".missing", "--domain_key", keyFile}, 1, "--domain_cert"},
	} {
		wantFail(t, h.Run("", append(init, c.args...)...), c.code, c.want)
		if _, err := os.Stat(h.Path("groups", "topology.json")); err == nil {
			t.Fatalf("%s: a domain was created", c.name)
		}
	}
	r := h.MustRun("", append(init, "--domain_cert", certFile, "--domain_key", keyFile)...)
	if !strings.Contains(r.Stdout, "Corp Gatehouse CA") {
		t.Errorf("-i output does not name the operator's CA: %s", r.Stdout)
	}
	if !bytes.Equal(fileBytes(t, h.Path("groups", "certs", "domaincert.pem")), fileBytes(t, certFile)) {
		t.Error("groups/certs/domaincert.pem is not the operator's certificate")
	}
	if _, err := pki.LoadCA(home.Home{Dir: h.Dir}); err != nil {
		t.Errorf("the domain CA as saved: %v", err)
	}
	t.Cleanup(func() { h.Run("", "nodemanager", "-k", "-q") })
	h.MustRun("", "nodemanager", "-d")
	url := fmt.Sprintf("https://%s:%d/api/topology", ip, port)
	if ok, out := curlOK(corp.file, url); !ok {
		t.Errorf("curl trusting only the corporate root: %s", out)
	}
	leaf, err := pki.ParseCertPEM(fileBytes(t, h.Path("system", "conf", "certs", "nodemanager.pem")))
	if err != nil || leaf.Issuer.CommonName != "Corp Gatehouse CA" {
		t.Errorf("node manager certificate issuer: %v %v", leaf, err)
	}
	// An instance created and started: its certificate is the operator CA's.
	h.MustRun("", "managedomain", "-c", "-n", "one", "-g", "G")
	if r := h.Run("", "startinstance", "-g", "G", "-n", "one", "-d"); r.Code != 0 {
		t.Fatalf("startinstance: %s", r)
	}
	t.Cleanup(func() { h.Run("", "startinstance", "-g", "G", "-n", "one", "-k") })
	matches, _ := filepath.Glob(h.Path("groups", "group-*", "instance-*", "conf", "certs", "instance.pem"))
	if len(matches) != 1 {
		t.Fatalf("instance certificates: %v", matches)
	}
	il, err := pki.ParseCertPEM(fileBytes(t, matches[0]))
	if err != nil || il.Issuer.CommonName != "Corp Gatehouse CA" {
		t.Errorf("instance certificate issuer: %v", err)
	}
}

// TestSubmitCert (menu 26): --domain_csr writes a request for the domain
// CA's key; the operator's CA signs it; --submit_cert makes that the
// domain CA's certificate on every host, and a client that trusts only
// the corporate root verifies the ANM. Certificates that are not a CA's
// or not for the domain CA's key are refused with nothing changed.
func TestSubmitCert(t *testing.T) {
	pw := adminPasswordFile(t)
	anm, fingerprint := startANMHost(t, "127.0.0.2", pw)
	second, join := newHostOn(t, "127.0.0.3", anm, pw)
	second.h.MustRun("", append(join, "--anm_fingerprint", fingerprint)...)
	t.Cleanup(func() { second.h.Run("", "nodemanager", "-k", "-q") })
	second.h.MustRun("", "nodemanager", "-d")
	inStep(t, "the join", anm.h, second.h)

	corp := newCorpCA(t)
	csrFile := filepath.Join(t.TempDir(), "domain.csr")
	wantFail(t, second.h.Run("", "managedomain", "--domain_csr", "--csr_file", csrFile), 1, "not on this host")
	anm.h.MustRun("", "managedomain", "--domain_csr", "--csr_file", csrFile)
	csr, err := pki.ParseCSR(fileBytes(t, csrFile))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadCA(home.Home{Dir: anm.h.Dir})
	if err != nil {
		t.Fatal(err)
	}
	if csr.Subject.CommonName != ca.Cert.Subject.CommonName {
		t.Errorf("CSR subject %q, want the domain CA's %q", csr.Subject, ca.Cert.Subject)
	}
	oldCA := fileBytes(t, pki.CertFile(home.Home{Dir: anm.h.Dir}))
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, c := range []struct {
		name, want string
		cert       []byte
	}{
		{"not a CA", "not a CA certificate", corp.sign(t, csr.Subject, csr.PublicKey, false, 3*365*24*time.Hour)},
		{"another key", "not for the domain CA's key", corp.sign(t, csr.Subject, other.Public(), true, 3*365*24*time.Hour)},
	} {
		wantFail(t, anm.h.Run("", "managedomain", "--submit_cert", "--cert_file", writeTemp(t, "c.pem", c.cert)), 1, c.want)
		if !bytes.Equal(fileBytes(t, pki.CertFile(home.Home{Dir: anm.h.Dir})), oldCA) {
			t.Fatalf("%s: the domain CA changed", c.name)
		}
	}
	signed := corp.sign(t, csr.Subject, csr.PublicKey, true, 3*365*24*time.Hour)
	r := anm.h.MustRun("", "managedomain", "--submit_cert", "--cert_file", writeTemp(t, "signed.pem", signed))
	if !strings.Contains(r.Stdout, "Every host answers with its new certificate") {
		t.Errorf("submit_cert: %s", r)
	}
	for _, h := range []*gwtest.Home{anm.h, second.h} {
		if !bytes.Equal(fileBytes(t, h.Path("groups", "certs", "domaincert.pem")), signed) {
			t.Errorf("%s: the domain CA certificate is not the submitted one", h.Dir)
		}
	}
	if ok, out := curlOK(corp.file, anm.base()+"/api/topology"); !ok {
		t.Errorf("curl trusting only the corporate root: %s", out)
	}
	for _, h := range []*gwtest.Home{anm.h, second.h} {
		if r := h.Run("", "managedomain", "--check_topology"); r.Code != 0 {
			t.Errorf("check_topology after submit_cert: %s", r)
		}
	}
}
