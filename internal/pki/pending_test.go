package pki

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// pendingSet begins a set on h for ca with a node manager key and one
// instance key, signed by signer (ca when nil), and returns their PEMs.
func pendingSet(t *testing.T, p Pending, ca, signer *CA) (nmCert, instCert []byte) {
	t.Helper()
	if signer == nil {
		signer = ca
	}
	if err := p.Begin(ca.CertPEM()); err != nil {
		t.Fatal(err)
	}
	sign := func(csrPEM, cn string) []byte {
		csr, err := ParseCSR([]byte(csrPEM))
		if err != nil {
			t.Fatal(err)
		}
		c, err := signer.SignCSR(csr, cn, true)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	csr, err := p.NodeManagerCSR("Gatehouse Node Manager nodemanager-1 (host-1)", []string{"localhost"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	nmCert = sign(csr, "Gatehouse Node Manager nodemanager-1 (host-1)")
	csr, err = p.InstanceCSR("group-2", "instance-1", []string{"localhost"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	instCert = sign(csr, InstanceCommonName("group-2", "instance-1"))
	return nmCert, instCert
}

// TestPendingCommit: a complete set moves into place (keys and
// certificates of the node manager and the instance, the CA certificate
// and, for a new CA, its key), and the pending directory is gone.
func TestPendingCommit(t *testing.T) {
	h := newHome(t)
	old, _ := NewCA("D")
	if err := old.Save(h); err != nil {
		t.Fatal(err)
	}
	ca, _ := NewCA("D")
	p := PendingFor(h)
	nmCert, instCert := pendingSet(t, p, ca, nil)
	if err := p.PutNodeManagerCert("Gatehouse Node Manager nodemanager-1 (host-1)", nmCert); err != nil {
		t.Fatal(err)
	}
	if err := p.PutInstanceCert("group-2", "instance-1", instCert); err != nil {
		t.Fatal(err)
	}
	if err := p.PutCAKey(old); err == nil {
		t.Error("PutCAKey took the key of another CA than the pending one")
	}
	if err := p.PutCAKey(ca); err != nil {
		t.Fatal(err)
	}
	nm, insts, err := p.Summary()
	if err != nil || !nm || len(insts) != 1 || insts[0] != "instance-1" {
		t.Errorf("Summary: %v %v %v", nm, insts, err)
	}
	// Modes: keys 0600 in 0700 directories, certificates 0644.
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{
		{p.caFile(), 0o644}, {p.caKeyFile(), 0o600}, {p.nmKeyFile(), 0o600}, {p.nmCertFile(), 0o644},
		{filepath.Join(p.instanceDir("group-2", "instance-1"), InstanceKeyName), 0o600},
		{filepath.Join(p.instanceDir("group-2", "instance-1"), InstanceCertName), 0o644},
		{p.instanceDir("group-2", "instance-1"), 0o700 | os.ModeDir},
	} {
		if fi, err := os.Stat(c.path); err != nil || fi.Mode() != c.mode {
			t.Errorf("%s: mode %v (%v), want %v", c.path, fi.Mode(), err, c.mode)
		}
	}
	// The instance's own directories do not exist yet: the commit makes
	// them (0755 for the certificate's, 0700 for the key's).
	os.RemoveAll(h.InstanceDir("group-2", "instance-1"))
	if fi, err := os.Stat(p.Dir()); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("pending directory: %v %v", fi, err)
	}
	if err := p.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p.Dir()); !os.IsNotExist(err) {
		t.Errorf("the pending directory is still there: %v", err)
	}
	got, err := LoadCA(h)
	if err != nil || !got.Cert.Equal(ca.Cert) {
		t.Fatalf("the CA in place: %v", err)
	}
	kp, err := LoadKeyPair(h, NodeManagerCertFile(h), NodeManagerKeyFile(h))
	if err != nil || !bytes.Equal(kp.Certificate[0], mustDER(t, nmCert)) {
		t.Errorf("node manager pair in place: %v", err)
	}
	kp, err = LoadKeyPair(h, InstanceCertFile(h, "group-2", "instance-1"), InstanceKeyFile(h, "group-2", "instance-1"))
	if err != nil || !bytes.Equal(kp.Certificate[0], mustDER(t, instCert)) {
		t.Errorf("instance pair in place: %v", err)
	}
	if fi, err := os.Stat(InstanceKeyFile(h, "group-2", "instance-1")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("instance key mode: %v %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Dir(InstanceCertFile(h, "group-2", "instance-1"))); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("instance certificate directory: %v %v", fi, err)
	}
	if err := p.Commit(); err == nil || !strings.Contains(err.Error(), "no certificates are pending") {
		t.Errorf("a second commit: %v", err)
	}
}

func mustDER(t *testing.T, p []byte) []byte {
	t.Helper()
	b, _ := pem.Decode(p)
	if b == nil {
		t.Fatal("no PEM")
	}
	return b.Bytes
}

// TestPendingRefuses: certificates of another CA, for another name, or for
// another key are refused; a key without its certificate does not move;
// Discard drops a set; a commit cut short is finished by
// FinishPendingCommit, and Begin and Discard leave it alone.
func TestPendingRefuses(t *testing.T) {
	h := newHome(t)
	ca, _ := NewCA("D")
	if err := ca.Save(h); err != nil {
		t.Fatal(err)
	}
	p := PendingFor(h)
	if err := p.Begin([]byte("junk")); err == nil {
		t.Error("Begin took a CA certificate that is not one")
	}
	leaf, _ := ca.IssueKeyPair("leaf", nil, nil, true)
	if err := p.Begin(leaf.CertPEM); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Errorf("Begin with a leaf: %v", err)
	}
	other, _ := NewCA("other")
	nmCert, instCert := pendingSet(t, p, ca, other)
	if err := p.PutNodeManagerCert("Gatehouse Node Manager nodemanager-1 (host-1)", nmCert); err == nil || !strings.Contains(err.Error(), "not signed by the CA being put in place") {
		t.Errorf("a certificate of another CA: %v", err)
	}
	nmCert, instCert = pendingSet(t, p, ca, nil)
	if err := p.PutNodeManagerCert("Gatehouse Node Manager nodemanager-2 (host-2)", nmCert); err == nil || !strings.Contains(err.Error(), "not \"Gatehouse Node Manager nodemanager-2") {
		t.Errorf("a certificate for another node manager: %v", err)
	}
	// The instance's certificate offered as the node manager's: another
	// name; one for another key: refused and not kept.
	foreign, _ := ca.IssueKeyPair("Gatehouse Node Manager nodemanager-1 (host-1)", nil, nil, true)
	if err := p.PutNodeManagerCert("Gatehouse Node Manager nodemanager-1 (host-1)", foreign.CertPEM); err == nil || !strings.Contains(err.Error(), "does not fit the key") {
		t.Errorf("a certificate for another key: %v", err)
	}
	if _, err := os.Stat(p.nmCertFile()); err == nil {
		t.Error("a certificate for another key was kept")
	}
	// Only the instance's certificate: the node manager's key stays behind.
	if err := p.PutInstanceCert("group-2", "instance-1", instCert); err != nil {
		t.Fatal(err)
	}
	nm, insts, _ := p.Summary()
	if nm || len(insts) != 1 {
		t.Errorf("Summary of a set without the node manager's certificate: %v %v", nm, insts)
	}
	if err := p.Discard(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p.Dir()); !os.IsNotExist(err) {
		t.Errorf("Discard left %s", p.Dir())
	}
	if done, err := FinishPendingCommit(h); done || err != nil {
		t.Errorf("FinishPendingCommit without a set: %v %v", done, err)
	}

	// A commit cut short after its marker: the node manager's start
	// finishes it; Begin and Discard do not touch it.
	nmCert, _ = pendingSet(t, p, ca, nil)
	if err := p.PutNodeManagerCert("Gatehouse Node Manager nodemanager-1 (host-1)", nmCert); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.marker(), []byte("commit\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.Begin(ca.CertPEM()); err == nil {
		t.Error("Begin replaced a set being committed")
	}
	if err := p.Discard(); err == nil {
		t.Error("Discard dropped a set being committed")
	}
	done, err := FinishPendingCommit(h)
	if !done || err != nil {
		t.Fatalf("FinishPendingCommit: %v %v", done, err)
	}
	kp, err := LoadKeyPair(h, NodeManagerCertFile(h), NodeManagerKeyFile(h))
	if err != nil || !bytes.Equal(kp.Certificate[0], mustDER(t, nmCert)) {
		t.Errorf("after FinishPendingCommit the node manager pair is not the pending one: %v", err)
	}
	if _, err := os.Stat(filepath.Join(p.Dir())); !os.IsNotExist(err) {
		t.Errorf("FinishPendingCommit left %s", p.Dir())
	}
}

// TestParseCARSA: an operator's RSA CA in PKCS#1 form is taken.
func TestParseCARSA(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: randomSerial(), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	tmpl.NotBefore = tmpl.NotBefore.AddDate(2020, 0, 0)
	tmpl.NotAfter = tmpl.NotBefore.AddDate(100, 0, 0)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	ca, err := ParseCA(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckOperatorCA(ca.Cert); err != nil {
		t.Errorf("CheckOperatorCA: %v", err)
	}
	if _, err := ca.IssueKeyPair("leaf", []string{"localhost"}, nil, true); err != nil {
		t.Errorf("issuing with an RSA CA: %v", err)
	}
}

// TestCheckOperatorCA: what may be the domain CA.
func TestCheckOperatorCA(t *testing.T) {
	ca, _ := NewCA("D")
	now := ca.Cert.NotBefore
	mk := func(edit func(*x509.Certificate)) *x509.Certificate {
		c := *ca.Cert
		edit(&c)
		return &c
	}
	tests := []struct {
		name string
		cert *x509.Certificate
		want string
	}{
		{"generated", ca.Cert, ""},
		{"no basic constraints", mk(func(c *x509.Certificate) { c.BasicConstraintsValid = false }), "not a CA certificate"},
		{"not a CA", mk(func(c *x509.Certificate) { c.IsCA = false }), "not a CA certificate"},
		{"no keyCertSign", mk(func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageDigitalSignature }), "keyCertSign"},
		{"no key usage at all", mk(func(c *x509.Certificate) { c.KeyUsage = 0 }), ""},
		{"not yet valid", mk(func(c *x509.Certificate) { c.NotBefore = now.AddDate(0, 0, 2) }), "not valid before"},
		{"89 days left", mk(func(c *x509.Certificate) { c.NotAfter = now.AddDate(0, 0, 89) }), "at least 90 days"},
		{"91 days left", mk(func(c *x509.Certificate) { c.NotAfter = now.AddDate(0, 0, 91) }), ""},
	}
	for _, tt := range tests {
		err := CheckOperatorCA(tt.cert)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: got %v, want %q", tt.name, err, tt.want)
		}
	}
	// WithCert takes a certificate for the CA's key only; CSR asks for
	// the CA's subject with its key.
	other, _ := NewCA("D")
	if _, err := ca.WithCert(other.Cert); err == nil {
		t.Error("WithCert took a certificate for another key")
	}
	same, err := ca.WithCert(ca.Cert)
	if err != nil || same.Cert != ca.Cert {
		t.Errorf("WithCert with its own certificate: %v", err)
	}
	csrPEM, err := ca.CSR()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := ParseCSR(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := x509.MarshalPKIXPublicKey(csr.PublicKey)
	if csr.Subject.CommonName != ca.Cert.Subject.CommonName || !bytes.Equal(pub, ca.Cert.RawSubjectPublicKeyInfo) {
		t.Errorf("CSR: subject %q, key of the CA %v", csr.Subject, bytes.Equal(pub, ca.Cert.RawSubjectPublicKeyInfo))
	}
}

// TestPendingFilesInTheWay: a pending directory that cannot be made, or a
// key that cannot be written, is an error, and nothing is left half-made.
func TestPendingFilesInTheWay(t *testing.T) {
	h := newHome(t)
	ca, _ := NewCA("D")
	p := PendingFor(h)
	// A file where the pending directory's parent should be.
	if err := os.MkdirAll(filepath.Dir(filepath.Dir(p.Dir())), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Dir(p.Dir()), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.Begin(ca.CertPEM()); err == nil {
		t.Error("Begin with a file in the way: no error")
	}
	os.Remove(filepath.Dir(p.Dir()))
	if err := p.Begin(ca.CertPEM()); err != nil {
		t.Fatal(err)
	}
	// A directory where the node manager's key is to be written.
	if err := os.MkdirAll(p.nmKeyFile(), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := p.NodeManagerCSR("Gatehouse Node Manager nodemanager-1 (host-1)", nil, nil); err == nil {
		t.Error("NodeManagerCSR with a directory in the way: no error")
	}
	// A file where an instance's pending directory is to be made.
	if err := os.WriteFile(filepath.Join(p.Dir(), "instances"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := p.InstanceCSR("group-2", "instance-1", nil, nil); err == nil {
		t.Error("InstanceCSR with a file in the way: no error")
	}
	if _, _, err := p.Summary(); err == nil {
		t.Error("Summary with a file where the instances' directory is: no error")
	}
	if err := p.Commit(); err == nil {
		t.Error("Commit of a set it cannot list: no error")
	}
}

// TestPendingErrors: each step refuses what it cannot do and says so.
func TestPendingErrors(t *testing.T) {
	h := newHome(t)
	ca, _ := NewCA("D")
	p := PendingFor(h)
	if err := p.PutNodeManagerCert("x", ca.CertPEM()); err == nil {
		t.Error("PutNodeManagerCert without a pending set: no error")
	}
	if err := p.PutCAKey(ca); err == nil {
		t.Error("PutCAKey without a pending set: no error")
	}
	nmCert, _ := pendingSet(t, p, ca, nil)
	const cn = "Gatehouse Node Manager nodemanager-1 (host-1)"
	if err := p.PutNodeManagerCert(cn, []byte("not PEM")); err == nil {
		t.Error("PutNodeManagerCert of garbage: no error")
	}
	// A directory where the certificate is to be written.
	if err := os.MkdirAll(filepath.Join(p.nmCertFile(), "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := p.PutNodeManagerCert(cn, nmCert); err == nil {
		t.Error("PutNodeManagerCert with a directory in the way: no error")
	}
	os.RemoveAll(p.nmCertFile())
	if err := p.PutNodeManagerCert(cn, nmCert); err != nil {
		t.Fatal(err)
	}
	// A directory where the marker is to be written.
	if err := os.MkdirAll(filepath.Join(p.marker(), "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := p.Commit(); err == nil {
		t.Error("Commit with a directory where its marker goes: no error")
	}
	os.RemoveAll(p.marker())
	// A file where a group of the pending instances should be a directory.
	if err := os.WriteFile(filepath.Join(p.Dir(), "instances", "group-9"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.Summary(); err == nil {
		t.Error("Summary with a file among the groups: no error")
	}
	os.Remove(filepath.Join(p.Dir(), "instances", "group-9"))
	// The node manager's certificate cannot be moved: a non-empty
	// directory is where it goes. The commit fails and says which, after
	// the key moved: the node manager's start finishes it once the way is
	// clear, and the pair in place is the new one (key and certificate).
	if err := os.MkdirAll(filepath.Join(NodeManagerCertFile(h), "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := p.Commit(); err == nil || !strings.Contains(err.Error(), "putting") {
		t.Errorf("Commit onto a directory: %v", err)
	}
	os.RemoveAll(NodeManagerCertFile(h))
	if done, err := FinishPendingCommit(h); !done || err != nil {
		t.Fatalf("FinishPendingCommit once the way is clear: %v %v", done, err)
	}
	kp, err := LoadKeyPair(h, NodeManagerCertFile(h), NodeManagerKeyFile(h))
	if err != nil || !bytes.Equal(kp.Certificate[0], mustDER(t, nmCert)) {
		t.Errorf("after a commit cut between key and certificate: %v", err)
	}
	// A directory that cannot be made: a file where the instance's
	// conf directory goes.
	nmCert, instCert := pendingSet(t, p, ca, nil)
	if err := p.PutNodeManagerCert(cn, nmCert); err != nil {
		t.Fatal(err)
	}
	if err := p.PutInstanceCert("group-2", "instance-1", instCert); err != nil {
		t.Fatal(err)
	}
	confDir := filepath.Join(h.InstanceDir("group-2", "instance-1"), "conf")
	os.RemoveAll(confDir)
	if err := os.MkdirAll(filepath.Dir(confDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(confDir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.Commit(); err == nil {
		t.Error("Commit with a file where the instance's directory goes: no error")
	}
	if done, err := FinishPendingCommit(h); !done || err == nil {
		t.Errorf("FinishPendingCommit with the file still in the way: %v %v", done, err)
	}
	os.Remove(confDir)
	if done, err := FinishPendingCommit(h); !done || err != nil {
		t.Errorf("FinishPendingCommit once the way is clear: %v %v", done, err)
	}
	if _, err := LoadKeyPair(h, InstanceCertFile(h, "group-2", "instance-1"), InstanceKeyFile(h, "group-2", "instance-1")); err != nil {
		t.Errorf("the instance's pair after the commit: %v", err)
	}
}

// TestPendingCommitSealed: with passphrases on the CA, the node managers
// and the group, every key of a pending set is sealed as it is written
// (for its place: it opens there once moved), never in clear; a process
// without a scope's key cannot make the set.
func TestPendingCommitSealed(t *testing.T) {
	h := newHome(t)
	old, _ := NewCA("D")
	if err := old.Save(h); err != nil {
		t.Fatal(err)
	}
	kdf := secret.KDF{Algorithm: "argon2id", Time: 1, MemoryKiB: 8 << 10, Threads: 1}
	for _, s := range []secret.Scope{secret.ScopeCA, secret.ScopeNodeManagers, secret.GroupScope("group-2")} {
		if err := secret.ChangePassphrase(h, s, secret.Value{}, secret.FromString("passphrase of "+string(s)), kdf); err != nil {
			t.Fatal(err)
		}
	}
	ca, _ := NewCA("D")
	p := PendingFor(h)
	nmCert, instCert := pendingSet(t, p, ca, nil)
	if err := p.PutNodeManagerCert("Gatehouse Node Manager nodemanager-1 (host-1)", nmCert); err != nil {
		t.Fatal(err)
	}
	if err := p.PutInstanceCert("group-2", "instance-1", instCert); err != nil {
		t.Fatal(err)
	}
	if err := p.PutCAKey(ca); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{p.caKeyFile(), p.nmKeyFile(), filepath.Join(p.instanceDir("group-2", "instance-1"), InstanceKeyName)} {
		if !secret.IsSealedFile(f) {
			t.Errorf("%s is not sealed", f)
		}
	}
	if err := p.Commit(); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadCA(h); err != nil || !got.Cert.Equal(ca.Cert) {
		t.Fatalf("the CA in place: %v", err)
	}
	if _, err := LoadKeyPair(h, NodeManagerCertFile(h), NodeManagerKeyFile(h)); err != nil {
		t.Errorf("node manager pair in place: %v", err)
	}
	if _, err := LoadKeyPair(h, InstanceCertFile(h, "group-2", "instance-1"), InstanceKeyFile(h, "group-2", "instance-1")); err != nil {
		t.Errorf("instance pair in place: %v", err)
	}
	for _, f := range []string{KeyFile(h), NodeManagerKeyFile(h), InstanceKeyFile(h, "group-2", "instance-1")} {
		if !secret.IsSealedFile(f) {
			t.Errorf("%s is not sealed in place", f)
		}
	}
	// Without the group's key, its instance's new key cannot be made.
	secret.Forget(h, secret.GroupScope("group-2"))
	if err := p.Begin(ca.CertPEM()); err != nil {
		t.Fatal(err)
	}
	var le *secret.LockedError
	if _, err := p.InstanceCSR("group-2", "instance-1", []string{"localhost"}, nil); !errors.As(err, &le) {
		t.Errorf("an instance key without the group's passphrase: %v", err)
	}
}
