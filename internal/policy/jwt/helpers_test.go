package jwt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/gatehouse-gw/gatehouse/internal/h1"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
)

// signer is a key of a test issuer.
type signer struct {
	kid string
	alg jose.SignatureAlgorithm
	key crypto.Signer
}

var (
	keyOnce sync.Once
	rsaKey  *rsa.PrivateKey
	rsaKey2 *rsa.PrivateKey
	ecKey   *ecdsa.PrivateKey
)

// testKeys are made once per test binary (RSA keys are slow to make).
func testKeys(t testing.TB) (rs1, rs2 *rsa.PrivateKey, ec *ecdsa.PrivateKey) {
	t.Helper()
	keyOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if rsaKey2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
	})
	return rsaKey, rsaKey2, ecKey
}

// mint signs claims with s (kid in the header unless empty).
func mint(t testing.TB, s signer, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("at+jwt")
	if s.kid != "" {
		opts = opts.WithHeader("kid", s.kid)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: s.alg, Key: s.key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := josejwt.Signed(sig).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// hmacWith signs claims as HS256 with secret (the public key confusion
// attack: the secret is the issuer's public key).
func hmacWith(t testing.TB, secret []byte, kid string, claims map[string]any) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: secret}, (&jose.SignerOptions{}).WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := josejwt.Signed(sig).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// unsigned is an alg "none" token.
func unsigned(claims map[string]any, kid string) string {
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]string{"alg": "none", "kid": kid})
	c, _ := json.Marshal(claims)
	return enc.EncodeToString(h) + "." + enc.EncodeToString(c) + "."
}

// jwksOf is the public JWK set of signers.
func jwksOf(ss ...signer) []byte {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	for _, s := range ss {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: s.key.Public(), KeyID: s.kid, Algorithm: string(s.alg), Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		panic(err)
	}
	return b
}

// issuer is a test issuer over HTTP: its discovery document and its key
// set, which can be changed, taken down and counted.
type issuer struct {
	srv       *httptest.Server
	mu        sync.Mutex
	jwks      []byte
	down      atomic.Bool
	jwksHits  atomic.Int64
	discovery atomic.Int64
	metaIss   string // issuer in the metadata ("" → the right one)
}

func newIssuer(t *testing.T, tls bool, ss ...signer) *issuer {
	t.Helper()
	is := &issuer{jwks: jwksOf(ss...)}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/keys" {
			is.jwksHits.Add(1)
		}
		if is.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			is.discovery.Add(1)
			iss := is.metaIss
			if iss == "" {
				iss = is.srv.URL
			}
			fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q}`, iss, is.srv.URL+"/keys")
		case "/.well-known/oauth-authorization-server/tenant":
			is.discovery.Add(1)
			fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q}`, is.srv.URL+"/tenant", is.srv.URL+"/keys")
		case "/big":
			w.Write([]byte(`{"keys":[` + strings.Repeat(" ", MaxDocumentBytes) + `]}`))
		case "/keys":
			is.mu.Lock()
			b := is.jwks
			is.mu.Unlock()
			w.Header().Set("Content-Type", "application/jwk-set+json")
			w.Write(b)
		default:
			http.NotFound(w, r)
		}
	})
	is.srv = httptest.NewUnstartedServer(h)
	is.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // TLS handshakes refused on purpose
	if tls {
		is.srv.StartTLS()
	} else {
		is.srv.Start()
	}
	t.Cleanup(is.srv.Close)
	return is
}

func (is *issuer) setKeys(ss ...signer) {
	is.mu.Lock()
	is.jwks = jwksOf(ss...)
	is.mu.Unlock()
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// request is an exchange of method with the given fields.
func request(method string, fields ...string) *policy.Exchange {
	r := &h1.Request{Method: []byte(method), Path: []byte("/orders")}
	for i := 0; i+1 < len(fields); i += 2 {
		r.Header.AddString(fields[i], fields[i+1])
	}
	return &policy.Exchange{R: r}
}

// staticKeys is a Keys of a fixed key set.
type staticKeys struct {
	set  keySet
	err  error
	hits atomic.Int64
}

func (s *staticKeys) Key(kid string, alg jose.SignatureAlgorithm) (*jose.JSONWebKey, error) {
	s.hits.Add(1)
	if s.err != nil {
		return nil, s.err
	}
	k, err := s.set.find(kid, alg)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnknownKey, err)
	}
	return k, nil
}

func staticOf(ss ...signer) *staticKeys {
	keys, _, err := parseKeySet(jwksOf(ss...))
	if err != nil {
		panic(err)
	}
	return &staticKeys{set: keySet{keys: keys}}
}

// embedded is a token signed by key with the key itself in the header
// (jwk), kid rsa-1: the policy never trusts a key a token brings.
func embedded(t testing.TB, key *rsa.PrivateKey, claims map[string]any) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: "rsa-1"}}, &jose.SignerOptions{EmbedJWK: true})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := josejwt.Signed(sig).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
