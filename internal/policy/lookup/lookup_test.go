package lookup

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/h1"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
)

type fakeRows struct {
	rows map[any]kps.Row
	err  error
	sec  bool
}

func (f *fakeRows) Get(_ context.Context, _ string, key any) (kps.Row, error) {
	if f.err != nil {
		return kps.Row{}, f.err
	}
	r, ok := f.rows[key]
	if !ok {
		return kps.Row{}, fmt.Errorf("x: %w", kps.ErrNotFound)
	}
	return r, nil
}

func (f *fakeRows) GetBySecondary(ctx context.Context, t string, key any) (kps.Row, error) {
	f.sec = true
	return f.Get(ctx, t, key)
}

var table = kps.Table{Alias: "t", PrimaryKey: "id", SecondaryKey: "n", Properties: []kps.Property{{Name: "id", Type: kps.String}, {Name: "n", Type: kps.Long}}}

func TestLookup(t *testing.T) {
	rows := &fakeRows{rows: map[any]kps.Row{"k1": {Values: map[string]any{"id": "k1", "v": "one"}}, int64(5): {Values: map[string]any{"id": "k5"}}}}
	ex := func(app string) *policy.Exchange {
		e := &policy.Exchange{R: &h1.Request{Method: []byte("GET")}, Application: app}
		e.R.Header.AddString("X-K", "k1")
		return e
	}
	p, err := New(groupconf.LookupPolicy{Table: "t", Key: "application", As: "a", Required: true}, table, rows)
	if err != nil || p.Name() != "lookup" {
		t.Fatal(err)
	}
	e := ex("k1")
	if err := p.Apply(e); err != nil {
		t.Fatal(err)
	}
	if v, ok := e.Var("a.v"); !ok || v != "one" {
		t.Errorf("a.v: %q %v", v, ok)
	}
	var pe *policy.Error
	if err := p.Apply(ex("")); !errors.As(err, &pe) || pe.Status != 403 {
		t.Errorf("no application: %v", err)
	}
	// By the secondary key, a long: the value is parsed.
	p2, _ := New(groupconf.LookupPolicy{Table: "t", Key: "header:X-N", By: "secondary", As: "b", Required: true, NotFoundStatus: 404}, table, rows)
	e = ex("")
	e.R.Header.AddString("X-N", "5")
	if err := p2.Apply(e); err != nil || !rows.sec {
		t.Errorf("secondary: %v %v", err, rows.sec)
	}
	if v, _ := e.Var("b.id"); v != "k5" {
		t.Errorf("b.id: %q", v)
	}
	e = ex("")
	e.R.Header.AddString("X-N", "five")
	if err := p2.Apply(e); !errors.As(err, &pe) || pe.Status != 404 || pe.Message != "not found" {
		t.Errorf("not a number: %v", err)
	}
	// Not required: goes on without variables.
	p3, _ := New(groupconf.LookupPolicy{Table: "t", Key: "header:X-Missing", As: "c"}, table, rows)
	e = ex("")
	if err := p3.Apply(e); err != nil || len(e.Vars) != 0 {
		t.Errorf("not required: %v %v", err, e.Vars)
	}
	// The store cannot answer: 503, whether required or not.
	rows.err = fmt.Errorf("down: %w", kps.ErrUnavailable)
	for _, q := range []*Policy{p, p3} {
		e := ex("k1")
		e.R.Header.AddString("X-Missing", "k1")
		if err := q.Apply(e); !errors.As(err, &pe) || pe.Status != http.StatusServiceUnavailable || pe.Err == nil {
			t.Errorf("store down: %v", err)
		}
	}
	if _, err := New(groupconf.LookupPolicy{Table: "t", Key: "nope", As: "x"}, table, rows); err == nil {
		t.Error("New took a bad key")
	}
	if _, err := New(groupconf.LookupPolicy{Table: "t", Key: "application", By: "secondary", As: "x"}, kps.Table{Alias: "t", PrimaryKey: "id"}, rows); err == nil {
		t.Error("New took a table without the key property")
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		v    any
		want string
	}{
		{"s", "s"}, {true, "true"}, {int32(-3), "-3"}, {int64(1) << 40, "1099511627776"}, {1.5, "1.5"},
		{[]string{"a", "b"}, "a, b"}, {map[string]string{"b": "2", "a": "1"}, "a=1, b=2"}, {nil, ""}, {struct{}{}, ""},
	} {
		if got := Format(c.v); got != c.want {
			t.Errorf("Format(%#v): %q, want %q", c.v, got, c.want)
		}
	}
}
