package apps

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/policy/apikey"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// The tables of the Gatehouse collection that hold applications and keys
// in a group's KPS (kpsadmin and /api/kps show them under these aliases).
const (
	Collection = "Gatehouse"
	AppsTable  = "applications"
	KeysTable  = "apikeys"
)

// Tables are their definitions.
func Tables() []kps.Table {
	return []kps.Table{
		{
			Collection: Collection, Name: "Client applications", Alias: AppsTable,
			Properties: []kps.Property{
				{Name: "id", Type: kps.String, Generated: true},
				{Name: "name", Type: kps.String},
				{Name: "description", Type: kps.String},
				{Name: "contact", Type: kps.String},
				{Name: "enabled", Type: kps.Boolean},
				{Name: "apis", Type: kps.List},
				{Name: "createdAt", Type: kps.Long},
				{Name: "oauth", Type: kps.String}, // OAuthClient as JSON; absent: not an OAuth client
			},
			PrimaryKey: "id", SecondaryKey: "name",
		},
		{
			Collection: Collection, Name: "API keys", Alias: KeysTable,
			Properties: []kps.Property{
				{Name: "id", Type: kps.String},
				{Name: "hash", Type: kps.String},
				{Name: "appId", Type: kps.String},
				{Name: "enabled", Type: kps.Boolean},
				{Name: "expiresAt", Type: kps.Long}, // Unix milliseconds; 0: never
				{Name: "createdAt", Type: kps.Long},
			},
			PrimaryKey: "id", Indexes: []string{"appId"},
		},
		{
			Collection: Collection, Name: "OAuth client secrets", Alias: ClientSecretsTable,
			Properties: []kps.Property{
				{Name: "id", Type: kps.String, Generated: true},
				{Name: "hash", Type: kps.String},
				{Name: "appId", Type: kps.String},
				{Name: "expiresAt", Type: kps.Long}, // Unix milliseconds; 0: never
				{Name: "createdAt", Type: kps.Long},
			},
			PrimaryKey: "id", Indexes: []string{"appId"},
		},
	}
}

// App is a client application.
type App struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Contact     string    `json:"contact"`
	Enabled     bool      `json:"enabled"`
	APIs        []string  `json:"apis"` // names of the APIs it may use
	CreatedAt   time.Time `json:"createdAt"`
	Version     int64     `json:"version"`
	// OAuth makes it an OAuth client of the group's authorization server
	// (client_id: its id); nil: it is not one.
	OAuth *OAuthClient `json:"oauth,omitempty"`
}

// Key is an API key as stored: never the key itself.
type Key struct {
	ID        string    `json:"id"` // gk_…: the key's public part
	AppID     string    `json:"appId"`
	Enabled   bool      `json:"enabled"`
	ExpiresAt time.Time `json:"expiresAt,omitzero"` // zero: never
	CreatedAt time.Time `json:"createdAt"`
	Version   int64     `json:"version"`
}

// Errors of the Manager's checks; they wrap kps.ErrInvalid, so the API
// answers 400.
var errInvalid = kps.ErrInvalid

// Limits of an application's fields.
const (
	MaxNameLen        = 128
	MaxDescriptionLen = 4096
	MaxAPIs           = 1024
)

