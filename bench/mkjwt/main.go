// Command mkjwt makes what bench/run's gatehouse-jwt target needs: the
// ES256 key of a stand-in issuer, its public JWK set written to -jwks (the
// back end's nginx serves it), and an access token of that issuer for
// audience "bench" with scope "bench", valid for a day, printed on standard
// output.
//
//	mkjwt -jwks DIR/jwks.json -issuer http://127.0.0.1:PORT
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
)

func main() {
	jwks := flag.String("jwks", "", "where to write the issuer's JWK set")
	issuer := flag.String("issuer", "", "the issuer (the tokens' iss)")
	flag.Parse()
	if *jwks == "" || *issuer == "" {
		fmt.Fprintln(os.Stderr, "usage: mkjwt -jwks FILE -issuer URL")
		os.Exit(2)
	}
	tok, err := run(*jwks, *issuer)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkjwt:", err)
		os.Exit(1)
	}
	fmt.Println(tok)
}

func run(jwksFile, issuer string) (string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "bench-1", Algorithm: string(jose.ES256), Use: "sig"}}}
	b, err := json.Marshal(set)
	if err != nil {
		return "", err
	}
	// Readable by the back end's nginx workers (an unprivileged user).
	tmp := filepath.Join(filepath.Dir(jwksFile), ".jwks.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return "", fmt.Errorf("writing the key set: %w", err)
	}
	if err := os.Rename(tmp, jwksFile); err != nil {
		return "", fmt.Errorf("writing the key set: %w", err)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", "bench-1"))
	if err != nil {
		return "", err
	}
	now := time.Now()
	return josejwt.Signed(sig).Claims(map[string]any{
		"iss": issuer, "aud": "bench", "sub": "bench-user", "client_id": "bench-client", "scope": "bench",
		"iat": now.Unix(), "exp": now.Add(24 * time.Hour).Unix(),
	}).Serialize()
}
