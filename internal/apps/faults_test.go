package apps

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/kpstest"
	"github.com/gatehouse-gw/gatehouse/internal/oauth"
	"github.com/gatehouse-gw/gatehouse/internal/oauth/authorize"
	"github.com/gatehouse-gw/gatehouse/internal/policy/apikey"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// The tests of this file make the store fail in the middle of each
// operation (kpstest.Faulty over a real embedded store) and state what
// the operation promises then: the store's error is returned (ErrUnavailable,
// naming the store's operation: the API answers 503, never 404 or 401),
// the operation stops there, and what it changes is as it was, or (for
// the few operations of several writes) in a state that its retry
// completes.

// faultFixture is a Manager on a Faulty store holding "Shop" (a
// confidential OAuth client with two keys and two secrets) and "Other"
// (one key), its calls numbered from 1 once it is made.
type faultFixture struct {
	f       *kpstest.Faulty
	m       *Manager
	c       *clock
	app     App
	other   App
	keys    []Key // Shop's: the first never expires, the second in an hour
	values  []secret.Value
	secrets []ClientSecret
}

func newFaultFixture(t *testing.T) *faultFixture {
	t.Helper()
	ctx := context.Background()
	x := &faultFixture{f: kpstest.NewFaulty(openStore(t)), c: &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}}
	x.m = newManager(t, x.f, x.c)
	var err error
	x.app, err = x.m.CreateApp(ctx, App{Name: "Shop", Enabled: true, APIs: []string{"orders"}, OAuth: &OAuthClient{
		GrantTypes: []string{"client_credentials"}, Scopes: []string{"orders:read"}}})
	if err != nil {
		t.Fatal(err)
	}
	x.other, _ = x.m.CreateApp(ctx, App{Name: "Other", Enabled: true})
	for _, exp := range []time.Time{{}, x.c.t.Add(time.Hour)} {
		k, v, err := x.m.CreateKey(ctx, x.app.ID, exp)
		if err != nil {
			t.Fatal(err)
		}
		x.keys, x.values = append(x.keys, k), append(x.values, v)
	}
	x.m.CreateKey(ctx, x.other.ID, time.Time{})
	for range 2 {
		cs, _, err := x.m.CreateClientSecret(ctx, x.app.ID, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		x.secrets = append(x.secrets, cs)
	}
	x.f.Reset()
	return x
}

// state is every row of the store (looked at behind the Faulty), in
// order, with its version.
func (x *faultFixture) state(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, table := range []string{AppsTable, KeysTable, ClientSecretsTable} {
		res, err := x.f.Inner().List(context.Background(), table, kps.Page{Limit: kps.MaxLimit})
		if err != nil || res.Next != "" {
			t.Fatalf("list %s: %v (next %q)", table, err, res.Next)
		}
		for _, r := range res.Rows {
			fmt.Fprintf(&b, "%s v%d %v\n", table, r.Version, r.Values)
		}
	}
	return b.String()
}

