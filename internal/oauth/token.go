package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
)

// tokenResponse is RFC 6749 §5.1.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope"`
}

// token is the token endpoint (RFC 6749 §3.2).
func (s *Server) token(ctx context.Context, r *Request, form url.Values) *Response {
	c, oe := s.authenticate(ctx, r, form, s.tokenURL)
	if oe != nil {
		return s.fail(ctx, oe)
	}
	var resp *tokenResponse
	switch gt := form.Get("grant_type"); gt {
	case "":
		oe = errRequest("grant_type is missing")
	case GrantClientCredentials:
		resp, oe = s.clientCredentials(ctx, c, form)
	case GrantAuthorizationCode:
		resp, oe = s.authorizationCode(ctx, c, form)
	case GrantRefreshToken:
		resp, oe = s.refresh(ctx, c, form)
	default:
		oe = &Error{Code: ErrCodeUnsupportedGrantType, Description: fmt.Sprintf("grant_type %q is not supported; supported: client_credentials, authorization_code, refresh_token", printable(gt)), Status: 400}
	}
	if oe != nil {
		return s.fail(ctx, oe)
	}
	return jsonResponse(200, resp)
}

// parseScope reads a scope parameter: space-delimited scope tokens (RFC 6749
// §3.3), duplicates dropped, order kept.
func parseScope(v string) ([]string, *Error) {
	var out []string
	for _, sc := range strings.Split(v, " ") {
		if sc == "" {
			continue
		}
		if !validScopeToken(sc) {
			return nil, errScope("scope %q is not a valid scope token", printable(sc))
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	return out, nil
}

// grantScopes decides the scopes of a new grant: those requested, each
// known to the server and allowed to the client; without a request, every
// scope the client may have (RFC 6749 §3.3's pre-defined default).
func (s *Server) grantScopes(c Client, form url.Values) ([]string, *Error) {
	req, oe := parseScope(form.Get("scope"))
	if oe != nil {
		return nil, oe
	}
	if len(req) == 0 {
		for _, sc := range c.Scopes {
			if slices.Contains(s.cfg.Scopes, sc) {
				req = append(req, sc)
			}
		}
		return req, nil // mutate:equivalent delete-stmt the default scopes are the client's scopes the server knows: the checks below pass each of them
	}
	for _, sc := range req {
		if !slices.Contains(s.cfg.Scopes, sc) {
			return nil, errScope("scope %q is not known to this server", sc)
		}
		if !slices.Contains(c.Scopes, sc) {
			return nil, errScope("scope %q is not allowed to this client", sc)
		}
	}
	return req, nil
}

func (s *Server) clientCredentials(ctx context.Context, c authenticated, form url.Values) (*tokenResponse, *Error) {
	if c.method == AuthNone {
		return nil, errUnauthorized("a public client cannot use client_credentials")
	}
	if !c.allows(GrantClientCredentials) {
		return nil, errUnauthorized("this client may not use client_credentials")
	}
	scopes, oe := s.grantScopes(c.Client, form)
	if oe != nil {
		return nil, oe
	}
	// RFC 6749 §4.4.3: no refresh token.
	at, exp, err := s.issueAccess(ctx, grantInfo{clientID: c.ID, scopes: scopes})
	if err != nil {
		return nil, errStore(err)
	}
	return &tokenResponse{AccessToken: at, TokenType: "Bearer", ExpiresIn: int64(exp / time.Second), Scope: strings.Join(scopes, " ")}, nil
}

// grantInfo is what an access or refresh token is issued for.
type grantInfo struct {
	clientID, userID, familyID string
	scopes                     []string
}

// issueAccess makes an access token (opaque and stored, or a signed JWT)
// and returns it with its lifetime.
func (s *Server) issueAccess(ctx context.Context, g grantInfo) (string, time.Duration, error) {
	now := s.now()
	life := s.cfg.AccessTokenLifetime
	if s.cfg.AccessTokenFormat == FormatJWT {
		tok, err := s.signAccess(g, now, now.Add(life))
		return tok, life, err
	}
	tok := random(PrefixAccessToken)
	rec := tokenRec{Hash: s.hash.hash(tok), Kind: kindAccess, ClientID: g.clientID, UserID: g.userID,
		FamilyID: g.familyID, Scopes: g.scopes, IssuedAt: now, ExpiresAt: now.Add(life)}
	if _, err := s.store.Insert(ctx, TokensTable, rec.values()); err != nil {
		return "", 0, fmt.Errorf("storing an access token: %w", err) // mutate:equivalent const the lifetime returned with an error is never read
	}
	return tok, life, nil
}

// issueRefresh makes and stores a refresh token of the family.
func (s *Server) issueRefresh(ctx context.Context, g grantInfo) (string, error) {
	now := s.now()
	tok := random(PrefixRefreshToken)
	rec := tokenRec{Hash: s.hash.hash(tok), Kind: kindRefresh, ClientID: g.clientID, UserID: g.userID,
		FamilyID: g.familyID, Scopes: g.scopes, IssuedAt: now, ExpiresAt: now.Add(s.cfg.RefreshTokenLifetime)}
	if _, err := s.store.Insert(ctx, TokensTable, rec.values()); err != nil {
		return "", fmt.Errorf("storing a refresh token: %w", err)
	}
	return tok, nil
}

// CodeGrant is what the authorization endpoint decided: the client, the
// user who authorized it, the exact redirect URI used, the scopes granted
// and the PKCE challenge (S256 only).
type CodeGrant struct {
	ClientID            string
	UserID              string
	RedirectURI         string
	Scopes              []string
	CodeChallenge       string // BASE64URL(SHA256(code_verifier)), 43 characters
	CodeChallengeMethod string // "S256" ("" means S256); plain is refused
	Nonce               string // for OpenID Connect, kept with the grant
	AuthTime            time.Time
}

// IssueCode stores an authorization code for g and returns it: single use,
// valid for Config.CodeLifetime, stored only as its keyed hash. The caller
// (the authorization endpoint) has authenticated the user and checked the
// client, its exact redirect URI and the scopes; IssueCode checks the
// PKCE challenge's form and that the client exists, is enabled, has that
// redirect URI and may use authorization_code. Errors wrapping
// kps.ErrUnavailable mean the store did not answer.
func (s *Server) IssueCode(ctx context.Context, g CodeGrant) (string, error) {
	if g.CodeChallengeMethod != "" && g.CodeChallengeMethod != "S256" {
		return "", fmt.Errorf("%w: code_challenge_method %q: only S256 is supported", ErrInvalidCodeGrant, g.CodeChallengeMethod)
	}
	if len(g.CodeChallenge) != 43 || !pkceChars(g.CodeChallenge) {
		return "", fmt.Errorf("%w: code_challenge must be 43 base64url characters (S256)", ErrInvalidCodeGrant)
	}
	if g.UserID == "" || g.RedirectURI == "" {
		return "", fmt.Errorf("%w: a code needs a user and a redirect URI", ErrInvalidCodeGrant)
	}
	c, err := s.clients.Client(ctx, g.ClientID)
	if errors.Is(err, ErrUnknownClient) {
		return "", fmt.Errorf("%w: client %q: %w", ErrInvalidCodeGrant, g.ClientID, err)
	}
	if err != nil {
		return "", fmt.Errorf("looking up client %q: %w", g.ClientID, err)
	}
	switch {
	case !c.Enabled:
		return "", fmt.Errorf("%w: client %q is disabled", ErrInvalidCodeGrant, g.ClientID)
	case !c.allows(GrantAuthorizationCode):
		return "", fmt.Errorf("%w: client %q may not use authorization_code", ErrInvalidCodeGrant, g.ClientID)
	case !slices.Contains(c.RedirectURIs, g.RedirectURI):
		return "", fmt.Errorf("%w: %q is not a redirect URI of client %q", ErrInvalidCodeGrant, g.RedirectURI, g.ClientID)
	}
	for _, sc := range g.Scopes {
		if !slices.Contains(s.cfg.Scopes, sc) || !slices.Contains(c.Scopes, sc) {
			return "", fmt.Errorf("%w: scope %q is not known or not allowed to client %q", ErrInvalidCodeGrant, sc, g.ClientID)
		}
	}
	now := s.now()
	code := random(PrefixCode)
	rec := codeRec{Hash: s.hash.hash(code), ClientID: g.ClientID, UserID: g.UserID, RedirectURI: g.RedirectURI,
		Scopes: g.Scopes, CodeChallenge: g.CodeChallenge, Nonce: g.Nonce, AuthTime: g.AuthTime,
		FamilyID: random("")[:26], IssuedAt: now, ExpiresAt: now.Add(s.cfg.CodeLifetime)}
	if _, err := s.store.Insert(ctx, CodesTable, rec.values()); err != nil {
		return "", fmt.Errorf("storing an authorization code: %w", err)
	}
	return code, nil
}

// ErrInvalidCodeGrant: IssueCode was given a grant it refuses.
var ErrInvalidCodeGrant = errors.New("oauth: invalid code grant")

// pkceChars: unreserved characters (RFC 7636 §4.1) — a verifier's and
// (a subset) a base64url challenge's alphabet.
func pkceChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

// S256Challenge is the PKCE S256 code challenge of a verifier.
func S256Challenge(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// authorizationCode redeems a code (RFC 6749 §4.1.3, RFC 7636 §4.6). The
// code is consumed by the first attempt, successful or not; a code
// presented again revokes the family of tokens it produced (RFC 6749
// §4.1.2, RFC 9700 §4.5).
func (s *Server) authorizationCode(ctx context.Context, c authenticated, form url.Values) (*tokenResponse, *Error) {
	code, verifier := form.Get("code"), form.Get("code_verifier")
	switch {
	case code == "":
		return nil, errRequest("code is missing")
	case verifier == "":
		return nil, errRequest("code_verifier is missing: PKCE (S256) is required")
	}
	if !c.allows(GrantAuthorizationCode) {
		return nil, errUnauthorized("this client may not use authorization_code")
	}
	now := s.now()
	row, err := s.store.Get(ctx, CodesTable, s.hash.hash(code))
	if errors.Is(err, kps.ErrNotFound) {
		return nil, errGrant("the code is invalid, expired or used")
	}
	if err != nil {
		return nil, errStore(err)
	}
	rec := codeOf(row)
	if rec.Used {
		s.log.Warn("authorization code replayed: revoking what it produced", "client", rec.ClientID, "presented_by", c.ID)
		if err := s.revokeFamily(ctx, rec.FamilyID, rec.ClientID, now.Add(s.cfg.RefreshTokenLifetime)); err != nil {
			return nil, errStore(err)
		}
		// mutate:equivalent delete-stmt the family was just revoked (its row written): the redemption below fails on inserting it, with the same invalid_grant
		return nil, errGrant("the code is invalid, expired or used")
	}
	if !now.Before(rec.ExpiresAt) {
		return nil, errGrant("the code is invalid, expired or used")
	}
	// Consume it first: whatever follows, it never works again.
	rec.Used = true
	if _, err := s.store.Update(ctx, CodesTable, kps.Row{Values: rec.values(), Version: rec.version}); err != nil {
		if errors.Is(err, kps.ErrConflict) || errors.Is(err, kps.ErrNotFound) {
			// Redeemed at the same moment by another request.
			if err := s.revokeFamily(ctx, rec.FamilyID, rec.ClientID, now.Add(s.cfg.RefreshTokenLifetime)); err != nil {
				return nil, errStore(err)
			}
			return nil, errGrant("the code is invalid, expired or used")
		}
		return nil, errStore(err)
	}
	switch {
	case rec.ClientID != c.ID:
		return nil, errGrant("the code was not issued to this client")
	case form.Get("redirect_uri") != rec.RedirectURI:
		return nil, errGrant("redirect_uri does not match the authorization request's")
	case len(verifier) < 43 || len(verifier) > 128 || !pkceChars(verifier):
		return nil, errGrant("code_verifier must be 43 to 128 unreserved characters (RFC 7636 §4.1)")
	case !constantEqual(S256Challenge(verifier), rec.CodeChallenge):
		return nil, errGrant("code_verifier does not match the code_challenge")
	}
	f := familyRec{ID: rec.FamilyID, ClientID: rec.ClientID, UserID: rec.UserID, Scopes: rec.Scopes,
		CreatedAt: now, ExpiresAt: now.Add(s.cfg.RefreshTokenLifetime)}
	if _, err := s.store.Insert(ctx, FamiliesTable, f.values()); err != nil {
		if errors.Is(err, kps.ErrExists) { // revoked by a replay meanwhile
			return nil, errGrant("the code is invalid, expired or used")
		}
		return nil, errStore(err)
	}
	g := grantInfo{clientID: rec.ClientID, userID: rec.UserID, familyID: rec.FamilyID, scopes: rec.Scopes}
	return s.issuePair(ctx, c, g, rec.Scopes)
}

// issuePair issues an access token with accessScopes and, when the client
// may refresh, a refresh token of the family with the grant's scopes.
func (s *Server) issuePair(ctx context.Context, c authenticated, g grantInfo, accessScopes []string) (*tokenResponse, *Error) {
	ag := g
	ag.scopes = accessScopes
	at, life, err := s.issueAccess(ctx, ag)
	if err != nil {
		return nil, errStore(err)
	}
	resp := &tokenResponse{AccessToken: at, TokenType: "Bearer", ExpiresIn: int64(life / time.Second), Scope: strings.Join(accessScopes, " ")}
	if c.allows(GrantRefreshToken) {
		if resp.RefreshToken, err = s.issueRefresh(ctx, g); err != nil {
			return nil, errStore(err)
		}
	}
	return resp, nil
}

// refresh is the refresh_token grant (RFC 6749 §6) with rotation: each
// refresh token works once and is replaced by a new one of the same
// family; presenting a used one again revokes the whole family (RFC 9700
// §4.14.2), because either the client or an attacker holds a stolen copy.
func (s *Server) refresh(ctx context.Context, c authenticated, form url.Values) (*tokenResponse, *Error) {
	tok := form.Get("refresh_token")
	if tok == "" {
		return nil, errRequest("refresh_token is missing")
	}
	if !c.allows(GrantRefreshToken) {
		return nil, errUnauthorized("this client may not use refresh_token")
	}
	req, oe := parseScope(form.Get("scope"))
	if oe != nil {
		return nil, oe
	}
	invalid := errGrant("the refresh token is invalid, expired or revoked")
	now := s.now()
	row, err := s.store.Get(ctx, TokensTable, s.hash.hash(tok))
	if errors.Is(err, kps.ErrNotFound) {
		return nil, invalid
	}
	if err != nil {
		return nil, errStore(err)
	}
	rec := tokenOf(row)
	if rec.Kind != kindRefresh || rec.ClientID != c.ID {
		return nil, invalid
	}
	if rec.Used {
		s.log.Warn("refresh token reused: revoking its family", "client", rec.ClientID, "family", rec.FamilyID)
		if err := s.revokeFamily(ctx, rec.FamilyID, rec.ClientID, rec.ExpiresAt); err != nil {
			return nil, errStore(err)
		}
		return nil, invalid // mutate:equivalent delete-stmt its family was just revoked: the family check below refuses it
	}
	if !now.Before(rec.ExpiresAt) {
		return nil, invalid
	}
	frow, err := s.store.Get(ctx, FamiliesTable, rec.FamilyID)
	if errors.Is(err, kps.ErrNotFound) {
		return nil, invalid
	}
	if err != nil {
		return nil, errStore(err)
	}
	fam := familyOf(frow)
	if fam.Revoked {
		return nil, invalid
	}
	for _, sc := range req {
		if !slices.Contains(rec.Scopes, sc) {
			return nil, errScope("scope %q was not granted originally", sc)
		}
	}
	if len(req) == 0 {
		req = rec.Scopes
	}
	rec.Used = true
	if _, err := s.store.Update(ctx, TokensTable, kps.Row{Values: rec.values(), Version: rec.version}); err != nil {
		if errors.Is(err, kps.ErrConflict) || errors.Is(err, kps.ErrNotFound) {
			// Used by another request at the same moment: a reuse.
			if err := s.revokeFamily(ctx, rec.FamilyID, rec.ClientID, rec.ExpiresAt); err != nil {
				return nil, errStore(err)
			}
			return nil, invalid
		}
		return nil, errStore(err)
	}
	// Keep the family row alive as long as its newest refresh token.
	fam.ExpiresAt = now.Add(s.cfg.RefreshTokenLifetime)
	if _, err := s.store.Update(ctx, FamiliesTable, kps.Row{Values: fam.values(), Version: fam.version}); err != nil {
		if errors.Is(err, kps.ErrConflict) { // revoked meanwhile, most likely
			return nil, invalid
		}
		return nil, errStore(err)
	}
	g := grantInfo{clientID: rec.ClientID, userID: rec.UserID, familyID: rec.FamilyID, scopes: rec.Scopes}
	return s.issuePair(ctx, c, g, req)
}

func constantEqual(a, b string) bool {
	return len(a) == len(b) && subtleEq(a, b)
}
