// Package kpstest is the conformance suite every KPS backend passes: call
// Run from one top-level test of the backend's package,
//
//	func TestConformance(t *testing.T) { kpstest.Run(t, kpstest.Harness{New: …}) }
//
// It checks every operation and type, paging, index queries, version
// conflicts, concurrent writers in one process, several processes sharing a
// store, and that every write acknowledged before a SIGKILL is there after it.
// The multi-process cases re-execute the test binary (os.Args[0]) with
// -test.run naming that top-level test and the environment variables below:
// the child finds them in Run, does its part and exits.
//
// Faulty wraps a real store for the tests of code that uses one: it fails
// the calls a test chooses (the n-th, from the n-th on, those of an
// operation or a table), so that the test can say what that code does when
// the store fails in the middle of an operation.
package kpstest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// Environment of a child process.
const (
	envChild    = "KPSTEST_CHILD"    // the child's task: "increment N ID" or "crash"
	envConfig   = "KPSTEST_CONFIG"   // the store's kps.Config as JSON
	envPassword = "KPSTEST_PASSWORD" // Postgres.Password, which JSON never carries
)

// Harness is what a backend gives the suite.
type Harness struct {
	// New returns the configuration of a new, empty store of the backend
	// (registered in kps), for this test only; the suite opens it with
	// kps.Open, possibly several times and from child processes.
	New func(t testing.TB) kps.Config
	// Exec runs one SQL statement on the database of the store that cfg
	// describes, behind the store's back: the Sabotage subtest breaks the
	// storage with it (drops a table, damages a row or a definition). A
	// backend that is not SQL leaves it nil and the subtest is not run.
	Exec func(t testing.TB, cfg kps.Config, stmt string)
}

// Tables used by the suite.
var (
	// Things has every type, a generated primary key, a secondary key and indexes.
	Things = kps.Table{
		Collection: "Conformance", Name: "Things", Alias: "things",
		Properties: []kps.Property{
			{Name: "id", Type: kps.String, Generated: true},
			{Name: "email", Type: kps.String},
			{Name: "name", Type: kps.String},
			{Name: "flag", Type: kps.Boolean},
			{Name: "small", Type: kps.Integer},
			{Name: "big", Type: kps.Long},
			{Name: "ratio", Type: kps.Double},
			{Name: "tags", Type: kps.List},
			{Name: "attrs", Type: kps.Map},
			{Name: "color", Type: kps.String},
			{Name: "token", Type: kps.String, Generated: true},
		},
		PrimaryKey: "id", SecondaryKey: "email", Indexes: []string{"color", "flag", "small"},
	}
	// Counters has a string key and a long.
	Counters = kps.Table{
		Collection: "Conformance", Name: "Counters", Alias: "counters",
		Properties: []kps.Property{{Name: "name", Type: kps.String}, {Name: "n", Type: kps.Long}, {Name: "by", Type: kps.String}},
		PrimaryKey: "name", Indexes: []string{"by"},
	}
	// Numbered has a long primary key and an integer secondary key.
	Numbered = kps.Table{
		Collection: "Conformance", Name: "Numbered", Alias: "numbered",
		Properties: []kps.Property{{Name: "n", Type: kps.Long}, {Name: "code", Type: kps.Integer}, {Name: "label", Type: kps.String}},
		PrimaryKey: "n", SecondaryKey: "code",
	}
)

// Run runs the suite (or, in a child process, the child's task).
func Run(t *testing.T, h Harness) {
	if task := os.Getenv(envChild); task != "" {
		child(task)
		return // not reached
	}
	openOnly := func(t *testing.T, cfg kps.Config) kps.Store {
		t.Helper()
		s, err := kps.Open(t.Context(), cfg)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	open := func(t *testing.T, cfg kps.Config) kps.Store {
		t.Helper()
		s := openOnly(t, cfg)
		if err := s.Define(t.Context(), Things, Counters, Numbered); err != nil {
			t.Fatalf("define: %v", err)
		}
		return s
	}
	fresh := func(t *testing.T) kps.Store { return open(t, h.New(t)) }
	top := t.Name()

	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, fresh(t)) })
	t.Run("Generated", func(t *testing.T) { testGenerated(t, fresh(t)) })
	t.Run("Keys", func(t *testing.T) { testKeys(t, fresh(t)) })
	t.Run("Invalid", func(t *testing.T) { testInvalid(t, fresh(t)) })
	t.Run("Versions", func(t *testing.T) { testVersions(t, fresh(t)) })
	t.Run("List", func(t *testing.T) { testList(t, fresh(t)) })
	t.Run("Query", func(t *testing.T) { testQuery(t, fresh(t)) })
	t.Run("CountClear", func(t *testing.T) { testCountClear(t, fresh(t)) })
	t.Run("Define", func(t *testing.T) {
		cfg := h.New(t)
		testDefine(t, open(t, cfg), func() kps.Store { return openOnly(t, cfg) })
	})
	t.Run("Closed", func(t *testing.T) {
		s := fresh(t)
		s.Close()
		_, err := s.Get(t.Context(), "counters", "x")
		if !errors.Is(err, kps.ErrUnavailable) {
			t.Errorf("get after close: got %v, want ErrUnavailable", err)
		}
	})
	if h.Exec != nil {
		t.Run("Sabotage", func(t *testing.T) { testSabotage(t, h, open) })
	}
	t.Run("ConcurrentWriters", func(t *testing.T) { testConcurrent(t, fresh(t)) })
	t.Run("Processes", func(t *testing.T) {
		cfg := h.New(t)
		testProcesses(t, top, cfg, open(t, cfg))
	})
	t.Run("Crash", func(t *testing.T) {
		cfg := h.New(t)
		open(t, cfg).Close()
		testCrash(t, top, cfg, func() kps.Store { return openOnly(t, cfg) })
	})
}

var sentinels = []error{kps.ErrNotFound, kps.ErrExists, kps.ErrConflict, kps.ErrUnavailable, kps.ErrInvalid}

