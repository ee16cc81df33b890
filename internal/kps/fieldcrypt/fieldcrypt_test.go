package fieldcrypt_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/fieldcrypt"
	_ "github.com/gatehouse-gw/gatehouse/internal/kps/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

var creds = kps.Table{
	Collection: "Back ends", Name: "Credentials", Alias: "creds", PrimaryKey: "client", SecondaryKey: "alt", Indexes: []string{"tier"},
	Properties: []kps.Property{
		{Name: "client", Type: kps.String}, {Name: "alt", Type: kps.String}, {Name: "tier", Type: kps.String},
		{Name: "password", Type: kps.String, Encrypted: true}, {Name: "note", Type: kps.String},
	},
}

var plain = kps.Table{Collection: "Other", Name: "Plain", Alias: "plain", PrimaryKey: "id", Properties: []kps.Property{{Name: "id", Type: kps.String}, {Name: "v", Type: kps.String}}}

func tables() []kps.Table { return []kps.Table{creds, plain} }

// deadline is the test's context with a deadline: code that would loop
// (a mutant of a paging loop, of a retry) fails the test instead.
func deadline(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func openStore(t *testing.T) kps.Store {
	t.Helper()
	st, err := kps.Open(t.Context(), kps.Config{SQLite: kps.SQLiteConfig{Path: filepath.Join(t.TempDir(), "kps.db")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Define(t.Context(), append(tables(), fieldcrypt.MetaTable())...); err != nil {
		t.Fatal(err)
	}
	return st
}

var (
	pass1 = secret.FromString("first group passphrase")
	pass2 = secret.FromString("second group passphrase")
)

func row(i int) map[string]any {
	return map[string]any{"client": fmt.Sprintf("c%d", i), "alt": fmt.Sprintf("a%d", i), "tier": "gold", "password": fmt.Sprintf("s3cret-%d", i), "note": "n"}
}

// raw is what the underlying store holds for a row's password.
func raw(t *testing.T, st kps.Store, key string) string {
	t.Helper()
	r, err := st.Get(t.Context(), "creds", key)
	if err != nil {
		t.Fatal(err)
	}
	return r.Values["password"].(string)
}

func TestSealedRoundTrip(t *testing.T) {
	ctx := deadline(t)
	st := openStore(t)
	if k, err := fieldcrypt.Open(ctx, st, []kps.Table{plain}, pass1); k != nil || err != nil {
		t.Fatalf("no encrypted property: %v %v", k, err)
	}
	if k, err := fieldcrypt.Open(ctx, st, tables(), secret.Value{}); k != nil || err != nil {
		t.Fatalf("no passphrase: %v %v", k, err)
	}
	if fieldcrypt.Wrap(st, nil, tables()) != st {
		t.Error("Wrap without keys is not the store itself")
	}
	keys, err := fieldcrypt.Open(ctx, st, tables(), pass1)
	if err != nil || keys == nil {
		t.Fatal(err)
	}
	w := fieldcrypt.Wrap(st, keys, tables())
	if _, ok := w.(kps.Bulk); !ok {
		t.Error("the wrapper lost kps.Bulk")
	}
	if _, ok := w.(kps.SharedSecrets); ok {
		t.Error("the wrapper claims kps.SharedSecrets that the store lacks")
	}
	r, err := w.Insert(ctx, "creds", row(1))
	if err != nil || r.Values["password"] != "s3cret-1" {
		t.Fatalf("insert: %v %v", r, err)
	}
	if err := w.(kps.Bulk).InsertMany(ctx, "creds", []map[string]any{row(2), row(3)}); err != nil {
		t.Fatal(err)
	}
	w.Insert(ctx, "plain", map[string]any{"id": "x", "v": "clear"})
	for i := 1; i <= 3; i++ {
		s := raw(t, st, fmt.Sprintf("c%d", i))
		if !secret.IsSealed(s) || strings.Contains(s, "s3cret") {
			t.Errorf("row %d stored as %q", i, s)
		}
	}
	if r, _ := st.Get(ctx, "plain", "x"); r.Values["v"] != "clear" {
		t.Errorf("a table without encrypted properties: %v", r.Values)
	}
	// Every read path opens.
	if r, err := w.Get(ctx, "creds", "c1"); err != nil || r.Values["password"] != "s3cret-1" || r.Values["note"] != "n" {
		t.Errorf("Get: %v %v", r.Values, err)
	}
	if r, err := w.GetBySecondary(ctx, "creds", "a2"); err != nil || r.Values["password"] != "s3cret-2" {
		t.Errorf("GetBySecondary: %v %v", r.Values, err)
	}
	if res, err := w.Query(ctx, "creds", "tier", "gold", kps.Page{}); err != nil || len(res.Rows) != 3 || res.Rows[2].Values["password"] != "s3cret-3" {
		t.Errorf("Query: %v %v", res, err)
	}
	if res, err := w.List(ctx, "creds", kps.Page{}); err != nil || len(res.Rows) != 3 || res.Rows[0].Values["password"] != "s3cret-1" {
		t.Errorf("List: %v %v", res, err)
	}
	r, _ = w.Get(ctx, "creds", "c1")
	r.Values["password"] = "changed"
	if u, err := w.Update(ctx, "creds", r); err != nil || u.Values["password"] != "changed" || !secret.IsSealed(raw(t, st, "c1")) {
		t.Errorf("Update: %v %v %q", u, err, raw(t, st, "c1"))
	}
	// A sealed value copied into another property or table does not open.
	other := raw(t, st, "c2")
	r3, _ := st.Get(ctx, "creds", "c3")
	r3.Values["password"] = other
	st.Update(ctx, "creds", r3)
	if r, err := w.Get(ctx, "creds", "c3"); err != nil || r.Values["password"] != "s3cret-2" {
		// The binding is the table and property: a value moved between
		// rows of one column opens (documented); across columns it does not.
		t.Errorf("a value of another row: %v %v", r.Values, err)
	}
	// A value in clear behind the wrapper's back is refused.
	r3, _ = st.Get(ctx, "creds", "c3")
	r3.Values["password"] = "planted"
	st.Update(ctx, "creds", r3)
	if _, err := w.Get(ctx, "creds", "c3"); !errors.Is(err, fieldcrypt.ErrNeedsSealing) {
		t.Errorf("a value in clear: %v", err)
	}
	// Another process with the same passphrase finds the same key; a wrong
	// one is told at once.
	if _, err := fieldcrypt.Open(ctx, st, tables(), pass2); !errors.Is(err, fieldcrypt.ErrWrongPassphrase) {
		t.Errorf("a wrong passphrase: %v", err)
	}
	if _, err := fieldcrypt.Open(ctx, st, tables(), secret.Value{}); !errors.Is(err, fieldcrypt.ErrNoPassphrase) {
		t.Errorf("no passphrase for sealed fields: %v", err)
	}
	k2, err := fieldcrypt.Open(ctx, st, tables(), pass1)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := fieldcrypt.Wrap(st, k2, tables()).Get(ctx, "creds", "c2"); err != nil || r.Values["password"] != "s3cret-2" {
		t.Errorf("another opening: %v %v", r.Values, err)
	}
}

func TestOpenRefusesClearRows(t *testing.T) {
	ctx := deadline(t)
	st := openStore(t)
	st.Insert(ctx, "creds", row(1)) // stored while the group had no passphrase
	if _, err := fieldcrypt.Open(ctx, st, tables(), pass1); !errors.Is(err, fieldcrypt.ErrNeedsSealing) {
		t.Fatalf("clear rows under a new passphrase: %v", err)
	}
	if err := fieldcrypt.Reencrypt(ctx, st, tables(), nil, secret.Value{}, pass1, nil); err != nil {
		t.Fatal(err)
	}
	if !secret.IsSealed(raw(t, st, "c1")) {
		t.Fatal("not sealed by reencrypt")
	}
	keys, err := fieldcrypt.Open(ctx, st, tables(), pass1)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := fieldcrypt.Wrap(st, keys, tables()).Get(ctx, "creds", "c1"); r.Values["password"] != "s3cret-1" {
		t.Errorf("after sealing: %v", r.Values)
	}
}

func TestReencrypt(t *testing.T) {
	ctx := deadline(t)
	st := openStore(t)
	keys, _ := fieldcrypt.Open(ctx, st, tables(), pass1)
	w := fieldcrypt.Wrap(st, keys, tables())
	const n = 250
	for i := range n {
		if _, err := w.Insert(ctx, "creds", row(i)); err != nil {
			t.Fatal(err)
		}
	}
	before := raw(t, st, "c7")
	if err := fieldcrypt.Reencrypt(ctx, st, tables(), nil, pass2, pass2, nil); !errors.Is(err, fieldcrypt.ErrWrongPassphrase) {
		t.Fatalf("a wrong old passphrase: %v", err)
	}
	// The refused run recorded its new key: the same new passphrase goes on.
	var notes []string
	if err := fieldcrypt.Reencrypt(ctx, st, tables(), nil, pass1, pass2, func(s string) { notes = append(notes, s) }); err != nil {
		t.Fatal(err)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], fmt.Sprintf("%d rows", n)) {
		t.Errorf("notes: %v", notes)
	}
	if raw(t, st, "c7") == before {
		t.Error("not sealed anew")
	}
	if _, err := fieldcrypt.Open(ctx, st, tables(), pass1); !errors.Is(err, fieldcrypt.ErrWrongPassphrase) {
		t.Errorf("the old passphrase still opens: %v", err)
	}
	k2, err := fieldcrypt.Open(ctx, st, tables(), pass2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		r, err := fieldcrypt.Wrap(st, k2, tables()).Get(ctx, "creds", fmt.Sprintf("c%d", i))
		if err != nil || r.Values["password"] != fmt.Sprintf("s3cret-%d", i) {
			t.Fatalf("row %d: %v %v", i, r.Values, err)
		}
	}
	// To clear: no passphrase any more.
	if err := fieldcrypt.Reencrypt(ctx, st, tables(), nil, pass2, secret.Value{}, nil); err != nil {
		t.Fatal(err)
	}
	if raw(t, st, "c7") != "s3cret-7" {
		t.Errorf("to clear: %q", raw(t, st, "c7"))
	}
	if k, err := fieldcrypt.Open(ctx, st, tables(), secret.Value{}); k != nil || err != nil {
		t.Errorf("after going to clear: %v %v", k, err)
	}
}

// faultyStore fails Update after a number of calls: a reencrypt cut short.
type faultyStore struct {
	kps.Store
	left int
}

var errCut = errors.New("cut short")

func (f *faultyStore) Update(ctx context.Context, table string, row kps.Row) (kps.Row, error) {
	if f.left == 0 {
		return kps.Row{}, errCut
	}
	f.left--
	return f.Store.Update(ctx, table, row)
}

func (f *faultyStore) Delete(ctx context.Context, table string, key any, version int64) error {
	if f.left == 0 {
		return errCut
	}
	f.left--
	return f.Store.Delete(ctx, table, key, version)
}

func TestReencryptCutShort(t *testing.T) {
	ctx := deadline(t)
	const n = 40
	// Cut after every number of writes in turn: each time a second run
	// finishes, and the new passphrase opens every row.
	for cut := 0; cut <= n+3; cut += 3 {
		st := openStore(t)
		keys, _ := fieldcrypt.Open(ctx, st, tables(), pass1)
		w := fieldcrypt.Wrap(st, keys, tables())
		for i := range n {
			w.Insert(ctx, "creds", row(i))
		}
		err := fieldcrypt.Reencrypt(ctx, &faultyStore{Store: st, left: cut}, tables(), nil, pass1, pass2, nil)
		if err == nil {
			continue // the cut came after the end
		}
		if !errors.Is(err, errCut) {
			t.Fatalf("cut %d: %v", cut, err)
		}
		if _, err := fieldcrypt.Open(ctx, st, tables(), pass2); !errors.Is(err, fieldcrypt.ErrInterrupted) && err != nil {
			t.Errorf("cut %d: open before the second run: %v", cut, err)
		}
		if err := fieldcrypt.Reencrypt(ctx, st, tables(), nil, pass1, pass2, nil); err != nil {
			t.Fatalf("cut %d: second run: %v", cut, err)
		}
		k2, err := fieldcrypt.Open(ctx, st, tables(), pass2)
		if err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		res, err := fieldcrypt.Wrap(st, k2, tables()).List(ctx, "creds", kps.Page{Limit: kps.MaxLimit})
		if err != nil || len(res.Rows) != n {
			t.Fatalf("cut %d: %d rows, %v", cut, len(res.Rows), err)
		}
	}
}

func TestSchemaRefusesEncryptedKeys(t *testing.T) {
	for name, mod := range map[string]func(*kps.Table){
		"primary key":   func(t *kps.Table) { t.Properties[0].Encrypted = true },
		"secondary key": func(t *kps.Table) { t.Properties[1].Encrypted = true },
		"index":         func(t *kps.Table) { t.Properties[2].Encrypted = true },
		"not a string":  func(t *kps.Table) { t.Properties[4].Type = kps.Integer; t.Properties[4].Encrypted = true },
	} {
		tb := creds.Clone()
		mod(&tb)
		if err := tb.Validate(); err == nil || !strings.Contains(err.Error(), "encrypted") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := creds.Validate(); err != nil {
		t.Error(err)
	}
}
