package oauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
)

// The KPS tables of the authorization server (collection "OAuth"). Every
// token, code and assertion id is stored only as HashSecret(hashKey, value)
// in its primary key; nothing in the store can be presented as a token.
const (
	Collection      = "OAuth"
	TokensTable     = "oauth_tokens"     // access (opaque) and refresh tokens
	CodesTable      = "oauth_codes"      // authorization codes
	FamiliesTable   = "oauth_families"   // one per authorization grant: its refresh chain and access tokens
	AssertionsTable = "oauth_assertions" // jti of private_key_jwt assertions seen, until they expire
	MetaTable       = "oauth_meta"       // the purge watermark
)

// Token kinds in TokensTable.
const (
	kindAccess  = "access"
	kindRefresh = "refresh"
)

// bucketMillis is the width of an expiry bucket: every row carries
// bucket = expiresAt / bucketMillis (indexed), so that Purge finds the
// rows of the buckets that are wholly past by equality queries, without
// scanning the tables.
const bucketMillis = int64(10 * time.Minute / time.Millisecond)

// Tables are the definitions of the authorization server's tables.
func Tables() []kps.Table {
	return []kps.Table{
		{
			Collection: Collection, Name: "Tokens", Alias: TokensTable,
			Properties: []kps.Property{
				{Name: "hash", Type: kps.String},
				{Name: "kind", Type: kps.String},
				{Name: "clientId", Type: kps.String},
				{Name: "userId", Type: kps.String},
				{Name: "scopes", Type: kps.List},
				{Name: "familyId", Type: kps.String},
				{Name: "used", Type: kps.Boolean},
				{Name: "issuedAt", Type: kps.Long},  // Unix milliseconds
				{Name: "expiresAt", Type: kps.Long}, // Unix milliseconds
				{Name: "bucket", Type: kps.Long},
			},
			PrimaryKey: "hash", Indexes: []string{"clientId", "familyId", "bucket"},
		},
		{
			Collection: Collection, Name: "Authorization codes", Alias: CodesTable,
			Properties: []kps.Property{
				{Name: "hash", Type: kps.String},
				{Name: "clientId", Type: kps.String},
				{Name: "userId", Type: kps.String},
				{Name: "redirectUri", Type: kps.String},
				{Name: "scopes", Type: kps.List},
				{Name: "codeChallenge", Type: kps.String},
				{Name: "nonce", Type: kps.String},
				{Name: "authTime", Type: kps.Long},
				{Name: "familyId", Type: kps.String},
				{Name: "used", Type: kps.Boolean},
				{Name: "issuedAt", Type: kps.Long},
				{Name: "expiresAt", Type: kps.Long},
				{Name: "bucket", Type: kps.Long},
			},
			PrimaryKey: "hash", Indexes: []string{"bucket"},
		},
		{
			Collection: Collection, Name: "Grant families", Alias: FamiliesTable,
			Properties: []kps.Property{
				{Name: "id", Type: kps.String},
				{Name: "clientId", Type: kps.String},
				{Name: "userId", Type: kps.String},
				{Name: "scopes", Type: kps.List},
				{Name: "revoked", Type: kps.Boolean},
				{Name: "createdAt", Type: kps.Long},
				{Name: "expiresAt", Type: kps.Long},
				{Name: "bucket", Type: kps.Long},
			},
			PrimaryKey: "id", Indexes: []string{"clientId", "bucket"},
		},
		{
			Collection: Collection, Name: "Client assertions seen", Alias: AssertionsTable,
			Properties: []kps.Property{
				{Name: "hash", Type: kps.String},
				{Name: "expiresAt", Type: kps.Long},
				{Name: "bucket", Type: kps.Long},
			},
			PrimaryKey: "hash", Indexes: []string{"bucket"},
		},
		{
			Collection: Collection, Name: "Metadata", Alias: MetaTable,
			Properties: []kps.Property{
				{Name: "name", Type: kps.String},
				{Name: "value", Type: kps.Long},
			},
			PrimaryKey: "name",
		},
	}
}

