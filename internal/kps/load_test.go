package kps_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/sqlite"
)

var people = kps.Table{
	Collection: "Test", Name: "People", Alias: "people",
	Properties: []kps.Property{{Name: "id", Type: kps.String}, {Name: "email", Type: kps.String}},
	PrimaryKey: "id", SecondaryKey: "email",
}

// noLoader hides the embedded backend's Loader: kps.Load's other path.
type noLoader struct{ kps.Store }

func open(t *testing.T) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), kps.SQLiteConfig{Path: filepath.Join(t.TempDir(), "kps.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Define(context.Background(), people); err != nil {
		t.Fatal(err)
	}
	return s
}

func row(id, email string, version int64) kps.Row {
	return kps.Row{Values: map[string]any{"id": id, "email": email}, Version: version}
}

func ids(t *testing.T, s kps.Store) string {
	t.Helper()
	res, err := s.List(context.Background(), "people", kps.Page{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range res.Rows {
		out = append(out, r.Values["id"].(string)+":"+string(rune('0'+r.Version)))
	}
	return strings.Join(out, ",")
}

func TestLoadWithoutLoader(t *testing.T) {
	ctx := context.Background()
	raw := open(t)
	s := noLoader{raw}
	atomic, err := kps.Load(ctx, s, false, kps.TableRows{Table: "people", Rows: []kps.Row{row("a", "a@x", 5), row("b", "b@x", 2)}})
	if err != nil || atomic {
		t.Fatalf("Load into an empty table: atomic %v, %v; want false, nil", atomic, err)
	}
	if got := ids(t, s); got != "a:1,b:1" {
		t.Errorf("after Load: got %s, want a:1,b:1 (versions start again at 1)", got)
	}
	// Not empty: refused before anything is written, in any table.
	_, err = kps.Load(ctx, s, false, kps.TableRows{Table: "people", Rows: []kps.Row{row("c", "c@x", 1)}})
	var ke *kps.Error
	if !errors.Is(err, kps.ErrExists) || !errors.As(err, &ke) || ke.Table != "people" || !strings.Contains(err.Error(), "holds 2 rows") {
		t.Errorf("Load into a table with rows: got %v, want ErrExists naming the table and its rows", err)
	}
	if got := ids(t, s); got != "a:1,b:1" {
		t.Errorf("after a refused Load: got %s", got)
	}
	if _, err := kps.Load(ctx, s, false, kps.TableRows{Table: "nope"}); !errors.Is(err, kps.ErrNotFound) {
		t.Errorf("Load into an unknown table: got %v, want ErrNotFound", err)
	}
	// Replace: cleared, then filled.
	if _, err := kps.Load(ctx, s, true, kps.TableRows{Table: "people", Rows: []kps.Row{row("c", "c@x", 1)}}); err != nil {
		t.Fatal(err)
	}
	if got := ids(t, s); got != "c:1" {
		t.Errorf("after Load with replace: got %s, want c:1", got)
	}
	if _, err := kps.Load(ctx, s, false, kps.TableRows{Table: "people"}); !errors.Is(err, kps.ErrExists) {
		t.Errorf("Load into a table with one row: got %v, want ErrExists", err)
	}
	// A failure part way: what was written stays, and the error says how much.
	_, err = kps.Load(ctx, s, true, kps.TableRows{Table: "people", Rows: []kps.Row{row("d", "d@x", 1), row("e", "d@x", 1)}})
	var le *kps.LoadError
	if !errors.As(err, &le) || le.Written["people"] != 1 || !errors.Is(err, kps.ErrExists) || !strings.Contains(err.Error(), "not atomic") {
		t.Errorf("a Load that fails part way: got %v, want a LoadError with 1 row written", err)
	}
	if got := ids(t, s); got != "d:1" {
		t.Errorf("after a Load that failed part way: got %s, want d:1", got)
	}
	_, err = kps.Load(ctx, s, true, kps.TableRows{Table: "nope"})
	if !errors.As(err, &le) || len(le.Written) != 0 || !errors.Is(err, kps.ErrNotFound) {
		t.Errorf("a Load with replace into an unknown table: got %v, want a LoadError wrapping ErrNotFound", err)
	}
	// With a Loader: one transaction.
	atomic, err = kps.Load(ctx, raw, true, kps.TableRows{Table: "people", Rows: []kps.Row{row("f", "f@x", 3)}})
	if err != nil || !atomic || ids(t, raw) != "f:3" {
		t.Errorf("Load through the Loader: atomic %v, %v, %s; want true, nil, f:3", atomic, err, ids(t, raw))
	}
}
