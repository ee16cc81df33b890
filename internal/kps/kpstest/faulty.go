package kpstest

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
)

// Faulty is a kps.Store for tests that passes every call to a real store
// and makes the calls its rules choose fail, so that a test can say what
// its code does when the store fails in the middle of an operation:
//
//	f := kpstest.NewFaulty(store)      // a real store (kps/sqlite in t.TempDir())
//	f.Fail(kpstest.Nth(3))             // the third call from now fails
//	f.Fail(kpstest.Op("delete", "apikeys")) // and every delete of an API key
//
// A call that fails does not reach the store (nothing of it is done) and
// answers a *kps.Error naming the call's operation and table that wraps
// kps.ErrUnavailable and ErrInjected: what a backend that is down answers.
// Before runs a function of the test's before chosen calls instead (to
// change the store behind the caller's back, a concurrent writer, or to
// answer another error). Calls are numbered from 1 since NewFaulty or the
// last Reset; Calls lists them. Faulty implements kps.Bulk (InsertMany,
// refused when the wrapped store does not); Plain is the same store
// without it. It is safe for concurrent use.
type Faulty struct {
	inner kps.Store

	mu     sync.Mutex
	n      int
	calls  []Call
	failed []Call
	rules  []faultRule
}

// ErrInjected is wrapped by the errors of the calls that Faulty fails.
var ErrInjected = errors.New("kpstest: injected fault")

// Call is one call made to a Faulty store.
type Call struct {
	N     int    // 1 for the first call since NewFaulty or Reset
	Op    string // the kps.Error operation names: "define", "tables", "get", "getBySecondary", "query", "list", "count", "insert", "insertMany", "update", "delete", "clear", "close"
	Table string // the table's alias ("" for define, tables and close)
}

func (c Call) String() string {
	if c.Table == "" {
		return fmt.Sprintf("#%d %s", c.N, c.Op)
	}
	return fmt.Sprintf("#%d %s %s", c.N, c.Op, c.Table)
}

// Match chooses calls.
type Match func(Call) bool

// Nth matches the n-th call (1: the first).
func Nth(n int) Match { return func(c Call) bool { return c.N == n } }

// From matches the n-th call and every one after it: the store goes down.
func From(n int) Match { return func(c Call) bool { return c.N >= n } }

// Op matches the calls of operation op ("" any) on table ("" any).
func Op(op, table string) Match {
	return func(c Call) bool { return (op == "" || c.Op == op) && (table == "" || c.Table == table) }
}

// All matches the calls that every one of ms matches.
func All(ms ...Match) Match {
	return func(c Call) bool {
		for _, m := range ms {
			if !m(c) {
				return false
			}
		}
		return true
	}
}

type faultRule struct {
	match Match
	fn    func(Call) error
}

// NewFaulty wraps s; it fails nothing until told to.
func NewFaulty(s kps.Store) *Faulty { return &Faulty{inner: s} }

// Inner is the wrapped store (to look behind a failure, or to change it).
func (f *Faulty) Inner() kps.Store { return f.inner }

// Fail makes the calls that m matches fail, from now on, without reaching
// the store.
func (f *Faulty) Fail(m Match) {
	f.Before(m, func(c Call) error { return Unavailable(c) })
}

// Before runs fn before each call that m matches, from now on (outside
// Faulty's lock: fn may use Inner). When fn returns an error the call
// answers it without reaching the store. The rules run in the order they
// were given; the first error decides.
func (f *Faulty) Before(m Match, fn func(Call) error) {
	f.mu.Lock()
	f.rules = append(f.rules, faultRule{match: m, fn: fn})
	f.mu.Unlock()
}

// Unavailable is the error of a call that Faulty fails.
func Unavailable(c Call) error {
	return &kps.Error{Op: c.Op, Table: c.Table, Err: kps.Unavailable(fmt.Errorf("call %d: %w", c.N, ErrInjected))}
}

// Reset removes the rules, forgets the calls and numbers them from 1 again.
func (f *Faulty) Reset() {
	f.mu.Lock()
	f.n, f.calls, f.failed, f.rules = 0, nil, nil, nil
	f.mu.Unlock()
}

// Calls returns the calls made since NewFaulty or Reset, failed ones
// included, in order.
func (f *Faulty) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

// Failed returns the calls that were failed (by Fail, or by a function of
// Before that returned an error).
func (f *Faulty) Failed() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.failed...)
}

