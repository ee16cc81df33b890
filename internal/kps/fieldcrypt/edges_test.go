package fieldcrypt_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/fieldcrypt"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// failing fails the operation named by op (on any table) with errFail.
type failing struct {
	kps.Store
	op string
}

var errFail = errors.New("the store failed")

func (f *failing) Get(ctx context.Context, table string, key any) (kps.Row, error) {
	if f.op == "get" || f.op == "get "+table {
		return kps.Row{}, errFail
	}
	return f.Store.Get(ctx, table, key)
}

func (f *failing) Count(ctx context.Context, table string) (int64, error) {
	if f.op == "count" {
		return 0, errFail
	}
	return f.Store.Count(ctx, table)
}

func (f *failing) Insert(ctx context.Context, table string, values map[string]any) (kps.Row, error) {
	if f.op == "insert" {
		return kps.Row{}, errFail
	}
	return f.Store.Insert(ctx, table, values)
}

func (f *failing) List(ctx context.Context, table string, page kps.Page) (kps.Result, error) {
	if f.op == "list" {
		return kps.Result{}, errFail
	}
	return f.Store.List(ctx, table, page)
}

func (f *failing) Query(ctx context.Context, table, property string, value any, page kps.Page) (kps.Result, error) {
	if f.op == "query" {
		return kps.Result{}, errFail
	}
	return f.Store.Query(ctx, table, property, value, page)
}

func (f *failing) Update(ctx context.Context, table string, row kps.Row) (kps.Row, error) {
	if f.op == "update" {
		return kps.Row{}, errFail
	}
	return f.Store.Update(ctx, table, row)
}

// TestOpenErrors: a store that fails is an error, never a key made anew or
// fields left in clear; a damaged key record is named.
func TestOpenErrors(t *testing.T) {
	ctx := deadline(t)
	st := openStore(t)
	for _, op := range []string{"get", "insert"} {
		if k, err := fieldcrypt.Open(ctx, &failing{Store: st, op: op}, tables(), pass1); k != nil || !errors.Is(err, errFail) {
			t.Errorf("%s failing: %v %v", op, k, err)
		}
	}
	st.Insert(ctx, "creds", row(1))
	if _, err := fieldcrypt.Open(ctx, &failing{Store: st, op: "count"}, tables(), pass1); !errors.Is(err, errFail) {
		t.Errorf("count failing: %v", err)
	}
	st.Delete(ctx, "creds", "c1", kps.AnyVersion)
	if _, err := fieldcrypt.OpenKey(ctx, &failing{Store: st, op: "get"}, pass1); !errors.Is(err, errFail) {
		t.Errorf("OpenKey, get failing: %v", err)
	}
	// A damaged record of the key.
	st.Insert(ctx, fieldcrypt.MetaAlias, map[string]any{"id": "current", "kdf": "{not json", "check": "x"})
	if _, err := fieldcrypt.Open(ctx, st, tables(), pass1); !errors.Is(err, secret.ErrCorrupt) || !strings.Contains(err.Error(), fieldcrypt.MetaAlias) {
		t.Errorf("a damaged record: %v", err)
	}
	// A record whose derivation is out of bounds is refused, not obeyed.
	bad, _ := json.Marshal(secret.KDF{Algorithm: "argon2id", Time: 1000, MemoryKiB: 8 << 10, Threads: 1, Salt: make([]byte, 32)})
	r, _ := st.Get(ctx, fieldcrypt.MetaAlias, "current")
	r.Values["kdf"] = string(bad)
	st.Update(ctx, fieldcrypt.MetaAlias, r)
	if _, err := fieldcrypt.Open(ctx, st, tables(), pass1); !errors.Is(err, secret.ErrCorrupt) {
		t.Errorf("an out-of-bounds derivation: %v", err)
	}
	// A check that opens with the key but says something else.
	kdf := secret.KDF{Algorithm: "argon2id", Time: 1, MemoryKiB: 8 << 10, Threads: 1, Salt: make([]byte, 32)}
	k, _ := secret.DeriveKey(pass1, kdf)
	kj, _ := json.Marshal(kdf)
	r, _ = st.Get(ctx, fieldcrypt.MetaAlias, "current")
	r.Values["kdf"], r.Values["check"] = string(kj), secret.Seal(k, secret.Binding{Purpose: "kps check", Name: fieldcrypt.MetaAlias}, []byte("something else"))
	st.Update(ctx, fieldcrypt.MetaAlias, r)
	if _, err := fieldcrypt.Open(ctx, st, tables(), pass1); !errors.Is(err, fieldcrypt.ErrWrongPassphrase) {
		t.Errorf("a check with another text: %v", err)
	}
	// The right text opens.
	r, _ = st.Get(ctx, fieldcrypt.MetaAlias, "current")
	r.Values["check"] = secret.Seal(k, secret.Binding{Purpose: "kps check", Name: fieldcrypt.MetaAlias}, []byte("gatehouse kps field key check"))
	st.Update(ctx, fieldcrypt.MetaAlias, r)
	if keys, err := fieldcrypt.Open(ctx, st, tables(), pass1); err != nil || keys == nil {
		t.Errorf("a check of the right text: %v", err)
	}
	// A reencrypt cut short: Open says so.
	if err := fieldcrypt.Reencrypt(ctx, &failing{Store: st, op: "get " + fieldcrypt.MetaAlias}, tables(), nil, pass1, pass2, nil); !errors.Is(err, errFail) {
		t.Errorf("reencrypt, get failing: %v", err)
	}
	st.Insert(ctx, fieldcrypt.MetaAlias, map[string]any{"id": "next", "kdf": string(kj), "check": "x"})
	if _, err := fieldcrypt.Open(ctx, st, tables(), pass1); !errors.Is(err, fieldcrypt.ErrInterrupted) {
		t.Errorf("a next key recorded: %v", err)
	}
}

