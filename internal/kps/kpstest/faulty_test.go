package kpstest_test

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/kpstest"
	"github.com/gatehouse-gw/gatehouse/internal/kps/sqlite"
)

func openSQLite(t *testing.T) kps.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), kps.SQLiteConfig{Path: filepath.Join(t.TempDir(), "kps.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// injected reports whether err is what Faulty answers for a failed call:
// ErrUnavailable and ErrInjected, naming the operation and the table.
func injected(err error, what string) bool {
	return errors.Is(err, kps.ErrUnavailable) && errors.Is(err, kpstest.ErrInjected) && strings.HasPrefix(err.Error(), "kps "+what+":")
}

// TestFaulty: every call reaches the real store until a rule fails it;
// a failed call does nothing and answers ErrUnavailable naming it; the
// calls are numbered and listed.
func TestFaulty(t *testing.T) {
	ctx := context.Background()
	f := kpstest.NewFaulty(openSQLite(t))
	var _ kps.Bulk = f
	if _, ok := f.Plain().(kps.Bulk); ok {
		t.Error("Plain has InsertMany")
	}
	// Every method passes through, counted, without a rule.
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	must("define", f.Define(ctx, kpstest.Things, kpstest.Counters))
	tables, err := f.Tables(ctx)
	must("tables", err)
	if len(tables) != 2 {
		t.Errorf("tables: %v", tables)
	}
	r, err := f.Insert(ctx, "things", map[string]any{"email": "a@example.com", "color": "red"})
	must("insert", err)
	id := r.Values["id"]
	if _, err := f.Get(ctx, "things", id); err != nil {
		t.Error(err)
	}
	if got, err := f.GetBySecondary(ctx, "things", "a@example.com"); err != nil || got.Values["id"] != id {
		t.Errorf("getBySecondary: %v %v", got.Values, err)
	}
	if res, err := f.Query(ctx, "things", "color", "red", kps.Page{}); err != nil || len(res.Rows) != 1 {
		t.Errorf("query: %v %v", res, err)
	}
	if res, err := f.List(ctx, "things", kps.Page{}); err != nil || len(res.Rows) != 1 {
		t.Errorf("list: %v %v", res, err)
	}
	must("insertMany", f.InsertMany(ctx, "counters", []map[string]any{{"name": "a", "n": 1}, {"name": "b", "n": 2}}))
	if n, err := f.Count(ctx, "counters"); err != nil || n != 2 {
		t.Errorf("count: %d %v", n, err)
	}
	r.Values["color"] = "blue"
	r, err = f.Update(ctx, "things", r)
	must("update", err)
	if r.Version != 2 {
		t.Errorf("updated: version %d", r.Version)
	}
	must("delete", f.Delete(ctx, "counters", "a", kps.AnyVersion))
	must("clear", f.Clear(ctx, "counters"))
	ops := []string{"define", "tables", "insert", "get", "getBySecondary", "query", "list", "insertMany", "count", "update", "delete", "clear"}
	calls := f.Calls()
	if len(calls) != len(ops) {
		t.Fatalf("calls: %v", calls)
	}
	for i, c := range calls {
		if c.N != i+1 || c.Op != ops[i] {
			t.Errorf("call %d: %v, want #%d %s", i, c, i+1, ops[i])
		}
	}
	if calls[2].Table != "things" || calls[0].Table != "" || calls[2].String() != "#3 insert things" || calls[0].String() != "#1 define" {
		t.Errorf("calls: %v", calls)
	}
	if len(f.Failed()) != 0 {
		t.Errorf("failed without a rule: %v", f.Failed())
	}

	// The n-th call from the Reset fails, and does nothing.
	f.Reset()
	f.Fail(kpstest.Nth(2))
	if _, err := f.Insert(ctx, "counters", map[string]any{"name": "x", "n": 1}); err != nil {
		t.Fatal(err)
	}
	_, err = f.Insert(ctx, "counters", map[string]any{"name": "y", "n": 1})
	if !injected(err, "insert counters") || !strings.Contains(err.Error(), "call 2") {
		t.Errorf("the second call: %v", err)
	}
	if _, err := f.Inner().Get(ctx, "counters", "y"); !errors.Is(err, kps.ErrNotFound) {
		t.Errorf("the failed insert reached the store: %v", err)
	}
	if _, err := f.Insert(ctx, "counters", map[string]any{"name": "y", "n": 1}); err != nil {
		t.Errorf("the third call: %v", err)
	}
	if got := f.Failed(); len(got) != 1 || got[0] != (kpstest.Call{N: 2, Op: "insert", Table: "counters"}) {
		t.Errorf("failed: %v", got)
	}

	// By operation and table; From: down for good.
	f.Reset()
	f.Fail(kpstest.Op("delete", "counters"))
	if err := f.Delete(ctx, "counters", "x", kps.AnyVersion); !injected(err, "delete counters") {
		t.Errorf("delete counters: %v", err)
	}
	if err := f.Delete(ctx, "things", id, kps.AnyVersion); err != nil {
		t.Errorf("delete things: %v", err)
	}
	if _, err := f.Get(ctx, "counters", "x"); err != nil {
		t.Errorf("get counters: %v", err)
	}
	f.Reset()
	f.Fail(kpstest.All(kpstest.From(2), kpstest.Op("", "counters")))
	if _, err := f.Get(ctx, "counters", "x"); err != nil {
		t.Errorf("the first call: %v", err)
	}
	for _, err := range []error{f.Clear(ctx, "counters"), f.Define(ctx, kpstest.Counters)} {
		if err != nil && !injected(err, "clear counters") {
			t.Errorf("after From(2): %v", err)
		}
	}
	if _, err := f.Count(ctx, "counters"); !injected(err, "count counters") {
		t.Errorf("count after From(2): %v", err)
	}
	if _, err := f.List(ctx, "counters", kps.Page{}); !injected(err, "list counters") {
		t.Errorf("list after From(2): %v", err)
	}
	if n, _ := f.Inner().Count(ctx, "counters"); n != 2 {
		t.Errorf("the failed clear reached the store: %d rows", n)
	}
	f.Reset()
	f.Fail(kpstest.From(1))
	for what, err := range map[string]error{
		"define": f.Define(ctx, kpstest.Counters), "tables": second(f.Tables(ctx)), "get things": second(f.Get(ctx, "things", "a")),
		"getBySecondary things": second(f.GetBySecondary(ctx, "things", "a")), "query things": second(f.Query(ctx, "things", "color", "red", kps.Page{})),
		"insert things": second(f.Insert(ctx, "things", nil)), "insertMany things": f.InsertMany(ctx, "things", nil),
		"update things": second(f.Update(ctx, "things", kps.Row{})), "close": f.Close(),
	} {
		if !injected(err, what) {
			t.Errorf("%s, down: %v", what, err)
		}
	}
	if _, err := f.Inner().Count(ctx, "counters"); err != nil {
		t.Errorf("the failed close closed the store: %v", err)
	}

	// Before: a concurrent writer between a read and a write; its error
	// is the call's answer.
	f.Reset()
	f.Before(kpstest.Op("update", ""), func(c kpstest.Call) error {
		_, err := f.Inner().Update(ctx, c.Table, kps.Row{Values: map[string]any{"name": "x", "n": 5}, Version: 1})
		return err
	})
	cur, _ := f.Get(ctx, "counters", "x")
	cur.Values["n"] = 2
	if _, err := f.Update(ctx, "counters", cur); !errors.Is(err, kps.ErrConflict) {
		t.Errorf("an update after a concurrent one: %v", err)
	}
	stop := errors.New("stop")
	f.Before(kpstest.Nth(3), func(kpstest.Call) error { return stop })
	if _, err := f.Get(ctx, "counters", "x"); !errors.Is(err, stop) {
		t.Errorf("Before's error: %v", err)
	}

	// Plain: the same rules and numbering, without kps.Bulk.
	f.Reset()
	f.Fail(kpstest.Nth(2))
	p := f.Plain()
	if _, err := p.Count(ctx, "counters"); err != nil {
		t.Error(err)
	}
	if _, err := p.Count(ctx, "counters"); !injected(err, "count counters") {
		t.Errorf("Plain, the second call: %v", err)
	}
	if got := f.Calls(); len(got) != 2 {
		t.Errorf("Plain's calls: %v", got)
	}

	// InsertMany on a store without it is refused.
	g := kpstest.NewFaulty(plainStore{f.Inner()})
	if err := g.InsertMany(ctx, "counters", nil); !errors.Is(err, kps.ErrInvalid) {
		t.Errorf("InsertMany without kps.Bulk: %v", err)
	}
	if err := g.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if _, err := f.Inner().Count(ctx, "counters"); err == nil {
		t.Error("Close did not close the store")
	}
}

type plainStore struct{ kps.Store }

func second[T any](_ T, err error) error { return err }

// TestFaultyConcurrent: calls from several goroutines are each numbered
// once.
func TestFaultyConcurrent(t *testing.T) {
	ctx := context.Background()
	f := kpstest.NewFaulty(openSQLite(t))
	if err := f.Define(ctx, kpstest.Counters); err != nil {
		t.Fatal(err)
	}
	f.Reset()
	f.Fail(kpstest.Nth(7))
	var wg sync.WaitGroup
	var mu sync.Mutex
	failed := 0
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				if _, err := f.Count(ctx, "counters"); err != nil {
					mu.Lock()
					failed++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	var ns []int
	for _, c := range f.Calls() {
		ns = append(ns, c.N)
	}
	want := make([]int, 20)
	for i := range want {
		want[i] = i + 1
	}
	if failed != 1 || !reflect.DeepEqual(ns, want) {
		t.Errorf("%d failed; calls %v", failed, ns)
	}
}
