package pki

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// block makes path a non-empty directory, so that writing a file there, or
// reading it, fails.
func block(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(path, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// blockFile makes path a regular file, so that making a directory there, or
// under it, fails.
func blockFile(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// dirMode is the mode that os.MkdirAll(perm) gives a new directory under the
// current umask.
func dirMode(t *testing.T, perm os.FileMode) os.FileMode {
	t.Helper()
	d := filepath.Join(t.TempDir(), "ref")
	if err := os.Mkdir(d, perm); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(d)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func wantErr(t *testing.T, what string, err error, part string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), part) {
		t.Errorf("%s: got %v, want an error saying %q", what, err, part)
	}
}

func newTestCA(t *testing.T, name string) *CA {
	t.Helper()
	ca, err := NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func keyPEMOf(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func TestNewCARefusesEmptyName(t *testing.T) {
	for _, name := range []string{"", " \t"} {
		ca, err := NewCA(name)
		if ca != nil || err == nil || !strings.Contains(err.Error(), "empty domain name") {
			t.Errorf("NewCA(%q): got %v, %v, want an empty-name error", name, ca, err)
		}
	}
}

// The CA is valid 10 years, a leaf 2 years, both backdated 5 minutes
// (docs/pki.md); a leaf never outlives its CA.
func TestValidity(t *testing.T) {
	const year = 365 * 24 * time.Hour
	near := func(what string, got, want time.Duration) {
		t.Helper()
		if d := got - want; d < -2*time.Second || d > 2*time.Second {
			t.Errorf("%s: got %v, want %v", what, got, want)
		}
	}
	ca := newTestCA(t, "d")
	near("CA validity", ca.Cert.NotAfter.Sub(ca.Cert.NotBefore), 10*year+5*time.Minute)
	near("CA backdate", time.Since(ca.Cert.NotBefore), 5*time.Minute)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c, err := ca.Issue("leaf", nil, nil, key.Public(), false)
	if err != nil {
		t.Fatal(err)
	}
	near("leaf validity", c.NotAfter.Sub(c.NotBefore), 2*year+5*time.Minute)
	near("leaf backdate", time.Since(c.NotBefore), 5*time.Minute)

	short := shortCA(t, time.Hour)
	c, err = short.Issue("leaf", nil, nil, key.Public(), false)
	if err != nil {
		t.Fatal(err)
	}
	if !c.NotAfter.Equal(short.Cert.NotAfter) {
		t.Errorf("leaf of a CA expiring %v: got NotAfter %v, want the CA's", short.Cert.NotAfter, c.NotAfter)
	}
}

// shortCA is a CA that expires after d, read back with ParseCA.
func shortCA(t *testing.T, d time.Duration) *CA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "short"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(d),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := ParseCA(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEMOf(t, key))
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// Key identifiers are the leftmost 160 bits of the SHA-256 of the public key
// (RFC 7093, method 1); a leaf names its CA's.
func TestKeyIdentifiers(t *testing.T) {
	ca := newTestCA(t, "d")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c, err := ca.Issue("leaf", nil, nil, key.Public(), false)
	if err != nil {
		t.Fatal(err)
	}
	for _, cert := range []*x509.Certificate{ca.Cert, c} {
		sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
		if !bytes.Equal(cert.SubjectKeyId, sum[:20]) {
			t.Errorf("%s: got SubjectKeyId %x, want %x", cert.Subject.CommonName, cert.SubjectKeyId, sum[:20])
		}
	}
	if !bytes.Equal(c.AuthorityKeyId, ca.Cert.SubjectKeyId) {
		t.Errorf("AuthorityKeyId: got %x, want the CA's %x", c.AuthorityKeyId, ca.Cert.SubjectKeyId)
	}
}

// Serial numbers are 128 bits: the top one set, the other 127 random.
func TestSerialsRandom(t *testing.T) {
	var ones, zeros big.Int
	for range 128 {
		s := randomSerial()
		if s.BitLen() != 128 {
			t.Fatalf("serial %x: got %d bits, want 128", s, s.BitLen())
		}
		ones.Or(&ones, s)
		var not big.Int
		not.Not(s)
		zeros.Or(&zeros, &not)
	}
	for i := range 127 {
		if ones.Bit(i) == 0 || zeros.Bit(i) == 0 {
			t.Errorf("bit %d of 128 serials: never both 0 and 1", i)
		}
	}
}

func TestFingerprintIsSHA256OfDER(t *testing.T) {
	ca := newTestCA(t, "d")
	sum := sha256.Sum256(ca.Cert.Raw)
	var parts []string
	for _, b := range sum {
		parts = append(parts, strings.ToUpper(hex.EncodeToString([]byte{b})))
	}
	if got, want := ca.Fingerprint(), strings.Join(parts, ":"); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestIssueRefuses(t *testing.T) {
	ca := newTestCA(t, "d")
	other := newTestCA(t, "other")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, err := ca.Issue("", nil, nil, key.Public(), false)
	wantErr(t, "empty common name", err, "empty common name")
	_, err = ca.Issue("cn1", nil, nil, nil, false)
	wantErr(t, "no public key", err, `"cn1": no public key`)
	_, err = ca.Issue("cn2", nil, nil, "not a key", false)
	wantErr(t, "not a key", err, `issuing certificate for "cn2": encoding public key`)
	// A CA whose signer is not its certificate's key signs nothing.
	broken := &CA{Cert: ca.Cert, key: ca.key, signer: other.signer}
	_, err = broken.Issue("cn3", nil, nil, key.Public(), false)
	wantErr(t, "mismatched signer", err, `issuing certificate for "cn3"`)
	if kp, err := broken.IssueKeyPair("cn4", nil, nil, true); kp != nil || err == nil {
		t.Errorf("IssueKeyPair with a mismatched signer: got %v, %v, want an error", kp, err)
	}
	h := newHome(t)
	if kp, err := broken.IssueInstance(h, "group-1", "instance-1", ""); kp != nil || err == nil {
		t.Errorf("IssueInstance with a mismatched signer: got %v, %v, want an error", kp, err)
	}
	if _, err := os.Stat(InstanceKeyFile(h, "group-1", "instance-1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("IssueInstance that failed: got a key file (%v), want none", err)
	}
	csrPEM, _, err := NewKeyAndCSR("x", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := ParseCSR(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	if certPEM, err := ca.SignCSR(csr, "", false); certPEM != nil || err == nil {
		t.Errorf("SignCSR with an empty common name: got %q, %v, want an error", certPEM, err)
	}
}

func TestParseCARefuses(t *testing.T) {
	ca := newTestCA(t, "d")
	caKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ca.Key().Reveal()})
	leaf, err := ca.IssueKeyPair("leaf", nil, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	x25519, _ := ecdh.X25519().GenerateKey(rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	block := func(typ string, b []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}) }
	tests := []struct {
		name      string
		cert, key []byte
		want      string
	}{
		{"no certificate", nil, caKey, "no CERTIFICATE PEM block"},
		{"certificate of another type", block("X509 CRL", ca.Cert.Raw), caKey, "no CERTIFICATE PEM block"},
		{"certificate not DER", block("CERTIFICATE", []byte("garbage")), caKey, "parsing CA certificate: x509"},
		{"not a CA", leaf.CertPEM, caKey, "not a CA certificate"},
		{"no key", ca.CertPEM(), nil, "no PEM block"},
		{"key block of another type", ca.CertPEM(), block("PUBLIC KEY", ca.Key().Reveal()), `type "PUBLIC KEY"`},
		{"SEC 1 block holding PKCS#8", ca.CertPEM(), block("EC PRIVATE KEY", ca.Key().Reveal()), "parsing CA key: x509"},
		{"encrypted PKCS#8", ca.CertPEM(), block("ENCRYPTED PRIVATE KEY", ca.Key().Reveal()), "the key is encrypted"},
		{"encrypted legacy PEM", ca.CertPEM(), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: []byte("x")}), "the key is encrypted"},
		{"key not DER", ca.CertPEM(), block("PRIVATE KEY", []byte("garbage")), "parsing CA key: asn1"},
		{"key that cannot sign", ca.CertPEM(), keyPEMOf(t, x25519), "cannot sign"},
		{"another key", ca.CertPEM(), keyPEMOf(t, other), "does not match"},
	}
	for _, tt := range tests {
		got, err := ParseCA(tt.cert, tt.key)
		if got != nil {
			t.Errorf("%s: got a CA, want none", tt.name)
		}
		wantErr(t, tt.name, err, tt.want)
	}
	if got, err := ParseCA(ca.CertPEM(), caKey); err != nil || got.Fingerprint() != ca.Fingerprint() {
		t.Errorf("the CA's own files: got %v, want the CA", err)
	}
	// An operator's key in SEC 1 form is taken, and kept as PKCS#8.
	k, err := x509.ParsePKCS8PrivateKey(ca.Key().Reveal())
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(k.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseCA(ca.CertPEM(), block("EC PRIVATE KEY", sec1))
	if err != nil {
		t.Fatalf("SEC 1 key: %v", err)
	}
	if _, err := x509.ParsePKCS8PrivateKey(got.Key().Reveal()); err != nil {
		t.Errorf("SEC 1 key not kept as PKCS#8: %v", err)
	}
}

func TestLoadCAReadErrors(t *testing.T) {
	h := newHome(t)
	ca := newTestCA(t, "d")
	if err := SaveCACert(h, ca.CertPEM()); err != nil {
		t.Fatal(err)
	}
	_, err := LoadCA(h)
	if !errors.Is(err, ErrNoCA) || !strings.Contains(err.Error(), KeyFileName) {
		t.Errorf("certificate without key: got %v, want ErrNoCA naming %s", err, KeyFileName)
	}
	block(t, KeyFile(h))
	_, err = LoadCA(h)
	wantErr(t, "key file a directory", err, "reading CA key")
	if errors.Is(err, ErrNoCA) {
		t.Errorf("key file a directory: got ErrNoCA, want a read error")
	}
	os.Remove(CertFile(h))
	block(t, CertFile(h))
	_, err = LoadCA(h)
	wantErr(t, "certificate file a directory", err, "reading CA certificate")
	_, err = LoadCACert(h)
	wantErr(t, "LoadCACert, certificate file a directory", err, "reading CA certificate")
	if errors.Is(err, ErrNoCA) {
		t.Errorf("LoadCACert, certificate file a directory: got ErrNoCA, want a read error")
	}
}

func TestLoadCACertRefuses(t *testing.T) {
	ca := newTestCA(t, "d")
	leaf, err := ca.IssueKeyPair("leaf", nil, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		data []byte
		want string
	}{
		{"garbage", []byte("garbage"), "no CERTIFICATE PEM block"},
		{"another type", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ca.Cert.Raw}), "no CERTIFICATE PEM block"},
		{"not DER", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("x")}), "x509: malformed certificate"},
		{"not a CA", leaf.CertPEM, "not a CA certificate"},
	} {
		h := newHome(t)
		if err := SaveCACert(h, tt.data); err != nil {
			t.Fatal(err)
		}
		c, err := LoadCACert(h)
		if c != nil {
			t.Errorf("%s: got a certificate, want none", tt.name)
		}
		wantErr(t, tt.name, err, tt.want)
		if err != nil && !strings.Contains(err.Error(), CertFileName) {
			t.Errorf("%s: got %v, want it to name %s", tt.name, err, CertFileName)
		}
	}
	h := newHome(t)
	if err := SaveCACert(h, ca.CertPEM()); err != nil {
		t.Fatal(err)
	}
	if c, err := LoadCACert(h); err != nil || !c.Equal(ca.Cert) {
		t.Errorf("the CA certificate: got %v, want it back", err)
	}
}

// Save makes groups/certs 0755 and groups/certs/private 0700 in an install
// directory that has neither, and reports every I/O failure.
func TestCASave(t *testing.T) {
	ca := newTestCA(t, "d")
	h, err := home.At(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Save(h); err != nil {
		t.Fatal(err)
	}
	if got, want := mode(t, h.CertsDir()), dirMode(t, 0o755); got != want {
		t.Errorf("%s: got mode %v, want %v", h.CertsDir(), got, want)
	}
	if got := mode(t, h.CertsPrivateDir()); got != 0o700 {
		t.Errorf("%s: got mode %v, want 0700", h.CertsPrivateDir(), got)
	}
	os.Chmod(h.CertsPrivateDir(), 0o755)
	if err := ca.Save(h); err != nil {
		t.Fatal(err)
	}
	if got := mode(t, h.CertsPrivateDir()); got != 0o700 {
		t.Errorf("%s made 0755, saved again: got mode %v, want 0700", h.CertsPrivateDir(), got)
	}

	for _, tt := range []struct {
		name  string
		setup func(h home.Home)
		want  func(h home.Home) string
	}{
		{"certs a file", func(h home.Home) { blockFile(t, h.CertsDir()) }, func(h home.Home) string { return "creating " + h.CertsDir() + ":" }},
		{"private a file", func(h home.Home) { blockFile(t, h.CertsPrivateDir()) }, func(h home.Home) string { return "creating " + h.CertsPrivateDir() + ":" }},
		{"key file a directory", func(h home.Home) { block(t, KeyFile(h)) }, func(home.Home) string { return "saving CA key" }},
		{"certificate file a directory", func(h home.Home) { block(t, CertFile(h)) }, func(home.Home) string { return "saving CA certificate" }},
	} {
		h, err := home.At(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		tt.setup(h)
		wantErr(t, tt.name, ca.Save(h), tt.want(h))
	}
}

func TestSaveCACert(t *testing.T) {
	ca := newTestCA(t, "d")
	h, err := home.At(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := SaveCACert(h, ca.CertPEM()); err != nil {
		t.Fatal(err)
	}
	if got, want := mode(t, h.CertsDir()), dirMode(t, 0o755); got != want {
		t.Errorf("%s: got mode %v, want %v", h.CertsDir(), got, want)
	}
	if got := mode(t, CertFile(h)); got != 0o644 {
		t.Errorf("%s: got mode %v, want 0644", CertFile(h), got)
	}
	if data, _ := os.ReadFile(CertFile(h)); !bytes.Equal(data, ca.CertPEM()) {
		t.Errorf("got %q, want the certificate", data)
	}
	if _, err := os.Stat(h.CertsPrivateDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("SaveCACert made %s (%v), want no private directory", h.CertsPrivateDir(), err)
	}
	h2, _ := home.At(t.TempDir())
	blockFile(t, h2.CertsDir())
	wantErr(t, "certs a file", SaveCACert(h2, ca.CertPEM()), "creating")
	h3, _ := home.At(t.TempDir())
	block(t, CertFile(h3))
	if err := SaveCACert(h3, ca.CertPEM()); err == nil {
		t.Errorf("certificate file a directory: got nil, want an error")
	}
}

// KeyPair.Save makes the directories it needs: 0700 for the key's (and
// those above it), 0755 for the certificate's; it reports every failure.
func TestKeyPairSave(t *testing.T) {
	ca := newTestCA(t, "d")
	kp, err := ca.IssueKeyPair("nm", nil, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cf := filepath.Join(dir, "c1", "c2", "cert.pem")
	kf := filepath.Join(dir, "k1", "k2", "key.pem")
	if err := kp.Save(home.Home{}, cf, kf); err != nil {
		t.Fatal(err)
	}
	want755 := dirMode(t, 0o755)
	for path, want := range map[string]os.FileMode{
		filepath.Join(dir, "c1"): want755, filepath.Join(dir, "c1", "c2"): want755,
		filepath.Join(dir, "k1"): 0o700, filepath.Join(dir, "k1", "k2"): 0o700,
		cf: 0o644, kf: 0o600,
	} {
		if got := mode(t, path); got != want {
			t.Errorf("%s: got mode %v, want %v", path, got, want)
		}
	}
	// The usual layout, certs/private under certs: certs is 0755.
	h, _ := home.At(t.TempDir())
	if err := kp.Save(h, NodeManagerCertFile(h), NodeManagerKeyFile(h)); err != nil {
		t.Fatal(err)
	}
	if d, want := filepath.Dir(NodeManagerCertFile(h)), dirMode(t, 0o755); mode(t, d) != want {
		t.Errorf("%s: got mode %v, want %v", d, mode(t, d), want)
	}

	for _, tt := range []struct {
		name  string
		setup func(cf, kf string)
		want  string
	}{
		{"key directory a file", func(cf, kf string) { blockFile(t, filepath.Dir(kf)) }, "creating"},
		{"certificate directory a file", func(cf, kf string) { blockFile(t, filepath.Dir(cf)) }, "creating"},
		{"key file a directory", func(cf, kf string) { block(t, kf) }, "saving key"},
		{"certificate file a directory", func(cf, kf string) { block(t, cf) }, "saving certificate"},
	} {
		dir := t.TempDir()
		cf, kf := filepath.Join(dir, "c", "cert.pem"), filepath.Join(dir, "k", "key.pem")
		tt.setup(cf, kf)
		wantErr(t, tt.name, kp.Save(home.Home{}, cf, kf), tt.want)
	}
	h2 := newHome(t)
	blockFile(t, h2.InstanceDir("group-1", "instance-1"))
	_, err = ca.IssueInstance(h2, "group-1", "instance-1", "")
	wantErr(t, "instance directory a file", err, "saving the certificate of instance-1")
}

func TestLoadKeyPairErrors(t *testing.T) {
	ca := newTestCA(t, "d")
	a, _ := ca.IssueKeyPair("a", nil, nil, true)
	b, _ := ca.IssueKeyPair("b", nil, nil, true)
	dir := t.TempDir()
	acf, akf := filepath.Join(dir, "a.pem"), filepath.Join(dir, "a-key.pem")
	if err := a.Save(home.Home{}, acf, akf); err != nil {
		t.Fatal(err)
	}
	bcf, bkf := filepath.Join(dir, "b.pem"), filepath.Join(dir, "b-key.pem")
	if err := b.Save(home.Home{}, bcf, bkf); err != nil {
		t.Fatal(err)
	}
	_, err := LoadKeyPair(home.Home{}, filepath.Join(dir, "missing.pem"), akf)
	wantErr(t, "certificate missing", err, "reading certificate")
	_, err = LoadKeyPair(home.Home{}, acf, filepath.Join(dir, "missing.pem"))
	wantErr(t, "key missing", err, "reading key")
	_, err = LoadKeyPair(home.Home{}, acf, bkf)
	wantErr(t, "another key", err, "loading "+acf)
	if c, err := LoadKeyPair(home.Home{}, acf, akf); err != nil || c.Leaf == nil || c.Leaf.Subject.CommonName != "a" {
		t.Errorf("matching pair: got %v, want it loaded with its leaf", err)
	}
}

func TestParseCertPEM(t *testing.T) {
	ca := newTestCA(t, "d")
	for _, tt := range []struct {
		name string
		data []byte
		want string
	}{
		{"nothing", nil, "want one PEM block"},
		{"another type", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: ca.Cert.Raw}), "want one PEM block"},
		{"not DER", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("x")}), "parsing certificate: x509"},
	} {
		c, err := ParseCertPEM(tt.data)
		if c != nil {
			t.Errorf("%s: got a certificate", tt.name)
		}
		wantErr(t, tt.name, err, tt.want)
	}
}

// csrWith makes a CSR PEM with the given names, signed by key.
func csrWith(t *testing.T, key any, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// The limits on a CSR: 16 KiB, 32 names, DNS names of 1 to 253 bytes, no
// URI or e-mail address, an ECDSA P-256 or P-384 key.
func TestParseCSRLimits(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	names := func(n int) []string {
		var s []string
		for i := range n {
			s = append(s, fmt.Sprintf("h%d", i))
		}
		return s
	}
	ips := []net.IP{net.ParseIP("127.0.0.1")}
	u, _ := url.Parse("spiffe://x/y")
	good := csrWith(t, p256, &x509.CertificateRequest{DNSNames: []string{"a"}})
	pad := func(n int) []byte {
		return append(append([]byte(nil), good...), bytes.Repeat([]byte("\n"), n-len(good))...)
	}
	tests := []struct {
		name string
		data []byte
		want string // "" for accepted
	}{
		{"16384 bytes", pad(16384), ""},
		{"16385 bytes", pad(16385), "16385 bytes, more than the limit of 16384"},
		{"P-384", csrWith(t, p384, &x509.CertificateRequest{}), ""},
		{"Ed25519", csrWith(t, ed, &x509.CertificateRequest{}), "ed25519.PublicKey key; want ECDSA"},
		{"32 names", csrWith(t, p256, &x509.CertificateRequest{DNSNames: names(31), IPAddresses: ips}), ""},
		{"33 names", csrWith(t, p256, &x509.CertificateRequest{DNSNames: names(32), IPAddresses: ips}), "33 subject alternative names, more than 32"},
		{"33 IP addresses", csrWith(t, p256, &x509.CertificateRequest{IPAddresses: slicesRepeat(ips, 33)}), "33 subject alternative names"},
		{"name of 253 bytes", csrWith(t, p256, &x509.CertificateRequest{DNSNames: []string{strings.Repeat("a", 253)}}), ""},
		{"name of 254 bytes", csrWith(t, p256, &x509.CertificateRequest{DNSNames: []string{"b", strings.Repeat("a", 254)}}), "DNS name"},
		{"empty name", csrWith(t, p256, &x509.CertificateRequest{DNSNames: []string{"b", ""}}), `DNS name ""`},
		{"URI", csrWith(t, p256, &x509.CertificateRequest{URIs: []*url.URL{u}}), "only DNS names and IP addresses"},
		{"e-mail address", csrWith(t, p256, &x509.CertificateRequest{EmailAddresses: []string{"a@b"}}), "only DNS names and IP addresses"},
		{"not DER", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte("x")}), "asn1"},
	}
	for _, tt := range tests {
		csr, err := ParseCSR(tt.data)
		if tt.want == "" {
			if err != nil || csr == nil {
				t.Errorf("%s: got %v, want accepted", tt.name, err)
			}
			continue
		}
		if csr != nil || !errors.Is(err, ErrBadCSR) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want ErrBadCSR saying %q", tt.name, err, tt.want)
		}
	}
	if MaxCSRBytes != 16384 {
		t.Errorf("MaxCSRBytes: got %d, want 16384", MaxCSRBytes)
	}
}

func slicesRepeat[T any](s []T, n int) []T {
	var out []T
	for range n {
		out = append(out, s...)
	}
	return out
}

func TestNewKeyAndCSRRefusesNonASCIIName(t *testing.T) {
	csr, key, err := NewKeyAndCSR("x", []string{"café.example"}, nil)
	if csr != nil || err == nil || !strings.Contains(err.Error(), "creating certificate request") {
		t.Errorf("got %q, %v, want an error", csr, err)
	}
	if key.Reveal() != nil {
		t.Errorf("got a key with the error, want none")
	}
}
