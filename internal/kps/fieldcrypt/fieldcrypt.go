// Package fieldcrypt keeps the encrypted properties of a group's Key
// Property Store tables (kps.Property.Encrypted) sealed in the store with
// a key derived from the group's passphrase, as the vendor's KPS encrypts
// fields "with the group passphrase" (docs/passphrase.md, docs/kps.md).
//
// The key is derived with argon2id from the passphrase and a salt kept in
// the store itself, in the table gatehouse_kps_crypt, beside a check value
// sealed with it. So every instance of a group, on any host and with any
// backend (a PostgreSQL store shared by several hosts included), derives
// the same key from the same passphrase, and a passphrase that does not
// open the store is told at once (ErrWrongPassphrase) rather than found
// row by row. A changed passphrase therefore needs the fields sealed anew:
// Reencrypt (kpsadmin reencrypt), restartable when it is cut short.
//
// A group without a passphrase keeps its encrypted properties in clear,
// as it keeps everything else.
package fieldcrypt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// MetaAlias is the table holding the key's salt and check values.
const MetaAlias = "gatehouse_kps_crypt"

// MetaTable is its definition (defined by OpenGroupStore when a table has
// an encrypted property).
func MetaTable() kps.Table {
	return kps.Table{
		Collection: "Gatehouse", Name: "KPS encryption", Alias: MetaAlias, PrimaryKey: "id",
		Properties: []kps.Property{{Name: "id", Type: kps.String}, {Name: "kdf", Type: kps.String}, {Name: "check", Type: kps.String}},
	}
}

// The rows of MetaTable: "current" is the key the fields are sealed with;
// "next" exists while Reencrypt runs (the key they are being moved to).
const (
	rowCurrent = "current"
	rowNext    = "next"
	checkText  = "gatehouse kps field key check"
)

// Errors of Open.
var (
	ErrWrongPassphrase = errors.New("the group's passphrase does not open the encrypted fields of its key property store: they were sealed with another passphrase (after a passphrase change, run kpsadmin reencrypt with the old and the new one)")
	ErrInterrupted     = errors.New("a kpsadmin reencrypt of the key property store was cut short: run it again with the same passphrases")
	ErrNeedsSealing    = errors.New("the key property store holds encrypted properties or secrets in clear and the group now has a passphrase: seal them with kpsadmin reencrypt")
	ErrNoPassphrase    = errors.New("the encrypted fields of the key property store are sealed with a passphrase, and the group has none: give it, or run kpsadmin reencrypt to store them in clear")
)

// Needs reports whether any of tables has an encrypted property.
func Needs(tables []kps.Table) bool {
	for i := range tables {
		if len(tables[i].Encrypted()) > 0 {
			return true
		}
	}
	return false
}

// Keys is the key of a store's encrypted fields. A nil *Keys keeps them
// in clear.
type Keys struct {
	cur *secret.Key
}

type metaRow struct {
	kdf   secret.KDF
	check string
}

