package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
)

var loadTable = kps.Table{
	Collection: "Test", Name: "People", Alias: "people",
	Properties: []kps.Property{{Name: "id", Type: kps.String}, {Name: "email", Type: kps.String}, {Name: "team", Type: kps.String}, {Name: "n", Type: kps.Long}},
	PrimaryKey: "id", SecondaryKey: "email", Indexes: []string{"team"},
}

func openLoad(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), kps.SQLiteConfig{Path: filepath.Join(t.TempDir(), "kps.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Define(context.Background(), loadTable); err != nil {
		t.Fatal(err)
	}
	return s
}

func person(id, email, team string, version int64) kps.Row {
	return kps.Row{Values: map[string]any{"id": id, "email": email, "team": team, "n": int64(1) << 60}, Version: version}
}

// rows lists the table as id → version.
func rows(t *testing.T, s kps.Store) map[string]int64 {
	t.Helper()
	res, err := s.List(context.Background(), "people", kps.Page{Limit: kps.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, r := range res.Rows {
		out[r.Values["id"].(string)] = r.Version
	}
	return out
}

// noLoader hides the Loader of a store: kps.Load's fallback.
type noLoader struct{ kps.Store }

func TestLoad(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		wrap     func(*Store) kps.Store
		atomic   bool
		versions bool // versions kept
	}{
		{"loader", func(s *Store) kps.Store { return s }, true, true},
		{"fallback", func(s *Store) kps.Store { return noLoader{s} }, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := openLoad(t)
			s := tc.wrap(raw)
			two := kps.TableRows{Table: "people", Rows: []kps.Row{person("a", "a@x", "red", 7), person("b", "b@x", "red", 0)}}
			atomic, err := kps.Load(ctx, s, false, two)
			if err != nil || atomic != tc.atomic {
				t.Fatalf("Load into an empty table: atomic %v, %v; want %v, nil", atomic, err, tc.atomic)
			}
			want := map[string]int64{"a": 7, "b": 1}
			if !tc.versions {
				want["a"] = 1
			}
			if got := rows(t, s); len(got) != 2 || got["a"] != want["a"] || got["b"] != want["b"] {
				t.Errorf("after Load: got %v, want %v", got, want)
			}
			r, err := s.GetBySecondary(ctx, "people", "b@x")
			if err != nil || r.Values["n"] != int64(1)<<60 {
				t.Errorf("GetBySecondary after Load: %v, %v", r, err)
			}
			if res, err := s.Query(ctx, "people", "team", "red", kps.Page{}); err != nil || len(res.Rows) != 2 {
				t.Errorf("Query of the index after Load: %d rows, %v; want 2", len(res.Rows), err)
			}
			// Not empty: refused, nothing written.
			one := kps.TableRows{Table: "people", Rows: []kps.Row{person("c", "c@x", "blue", 1)}}
			if _, err := kps.Load(ctx, s, false, one); !errors.Is(err, kps.ErrExists) {
				t.Errorf("Load into a table with rows: got %v, want ErrExists", err)
			}
			if got := rows(t, s); len(got) != 2 {
				t.Errorf("after a refused Load: got %v, want the 2 rows", got)
			}
			// Replace.
			if _, err := kps.Load(ctx, s, true, one); err != nil {
				t.Fatal(err)
			}
			if got := rows(t, s); len(got) != 1 || got["c"] != 1 {
				t.Errorf("after Load with replace: got %v, want only c", got)
			}
			if _, err := s.GetBySecondary(ctx, "people", "a@x"); !errors.Is(err, kps.ErrNotFound) {
				t.Errorf("the replaced row's secondary key: got %v, want ErrNotFound", err)
			}
			if res, _ := s.Query(ctx, "people", "team", "red", kps.Page{}); len(res.Rows) != 0 {
				t.Errorf("the replaced rows' index: %d rows, want 0", len(res.Rows))
			}
			// An unknown table.
			if _, err := kps.Load(ctx, s, true, kps.TableRows{Table: "nope"}); !errors.Is(err, kps.ErrNotFound) {
				t.Errorf("Load into an unknown table: got %v, want ErrNotFound", err)
			}
		})
	}
}