// RowGetter is the read Verify needs: kps.Store has it, and so has
// *kps.Cache, which the oauth policy puts in front of the store on the
// request path (a revoked token is then refused within the cache's TTL).
type RowGetter interface {
	Get(ctx context.Context, table string, key any) (kps.Row, error)
}

func ms(t time.Time) int64              { return t.UnixMilli() }
func bucketOf(expiresAt int64) int64    { return expiresAt / bucketMillis }
func fromMs(v int64) time.Time          { return time.UnixMilli(v).UTC() }
func str(r kps.Row, k string) string    { s, _ := r.Values[k].(string); return s }
func num(r kps.Row, k string) int64     { n, _ := r.Values[k].(int64); return n }
func flag(r kps.Row, k string) bool     { b, _ := r.Values[k].(bool); return b }
func list(r kps.Row, k string) []string { l, _ := r.Values[k].([]string); return l }

// tokenRec is a row of TokensTable.
type tokenRec struct {
	Hash, Kind, ClientID, UserID, FamilyID string
	Scopes                                 []string
	Used                                   bool
	IssuedAt, ExpiresAt                    time.Time
	version                                int64
}

func (t tokenRec) values() map[string]any {
	scopes := t.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	v := map[string]any{
		"hash": t.Hash, "kind": t.Kind, "clientId": t.ClientID, "userId": t.UserID,
		"scopes": scopes, "used": t.Used,
		"issuedAt": ms(t.IssuedAt), "expiresAt": ms(t.ExpiresAt), "bucket": bucketOf(ms(t.ExpiresAt)),
	}
	// A token of no grant family (client_credentials) has no familyId at
	// all: an absent value is not indexed, which spares the store an index
	// entry on every such grant.
	if t.FamilyID != "" {
		v["familyId"] = t.FamilyID
	}
	return v
}

func tokenOf(r kps.Row) tokenRec {
	return tokenRec{
		Hash: str(r, "hash"), Kind: str(r, "kind"), ClientID: str(r, "clientId"), UserID: str(r, "userId"),
		FamilyID: str(r, "familyId"), Scopes: list(r, "scopes"), Used: flag(r, "used"),
		IssuedAt: fromMs(num(r, "issuedAt")), ExpiresAt: fromMs(num(r, "expiresAt")), version: r.Version,
	}
}

// codeRec is a row of CodesTable.
type codeRec struct {
	Hash, ClientID, UserID, RedirectURI, CodeChallenge, Nonce, FamilyID string
	Scopes                                                              []string
	AuthTime                                                            time.Time
	Used                                                                bool
	IssuedAt, ExpiresAt                                                 time.Time
	version                                                             int64
}

func (c codeRec) values() map[string]any {
	scopes := c.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	var at int64
	if !c.AuthTime.IsZero() {
		at = ms(c.AuthTime)
	}
	return map[string]any{
		"hash": c.Hash, "clientId": c.ClientID, "userId": c.UserID, "redirectUri": c.RedirectURI,
		"scopes": scopes, "codeChallenge": c.CodeChallenge, "nonce": c.Nonce, "authTime": at,
		"familyId": c.FamilyID, "used": c.Used,
		"issuedAt": ms(c.IssuedAt), "expiresAt": ms(c.ExpiresAt), "bucket": bucketOf(ms(c.ExpiresAt)),
	}
}

func codeOf(r kps.Row) codeRec {
	c := codeRec{
		Hash: str(r, "hash"), ClientID: str(r, "clientId"), UserID: str(r, "userId"),
		RedirectURI: str(r, "redirectUri"), Scopes: list(r, "scopes"), CodeChallenge: str(r, "codeChallenge"),
		Nonce: str(r, "nonce"), FamilyID: str(r, "familyId"), Used: flag(r, "used"),
		IssuedAt: fromMs(num(r, "issuedAt")), ExpiresAt: fromMs(num(r, "expiresAt")), version: r.Version,
	}
	if at := num(r, "authTime"); at != 0 {
		c.AuthTime = fromMs(at)
	}
	return c
}