func (a App) check() error {
	switch {
	case strings.TrimSpace(a.Name) == "" || a.Name != strings.TrimSpace(a.Name) || len(a.Name) > MaxNameLen || !utf8.ValidString(a.Name) || strings.ContainsFunc(a.Name, isControl):
		return fmt.Errorf("%w: an application's name is 1 to %d characters without control characters or spaces around", errInvalid, MaxNameLen)
	case len(a.Description) > MaxDescriptionLen || len(a.Contact) > MaxNameLen:
		return fmt.Errorf("%w: description up to %d bytes, contact up to %d", errInvalid, MaxDescriptionLen, MaxNameLen)
	case len(a.APIs) > MaxAPIs:
		return fmt.Errorf("%w: at most %d APIs", errInvalid, MaxAPIs)
	}
	for _, n := range a.APIs {
		if n == "" || len(n) > MaxNameLen {
			return fmt.Errorf("%w: an API name is 1 to %d bytes", errInvalid, MaxNameLen)
		}
	}
	return a.OAuth.check()
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func appValues(a App) map[string]any {
	v := map[string]any{"name": a.Name, "description": a.Description, "contact": a.Contact, "enabled": a.Enabled, "apis": a.APIs, "createdAt": a.CreatedAt.UnixMilli()}
	if a.APIs == nil {
		// mutate:equivalent delete-stmt kps stores a nil list as an empty one (kps.Table.Normalize): the row is the same (TestAppWithoutAPIs)
		v["apis"] = []string{}
	}
	if a.ID != "" {
		v["id"] = a.ID
	}
	if a.OAuth != nil {
		b, _ := json.Marshal(a.OAuth) // plain data: cannot fail
		v["oauth"] = string(b)
	}
	return v
}

func appOf(r kps.Row) App {
	v := r.Values
	a := App{Version: r.Version}
	a.ID, _ = v["id"].(string)
	a.Name, _ = v["name"].(string)
	a.Description, _ = v["description"].(string)
	a.Contact, _ = v["contact"].(string)
	a.Enabled, _ = v["enabled"].(bool)
	a.APIs, _ = v["apis"].([]string)
	if ms, ok := v["createdAt"].(int64); ok {
		a.CreatedAt = time.UnixMilli(ms).UTC()
	}
	// mutate:equivalent bool an absent and an empty value both fail to unmarshal: no settings either way
	if js, ok := v["oauth"].(string); ok && js != "" {
		var c OAuthClient
		if json.Unmarshal([]byte(js), &c) == nil {
			a.OAuth = &c
		}
	}
	return a
}

func keyOf(r kps.Row) (Key, string) {
	v := r.Values
	k := Key{Version: r.Version}
	k.ID, _ = v["id"].(string)
	k.AppID, _ = v["appId"].(string)
	k.Enabled, _ = v["enabled"].(bool)
	if ms, _ := v["expiresAt"].(int64); ms != 0 {
		k.ExpiresAt = time.UnixMilli(ms).UTC()
	}
	if ms, ok := v["createdAt"].(int64); ok {
		k.CreatedAt = time.UnixMilli(ms).UTC()
	}
	hash, _ := v["hash"].(string)
	return k, hash
}

func keyValues(k Key, hash string) map[string]any {
	var exp int64
	if !k.ExpiresAt.IsZero() {
		exp = k.ExpiresAt.UnixMilli()
	}
	return map[string]any{"id": k.ID, "hash": hash, "appId": k.AppID, "enabled": k.Enabled, "expiresAt": exp, "createdAt": k.CreatedAt.UnixMilli()}
}

// Manager changes and reads a group's applications and keys (the
// management API, the CLI through it, kpsadmin). It is safe for
// concurrent use.
type Manager struct {
	store   kps.Store
	hashKey secret.Value
	now     func() time.Time
}

// NewManager defines the tables in store (idempotent) and returns a
// Manager that hashes keys with hashKey (HashKeyBytes bytes).
func NewManager(ctx context.Context, store kps.Store, hashKey secret.Value) (*Manager, error) {
	if len(hashKey.Reveal()) != HashKeyBytes {
		return nil, fmt.Errorf("the API key hashing key has %d bytes, want %d", len(hashKey.Reveal()), HashKeyBytes)
	}
	if err := store.Define(ctx, Tables()...); err != nil {
		return nil, fmt.Errorf("defining the applications' tables: %w", err)
	}
	return &Manager{store: store, hashKey: hashKey, now: time.Now}, nil
}

// CreateApp stores a new application (its id generated) and returns it.
// A name already used is kps.ErrExists.
func (m *Manager) CreateApp(ctx context.Context, a App) (App, error) {
	a.ID = ""
	a.CreatedAt = m.now().UTC().Truncate(time.Millisecond)
	if err := a.check(); err != nil {
		return App{}, err
	}
	r, err := m.store.Insert(ctx, AppsTable, appValues(a))
	if err != nil {
		return App{}, err
	}
	return appOf(r), nil
}

// App returns the application with that id, or that name.
func (m *Manager) App(ctx context.Context, idOrName string) (App, error) {
	r, err := m.store.Get(ctx, AppsTable, idOrName)
	if errors.Is(err, kps.ErrNotFound) {
		r, err = m.store.GetBySecondary(ctx, AppsTable, idOrName)
	}
	if err != nil {
		return App{}, err
	}
	return appOf(r), nil
}

// Apps lists the applications, a page at a time.
func (m *Manager) Apps(ctx context.Context, page kps.Page) ([]App, string, error) {
	res, err := m.store.List(ctx, AppsTable, page)
	if err != nil {
		return nil, "", err
	}
	out := make([]App, 0, len(res.Rows))
	for _, r := range res.Rows {
		out = append(out, appOf(r))
	}
	return out, res.Next, nil
}

// UpdateApp replaces the application a.ID if its version is a.Version
// (kps.ErrConflict otherwise). Its id and creation time stay.
func (m *Manager) UpdateApp(ctx context.Context, a App) (App, error) {
	cur, err := m.App(ctx, a.ID)
	if err != nil {
		return App{}, err
	}
	a.ID, a.CreatedAt = cur.ID, cur.CreatedAt
	if err := a.check(); err != nil {
		return App{}, err
	}
	r, err := m.store.Update(ctx, AppsTable, kps.Row{Values: appValues(a), Version: a.Version})
	if err != nil {
		return App{}, err
	}
	return appOf(r), nil
}

// DeleteApp deletes the application and every key of it.
func (m *Manager) DeleteApp(ctx context.Context, id string, version int64) error {
	keys, err := m.Keys(ctx, id)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := m.store.Delete(ctx, KeysTable, k.ID, kps.AnyVersion); err != nil && !errors.Is(err, kps.ErrNotFound) {
			return err
		}
	}
	secrets, err := m.ClientSecrets(ctx, id)
	if err != nil {
		return err
	}
	for _, cs := range secrets {
		if err := m.store.Delete(ctx, ClientSecretsTable, cs.ID, kps.AnyVersion); err != nil && !errors.Is(err, kps.ErrNotFound) {
			return err
		}
	}
	return m.store.Delete(ctx, AppsTable, id, version)
}