// racing makes another process's key between Open's look and its insert.
type racing struct {
	kps.Store
	once sync.Once
	t    *testing.T
}

func (r *racing) Insert(ctx context.Context, table string, values map[string]any) (kps.Row, error) {
	if table == fieldcrypt.MetaAlias {
		raced := false
		r.once.Do(func() {
			raced = true
			if _, err := fieldcrypt.Open(ctx, r.Store, tables(), pass1); err != nil {
				r.t.Fatal(err)
			}
		})
		if raced {
			return kps.Row{}, &kps.Error{Op: "insert", Table: table, Err: kps.ErrExists}
		}
	}
	return r.Store.Insert(ctx, table, values)
}

func TestOpenRace(t *testing.T) {
	ctx := deadline(t)
	st := openStore(t)
	k1, err := fieldcrypt.Open(ctx, &racing{Store: st, t: t}, tables(), pass1)
	if err != nil || k1 == nil {
		t.Fatalf("open that lost the race: %v", err)
	}
	k2, err := fieldcrypt.Open(ctx, st, tables(), pass1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fieldcrypt.Wrap(st, k1, tables()).Insert(ctx, "creds", row(1)); err != nil {
		t.Fatal(err)
	}
	if r, err := fieldcrypt.Wrap(st, k2, tables()).Get(ctx, "creds", "c1"); err != nil || r.Values["password"] != "s3cret-1" {
		t.Errorf("the racer's key and the winner's are not the same: %v %v", r.Values, err)
	}
}

// sharedSt is an embedded store with kps.SharedSecrets (as PostgreSQL).
type sharedSt struct {
	kps.Store
	mu sync.Mutex
	m  map[string][]byte
}

func (s *sharedSt) SharedSecret(_ context.Context, name string, offer []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.m[name]; ok {
		return slices.Clone(v), nil
	}
	s.m[name] = slices.Clone(offer)
	return slices.Clone(offer), nil
}

func (s *sharedSt) LookupSharedSecret(_ context.Context, name string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.m[name]; ok {
		return slices.Clone(v), nil
	}
	return nil, kps.ErrNotFound
}

func (s *sharedSt) ReplaceSharedSecret(_ context.Context, name string, old, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.m[name]; !ok || string(v) != string(old) {
		return kps.ErrConflict
	}
	s.m[name] = slices.Clone(value)
	return nil
}

// bulkShared is a sharedSt that also loads in bulk.
type bulkShared struct {
	*sharedSt
	b kps.Bulk
}

func (b bulkShared) InsertMany(ctx context.Context, table string, rows []map[string]any) error {
	return b.b.InsertMany(ctx, table, rows)
}

// noBulk hides the embedded store's kps.Bulk.
type noBulk struct{ kps.Store }

func TestWrapKeepsInterfaces(t *testing.T) {
	st := openStore(t)
	keys, err := fieldcrypt.Open(t.Context(), st, tables(), pass1)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name         string
		st           kps.Store
		bulk, shared bool
	}{
		{"bulk", st, true, false},
		{"bulk and shared", bulkShared{&sharedSt{Store: st, m: map[string][]byte{}}, st.(kps.Bulk)}, true, true},
		{"shared", &sharedSt{Store: noBulk{st}, m: map[string][]byte{}}, false, true},
		{"neither", noBulk{st}, false, false},
	} {
		w := fieldcrypt.Wrap(c.st, keys, tables())
		_, bulk := w.(kps.Bulk)
		_, shared := w.(kps.SharedSecrets)
		if bulk != c.bulk || shared != c.shared {
			t.Errorf("%s: bulk %v shared %v", c.name, bulk, shared)
		}
		if c.shared {
			v, err := w.(kps.SharedSecrets).SharedSecret(t.Context(), "x", []byte("y"))
			if err != nil || string(v) != "y" {
				t.Errorf("%s: the shared secrets pass through: %q %v", c.name, v, err)
			}
		}
	}
}