// familyRec is a row of FamiliesTable: one authorization grant (a code
// redeemed), shared by every access and refresh token issued from it and
// from its refresh chain. Revoked is the authority: a token of a revoked
// family is inactive, whatever its own row says.
type familyRec struct {
	ID, ClientID, UserID string
	Scopes               []string
	Revoked              bool
	CreatedAt, ExpiresAt time.Time
	version              int64
}

func (f familyRec) values() map[string]any {
	scopes := f.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	return map[string]any{
		"id": f.ID, "clientId": f.ClientID, "userId": f.UserID, "scopes": scopes, "revoked": f.Revoked,
		"createdAt": ms(f.CreatedAt), "expiresAt": ms(f.ExpiresAt), "bucket": bucketOf(ms(f.ExpiresAt)),
	}
}

func familyOf(r kps.Row) familyRec {
	return familyRec{
		ID: str(r, "id"), ClientID: str(r, "clientId"), UserID: str(r, "userId"), Scopes: list(r, "scopes"),
		Revoked: flag(r, "revoked"), CreatedAt: fromMs(num(r, "createdAt")), ExpiresAt: fromMs(num(r, "expiresAt")),
		version: r.Version,
	}
}

// revokeFamily marks the family revoked (creating a revoked row when the
// family has no row yet, so that a redemption racing with a code replay
// cannot create it afterwards) and then deletes its tokens. The mark is
// what makes them inactive; the deletion only frees the rows early.
func (s *Server) revokeFamily(ctx context.Context, id, clientID string, until time.Time) error {
	return revokeFamily(ctx, s.store, s.log, s.now(), id, clientID, until)
}

// revokeFamily is Server.revokeFamily on store, for the server and for the
// management functions of admin.go; now is the revoked row's creation
// time when there was no row.
func revokeFamily(ctx context.Context, store kps.Store, log *slog.Logger, now time.Time, id, clientID string, until time.Time) error {
	for range 5 {
		r, err := store.Get(ctx, FamiliesTable, id)
		switch {
		case errors.Is(err, kps.ErrNotFound):
			f := familyRec{ID: id, ClientID: clientID, Revoked: true, CreatedAt: now, ExpiresAt: until}
			_, err = store.Insert(ctx, FamiliesTable, f.values())
			if errors.Is(err, kps.ErrExists) {
				continue
			}
		case err == nil:
			f := familyOf(r)
			if f.Revoked {
				return deleteFamilyTokens(ctx, store, id)
			}
			f.Revoked = true
			_, err = store.Update(ctx, FamiliesTable, kps.Row{Values: f.values(), Version: f.version})
			if errors.Is(err, kps.ErrConflict) {
				continue
			}
		}
		if err != nil {
			return fmt.Errorf("revoking grant family: %w", err)
		}
		log.Info("grant family revoked", "family", id, "client", clientID)
		return deleteFamilyTokens(ctx, store, id)
	}
	return fmt.Errorf("revoking grant family: %w: too many concurrent changes", kps.ErrUnavailable)
}

func deleteFamilyTokens(ctx context.Context, store kps.Store, id string) error {
	page := kps.Page{Limit: kps.MaxLimit}
	for {
		res, err := store.Query(ctx, TokensTable, "familyId", id, page)
		if err != nil {
			return fmt.Errorf("deleting the tokens of a revoked family: %w", err)
		}
		for _, r := range res.Rows {
			if err := store.Delete(ctx, TokensTable, str(r, "hash"), kps.AnyVersion); err != nil && !errors.Is(err, kps.ErrNotFound) {
				return fmt.Errorf("deleting the tokens of a revoked family: %w", err)
			}
		}
		if res.Next == "" {
			return nil
		}
		page.Cursor = res.Next
	}
}
