package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

func newHome(t *testing.T) home.Home {
	t.Helper()
	h, err := home.At(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := h.EnsureSkeleton(); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestNewCASaveLoad(t *testing.T) {
	h := newHome(t)
	ca, err := NewCA("Prod Domain")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ca.Cert.Subject.CommonName, "Gatehouse Domain CA Prod Domain"; got != want {
		t.Errorf("CN: got %q, want %q", got, want)
	}
	if !ca.Cert.IsCA {
		t.Error("not a CA")
	}
	if _, ok := ca.Cert.PublicKey.(*ecdsa.PublicKey); !ok || ca.Cert.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P256() {
		t.Errorf("key: got %T, want ECDSA P-256", ca.Cert.PublicKey)
	}
	if years := ca.Cert.NotAfter.Sub(ca.Cert.NotBefore).Hours() / 24 / 365; years < 9.99 || years > 10.01 {
		t.Errorf("validity: got %.2f years, want 10", years)
	}
	if bl := ca.Cert.SerialNumber.BitLen(); bl != 128 {
		t.Errorf("serial: got %d bits, want 128", bl)
	}
	if err := ca.Save(h); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{KeyFile(h): 0o600, CertFile(h): 0o644, h.CertsPrivateDir(): 0o700} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode got %v, want %v", path, got, want)
		}
	}
	keyPEM, _ := os.ReadFile(KeyFile(h))
	if !strings.Contains(string(keyPEM), "BEGIN PRIVATE KEY") {
		t.Errorf("key file is not PKCS#8 PEM:\n%s", keyPEM)
	}
	loaded, err := LoadCA(h)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := loaded.Fingerprint(), ca.Fingerprint(); got != want {
		t.Errorf("fingerprint: got %s, want %s", got, want)
	}
	if !loaded.Key().Equal(ca.Key()) {
		t.Error("loaded key differs")
	}
}

func TestSecretNeverPrints(t *testing.T) {
	ca, err := NewCA("d")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(ca.Key()), fmt.Sprintf("%v %+v %#v", ca.Key(), ca.Key(), ca.Key())} {
		if strings.Contains(s, string(ca.Key().Reveal())) || !strings.Contains(s, "REDACTED") {
			t.Errorf("key printed as %q", s)
		}
	}
}

func TestFingerprint(t *testing.T) {
	ca, err := NewCA("d")
	if err != nil {
		t.Fatal(err)
	}
	fp := ca.Fingerprint()
	parts := strings.Split(fp, ":")
	if len(parts) != 32 {
		t.Fatalf("got %d bytes in %q, want 32", len(parts), fp)
	}
	for _, p := range parts {
		if len(p) != 2 || strings.ToUpper(p) != p {
			t.Fatalf("bad byte %q in %q", p, fp)
		}
	}
}

func TestIssue(t *testing.T) {
	ca, err := NewCA("d")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tests := []struct {
		name            string
		serverAndClient bool
		usages          []x509.ExtKeyUsage
	}{
		{"server", false, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		{"mutual", true, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ca.Issue("nodemanager-1", []string{"host1.example"}, []net.IP{net.ParseIP("127.0.0.1")}, key.Public(), tt.serverAndClient)
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range tt.usages {
				if _, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "host1.example", KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
					t.Errorf("verify for usage %v: %v", u, err)
				}
			}
			if !tt.serverAndClient {
				if _, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
					t.Error("server-only certificate verified for client auth")
				}
			}
			if c.IsCA {
				t.Error("issued certificate is a CA")
			}
		})
	}
	if _, err := ca.Issue("", nil, nil, key.Public(), false); err == nil {
		t.Error("empty common name accepted")
	}
	if _, err := ca.Issue("x", nil, nil, nil, false); err == nil {
		t.Error("nil public key accepted")
	}
}

func TestLoadCAErrors(t *testing.T) {
	h := newHome(t)
	if _, err := LoadCA(h); !errors.Is(err, ErrNoCA) {
		t.Errorf("empty home: got %v, want ErrNoCA", err)
	}
	a, _ := NewCA("a")
	b, _ := NewCA("b")
	if err := a.Save(h); err != nil {
		t.Fatal(err)
	}
	// A key that does not belong to the certificate is refused.
	bKey, _ := os.ReadFile(KeyFile(h))
	if err := b.Save(h); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(KeyFile(h), bKey, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(h); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("mismatched key: got %v, want a mismatch error", err)
	}
	os.WriteFile(CertFile(h), []byte("garbage"), 0o644)
	if _, err := LoadCA(h); err == nil {
		t.Error("garbage certificate accepted")
	}
}

// IssueClient: client authentication only, no host names, the validity
// asked (bounded), and never a common name of Gatehouse's own.
func TestIssueClient(t *testing.T) {
	ca, err := NewCA("D")
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.IssueClient("scraper", key.Public(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth || len(c.DNSNames)+len(c.IPAddresses) != 0 {
		t.Errorf("usages %v names %v %v", c.ExtKeyUsage, c.DNSNames, c.IPAddresses)
	}
	if d := c.NotAfter.Sub(c.NotBefore); d < 24*time.Hour || d > 24*time.Hour+2*backdate {
		t.Errorf("validity %s, want a day", d)
	}
	for _, v := range []time.Duration{0, -time.Hour, CertValidity + time.Hour} {
		if _, err := ca.IssueClient("scraper", key.Public(), v); err == nil {
			t.Errorf("validity %s accepted", v)
		}
	}
	if _, err := ca.IssueClient("scraper", key.Public(), CertValidity); err != nil {
		t.Errorf("the longest validity: %v", err)
	}
	if _, err := ca.IssueClient("scraper", key.Public(), time.Nanosecond); err != nil {
		t.Errorf("the shortest validity: %v", err)
	}
	for _, c := range []struct {
		cn string
		ok bool
	}{
		{"scraper", true},
		{strings.Repeat("x", 64), true},
		{strings.Repeat("x", 65), false},
		{"", false},
		{"Gatehouse Node Manager nodemanager-1 (host-1)", false},
		{"gatehouse instance", false},
		{" Gatehouse Domain CA D", false},
		{"Gatehousekeeper", true},
		{"tab\there", false},
	} {
		if err := CheckClientCommonName(c.cn); (err == nil) != c.ok {
			t.Errorf("CheckClientCommonName(%q) = %v, want ok %v", c.cn, err, c.ok)
		}
		if _, err := ca.IssueClient(c.cn, key.Public(), time.Hour); (err == nil) != c.ok {
			t.Errorf("IssueClient(%q) = %v, want ok %v", c.cn, err, c.ok)
		}
	}
}