func TestSharedSecrets(t *testing.T) {
	ctx := deadline(t)
	st := &sharedSt{Store: openStore(t), m: map[string][]byte{}}
	k1, err := fieldcrypt.OpenKey(ctx, st, pass1)
	if err != nil || k1 == nil {
		t.Fatalf("OpenKey makes the key: %v", err)
	}
	sealed := k1.SealShared("hash", []byte("the hashing key"))
	if !secret.IsSealed(string(sealed)) || strings.Contains(string(sealed), "hashing") {
		t.Fatalf("not sealed: %q", sealed)
	}
	if b, err := k1.OpenShared("hash", sealed); err != nil || string(b) != "the hashing key" {
		t.Errorf("round trip: %q %v", b, err)
	}
	if _, err := k1.OpenShared("other", sealed); !errors.Is(err, fieldcrypt.ErrWrongPassphrase) {
		t.Errorf("under another name: %v", err)
	}
	if _, err := k1.OpenShared("hash", []byte("in clear")); !errors.Is(err, fieldcrypt.ErrNeedsSealing) {
		t.Errorf("in clear: %v", err)
	}
	if _, err := fieldcrypt.OpenKey(ctx, st, pass2); !errors.Is(err, fieldcrypt.ErrWrongPassphrase) {
		t.Errorf("OpenKey with another passphrase: %v", err)
	}
	if k, err := fieldcrypt.OpenKey(ctx, openStore(t), secret.Value{}); k != nil || err != nil {
		t.Errorf("OpenKey without a passphrase and nothing sealed: %v %v", k, err)
	}
	// Reencrypt moves a shared secret, and leaves one moved already.
	st.m["hash"] = sealed
	st.m["clear"] = []byte("was in clear")
	if err := fieldcrypt.Reencrypt(ctx, st, tables(), []string{"hash", "clear", "absent"}, pass1, pass2, nil); err != nil {
		t.Fatal(err)
	}
	k2, err := fieldcrypt.OpenKey(ctx, st, pass2)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"hash": "the hashing key", "clear": "was in clear"} {
		if b, err := k2.OpenShared(name, st.m[name]); err != nil || string(b) != want {
			t.Errorf("%s after reencrypt: %q %v", name, b, err)
		}
	}
	if _, ok := st.m["absent"]; ok {
		t.Error("reencrypt stored a secret that was not there")
	}
	// A secret under a key that is neither: named, nothing moved.
	other := secret.Seal(secret.NewKey(), secret.Binding{Purpose: "kps shared secret", Name: "stray"}, []byte("x"))
	st.m["stray"] = []byte(other)
	if err := fieldcrypt.Reencrypt(ctx, st, tables(), []string{"stray"}, pass2, pass1, nil); err == nil || !strings.Contains(err.Error(), "stray") {
		t.Errorf("a stray secret: %v", err)
	}
	// To clear.
	st2 := &sharedSt{Store: openStore(t), m: map[string][]byte{}}
	k3, _ := fieldcrypt.OpenKey(ctx, st2, pass1)
	st2.m["hash"] = k3.SealShared("hash", []byte("h"))
	st2.m["plain"] = []byte("p")
	if err := fieldcrypt.Reencrypt(ctx, st2, tables(), []string{"hash", "plain"}, pass1, secret.Value{}, nil); err != nil {
		t.Fatal(err)
	}
	if string(st2.m["hash"]) != "h" || string(st2.m["plain"]) != "p" {
		t.Errorf("to clear: %q %q", st2.m["hash"], st2.m["plain"])
	}
}