// is checks that err wraps want and no other sentinel: a missing row that
// also says "unavailable", or a conflict that also says "invalid", is a bug.
func is(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: got %v, want %v", what, err, want)
		return
	}
	for _, s := range sentinels {
		if s != want && errors.Is(err, s) {
			t.Errorf("%s: got %v, which is %v as well as %v", what, err, s, want)
		}
	}
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func equalValues(t *testing.T, what string, got, want map[string]any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\ngot  %#v\nwant %#v", what, got, want)
	}
}

func testRoundTrip(t *testing.T, s kps.Store) {
	ctx := t.Context()
	big := strings.Repeat("ü€😀x", 1<<18) // 2.5 MiB of mixed-width UTF-8
	longList := make([]string, 2000)
	bigMap := make(map[string]string, 500)
	for i := range longList {
		longList[i] = fmt.Sprintf("item %d ☃", i)
	}
	for i := range 500 {
		bigMap[fmt.Sprintf("k%d", i)] = strings.Repeat("v", i)
	}
	cases := []map[string]any{
		{"id": "all", "email": "a@example.com", "name": "Zoë «quoted» \"\\ \t\n", "flag": true, "small": int32(math.MinInt32),
			"big": int64(math.MaxInt64), "ratio": 0.1, "tags": []string{"a", "", "ß"}, "attrs": map[string]string{"": "", "κ": "λ\u0000μ"},
			"color": "red", "token": "given"},
		{"id": "empty", "email": "", "name": "", "flag": false, "small": int32(0), "big": int64(math.MinInt64), "ratio": math.Copysign(0, -1),
			"tags": []string{}, "attrs": map[string]string{}, "color": "", "token": ""},
		{"id": "large", "name": big, "tags": longList, "attrs": bigMap, "small": int32(math.MaxInt32), "ratio": math.MaxFloat64, "token": "t"},
		{"id": "tiny", "ratio": math.SmallestNonzeroFloat64, "big": int64(-1), "token": "t"},
		{"id": "日本語のキー 🔑", "name": "ключ", "token": "t"},
	}
	for _, vals := range cases {
		row, err := s.Insert(ctx, "things", vals)
		must(t, "insert "+fmt.Sprint(vals["id"])[:min(10, len(fmt.Sprint(vals["id"])))], err)
		if row.Version != 1 {
			t.Errorf("insert: version %d, want 1", row.Version)
		}
		equalValues(t, "insert's row", row.Values, vals)
		got, err := s.Get(ctx, "things", vals["id"])
		must(t, "get", err)
		equalValues(t, "get", got.Values, vals)
		if got.Version != 1 {
			t.Errorf("get: version %d, want 1", got.Version)
		}
		if r := got.Values["ratio"]; r != nil && math.Signbit(r.(float64)) != math.Signbit(vals["ratio"].(float64)) {
			t.Errorf("ratio's sign: got %v, want %v", r, vals["ratio"])
		}
	}
	// int for integer and long, float32 for double, nil for absent.
	row, err := s.Insert(ctx, "things", map[string]any{"id": "ints", "small": 7, "big": 8, "ratio": float32(0.5), "name": nil})
	must(t, "insert with int", err)
	equalValues(t, "ints", row.Values, map[string]any{"id": "ints", "small": int32(7), "big": int64(8), "ratio": 0.5, "token": row.Values["token"]})
	got, err := s.GetBySecondary(ctx, "things", "a@example.com")
	must(t, "get by secondary", err)
	equalValues(t, "get by secondary", got.Values, cases[0])
	got, err = s.GetBySecondary(ctx, "things", "")
	must(t, "get by empty secondary", err)
	if got.Values["id"] != "empty" {
		t.Errorf("get by empty secondary: got %v, want the row empty", got.Values["id"])
	}
	// A nil list or map is stored as an empty one.
	row, err = s.Insert(ctx, "things", map[string]any{"id": "nils", "tags": []string(nil), "attrs": map[string]string(nil)})
	must(t, "insert nils", err)
	got, err = s.Get(ctx, "things", "nils")
	must(t, "get nils", err)
	if l, ok := got.Values["tags"].([]string); !ok || l == nil || len(l) != 0 {
		t.Errorf("nil list: got %#v, want []string{}", got.Values["tags"])
	}
	if m, ok := got.Values["attrs"].(map[string]string); !ok || m == nil || len(m) != 0 {
		t.Errorf("nil map: got %#v, want map[string]string{}", got.Values["attrs"])
	}
	equalValues(t, "insert's row of nils", row.Values, got.Values)
}

func testGenerated(t *testing.T, s kps.Store) {
	ctx := t.Context()
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 20 {
		row, err := s.Insert(ctx, "things", map[string]any{"name": "gen"})
		must(t, "insert", err)
		id, _ := row.Values["id"].(string)
		tok, _ := row.Values["token"].(string)
		if !uuid.MatchString(id) || !uuid.MatchString(tok) {
			t.Fatalf("generated id %q, token %q: want UUIDs", id, tok)
		}
		if seen[id] || seen[tok] || id == tok {
			t.Fatalf("generated id %q or token %q seen before", id, tok)
		}
		seen[id], seen[tok] = true, true
		got, err := s.Get(ctx, "things", id)
		must(t, "get", err)
		equalValues(t, "get", got.Values, row.Values)
		// An update without the generated token keeps it; one with it changes it.
		up, err := s.Update(ctx, "things", kps.Row{Values: map[string]any{"id": id, "name": "changed"}, Version: 1})
		must(t, "update", err)
		equalValues(t, "update keeps token", up.Values, map[string]any{"id": id, "name": "changed", "token": tok})
		up, err = s.Update(ctx, "things", kps.Row{Values: map[string]any{"id": id, "token": "mine"}, Version: 2})
		must(t, "update token", err)
		got, err = s.Get(ctx, "things", id)
		must(t, "get", err)
		equalValues(t, "token given", got.Values, map[string]any{"id": id, "token": "mine"})
		equalValues(t, "update's row", up.Values, got.Values)
	}
	row, err := s.Insert(ctx, "things", map[string]any{"id": "given", "token": "t0"})
	must(t, "insert given", err)
	equalValues(t, "given", row.Values, map[string]any{"id": "given", "token": "t0"})
}

