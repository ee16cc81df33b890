package fieldcrypt

import (
	"context"
	"errors"
	"fmt"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// Reencrypt moves the encrypted properties of tables in st (the raw store,
// not a Wrap) from the passphrase old to the passphrase newPass: sealed
// with a key derived from newPass and a new salt, or stored in clear when
// newPass is zero; old is zero when they are in clear. It is safe to cut
// short and run again with the same passphrases: the new key is recorded
// first (row "next" of MetaTable), each row is moved on its own (a value
// already under the new key is left alone), and the new key becomes the
// current one last. note, when not nil, is told each table's count.
//
// shared names the store's shared secrets (kps.SharedSecrets) to move too,
// when st has them: the API-key hashing key of a PostgreSQL store.
func Reencrypt(ctx context.Context, st kps.Store, tables []kps.Table, shared []string, old, newPass secret.Value, note func(string)) error {
	if note == nil {
		note = func(string) {}
	}
	cur, err := getMeta(ctx, st, rowCurrent)
	if err != nil {
		return err
	}
	next, err := getMeta(ctx, st, rowNext)
	if err != nil {
		return err
	}
	if cur != nil && next == nil && !newPass.IsZero() {
		if k, err := cur.derive(newPass); err == nil {
			// The store's key is the new passphrase's already: only what
			// is in clear (stored before the passphrase) is left to seal.
			defer k.Wipe() // mutate:equivalent delete-stmt memory hygiene: the key is not used after this
			return moveAll(ctx, st, tables, shared, k, k, note)
		}
	}
	var newKey *secret.Key
	switch {
	case next != nil && newPass.IsZero():
		return errors.New("a reencrypt to a passphrase was cut short: run it again with that passphrase")
	case next != nil:
		if newKey, err = next.derive(newPass); err != nil {
			return errors.New("a reencrypt to another passphrase was cut short: run it again with that passphrase")
		}
		if cur != nil && cur.check == next.check {
			// Cut short after the switch: only "next" is left to remove.
			return st.Delete(ctx, MetaAlias, rowNext, kps.AnyVersion)
		}
	case !newPass.IsZero():
		vals, k, err := newMeta(newPass)
		if err != nil {
			return err // mutate:equivalent * NewKDF's parameters are within the bounds
		}
		vals["id"] = rowNext
		if _, err := st.Insert(ctx, MetaAlias, vals); err != nil {
			k.Wipe() // mutate:equivalent delete-stmt memory hygiene: the key is not used after this
			return err
		}
		newKey = k
	}
	if newKey != nil {
		defer newKey.Wipe() // mutate:equivalent delete-stmt memory hygiene: the key is not used after this
	}
	var oldKey *secret.Key
	if cur != nil {
		if old.IsZero() {
			return errors.New("the encrypted fields are sealed with a passphrase: give the current one")
		}
		if oldKey, err = cur.derive(old); err != nil {
			return err
		}
		defer oldKey.Wipe() // mutate:equivalent delete-stmt memory hygiene: the key is not used after this
	}
	if err := moveAll(ctx, st, tables, shared, oldKey, newKey, note); err != nil {
		return err
	}
	// The switch: the new key becomes the current one, then "next" goes.
	if newKey == nil {
		if cur != nil {
			return st.Delete(ctx, MetaAlias, rowCurrent, kps.AnyVersion)
		}
		return nil
	}
	nr, err := st.Get(ctx, MetaAlias, rowNext)
	if err != nil {
		return err
	}
	vals := map[string]any{"id": rowCurrent, "kdf": nr.Values["kdf"], "check": nr.Values["check"]}
	if cr, err := st.Get(ctx, MetaAlias, rowCurrent); err == nil {
		if _, err := st.Update(ctx, MetaAlias, kps.Row{Values: vals, Version: cr.Version}); err != nil {
			return err
		}
	} else if errors.Is(err, kps.ErrNotFound) {
		if _, err := st.Insert(ctx, MetaAlias, vals); err != nil {
			return err
		}
	} else {
		return err
	}
	return st.Delete(ctx, MetaAlias, rowNext, kps.AnyVersion)
}

// moveAll moves the encrypted properties of tables and the shared secrets
// named from oldKey to newKey (nil: clear).
func moveAll(ctx context.Context, st kps.Store, tables []kps.Table, shared []string, oldKey, newKey *secret.Key, note func(string)) error {
	for i := range tables {
		t := &tables[i]
		if len(t.Encrypted()) == 0 {
			continue
		}
		n, err := reencryptTable(ctx, st, t, oldKey, newKey)
		if err != nil {
			return err
		}
		note(fmt.Sprintf("table %q: %d rows sealed anew", t.Alias, n))
	}
	if ss, ok := st.(kps.SharedSecrets); ok {
		for _, name := range shared {
			if err := moveShared(ctx, ss, name, oldKey, newKey); err != nil {
				return err
			}
			note(fmt.Sprintf("shared secret %q sealed anew", name))
		}
	}
	return nil
}

// NeedsOld reports whether Reencrypt to newPass needs the old passphrase:
// the store's fields are sealed under another one than newPass.
func NeedsOld(ctx context.Context, st kps.Store, newPass secret.Value) (bool, error) {
	cur, err := getMeta(ctx, st, rowCurrent)
	if err != nil || cur == nil {
		return false, err
	}
	if newPass.IsZero() {
		return true, nil // mutate:equivalent delete-stmt no passphrase derives the key either
	}
	k, err := cur.derive(newPass)
	if err != nil {
		return true, nil
	}
	k.Wipe()
	return false, nil
}

// moveShared moves shared secret name from oldKey to newKey (nil: clear).
func moveShared(ctx context.Context, ss kps.SharedSecrets, name string, oldKey, newKey *secret.Key) error {
	v, err := ss.LookupSharedSecret(ctx, name)
	if errors.Is(err, kps.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	b := sharedBinding(name)
	var plain []byte
	switch {
	case !secret.IsSealed(string(v)):
		if newKey == nil {
			return nil // mutate:equivalent delete-stmt in clear to clear: the value would be replaced by itself
		}
		plain = append([]byte(nil), v...)
	default:
		if newKey != nil {
			if _, err := secret.Open(newKey, b, string(v)); err == nil {
				return nil // moved already
			}
		}
		if oldKey == nil {
			return fmt.Errorf("the store's shared secret %q is sealed with a key that is neither the old one nor the new one", name)
		}
		if plain, err = secret.Open(oldKey, b, string(v)); err != nil {
			return fmt.Errorf("the store's shared secret %q does not open with the old passphrase: %w", name, err)
		}
	}
	defer clear(plain)
	nv := plain
	if newKey != nil {
		nv = []byte(secret.Seal(newKey, b, plain))
	}
	return ss.ReplaceSharedSecret(ctx, name, v, nv)
}

// reencryptTable moves every row of t from oldKey (nil: in clear) to newKey
// (nil: in clear) and returns how many it changed.
func reencryptTable(ctx context.Context, st kps.Store, t *kps.Table, oldKey, newKey *secret.Key) (int, error) {
	changed := 0
	for page := (kps.Page{Limit: kps.MaxLimit}); ; {
		res, err := st.List(ctx, t.Alias, page)
		if err != nil {
			return changed, err
		}
		for _, r := range res.Rows {
			n, err := moveOne(ctx, st, t, r, oldKey, newKey)
			if err != nil {
				return changed, err
			}
			changed += n
		}
		if res.Next == "" {
			return changed, nil
		}
		page.Cursor = res.Next
	}
}

// moveOne moves row r of t, taking it again when another writer changed
// it meanwhile (at most four tries); 1 when it changed it.
func moveOne(ctx context.Context, st kps.Store, t *kps.Table, r kps.Row, oldKey, newKey *secret.Key) (int, error) {
	for range 4 {
		vals, did, err := moveRow(t, r.Values, oldKey, newKey)
		if err != nil || !did {
			return 0, err
		}
		_, err = st.Update(ctx, t.Alias, kps.Row{Values: vals, Version: r.Version})
		if !errors.Is(err, kps.ErrConflict) {
			if err != nil {
				return 0, err // mutate:equivalent const the count is not read with an error
			}
			return 1, nil
		}
		// Changed meanwhile: take it again (gone: nothing to move).
		r, err = st.Get(ctx, t.Alias, r.Values[t.PrimaryKey])
		if errors.Is(err, kps.ErrNotFound) {
			return 0, nil
		}
		if err != nil {
			return 0, err // mutate:equivalent const the count is not read with an error
		}
	}
	return 0, fmt.Errorf("table %q: row %v changed by another writer four times in a row: %w", t.Alias, r.Values[t.PrimaryKey], kps.ErrConflict) // mutate:equivalent const the count is not read with an error
}

// moveRow returns the row's values with each encrypted property under
// newKey, and whether anything changed.
func moveRow(t *kps.Table, values map[string]any, oldKey, newKey *secret.Key) (map[string]any, bool, error) {
	out := make(map[string]any, len(values))
	for n, v := range values {
		out[n] = v
	}
	did := false
	for _, p := range t.Encrypted() {
		s, ok := out[p].(string)
		if !ok || s == "" {
			continue
		}
		b := fieldBinding(t.Alias, p)
		var plain []byte
		switch {
		case !secret.IsSealed(s):
			if newKey == nil {
				continue // in clear, and to stay so
			}
			plain = []byte(s)
		default:
			if newKey != nil {
				if _, err := secret.Open(newKey, b, s); err == nil {
					continue // moved already
				}
			}
			if oldKey == nil {
				return nil, false, fmt.Errorf("table %q: property %q of row %v is sealed with a key that is neither the old one nor the new one", t.Alias, p, values[t.PrimaryKey])
			}
			var err error
			if plain, err = secret.Open(oldKey, b, s); err != nil {
				return nil, false, fmt.Errorf("table %q: property %q of row %v does not open with the old passphrase: %w", t.Alias, p, values[t.PrimaryKey], err)
			}
		}
		if newKey == nil {
			out[p] = string(plain)
		} else {
			out[p] = secret.Seal(newKey, b, plain)
		}
		clear(plain)
		did = true
	}
	return out, did, nil
}
