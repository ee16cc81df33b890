package oauth

import (
	"context"
	"encoding/base64"
	"errors"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
)

// JWTBearerAssertion is the client_assertion_type of private_key_jwt (RFC 7523 §2.2).
const JWTBearerAssertion = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// assertionAlgs are the algorithms accepted for client assertions: public
// key signatures only (never none, never HMAC).
var assertionAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512, jose.EdDSA}

// assertionLeeway is the clock skew allowed on a client assertion's times.
const assertionLeeway = 30 * time.Second

// authenticated is a client that proved who it is (or a public client
// that named itself, method AuthNone).
type authenticated struct {
	Client
	method string
}

// authenticate finds the client of a request and checks its credentials:
// client_secret_basic (Authorization: Basic), client_secret_post
// (client_id and client_secret in the form), private_key_jwt
// (client_assertion), or none (a public client: client_id alone). Using
// more than one method is refused (RFC 6749 §2.3). endpoint is the URL of
// the endpoint called (an assertion's aud may name it).
func (s *Server) authenticate(ctx context.Context, r *Request, form url.Values, endpoint string) (authenticated, *Error) {
	authz := r.Header.Values("Authorization")
	basic := false
	var id, sec string
	if len(authz) > 1 {
		return authenticated{}, errRequest("more than one Authorization field")
	}
	if len(authz) == 1 {
		scheme, cred, _ := strings.Cut(authz[0], " ")
		if !strings.EqualFold(scheme, "Basic") {
			return authenticated{}, errClient(true, "the token endpoint takes Basic authentication only")
		}
		basic = true
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
		if err != nil {
			return authenticated{}, errClient(true, "malformed Basic credentials")
		}
		u, p, ok := strings.Cut(string(raw), ":")
		if !ok {
			return authenticated{}, errClient(true, "malformed Basic credentials")
		}
		// RFC 6749 §2.3.1: both are form-urlencoded before Basic.
		var err1, err2 error
		id, err1 = url.QueryUnescape(u)
		sec, err2 = url.QueryUnescape(p)
		if err1 != nil || err2 != nil || id == "" {
			return authenticated{}, errClient(true, "malformed Basic credentials")
		}
	}
	formID, formSecret := form.Get("client_id"), form.Get("client_secret")
	assertion, assertionType := form.Get("client_assertion"), form.Get("client_assertion_type")
	methods := 0
	for _, used := range []bool{basic, formSecret != "", assertion != "" || assertionType != ""} {
		if used {
			methods++
		}
	}
	if methods > 1 {
		return authenticated{}, errRequest("more than one client authentication method (RFC 6749 §2.3)")
	}
	switch {
	case basic:
		if formID != "" && formID != id {
			return authenticated{}, errRequest("client_id does not match the Basic credentials")
		}
		return s.secretClient(ctx, id, sec, AuthSecretBasic)
	case formSecret != "":
		if formID == "" {
			return authenticated{}, errRequest("client_secret without client_id")
		}
		return s.secretClient(ctx, formID, formSecret, AuthSecretPost)
	case assertion != "" || assertionType != "":
		if assertionType != JWTBearerAssertion {
			return authenticated{}, errRequest("client_assertion_type must be %s", JWTBearerAssertion)
		}
		if assertion == "" {
			return authenticated{}, errRequest("client_assertion_type without client_assertion")
		}
		return s.assertionClient(ctx, formID, assertion, endpoint)
	case formID != "":
		c, oe := s.lookupClient(ctx, formID, false)
		if oe != nil {
			return authenticated{}, oe
		}
		if !c.Public {
			return authenticated{}, errClient(false, "client authentication required")
		}
		return authenticated{c, AuthNone}, nil
	}
	return authenticated{}, errClient(false, "client authentication required")
}

func (s *Server) lookupClient(ctx context.Context, id string, basic bool) (Client, *Error) {
	c, err := s.clients.Client(ctx, id)
	if errors.Is(err, ErrUnknownClient) {
		return Client{}, errClient(basic, "client authentication failed")
	}
	if err != nil {
		return Client{}, errStore(err)
	}
	if !c.Enabled || c.ID != id {
		return Client{}, errClient(basic, "client authentication failed")
	}
	return c, nil
}