func testKeys(t *testing.T, s kps.Store) {
	ctx := t.Context()
	for i := range 5 {
		_, err := s.Insert(ctx, "numbered", map[string]any{"n": int64(i * 1000), "code": int32(i), "label": fmt.Sprint(i)})
		must(t, "insert numbered", err)
	}
	for _, key := range []any{3000, int32(3000), int64(3000)} {
		got, err := s.Get(ctx, "numbered", key)
		must(t, fmt.Sprintf("get %T", key), err)
		if got.Values["label"] != "3" {
			t.Errorf("get %T(3000): got %v, want label 3", key, got.Values)
		}
	}
	got, err := s.GetBySecondary(ctx, "numbered", 4)
	must(t, "get by secondary int", err)
	if got.Values["n"] != int64(4000) {
		t.Errorf("get by secondary: got %v, want n 4000", got.Values)
	}
	_, err = s.Get(ctx, "numbered", "3000")
	is(t, "get with a string key on a long", err, kps.ErrInvalid)
	_, err = s.Get(ctx, "numbered", int64(3001))
	is(t, "get missing", err, kps.ErrNotFound)
	_, err = s.GetBySecondary(ctx, "numbered", 9)
	is(t, "get by secondary missing", err, kps.ErrNotFound)
	_, err = s.GetBySecondary(ctx, "counters", "x")
	is(t, "get by secondary without one", err, kps.ErrInvalid)
	if err == nil || !strings.Contains(err.Error(), "no secondary key") {
		t.Errorf("get by secondary without one: got %v, want it to say the table has no secondary key", err)
	}
	_, err = s.Get(ctx, "nosuch", "x")
	is(t, "get from an unknown table", err, kps.ErrNotFound)
	_, err = s.Insert(ctx, "numbered", map[string]any{"n": int64(0), "code": int32(77)})
	is(t, "insert an existing key", err, kps.ErrExists)
	_, err = s.Insert(ctx, "numbered", map[string]any{"n": int64(5), "code": int32(1)})
	is(t, "insert an existing secondary key", err, kps.ErrExists)
	if _, err := s.Get(ctx, "numbered", 5); !errors.Is(err, kps.ErrNotFound) {
		t.Errorf("a refused insert left a row: %v", err)
	}
	got, err = s.Get(ctx, "numbered", 0)
	must(t, "get 0", err)
	if got.Values["code"] != int32(0) {
		t.Errorf("a refused insert changed the row: %v", got.Values)
	}
	// Moving the secondary key: onto another row's is refused; onto a free
	// one frees the old.
	_, err = s.Update(ctx, "numbered", kps.Row{Values: map[string]any{"n": int64(0), "code": int32(1)}, Version: 1})
	is(t, "update onto a taken secondary key", err, kps.ErrExists)
	_, err = s.Update(ctx, "numbered", kps.Row{Values: map[string]any{"n": int64(0), "code": int32(50)}, Version: 1})
	must(t, "update onto a free secondary key", err)
	_, err = s.GetBySecondary(ctx, "numbered", 0)
	is(t, "old secondary key", err, kps.ErrNotFound)
	_, err = s.Insert(ctx, "numbered", map[string]any{"n": int64(6), "code": int32(0)})
	must(t, "insert with the freed secondary key", err)
	// Rows without a secondary key do not collide.
	for i := 10; i < 13; i++ {
		_, err := s.Insert(ctx, "numbered", map[string]any{"n": int64(i)})
		must(t, "insert without a secondary key", err)
	}
	// Deleting frees both keys.
	must(t, "delete", s.Delete(ctx, "numbered", 6, kps.AnyVersion))
	_, err = s.GetBySecondary(ctx, "numbered", 0)
	is(t, "secondary key of a deleted row", err, kps.ErrNotFound)
	_, err = s.Insert(ctx, "numbered", map[string]any{"n": int64(6), "code": int32(0)})
	must(t, "insert again", err)
}

func testInvalid(t *testing.T, s kps.Store) {
	ctx := t.Context()
	bad := []map[string]any{
		{"id": "x", "unknown": "y"},
		{"id": "x", "small": "1"},
		{"id": "x", "small": int64(math.MaxInt32) + 1},
		{"id": "x", "small": 1.0},
		{"id": "x", "big": "1"},
		{"id": "x", "ratio": math.NaN()},
		{"id": "x", "ratio": math.Inf(1)},
		{"id": "x", "ratio": 1},
		{"id": "x", "flag": "true"},
		{"id": "x", "name": "\xff"},
		{"id": "x", "tags": []string{"\xfe"}},
		{"id": "x", "tags": []any{"a"}},
		{"id": "x", "attrs": map[string]any{"a": "b"}},
		{"id": "x", "attrs": map[string]string{"\xff": "b"}},
		{"id": "x", "color": "a\x00b"},
		{"id": "x", "color": strings.Repeat("c", kps.MaxKeyLen+1)},
		{"id": "x", "email": "a\x00b"},
		{"id": ""},
		{"id": 5},
		{"id": "x", "name": strings.Repeat("n", kps.MaxRowBytes)},
	}
	for i, vals := range bad {
		_, err := s.Insert(ctx, "things", vals)
		is(t, fmt.Sprintf("insert %d", i), err, kps.ErrInvalid)
	}
	_, err := s.Insert(ctx, "numbered", map[string]any{"code": int32(1)})
	is(t, "insert without the primary key", err, kps.ErrInvalid)
	n, err := s.Count(ctx, "things")
	must(t, "count", err)
	if n != 0 {
		t.Errorf("count after refused inserts: got %d, want 0", n)
	}
	_, err = s.Insert(ctx, "things", map[string]any{"id": "ok"})
	must(t, "insert", err)
	_, err = s.Update(ctx, "things", kps.Row{Values: map[string]any{"id": "ok", "small": "x"}, Version: 1})
	is(t, "update with a bad value", err, kps.ErrInvalid)
	_, err = s.Update(ctx, "things", kps.Row{Values: map[string]any{"name": "no key"}, Version: 1})
	is(t, "update without the key", err, kps.ErrInvalid)
	is(t, "delete with a bad key", s.Delete(ctx, "numbered", "x", kps.AnyVersion), kps.ErrInvalid)
	_, err = s.List(ctx, "things", kps.Page{Cursor: "!!"})
	is(t, "list with a bad cursor", err, kps.ErrInvalid)
	_, err = s.Query(ctx, "things", "color", "red", kps.Page{Cursor: "%%%"})
	is(t, "query with a bad cursor", err, kps.ErrInvalid)
	_, err = s.Query(ctx, "things", "name", "x", kps.Page{})
	is(t, "query a property that is not indexed", err, kps.ErrInvalid)
	_, err = s.Query(ctx, "things", "small", "x", kps.Page{})
	is(t, "query with a value of the wrong type", err, kps.ErrInvalid)
	got, err := s.Get(ctx, "things", "ok")
	must(t, "get", err)
	if got.Version != 1 {
		t.Errorf("a refused update changed the version: got %d, want 1", got.Version)
	}
}

