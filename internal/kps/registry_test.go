package kps

import (
	"context"
	"errors"
	"strings"
	"testing"
)

type nopStore struct{ Store }

func TestRegistry(t *testing.T) {
	var got Config
	Register("test-ok", func(_ context.Context, cfg Config) (Store, error) { got = cfg; return nopStore{}, nil })
	Register("test-fail", func(context.Context, Config) (Store, error) { return nil, Unavailable(errors.New("down")) })
	names := Backends()
	if i, j := indexOf(names, "test-fail"), indexOf(names, "test-ok"); i < 0 || j != i+1 {
		t.Errorf("Backends: got %v, want both, sorted", names)
	}
	s, err := Open(t.Context(), Config{Backend: "test-ok", SQLite: SQLiteConfig{Path: "p"}})
	if err != nil || s == nil || got.SQLite.Path != "p" {
		t.Errorf("Open: got %v, %v, config %+v", s, err, got)
	}
	_, err = Open(t.Context(), Config{Backend: "test-fail"})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "opening the test-fail key property store: ") {
		t.Errorf("Open of a failing backend: got %v", err)
	}
	_, err = Open(t.Context(), Config{Backend: "nosuch"})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `backend "nosuch": not available (have [`) {
		t.Errorf("Open of an unknown backend: got %v", err)
	}
	// The default backend is sqlite, registered by its package: without
	// it linked in, "not available"; with it (another test of this binary
	// imports it), its refusal of a configuration without a path.
	_, err = Open(t.Context(), Config{})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `sqlite`) {
		t.Errorf("Open of the default backend without a path: got %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Errorf("registering a name twice did not panic")
		}
	}()
	Register("test-ok", nil)
}

func indexOf(s []string, x string) int {
	for i, v := range s {
		if v == x {
			return i
		}
	}
	return -1
}
