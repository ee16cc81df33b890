package fieldcrypt_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/fieldcrypt"
	"github.com/gatehouse-gw/gatehouse/internal/kps/kpstest"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// TestEveryCallFails runs each operation with the store failing at its
// first call, then its second, and so on until it completes: every
// failure is reported (the store's own error, never swallowed), and a
// reencrypt cut there completes when run again, every row opening with the
// new passphrase.
func TestEveryCallFails(t *testing.T) {
	const rows = 4
	seal := func(t *testing.T, st kps.Store, p secret.Value) {
		keys, err := fieldcrypt.Open(t.Context(), st, tables(), p)
		if err != nil {
			t.Fatal(err)
		}
		for i := range rows {
			if _, err := fieldcrypt.Wrap(st, keys, tables()).Insert(t.Context(), "creds", row(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	clearRows := func(t *testing.T, st kps.Store, _ secret.Value) {
		for i := range rows {
			st.Insert(t.Context(), "creds", row(i))
		}
	}
	// readable checks every row under passphrase p (zero: in clear).
	readable := func(t *testing.T, st kps.Store, p secret.Value) {
		t.Helper()
		keys, err := fieldcrypt.Open(t.Context(), st, tables(), p)
		if err != nil {
			t.Fatal(err)
		}
		w := fieldcrypt.Wrap(st, keys, tables())
		for i := range rows {
			r, err := w.Get(t.Context(), "creds", fmt.Sprintf("c%d", i))
			if err != nil || r.Values["password"] != fmt.Sprintf("s3cret-%d", i) {
				t.Fatalf("row %d: %v %v", i, r.Values, err)
			}
		}
	}
	for _, sc := range []struct {
		name     string
		setup    func(*testing.T, kps.Store, secret.Value)
		from, to secret.Value
	}{
		{"sealed to another passphrase", seal, pass1, pass2},
		{"clear to a passphrase", clearRows, secret.Value{}, pass1},
		{"sealed to clear", seal, pass1, secret.Value{}},
		{"values in clear under the same passphrase", func(t *testing.T, st kps.Store, p secret.Value) {
			seal(t, st, p)
			r, _ := st.Get(t.Context(), "creds", "c1")
			r.Values["password"] = "s3cret-1"
			st.Update(t.Context(), "creds", r)
		}, secret.Value{}, pass1},
	} {
		t.Run(sc.name, func(t *testing.T) {
			for n := 1; ; n++ {
				if n > 200 {
					t.Fatal("the reencrypt never completes")
				}
				st := openStore(t)
				sc.setup(t, st, sc.from)
				f := kpstest.NewFaulty(st)
				f.Fail(kpstest.Nth(n))
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				err := fieldcrypt.Reencrypt(ctx, f, tables(), nil, sc.from, sc.to, nil)
				cancel()
				if len(f.Failed()) == 0 {
					if err != nil {
						t.Fatalf("no call failed, and: %v", err)
					}
					readable(t, st, sc.to)
					return
				}
				if !errors.Is(err, kpstest.ErrInjected) {
					t.Fatalf("call %v failed, the reencrypt answered %v", f.Failed(), err)
				}
				if err := fieldcrypt.Reencrypt(t.Context(), st, tables(), nil, sc.from, sc.to, nil); err != nil {
					t.Fatalf("run again after call %v failed: %v", f.Failed(), err)
				}
				readable(t, st, sc.to)
			}
		})
	}
	t.Run("open and the wrapper", func(t *testing.T) {
		for n := 1; ; n++ {
			if n > 200 {
				t.Fatal("never completes")
			}
			st := openStore(t)
			f := kpstest.NewFaulty(st)
			f.Fail(kpstest.Nth(n))
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			err := func() error {
				keys, err := fieldcrypt.Open(ctx, f, tables(), pass1)
				if err != nil {
					return err
				}
				w := fieldcrypt.Wrap(f, keys, tables())
				if _, err := w.Insert(ctx, "creds", row(1)); err != nil {
					return err
				}
				r, err := w.Get(ctx, "creds", "c1")
				if err != nil {
					return err
				}
				r.Values["note"] = "x"
				if _, err := w.Update(ctx, "creds", r); err != nil {
					return err
				}
				if _, err := w.GetBySecondary(ctx, "creds", "a1"); err != nil {
					return err
				}
				if _, err := w.List(ctx, "creds", kps.Page{}); err != nil {
					return err
				}
				_, err = w.Query(ctx, "creds", "tier", "gold", kps.Page{})
				return err
			}()
			cancel()
			if len(f.Failed()) == 0 {
				if err != nil {
					t.Fatalf("no call failed, and: %v", err)
				}
				return
			}
			if !errors.Is(err, kpstest.ErrInjected) {
				t.Fatalf("call %v failed, the operation answered %v", f.Failed(), err)
			}
		}
	})
}