func testVersions(t *testing.T, s kps.Store) {
	ctx := t.Context()
	row, err := s.Insert(ctx, "counters", map[string]any{"name": "c", "n": int64(0)})
	must(t, "insert", err)
	for i := 1; i <= 3; i++ {
		row.Values["n"] = int64(i)
		row, err = s.Update(ctx, "counters", row)
		must(t, "update", err)
		if row.Version != int64(i+1) {
			t.Errorf("update %d: version %d, want %d", i, row.Version, i+1)
		}
	}
	for _, v := range []int64{1, 3, 5, 0, -1} {
		_, err = s.Update(ctx, "counters", kps.Row{Values: map[string]any{"name": "c", "n": int64(99)}, Version: v})
		is(t, fmt.Sprintf("update with version %d of 4", v), err, kps.ErrConflict)
	}
	got, err := s.Get(ctx, "counters", "c")
	must(t, "get", err)
	if got.Version != 4 || got.Values["n"] != int64(3) {
		t.Errorf("after conflicts: got version %d n %v, want 4 and 3", got.Version, got.Values["n"])
	}
	_, err = s.Update(ctx, "counters", kps.Row{Values: map[string]any{"name": "none"}, Version: 1})
	is(t, "update a missing row", err, kps.ErrNotFound)
	is(t, "delete with a stale version", s.Delete(ctx, "counters", "c", 3), kps.ErrConflict)
	is(t, "delete with a newer version", s.Delete(ctx, "counters", "c", 5), kps.ErrConflict)
	if _, err := s.Get(ctx, "counters", "c"); err != nil {
		t.Errorf("a refused delete removed the row: %v", err)
	}
	must(t, "delete with the version", s.Delete(ctx, "counters", "c", 4))
	_, err = s.Get(ctx, "counters", "c")
	is(t, "get a deleted row", err, kps.ErrNotFound)
	is(t, "delete a missing row", s.Delete(ctx, "counters", "c", kps.AnyVersion), kps.ErrNotFound)
	_, err = s.Insert(ctx, "counters", map[string]any{"name": "c", "n": int64(0)})
	must(t, "insert again", err)
	row, err = s.Update(ctx, "counters", kps.Row{Values: map[string]any{"name": "c"}, Version: 1})
	must(t, "update", err)
	must(t, "delete any version", s.Delete(ctx, "counters", "c", kps.AnyVersion))
	got, err = s.Insert(ctx, "counters", map[string]any{"name": "c"})
	must(t, "insert after delete", err)
	if got.Version != 1 || row.Version != 2 {
		t.Errorf("versions: got %d and %d, want 2 then 1 after a new insert", row.Version, got.Version)
	}
	_, err = s.Update(ctx, "counters", kps.Row{Values: map[string]any{"name": "c"}, Version: 2})
	is(t, "a version of the deleted row", err, kps.ErrConflict)
}

// collect reads every page, checking their sizes.
func collect(t *testing.T, limit int, page func(kps.Page) (kps.Result, error)) []kps.Row {
	t.Helper()
	var all []kps.Row
	p := kps.Page{Limit: limit}
	for i := 0; ; i++ {
		if i > 1000 {
			t.Fatal("paging does not end")
		}
		res, err := page(p)
		must(t, "page", err)
		all = append(all, res.Rows...)
		if res.Next == "" {
			if limit > 0 && len(res.Rows) > limit {
				t.Errorf("last page: %d rows, limit %d", len(res.Rows), limit)
			}
			return all
		}
		if len(res.Rows) != p.PageLimit() {
			t.Errorf("page %d: %d rows, want %d", i, len(res.Rows), p.PageLimit())
		}
		p.Cursor = res.Next
	}
}

func keys(rows []kps.Row, prop string) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = fmt.Sprint(r.Values[prop])
	}
	return out
}

