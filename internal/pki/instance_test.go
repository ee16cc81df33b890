package pki

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestInstanceCertNames(t *testing.T) {
	tests := []struct {
		addr    string
		wantDNS []string
		wantIPs []string
	}{
		{"", []string{"localhost"}, []string{"127.0.0.1", "::1"}},
		{"0.0.0.0", []string{"localhost"}, []string{"127.0.0.1", "::1"}},
		{"::", []string{"localhost"}, []string{"127.0.0.1", "::1"}},
		{"127.0.0.1", []string{"localhost"}, []string{"127.0.0.1", "::1"}},
		{"10.1.2.3", []string{"localhost"}, []string{"127.0.0.1", "::1", "10.1.2.3"}},
		{"GW1.example.", []string{"localhost", "gw1.example"}, []string{"127.0.0.1", "::1"}},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			dns, ips := InstanceCertNames(tt.addr)
			var got []string
			for _, ip := range ips {
				got = append(got, ip.String())
			}
			if !slices.Equal(dns, tt.wantDNS) || !slices.Equal(got, tt.wantIPs) {
				t.Errorf("InstanceCertNames(%q): got %v %v, want %v %v", tt.addr, dns, got, tt.wantDNS, tt.wantIPs)
			}
		})
	}
}

func TestIssueInstance(t *testing.T) {
	h := newHome(t)
	ca, err := NewCA("D")
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.IssueInstance(h, "group-2", "instance-1", "10.1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	cf, kf := InstanceCertFile(h, "group-2", "instance-1"), InstanceKeyFile(h, "group-2", "instance-1")
	if want := filepath.Join(h.Dir, "groups", "group-2", "instance-1", "conf", "certs", "instance.pem"); cf != want {
		t.Errorf("InstanceCertFile: got %s, want %s", cf, want)
	}
	if want := filepath.Join(h.Dir, "groups", "group-2", "instance-1", "conf", "certs", "private", "instance-key.pem"); kf != want {
		t.Errorf("InstanceKeyFile: got %s, want %s", kf, want)
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
	if !strings.Contains(kp.Cert.Subject.CommonName, "instance-1") {
		t.Errorf("CN: got %q, want it to name instance-1", kp.Cert.Subject.CommonName)
	}
	tc, err := LoadKeyPair(h, cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	dns, ips := InstanceCertNames("10.1.2.3")
	if err := CheckPeerLeaf(tc.Leaf, ca.Cert, dns, ips, time.Hour); err != nil {
		t.Errorf("CheckPeerLeaf: got %v, want nil", err)
	}
	// Server and client: it verifies for both usages.
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := tc.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			t.Errorf("Verify for usage %v: %v", u, err)
		}
	}
	// A server-only certificate does not do for mutual TLS.
	srv, err := ca.IssueKeyPair("srv", dns, ips, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckPeerLeaf(srv.Cert, ca.Cert, dns, ips, time.Hour); err == nil || !strings.Contains(err.Error(), "client") {
		t.Errorf("CheckPeerLeaf server only: got %v, want an error about client authentication", err)
	}
	if err := CheckPeerLeaf(tc.Leaf, ca.Cert, nil, []net.IP{net.ParseIP("10.9.9.9")}, time.Hour); err == nil {
		t.Errorf("CheckPeerLeaf missing ip: got nil")
	}
}

// A mutual-TLS server and client made from domain certificates talk; a
// client without a certificate does not.
func TestMutualTLSConfigs(t *testing.T) {
	ca, err := NewCA("D")
	if err != nil {
		t.Fatal(err)
	}
	pair := func() tls.Certificate {
		kp, err := ca.IssueKeyPair("x", []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}, true)
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM.Reveal())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	srvConf := MutualTLSServer(pair(), ca.Cert)
	if srvConf.ClientAuth != tls.RequireAndVerifyClientCert || srvConf.MinVersion != tls.VersionTLS12 {
		t.Errorf("server: got ClientAuth %v MinVersion %x", srvConf.ClientAuth, srvConf.MinVersion)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srvConf)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				c.(*tls.Conn).Handshake()
				c.Write([]byte("x"))
				c.Close()
			}()
		}
	}()
	dial := func(conf *tls.Config) error {
		conf.ServerName = "127.0.0.1"
		c, err := tls.Dial("tcp", ln.Addr().String(), conf)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Read(make([]byte, 1))
		return err
	}
	if err := dial(MutualTLSClient(pair(), ca.Cert)); err != nil {
		t.Errorf("domain client: %v", err)
	}
	noCert := MutualTLSClient(tls.Certificate{}, ca.Cert)
	noCert.Certificates = nil
	if err := dial(noCert); err == nil {
		t.Errorf("client without a certificate: got nil, want refused")
	}
}