// CreateKey makes a new key for application appID, valid until expires
// (zero: never), and returns it with the key itself, which is shown once
// and never stored.
func (m *Manager) CreateKey(ctx context.Context, appID string, expires time.Time) (Key, secret.Value, error) {
	app, err := m.App(ctx, appID)
	if err != nil {
		return Key{}, secret.Value{}, err
	}
	now := m.now().UTC().Truncate(time.Millisecond)
	if !expires.IsZero() && !expires.After(now) {
		return Key{}, secret.Value{}, fmt.Errorf("%w: the expiry %s is not in the future", errInvalid, expires.UTC().Format(time.RFC3339))
	}
	id, key := NewKey()
	k := Key{ID: id, AppID: app.ID, Enabled: true, ExpiresAt: expires.UTC().Truncate(time.Millisecond), CreatedAt: now}
	r, err := m.store.Insert(ctx, KeysTable, keyValues(k, Hash(m.hashKey.Reveal(), key.RevealString())))
	if err != nil {
		// mutate:equivalent delete-stmt memory hygiene: the key is not returned after this, nothing else holds it
		key.Wipe()
		return Key{}, secret.Value{}, err
	}
	k, _ = keyOf(r)
	return k, key, nil
}

// bulkBatch is how many keys CreateKeys inserts per transaction.
// mutate:equivalent const the batch size only sets how many keys share a transaction (TestCreateKeys crosses a batch either way)
const bulkBatch = 5000

