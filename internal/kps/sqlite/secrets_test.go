package sqlite

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
)

func TestLocalSecrets(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kps.db")
	a, b := openAt(t, path).LocalSecrets(), openAt(t, path).LocalSecrets()
	// Before anything is kept (no table yet): not found.
	if _, err := a.LookupSharedSecret(ctx, "x"); !errors.Is(err, kps.ErrNotFound) {
		t.Fatalf("lookup in a new file: %v, want not found", err)
	}
	if err := a.ReplaceSharedSecret(ctx, "x", []byte("1"), []byte("2")); !errors.Is(err, kps.ErrNotFound) {
		t.Fatalf("replace of nothing: %v, want not found", err)
	}
	if _, err := a.SharedSecret(ctx, "x", nil); !errors.Is(err, kps.ErrInvalid) {
		t.Fatalf("empty offer: %v, want invalid", err)
	}
	// The first offer wins, for every process of the file.
	if v, err := a.SharedSecret(ctx, "x", []byte("first")); err != nil || string(v) != "first" {
		t.Fatalf("first offer: %q %v", v, err)
	}
	if v, err := b.SharedSecret(ctx, "x", []byte("second")); err != nil || string(v) != "first" {
		t.Fatalf("second offer: %q %v, want the first", v, err)
	}
	// Replace only from what is stored.
	if err := b.ReplaceSharedSecret(ctx, "x", []byte("stale"), []byte("new")); !errors.Is(err, kps.ErrConflict) {
		t.Fatalf("replace from a stale value: %v, want conflict", err)
	}
	if err := b.ReplaceSharedSecret(ctx, "x", []byte("first"), nil); !errors.Is(err, kps.ErrInvalid) {
		t.Fatalf("replace with nothing: %v, want invalid", err)
	}
	if err := b.ReplaceSharedSecret(ctx, "x", []byte("first"), []byte("new")); err != nil {
		t.Fatal(err)
	}
	if v, err := a.LookupSharedSecret(ctx, "x"); err != nil || !bytes.Equal(v, []byte("new")) {
		t.Fatalf("after replace: %q %v", v, err)
	}
	// Not rows of any table.
	s := openAt(t, path)
	if tabs, err := s.Tables(ctx); err != nil || len(tabs) != 0 {
		t.Fatalf("tables: %v %v, want none", tabs, err)
	}
}