func getMeta(ctx context.Context, st kps.Store, id string) (*metaRow, error) {
	r, err := st.Get(ctx, MetaAlias, id)
	if errors.Is(err, kps.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	m := &metaRow{}
	kdf, _ := r.Values["kdf"].(string)
	m.check, _ = r.Values["check"].(string)
	if err := json.Unmarshal([]byte(kdf), &m.kdf); err != nil {
		return nil, fmt.Errorf("%s row %q: %w: %v", MetaAlias, id, secret.ErrCorrupt, err)
	}
	return m, nil
}

func checkBinding() secret.Binding { return secret.Binding{Purpose: "kps check", Name: MetaAlias} }

// derive returns the key of m for passphrase, or ErrWrongPassphrase.
func (m *metaRow) derive(passphrase secret.Value) (*secret.Key, error) {
	k, err := secret.DeriveKey(passphrase, m.kdf)
	if err != nil {
		return nil, err
	}
	b, err := secret.Open(k, checkBinding(), m.check)
	if err != nil || string(b) != checkText {
		k.Wipe() // mutate:equivalent delete-stmt memory hygiene: the key is not used after this
		return nil, ErrWrongPassphrase
	}
	return k, nil
}

// newKDF makes a new key's derivation (the tests make it cheap).
var newKDF = secret.NewKDF

func newMeta(passphrase secret.Value) (map[string]any, *secret.Key, error) {
	kdf := newKDF()
	k, err := secret.DeriveKey(passphrase, kdf)
	if err != nil {
		return nil, nil, err // mutate:equivalent * NewKDF's parameters are within the bounds
	}
	kj, _ := json.Marshal(kdf)
	return map[string]any{"kdf": string(kj), "check": secret.Seal(k, checkBinding(), []byte(checkText))}, k, nil
}

// Open returns the key of st's encrypted fields for passphrase (the
// group's; zero when it has none), creating the salt and check of a
// store that has none yet. A nil *Keys (and nil error): nothing is
// encrypted (no table has an encrypted property, or the group has no
// passphrase). st must have MetaTable defined when Needs(tables).
func Open(ctx context.Context, st kps.Store, tables []kps.Table, passphrase secret.Value) (*Keys, error) {
	if !Needs(tables) {
		return nil, nil
	}
	return open(ctx, st, tables, passphrase, false)
}

// OpenKey is Open for a store's shared secrets (kps.SharedSecrets: the
// API-key hashing key of a PostgreSQL store), whatever its tables: the
// group's key for SealShared and OpenShared (nil when passphrase is zero
// and nothing is sealed). st must have MetaTable defined.
func OpenKey(ctx context.Context, st kps.Store, passphrase secret.Value) (*Keys, error) {
	return open(ctx, st, nil, passphrase, false)
}

// open is Open; retried says it lost the race to make the key once
// already (it takes the winner's then, and never loops).
func open(ctx context.Context, st kps.Store, tables []kps.Table, passphrase secret.Value, retried bool) (*Keys, error) {
	cur, err := getMeta(ctx, st, rowCurrent)
	if err != nil {
		return nil, err
	}
	next, err := getMeta(ctx, st, rowNext)
	if err != nil {
		return nil, err
	}
	switch {
	case next != nil:
		return nil, ErrInterrupted
	case passphrase.IsZero() && cur != nil:
		return nil, ErrNoPassphrase
	case passphrase.IsZero():
		return nil, nil
	case cur != nil:
		k, err := cur.derive(passphrase)
		if err != nil {
			return nil, err
		}
		return &Keys{cur: k}, nil
	}
	// A passphrase and no key yet: every encrypted property must be empty.
	for i := range tables {
		if len(tables[i].Encrypted()) == 0 {
			continue
		}
		n, err := st.Count(ctx, tables[i].Alias)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			return nil, fmt.Errorf("table %q: %w", tables[i].Alias, ErrNeedsSealing)
		}
	}
	vals, k, err := newMeta(passphrase)
	if err != nil {
		return nil, err // mutate:equivalent * NewKDF's parameters are within the bounds
	}
	vals["id"] = rowCurrent
	if _, err := st.Insert(ctx, MetaAlias, vals); errors.Is(err, kps.ErrExists) && !retried {
		// Another instance made it first: use its salt.
		k.Wipe() // mutate:equivalent delete-stmt memory hygiene: the key is not used after this
		return open(ctx, st, tables, passphrase, true)
	} else if err != nil {
		k.Wipe() // mutate:equivalent delete-stmt memory hygiene: the key is not used after this
		return nil, err
	}
	return &Keys{cur: k}, nil
}

func sharedBinding(name string) secret.Binding {
	return secret.Binding{Purpose: "kps shared secret", Name: name}
}

// SealShared seals the value of shared secret name for the store.
func (k *Keys) SealShared(name string, plain []byte) []byte {
	return []byte(secret.Seal(k.cur, sharedBinding(name), plain))
}

// OpenShared opens the stored value of shared secret name: one in clear
// (stored before the group had a passphrase) wraps ErrNeedsSealing, one
// sealed under another passphrase ErrWrongPassphrase.
func (k *Keys) OpenShared(name string, stored []byte) ([]byte, error) {
	if !secret.IsSealed(string(stored)) {
		return nil, fmt.Errorf("the store's shared secret %q: %w", name, ErrNeedsSealing)
	}
	b, err := secret.Open(k.cur, sharedBinding(name), string(stored))
	if err != nil {
		return nil, fmt.Errorf("the store's shared secret %q: %w", name, ErrWrongPassphrase)
	}
	return b, nil
}

func fieldBinding(alias, prop string) secret.Binding {
	return secret.Binding{Purpose: "kps field", Name: alias + "." + prop}
}

// sealValues returns values with the encrypted properties of t sealed with
// k (a copy; values is not changed).
func sealValues(k *secret.Key, t *kps.Table, values map[string]any) map[string]any {
	out := make(map[string]any, len(values))
	for n, v := range values {
		out[n] = v
	}
	for _, p := range t.Encrypted() {
		if s, ok := out[p].(string); ok && s != "" && !secret.IsSealed(s) {
			out[p] = secret.Seal(k, fieldBinding(t.Alias, p), []byte(s))
		}
	}
	return out
}

// openValues opens the encrypted properties of a row of t in place. A value
// that does not open, or that is in clear, is an error naming it.
func openValues(k *secret.Key, t *kps.Table, r *kps.Row) error {
	for _, p := range t.Encrypted() {
		s, ok := r.Values[p].(string)
		if !ok || s == "" {
			continue
		}
		if !secret.IsSealed(s) {
			return fmt.Errorf("table %q: property %q of a row is in clear: %w", t.Alias, p, ErrNeedsSealing)
		}
		b, err := secret.Open(k, fieldBinding(t.Alias, p), s)
		if err != nil {
			return fmt.Errorf("table %q: property %q of a row does not open with the group's key: %w", t.Alias, p, ErrWrongPassphrase)
		}
		r.Values[p] = string(b)
	}
	return nil
}
