package authorize

import (
	"errors"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

func TestUsers(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	u := e.users
	pw := secret.FromString("correct horse battery")
	for name, c := range map[string]struct{ user, pw string }{
		"weak password":   {"bob", "short"},
		"empty name":      {"", "correct horse battery"},
		"spaces around":   {" bob", "correct horse battery"},
		"a colon":         {"bo:b", "correct horse battery"},
		"a control":       {"bo\nb", "correct horse battery"},
		"a name too long": {strings.Repeat("b", 129), "correct horse battery"},
	} {
		if _, err := u.Create(ctx, c.user, "", secret.FromString(c.pw)); !errors.Is(err, kps.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := u.Create(ctx, "alice", "", pw); !errors.Is(err, kps.ErrExists) {
		t.Errorf("a taken name: %v", err)
	}
	b, err := u.Create(ctx, "bob", "Bob B.", pw)
	if err != nil || b.Username != "bob" || b.Name != "Bob B." || !b.Enabled || b.ID == "" || b.CreatedAt.IsZero() {
		t.Fatalf("create: %+v %v", b, err)
	}
	if r, _ := e.store.GetBySecondary(ctx, UsersTable, "bob"); !strings.HasPrefix(r.Values["passwordHash"].(string), "pbkdf2-sha256$") {
		t.Errorf("stored: %v (want a slow hash)", r.Values["passwordHash"])
	}
	if got, err := u.Authenticate(ctx, "bob", pw); err != nil || got.ID != b.ID {
		t.Errorf("authenticate: %+v %v", got, err)
	}
	for name, c := range map[string]struct{ user, pw string }{
		"wrong password": {"bob", "correct horse batterY"},
		"unknown user":   {"carol", "correct horse battery"},
		"empty name":     {"", "correct horse battery"},
	} {
		if _, err := u.Authenticate(ctx, c.user, secret.FromString(c.pw)); !errors.Is(err, ErrBadLogin) {
			t.Errorf("%s: %v, want ErrBadLogin", name, err)
		}
	}
	if err := u.SetPassword(ctx, "bob", secret.FromString("short")); !errors.Is(err, kps.ErrInvalid) {
		t.Errorf("a weak new password: %v", err)
	}
	if err := u.SetPassword(ctx, "bob", secret.FromString("another long one")); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Authenticate(ctx, "bob", pw); !errors.Is(err, ErrBadLogin) {
		t.Errorf("the old password after a change: %v", err)
	}
	if _, err := u.Authenticate(ctx, "bob", secret.FromString("another long one")); err != nil {
		t.Errorf("the new password: %v", err)
	}
	if err := u.SetEnabled(ctx, "bob", false); err != nil {
		t.Fatal(err)
	}
	if got, _ := u.Get(ctx, "bob"); got.Enabled {
		t.Error("still enabled")
	}
	if _, err := u.Authenticate(ctx, "bob", secret.FromString("another long one")); !errors.Is(err, ErrBadLogin) {
		t.Errorf("a disabled user: %v", err)
	}
	if err := u.SetEnabled(ctx, "nobody", true); !errors.Is(err, kps.ErrNotFound) {
		t.Errorf("enable an unknown user: %v", err)
	}
	if err := u.Delete(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Get(ctx, "bob"); !errors.Is(err, kps.ErrNotFound) {
		t.Errorf("after delete: %v", err)
	}
	if err := u.Delete(ctx, "bob"); !errors.Is(err, kps.ErrNotFound) {
		t.Errorf("delete twice: %v", err)
	}
	e.store.Close()
	if _, err := u.Authenticate(ctx, "alice", pw); err == nil || errors.Is(err, ErrBadLogin) {
		t.Errorf("store closed: %v, want an error that is not ErrBadLogin", err)
	}
}

func TestUsersList(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	pw := secret.FromString("correct horse battery")
	for _, n := range []string{"bob", "carol"} {
		if _, err := e.users.Create(ctx, n, "", pw); err != nil {
			t.Fatal(err)
		}
	}
	all, next, err := e.users.List(ctx, kps.Page{})
	if err != nil || next != "" {
		t.Fatalf("List: next %q, %v", next, err)
	}
	names := map[string]bool{}
	for _, u := range all {
		names[u.Username] = true
	}
	if len(all) != 3 || !names["alice"] || !names["bob"] || !names["carol"] {
		t.Errorf("List: got %+v, want alice, bob and carol", all)
	}
	p1, next, err := e.users.List(ctx, kps.Page{Limit: 2})
	if err != nil || len(p1) != 2 || next == "" {
		t.Fatalf("page 1: %d users, next %q, %v", len(p1), next, err)
	}
	p2, next, err := e.users.List(ctx, kps.Page{Limit: 2, Cursor: next})
	if err != nil || len(p2) != 1 || next != "" || p2[0].ID == p1[0].ID || p2[0].ID == p1[1].ID {
		t.Errorf("page 2: got %+v, next %q, %v", p2, next, err)
	}
}