// CreateKeys makes n keys for application appID that never expire, a bulk
// load (a migration, the benchmark of a million keys): in transactions of
// bulkBatch keys when the store implements kps.Bulk, one by one otherwise.
// Each batch's keys are given to out once they are stored; an error of out
// stops the load (what was stored stays). When the store fails, every key
// it stored has been given to out, and the error counts them.
func (m *Manager) CreateKeys(ctx context.Context, appID string, n int, out func(Key, secret.Value) error) error {
	app, err := m.App(ctx, appID)
	if err != nil {
		return err
	}
	bulk, _ := m.store.(kps.Bulk)
	now := m.now().UTC().Truncate(time.Millisecond)
	keys := make([]Key, 0, min(n, bulkBatch))
	values := make([]secret.Value, 0, cap(keys))
	rows := make([]map[string]any, 0, cap(keys))
	for done := 0; done < n; done += len(keys) {
		keys, values, rows = keys[:0], values[:0], rows[:0]
		for range min(n-done, bulkBatch) {
			id, key := NewKey()
			k := Key{ID: id, AppID: app.ID, Enabled: true, CreatedAt: now}
			keys, values = append(keys, k), append(values, key)
			rows = append(rows, keyValues(k, Hash(m.hashKey.Reveal(), key.RevealString())))
		}
		stored := len(rows) // of this batch
		if bulk != nil {
			if err = bulk.InsertMany(ctx, KeysTable, rows); err != nil {
				stored = 0 // all or none
			}
		} else {
			for i, r := range rows {
				if _, err = m.store.Insert(ctx, KeysTable, r); err != nil {
					stored = i
					break
				}
			}
		}
		for i := range stored {
			if err := out(keys[i], values[i]); err != nil {
				return err
			}
		}
		if err != nil {
			return fmt.Errorf("creating keys (%d stored): %w", done+stored, err)
		}
	}
	return nil
}

// Keys lists an application's keys (never their values).
func (m *Manager) Keys(ctx context.Context, appID string) ([]Key, error) {
	var out []Key
	page := kps.Page{Limit: kps.MaxLimit}
	for {
		res, err := m.store.Query(ctx, KeysTable, "appId", appID, page)
		if err != nil {
			return nil, err
		}
		for _, r := range res.Rows {
			k, _ := keyOf(r)
			out = append(out, k)
		}
		if res.Next == "" {
			return out, nil
		}
		page.Cursor = res.Next
	}
}

// Key returns one key.
func (m *Manager) Key(ctx context.Context, id string) (Key, error) {
	r, err := m.store.Get(ctx, KeysTable, id)
	if err != nil {
		return Key{}, err
	}
	k, _ := keyOf(r)
	return k, nil
}

// SetKey enables or disables a key and sets its expiry (zero: never).
func (m *Manager) SetKey(ctx context.Context, id string, enabled bool, expires time.Time) (Key, error) {
	r, err := m.store.Get(ctx, KeysTable, id)
	if err != nil {
		return Key{}, err
	}
	k, hash := keyOf(r)
	k.Enabled, k.ExpiresAt = enabled, expires.UTC().Truncate(time.Millisecond)
	r, err = m.store.Update(ctx, KeysTable, kps.Row{Values: keyValues(k, hash), Version: r.Version})
	if err != nil {
		return Key{}, err
	}
	k, _ = keyOf(r)
	return k, nil
}

// RotateKey makes a new key for the application of key id and lets the
// old one expire after grace (sooner when it expired sooner already): both
// open the application's APIs until then. When it fails, the new key is
// deleted again (the old one is as it was).
func (m *Manager) RotateKey(ctx context.Context, id string, grace time.Duration) (old, fresh Key, key secret.Value, err error) {
	if grace < 0 {
		return Key{}, Key{}, secret.Value{}, fmt.Errorf("%w: a negative grace period", errInvalid)
	}
	cur, err := m.Key(ctx, id)
	if err != nil {
		return Key{}, Key{}, secret.Value{}, err
	}
	fresh, key, err = m.CreateKey(ctx, cur.AppID, cur.ExpiresAt)
	if err != nil {
		return Key{}, Key{}, secret.Value{}, err
	}
	end := m.now().Add(grace)
	if !cur.ExpiresAt.IsZero() && cur.ExpiresAt.Before(end) {
		end = cur.ExpiresAt
	}
	old, err = m.SetKey(ctx, id, cur.Enabled, end)
	if err != nil {
		// The new key was never shown: delete it, so that a rotation that
		// failed leaves the keys as they were (unless the store fails
		// that too) and its retry does not leave a key nobody holds.
		// mutate:equivalent delete-stmt memory hygiene: the new key is not returned after this, nothing else holds it
		key.Wipe()
		m.store.Delete(ctx, KeysTable, fresh.ID, fresh.Version)
		return Key{}, Key{}, secret.Value{}, err
	}
	return old, fresh, key, nil
}

