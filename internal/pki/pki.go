// Package pki is the domain's public-key infrastructure: the domain CA that
// managedomain -i creates, and the certificates it issues to node managers
// (keypair.go) and gateway instances (instance.go), with which they talk
// mutual TLS (MutualTLSServer, MutualTLSClient).
//
// Files (see docs/pki.md):
//
//	groups/certs/domaincert.pem           the CA certificate (PEM, 0644)
//	groups/certs/private/domainkey.pem    its private key (PKCS#8 PEM, 0600, directory 0700)
//
// The key is unencrypted on disk until the passphrase issue; it is protected
// by its file mode. In memory it is held as a secret.Value, so it never
// prints itself.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
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
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// Lifetimes of what this package creates.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	CertValidity = 2 * 365 * 24 * time.Hour
	// backdate covers clock skew between hosts.
	backdate = 5 * time.Minute
)

// File names under groups/certs.
const (
	CertFileName = "domaincert.pem"
	KeyFileName  = "domainkey.pem"
)

// ErrNoCA is wrapped when the install directory holds no domain CA.
var ErrNoCA = errors.New("no domain CA")

// CertFile is the path of the domain CA certificate in h.
func CertFile(h home.Home) string { return filepath.Join(h.CertsDir(), CertFileName) }

// KeyFile is the path of the domain CA private key in h.
func KeyFile(h home.Home) string { return filepath.Join(h.CertsPrivateDir(), KeyFileName) }

// CA is the domain certificate authority. It is safe for concurrent use.
type CA struct {
	// Cert is the CA certificate.
	Cert *x509.Certificate
	// key is the PKCS#8 DER of the private key.
	key    secret.Value
	signer crypto.Signer
}

// NewCA makes a new self-signed CA for the domain called domainName:
// ECDSA P-256, valid for 10 years, CN "Gatehouse Domain CA <domainName>",
// random 128-bit serial. It touches no file; see Save.
func NewCA(domainName string) (*CA, error) {
	if strings.TrimSpace(domainName) == "" {
		return nil, errors.New("creating domain CA: empty domain name")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		// mutate:equivalent * ecdsa.GenerateKey on P-256 with crypto/rand.Reader cannot fail (crypto/rand never fails since Go 1.24)
		return nil, fmt.Errorf("generating CA key: %w", err)
	}
	now := time.Now()
	ski, err := subjectKeyID(key.Public())
	if err != nil {
		// mutate:equivalent * the public key of an *ecdsa.PrivateKey on P-256 always marshals
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "Gatehouse Domain CA " + domainName, Organization: []string{"Gatehouse"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          ski,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		// mutate:equivalent * a self-signed template of our own, with a fresh P-256 key, always signs
		return nil, fmt.Errorf("signing CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		// mutate:equivalent * the DER that x509.CreateCertificate just made always parses
		return nil, fmt.Errorf("parsing CA certificate: %w", err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		// mutate:equivalent * x509.MarshalPKCS8PrivateKey of an *ecdsa.PrivateKey on P-256 cannot fail
		return nil, fmt.Errorf("encoding CA key: %w", err)
	}
	return &CA{Cert: cert, key: secret.New(pk), signer: key}, nil
}

// Key returns the CA private key as PKCS#8 DER, wrapped so it never prints.
func (ca *CA) Key() secret.Value { return ca.key }

// CertPEM returns the CA certificate in PEM.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// Save writes the CA to h: the key first (groups/certs/private/domainkey.pem,
// 0600, in a 0700 directory), then the certificate (groups/certs/domaincert.pem,
// 0644), each atomically. It replaces files already there; callers decide
// whether that is allowed.
func (ca *CA) Save(h home.Home) error {
	if err := os.MkdirAll(h.CertsDir(), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", h.CertsDir(), err)
	}
	// mutate:equivalent const the one directory this makes (CertsDir was made above) gets its mode from the Chmod below
	if err := os.MkdirAll(h.CertsPrivateDir(), 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", h.CertsPrivateDir(), err)
	}
	if err := os.Chmod(h.CertsPrivateDir(), 0o700); err != nil {
		return fmt.Errorf("setting mode of %s: %w", h.CertsPrivateDir(), err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ca.key.Reveal()})
	defer secret.New(keyPEM).Wipe()
	if err := secret.WriteFile(h, KeyFile(h), keyPEM, 0o600); err != nil {
		return fmt.Errorf("saving CA key: %w", err)
	}
	if err := home.WriteFileAtomic(CertFile(h), ca.CertPEM(), 0o644); err != nil {
		return fmt.Errorf("saving CA certificate: %w", err)
	}
	return nil
}

// LoadCA reads the domain CA of h and checks that the key matches the
// certificate. A missing file gives an error wrapping ErrNoCA.
func LoadCA(h home.Home) (*CA, error) {
	certPEM, err := os.ReadFile(CertFile(h))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s is missing", ErrNoCA, CertFile(h))
	}
	if err != nil {
		return nil, fmt.Errorf("reading CA certificate: %w", err)
	}
	keyPEM, err := secret.ReadFile(h, KeyFile(h))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s is missing", ErrNoCA, KeyFile(h))
	}
	if err != nil {
		return nil, fmt.Errorf("reading CA key: %w", err)
	}
	defer secret.New(keyPEM).Wipe()
	return ParseCA(certPEM, keyPEM)
}

// ParseCA builds a CA from its PEM certificate and PEM PKCS#8 key.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, errors.New("parsing CA certificate: no CERTIFICATE PEM block")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("parsing CA certificate: not a CA certificate")
	}
	kb, _ := pem.Decode(keyPEM)
	var k any
	switch {
	case kb == nil:
		return nil, errors.New("parsing CA key: no PEM block (want PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)")
	case kb.Type == "ENCRYPTED PRIVATE KEY" || kb.Headers["Proc-Type"] != "":
		return nil, errors.New("parsing CA key: the key is encrypted; give it unencrypted (openssl pkey -in KEY -out PLAIN.pem), kept 0600 (encryption at rest with a domain passphrase is later work)")
	case kb.Type == "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(kb.Bytes)
	case kb.Type == "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(kb.Bytes)
	case kb.Type == "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(kb.Bytes)
	default:
		return nil, fmt.Errorf("parsing CA key: a PEM block of type %q (want PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)", kb.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing CA key: %w", err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("parsing CA key: %T cannot sign", k)
	}
	pub, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		// mutate:equivalent * every signer x509.ParsePKCS8PrivateKey returns (RSA, ECDSA, Ed25519) has a public key that marshals
		return nil, fmt.Errorf("parsing CA key: %w", err)
	}
	if !bytes.Equal(pub, cert.RawSubjectPublicKeyInfo) {
		return nil, errors.New("CA key does not match the CA certificate")
	}
	der := append([]byte(nil), kb.Bytes...)
	if kb.Type != "PRIVATE KEY" {
		if der, err = x509.MarshalPKCS8PrivateKey(k); err != nil {
			// mutate:equivalent * a key that x509 parsed as EC or RSA marshals as PKCS#8
			return nil, fmt.Errorf("parsing CA key: %w", err)
		}
	}
	return &CA{Cert: cert, key: secret.New(der), signer: signer}, nil
}

