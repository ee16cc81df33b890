package pki

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// Pending is a host's set of certificates waiting to replace its own
// (managedomain --regen_certs, --submit_cert; docs/pki.md "Regenerating
// certificates"). It lives in system/conf/certs/pending:
//
//	domaincert.pem                       the domain CA certificate to trust
//	domainkey.pem                        the CA's key (the CA's host only, a new CA only)
//	nodemanager.pem, nodemanager-key.pem the node manager's
//	instances/<gid>/<iid>/instance.pem, instance-key.pem
//	COMMIT                               written when the set is complete and committed
//
// The keys are generated on the host (0600, directories 0700) and never
// leave it; the Admin Node Manager signs their CSRs. Commit writes COMMIT
// and then moves every file into its place, the CA certificate last, so
// that the processes reading them (pki.Live) switch at their next
// handshake; a commit cut short by a crash is finished by
// FinishPendingCommit when the node manager starts. A set never committed
// changes nothing and is replaced by the next Begin or removed by Discard.
type Pending struct{ h home.Home }

// PendingFor is the pending set of h.
func PendingFor(h home.Home) Pending { return Pending{h: h} }

// Dir is system/conf/certs/pending.
func (p Pending) Dir() string { return filepath.Join(p.h.SystemConfDir(), "certs", "pending") }

func (p Pending) caFile() string     { return filepath.Join(p.Dir(), CertFileName) }
func (p Pending) caKeyFile() string  { return filepath.Join(p.Dir(), KeyFileName) }
func (p Pending) nmCertFile() string { return filepath.Join(p.Dir(), NodeManagerCertName) }
func (p Pending) nmKeyFile() string  { return filepath.Join(p.Dir(), NodeManagerKeyName) }
func (p Pending) marker() string     { return filepath.Join(p.Dir(), "COMMIT") }
func (p Pending) instanceDir(gid, iid string) string {
	return filepath.Join(p.Dir(), "instances", gid, iid)
}

// Begin starts a new set that will trust caPEM (a CA certificate),
// removing any set not committed.
func (p Pending) Begin(caPEM []byte) error {
	c, err := ParseCertPEM(caPEM)
	if err != nil {
		return err
	}
	if !c.IsCA {
		return errors.New("the certificate to trust is not a CA certificate")
	}
	if _, err := os.Stat(p.marker()); err == nil {
		return fmt.Errorf("%s holds a set being committed: it is finished when the node manager starts", p.Dir())
	}
	if err := os.RemoveAll(p.Dir()); err != nil {
		// mutate:equivalent delete-stmt what RemoveAll cannot remove, MkdirAll below cannot make a directory of either
		return err
	}
	if err := os.MkdirAll(p.Dir(), 0o700); err != nil {
		return err
	}
	return home.WriteFileAtomic(p.caFile(), caPEM, 0o644)
}

// CA is the pending set's CA certificate.
func (p Pending) CA() (*x509.Certificate, error) { return loadCACertFile(p.caFile()) }

// newKey generates a key into keyFile, sealed for its place dest when its
// scope has a passphrase, and returns a CSR for it.
func (p Pending) newKey(keyFile, dest, commonName string, dns []string, ips []net.IP) (string, error) {
	csrPEM, keyPEM, err := NewKeyAndCSR(commonName, dns, ips)
	if err != nil {
		return "", err
	}
	defer keyPEM.Wipe()
	if err := os.MkdirAll(filepath.Dir(keyFile), 0o700); err != nil {
		// mutate:equivalent delete-stmt the key cannot be written where its directory cannot be made: the write below fails too
		return "", err
	}
	data, err := secret.SealedFor(p.h, dest, keyPEM.Reveal())
	if err != nil {
		return "", err
	}
	if err := home.WriteFileAtomic(keyFile, data, 0o600); err != nil {
		return "", err
	}
	return string(csrPEM), nil
}

// NodeManagerCSR generates the node manager's new key and returns its CSR.
func (p Pending) NodeManagerCSR(commonName string, dns []string, ips []net.IP) (string, error) {
	return p.newKey(p.nmKeyFile(), NodeManagerKeyFile(p.h), commonName, dns, ips)
}

// InstanceCSR generates instance iid's new key and returns its CSR.
func (p Pending) InstanceCSR(gid, iid string, dns []string, ips []net.IP) (string, error) {
	return p.newKey(filepath.Join(p.instanceDir(gid, iid), InstanceKeyName), InstanceKeyFile(p.h, gid, iid), InstanceCommonName(gid, iid), dns, ips)
}

// putCert checks that certPEM is signed by the pending CA, carries
// commonName and fits the key in keyFile, and saves it as certFile.
func (p Pending) putCert(certFile, keyFile, keyDest, commonName string, certPEM []byte) error {
	ca, err := p.CA()
	if err != nil {
		return err
	}
	leaf, err := ParseCertPEM(certPEM)
	if err != nil {
		return err
	}
	if err := CheckPeerCA(leaf, ca); err != nil {
		return fmt.Errorf("%q is not signed by the CA being put in place: %w", leaf.Subject.CommonName, err)
	}
	if leaf.Subject.CommonName != commonName {
		return fmt.Errorf("the certificate is for %q, not %q", leaf.Subject.CommonName, commonName)
	}
	if err := home.WriteFileAtomic(certFile, certPEM, 0o644); err != nil {
		return err
	}
	if _, err := loadKeyPairAs(p.h, certFile, keyFile, keyDest); err != nil {
		os.Remove(certFile)
		return fmt.Errorf("the certificate for %q does not fit the key generated here: %w", commonName, err)
	}
	return nil
}