func TestWrapWrites(t *testing.T) {
	ctx := deadline(t)
	st := openStore(t)
	keys, _ := fieldcrypt.Open(ctx, st, tables(), pass1)
	w := fieldcrypt.WrapWrites(st, keys, tables())
	r, err := w.Insert(ctx, "creds", row(1))
	if err != nil || !secret.IsSealed(r.Values["password"].(string)) {
		t.Fatalf("insert: %v %v", r.Values, err)
	}
	got, _ := w.Get(ctx, "creds", "c1")
	if !secret.IsSealed(got.Values["password"].(string)) {
		t.Errorf("a read shows the value in clear: %v", got.Values)
	}
	// A row read and written back keeps its value (sealed once, not twice).
	got.Values["note"] = "changed"
	if _, err := w.Update(ctx, "creds", got); err != nil {
		t.Fatal(err)
	}
	if r, _ := fieldcrypt.Wrap(st, keys, tables()).Get(ctx, "creds", "c1"); r.Values["password"] != "s3cret-1" || r.Values["note"] != "changed" {
		t.Errorf("after a round trip through the management view: %v", r.Values)
	}
	// Empty and absent values stay as they are.
	if _, err := w.Insert(ctx, "creds", map[string]any{"client": "e", "alt": "e", "tier": "t", "password": ""}); err != nil {
		t.Fatal(err)
	}
	if r, _ := st.Get(ctx, "creds", "e"); r.Values["password"] != "" {
		t.Errorf("an empty value: %q", r.Values["password"])
	}
	if r, err := fieldcrypt.Wrap(st, keys, tables()).Get(ctx, "creds", "e"); err != nil || r.Values["password"] != "" {
		t.Errorf("an empty value read: %v %v", r.Values, err)
	}
	// A store that fails: the error, not a row.
	fw := fieldcrypt.Wrap(&failing{Store: st, op: "get"}, keys, tables())
	if _, err := fw.Get(ctx, "creds", "c1"); !errors.Is(err, errFail) {
		t.Errorf("a failing get: %v", err)
	}
	for _, op := range []string{"list", "query"} {
		fw := fieldcrypt.Wrap(&failing{Store: st, op: op}, keys, tables())
		_, e1 := fw.List(ctx, "creds", kps.Page{})
		_, e2 := fw.Query(ctx, "creds", "tier", "gold", kps.Page{})
		if !errors.Is(e1, errFail) && !errors.Is(e2, errFail) {
			t.Errorf("a failing %s: %v %v", op, e1, e2)
		}
	}
	// A row that does not open fails the page, naming it.
	r1, _ := st.Get(ctx, "creds", "c1")
	r1.Values["password"] = secret.Seal(secret.NewKey(), secret.Binding{Purpose: "kps field", Name: "creds.password"}, []byte("x"))
	st.Update(ctx, "creds", r1)
	wr := fieldcrypt.Wrap(st, keys, tables())
	if _, err := wr.List(ctx, "creds", kps.Page{}); !errors.Is(err, fieldcrypt.ErrWrongPassphrase) {
		t.Errorf("a page with a row under another key: %v", err)
	}
	if _, err := wr.Query(ctx, "creds", "tier", "gold", kps.Page{}); !errors.Is(err, fieldcrypt.ErrWrongPassphrase) {
		t.Errorf("a query with a row under another key: %v", err)
	}
	if err := fieldcrypt.Reencrypt(ctx, st, tables(), nil, pass1, pass2, nil); err == nil || !strings.Contains(err.Error(), "c1") {
		t.Errorf("reencrypt over a row under another key: %v", err)
	}
}

