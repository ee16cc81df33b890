package kpsbackup

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/sqlite"
)

func openStore(t *testing.T) kps.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), kps.SQLiteConfig{Path: filepath.Join(t.TempDir(), "kps.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// withSecrets is a store that keeps shared secrets a restore can put.
type withSecrets struct {
	kps.Store
	put map[string]string
	err error
}

func (w *withSecrets) PutSharedSecret(ctx context.Context, name string, value []byte) error {
	if w.err != nil {
		return w.err
	}
	w.put[name] = string(value)
	return nil
}

func parsed(t *testing.T, secrets ...Secret) *Backup {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, tb := range sample() {
		if err := w.Table(tb.Def); err != nil {
			t.Fatal(err)
		}
		for _, r := range tb.Rows {
			if err := w.Row(r); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, s := range secrets {
		if err := w.Secret(s.Name, s.Value); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Close(Manifest{UUID: testUUID, Gatehouse: "test", Created: time.Now(), Backend: "postgres"}); err != nil {
		t.Fatal(err)
	}
	b, err := Parse(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRestore(t *testing.T) {
	ctx := t.Context()
	st := openStore(t)
	b := parsed(t)
	var notes []string
	res, err := Restore(ctx, st, b, RestoreOptions{Note: func(f string, a ...any) { notes = append(notes, f) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Defined) != 2 || len(res.Tables) != 2 || res.Tables[0].Rows != 2 || !res.Atomic || len(notes) != 2 {
		t.Errorf("restored: %+v, notes %q", res, notes)
	}
	if n, _ := st.Count(ctx, "people"); n != 2 {
		t.Errorf("people: %d rows", n)
	}
	// Again: the tables hold rows; refused, nothing written.
	_, err = Restore(ctx, st, b, RestoreOptions{})
	var ne *NotEmptyError
	if !errors.As(err, &ne) || len(ne.Tables) != 1 || !strings.Contains(err.Error(), `"people" holds 2 rows`) {
		t.Errorf("into a table with rows: %v", err)
	}
	// Force: replaced, counted before.
	res, err = Restore(ctx, st, b, RestoreOptions{Force: true})
	if err != nil || res.Before["people"] != 2 || len(res.Defined) != 0 {
		t.Errorf("force: %+v, %v", res, err)
	}
	// One table.
	st.Clear(ctx, "people")
	res, err = Restore(ctx, st, b, RestoreOptions{Tables: []string{"people"}})
	if err != nil || len(res.Tables) != 1 || res.Tables[0].Alias != "people" {
		t.Errorf("one table: %+v, %v", res, err)
	}
	if _, err := Restore(ctx, st, b, RestoreOptions{Tables: []string{"nope"}}); err == nil || !strings.Contains(err.Error(), `no table "nope"`) {
		t.Errorf("an unknown table: %v", err)
	}
	// A store whose definition changed so that the rows do not fit.
	st2 := openStore(t)
	changed := people.Clone()
	changed.Properties = changed.Properties[:1] // only id: the rows' other properties do not fit
	changed.SecondaryKey, changed.Indexes = "", nil
	if err := st2.Define(ctx, changed); err != nil {
		t.Fatal(err)
	}
	_, err = Restore(ctx, st2, b, RestoreOptions{Tables: []string{"people"}})
	var mf *MisfitError
	if !errors.As(err, &mf) || mf.Table != "people" || mf.Row != 1 || !errors.Is(err, kps.ErrInvalid) {
		t.Errorf("rows that do not fit the store's definition: %v", err)
	}
}

func TestRestoreSecrets(t *testing.T) {
	ctx := t.Context()
	b := parsed(t, Secret{"apikeys.hashkey", []byte("k1")})
	// A store without shared secrets: refused before anything is written.
	st := openStore(t)
	if _, err := Restore(ctx, st, b, RestoreOptions{}); err == nil || !strings.Contains(err.Error(), "keeps none") {
		t.Errorf("secrets into a store without them: %v", err)
	}
	if tables, _ := st.Tables(ctx); len(tables) != 0 {
		t.Errorf("a refused restore defined %d tables", len(tables))
	}
	ws := &withSecrets{Store: openStore(t), put: map[string]string{}}
	res, err := Restore(ctx, ws, b, RestoreOptions{})
	if err != nil || ws.put["apikeys.hashkey"] != "k1" || len(res.Secrets) != 1 {
		t.Errorf("secrets: %+v, %v, %v", res, ws.put, err)
	}
	// One table only: the secrets stay as they are.
	ws2 := &withSecrets{Store: openStore(t), put: map[string]string{}}
	if _, err := Restore(ctx, ws2, b, RestoreOptions{Tables: []string{"empty"}}); err != nil || len(ws2.put) != 0 {
		t.Errorf("one table: secrets put %v, %v", ws2.put, err)
	}
	// A secret that cannot be stored: said, after the rows.
	ws3 := &withSecrets{Store: openStore(t), put: map[string]string{}, err: errors.New("read-only")}
	if res, err := Restore(ctx, ws3, b, RestoreOptions{}); err == nil || !strings.Contains(err.Error(), "the rows are restored, the shared secrets not") || len(res.Tables) != 2 {
		t.Errorf("a failing secret: %v", err)
	}
}