func testList(t *testing.T, s kps.Store) {
	ctx := t.Context()
	var want []string
	for i := range 57 {
		k := fmt.Sprintf("k%03d", i)
		want = append(want, k)
		_, err := s.Insert(ctx, "counters", map[string]any{"name": k, "n": int64(i)})
		must(t, "insert", err)
	}
	for _, limit := range []int{1, 10, 57, 56, 100, 0} {
		got := keys(collect(t, limit, func(p kps.Page) (kps.Result, error) { return s.List(ctx, "counters", p) }), "name")
		if !reflect.DeepEqual(got, want) {
			t.Errorf("list by %d: got %v, want %v", limit, got, want)
		}
	}
	res, err := s.List(ctx, "counters", kps.Page{Limit: 5})
	must(t, "list", err)
	if len(res.Rows) != 5 || res.Next == "" || res.Rows[4].Values["n"] != int64(4) || res.Rows[0].Version != 1 {
		t.Errorf("first page of 5: got %d rows, next %q", len(res.Rows), res.Next)
	}
	// A page of more than MaxLimit is capped; the default is DefaultLimit.
	for i := 57; i < kps.MaxLimit+5; i++ {
		_, err := s.Insert(ctx, "counters", map[string]any{"name": fmt.Sprintf("k%04d", i)})
		must(t, "insert", err)
	}
	res, err = s.List(ctx, "counters", kps.Page{Limit: kps.MaxLimit + 3})
	must(t, "list", err)
	if len(res.Rows) != kps.MaxLimit || res.Next == "" {
		t.Errorf("list over the limit: got %d rows, want %d and more", len(res.Rows), kps.MaxLimit)
	}
	res, err = s.List(ctx, "counters", kps.Page{})
	must(t, "list", err)
	if len(res.Rows) != kps.DefaultLimit {
		t.Errorf("list with no limit: got %d rows, want %d", len(res.Rows), kps.DefaultLimit)
	}
	res, err = s.List(ctx, "numbered", kps.Page{})
	must(t, "list an empty table", err)
	if len(res.Rows) != 0 || res.Next != "" {
		t.Errorf("empty table: got %d rows, next %q", len(res.Rows), res.Next)
	}
	_, err = s.List(ctx, "nosuch", kps.Page{})
	is(t, "list an unknown table", err, kps.ErrNotFound)
	// Order is the key's text, bytewise: "10" sorts before "9".
	for _, n := range []int64{9, 10, -1, 100} {
		_, err := s.Insert(ctx, "numbered", map[string]any{"n": n})
		must(t, "insert", err)
	}
	got := keys(collect(t, 2, func(p kps.Page) (kps.Result, error) { return s.List(ctx, "numbered", p) }), "n")
	if w := []string{"-1", "10", "100", "9"}; !reflect.DeepEqual(got, w) {
		t.Errorf("numbered order: got %v, want %v", got, w)
	}
}

func testQuery(t *testing.T, s kps.Store) {
	ctx := t.Context()
	colors := []string{"red", "green", "blue"}
	want := map[string][]string{}
	for i := range 40 {
		id := fmt.Sprintf("t%02d", i)
		c := colors[i%3]
		vals := map[string]any{"id": id, "color": c, "flag": i%2 == 0, "small": int32(i % 4)}
		if i == 39 {
			delete(vals, "color")
		} else {
			want[c] = append(want[c], id)
		}
		_, err := s.Insert(ctx, "things", vals)
		must(t, "insert", err)
	}
	for _, c := range colors {
		for _, limit := range []int{1, 3, 13, 14, 0} {
			got := keys(collect(t, limit, func(p kps.Page) (kps.Result, error) { return s.Query(ctx, "things", "color", c, p) }), "id")
			if !reflect.DeepEqual(got, want[c]) {
				t.Errorf("query color=%s by %d: got %v, want %v", c, limit, got, want[c])
			}
		}
	}
	res, err := s.Query(ctx, "things", "color", "mauve", kps.Page{})
	must(t, "query", err)
	if len(res.Rows) != 0 || res.Next != "" {
		t.Errorf("query a value no row has: got %d rows", len(res.Rows))
	}
	flags := collect(t, 7, func(p kps.Page) (kps.Result, error) { return s.Query(ctx, "things", "flag", true, p) })
	if len(flags) != 20 {
		t.Errorf("query flag=true: got %d rows, want 20", len(flags))
	}
	smalls := collect(t, 0, func(p kps.Page) (kps.Result, error) { return s.Query(ctx, "things", "small", 3, p) })
	if len(smalls) != 10 || smalls[0].Values["id"] != "t03" {
		t.Errorf("query small=3: got %v", keys(smalls, "id"))
	}
	// An update moves the row between values; a delete removes it; removing
	// the value removes it from the index.
	_, err = s.Update(ctx, "things", kps.Row{Values: map[string]any{"id": "t00", "color": "blue", "flag": true}, Version: 1})
	must(t, "update", err)
	must(t, "delete", s.Delete(ctx, "things", "t03", 1))
	_, err = s.Update(ctx, "things", kps.Row{Values: map[string]any{"id": "t06"}, Version: 1})
	must(t, "update", err)
	red := keys(collect(t, 0, func(p kps.Page) (kps.Result, error) { return s.Query(ctx, "things", "color", "red", p) }), "id")
	wantRed := slicesWithout(want["red"], "t00", "t03", "t06")
	if !reflect.DeepEqual(red, wantRed) {
		t.Errorf("red after changes: got %v, want %v", red, wantRed)
	}
	blue := keys(collect(t, 0, func(p kps.Page) (kps.Result, error) { return s.Query(ctx, "things", "color", "blue", p) }), "id")
	if len(blue) != len(want["blue"])+1 || blue[0] != "t00" {
		t.Errorf("blue after changes: got %v", blue)
	}
	res, err = s.Query(ctx, "things", "color", "blue", kps.Page{Limit: 1})
	must(t, "query", err)
	if res.Rows[0].Version != 2 || res.Rows[0].Values["flag"] != true {
		t.Errorf("query's row: got %v version %d", res.Rows[0].Values, res.Rows[0].Version)
	}
	_, err = s.Query(ctx, "nosuch", "color", "red", kps.Page{})
	is(t, "query an unknown table", err, kps.ErrNotFound)
}

func slicesWithout(s []string, drop ...string) []string {
	var out []string
	for _, x := range s {
		keep := true
		for _, d := range drop {
			keep = keep && x != d
		}
		if keep {
			out = append(out, x)
		}
	}
	return out
}

