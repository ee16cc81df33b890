package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// Files of this host's node manager certificate (see docs/pki.md). They are
// this host's, not the domain's: they live under system/conf, which is not
// copied between hosts, and the key never leaves the host.
const (
	NodeManagerCertName = "nodemanager.pem"
	NodeManagerKeyName  = "nodemanager-key.pem"
)

// NodeManagerCertFile is system/conf/certs/nodemanager.pem: the node
// manager's certificate (PEM, 0644), signed by the domain CA.
func NodeManagerCertFile(h home.Home) string {
	return filepath.Join(h.SystemConfDir(), "certs", NodeManagerCertName)
}

// NodeManagerKeyFile is system/conf/certs/private/nodemanager-key.pem: its
// private key (PKCS#8 PEM, 0600, directory 0700).
func NodeManagerKeyFile(h home.Home) string {
	return filepath.Join(h.SystemConfDir(), "certs", "private", NodeManagerKeyName)
}

// LoadCACert reads the domain CA certificate only (every host has it; only
// the host that created the domain has the key). A missing file gives an
// error wrapping ErrNoCA.
func LoadCACert(h home.Home) (*x509.Certificate, error) { return loadCACertFile(CertFile(h)) }

func loadCACertFile(file string) (*x509.Certificate, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s is missing", ErrNoCA, file)
	}
	if err != nil {
		return nil, fmt.Errorf("reading CA certificate: %w", err)
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("parsing %s: no CERTIFICATE PEM block", file)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", file, err)
	}
	if !c.IsCA {
		return nil, fmt.Errorf("parsing %s: not a CA certificate", file)
	}
	return c, nil
}

// KeyPair is a leaf certificate with its private key, both PEM.
type KeyPair struct {
	Cert    *x509.Certificate
	CertPEM []byte
	KeyPEM  secret.Value // PKCS#8 PEM
}

// IssueKeyPair generates an ECDSA P-256 key and signs a certificate for it
// (see Issue).
func (ca *CA) IssueKeyPair(commonName string, dnsNames []string, ips []net.IP, serverAndClient bool) (*KeyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		// mutate:equivalent * ecdsa.GenerateKey on P-256 with crypto/rand.Reader cannot fail (crypto/rand never fails since Go 1.24)
		return nil, fmt.Errorf("generating key for %q: %w", commonName, err)
	}
	cert, err := ca.Issue(commonName, dnsNames, ips, key.Public(), serverAndClient)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		// mutate:equivalent * x509.MarshalPKCS8PrivateKey of an *ecdsa.PrivateKey on P-256 cannot fail
		return nil, fmt.Errorf("encoding key for %q: %w", commonName, err)
	}
	defer secret.New(der).Wipe()
	return &KeyPair{
		Cert:    cert,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
		KeyPEM:  secret.New(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
	}, nil
}

// Save writes the key (0600, its directory made 0700, and directories made
// above it 0700 too) and then the certificate (0644, directories made for it
// 0755), each atomically.
func (kp *KeyPair) Save(h home.Home, certFile, keyFile string) error {
	// The certificate's directory first: when the key's is inside it (as
	// certs/private), it is made 0755, not 0700 with the key's.
	if err := os.MkdirAll(filepath.Dir(certFile), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(certFile), err)
	}
	kdir := filepath.Dir(keyFile)
	if err := os.MkdirAll(kdir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", kdir, err)
	}
	if err := os.Chmod(kdir, 0o700); err != nil {
		return fmt.Errorf("setting mode of %s: %w", kdir, err)
	}
	if err := secret.WriteFile(h, keyFile, kp.KeyPEM.Reveal(), 0o600); err != nil {
		return fmt.Errorf("saving key: %w", err)
	}
	if err := home.WriteFileAtomic(certFile, kp.CertPEM, 0o644); err != nil {
		return fmt.Errorf("saving certificate: %w", err)
	}
	return nil
}

// LoadKeyPair reads a certificate and its key as a tls.Certificate (Leaf
// set). A missing file gives an error wrapping os.ErrNotExist. A key in
// install directory h is read with secret.ReadFile (opened when sealed).
func LoadKeyPair(h home.Home, certFile, keyFile string) (tls.Certificate, error) {
	return loadKeyPairAs(h, certFile, keyFile, keyFile)
}

// loadKeyPairAs is LoadKeyPair of a key sealed for the path keyAs (a key
// of a pending set, sealed for its place).
func loadKeyPairAs(h home.Home, certFile, keyFile, keyAs string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("reading certificate: %w", err)
	}
	keyPEM, err := secret.ReadFileAs(h, keyFile, keyAs)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("reading key: %w", err)
	}
	defer secret.New(keyPEM).Wipe()
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("loading %s: %w", certFile, err)
	}
	return c, nil
}

// CheckLeaf reports why leaf does not do as a certificate signed by ca for
// every one of dnsNames and ips, valid for at least minValidity more: nil
// when it does.
func CheckLeaf(leaf, ca *x509.Certificate, dnsNames []string, ips []net.IP, minValidity time.Duration) error {
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return fmt.Errorf("not signed by the domain CA: %w", err)
	}
	// mutate:equivalent boundary time.Until moves between any two calls: a remaining validity equal to minValidity to the nanosecond cannot be arranged
	if time.Until(leaf.NotAfter) < minValidity {
		return fmt.Errorf("expires %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	for _, d := range dnsNames {
		if !slices.Contains(leaf.DNSNames, d) {
			return fmt.Errorf("does not name %q", d)
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
			return fmt.Errorf("does not name %s", ip)
		}
	}
	return nil
}
