package domain

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

func TestEnsureInstanceCert(t *testing.T) {
	h, err := home.At(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.NewCA("D")
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Save(h); err != nil {
		t.Fatal(err)
	}
	certFile := pki.InstanceCertFile(h, "group-2", "instance-1")
	ensure := func(addr string) string {
		t.Helper()
		note, err := EnsureInstanceCert(h, "group-2", "instance-1", addr)
		if err != nil {
			t.Fatalf("EnsureInstanceCert(%q): %v", addr, err)
		}
		return note
	}
	if note := ensure("127.0.0.1"); !strings.Contains(note, "issued") || !strings.Contains(note, "there was none") {
		t.Errorf("first: got note %q, want issued because there was none", note)
	}
	first, _ := os.ReadFile(certFile)
	if note := ensure("127.0.0.1"); note != "" {
		t.Errorf("second: got note %q, want none (kept)", note)
	}
	if now, _ := os.ReadFile(certFile); string(now) != string(first) {
		t.Errorf("second: the certificate changed")
	}
	if note := ensure("10.1.2.3"); !strings.Contains(note, "issued") || !strings.Contains(note, "10.1.2.3") {
		t.Errorf("new address: got note %q, want reissued naming 10.1.2.3", note)
	}

	// Without the CA key: a valid certificate is kept (with a note when it
	// should be reissued); none at all is ErrNoInstanceCert, saying how.
	if err := os.Remove(pki.KeyFile(h)); err != nil {
		t.Fatal(err)
	}
	if note := ensure("10.1.2.3"); note != "" {
		t.Errorf("no key, fine certificate: got note %q, want none", note)
	}
	if note := ensure("10.9.9.9"); !strings.Contains(note, "kept") || !strings.Contains(note, "no domain CA key") {
		t.Errorf("no key, misnamed certificate: got note %q, want kept, no CA key", note)
	}
	_, err = EnsureInstanceCert(h, "group-2", "instance-2", "127.0.0.1")
	if !errors.Is(err, ErrNoInstanceCert) || !strings.Contains(err.Error(), "instance-2") || !strings.Contains(err.Error(), "domainkey.pem") {
		t.Errorf("no key, no certificate: got %v, want ErrNoInstanceCert naming the instance and the CA key file", err)
	}
	// Another CA's certificate is not kept.
	other, _ := pki.NewCA("Other")
	if _, err := other.IssueInstance(h, "group-2", "instance-1", "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureInstanceCert(h, "group-2", "instance-1", "127.0.0.1"); !errors.Is(err, ErrNoInstanceCert) || !strings.Contains(err.Error(), "not signed by the domain CA") {
		t.Errorf("another CA's certificate: got %v, want ErrNoInstanceCert saying it is not signed by the domain CA", err)
	}
}

// CreateInstance issues the instance's certificate on the host that holds
// the CA key; without the key the instance is created all the same (its
// certificate comes at start).
func TestCreateInstanceIssuesCert(t *testing.T) {
	h := initDomain(t)
	c, err := CreateInstance(t.Context(), h, actor, InstanceSpec{Group: "G", Name: "A"})
	if err != nil {
		t.Fatal(err)
	}
	tc, err := pki.LoadKeyPair(h, pki.InstanceCertFile(h, c.GroupID, c.InstanceID), pki.InstanceKeyFile(h, c.GroupID, c.InstanceID))
	if err != nil {
		t.Fatalf("instance certificate: %v", err)
	}
	caCert, err := pki.LoadCACert(h)
	if err != nil {
		t.Fatal(err)
	}
	dns, ips := pki.InstanceCertNames("127.0.0.1")
	if err := pki.CheckPeerLeaf(tc.Leaf, caCert, dns, ips, InstanceCertRenewBefore); err != nil {
		t.Errorf("instance certificate: %v", err)
	}
	if err := os.Remove(pki.KeyFile(h)); err != nil {
		t.Fatal(err)
	}
	c, err = CreateInstance(t.Context(), h, actor, InstanceSpec{Group: "G", Name: "B", TrafficPort: 9080, ManagementPort: 9085})
	if err != nil {
		t.Fatalf("without the CA key: %v", err)
	}
	if _, err := os.Stat(pki.InstanceCertFile(h, c.GroupID, c.InstanceID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("without the CA key: got %v, want no certificate", err)
	}
}

// With the domain CA's key sealed (its passphrase set) and this process
// not given it — an instance is given its group's passphrase only — the
// key is as good as absent: a certificate that should be reissued but
// still verifies is kept, with a note saying why; none at all is
// ErrNoInstanceCert wrapping the key's *secret.LockedError (which
// CreateInstance does not ignore). (Before, the start failed on
// the sealed key, also with a certificate valid for days more.)
func TestEnsureInstanceCertSealedCA(t *testing.T) {
	h, err := home.At(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.NewCA("D")
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Save(h); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureInstanceCert(h, "group-2", "instance-1", "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	kdf := secret.KDF{Algorithm: "argon2id", Time: 1, MemoryKiB: 8 << 10, Threads: 1}
	if err := secret.ChangePassphrase(h, secret.ScopeCA, secret.Value{}, secret.FromString("the CA's passphrase"), kdf); err != nil {
		t.Fatal(err)
	}
	secret.Forget(h, secret.ScopeCA)
	certFile := pki.InstanceCertFile(h, "group-2", "instance-1")
	before, _ := os.ReadFile(certFile)
	note, err := EnsureInstanceCert(h, "group-2", "instance-1", "10.9.9.9")
	if err != nil || !strings.Contains(note, "kept") || !strings.Contains(note, "sealed") {
		t.Errorf("sealed CA key, misnamed certificate: got %q, %v; want it kept, saying the CA key is sealed", note, err)
	}
	if after, _ := os.ReadFile(certFile); string(after) != string(before) {
		t.Errorf("sealed CA key: the certificate changed")
	}
	_, err = EnsureInstanceCert(h, "group-2", "instance-2", "127.0.0.1")
	var locked *secret.LockedError
	if !errors.Is(err, ErrNoInstanceCert) || !errors.As(err, &locked) || !strings.Contains(err.Error(), "passphrase of the domain CA") || !strings.Contains(err.Error(), "instance-2") {
		t.Errorf("sealed CA key, no certificate: got %v, want ErrNoInstanceCert and the *secret.LockedError of the CA key", err)
	}
	// Given the passphrase, the process issues again.
	if err := secret.Unlock(h, secret.ScopeCA, secret.FromString("the CA's passphrase")); err != nil {
		t.Fatal(err)
	}
	defer secret.Forget(h, secret.ScopeCA)
	if note, err := EnsureInstanceCert(h, "group-2", "instance-2", "127.0.0.1"); err != nil || !strings.Contains(note, "issued") {
		t.Errorf("CA unlocked: got %q, %v; want issued", note, err)
	}
}