// OperatorCAMinValidity is how long a CA that the operator provides must
// still be valid: the node managers' and instances' certificates it signs
// end with it.
const OperatorCAMinValidity = 90 * 24 * time.Hour

// CheckOperatorCA reports why ca, a CA the operator provides (managedomain
// -i --domain_cert/--domain_key, or --submit_cert), cannot be the domain
// CA: it must be a CA certificate (basic constraints) allowed to sign
// certificates, valid now and for at least OperatorCAMinValidity more, and
// allowed to sign certificates that sign nothing (a path length of 0 is
// fine). ParseCA has checked that the key fits it.
func CheckOperatorCA(cert *x509.Certificate) error {
	now := time.Now()
	switch {
	case !cert.BasicConstraintsValid || !cert.IsCA:
		return errors.New("it is not a CA certificate (basic constraints CA:TRUE)")
	case cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0:
		return errors.New("its key usage does not allow signing certificates (keyCertSign)")
	case now.Before(cert.NotBefore):
		return fmt.Errorf("it is not valid before %s", cert.NotBefore.UTC().Format(time.RFC3339))
	// mutate:equivalent boundary the remaining validity moves between two calls: exactly 90 days to the nanosecond cannot be arranged
	case cert.NotAfter.Sub(now) < OperatorCAMinValidity:
		return fmt.Errorf("it expires %s: want at least %d days of validity", cert.NotAfter.UTC().Format(time.RFC3339), int(OperatorCAMinValidity/(24*time.Hour)))
	}
	return nil
}

// WithCert is ca with another certificate for the same key (the domain CA
// certificate re-signed by the operator's CA: --submit_cert). The key must
// fit it.
func (ca *CA) WithCert(cert *x509.Certificate) (*CA, error) {
	pub, err := x509.MarshalPKIXPublicKey(ca.signer.Public())
	if err != nil {
		// mutate:equivalent * the CA's own key always marshals (ParseCA and NewCA checked it)
		return nil, err
	}
	if !bytes.Equal(pub, cert.RawSubjectPublicKeyInfo) {
		return nil, errors.New("the certificate is not for the domain CA's key")
	}
	return &CA{Cert: cert, key: ca.key, signer: ca.signer}, nil
}

