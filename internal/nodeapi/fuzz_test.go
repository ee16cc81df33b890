package nodeapi

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"slices"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
)

// FuzzNodeBodies covers the bodies of the node-to-node API: POST /nm/join
// (with the CSR inside it) and POST /nm/instances (with a topology inside
// it). Any input either decodes into a request that validates, or yields a
// 400/413 *apihttp.Error; nothing panics.
func FuzzNodeBodies(f *testing.F) {
	for _, s := range []string{
		`{"hostName":"second","address":"127.0.0.3","port":8090,"csr":"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"}`,
		`{"hostName":"","csr":""}`, `{"hostName":"x","port":70000,"csr":"x"}`, `{"hostName":"x","extra":1}`,
		`{"topology":{"schemaVersion":1,"id":"d","version":2,"counters":{"host":1},"hosts":[{"id":"host-1","name":"h"}],"groups":[]},"groupID":"group-2","instanceID":"instance-1"}`,
		`{"topology":null}`, `{"groupConfig":"a: [1"}`, `[]`, ``, `{"hostName":"a"}{"hostName":"b"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkErr := func(what string, err error) {
			var ae *apihttp.Error
			if !errors.As(err, &ae) || (ae.Code != http.StatusBadRequest && ae.Code != http.StatusRequestEntityTooLarge) || ae.Msg == "" {
				t.Fatalf("%s: got %#v, want a 400 or 413 *apihttp.Error", what, err)
			}
		}
		var j JoinRequest
		if err := apihttp.DecodeJSON(bytes.NewReader(body), &j, joinFields); err != nil {
			checkErr("join", err)
		} else if err := j.Validate(); err == nil {
			// A valid join body's CSR is parsed next; garbage must be an error, not a panic.
			_, _ = pki.ParseCSR([]byte(j.CSR))
		}
		var p PrepareRequest
		if err := apihttp.DecodeJSON(bytes.NewReader(body), &p, `"topology", "groupID", "instanceID", "groupConfig"`); err != nil {
			checkErr("instances", err)
		} else if p.Topology != nil {
			_ = p.Topology.Validate()
		}
	})
}

// FuzzJoinCSR: whatever CSR and names a joining host sends, the join check
// never panics, and when it lets a CSR through, the names to be signed
// are exactly the node manager's own (CertNames) and the CSR asked for no
// other.
func FuzzJoinCSR(f *testing.F) {
	good, _, err := pki.NewKeyAndCSR("x", []string{"localhost", "second"}, []net.IP{net.IPv4(127, 0, 0, 1), net.ParseIP("127.0.0.9")})
	if err != nil {
		f.Fatal(err)
	}
	extra, _, _ := pki.NewKeyAndCSR("x", []string{"localhost", "anm.example"}, nil)
	f.Add(good, "second", "127.0.0.9")
	f.Add(extra, "second", "127.0.0.9")
	f.Add(good, "", "")
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"), "h", "::1")
	f.Add(good[:len(good)/2], "second", "127.0.0.9")
	f.Fuzz(func(t *testing.T, csrPEM []byte, host, addr string) {
		csr, dns, ips, err := checkJoinCSR(csrPEM, host, addr)
		if err != nil {
			return
		}
		wantDNS, wantIPs := CertNames(host, addr)
		if !slices.Equal(dns, wantDNS) || len(ips) != len(wantIPs) {
			t.Fatalf("names to sign: %v %v, want %v %v", dns, ips, wantDNS, wantIPs)
		}
		if f := foreignNames(csr, wantDNS, wantIPs); len(f) > 0 {
			t.Fatalf("a CSR asking for %v passed", f)
		}
	})
}
