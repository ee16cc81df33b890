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
func Reencrypt(ctx context.Context, st kps.Store, tables []kps.Table, old, newPass secret.Value, note func(string)) error {
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
			return err
		}
		vals["id"] = rowNext
		if _, err := st.Insert(ctx, MetaAlias, vals); err != nil {
			k.Wipe()
			return err
		}
		newKey = k
	}
	if newKey != nil {
		defer newKey.Wipe()
	}
	var oldKey *secret.Key
	if cur != nil {
		if old.IsZero() {
			return errors.New("the encrypted fields are sealed with a passphrase: give the current one")
		}
		if oldKey, err = cur.derive(old); err != nil {
			return err
		}
		defer oldKey.Wipe()
	}
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
			for attempt := 0; ; attempt++ {
				vals, did, err := moveRow(t, r.Values, oldKey, newKey)
				if err != nil {
					return changed, err
				}
				if !did {
					break
				}
				_, err = st.Update(ctx, t.Alias, kps.Row{Values: vals, Version: r.Version})
				if err == nil {
					changed++
					break
				}
				if !errors.Is(err, kps.ErrConflict) || attempt == 3 {
					return changed, err
				}
				// Changed meanwhile: take it again.
				if r, err = st.Get(ctx, t.Alias, r.Values[t.PrimaryKey]); err != nil {
					if errors.Is(err, kps.ErrNotFound) {
						break
					}
					return changed, err
				}
			}
		}
		if res.Next == "" {
			return changed, nil
		}
		page.Cursor = res.Next
	}
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