// conflicting answers ErrConflict to the first update of a table's row.
type conflicting struct {
	kps.Store
	once sync.Once
}

func (c *conflicting) Update(ctx context.Context, table string, row kps.Row) (kps.Row, error) {
	if table == "creds" {
		hit := false
		c.once.Do(func() { hit = true })
		if hit {
			// Another writer changed the row meanwhile.
			r, _ := c.Store.Get(ctx, table, row.Values["client"])
			r.Values["note"] = "changed meanwhile"
			c.Store.Update(ctx, table, r)
			return kps.Row{}, &kps.Error{Op: "update", Table: table, Err: kps.ErrConflict}
		}
	}
	return c.Store.Update(ctx, table, row)
}

func TestReencryptConflictAndErrors(t *testing.T) {
	ctx := deadline(t)
	st := openStore(t)
	keys, _ := fieldcrypt.Open(ctx, st, tables(), pass1)
	w := fieldcrypt.Wrap(st, keys, tables())
	for i := range 3 {
		w.Insert(ctx, "creds", row(i))
	}
	if err := fieldcrypt.Reencrypt(ctx, &conflicting{Store: st}, tables(), nil, pass1, pass2, nil); err != nil {
		t.Fatalf("a conflict is retried: %v", err)
	}
	k2, _ := fieldcrypt.Open(ctx, st, tables(), pass2)
	r, err := fieldcrypt.Wrap(st, k2, tables()).Get(ctx, "creds", "c0")
	if err != nil || r.Values["password"] != "s3cret-0" || r.Values["note"] != "changed meanwhile" {
		t.Errorf("the row after the retry: %v %v", r.Values, err)
	}
	for _, op := range []string{"list", "update"} {
		if err := fieldcrypt.Reencrypt(ctx, &failing{Store: st, op: op}, tables(), nil, pass2, pass1, nil); !errors.Is(err, errFail) {
			t.Errorf("%s failing: %v", op, err)
		}
	}
	// The state those left: the next key (pass1) recorded.
	if err := fieldcrypt.Reencrypt(ctx, st, tables(), nil, pass2, secret.Value{}, nil); err == nil {
		t.Error("to clear while a reencrypt to a passphrase was cut short")
	}
	if err := fieldcrypt.Reencrypt(ctx, st, tables(), nil, pass2, secret.FromString("a third passphrase"), nil); err == nil {
		t.Error("to a third passphrase while one to another was cut short")
	}
	if err := fieldcrypt.Reencrypt(ctx, st, tables(), nil, secret.Value{}, pass1, nil); err == nil {
		t.Error("no old passphrase for sealed fields")
	}
	if err := fieldcrypt.Reencrypt(ctx, st, tables(), nil, pass2, pass1, nil); err != nil {
		t.Fatalf("the reencrypt finished: %v", err)
	}
	// NeedsOld.
	for _, c := range []struct {
		p    secret.Value
		want bool
	}{{pass1, false}, {pass2, true}, {secret.Value{}, true}} {
		if got, err := fieldcrypt.NeedsOld(ctx, st, c.p); err != nil || got != c.want {
			t.Errorf("NeedsOld: %v %v, want %v", got, err, c.want)
		}
	}
	if got, err := fieldcrypt.NeedsOld(ctx, openStore(t), pass1); err != nil || got {
		t.Errorf("NeedsOld of a store without a key: %v %v", got, err)
	}
	if _, err := fieldcrypt.NeedsOld(ctx, &failing{Store: st, op: "get"}, pass1); !errors.Is(err, errFail) {
		t.Errorf("NeedsOld, get failing: %v", err)
	}
	// A value that is in clear while the store has a key is sealed by a
	// reencrypt to the same passphrase (no old one needed).
	r0, _ := st.Get(ctx, "creds", "c0")
	r0.Values["password"] = "planted in clear"
	st.Update(ctx, "creds", r0)
	if err := fieldcrypt.Reencrypt(ctx, st, tables(), nil, secret.Value{}, pass1, nil); err != nil {
		t.Fatal(err)
	}
	k1, _ := fieldcrypt.Open(ctx, st, tables(), pass1)
	if r, err := fieldcrypt.Wrap(st, k1, tables()).Get(ctx, "creds", "c0"); err != nil || r.Values["password"] != "planted in clear" {
		t.Errorf("a clear value sealed: %v %v", r.Values, err)
	}
}