func (s *Server) secretClient(ctx context.Context, id, sec, method string) (authenticated, *Error) {
	basic := method == AuthSecretBasic // mutate:equivalent negate-cmp the flag only fills Error.basicAuth, which no answer reads: every 401 carries WWW-Authenticate
	c, oe := s.lookupClient(ctx, id, basic)
	if oe != nil {
		return authenticated{}, oe
	}
	if c.Public || c.AuthMethod != "" && c.AuthMethod != method || !s.hash.verify(sec, c.SecretHashes) {
		return authenticated{}, errClient(basic, "client authentication failed")
	}
	return authenticated{c, method}, nil
}

// assertionClaims are the claims of a client assertion beyond the registered ones.
type assertionClaims struct {
	jwt.Claims
}

// assertionClient checks a private_key_jwt assertion (RFC 7523 §3): signed
// by one of the client's keys with an asymmetric algorithm, iss = sub =
// client_id, aud naming this server (its issuer, token endpoint or the
// endpoint called), exp in the future but not further than
// ClientAssertionMaxAge, and a jti never seen before (kept until exp).
func (s *Server) assertionClient(ctx context.Context, formID, assertion, endpoint string) (authenticated, *Error) {
	fail := errClient(false, "client authentication failed")
	tok, err := jwt.ParseSigned(assertion, assertionAlgs)
	if err != nil || len(tok.Headers) != 1 {
		return authenticated{}, errClient(false, "client_assertion is not a signed JWT with an accepted algorithm")
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil || unverified.Issuer == "" {
		return authenticated{}, errClient(false, "client_assertion has no iss")
	}
	id := unverified.Issuer
	if formID != "" && formID != id {
		return authenticated{}, errRequest("client_id does not match the client assertion's iss")
	}
	c, oe := s.lookupClient(ctx, id, false)
	if oe != nil {
		return authenticated{}, oe
	}
	if c.Public || c.JWKS == nil || c.AuthMethod != "" && c.AuthMethod != AuthPrivateKey {
		return authenticated{}, fail
	}
	h := tok.Headers[0]
	var keys []jose.JSONWebKey
	if h.KeyID != "" {
		keys = c.JWKS.Key(h.KeyID)
	} else {
		keys = c.JWKS.Keys
	}
	var claims jwt.Claims
	verified := false
	for _, k := range keys {
		if k.Use != "" && k.Use != "sig" || k.Algorithm != "" && k.Algorithm != h.Algorithm || !k.IsPublic() && k.Key != nil && !isAsymmetric(k) {
			continue
		}
		pub := k.Public()
		if pub.Key == nil {
			continue // mutate:equivalent delete-stmt defence in depth: the symmetric keys, the only ones without a public part, were skipped above (and a nil key verifies nothing)
		}
		if err := tok.Claims(pub.Key, &claims); err == nil {
			verified = true
			break // mutate:equivalent delete-stmt the other keys' checks fail (or verify the same signature again) and leave claims as they are
		}
	}
	if !verified {
		return authenticated{}, fail
	}
	now := s.now()
	err = claims.ValidateWithLeeway(jwt.Expected{
		Issuer: id, Subject: id, AnyAudience: jwt.Audience{s.cfg.Issuer, s.tokenURL, endpoint}, Time: now,
	}, assertionLeeway)
	switch {
	case err != nil:
		return authenticated{}, errClient(false, "client_assertion refused: %v", err)
	case claims.Expiry == nil || claims.ID == "":
		return authenticated{}, errClient(false, "client_assertion must have exp and jti")
	case claims.Expiry.Time().Sub(now) > s.cfg.ClientAssertionMaxAge:
		return authenticated{}, errClient(false, "client_assertion expires more than %s ahead", s.cfg.ClientAssertionMaxAge)
	}
	// The jti is single-use within the assertion's lifetime.
	exp := claims.Expiry.Time().Add(assertionLeeway)
	_, err = s.store.Insert(ctx, AssertionsTable, map[string]any{
		"hash": s.hash.hash("jti\x00" + id + "\x00" + claims.ID), "expiresAt": ms(exp), "bucket": bucketOf(ms(exp)),
	})
	if errors.Is(err, kps.ErrExists) {
		return authenticated{}, errClient(false, "client_assertion was used before (jti)")
	}
	if err != nil {
		return authenticated{}, errStore(err)
	}
	return authenticated{c, AuthPrivateKey}, nil
}

// isAsymmetric: the key is not a symmetric ([]byte) key.
func isAsymmetric(k jose.JSONWebKey) bool {
	_, sym := k.Key.([]byte)
	return !sym
}

// allows reports whether the client may use the grant type.
func (c Client) allows(grant string) bool { return slices.Contains(c.GrantTypes, grant) }