// CSR is a certificate signing request for the CA's key with the CA
// certificate's subject, to have the domain CA signed by the operator's
// own CA (managedomain --domain_csr).
func (ca *CA) CSR() ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: ca.Cert.Subject}, ca.signer)
	if err != nil {
		return nil, fmt.Errorf("creating the domain CA's certificate request: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// Issue signs a certificate for pub with commonName and the given DNS names
// and IP addresses, valid for two years. With serverAndClient it may be
// used for both TLS server and client authentication (node managers and
// instances talk mutual TLS); otherwise for server authentication only.
func (ca *CA) Issue(commonName string, dnsNames []string, ips []net.IP, pub crypto.PublicKey, serverAndClient bool) (*x509.Certificate, error) {
	usage := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	if serverAndClient {
		usage = append(usage, x509.ExtKeyUsageClientAuth)
	}
	return ca.issue(commonName, dnsNames, ips, pub, usage, CertValidity)
}

// IssueClient signs a certificate for TLS client authentication only, for
// pub with commonName and no names of hosts, valid for validity (at most
// CertValidity): what an operator's tool (a monitoring scraper of the
// instances' management listeners) presents. It can serve nothing, so it
// cannot pose as a node manager's or an instance's listener; the common
// name must not be one of Gatehouse's own (CheckClientCommonName).
func (ca *CA) IssueClient(commonName string, pub crypto.PublicKey, validity time.Duration) (*x509.Certificate, error) {
	if err := CheckClientCommonName(commonName); err != nil {
		return nil, err
	}
	if validity <= 0 || validity > CertValidity {
		return nil, fmt.Errorf("issuing certificate for %q: validity %s: want up to %s", commonName, validity, CertValidity)
	}
	return ca.issue(commonName, nil, nil, pub, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, validity)
}

// CheckClientCommonName refuses a common name that Gatehouse's own
// certificates use ("Gatehouse …": the CA, node managers, instances), an
// empty one, one over 64 characters (the X.509 bound) or one with control
// characters.
func CheckClientCommonName(cn string) error {
	switch {
	case cn == "" || len(cn) > 64:
		return fmt.Errorf("common name %q: want 1 to 64 characters", cn)
	case strings.HasPrefix(strings.ToLower(strings.TrimSpace(cn)), "gatehouse "):
		return fmt.Errorf("common name %q: names starting with \"Gatehouse \" are the domain's own (CA, node managers, instances)", cn)
	case strings.ContainsFunc(cn, unicode.IsControl):
		return fmt.Errorf("common name %q has control characters", cn)
	}
	return nil
}

func (ca *CA) issue(commonName string, dnsNames []string, ips []net.IP, pub crypto.PublicKey, usage []x509.ExtKeyUsage, validity time.Duration) (*x509.Certificate, error) {
	if commonName == "" {
		return nil, errors.New("issuing certificate: empty common name")
	}
	if pub == nil {
		return nil, fmt.Errorf("issuing certificate for %q: no public key", commonName)
	}
	ski, err := subjectKeyID(pub)
	if err != nil {
		return nil, fmt.Errorf("issuing certificate for %q: %w", commonName, err)
	}
	now := time.Now()
	notAfter := now.Add(validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"Gatehouse"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           usage,
		BasicConstraintsValid: true,
		DNSNames:              dnsNames,
		IPAddresses:           ips,
		SubjectKeyId:          ski,
		AuthorityKeyId:        ca.Cert.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.signer)
	if err != nil {
		return nil, fmt.Errorf("issuing certificate for %q: %w", commonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		// mutate:equivalent * the DER that x509.CreateCertificate just made always parses
		return nil, fmt.Errorf("parsing issued certificate: %w", err)
	}
	return cert, nil
}

// Pool returns a certificate pool holding the CA certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Fingerprint is the SHA-256 fingerprint of the CA certificate.
func (ca *CA) Fingerprint() string { return Fingerprint(ca.Cert) }

// Fingerprint returns the SHA-256 of the certificate's DER as colon-separated
// upper-case hex ("AB:CD:...").
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i != 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// randomSerial returns a random 128-bit serial number: its top bit set, the
// other 127 random.
func randomSerial() *big.Int {
	b := make([]byte, 16)
	rand.Read(b) // never fails (crypto/rand, since Go 1.24)
	b[0] |= 0x80 // a full 128-bit value (positive: big.Int reads it unsigned)
	return new(big.Int).SetBytes(b)
}

func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encoding public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return sum[:20], nil
}
