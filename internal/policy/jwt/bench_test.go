package jwt

import (
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
)

// BenchmarkApply is the policy's Apply on a valid token, the issuer's keys
// cached (a KeySource whose set is loaded): verified every time (token
// cache off), and remembered by the token cache.
//
//	go test ./internal/policy/jwt -run '^$' -bench Apply -benchmem
func BenchmarkApply(b *testing.B) {
	rs1, _, ec := testKeys(b)
	rsa1, ec1 := signer{"rsa-1", jose.RS256, rs1}, signer{"ec-1", jose.ES256, ec}
	keys, _, err := parseKeySet(jwksOf(rsa1, ec1))
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		s     signer
		cache time.Duration
	}{
		{"RS256/verified", rsa1, time.Nanosecond},
		{"ES256/verified", ec1, time.Nanosecond},
		{"RS256/cached", rsa1, 30 * time.Second},
		{"ES256/cached", ec1, 30 * time.Second},
	} {
		b.Run(c.name, func(b *testing.B) {
			ks, err := NewKeySource(SourceOptions{Issuer: testIssuer, JWKSURL: "https://id.example.com/keys"})
			if err != nil {
				b.Fatal(err)
			}
			ks.set.Store(&keySet{keys: keys, fetchedAt: time.Now()})
			spec := groupconf.JWTPolicy{Issuer: testIssuer, Audience: "orders", JWKSURL: "https://id.example.com/keys",
				Scopes: []string{"orders:read"}, TokenCacheTTL: groupconf.Duration(c.cache)}
			p, err := New(spec, ks, Options{})
			if err != nil {
				b.Fatal(err)
			}
			tok := "Bearer " + mint(b, c.s, claimsAt(time.Now(), map[string]any{"exp": time.Now().Add(time.Hour).Unix()}))
			ex := request("GET", "Authorization", tok, "Host", "api.example.com", "Accept", "*/*", "User-Agent", "bench",
				"X-Room", "1", "X-Room", "2", "X-Room", "3", "X-Room", "4")
			ex.R.Header.Del("X-Room") // room for the fields the policy sets, as a parsed request has
			hdr := ex.R.Header
			ex.Vars = make([]policy.Var, 0, 4)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				ex.R.Header = hdr
				ex.Vars = ex.Vars[:0]
				ex.Application = ""
				if err := p.Apply(ex); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
