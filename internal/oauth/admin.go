package oauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
)

// The management side of the authorization server's tables: what the
// Admin Node Manager shows of a client's tokens and how it revokes them
// (docs/oauth.md, "Management"). These functions work on the group's store
// directly, without a Server: the ANM has the store, not the instances'
// configuration. They never return a token or a token's hash.
//
// What is stored is what they see: opaque access tokens and refresh tokens
// (TokensTable), grant families (FamiliesTable) and unredeemed codes
// (CodesTable). A JWT access token is not stored: one of a grant
// (authorization_code, refresh_token) is refused once its family is
// revoked; one of client_credentials stays valid until it expires (or its
// signing key is removed).

// TokenInfo is a stored token's metadata.
type TokenInfo struct {
	Kind      string    `json:"kind"` // access or refresh
	ClientID  string    `json:"clientId"`
	UserID    string    `json:"userId,omitempty"`   // empty for client_credentials
	FamilyID  string    `json:"familyId,omitempty"` // its grant; empty for client_credentials
	Scopes    []string  `json:"scopes"`
	Used      bool      `json:"used,omitempty"` // a refresh token already rotated (kept to detect reuse)
	IssuedAt  time.Time `json:"issuedAt"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// Revoked counts what a revocation did.
type Revoked struct {
	Families int `json:"families"` // grant families marked revoked (their tokens deleted)
	Tokens   int `json:"tokens"`   // tokens without a family deleted (opaque client_credentials tokens)
	Codes    int `json:"codes"`    // unredeemed codes whose grant was revoked before redemption
}

// ListClientTokens returns a page of the tokens stored for clientID (in
// the order of their hashes, which says nothing of them) and the cursor
// of the next page ("" on the last). Tokens past their expiry that the
// purge has not removed yet are listed too. A store in which the
// authorization server never ran has no tokens.
func ListClientTokens(ctx context.Context, store kps.Store, clientID string, page kps.Page) ([]TokenInfo, string, error) {
	res, err := store.Query(ctx, TokensTable, "clientId", clientID, page)
	if noTable(err) {
		return []TokenInfo{}, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("listing the tokens of client %s: %w", clientID, err)
	}
	out := make([]TokenInfo, 0, len(res.Rows))
	for _, r := range res.Rows {
		t := tokenOf(r)
		scopes := t.Scopes
		if scopes == nil {
			scopes = []string{}
		}
		out = append(out, TokenInfo{Kind: t.Kind, ClientID: t.ClientID, UserID: t.UserID, FamilyID: t.FamilyID, Scopes: scopes,
			Used: t.Used, IssuedAt: t.IssuedAt, ExpiresAt: t.ExpiresAt})
	}
	return out, res.Next, nil
}

// RevokeClient revokes everything stored for clientID: every grant family
// (so that their tokens, JWTs included, are refused, and a refresh token
// of theirs never works again), the grants of its codes not redeemed yet
// (a code redeemed afterwards is refused), and its tokens without a family.
// Tokens issued while it runs may survive it: disable the application
// first to stop new grants. It is safe to run again after a failure.
// now is the time (time.Now()) that decides which codes are unexpired.
func RevokeClient(ctx context.Context, store kps.Store, clientID string, now time.Time) (Revoked, error) {
	var out Revoked
	log := slog.New(slog.DiscardHandler)
	page := kps.Page{Limit: kps.MaxLimit}
	for {
		res, err := store.Query(ctx, FamiliesTable, "clientId", clientID, page)
		if noTable(err) {
			return out, nil // the authorization server never ran on this store
		}
		if err != nil {
			return out, fmt.Errorf("listing the grants of client %s: %w", clientID, err)
		}
		for _, r := range res.Rows {
			f := familyOf(r)
			if err := revokeFamily(ctx, store, log, now, f.ID, clientID, f.ExpiresAt); err != nil {
				return out, err
			}
			if !f.Revoked {
				out.Families++
			}
		}
		if res.Next == "" {
			break
		}
		page.Cursor = res.Next
	}
	n, err := revokePendingCodes(ctx, store, log, now, clientID)
	out.Codes = n
	if err != nil {
		return out, err
	}
	page = kps.Page{Limit: kps.MaxLimit}
	for {
		res, err := store.Query(ctx, TokensTable, "clientId", clientID, page)
		if err != nil {
			return out, fmt.Errorf("listing the tokens of client %s: %w", clientID, err)
		}
		for _, r := range res.Rows {
			err := store.Delete(ctx, TokensTable, str(r, "hash"), kps.AnyVersion)
			switch {
			case errors.Is(err, kps.ErrNotFound):
			case err != nil:
				return out, fmt.Errorf("deleting a token of client %s: %w", clientID, err)
			default:
				out.Tokens++
			}
		}
		if res.Next == "" {
			return out, nil
		}
		page.Cursor = res.Next
	}
}

// revokePendingCodes revokes the grant of every unredeemed, unexpired code
// of clientID. Codes have no client index; an unexpired code is in a
// bucket from now's to that of now plus the longest code lifetime.
func revokePendingCodes(ctx context.Context, store kps.Store, log *slog.Logger, now time.Time, clientID string) (int, error) {
	n := 0
	last := bucketOf(ms(now.Add(maxCodeLifetime)))
	for b := bucketOf(ms(now)); b <= last; b++ {
		page := kps.Page{Limit: kps.MaxLimit}
		for {
			res, err := store.Query(ctx, CodesTable, "bucket", b, page)
			if err != nil {
				return n, fmt.Errorf("listing the codes of client %s: %w", clientID, err)
			}
			for _, r := range res.Rows {
				c := codeOf(r)
				if c.ClientID != clientID || c.Used || !now.Before(c.ExpiresAt) {
					continue
				}
				if err := revokeFamily(ctx, store, log, now, c.FamilyID, clientID, c.ExpiresAt); err != nil {
					return n, err
				}
				n++
			}
			if res.Next == "" {
				break
			}
			page.Cursor = res.Next
		}
	}
	return n, nil
}

// maxCodeLifetime is the longest Config.CodeLifetime allowed.
const maxCodeLifetime = 10 * time.Minute

// ErrNoGrant: the client has no grant family with that id.
var ErrNoGrant = fmt.Errorf("%w: no such grant", kps.ErrNotFound)

// RevokeGrant revokes one grant family of clientID (the familyId that
// ListClientTokens shows): its tokens are refused and deleted. ErrNoGrant
// (a kps.ErrNotFound) when the client has no such family.
func RevokeGrant(ctx context.Context, store kps.Store, clientID, familyID string) error {
	r, err := store.Get(ctx, FamiliesTable, familyID)
	if noTable(err) || errors.Is(err, kps.ErrNotFound) || errors.Is(err, kps.ErrInvalid) || err == nil && familyOf(r).ClientID != clientID {
		return fmt.Errorf("client %s, grant %q: %w", clientID, familyID, ErrNoGrant)
	}
	if err != nil {
		return fmt.Errorf("reading grant %s: %w", familyID, err)
	}
	f := familyOf(r)
	return revokeFamily(ctx, store, slog.New(slog.DiscardHandler), time.Now(), f.ID, clientID, f.ExpiresAt)
}

// noTable: err is the store's "no table with this alias" (the
// authorization server never defined its tables there).
func noTable(err error) bool {
	var ke *kps.Error
	return errors.As(err, &ke) && errors.Is(err, kps.ErrNotFound) && ke.Key == ""
}
