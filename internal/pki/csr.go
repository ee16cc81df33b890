package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// Certificate signing requests: a host that joins a domain (managedomain -a)
// generates its node manager's key itself and sends only a CSR to the Admin
// Node Manager, which signs it with the domain CA. The CA key never leaves
// the host that created the domain, and the node manager's key never leaves
// the joining host.

// Limits on what a CSR may ask for.
const (
	MaxCSRBytes    = 16 << 10
	maxCSRSANs     = 32
	maxCSRNameSize = 253
)

// ErrBadCSR is wrapped by ParseCSR's errors.
var ErrBadCSR = errors.New("invalid certificate signing request")

// NewKeyAndCSR generates an ECDSA P-256 key and a CSR for it naming
// commonName, dnsNames and ips. The key is PKCS#8 PEM.
func NewKeyAndCSR(commonName string, dnsNames []string, ips []net.IP) (csrPEM []byte, keyPEM secret.Value, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		// mutate:equivalent * ecdsa.GenerateKey on P-256 with crypto/rand.Reader cannot fail (crypto/rand never fails since Go 1.24)
		return nil, secret.Value{}, fmt.Errorf("generating key: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: commonName, Organization: []string{"Gatehouse"}},
		DNSNames:    dnsNames,
		IPAddresses: ips,
	}, key)
	if err != nil {
		return nil, secret.Value{}, fmt.Errorf("creating certificate request: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		// mutate:equivalent * x509.MarshalPKCS8PrivateKey of an *ecdsa.PrivateKey on P-256 cannot fail
		return nil, secret.Value{}, fmt.Errorf("encoding key: %w", err)
	}
	defer secret.New(kder).Wipe()
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
		secret.New(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})), nil
}

// ParseCSR decodes one PEM "CERTIFICATE REQUEST", checks its self-signature
// (the sender holds the key) and the limits on its names. Its errors wrap
// ErrBadCSR and say what is wrong.
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	if len(data) > MaxCSRBytes {
		return nil, fmt.Errorf("%w: %d bytes, more than the limit of %d", ErrBadCSR, len(data), MaxCSRBytes)
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("%w: want one PEM block of type CERTIFICATE REQUEST", ErrBadCSR)
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: its signature does not verify with its public key: %v", ErrBadCSR, err)
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, fmt.Errorf("%w: ECDSA key on %s; want P-256 or P-384", ErrBadCSR, k.Curve.Params().Name)
		}
	default:
		return nil, fmt.Errorf("%w: %T key; want ECDSA P-256 or P-384", ErrBadCSR, csr.PublicKey)
	}
	if n := len(csr.DNSNames) + len(csr.IPAddresses); n > maxCSRSANs {
		return nil, fmt.Errorf("%w: %d subject alternative names, more than %d", ErrBadCSR, n, maxCSRSANs)
	}
	for _, d := range csr.DNSNames {
		if d == "" || len(d) > maxCSRNameSize {
			return nil, fmt.Errorf("%w: DNS name %q", ErrBadCSR, d)
		}
	}
	if len(csr.URIs) > 0 || len(csr.EmailAddresses) > 0 {
		return nil, fmt.Errorf("%w: only DNS names and IP addresses may be asked for", ErrBadCSR)
	}
	return csr, nil
}

// SignCSR issues a certificate for the CSR's key (see Issue). The common
// name is the CA's choice, not the requester's; the DNS names and IP
// addresses are the CSR's.
func (ca *CA) SignCSR(csr *x509.CertificateRequest, commonName string, serverAndClient bool) (certPEM []byte, err error) {
	cert, err := ca.Issue(commonName, csr.DNSNames, csr.IPAddresses, csr.PublicKey, serverAndClient)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), nil
}

// ParseCertPEM decodes one PEM CERTIFICATE.
func ParseCertPEM(data []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("parsing certificate: want one PEM block of type CERTIFICATE")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing certificate: %w", err)
	}
	return c, nil
}

// SaveCACert writes the domain CA certificate received from the Admin Node
// Manager (groups/certs/domaincert.pem, 0644). It writes no key: a host that
// joined a domain has no groups/certs/private.
func SaveCACert(h home.Home, certPEM []byte) error {
	if err := os.MkdirAll(filepath.Dir(CertFile(h)), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(CertFile(h)), err)
	}
	return home.WriteFileAtomic(CertFile(h), certPEM, 0o644)
}

// CheckPeerCA reports whether leaf is signed by ca (any key usage).
func CheckPeerCA(leaf, ca *x509.Certificate) error {
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}
