package oauth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
)

// ErrInvalidToken: the token is not an active access token of this server
// (unknown, malformed, expired, revoked, of another group, a refresh token,
// a bad signature). The oauth policy answers 401 invalid_token.
//
// Verify's other errors wrap kps.ErrUnavailable (the store did not answer:
// answer 503, never 401) or are internal (500).
var ErrInvalidToken = errors.New("oauth: invalid token")

// Claims describe a verified access token.
type Claims struct {
	Format    string // FormatOpaque or FormatJWT
	ClientID  string
	UserID    string // "" for a client_credentials token
	Subject   string // UserID, or ClientID when there is no user
	Scopes    []string
	Audience  []string // JWT only
	IssuedAt  time.Time
	ExpiresAt time.Time
	TokenID   string // jti of a JWT; "" for opaque tokens
	FamilyID  string // the grant the token belongs to; "" for client_credentials
}

// HasScope reports whether the token carries scope.
func (c Claims) HasScope(scope string) bool { return slices.Contains(c.Scopes, scope) }

// jwtClaims are the claims of a JWT access token (RFC 9068 §2.2).
type jwtClaims struct {
	jwt.Claims
	ClientID string `json:"client_id"`
	Scope    string `json:"scope,omitempty"`
	FamilyID string `json:"fid,omitempty"` // Gatehouse's: the grant, for revocation
}

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidToken, fmt.Sprintf(format, a...))
}

// Verify checks an access token presented to an API: an opaque token by its
// stored record (through Options.Reader), a JWT by its signature (a key of
// the key set, found by kid), typ at+jwt, iss, aud, exp and iat; a JWT
// issued for a grant (authorization_code) is also checked against its
// family's revocation. Errors: ErrInvalidToken, or kps.ErrUnavailable.
func (s *Server) Verify(ctx context.Context, token string) (Claims, error) {
	return s.verify(ctx, token, s.reader)
}

// verify checks an access token, reading the store through r: Verify
// reads through Options.Reader (a cache, on the request path);
// introspection and revocation read the store itself, so that they are
// authoritative.
func (s *Server) verify(ctx context.Context, token string, r RowGetter) (Claims, error) {
	var c Claims
	var err error
	switch {
	case strings.HasPrefix(token, PrefixAccessToken):
		c, err = s.verifyOpaque(ctx, token, r)
	case strings.Count(token, ".") == 2 && s.keys != nil:
		c, err = s.verifyJWT(ctx, token, r)
	default:
		return Claims{}, invalid("not an access token of this server")
	}
	if err != nil {
		return Claims{}, err
	}
	// A token dies with its client: an application disabled, deleted or
	// no longer an OAuth client has no valid tokens (its rows may stay
	// until they expire or are revoked).
	cl, err := s.clients.Client(ctx, c.ClientID)
	switch {
	case errors.Is(err, ErrUnknownClient):
		return Claims{}, invalid("the token's client is gone")
	case err != nil:
		return Claims{}, fmt.Errorf("looking up the token's client: %w", err)
	case !cl.Enabled:
		return Claims{}, invalid("the token's client is disabled")
	}
	return c, nil
}

func (s *Server) verifyOpaque(ctx context.Context, token string, r RowGetter) (Claims, error) {
	if len(token) != len(PrefixAccessToken)+randomChars {
		return Claims{}, invalid("malformed") // mutate:equivalent err-return a zero Claims names no client: refused below as a token whose client is gone
	}
	row, err := r.Get(ctx, TokensTable, s.hash.hash(token))
	if errors.Is(err, kps.ErrNotFound) {
		return Claims{}, invalid("unknown or revoked") // mutate:equivalent err-return a zero Claims names no client: refused below as a token whose client is gone
	}
	if err != nil {
		return Claims{}, fmt.Errorf("looking up a token: %w", err)
	}
	rec := tokenOf(row)
	if rec.Kind != kindAccess {
		// mutate:equivalent * a row's key is the hash of the whole token, prefix included (gat_ access, grt_ refresh): a gat_ token never finds a refresh row
		return Claims{}, invalid("not an access token")
	}
	if !s.now().Before(rec.ExpiresAt) {
		return Claims{}, invalid("expired") // mutate:equivalent err-return a zero Claims names no client: refused below as a token whose client is gone
	}
	if err := s.checkFamily(ctx, rec.FamilyID, r); err != nil {
		return Claims{}, err
	}
	sub := rec.UserID
	if sub == "" {
		sub = rec.ClientID
	}
	// The row may be shared (a cache's): the claims get their own scopes.
	return Claims{Format: FormatOpaque, ClientID: rec.ClientID, UserID: rec.UserID, Subject: sub, Scopes: slices.Clone(rec.Scopes),
		IssuedAt: rec.IssuedAt, ExpiresAt: rec.ExpiresAt, FamilyID: rec.FamilyID}, nil
}

