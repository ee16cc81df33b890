package jwt

import (
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
)

// FuzzJWTAuthorization: any Authorization value, a token or not, is
// refused or let through without a panic; what is let through carries the
// claims of a token the test issuer signed (nothing else verifies).
func FuzzJWTAuthorization(f *testing.F) {
	rs1, _, ec := testKeys(f)
	clk := newClock()
	good := mint(f, signer{"rsa-1", jose.RS256, rs1}, claimsAt(clk.Now(), nil))
	goodEC := mint(f, signer{"ec-1", jose.ES256, ec}, claimsAt(clk.Now(), nil))
	seeds := []string{
		"Bearer " + good, "bearer " + goodEC, "Bearer " + good + "=", "Bearer " + good + ".", "Bearer " + good + " x",
		"Bearer " + unsigned(claimsAt(clk.Now(), nil), "rsa-1"), "Bearer", "Bearer ", "Bearer .", "Bearer ..", "Bearer ...",
		"Bearer e30.e30.", "Bearer e30..", "Basic dXNlcjpwYXNz", "", "B", "Bearerx",
		"Bearer eyJhbGciOiJSUzI1NiJ9", "Bearer eyJhbGciOiJSUzI1NiJ9.", "Bearer eyJhbGciOiJSUzI1NiJ9.e30",
		"Bearer eyJhbGciOiJSUzI1NiIsImNyaXQiOlsiYjY0Il0sImI2NCI6ZmFsc2V9.e30.AA",
	}
	for _, s := range []string{good, goodEC} { // truncated at every segment end and in between
		for _, n := range []int{1, 10, strings.IndexByte(s, '.'), strings.IndexByte(s, '.') + 1, strings.LastIndexByte(s, '.'), strings.LastIndexByte(s, '.') + 1, len(s) - 1} {
			seeds = append(seeds, "Bearer "+s[:n])
		}
	}
	for _, s := range seeds {
		f.Add(s)
	}
	spec := groupconf.JWTPolicy{Issuer: testIssuer, Audience: "orders", JWKSURL: "https://id.example.com/keys", TokenCacheTTL: groupconf.Duration(time.Nanosecond)}
	p, err := New(spec, staticOf(signer{"rsa-1", jose.RS256, rs1}, signer{"ec-1", jose.ES256, ec}), Options{Now: clk.Now})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, value string) {
		ex := request("GET", "Authorization", value)
		if err := p.Apply(ex); err == nil {
			if string(ex.R.Header.Get("X-Gatehouse-Subject")) != "user-42" {
				t.Fatalf("let through without the issuer's claims: %q", value)
			}
		}
	})
}