func testCountClear(t *testing.T, s kps.Store) {
	ctx := t.Context()
	for i := range 30 {
		_, err := s.Insert(ctx, "things", map[string]any{"id": fmt.Sprint(i), "color": "red", "email": fmt.Sprint(i, "@x")})
		must(t, "insert", err)
	}
	_, err := s.Insert(ctx, "counters", map[string]any{"name": "keep"})
	must(t, "insert", err)
	n, err := s.Count(ctx, "things")
	must(t, "count", err)
	if n != 30 {
		t.Errorf("count: got %d, want 30", n)
	}
	must(t, "delete", s.Delete(ctx, "things", "7", kps.AnyVersion))
	if n, _ = s.Count(ctx, "things"); n != 29 {
		t.Errorf("count after a delete: got %d, want 29", n)
	}
	must(t, "clear", s.Clear(ctx, "things"))
	if n, _ = s.Count(ctx, "things"); n != 0 {
		t.Errorf("count after clear: got %d, want 0", n)
	}
	if n, _ = s.Count(ctx, "counters"); n != 1 {
		t.Errorf("clear touched another table: count %d, want 1", n)
	}
	res, err := s.Query(ctx, "things", "color", "red", kps.Page{})
	must(t, "query after clear", err)
	if len(res.Rows) != 0 {
		t.Errorf("query after clear: got %d rows", len(res.Rows))
	}
	// The keys are free again.
	_, err = s.Insert(ctx, "things", map[string]any{"id": "1", "email": "2@x"})
	must(t, "insert after clear", err)
	n, err = s.Count(ctx, "nosuch")
	is(t, "count an unknown table", err, kps.ErrNotFound)
	if n != 0 {
		t.Errorf("count an unknown table: got %d, want 0 with the error", n)
	}
	is(t, "clear an unknown table", s.Clear(ctx, "nosuch"), kps.ErrNotFound)
	is(t, "delete from an unknown table", s.Delete(ctx, "nosuch", "x", 0), kps.ErrNotFound)
	_, err = s.Insert(ctx, "nosuch", map[string]any{"x": "y"})
	is(t, "insert into an unknown table", err, kps.ErrNotFound)
	if err == nil || err.Error() != "kps insert nosuch: kps: not found: no table with this alias" {
		t.Errorf("insert into an unknown table: got %q", err)
	}
	_, err = s.Update(ctx, "nosuch", kps.Row{Values: map[string]any{"x": "y"}})
	is(t, "update an unknown table", err, kps.ErrNotFound)
}

func testDefine(t *testing.T, s kps.Store, reopen func() kps.Store) {
	ctx := t.Context()
	tables, err := s.Tables(ctx)
	must(t, "tables", err)
	if len(tables) != 3 || tables[0].Alias != "counters" || tables[1].Alias != "numbered" || !tables[2].Equal(&Things) {
		t.Errorf("tables: got %+v", tables)
	}
	bad := Counters.Clone()
	bad.PrimaryKey = "nope"
	is(t, "define an invalid table", s.Define(ctx, bad), kps.ErrInvalid)
	is(t, "define a table twice", s.Define(ctx, Counters, Counters), kps.ErrInvalid)
	must(t, "define again", s.Define(ctx, Counters, Things, Numbered))
	for i := range 6 {
		_, err := s.Insert(ctx, "counters", map[string]any{"name": fmt.Sprint("c", i), "n": int64(i % 2), "by": "me"})
		must(t, "insert", err)
	}
	// An incompatible change is refused and changes nothing.
	retyped := Counters.Clone()
	retyped.Properties[1].Type = kps.Integer
	is(t, "change a type", s.Define(ctx, retyped), kps.ErrInvalid)
	rekeyed := Counters.Clone()
	rekeyed.PrimaryKey = "by"
	rekeyed.Indexes = nil
	is(t, "change the primary key", s.Define(ctx, rekeyed), kps.ErrInvalid)
	// A compatible change: n indexed, a new secondary key, a new property,
	// "by" no longer indexed.
	changed := Counters.Clone()
	changed.Properties = append(changed.Properties, kps.Property{Name: "extra", Type: kps.List})
	changed.Indexes = []string{"n"}
	changed.SecondaryKey = "extra2"
	changed.Properties = append(changed.Properties, kps.Property{Name: "extra2", Type: kps.String})
	must(t, "change compatibly", s.Define(ctx, changed))
	ones := collect(t, 0, func(p kps.Page) (kps.Result, error) { return s.Query(ctx, "counters", "n", int64(1), p) })
	if got := keys(ones, "name"); !reflect.DeepEqual(got, []string{"c1", "c3", "c5"}) {
		t.Errorf("query a new index over old rows: got %v", got)
	}
	_, err = s.Query(ctx, "counters", "by", "me", kps.Page{})
	is(t, "query a dropped index", err, kps.ErrInvalid)
	_, err = s.Insert(ctx, "counters", map[string]any{"name": "x", "extra": []string{"a"}, "extra2": "s"})
	must(t, "insert with the new properties", err)
	_, err = s.Insert(ctx, "counters", map[string]any{"name": "y", "extra2": "s"})
	is(t, "the new secondary key is unique", err, kps.ErrExists)
	// Another store on the same data sees the change (and so does this one
	// after the other defines).
	other := reopen()
	got, err := other.GetBySecondary(ctx, "counters", "s")
	must(t, "get by the new secondary key elsewhere", err)
	if got.Values["name"] != "x" {
		t.Errorf("elsewhere: got %v", got.Values)
	}
	extra := kps.Table{Collection: "C", Name: "Late", Alias: "late", Properties: []kps.Property{{Name: "k", Type: kps.String}}, PrimaryKey: "k"}
	must(t, "define elsewhere", other.Define(ctx, extra))
	_, err = s.Insert(ctx, "late", map[string]any{"k": "v"})
	must(t, "insert into a table defined elsewhere", err)
	if _, err := other.Get(ctx, "late", "v"); err != nil {
		t.Errorf("get elsewhere: %v", err)
	}
	// A secondary key added over rows with distinct values indexes them.
	for n, label := range map[int64]string{1: "one", 2: "two"} {
		_, err = s.Insert(ctx, "numbered", map[string]any{"n": n, "label": label})
		must(t, "insert", err)
	}
	byLabel := Numbered.Clone()
	byLabel.SecondaryKey = "label"
	must(t, "a secondary key over distinct values", s.Define(ctx, byLabel))
	got, err = s.GetBySecondary(ctx, "numbered", "two")
	must(t, "get by the new secondary key", err)
	if got.Values["n"] != int64(2) {
		t.Errorf("get by the new secondary key: got %v", got.Values)
	}
	_, err = s.Update(ctx, "numbered", kps.Row{Values: map[string]any{"n": int64(2), "label": "one"}, Version: 1})
	is(t, "update onto a taken new secondary key", err, kps.ErrExists)
	// Back to the old one; then a secondary key over rows that share its
	// value is refused, and the definition in force stays.
	must(t, "define back", s.Define(ctx, Numbered))
	_, err = s.Update(ctx, "numbered", kps.Row{Values: map[string]any{"n": int64(2), "label": "one"}, Version: 1})
	must(t, "update to a shared label", err)
	is(t, "a secondary key over duplicates", s.Define(ctx, byLabel), kps.ErrExists)
	if _, err := s.GetBySecondary(ctx, "numbered", "one"); !errors.Is(err, kps.ErrInvalid) {
		t.Errorf("the refused definition is in force: %v", err)
	}
}