// checkFamily refuses a token whose grant family was revoked.
func (s *Server) checkFamily(ctx context.Context, id string, r RowGetter) error {
	if id == "" {
		return nil
	}
	row, err := r.Get(ctx, FamiliesTable, id)
	if errors.Is(err, kps.ErrNotFound) {
		return invalid("its grant is gone")
	}
	if err != nil {
		return fmt.Errorf("looking up a grant: %w", err)
	}
	if familyOf(row).Revoked {
		return invalid("its grant was revoked")
	}
	return nil
}

// jwtLeeway is the clock skew allowed on the times of a JWT access token
// issued by another instance of the group.
const jwtLeeway = 5 * time.Second

func (s *Server) verifyJWT(ctx context.Context, token string, r RowGetter) (Claims, error) {
	now := s.now()
	var c jwtClaims
	if e, ok := s.jwts.get(token); ok && !s.noCache {
		if _, ok := s.keys.key(e.kid); !ok {
			return Claims{}, invalid("unknown kid") // mutate:equivalent err-return a zero Claims names no client: refused below as a token whose client is gone
		}
		c = e.claims
	} else {
		tok, err := jwt.ParseSigned(token, s.keys.algs())
		if err != nil || len(tok.Headers) != 1 {
			return Claims{}, invalid("not a JWT signed with an algorithm of this server") // mutate:equivalent err-return a zero Claims names no client: refused below as a token whose client is gone
		}
		h := tok.Headers[0]
		if typ, _ := h.ExtraHeaders["typ"].(string); !strings.EqualFold(typ, "at+jwt") && !strings.EqualFold(typ, "application/at+jwt") {
			return Claims{}, invalid("typ is not at+jwt (RFC 9068 §4)") // mutate:equivalent err-return a zero Claims names no client: refused below as a token whose client is gone
		}
		k, ok := s.keys.key(h.KeyID)
		if !ok || string(k.alg) != h.Algorithm {
			return Claims{}, invalid("unknown kid") // mutate:equivalent err-return a zero Claims names no client: refused below as a token whose client is gone
		}
		if err := tok.Claims(k.public.Key, &c); err != nil {
			return Claims{}, invalid("bad signature") // mutate:equivalent * defence in depth: deleted, c stays zero and the required claims refuse it; a zero Claims returned names no client and is refused below
		}
		if c.Expiry == nil || c.IssuedAt == nil || c.Subject == "" || c.ClientID == "" {
			return Claims{}, invalid("exp, iat, sub and client_id are required") // mutate:equivalent err-return a zero Claims names no client: refused below as a token whose client is gone
		}
		if err := c.ValidateWithLeeway(jwt.Expected{Issuer: s.cfg.Issuer, AnyAudience: jwt.Audience{s.cfg.Audience}, Time: now}, jwtLeeway); err != nil {
			return Claims{}, invalid("%v", err) // mutate:equivalent err-return a zero Claims names no client: refused below as a token whose client is gone
		}
		s.jwts.put(token, cachedJWT{claims: c, kid: k.kid, exp: c.Expiry.Time().Add(jwtLeeway)}, now)
	}
	if !now.Before(c.Expiry.Time().Add(jwtLeeway)) {
		return Claims{}, invalid("expired") // mutate:equivalent err-return a zero Claims names no client: refused below as a token whose client is gone
	}
	if err := s.checkFamily(ctx, c.FamilyID, r); err != nil {
		return Claims{}, err
	}
	var scopes []string
	if c.Scope != "" {
		scopes = strings.Split(c.Scope, " ")
	}
	user := ""
	if c.FamilyID != "" || c.Subject != c.ClientID {
		user = c.Subject
	}
	return Claims{Format: FormatJWT, ClientID: c.ClientID, UserID: user, Subject: c.Subject, Scopes: scopes,
		Audience: slices.Clone([]string(c.Audience)), IssuedAt: c.IssuedAt.Time(), ExpiresAt: c.Expiry.Time(), TokenID: c.ID, FamilyID: c.FamilyID}, nil
}

// signAccess makes a JWT access token (RFC 9068): typ at+jwt, kid of the
// current key, iss, sub (the user, or the client), aud, exp, iat, jti,
// client_id, scope, and fid (the grant family) for revocation.
func (s *Server) signAccess(g grantInfo, now, exp time.Time) (string, error) {
	sub := g.userID
	if sub == "" {
		sub = g.clientID
	}
	c := jwtClaims{
		Claims: jwt.Claims{Issuer: s.cfg.Issuer, Subject: sub, Audience: jwt.Audience{s.cfg.Audience},
			Expiry: jwt.NewNumericDate(exp), IssuedAt: jwt.NewNumericDate(now), ID: random("")[:26]},
		ClientID: g.clientID, Scope: strings.Join(g.scopes, " "), FamilyID: g.familyID,
	}
	tok, err := jwt.Signed(s.keys.current().signer).Claims(c).Serialize()
	if err != nil {
		// mutate:equivalent * unreachable: the claims are plain strings and dates, the signer the key set's own, made and checked with its key
		return "", fmt.Errorf("signing an access token: %w", err)
	}
	return tok, nil
}