// always answers ErrConflict to every update of a table's rows, or, with
// gone, deletes the row before answering; count counts the updates.
type always struct {
	kps.Store
	gone, failGet bool
	count         int
}

func (a *always) Update(ctx context.Context, table string, row kps.Row) (kps.Row, error) {
	if table != "creds" {
		return a.Store.Update(ctx, table, row)
	}
	a.count++
	if a.gone {
		a.Store.Delete(ctx, table, row.Values["client"], kps.AnyVersion)
	}
	return kps.Row{}, &kps.Error{Op: "update", Table: table, Err: kps.ErrConflict}
}

func (a *always) Get(ctx context.Context, table string, key any) (kps.Row, error) {
	if a.failGet && table == "creds" {
		return kps.Row{}, errFail
	}
	return a.Store.Get(ctx, table, key)
}

func TestReencryptRetries(t *testing.T) {
	ctx := deadline(t)
	fresh := func() kps.Store {
		st := openStore(t)
		keys, _ := fieldcrypt.Open(ctx, st, tables(), pass1)
		fieldcrypt.Wrap(st, keys, tables()).Insert(ctx, "creds", row(1))
		return st
	}
	// A row that another writer changes every time: four tries, then the
	// conflict is the answer (never a loop).
	a := &always{Store: fresh()}
	if err := fieldcrypt.Reencrypt(ctx, a, tables(), nil, pass1, pass2, nil); !errors.Is(err, kps.ErrConflict) || a.count != 4 {
		t.Errorf("always a conflict: %v after %d updates, want ErrConflict after 4", err, a.count)
	}
	// A row deleted meanwhile: nothing to move, the reencrypt goes on.
	g := &always{Store: fresh(), gone: true}
	var notes []string
	if err := fieldcrypt.Reencrypt(ctx, g, tables(), nil, pass1, pass2, func(s string) { notes = append(notes, s) }); err != nil || g.count != 1 {
		t.Errorf("a row deleted meanwhile: %v (%d updates)", err, g.count)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "0 rows") {
		t.Errorf("notes: %v", notes)
	}
	// Taking the row again fails: the failure is the answer.
	f := &always{Store: fresh(), failGet: true}
	if err := fieldcrypt.Reencrypt(ctx, f, tables(), nil, pass1, pass2, nil); !errors.Is(err, errFail) {
		t.Errorf("the row cannot be taken again: %v", err)
	}
}

func TestReencryptEdges(t *testing.T) {
	ctx := deadline(t)
	// Clear to clear, nothing sealed: nothing to do, no error.
	st := openStore(t)
	st.Insert(ctx, "creds", row(1))
	var cn []string
	if err := fieldcrypt.Reencrypt(ctx, st, tables(), nil, secret.Value{}, secret.Value{}, func(s string) { cn = append(cn, s) }); err != nil || len(cn) != 1 || !strings.Contains(cn[0], "0 rows") {
		t.Errorf("clear to clear: %v %v", err, cn)
	}
	if r, _ := st.Get(ctx, "creds", "c1"); r.Version != 1 {
		t.Errorf("clear to clear rewrote a row (version %d)", r.Version)
	}
	// A row sealed under a key that is neither, and no old key.
	r1, _ := st.Get(ctx, "creds", "c1")
	r1.Values["password"] = secret.Seal(secret.NewKey(), secret.Binding{Purpose: "kps field", Name: "creds.password"}, []byte("x"))
	st.Update(ctx, "creds", r1)
	if err := fieldcrypt.Reencrypt(ctx, st, tables(), nil, secret.Value{}, pass1, nil); err == nil || !strings.Contains(err.Error(), "neither the old one nor the new one") {
		t.Errorf("a stray row without an old key: %v", err)
	}
	// Sealed fields and no old passphrase: said so.
	st2 := openStore(t)
	fieldcrypt.Open(ctx, st2, tables(), pass1)
	if err := fieldcrypt.Reencrypt(ctx, st2, tables(), nil, secret.Value{}, pass2, nil); err == nil || !strings.Contains(err.Error(), "give the current one") {
		t.Errorf("no old passphrase: %v", err)
	}
	// Rows with nothing to seal are not counted (nor rewritten).
	st3 := openStore(t)
	k3, _ := fieldcrypt.Open(ctx, st3, tables(), pass1)
	w := fieldcrypt.Wrap(st3, k3, tables())
	w.Insert(ctx, "creds", row(1))
	w.Insert(ctx, "creds", map[string]any{"client": "empty", "alt": "e", "tier": "t", "password": ""})
	var notes []string
	if err := fieldcrypt.Reencrypt(ctx, st3, tables(), nil, pass1, pass2, func(s string) { notes = append(notes, s) }); err != nil {
		t.Fatal(err)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "1 rows") {
		t.Errorf("notes: %v", notes)
	}
	if r, _ := st3.Get(ctx, "creds", "empty"); r.Version != 1 {
		t.Errorf("a row with nothing to seal was rewritten (version %d)", r.Version)
	}
	// A table without encrypted properties is not counted when the key is
	// made: its rows do not make the store "in clear".
	st4 := openStore(t)
	st4.Insert(ctx, "plain", map[string]any{"id": "x", "v": "y"})
	if _, err := fieldcrypt.Open(ctx, st4, tables(), pass1); err != nil {
		t.Errorf("rows of a table without encrypted properties: %v", err)
	}
}

