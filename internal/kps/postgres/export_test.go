package postgres

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
)

var loadTable = kps.Table{
	Collection: "Test", Name: "People", Alias: "people",
	Properties: []kps.Property{{Name: "id", Type: kps.String}, {Name: "email", Type: kps.String}, {Name: "team", Type: kps.String}, {Name: "n", Type: kps.Long}},
	PrimaryKey: "id", SecondaryKey: "email", Indexes: []string{"team"},
}

var otherTable = kps.Table{Collection: "Test", Name: "Other", Alias: "other",
	Properties: []kps.Property{{Name: "k", Type: kps.Long}}, PrimaryKey: "k"}

func person(id, email, team string, version int64) kps.Row {
	return kps.Row{Values: map[string]any{"id": id, "email": email, "team": team, "n": int64(1) << 60}, Version: version}
}

func openLoad(t *testing.T) (*Store, kps.PostgresConfig) {
	t.Helper()
	cfg := newConfig(t)
	s := open(t, cfg)
	if err := s.Define(t.Context(), loadTable, otherTable); err != nil {
		t.Fatal(err)
	}
	return s, cfg
}

// versions lists the people table as id → version.
func versions(t *testing.T, s kps.Store) map[string]int64 {
	t.Helper()
	res, err := s.List(t.Context(), "people", kps.Page{Limit: kps.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, r := range res.Rows {
		out[r.Values["id"].(string)] = r.Version
	}
	return out
}

func TestLoad(t *testing.T) {
	ctx := t.Context()
	s, _ := openLoad(t)
	two := kps.TableRows{Table: "people", Rows: []kps.Row{person("a", "a@x", "red", 7), person("b", "b@x", "red", 0)}}
	if atomic, err := kps.Load(ctx, s, false, two); err != nil || !atomic {
		t.Fatalf("Load into an empty table: atomic %v, %v; want true, nil", atomic, err)
	}
	if got, want := versions(t, s), map[string]int64{"a": 7, "b": 1}; !reflect.DeepEqual(got, want) {
		t.Errorf("after Load: got %v, want %v", got, want)
	}
	if r, err := s.GetBySecondary(ctx, "people", "b@x"); err != nil || r.Values["n"] != int64(1)<<60 {
		t.Errorf("GetBySecondary after Load: %v, %v", r, err)
	}
	if res, err := s.Query(ctx, "people", "team", "red", kps.Page{}); err != nil || len(res.Rows) != 2 {
		t.Errorf("Query of the index after Load: %d rows, %v; want 2", len(res.Rows), err)
	}
	one := kps.TableRows{Table: "people", Rows: []kps.Row{person("c", "c@x", "blue", 1)}}
	if err := s.Load(ctx, false, one); !errors.Is(err, kps.ErrExists) {
		t.Errorf("Load into a table with rows: got %v, want ErrExists", err)
	}
	if got := versions(t, s); len(got) != 2 {
		t.Errorf("after a refused Load: got %v, want the 2 rows", got)
	}
	if err := s.Load(ctx, true, one); err != nil {
		t.Fatal(err)
	}
	if got := versions(t, s); !reflect.DeepEqual(got, map[string]int64{"c": 1}) {
		t.Errorf("after Load with replace: got %v, want only c", got)
	}
	if _, err := s.GetBySecondary(ctx, "people", "a@x"); !errors.Is(err, kps.ErrNotFound) {
		t.Errorf("the replaced row's secondary key: got %v, want ErrNotFound", err)
	}
	if res, _ := s.Query(ctx, "people", "team", "red", kps.Page{}); len(res.Rows) != 0 {
		t.Errorf("the replaced rows' index: %d rows, want 0", len(res.Rows))
	}
	if err := s.Load(ctx, true, kps.TableRows{Table: "nope"}); !errors.Is(err, kps.ErrNotFound) {
		t.Errorf("Load into an unknown table: got %v, want ErrNotFound", err)
	}
	// A bad row anywhere undoes the whole load, other tables included.
	for _, c := range []struct {
		name string
		bad  kps.Row
		want error
	}{
		{"same primary key", person("a", "z@x", "red", 1), kps.ErrExists},
		{"same secondary key", person("z", "a@x", "red", 1), kps.ErrExists},
		{"wrong type", kps.Row{Values: map[string]any{"id": "z", "n": "many"}}, kps.ErrInvalid},
	} {
		trs := []kps.TableRows{
			{Table: "other", Rows: []kps.Row{{Values: map[string]any{"k": int64(1)}}}},
			{Table: "people", Rows: []kps.Row{person("a", "a@x", "red", 1), c.bad}},
		}
		if err := s.Load(ctx, true, trs...); !errors.Is(err, c.want) {
			t.Errorf("%s: Load: got %v, want %v", c.name, err, c.want)
		}
		if got := versions(t, s); !reflect.DeepEqual(got, map[string]int64{"c": 1}) {
			t.Errorf("%s: after a failed Load: got %v, want c only", c.name, got)
		}
		if n, _ := s.Count(ctx, "other"); n != 0 {
			t.Errorf("%s: after a failed Load the other table holds %d rows", c.name, n)
		}
	}
}

// sink records an export; after its first table it runs between(), which
// writes through another connection while the export goes on.
type sink struct {
	tables  []string
	rows    map[string][]kps.Row
	secrets map[string]string
	cur     string
	between func()
}

func (k *sink) Table(t kps.Table) error {
	if k.between != nil && len(k.tables) == 1 {
		k.between()
	}
	k.tables = append(k.tables, t.Alias)
	k.cur = t.Alias
	return nil
}

func (k *sink) Row(r kps.Row) error {
	k.rows[k.cur] = append(k.rows[k.cur], r)
	return nil
}

func (k *sink) Secret(name string, value []byte) error {
	k.secrets[name] = string(value)
	return nil
}

// An export is one instant: writes made while it runs (to a table it has
// not read yet, and to the secrets) are not in it; rows come in key order
// with their versions.
func TestExport(t *testing.T) {
	ctx := t.Context()
	s, cfg := openLoad(t)
	if err := s.Load(ctx, false, kps.TableRows{Table: "people", Rows: []kps.Row{person("b", "b@x", "red", 3), person("a", "a@x", "blue", 1)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Insert(ctx, "other", map[string]any{"k": int64(1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SharedSecret(ctx, "hk", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	writer := open(t, cfg)
	k := &sink{rows: map[string][]kps.Row{}, secrets: map[string]string{}, between: func() {
		for i := 2; i < 5; i++ {
			if _, err := writer.Insert(ctx, "people", person(fmt.Sprint("late", i), fmt.Sprint(i, "@x"), "red", 0).Values); err != nil {
				t.Error(err)
			}
		}
		if _, err := writer.Insert(ctx, "other", map[string]any{"k": int64(2)}); err != nil {
			t.Error(err)
		}
		if err := writer.ReplaceSharedSecret(ctx, "hk", []byte("v1"), []byte("v2")); err != nil {
			t.Error(err)
		}
	}}
	at, err := s.Export(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	if at.IsZero() {
		t.Error("Export returned no snapshot time")
	}
	if want := []string{"other", "people"}; !reflect.DeepEqual(k.tables, want) {
		t.Errorf("tables: got %v, want %v", k.tables, want)
	}
	var ids []string
	for _, r := range k.rows["people"] {
		ids = append(ids, fmt.Sprintf("%s/%d", r.Values["id"], r.Version))
	}
	if want := []string{"a/1", "b/3"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("people exported: got %v, want %v (the rows of the instant it began, in key order)", ids, want)
	}
	if len(k.rows["other"]) != 1 {
		t.Errorf("other exported: %v, want the one row", k.rows["other"])
	}
	if k.secrets["hk"] != "v1" {
		t.Errorf("secret: got %q, want v1 (as it was when the export began)", k.secrets["hk"])
	}
	if got := versions(t, s); len(got) != 5 {
		t.Errorf("the writes made during the export: %v, want 5 rows in the store", got)
	}
	// A sink that fails ends the export with its error.
	boom := errors.New("disk full")
	if _, err := s.Export(ctx, failing{boom}); !errors.Is(err, boom) {
		t.Errorf("a failing sink: got %v, want it to wrap %v", err, boom)
	}
}

type failing struct{ err error }

func (f failing) Table(kps.Table) error       { return nil }
func (f failing) Row(kps.Row) error           { return f.err }
func (f failing) Secret(string, []byte) error { return nil }

func TestPutSharedSecret(t *testing.T) {
	ctx := t.Context()
	s, _ := openLoad(t)
	for _, v := range []string{"one", "two"} {
		if err := s.PutSharedSecret(ctx, "hk", []byte(v)); err != nil {
			t.Fatal(err)
		}
		if got, err := s.LookupSharedSecret(ctx, "hk"); err != nil || string(got) != v {
			t.Errorf("after Put %q: got %q, %v", v, got, err)
		}
	}
	if err := s.PutSharedSecret(ctx, "hk", nil); !errors.Is(err, kps.ErrInvalid) {
		t.Errorf("an empty value: got %v, want ErrInvalid", err)
	}
}

// discard is an ExportSink that counts.
type discard struct{ rows int }

func (d *discard) Table(kps.Table) error       { return nil }
func (d *discard) Row(kps.Row) error           { d.rows++; return nil }
func (d *discard) Secret(string, []byte) error { return nil }

// BenchmarkExportLoad100k: a restore's load of 100,000 rows (one
// transaction, COPY) and a backup's export of them (one REPEATABLE READ
// transaction), on the test server.
func BenchmarkExportLoad100k(b *testing.B) {
	ctx := b.Context()
	rows := make([]kps.Row, 100000)
	for i := range rows {
		rows[i] = person(fmt.Sprintf("p%06d", i), fmt.Sprintf("p%06d@x", i), fmt.Sprint("team", i%50), 1)
	}
	for b.Loop() {
		s := open2(b)
		t0 := time.Now()
		if err := s.Load(ctx, false, kps.TableRows{Table: "people", Rows: rows}); err != nil {
			b.Fatal(err)
		}
		load := time.Since(t0)
		t0 = time.Now()
		d := &discard{}
		if _, err := s.Export(ctx, d); err != nil || d.rows != len(rows) {
			b.Fatalf("export: %d rows, %v", d.rows, err)
		}
		b.ReportMetric(load.Seconds(), "load-s")
		b.ReportMetric(time.Since(t0).Seconds(), "export-s")
	}
}

func open2(b *testing.B) *Store {
	cfg := newConfig(b)
	s, err := Open(b.Context(), cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	if err := s.Define(b.Context(), loadTable, otherTable); err != nil {
		b.Fatal(err)
	}
	return s
}
