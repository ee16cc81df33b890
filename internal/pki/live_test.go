package pki

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"testing"
	"time"
)

// TestLiveFollowsFiles: a Live serves the certificate on disk at each
// handshake: replaced files (a new CA and a new certificate, as
// --regen_certs leaves them) are presented by the next handshake; a
// certificate that does not fit its key or CA keeps the last good identity.
func TestLiveFollowsFiles(t *testing.T) {
	h := newHome(t)
	ca1, err := NewCA("D")
	if err != nil {
		t.Fatal(err)
	}
	if err := ca1.Save(h); err != nil {
		t.Fatal(err)
	}
	cf, kf := NodeManagerCertFile(h), NodeManagerKeyFile(h)
	kp1, err := ca1.IssueKeyPair("one", []string{"localhost"}, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := kp1.Save(h, cf, kf); err != nil {
		t.Fatal(err)
	}
	if _, err := NewLive(h, cf+".missing", kf, CertFile(h)); err == nil {
		t.Fatal("NewLive with a missing certificate: no error")
	}
	if _, err := NewLive(h, cf, kf, CertFile(h)+".missing"); err == nil {
		t.Fatal("NewLive with a missing CA certificate: no error")
	}
	live, err := NewLive(h, cf, kf, CertFile(h))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", live.ServerConfig(&tls.Config{MinVersion: tls.VersionTLS12}))
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
				c.SetDeadline(time.Now().Add(5 * time.Second))
				c.(*tls.Conn).Handshake()
				c.Close()
			}()
		}
	}()
	served := func(ca *CA) string {
		t.Helper()
		d := &net.Dialer{Timeout: 5 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"})
		if err != nil {
			return "handshake failed: " + err.Error()
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if got := served(ca1); got != "one" {
		t.Fatalf("first handshake: got %q, want one", got)
	}
	// A new CA and a certificate of it, written as regen_certs does.
	ca2, err := NewCA("D")
	if err != nil {
		t.Fatal(err)
	}
	kp2, err := ca2.IssueKeyPair("two", []string{"localhost"}, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	// Half-way: the new certificate beside the old key and CA. It does not
	// load; the old identity stays.
	if err := os.WriteFile(cf, kp2.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := served(ca1); got != "one" {
		t.Errorf("half-replaced files: got %q, want the old identity (one)", got)
	}
	if err := kp2.Save(h, cf, kf); err != nil {
		t.Fatal(err)
	}
	if got := served(ca1); got != "one" {
		t.Errorf("new key pair, old CA file: got %q, want the old identity (one)", got)
	}
	if err := ca2.Save(h); err != nil {
		t.Fatal(err)
	}
	if got := served(ca2); got != "two" {
		t.Errorf("after the new CA: got %q, want two", got)
	}
	id, err := live.Load()
	if err != nil {
		t.Fatal(err)
	}
	if !id.CA.Equal(ca2.Cert) || id.Pool() == nil {
		t.Errorf("Load: CA %s, want the new one", id.CA.Subject)
	}
	if id2, _ := live.Load(); id2 != id {
		t.Errorf("Load with unchanged files made a new identity")
	}
}

// TestLiveSendsIntermediate: a domain CA that another CA signed is sent
// after the certificate; a self-signed one is not.
func TestLiveSendsIntermediate(t *testing.T) {
	h := newHome(t)
	root, _ := NewCA("Root")
	inter, _ := NewCA("D")
	csrPEM, err := inter.CSR()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := ParseCSR(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := *inter.Cert
	tmpl.RawSubjectPublicKeyInfo, tmpl.PublicKey = nil, csr.PublicKey
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, root.Cert, csr.PublicKey, root.signer)
	if err != nil {
		t.Fatal(err)
	}
	signedCert, _ := x509.ParseCertificate(der)
	chained, err := inter.WithCert(signedCert)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ca   *CA
		want int
	}{{inter, 1}, {chained, 2}} {
		if err := c.ca.Save(h); err != nil {
			t.Fatal(err)
		}
		kp, _ := c.ca.IssueKeyPair("leaf", []string{"localhost"}, nil, true)
		if err := kp.Save(h, NodeManagerCertFile(h), NodeManagerKeyFile(h)); err != nil {
			t.Fatal(err)
		}
		live, err := NewLive(h, NodeManagerCertFile(h), NodeManagerKeyFile(h), CertFile(h))
		if err != nil {
			t.Fatal(err)
		}
		id, _ := live.Load()
		if len(id.Cert.Certificate) != c.want {
			t.Errorf("CA %q issued by %q: %d certificates sent, want %d", c.ca.Cert.Subject.CommonName, c.ca.Cert.Issuer.CommonName, len(id.Cert.Certificate), c.want)
		}
		if c.want == 2 && !bytes.Equal(id.Cert.Certificate[1], signedCert.Raw) {
			t.Error("the second certificate sent is not the domain CA")
		}
	}
}