// lookupFails is a sharedSt whose lookups fail, or whose replace of one
// name fails.
type lookupFails struct {
	*sharedSt
	lookup      bool
	replaceName string
}

func (l lookupFails) LookupSharedSecret(ctx context.Context, name string) ([]byte, error) {
	if l.lookup {
		return nil, errFail
	}
	return l.sharedSt.LookupSharedSecret(ctx, name)
}

func (l lookupFails) ReplaceSharedSecret(ctx context.Context, name string, old, value []byte) error {
	if name == l.replaceName {
		return errFail
	}
	return l.sharedSt.ReplaceSharedSecret(ctx, name, old, value)
}

func TestReencryptSharedFaults(t *testing.T) {
	ctx := deadline(t)
	st := &sharedSt{Store: openStore(t), m: map[string][]byte{}}
	k1, _ := fieldcrypt.OpenKey(ctx, st, pass1)
	st.m["a"] = k1.SealShared("a", []byte("A"))
	st.m["b"] = k1.SealShared("b", []byte("B"))
	if err := fieldcrypt.Reencrypt(ctx, lookupFails{sharedSt: st, lookup: true}, tables(), []string{"a"}, pass1, pass2, nil); !errors.Is(err, errFail) {
		t.Errorf("a lookup that fails: %v", err)
	}
	// Cut short after "a" moved: the second run leaves "a" (under the new
	// key already) and moves "b".
	if err := fieldcrypt.Reencrypt(ctx, lookupFails{sharedSt: st, replaceName: "b"}, tables(), []string{"a", "b"}, pass1, pass2, nil); !errors.Is(err, errFail) {
		t.Fatalf("a replace that fails: %v", err)
	}
	if err := fieldcrypt.Reencrypt(ctx, st, tables(), []string{"a", "b"}, pass1, pass2, nil); err != nil {
		t.Fatalf("the second run: %v", err)
	}
	k2, err := fieldcrypt.OpenKey(ctx, st, pass2)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"a": "A", "b": "B"} {
		if b, err := k2.OpenShared(name, st.m[name]); err != nil || string(b) != want {
			t.Errorf("%s: %q %v", name, b, err)
		}
	}
	// A value sealed under an unknown key, and no old key at all.
	st2 := &sharedSt{Store: openStore(t), m: map[string][]byte{}}
	st2.m["stray"] = []byte(secret.Seal(secret.NewKey(), secret.Binding{Purpose: "kps shared secret", Name: "stray"}, []byte("x")))
	if err := fieldcrypt.Reencrypt(ctx, st2, tables(), []string{"stray"}, secret.Value{}, pass1, nil); err == nil || !strings.Contains(err.Error(), "neither the old one nor the new one") {
		t.Errorf("a stray value without an old key: %v", err)
	}
}