// DeleteKey deletes a key.
func (m *Manager) DeleteKey(ctx context.Context, id string) error {
	return m.store.Delete(ctx, KeysTable, id, kps.AnyVersion)
}

// Checker checks presented keys on the request path, through a cache: a
// change is seen by an instance within the cache's lifetime (kps.Cache's
// TTL). A key that passed is remembered with its application until the
// first of its rows' cache entries expires, so that presenting it again
// costs one HMAC and no look-up (verified.go). It implements
// apikey.Checker and is safe for concurrent use.
type Checker struct {
	cache    *kps.Cache
	verify   *Verifier
	verified *verifiedCache
	now      func() time.Time
}

// NewChecker checks keys against cache's store with hashKey. Its verified
// keys take at most a quarter of the cache's MaxBytes besides.
func NewChecker(cache *kps.Cache, hashKey secret.Value) *Checker {
	return &Checker{cache: cache, verify: NewVerifier(hashKey.Reveal()), verified: newVerifiedCache(cache.MaxBytes() / 4), now: cache.Now}
}

var _ apikey.Checker = (*Checker)(nil)

// Check returns the application of key. A key that is malformed, unknown,
// disabled or expired, or whose application is gone or disabled, is
// apikey.ErrInvalidKey; a store that cannot answer, an error wrapping
// kps.ErrUnavailable.
func (c *Checker) Check(ctx context.Context, key string) (apikey.App, error) {
	id, err := ParseKey(key)
	if err != nil {
		return apikey.App{}, fmt.Errorf("%w: %v", apikey.ErrInvalidKey, err)
	}
	now := c.now()
	if v, ok := c.verified.get(id, now); ok {
		if !c.verify.VerifySum(key, &v.hash) {
			return apikey.App{}, fmt.Errorf("%w: key %s: the secret part does not match", apikey.ErrInvalidKey, id)
		}
		return v.app, nil
	}
	r, keyUntil, err := c.cache.GetUntil(ctx, KeysTable, id)
	if errors.Is(err, kps.ErrNotFound) {
		return apikey.App{}, fmt.Errorf("%w: key %s unknown", apikey.ErrInvalidKey, id)
	}
	if err != nil {
		return apikey.App{}, err
	}
	k, hash := keyOf(r)
	var sum [sha256.Size]byte
	switch {
	case !decodeHash(hash, &sum) || !c.verify.VerifySum(key, &sum):
		return apikey.App{}, fmt.Errorf("%w: key %s: the secret part does not match", apikey.ErrInvalidKey, id)
	case !k.Enabled:
		return apikey.App{}, fmt.Errorf("%w: key %s is disabled", apikey.ErrInvalidKey, id)
	case !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt):
		return apikey.App{}, fmt.Errorf("%w: key %s expired at %s", apikey.ErrInvalidKey, id, k.ExpiresAt.Format(time.RFC3339))
	}
	ar, appUntil, err := c.cache.GetUntil(ctx, AppsTable, k.AppID)
	if errors.Is(err, kps.ErrNotFound) {
		return apikey.App{}, fmt.Errorf("%w: key %s: its application %s is gone", apikey.ErrInvalidKey, id, k.AppID)
	}
	if err != nil {
		return apikey.App{}, err
	}
	a := appOf(ar)
	if !a.Enabled {
		return apikey.App{}, fmt.Errorf("%w: key %s: application %s is disabled", apikey.ErrInvalidKey, id, a.ID)
	}
	app := apikey.App{ID: a.ID, Name: a.Name, APIs: a.APIs, KeyID: id} // the cached row is read-only: no copy on the request path
	until := earliest(keyUntil, appUntil)
	if !k.ExpiresAt.IsZero() {
		until = earliest(until, k.ExpiresAt)
	}
	c.verified.put(id, &verifiedKey{hash: sum, app: app, until: until}, now)
	return app, nil
}

// earliest is the earlier of two times.
func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
