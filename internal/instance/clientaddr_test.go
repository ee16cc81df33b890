package instance

import (
	"log/slog"
	"net/netip"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/h1"
)

func TestResolveClient(t *testing.T) {
	cr, err := newClientResolver(groupconf.Traffic{TrustedProxies: []string{"10.0.0.0/8"}, ClientCertHeader: "X-SSL-Client-Cert"})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	tests := []struct {
		name                     string
		peer                     string
		headers                  [][2]string
		client, xff, proto, host string
		cert                     bool // the certificate header is still there
	}{
		{name: "untrusted", peer: "198.51.100.7:1000", headers: [][2]string{{"X-Forwarded-For", "1.2.3.4"}, {"x-ssl-client-cert", "c"}},
			client: "198.51.100.7", xff: "198.51.100.7"},
		{name: "trusted xff", peer: "[::ffff:10.0.0.2]:1000", headers: [][2]string{{"x-forwarded-for", "6.6.6.6, 203.0.113.9"}, {"X-Forwarded-Proto", "HTTPS"}, {"X-Forwarded-Host", "a.example"}, {"X-SSL-Client-Cert", "c"}},
			client: "203.0.113.9", xff: "203.0.113.9, 10.0.0.2", proto: "https", host: "a.example", cert: true},
		{name: "trusted forwarded preferred", peer: "10.0.0.2:1000", headers: [][2]string{{"X-Forwarded-For", "6.6.6.6"}, {"Forwarded", "for=203.0.113.9;host=b.example"}, {"X-Forwarded-Proto", "https"}, {"X-Forwarded-Host", "a.example"}},
			client: "203.0.113.9", xff: "203.0.113.9, 10.0.0.2", proto: "https", host: "b.example"},
	}
	var s clientScratch
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &h1.Request{RemoteAddr: netip.MustParseAddrPort(tt.peer)}
			for _, kv := range tt.headers {
				r.Header.AddString(kv[0], kv[1])
			}
			ci := cr.resolve(r, &s, log)
			if got := ci.addr.String(); got != tt.client {
				t.Errorf("client: got %v, want %v", got, tt.client)
			}
			if got := string(ci.fwd.For); got != tt.xff {
				t.Errorf("X-Forwarded-For: got %q, want %q", got, tt.xff)
			}
			if string(ci.fwd.Proto) != tt.proto || string(ci.fwd.Host) != tt.host {
				t.Errorf("proto, host: got %q, %q, want %q, %q", ci.fwd.Proto, ci.fwd.Host, tt.proto, tt.host)
			}
			if got := r.Header.Has("X-SSL-Client-Cert"); got != tt.cert {
				t.Errorf("certificate header kept: got %v, want %v", got, tt.cert)
			}
		})
	}
}

func TestResolveClientAllocations(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name    string
		trusted []string
		peer    string
	}{
		{"no trusted proxies", nil, "10.0.0.2:1000"},
		{"untrusted peer", []string{"10.0.0.0/8"}, "198.51.100.7:1000"},
		{"trusted peer", []string{"10.0.0.0/8"}, "10.0.0.2:1000"},
	} {
		cr, err := newClientResolver(groupconf.Traffic{TrustedProxies: tc.trusted, ClientCertHeader: "X-SSL-Client-Cert"})
		if err != nil {
			t.Fatal(err)
		}
		r := &h1.Request{RemoteAddr: netip.MustParseAddrPort(tc.peer)}
		var s clientScratch
		allocs := testing.AllocsPerRun(100, func() {
			r.Header.Reset()
			r.Header.AddString("X-Forwarded-For", "6.6.6.6, 203.0.113.9")
			r.Header.AddString("X-Forwarded-Proto", "https")
			cr.resolve(r, &s, log)
		})
		if allocs != 0 {
			t.Errorf("%s: got %v allocations per request, want 0", tc.name, allocs)
		}
	}
}
