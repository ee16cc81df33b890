package pki

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestIssueKeyPairSaveLoad(t *testing.T) {
	h := newHome(t)
	ca, err := NewCA("D")
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Save(h); err != nil {
		t.Fatal(err)
	}
	ips := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("127.0.0.2")}
	kp, err := ca.IssueKeyPair("nm", []string{"localhost", "gw1"}, ips, true)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(kp.KeyPEM.String(), "PRIVATE") {
		t.Errorf("key prints itself")
	}
	cf, kf := NodeManagerCertFile(h), NodeManagerKeyFile(h)
	if err := kp.Save(h, cf, kf); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{{kf, 0o600}, {filepath.Dir(kf), 0o700 | os.ModeDir}, {cf, 0o644}} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != c.mode {
			t.Errorf("%s: got mode %v, want %v", c.path, fi.Mode(), c.mode)
		}
	}
	tc, err := LoadKeyPair(h, cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	cacert, err := LoadCACert(h)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckLeaf(tc.Leaf, cacert, []string{"gw1"}, ips[:1], time.Hour); err != nil {
		t.Errorf("CheckLeaf: got %v, want nil", err)
	}
	if err := CheckLeaf(tc.Leaf, cacert, []string{"other"}, nil, time.Hour); err == nil || !strings.Contains(err.Error(), "other") {
		t.Errorf("CheckLeaf missing name: got %v", err)
	}
	if err := CheckLeaf(tc.Leaf, cacert, nil, []net.IP{net.ParseIP("10.0.0.1")}, time.Hour); err == nil {
		t.Errorf("CheckLeaf missing ip: got nil")
	}
	if err := CheckLeaf(tc.Leaf, cacert, nil, nil, 3*365*24*time.Hour); err == nil || !strings.Contains(err.Error(), "expires") {
		t.Errorf("CheckLeaf validity: got %v", err)
	}
	other, _ := NewCA("Other")
	if err := CheckLeaf(tc.Leaf, other.Cert, nil, nil, time.Hour); err == nil {
		t.Errorf("CheckLeaf other CA: got nil")
	}
}

func TestLoadCACertMissing(t *testing.T) {
	h := newHome(t)
	if _, err := LoadCACert(h); err == nil || !strings.Contains(err.Error(), "no domain CA") {
		t.Errorf("got %v, want ErrNoCA", err)
	}
	if _, err := LoadKeyPair(h, NodeManagerCertFile(h), NodeManagerKeyFile(h)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadKeyPair missing: got %v", err)
	}
}