// call numbers a call, runs the rules that match it and returns the error
// it must answer, or nil to pass it to the store.
func (f *Faulty) call(op, table string) error {
	f.mu.Lock()
	f.n++
	c := Call{N: f.n, Op: op, Table: table}
	f.calls = append(f.calls, c)
	var fns []func(Call) error
	for _, r := range f.rules {
		if r.match(c) {
			fns = append(fns, r.fn)
		}
	}
	f.mu.Unlock()
	for _, fn := range fns {
		if err := fn(c); err != nil {
			f.mu.Lock()
			f.failed = append(f.failed, c)
			f.mu.Unlock()
			return err
		}
	}
	return nil
}

var (
	_ kps.Store = (*Faulty)(nil)
	_ kps.Bulk  = (*Faulty)(nil)
)

func (f *Faulty) Define(ctx context.Context, tables ...kps.Table) error {
	if err := f.call("define", ""); err != nil {
		return err
	}
	return f.inner.Define(ctx, tables...)
}

func (f *Faulty) Tables(ctx context.Context) ([]kps.Table, error) {
	if err := f.call("tables", ""); err != nil {
		return nil, err
	}
	return f.inner.Tables(ctx)
}

func (f *Faulty) Get(ctx context.Context, table string, key any) (kps.Row, error) {
	if err := f.call("get", table); err != nil {
		return kps.Row{}, err
	}
	return f.inner.Get(ctx, table, key)
}

func (f *Faulty) GetBySecondary(ctx context.Context, table string, key any) (kps.Row, error) {
	if err := f.call("getBySecondary", table); err != nil {
		return kps.Row{}, err
	}
	return f.inner.GetBySecondary(ctx, table, key)
}

func (f *Faulty) Query(ctx context.Context, table, property string, value any, page kps.Page) (kps.Result, error) {
	if err := f.call("query", table); err != nil {
		return kps.Result{}, err
	}
	return f.inner.Query(ctx, table, property, value, page)
}

func (f *Faulty) List(ctx context.Context, table string, page kps.Page) (kps.Result, error) {
	if err := f.call("list", table); err != nil {
		return kps.Result{}, err
	}
	return f.inner.List(ctx, table, page)
}

func (f *Faulty) Count(ctx context.Context, table string) (int64, error) {
	if err := f.call("count", table); err != nil {
		return 0, err
	}
	return f.inner.Count(ctx, table)
}

func (f *Faulty) Insert(ctx context.Context, table string, values map[string]any) (kps.Row, error) {
	if err := f.call("insert", table); err != nil {
		return kps.Row{}, err
	}
	return f.inner.Insert(ctx, table, values)
}

// InsertMany implements kps.Bulk with the wrapped store's; ErrInvalid when
// it has none.
func (f *Faulty) InsertMany(ctx context.Context, table string, rows []map[string]any) error {
	if err := f.call("insertMany", table); err != nil {
		return err
	}
	b, ok := f.inner.(kps.Bulk)
	if !ok {
		return &kps.Error{Op: "insertMany", Table: table, Err: kps.Invalid("the wrapped store does not implement kps.Bulk")}
	}
	return b.InsertMany(ctx, table, rows)
}

func (f *Faulty) Update(ctx context.Context, table string, row kps.Row) (kps.Row, error) {
	if err := f.call("update", table); err != nil {
		return kps.Row{}, err
	}
	return f.inner.Update(ctx, table, row)
}

func (f *Faulty) Delete(ctx context.Context, table string, key any, version int64) error {
	if err := f.call("delete", table); err != nil {
		return err
	}
	return f.inner.Delete(ctx, table, key, version)
}

func (f *Faulty) Clear(ctx context.Context, table string) error {
	if err := f.call("clear", table); err != nil {
		return err
	}
	return f.inner.Clear(ctx, table)
}

// Close closes the wrapped store (unless a rule fails it).
func (f *Faulty) Close() error {
	if err := f.call("close", ""); err != nil {
		return err
	}
	return f.inner.Close()
}

// Plain is f without kps.Bulk: the same rules, numbering and store, for
// code that inserts one row at a time when the store has no InsertMany.
func (f *Faulty) Plain() kps.Store { return plain{f} }

// plain has only kps.Store's methods (not InsertMany) of the Faulty it holds.
type plain struct{ kps.Store }
