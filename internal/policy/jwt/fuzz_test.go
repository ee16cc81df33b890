package jwt

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

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

// FuzzJWTClaims: any payload, signed by the issuer's key (so that the
// claims are read), is refused or let through without a panic; what is let
// through has the configured issuer and audience, a future exp and fields
// safe to set.
func FuzzJWTClaims(f *testing.F) {
	_, _, ec := testKeys(f)
	clk := newClock()
	now := clk.Now().Unix()
	good := fmt.Sprintf(`{"iss":%q,"aud":"orders","exp":%d,"sub":"u","scope":"a b"}`, testIssuer, now+60)
	for _, s := range []string{
		good, good[:len(good)-1], good[:10], "", "{", "}", "{}", "null", "[]", `"x"`, "0",
		fmt.Sprintf(`{"iss":%q,"aud":["orders",7],"exp":%d}`, testIssuer, now+60),
		fmt.Sprintf(`{"iss":%q,"aud":"orders","exp":1e300}`, testIssuer),
		fmt.Sprintf(`{"iss":%q,"aud":"orders","exp":-1e300}`, testIssuer),
		fmt.Sprintf(`{"iss":%q,"aud":"orders","exp":%d.999,"nbf":"x"}`, testIssuer, now+60),
		fmt.Sprintf(`{"iss":%q,"aud":"orders","exp":%d,"scp":[1,2],"sub":7}`, testIssuer, now+60),
		fmt.Sprintf(`{"iss":%q,"aud":"orders","exp":%d,"sub":"a\u0000b"}`, testIssuer, now+60),
		fmt.Sprintf(`{"iss":%q,"iss":"other","aud":"orders","exp":%d}`, testIssuer, now+60),
	} {
		f.Add([]byte(s))
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: ec}, (&jose.SignerOptions{}).WithHeader("kid", "ec-1"))
	if err != nil {
		f.Fatal(err)
	}
	spec := groupconf.JWTPolicy{Issuer: testIssuer, Audience: "orders", JWKSURL: "https://id.example.com/keys", TokenCacheTTL: groupconf.Duration(time.Nanosecond)}
	p, err := New(spec, staticOf(signer{"ec-1", jose.ES256, ec}), Options{Now: clk.Now})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		jws, err := sig.Sign(payload)
		if err != nil {
			t.Skip()
		}
		tok, err := jws.CompactSerialize()
		if err != nil {
			t.Skip()
		}
		ex := request("GET", "Authorization", "Bearer "+tok)
		if p.Apply(ex) != nil {
			return
		}
		var c struct {
			Iss string           `json:"iss"`
			Aud josejwt.Audience `json:"aud"`
			Exp float64          `json:"exp"`
		}
		if err := json.Unmarshal(payload, &c); err != nil || c.Iss != testIssuer || !c.Aud.Contains("orders") || c.Exp < float64(now) {
			t.Fatalf("let through: %s (%v)", payload, err)
		}
		for _, f := range []string{"X-Gatehouse-Subject", "X-Gatehouse-Client-Id"} {
			if strings.ContainsAny(string(ex.R.Header.Get(f)), "\r\n\x00") {
				t.Fatalf("%s: %q", f, ex.R.Header.Get(f))
			}
		}
	})
}