// testSabotage breaks the storage behind the store's back: every operation
// that touches the broken part fails with ErrUnavailable, and nothing else:
// never ErrNotFound, never a success.
func testSabotage(t *testing.T, h Harness, open func(t *testing.T, cfg kps.Config) kps.Store) {
	withIndex := Things.Clone()
	withIndex.Indexes = append(withIndex.Indexes, "name")
	ops := map[string]func(ctx context.Context, s kps.Store) error{
		"get": func(ctx context.Context, s kps.Store) error { _, err := s.Get(ctx, "things", "a"); return err },
		"secondary": func(ctx context.Context, s kps.Store) error {
			_, err := s.GetBySecondary(ctx, "things", "a@x")
			return err
		},
		"query": func(ctx context.Context, s kps.Store) error {
			_, err := s.Query(ctx, "things", "color", "red", kps.Page{})
			return err
		},
		"list":  func(ctx context.Context, s kps.Store) error { _, err := s.List(ctx, "things", kps.Page{}); return err },
		"count": func(ctx context.Context, s kps.Store) error { _, err := s.Count(ctx, "things"); return err },
		"insert": func(ctx context.Context, s kps.Store) error {
			_, err := s.Insert(ctx, "things", map[string]any{"id": "n", "email": "n@x", "color": "red"})
			return err
		},
		"update": func(ctx context.Context, s kps.Store) error {
			_, err := s.Update(ctx, "things", kps.Row{Values: map[string]any{"id": "a", "email": "a@x", "color": "blue"}, Version: 1})
			return err
		},
		"delete": func(ctx context.Context, s kps.Store) error { return s.Delete(ctx, "things", "a", 1) },
		"clear":  func(ctx context.Context, s kps.Store) error { return s.Clear(ctx, "things") },
		"define": func(ctx context.Context, s kps.Store) error { return s.Define(ctx, withIndex) },
		"tables": func(ctx context.Context, s kps.Store) error { _, err := s.Tables(ctx); return err },
	}
	for _, c := range []struct {
		stmts []string
		fail  []string
	}{
		{[]string{"DROP TABLE kps_index"}, []string{"query", "insert", "update", "delete", "clear", "define"}},
		{[]string{"DROP TABLE kps_rows"}, []string{"get", "secondary", "query", "list", "count", "insert", "update", "delete", "clear", "define"}},
		{[]string{"DROP TABLE kps_meta"}, []string{"insert", "update", "delete", "clear", "define", "tables"}},
		{[]string{"DROP TABLE kps_tables"}, []string{"define"}},
		{[]string{`UPDATE kps_rows SET data = '{"id":5}'`}, []string{"get", "secondary", "query", "list", "update", "define"}},
		{[]string{`UPDATE kps_tables SET def = '{'`, "UPDATE kps_meta SET value = value + 1"}, []string{"insert", "update", "delete", "clear", "define", "tables"}},
	} {
		t.Run(c.stmts[0], func(t *testing.T) {
			cfg := h.New(t)
			s := open(t, cfg)
			ctx := t.Context()
			for _, vals := range []map[string]any{{"id": "a", "email": "a@x", "color": "red"}, {"id": "b", "color": "red"}} {
				_, err := s.Insert(ctx, "things", vals)
				must(t, "insert", err)
			}
			for _, stmt := range c.stmts {
				h.Exec(t, cfg, stmt)
			}
			for _, name := range c.fail {
				is(t, name, ops[name](ctx, s), kps.ErrUnavailable)
			}
		})
	}
	// A damaged definition fails Open too.
	cfg := h.New(t)
	open(t, cfg).Close()
	h.Exec(t, cfg, `UPDATE kps_tables SET def = '{"alias": "things"}'`)
	s, err := kps.Open(t.Context(), cfg)
	if err == nil {
		s.Close()
	}
	is(t, "open with a damaged definition", err, kps.ErrUnavailable)
}