// PutNodeManagerCert stores the node manager's new certificate.
func (p Pending) PutNodeManagerCert(commonName string, certPEM []byte) error {
	return p.putCert(p.nmCertFile(), p.nmKeyFile(), NodeManagerKeyFile(p.h), commonName, certPEM)
}

// PutInstanceCert stores instance iid's new certificate.
func (p Pending) PutInstanceCert(gid, iid string, certPEM []byte) error {
	d := p.instanceDir(gid, iid)
	return p.putCert(filepath.Join(d, InstanceCertName), filepath.Join(d, InstanceKeyName), InstanceKeyFile(p.h, gid, iid), InstanceCommonName(gid, iid), certPEM)
}

// PutCAKey stores the key of the pending CA (on the CA's host, for a new
// CA): it is moved to groups/certs/private/domainkey.pem with the rest.
func (p Pending) PutCAKey(ca *CA) error {
	cur, err := p.CA()
	if err != nil {
		return err
	}
	if !bytes.Equal(cur.Raw, ca.Cert.Raw) {
		return errors.New("the CA key given is not the pending CA's")
	}
	keyPEM := secret.New(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ca.key.Reveal()}))
	defer keyPEM.Wipe()
	data, err := secret.SealedFor(p.h, KeyFile(p.h), keyPEM.Reveal())
	if err != nil {
		return err
	}
	return home.WriteFileAtomic(p.caKeyFile(), data, 0o600)
}

// move is one file of a commit: from the pending set to its place.
type move struct{ from, to string }

// moves lists what a commit moves, in order: the keys before their
// certificates, the instances, the node manager, then the CA's key and
// last the CA certificate. Only what was signed moves: a key without its
// certificate stays.
func (p Pending) moves() ([]move, error) {
	var out []move
	// A pair moves when its certificate is there (it was signed); its key
	// may have moved already (a commit cut short between the two).
	pair := func(cert, key, toCert, toKey string) {
		if !fileExists(cert) {
			return
		}
		if fileExists(key) {
			out = append(out, move{key, toKey})
		}
		out = append(out, move{cert, toCert})
	}
	groups, err := os.ReadDir(filepath.Join(p.Dir(), "instances"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for _, g := range groups {
		insts, err := os.ReadDir(filepath.Join(p.Dir(), "instances", g.Name()))
		if err != nil {
			return nil, err
		}
		for _, i := range insts {
			d := p.instanceDir(g.Name(), i.Name())
			pair(filepath.Join(d, InstanceCertName), filepath.Join(d, InstanceKeyName),
				InstanceCertFile(p.h, g.Name(), i.Name()), InstanceKeyFile(p.h, g.Name(), i.Name()))
		}
	}
	pair(p.nmCertFile(), p.nmKeyFile(), NodeManagerCertFile(p.h), NodeManagerKeyFile(p.h))
	if fileExists(p.caKeyFile()) {
		out = append(out, move{p.caKeyFile(), KeyFile(p.h)})
	}
	if fileExists(p.caFile()) {
		out = append(out, move{p.caFile(), CertFile(p.h)})
	}
	return out, nil
}

// Summary says what the set holds: whether the node manager's certificate
// is there, and which instances' are.
func (p Pending) Summary() (nodeManager bool, instances []string, err error) {
	ms, err := p.moves()
	if err != nil {
		return false, nil, err
	}
	for _, m := range ms {
		switch filepath.Base(m.to) {
		case NodeManagerCertName:
			nodeManager = true
		case InstanceCertName:
			instances = append(instances, filepath.Base(filepath.Dir(m.from)))
		}
	}
	slices.Sort(instances)
	return nodeManager, instances, nil
}

// Commit puts the set in place (see Pending). It refuses a set without a
// CA certificate.
func (p Pending) Commit() error {
	if !fileExists(p.caFile()) && !fileExists(p.marker()) {
		return fmt.Errorf("no certificates are pending in %s", p.Dir())
	}
	// mutate:equivalent const the marker holds no secret and is removed by the same call; its mode is seen by nobody
	if err := home.WriteFileAtomic(p.marker(), []byte("commit\n"), 0o600); err != nil {
		return err
	}
	return p.finish()
}

func (p Pending) finish() error {
	ms, err := p.moves()
	if err != nil {
		return err
	}
	for _, m := range ms {
		if err := os.MkdirAll(filepath.Dir(m.to), 0o755); err != nil {
			return err
		}
		if err := os.Rename(m.from, m.to); err != nil {
			return fmt.Errorf("putting %s in place: %w", m.to, err)
		}
	}
	home.SyncDir(filepath.Dir(CertFile(p.h)))
	return os.RemoveAll(p.Dir())
}

// FinishPendingCommit finishes a commit that a crash cut short (COMMIT is
// there) and reports whether there was one.
func FinishPendingCommit(h home.Home) (bool, error) {
	p := PendingFor(h)
	if !fileExists(p.marker()) {
		return false, nil
	}
	return true, p.finish()
}

// Discard removes a set not committed.
func (p Pending) Discard() error {
	if fileExists(p.marker()) {
		return fmt.Errorf("%s is being committed; it is finished when the node manager starts", p.Dir())
	}
	return os.RemoveAll(p.Dir())
}

func fileExists(f string) bool {
	_, err := os.Stat(f)
	return err == nil
}
