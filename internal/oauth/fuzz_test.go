package oauth

import (
	"context"
	"strings"
	"testing"
	"time"
)

// FuzzParseForm: the token request parser never panics, and what it
// accepts is well-formed: names unique, values non-empty, clean UTF-8,
// and the same form again after re-encoding.
func FuzzParseForm(f *testing.F) {
	const ct = "application/x-www-form-urlencoded"
	for _, s := range []string{
		"", "a", "a=", "=", "&", "&&", "=&=", "%", "a=%", "a=%4", "a=%41", "a%", "a=b&", "a=b&a", "a=b&a=",
		"grant_type=client_credentials", "grant_type=client_credentials&scope=read+write",
		"grant_type=authorization_code&code=gac_x&code_verifier=" + strings.Repeat("v", 43) + "&redirect_uri=https%3A%2F%2Fa.example%2Fcb",
		"grant_type=refresh_token&refresh_token=grt_x&scope=",
		"client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=a.b.c",
		"a=%00", "a=%ff", "a=%C3%A9", "a=b;c=d", "+=+", "a=b=c", "scope=%20read%20",
	} {
		f.Add(ct, []byte(s))
	}
	f.Add(ct+"; charset=utf-8", []byte("a=b"))
	f.Add("application/json", []byte("{}"))
	f.Add(ct+"; charset=", []byte("a=b"))
	f.Add(ct+";", []byte("a=b"))
	f.Fuzz(func(t *testing.T, ctype string, body []byte) {
		form, oe := ParseForm(ctype, body)
		if oe != nil {
			if form != nil || oe.Code != ErrCodeInvalidRequest || oe.Status != 400 && oe.Status != 413 || oe.Description == "" {
				t.Fatalf("a refusal: form %v, error %+v", form, oe)
			}
			return
		}
		if len(body) > MaxBodyBytes || len(form) > MaxFormParams {
			t.Fatalf("accepted %d bytes with %d parameters", len(body), len(form))
		}
		for k, v := range form {
			if len(v) != 1 || v[0] == "" || !clean(k) || !clean(v[0]) || k == "" {
				t.Fatalf("accepted %q=%q", k, v)
			}
		}
		again, oe := ParseForm("application/x-www-form-urlencoded", []byte(form.Encode()))
		if oe != nil || len(again) != len(form) {
			t.Fatalf("re-encoded %q: %v, %v", form.Encode(), again, oe)
		}
		for k, v := range form {
			if again.Get(k) != v[0] {
				t.Fatalf("re-encoded: %q is %q, was %q", k, again.Get(k), v[0])
			}
		}
	})
}

// FuzzVerifyJWT: Verify never panics on any token, and anything it
// accepts says what the one genuine seed token says.
func FuzzVerifyJWT(f *testing.F) {
	e := newEnv(f, jwtFormat)
	good, err := e.srv.signAccess(grantInfo{clientID: "svc", scopes: []string{"read"}}, e.clock.Now(), e.clock.Now().Add(time.Hour))
	if err != nil {
		f.Fatal(err)
	}
	parts := strings.Split(good, ".")
	for _, s := range []string{good, "", ".", "..", "a.b.c", parts[0] + "." + parts[1] + ".", parts[0] + ".." + parts[2],
		parts[0] + "." + parts[1], good + ".", good + "=", strings.ToUpper(good), "eyJhbGciOiJub25lIn0.e30.",
		PrefixAccessToken, PrefixAccessToken + strings.Repeat("a", 52)} {
		f.Add(s)
	}
	want, err := e.srv.Verify(context.Background(), good)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := e.srv.Verify(context.Background(), tok)
		if err != nil {
			return
		}
		if c.ClientID != want.ClientID || c.Subject != want.Subject || c.TokenID != want.TokenID || !c.ExpiresAt.Equal(want.ExpiresAt) || strings.Join(c.Scopes, " ") != "read" {
			t.Fatalf("accepted %q as %+v", tok, c)
		}
	})
}
