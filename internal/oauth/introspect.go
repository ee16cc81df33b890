package oauth

import (
	"context"
	"errors"
	"net/url"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
)

// introspection is RFC 7662 §2.2's answer for an active token.
type introspection struct {
	Active    bool     `json:"active"`
	Scope     string   `json:"scope,omitempty"`
	ClientID  string   `json:"client_id,omitempty"`
	TokenType string   `json:"token_type,omitempty"`
	Exp       int64    `json:"exp,omitempty"`
	Iat       int64    `json:"iat,omitempty"`
	Sub       string   `json:"sub,omitempty"`
	Aud       []string `json:"aud,omitempty"`
	Iss       string   `json:"iss,omitempty"`
	Jti       string   `json:"jti,omitempty"`
}

var inactive = map[string]bool{"active": false}

// introspect is the introspection endpoint (RFC 7662). The caller must
// authenticate as a confidential client (a resource server registered as
// one); a refresh token is active only to the client it was issued to. Any token that is not active here — unknown, expired, revoked, of
// another group, a used refresh token — is {"active":false} and nothing
// more. A store that does not answer is 503, not inactive.
func (s *Server) introspect(ctx context.Context, r *Request, form url.Values) *Response {
	c, oe := s.authenticate(ctx, r, form, s.introspectURL)
	if oe != nil {
		return s.fail(ctx, oe)
	}
	if c.method == AuthNone {
		return s.fail(ctx, errClient(false, "introspection needs client authentication"))
	}
	tok := form.Get("token")
	if tok == "" {
		return s.fail(ctx, errRequest("token is missing"))
	}
	if strings.HasPrefix(tok, PrefixRefreshToken) {
		// A refresh token is shown only to its own client: a resource
		// server never legitimately holds one.
		rec, err := s.activeRefresh(ctx, tok)
		if errors.Is(err, ErrInvalidToken) || err == nil && rec.ClientID != c.ID {
			return jsonResponse(200, inactive)
		}
		if err != nil {
			return s.fail(ctx, errStore(err))
		}
		sub := rec.UserID
		if sub == "" {
			sub = rec.ClientID
		}
		return jsonResponse(200, introspection{Active: true, Scope: strings.Join(rec.Scopes, " "), ClientID: rec.ClientID,
			Exp: rec.ExpiresAt.Unix(), Iat: rec.IssuedAt.Unix(), Sub: sub, Iss: s.cfg.Issuer})
	}
	cl, err := s.verify(ctx, tok, s.store)
	if errors.Is(err, ErrInvalidToken) {
		return jsonResponse(200, inactive)
	}
	if err != nil {
		return s.fail(ctx, errStore(err))
	}
	return jsonResponse(200, introspection{Active: true, Scope: strings.Join(cl.Scopes, " "), ClientID: cl.ClientID,
		TokenType: "Bearer", Exp: cl.ExpiresAt.Unix(), Iat: cl.IssuedAt.Unix(), Sub: cl.Subject, Aud: cl.Audience,
		Iss: s.cfg.Issuer, Jti: cl.TokenID})
}

// activeRefresh finds an active refresh token: stored, unused, unexpired,
// its family not revoked.
func (s *Server) activeRefresh(ctx context.Context, tok string) (tokenRec, error) {
	row, err := s.store.Get(ctx, TokensTable, s.hash.hash(tok))
	if errors.Is(err, kps.ErrNotFound) {
		return tokenRec{}, invalid("unknown") // mutate:equivalent err-return defence in depth: a zero record matches no client
	}
	if err != nil {
		return tokenRec{}, err
	}
	rec := tokenOf(row)
	if rec.Kind != kindRefresh || rec.Used || !s.now().Before(rec.ExpiresAt) {
		return tokenRec{}, invalid("not active") // mutate:equivalent err-return defence in depth: a zero record matches no client
	}
	row, err = s.store.Get(ctx, FamiliesTable, rec.FamilyID)
	if errors.Is(err, kps.ErrNotFound) {
		return tokenRec{}, invalid("no grant") // mutate:equivalent err-return defence in depth: a zero record matches no client
	}
	if err != nil {
		return tokenRec{}, err
	}
	if familyOf(row).Revoked {
		return tokenRec{}, invalid("revoked") // mutate:equivalent err-return defence in depth: a zero record matches no client
	}
	return rec, nil
}

// revoke is the revocation endpoint (RFC 7009). A refresh token revokes
// its whole grant family (the access tokens issued from it too, §2.1); an
// opaque access token is deleted; a JWT access token of a grant revokes the
// grant; a JWT access token of client_credentials cannot be revoked before
// it expires (unsupported_token_type). A token that is unknown, invalid or
// another client's is answered 200 and left alone (§2.2).
func (s *Server) revoke(ctx context.Context, r *Request, form url.Values) *Response {
	c, oe := s.authenticate(ctx, r, form, s.revokeURL)
	if oe != nil {
		return s.fail(ctx, oe)
	}
	tok := form.Get("token")
	if tok == "" {
		return s.fail(ctx, errRequest("token is missing"))
	}
	ok := &Response{Status: 200, Header: map[string][]string{"Cache-Control": {"no-store"}}}
	switch {
	case strings.HasPrefix(tok, PrefixRefreshToken), strings.HasPrefix(tok, PrefixAccessToken):
		row, err := s.store.Get(ctx, TokensTable, s.hash.hash(tok))
		if errors.Is(err, kps.ErrNotFound) {
			return ok
		}
		if err != nil {
			return s.fail(ctx, errStore(err))
		}
		rec := tokenOf(row)
		if rec.ClientID != c.ID {
			return ok
		}
		if rec.Kind == kindRefresh {
			err = s.revokeFamily(ctx, rec.FamilyID, rec.ClientID, rec.ExpiresAt)
		} else {
			err = s.store.Delete(ctx, TokensTable, rec.Hash, kps.AnyVersion)
			if errors.Is(err, kps.ErrNotFound) {
				err = nil
			}
		}
		if err != nil {
			return s.fail(ctx, errStore(err))
		}
		return ok
	default: // a JWT, or nothing of ours
		cl, err := s.verify(ctx, tok, s.store)
		if errors.Is(err, ErrInvalidToken) {
			return ok
		}
		if err != nil {
			return s.fail(ctx, errStore(err))
		}
		if cl.ClientID != c.ID {
			return ok
		}
		if cl.FamilyID == "" {
			return s.fail(ctx, &Error{Code: ErrCodeUnsupportedTokenType, Status: 400,
				Description: "a JWT access token of client_credentials cannot be revoked: it expires by itself"})
		}
		if err := s.revokeFamily(ctx, cl.FamilyID, cl.ClientID, cl.ExpiresAt); err != nil {
			return s.fail(ctx, errStore(err))
		}
		return ok
	}
}