// A row that cannot be written undoes the whole Load with a Loader (the
// fallback keeps what it wrote and says so).
func TestLoadAtomic(t *testing.T) {
	ctx := context.Background()
	s := openLoad(t)
	if _, err := s.Insert(ctx, "people", person("old", "old@x", "red", 0).Values); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		bad  kps.Row
		want error
	}{
		{"same primary key", person("a", "z@x", "red", 1), kps.ErrExists},
		{"same secondary key", person("z", "a@x", "red", 1), kps.ErrExists},
		{"wrong type", kps.Row{Values: map[string]any{"id": "z", "n": "many"}}, kps.ErrInvalid},
		{"unknown property", kps.Row{Values: map[string]any{"id": "z", "colour": "red"}}, kps.ErrInvalid},
	} {
		tr := kps.TableRows{Table: "people", Rows: []kps.Row{person("a", "a@x", "red", 1), c.bad}}
		if err := s.Load(ctx, true, tr); !errors.Is(err, c.want) {
			t.Errorf("%s: Load: got %v, want %v", c.name, err, c.want)
		}
		if got := rows(t, s); len(got) != 1 || got["old"] != 1 {
			t.Errorf("%s: after a failed Load: got %v, want the old row only", c.name, got)
		}
	}
	// One row is enough to refuse a Load without replace.
	if err := s.Load(ctx, false, kps.TableRows{Table: "people", Rows: []kps.Row{person("b", "b@x", "red", 1)}}); !errors.Is(err, kps.ErrExists) {
		t.Errorf("Load into a table with one row: got %v, want ErrExists", err)
	}
	// Replacing twice with the same rows: nothing of the first is left
	// behind (its index entries would collide).
	same := kps.TableRows{Table: "people", Rows: []kps.Row{person("a", "a@x", "red", 1)}}
	for i := 0; i < 2; i++ {
		if err := s.Load(ctx, true, same); err != nil {
			t.Fatalf("replace %d: %v", i+1, err)
		}
	}
	if res, err := s.Query(ctx, "people", "team", "red", kps.Page{}); err != nil || len(res.Rows) != 1 {
		t.Errorf("the index after two replaces: %d rows, %v; want 1", len(res.Rows), err)
	}
	_, err := kps.Load(ctx, noLoader{s}, true, kps.TableRows{Table: "people", Rows: []kps.Row{person("a", "a@x", "red", 1), person("a", "b@x", "red", 1)}})
	var le *kps.LoadError
	if !errors.As(err, &le) || le.Written["people"] != 1 || !errors.Is(err, kps.ErrExists) {
		t.Errorf("fallback Load with a key twice: got %v, want a LoadError with 1 row written wrapping ErrExists", err)
	}
}

// A statement of the load that fails (a trigger raises an error) fails the
// whole Load, and nothing of it stays.
func TestLoadFaults(t *testing.T) {
	ctx := context.Background()
	for _, fault := range []string{
		"BEFORE DELETE ON kps_rows", "BEFORE DELETE ON kps_index", "BEFORE INSERT ON kps_rows", "BEFORE INSERT ON kps_index",
	} {
		s := openLoad(t)
		if _, err := s.Insert(ctx, "people", person("old", "old@x", "blue", 0).Values); err != nil {
			t.Fatal(err)
		}
		if _, err := s.db.ExecContext(ctx, "CREATE TRIGGER fault "+fault+" BEGIN SELECT RAISE(ABORT, 'injected fault'); END"); err != nil {
			t.Fatal(err)
		}
		err := s.Load(ctx, true, kps.TableRows{Table: "people", Rows: []kps.Row{person("a", "a@x", "red", 1)}})
		if !errors.Is(err, kps.ErrUnavailable) {
			t.Errorf("%s: Load: got %v, want ErrUnavailable", fault, err)
		}
		if _, err := s.db.ExecContext(ctx, "DROP TRIGGER fault"); err != nil {
			t.Fatal(err)
		}
		if got := rows(t, s); len(got) != 1 || got["old"] != 1 {
			t.Errorf("%s: after a failed Load: got %v, want the old row only", fault, got)
		}
		if res, err := s.Query(ctx, "people", "team", "blue", kps.Page{}); err != nil || len(res.Rows) != 1 {
			t.Errorf("%s: the old row's index after a failed Load: %d rows, %v", fault, len(res.Rows), err)
		}
	}
}