// count is the number of rows of table behind the Faulty.
func (x *faultFixture) count(t *testing.T, table string) int64 {
	t.Helper()
	n, err := x.f.Inner().Count(context.Background(), table)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// isInjected: err is the Faulty's failure of call c, as the store gave it
// (ErrUnavailable, the store's operation and table named).
func isInjected(err error, c kpstest.Call) bool {
	what := strings.TrimSpace(c.Op + " " + c.Table)
	return errors.Is(err, kps.ErrUnavailable) && errors.Is(err, kpstest.ErrInjected) &&
		strings.Contains(err.Error(), "kps "+what+": ") && strings.Contains(err.Error(), fmt.Sprintf("call %d:", c.N))
}

// atEachCall runs op on a new fixture without a fault, to learn the store
// calls it makes (want, when given, lists their operations and tables), and
// then once for each of them on a new fixture where that call fails. Each
// time, op's error must be the failed call's, and op must make no call after
// it but those that cleanup lists for it (by its number: operations and
// tables); check is called
// with the fixture, the failed call (nil: none) and op's error, and with the
// state of the store before op.
func atEachCall(t *testing.T, want []string, cleanup map[int][]string, op func(x *faultFixture) error, check func(t *testing.T, x *faultFixture, failed *kpstest.Call, err error, before string)) {
	t.Helper()
	x := newFaultFixture(t)
	before := x.state(t)
	err := op(x)
	calls := x.f.Calls()
	if err != nil {
		t.Fatalf("without a fault: %v", err)
	}
	if want != nil {
		var got []string
		for _, c := range calls {
			got = append(got, c.Op+" "+c.Table)
		}
		if strings.Join(got, ", ") != strings.Join(want, ", ") {
			t.Fatalf("store calls: %q, want %q", got, want)
		}
	}
	check(t, x, nil, nil, before)
	for i := range calls {
		x := newFaultFixture(t)
		before := x.state(t)
		x.f.Fail(kpstest.Nth(i + 1))
		err := op(x)
		failed := x.f.Failed()
		if len(failed) != 1 {
			t.Fatalf("call %d failing: the calls failed are %v", i+1, failed)
		}
		if !isInjected(err, failed[0]) {
			t.Errorf("call %v failing: %v, want that call's error", failed[0], err)
		}
		var after []string
		for _, c := range x.f.Calls()[i+1:] {
			after = append(after, c.Op+" "+c.Table)
		}
		if strings.Join(after, ", ") != strings.Join(cleanup[i+1], ", ") {
			t.Errorf("call %v failing: then %q, want %q", failed[0], after, cleanup[i+1])
		}
		check(t, x, &failed[0], err, before)
	}
}

// unchanged: a failed operation left the store as it was.
func unchanged(t *testing.T, x *faultFixture, failed *kpstest.Call, err error, before string) {
	t.Helper()
	if failed != nil {
		if now := x.state(t); now != before {
			t.Errorf("call %v failing: the store changed:\n%s\nwas\n%s", failed, now, before)
		}
	}
}

func TestFaultsNewManager(t *testing.T) {
	f := kpstest.NewFaulty(openStore(t))
	f.Fail(kpstest.Op("define", ""))
	m, err := NewManager(context.Background(), f, testHashKey)
	if m != nil || !isInjected(err, kpstest.Call{N: 1, Op: "define"}) || !strings.HasPrefix(err.Error(), "defining the applications' tables: ") {
		t.Errorf("NewManager, the store failing: %v %v", m, err)
	}
}

func TestFaultsApps(t *testing.T) {
	ctx := context.Background()
	t.Run("CreateApp", func(t *testing.T) {
		var got App
		atEachCall(t, []string{"insert applications"}, nil, func(x *faultFixture) (err error) {
			got, err = x.m.CreateApp(ctx, App{Name: "New", Enabled: true})
			return err
		}, func(t *testing.T, x *faultFixture, failed *kpstest.Call, err error, before string) {
			unchanged(t, x, failed, err, before)
			if (failed == nil) != (got.Name == "New") {
				t.Errorf("call %v failing: returned %+v", failed, got)
			}
		})
	})
	t.Run("App by id", func(t *testing.T) {
		var got App
		atEachCall(t, []string{"get applications"}, nil, func(x *faultFixture) (err error) {
			got, err = x.m.App(ctx, x.app.ID)
			return err
		}, func(t *testing.T, x *faultFixture, failed *kpstest.Call, err error, before string) {
			if (failed == nil) != (got.ID == x.app.ID) {
				t.Errorf("call %v failing: returned %+v", failed, got)
			}
		})
	})
	// A failed look-up by id is not "no such id": the name is not tried
	// (it would answer "not found" for an application that exists).
	t.Run("App by name", func(t *testing.T) {
		var got App
		atEachCall(t, []string{"get applications", "getBySecondary applications"}, nil, func(x *faultFixture) (err error) {
			got, err = x.m.App(ctx, "Shop")
			return err
		}, func(t *testing.T, x *faultFixture, failed *kpstest.Call, err error, before string) {
			if (failed == nil) != (got.ID == x.app.ID) {
				t.Errorf("call %v failing: returned %+v", failed, got)
			}
		})
	})
	t.Run("Apps", func(t *testing.T) {
		var got []App
		var next string
		atEachCall(t, []string{"list applications"}, nil, func(x *faultFixture) (err error) {
			got, next, err = x.m.Apps(ctx, kps.Page{Limit: 1})
			return err
		}, func(t *testing.T, x *faultFixture, failed *kpstest.Call, err error, before string) {
			if (failed == nil) != (len(got) == 1 && next != "") {
				t.Errorf("call %v failing: returned %v %q", failed, got, next)
			}
		})
	})
	t.Run("UpdateApp", func(t *testing.T) {
		var got App
		atEachCall(t, []string{"get applications", "update applications"}, nil, func(x *faultFixture) (err error) {
			a := x.app
			a.Description = "changed"
			got, err = x.m.UpdateApp(ctx, a)
			return err
		}, func(t *testing.T, x *faultFixture, failed *kpstest.Call, err error, before string) {
			unchanged(t, x, failed, err, before)
			if (failed == nil) != (got.Description == "changed" && got.Version == 2) {
				t.Errorf("call %v failing: returned %+v", failed, got)
			}
		})
	})
	// DeleteApp is several writes: its keys, its secrets, then the
	// application. Failing, it leaves the application (so that the delete
	// can be repeated: a key or secret is never left without its
	// application), and its retry deletes the rest.
	t.Run("DeleteApp", func(t *testing.T) {
		atEachCall(t, []string{"query apikeys", "delete apikeys", "delete apikeys", "query oauth_client_secrets",
			"delete oauth_client_secrets", "delete oauth_client_secrets", "delete applications"}, nil, func(x *faultFixture) error {
			return x.m.DeleteApp(ctx, x.app.ID, x.app.Version)
		}, func(t *testing.T, x *faultFixture, failed *kpstest.Call, err error, before string) {
			if failed != nil {
				if _, err := x.f.Inner().Get(ctx, AppsTable, x.app.ID); err != nil {
					t.Errorf("call %v failing: the application: %v, want it kept", failed, err)
				}
				x.f.Reset()
				if err := x.m.DeleteApp(ctx, x.app.ID, x.app.Version); err != nil {
					t.Fatalf("call %v failing: the retry: %v", failed, err)
				}
			}
			if _, err := x.f.Inner().Get(ctx, AppsTable, x.app.ID); !errors.Is(err, kps.ErrNotFound) {
				t.Errorf("call %v failing: after the retry, the application: %v", failed, err)
			}
			if k, s := x.count(t, KeysTable), x.count(t, ClientSecretsTable); k != 1 || s != 0 {
				t.Errorf("call %v failing: after the retry, %d keys and %d secrets left, want Other's key only", failed, k, s)
			}
		})
	})
}

// TestFaultsDeleteAppMeanwhile: a key or secret that someone else deleted
// between DeleteApp's listing and its delete is no error.
func TestFaultsDeleteAppMeanwhile(t *testing.T) {
	ctx := context.Background()
	for _, table := range []string{KeysTable, ClientSecretsTable} {
		x := newFaultFixture(t)
		id := x.keys[0].ID
		if table == ClientSecretsTable {
			id = x.secrets[0].ID
		}
		x.f.Before(kpstest.Op("delete", table), func(kpstest.Call) error {
			x.f.Inner().Delete(ctx, table, id, kps.AnyVersion)
			return nil
		})
		if err := x.m.DeleteApp(ctx, x.app.ID, kps.AnyVersion); err != nil {
			t.Errorf("%s: a row deleted meanwhile: %v", table, err)
		}
		if _, err := x.f.Inner().Get(ctx, AppsTable, x.app.ID); !errors.Is(err, kps.ErrNotFound) {
			t.Errorf("%s: a row deleted meanwhile: the application: %v", table, err)
		}
	}
}

func TestFaultsKeys(t *testing.T) {
	ctx := context.Background()
	t.Run("CreateKey", func(t *testing.T) {
		var got Key
		var value secret.Value
		atEachCall(t, []string{"get applications", "insert apikeys"}, nil, func(x *faultFixture) (err error) {
			got, value, err = x.m.CreateKey(ctx, x.app.ID, time.Time{})
			return err
		}, func(t *testing.T, x *faultFixture, failed *kpstest.Call, err error, before string) {
			unchanged(t, x, failed, err, before)
			if (failed == nil) != (got.AppID == x.app.ID && !value.IsZero()) {
				t.Errorf("call %v failing: returned %+v (value given: %v)", failed, got, !value.IsZero())
			}
		})
	})
	t.Run("Keys", func(t *testing.T) {
		var got []Key
		atEachCall(t, []string{"query apikeys"}, nil, func(x *faultFixture) (err error) {
			got, err = x.m.Keys(ctx, x.app.ID)
			return err
		}, func(t *testing.T, x *faultFixture, failed *kpstest.Call, err error, before string) {
			if (failed == nil) != (len(got) == 2) {
				t.Errorf("call %v failing: returned %v", failed, got)
			}
		})
	})
	t.Run("Key", func(t *testing.T) {
		var got Key
		atEachCall(t, []string{"get apikeys"}, nil, func(x *faultFixture) (err error) {
			got, err = x.m.Key(ctx, x.keys[0].ID)
			return err
		}, func(t *testing.T, x *faultFixture, failed *kpstest.Call, err error, before string) {
			if (failed == nil) != (got.ID == x.keys[0].ID) {
				t.Errorf("call %v failing: returned %+v", failed, got)
			}
		})
	})
	t.Run("SetKey", func(t *testing.T) {
		var got Key
		atEachCall(t, []string{"get apikeys", "update apikeys"}, nil, func(x *faultFixture) (err error) {
			got, err = x.m.SetKey(ctx, x.keys[0].ID, false, time.Time{})
			return err
		}, func(t *testing.T, x *faultFixture, failed *kpstest.Call, err error, before string) {
			unchanged(t, x, failed, err, before)
			if (failed == nil) != (got.ID == x.keys[0].ID && !got.Enabled && got.Version == 2) {
				t.Errorf("call %v failing: returned %+v", failed, got)
			}
		})
	})
	// A rotation that fails leaves the keys as they were: a new key made
	// before the failure is deleted again (it was never shown).
	t.Run("RotateKey", func(t *testing.T) {
		var old, fresh Key
		var value secret.Value
		atEachCall(t, []string{"get apikeys", "get applications", "insert apikeys", "get apikeys", "update apikeys"},
			map[int][]string{4: {"delete apikeys"}, 5: {"delete apikeys"}}, func(x *faultFixture) (err error) {
				old, fresh, value, err = x.m.RotateKey(ctx, x.keys[1].ID, time.Minute)
				return err
			}, func(t *testing.T, x *faultFixture, failed *kpstest.Call, err error, before string) {
				if failed == nil {
					if old.ID != x.keys[1].ID || !old.ExpiresAt.Equal(x.c.t.Add(time.Minute)) || fresh.AppID != x.app.ID || value.IsZero() {
						t.Errorf("rotated: old %+v, fresh %+v", old, fresh)
					}
					return
				}
				unchanged(t, x, failed, err, before)
				if old.ID != "" || fresh.ID != "" || !value.IsZero() {
					t.Errorf("call %v failing: returned old %+v, fresh %+v (value given: %v)", failed, old, fresh, !value.IsZero())
				}
			})
		// The store down from the update on: the delete fails too, and
		// the error is the update's.
		x := newFaultFixture(t)
		x.f.Fail(kpstest.From(5))
		if _, _, _, err := x.m.RotateKey(ctx, x.keys[1].ID, time.Minute); !isInjected(err, kpstest.Call{N: 5, Op: "update", Table: KeysTable}) {
			t.Errorf("down from the update on: %v", err)
		}
		// The old key changed by someone else between the rotation's read
		// and its write: a conflict, and no new key left.
		x = newFaultFixture(t)
		before := x.state(t)
		x.f.Before(kpstest.Nth(5), func(kpstest.Call) error {
			r, err := x.f.Inner().Get(ctx, KeysTable, x.keys[1].ID)
			if err == nil {
				_, err = x.f.Inner().Update(ctx, KeysTable, r)
			}
			return err
		})
		if _, _, _, err := x.m.RotateKey(ctx, x.keys[1].ID, time.Minute); !errors.Is(err, kps.ErrConflict) {
			t.Errorf("a concurrent change of the old key: %v, want a conflict", err)
		}
		if n := x.count(t, KeysTable); n != 3 {
			t.Errorf("a concurrent change of the old key: %d keys, want the 3 there were\n%s\nwas\n%s", n, x.state(t), before)
		}
	})
	t.Run("DeleteKey", func(t *testing.T) {
		atEachCall(t, []string{"delete apikeys"}, nil, func(x *faultFixture) error {
			return x.m.DeleteKey(ctx, x.keys[0].ID)
		}, func(t *testing.T, x *faultFixture, failed *kpstest.Call, err error, before string) {
			unchanged(t, x, failed, err, before)
			if _, err := x.f.Inner().Get(ctx, KeysTable, x.keys[0].ID); (failed == nil) != errors.Is(err, kps.ErrNotFound) {
				t.Errorf("call %v failing: the key: %v", failed, err)
			}
		})
	})
}

// TestFaultsKeysPages: a listing of keys that fails on a later page
// fails; it is not the keys of the pages read.
func TestFaultsKeysPages(t *testing.T) {
	ctx := context.Background()
	x := newFaultFixture(t)
	// Fewer keys than a batch: one read and one insert (a third call
	// fails, so that a load that never ends fails instead).
	x.f.Fail(kpstest.From(3))
	if err := x.m.CreateKeys(ctx, x.app.ID, kps.MaxLimit, func(Key, secret.Value) error { return nil }); err != nil || len(x.f.Calls()) != 2 {
		t.Fatalf("a load of %d keys: %v, calls %v", kps.MaxLimit, err, x.f.Calls())
	}
	x.f.Reset()
	keys, err := x.m.Keys(ctx, x.app.ID)
	if err != nil || len(keys) != kps.MaxLimit+2 || len(x.f.Calls()) != 2 {
		t.Fatalf("%d keys, %v, in %v", len(keys), err, x.f.Calls())
	}
	x.f.Reset()
	x.f.Fail(kpstest.Nth(2))
	if keys, err := x.m.Keys(ctx, x.app.ID); !isInjected(err, kpstest.Call{N: 2, Op: "query", Table: KeysTable}) || keys != nil {
		t.Errorf("the second page failing: %d keys, %v", len(keys), err)
	}
	x.f.Reset()
	x.f.Fail(kpstest.Nth(2))
	if err := x.m.DeleteApp(ctx, x.app.ID, kps.AnyVersion); !isInjected(err, kpstest.Call{N: 2, Op: "query", Table: KeysTable}) || x.count(t, KeysTable) != kps.MaxLimit+3 {
		t.Errorf("DeleteApp, the second page of keys failing: %v, %d keys left", err, x.count(t, KeysTable))
	}
}

// TestFaultsCreateKeys: a bulk load that fails says how many keys were
// stored, and every key stored was given to out (none is left that nobody
// holds), in batches (all or none) and one by one.
func TestFaultsCreateKeys(t *testing.T) {
	ctx := context.Background()
	for _, bulk := range []bool{true, false} {
		x := newFaultFixture(t)
		m := x.m
		if !bulk {
			m = newManager(t, x.f.Plain(), x.c)
			x.f.Reset()
		}
		// No key: no insert.
		x.f.Fail(kpstest.From(2))
		if err := m.CreateKeys(ctx, x.app.ID, 0, nil); err != nil || len(x.f.Calls()) != 1 {
			t.Errorf("bulk %v: no key: %v, calls %v", bulk, err, x.f.Calls())
		}
		x.f.Reset()
		var given []string
		out := func(k Key, v secret.Value) error {
			if k.AppID != x.app.ID || !strings.HasPrefix(v.RevealString(), k.ID+"_") {
				t.Errorf("bulk %v: given %+v", bulk, k)
			}
			given = append(given, k.ID)
			return nil
		}
		x.f.Fail(kpstest.Nth(1))
		if err := m.CreateKeys(ctx, x.app.ID, 3, out); !isInjected(err, kpstest.Call{N: 1, Op: "get", Table: AppsTable}) || len(given) != 0 {
			t.Errorf("bulk %v: the application's read failing: %v, %d keys given", bulk, err, len(given))
		}
		x.f.Reset()
		op := "insert"
		if bulk {
			op = "insertMany"
		}
		x.f.Fail(kpstest.Op(op, KeysTable))
		if !bulk {
			x.f.Reset()
			x.f.Fail(kpstest.Nth(4)) // the third insert
		}
		err := m.CreateKeys(ctx, x.app.ID, 5, out)
		stored := x.count(t, KeysTable) - 3
		want := int64(2)
		if bulk {
			want = 0
		}
		if !errors.Is(err, kpstest.ErrInjected) || !strings.HasPrefix(err.Error(), fmt.Sprintf("creating keys (%d stored): kps %s apikeys: ", want, op)) ||
			stored != want || int64(len(given)) != want {
			t.Errorf("bulk %v: %v; %d stored, %d given, want %d", bulk, err, stored, len(given), want)
		}
		// out's error stops the load even in a batch that failed.
		x.f.Reset()
		if !bulk {
			x.f.Fail(kpstest.Nth(3))
			stop := errors.New("stop")
			calls := 0
			if err := m.CreateKeys(ctx, x.app.ID, 3, func(Key, secret.Value) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
				t.Errorf("out's error in a failed batch: %v after %d calls", err, calls)
			}
		}
	}
}

func TestFaultsClientSecrets(t *testing.T) {
	ctx := context.Background()
	t.Run("CreateClientSecret", func(t *testing.T) {
		var got ClientSecret
		var value secret.Value
		atEachCall(t, []string{"get applications", "query oauth_client_secrets", "insert oauth_client_secrets"}, nil, func(x *faultFixture) (err error) {
			got, value, err = x.m.CreateClientSecret(ctx, x.app.ID, time.Time{})
			return err
		}, func(t *testing.T, x *faultFixture, failed *kpstest.Call, err error, before string) {
			unchanged(t, x, failed, err, before)
			if (failed == nil) != (got.ID != "" && !value.IsZero()) {
				t.Errorf("call %v failing: returned %+v (value given: %v)", failed, got, !value.IsZero())
			}
		})
	})
	t.Run("ClientSecrets", func(t *testing.T) {
		var got []ClientSecret
		atEachCall(t, []string{"query oauth_client_secrets"}, nil, func(x *faultFixture) (err error) {
			got, err = x.m.ClientSecrets(ctx, x.app.ID)
			return err
		}, func(t *testing.T, x *faultFixture, failed *kpstest.Call, err error, before string) {
			if (failed == nil) != (len(got) == 2) {
				t.Errorf("call %v failing: returned %v", failed, got)
			}
		})
	})
	t.Run("DeleteClientSecret", func(t *testing.T) {
		atEachCall(t, []string{"get oauth_client_secrets", "delete oauth_client_secrets"}, nil, func(x *faultFixture) error {
			return x.m.DeleteClientSecret(ctx, x.app.ID, x.secrets[0].ID)
		}, func(t *testing.T, x *faultFixture, failed *kpstest.Call, err error, before string) {
			unchanged(t, x, failed, err, before)
			if n := x.count(t, ClientSecretsTable); (failed == nil) != (n == 1) {
				t.Errorf("call %v failing: %d secrets", failed, n)
			}
		})
	})
}

// TestFaultsChecker: a store that cannot answer, for the key's row or its
// application's, is an error that is not apikey.ErrInvalidKey (the policy
// answers 503, not 401), and it is not remembered: the key passes as soon
// as the store answers again.
func TestFaultsChecker(t *testing.T) {
	ctx := context.Background()
	for _, table := range []string{KeysTable, AppsTable} {
		x := newFaultFixture(t)
		ck := NewChecker(kps.NewCache(x.f, kps.CacheOptions{TTL: time.Minute, NegativeTTL: time.Minute, Now: x.c.now}), testHashKey)
		ck.now = x.c.now
		x.f.Fail(kpstest.Op("get", table))
		for range 2 {
			if app, err := ck.Check(ctx, x.values[0].RevealString()); !errors.Is(err, kps.ErrUnavailable) || errors.Is(err, apikey.ErrInvalidKey) || app.ID != "" {
				t.Errorf("%s failing: %+v %v, want ErrUnavailable and not ErrInvalidKey", table, app, err)
			}
		}
		x.f.Reset()
		if app, err := ck.Check(ctx, x.values[0].RevealString()); err != nil || app.ID != x.app.ID {
			t.Errorf("%s failing, then answering: %+v %v", table, app, err)
		}
		// Once verified, the key is checked without the store.
		x.f.Reset()
		x.f.Fail(kpstest.From(1))
		if app, err := ck.Check(ctx, x.values[0].RevealString()); err != nil || app.ID != x.app.ID || len(x.f.Calls()) != 0 {
			t.Errorf("%s: a verified key, the store down: %+v %v (calls %v)", table, app, err, x.f.Calls())
		}
	}
}

// TestFaultsRegistry: the store failing, for the application or its
// secrets, is not an unknown client (the token endpoint answers 503, not
// invalid_client), and it is not remembered as an answer.
func TestFaultsRegistry(t *testing.T) {
	ctx := context.Background()
	for _, what := range []kpstest.Match{kpstest.Op("get", AppsTable), kpstest.Op("query", ClientSecretsTable)} {
		x := newFaultFixture(t)
		reg := NewRegistry(kps.NewCache(x.f, kps.CacheOptions{TTL: time.Minute, NegativeTTL: time.Minute, Now: x.c.now}), x.f)
		reg.now = x.c.now
		x.f.Fail(what)
		for range 2 {
			c, err := reg.Client(ctx, x.app.ID)
			if failed := x.f.Failed(); len(failed) == 0 || !isInjected(err, failed[len(failed)-1]) || errors.Is(err, oauth.ErrUnknownClient) || c.ID != "" {
				t.Errorf("%v failing: %+v %v, want the store's error", failed, c, err)
			}
		}
		x.f.Reset()
		c, err := reg.Client(ctx, x.app.ID)
		if err != nil || c.ID != x.app.ID || len(c.SecretHashes) != 2 {
			t.Errorf("failing, then answering: %+v %v", c, err)
		}
		if !reg.mu.TryLock() {
			t.Fatal("Client left the registry locked")
		}
		reg.mu.Unlock()
	}
	x := newFaultFixture(t)
	reg := NewRegistry(kps.NewCache(x.f, kps.CacheOptions{}), x.f)
	x.f.Fail(kpstest.Op("get", AppsTable))
	if c, err := reg.AuthorizeClient(ctx, x.app.ID); !isInjected(err, kpstest.Call{N: 1, Op: "get", Table: AppsTable}) || errors.Is(err, authorize.ErrUnknownClient) || c.ID != "" {
		t.Errorf("AuthorizeClient, the store failing: %+v %v", c, err)
	}
	// A key the store refuses as invalid is an unknown client.
	x.f.Reset()
	x.f.Before(kpstest.Op("get", AppsTable), func(c kpstest.Call) error {
		return &kps.Error{Op: c.Op, Table: c.Table, Err: kps.Invalid("not a key of this table")}
	})
	if _, err := reg.Client(ctx, "bad"); !errors.Is(err, oauth.ErrUnknownClient) {
		t.Errorf("Client, a key refused as invalid: %v", err)
	}
	if _, err := reg.AuthorizeClient(ctx, "bad"); !errors.Is(err, authorize.ErrUnknownClient) {
		t.Errorf("AuthorizeClient, a key refused as invalid: %v", err)
	}
}
