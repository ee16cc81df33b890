package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/pem"
	"errors"
	"testing"
)

// FuzzParseCSR reads arbitrary bytes as a CSR (what a joining host sends):
// no input panics, a refusal wraps ErrBadCSR, and an accepted CSR is within
// the limits.
func FuzzParseCSR(f *testing.F) {
	good, _, err := NewKeyAndCSR("x", []string{"a", "b.example"}, nil)
	if err != nil {
		f.Fatal(err)
	}
	b, _ := pem.Decode(good)
	for _, s := range [][]byte{
		good,
		// The end of the input: a PEM block cut short, DER cut short, an
		// empty block.
		good[:len(good)/2],
		good[:len(good)-1],
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: b.Bytes[:len(b.Bytes)-1]}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: b.Bytes[:len(b.Bytes)/2]}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST"}),
		[]byte("-----BEGIN CERTIFICATE REQUEST-----\n"),
		nil,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		csr, err := ParseCSR(data)
		if err != nil {
			if csr != nil || !errors.Is(err, ErrBadCSR) {
				t.Fatalf("got %v, %v, want nil and ErrBadCSR", csr, err)
			}
			return
		}
		k, ok := csr.PublicKey.(*ecdsa.PublicKey)
		if len(data) > MaxCSRBytes || !ok || k.Curve != elliptic.P256() && k.Curve != elliptic.P384() ||
			len(csr.DNSNames)+len(csr.IPAddresses) > 32 || len(csr.URIs)+len(csr.EmailAddresses) > 0 {
			t.Fatalf("accepted a CSR beyond the limits: %d bytes, %T key, %d names", len(data), csr.PublicKey, len(csr.DNSNames)+len(csr.IPAddresses))
		}
		for _, d := range csr.DNSNames {
			if d == "" || len(d) > 253 {
				t.Fatalf("accepted DNS name %q", d)
			}
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("accepted a CSR whose signature does not verify: %v", err)
		}
		if !bytes.Contains(data, []byte("CERTIFICATE REQUEST")) {
			t.Fatalf("accepted %q without a CERTIFICATE REQUEST block", data)
		}
	})
}
