package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"strings"
	"testing"
)

func TestSignCSR(t *testing.T) {
	ca, err := NewCA("D")
	if err != nil {
		t.Fatal(err)
	}
	csrPEM, keyPEM, err := NewKeyAndCSR("asked name", []string{"localhost", "second"}, []net.IP{net.ParseIP("127.0.0.3")})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(keyPEM.Reveal()), "PRIVATE KEY") || strings.Contains(string(csrPEM), "PRIVATE") {
		t.Fatalf("key and CSR mixed up")
	}
	csr, err := ParseCSR(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.SignCSR(csr, "Gatehouse Node Manager nodemanager-2 (host-2)", true)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cert.Subject.CommonName, "Gatehouse Node Manager nodemanager-2 (host-2)"; got != want {
		t.Errorf("common name: got %q, want %q (the CA's choice)", got, want)
	}
	if err := CheckLeaf(cert, ca.Cert, []string{"second"}, []net.IP{net.ParseIP("127.0.0.3")}, 0); err != nil {
		t.Errorf("CheckLeaf: got %v, want nil", err)
	}
	if err := CheckPeerCA(cert, ca.Cert); err != nil {
		t.Errorf("CheckPeerCA: got %v", err)
	}
	other, _ := NewCA("other")
	if err := CheckPeerCA(cert, other.Cert); err == nil {
		t.Error("CheckPeerCA with another CA: got nil, want an error")
	}
}

func TestParseCSRRefuses(t *testing.T) {
	good, _, err := NewKeyAndCSR("x", []string{"a"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(good)
	tampered := append([]byte(nil), b.Bytes...)
	tampered[len(tampered)-5] ^= 0xff // in the signature
	key, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	p224, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	many := make([]string, 40)
	for i := range many {
		many[i] = "h" + string(rune('a'+i%26))
	}
	manyCSR, _, _ := NewKeyAndCSR("x", many, nil)
	for _, c := range []struct {
		name, want string
		data       []byte
	}{
		{"empty", "PEM block", nil},
		{"certificate block", "PEM block", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b.Bytes})},
		{"tampered", "", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: tampered})},
		{"P-224", "P-224", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: p224})},
		{"too many names", "subject alternative names", manyCSR},
		{"too large", "limit", make([]byte, MaxCSRBytes+1)},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseCSR(c.data)
			if !errors.Is(err, ErrBadCSR) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want ErrBadCSR mentioning %q", err, c.want)
			}
		})
	}
}