func testConcurrent(t *testing.T, s kps.Store) {
	ctx := t.Context()
	_, err := s.Insert(ctx, "counters", map[string]any{"name": "hits", "n": int64(0)})
	must(t, "insert", err)
	const workers, each = 8, 25
	var wg sync.WaitGroup
	var failures sync.Map
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if _, err := increment(ctx, s, "hits"); err != nil {
					failures.Store(w, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	failures.Range(func(k, v any) bool { t.Errorf("worker %v: %v", k, v); return true })
	got, err := s.Get(ctx, "counters", "hits")
	must(t, "get", err)
	if got.Values["n"] != int64(workers*each) || got.Version != workers*each+1 {
		t.Errorf("after %d increments: n %v version %d, want %d and %d", workers*each, got.Values["n"], got.Version, workers*each, workers*each+1)
	}
}

// increment adds one to a counter, retrying on conflicts; it returns the
// number of conflicts met.
func increment(ctx context.Context, s kps.Store, name string) (int, error) {
	for retry := 0; retry < 10000; retry++ {
		row, err := s.Get(ctx, "counters", name)
		if err != nil {
			return retry, err
		}
		row.Values["n"] = row.Values["n"].(int64) + 1
		_, err = s.Update(ctx, "counters", row)
		if err == nil {
			return retry, nil
		}
		if !errors.Is(err, kps.ErrConflict) {
			return retry, err
		}
	}
	return 0, errors.New("10000 conflicts in a row")
}

// childCommand re-executes the test binary as a child doing task.
func childCommand(t *testing.T, top string, cfg kps.Config, task string) *exec.Cmd {
	b, err := json.Marshal(cfg)
	must(t, "config", err)
	// A child that hangs is killed: the test fails instead of waiting forever.
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^"+regexp.QuoteMeta(top)+"$", "-test.count=1")
	cmd.WaitDelay = time.Second
	timer := time.AfterFunc(2*time.Minute, func() {
		if cmd.Process != nil {
			cmd.Process.Kill()
		}
	})
	t.Cleanup(func() { timer.Stop() })
	cmd.Env = append(os.Environ(), envChild+"="+task, envConfig+"="+string(b), envPassword+"="+cfg.Postgres.Password.RevealString())
	cmd.Stderr = os.Stderr
	return cmd
}

func testProcesses(t *testing.T, top string, cfg kps.Config, s kps.Store) {
	ctx := t.Context()
	_, err := s.Insert(ctx, "counters", map[string]any{"name": "shared", "n": int64(0)})
	must(t, "insert", err)
	const procs, each = 3, 20
	cmds := make([]*exec.Cmd, procs)
	for i := range cmds {
		cmds[i] = childCommand(t, top, cfg, fmt.Sprintf("increment %d p%d", each, i))
		must(t, "start child", cmds[i].Start())
	}
	// This process writes too, meanwhile.
	for range each {
		if _, err := increment(ctx, s, "shared"); err != nil {
			t.Fatalf("increment: %v", err)
		}
	}
	for i, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Errorf("child %d: %v", i, err)
		}
	}
	got, err := s.Get(ctx, "counters", "shared")
	must(t, "get", err)
	if got.Values["n"] != int64((procs+1)*each) {
		t.Errorf("shared counter after %d processes × %d: got %v, want %d", procs+1, each, got.Values["n"], (procs+1)*each)
	}
	for i := range procs {
		rows := collect(t, 7, func(p kps.Page) (kps.Result, error) { return s.Query(ctx, "counters", "by", fmt.Sprint("p", i), p) })
		if len(rows) != each {
			t.Errorf("rows written by child %d: got %d, want %d", i, len(rows), each)
		}
	}
}

func testCrash(t *testing.T, top string, cfg kps.Config, reopen func() kps.Store) {
	cmd := childCommand(t, top, cfg, "crash")
	out, err := cmd.StdoutPipe()
	must(t, "pipe", err)
	must(t, "start child", cmd.Start())
	var acked []string
	sc := bufio.NewScanner(out)
	killed := false
	for sc.Scan() {
		id, ok := strings.CutPrefix(sc.Text(), "ack ")
		if !ok {
			continue
		}
		acked = append(acked, id)
		if len(acked) == 150 {
			must(t, "kill", cmd.Process.Signal(syscall.SIGKILL))
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("the child stopped after %d acknowledged writes: %v", len(acked), err)
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Errorf("child ended with %v, want killed", cmd.ProcessState)
	}
	s := reopen()
	ctx := t.Context()
	for _, id := range acked {
		row, err := s.Get(ctx, "things", id)
		if err != nil {
			t.Errorf("acknowledged row %s: %v", id, err)
			continue
		}
		if row.Values["name"] != "crash "+id {
			t.Errorf("acknowledged row %s: got %v", id, row.Values)
		}
	}
	n, err := s.Count(ctx, "things")
	must(t, "count", err)
	if n < int64(len(acked)) || n > int64(len(acked))+1 {
		t.Errorf("after the crash: %d rows, %d acknowledged (at most one more may have been written unacknowledged)", n, len(acked))
	}
	// The store takes writes again.
	_, err = s.Insert(ctx, "things", map[string]any{"name": "after"})
	must(t, "insert after the crash", err)
}

// child does a child process's task and exits: 0 when done, 1 on failure.
func child(task string) {
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "kpstest child %q: "+format+"\n", append([]any{task}, args...)...)
		os.Exit(1)
	}
	var cfg kps.Config
	if err := json.Unmarshal([]byte(os.Getenv(envConfig)), &cfg); err != nil {
		fail("config: %v", err)
	}
	cfg.Postgres.Password = secret.FromString(os.Getenv(envPassword))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := kps.Open(ctx, cfg)
	if err != nil {
		fail("open: %v", err)
	}
	f := strings.Fields(task)
	switch {
	case len(f) == 3 && f[0] == "increment":
		n, _ := strconv.Atoi(f[1])
		for i := range n {
			if _, err := increment(ctx, s, "shared"); err != nil {
				fail("increment: %v", err)
			}
			if _, err := s.Insert(ctx, "counters", map[string]any{"name": fmt.Sprint(f[2], "-", i), "by": f[2]}); err != nil {
				fail("insert: %v", err)
			}
		}
	case task == "crash":
		w := bufio.NewWriter(os.Stdout)
		for i := 0; ; i++ {
			id := fmt.Sprintf("r%06d", i)
			if _, err := s.Insert(ctx, "things", map[string]any{"id": id, "name": "crash " + id, "tags": []string{id}}); err != nil {
				fail("insert: %v", err)
			}
			fmt.Fprintf(w, "ack %s\n", id)
			w.Flush()
		}
	default:
		fail("unknown task")
	}
	s.Close()
	os.Exit(0)
}
