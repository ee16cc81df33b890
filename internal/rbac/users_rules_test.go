package rbac

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

func pw(s string) secret.Value { return secret.FromString(s) }

func TestValidateUserName(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"admin", true},
		{"a", true},
		{strings.Repeat("x", 64), true},
		{strings.Repeat("é", 64), true}, // 64 characters, 128 bytes
		{strings.Repeat("x", 65), false},
		{strings.Repeat("é", 65), false},
		{"", false},
		{"\xff", false},
		{" admin", false},
		{"admin ", false},
		{"ad min", true},
		{"a:b", false},
		{"a\tb", false},
		{"a\x00b", false},
	} {
		if err := ValidateUserName(c.name); (err == nil) != c.ok {
			t.Errorf("ValidateUserName(%q): got %v, want ok %v", c.name, err, c.ok)
		}
	}
}

// A password needs 8 characters (not bytes).
func TestCheckPassword(t *testing.T) {
	for _, c := range []struct {
		pw string
		ok bool
	}{
		{"1234567", false},
		{"12345678", true},
		{"éééé", false}, // 8 bytes, 4 characters
		{"éééééééé", true},
		{"", false},
	} {
		err := CheckPassword(pw(c.pw))
		if (err == nil) != c.ok || err != nil && !errors.Is(err, ErrWeakPassword) {
			t.Errorf("CheckPassword(%q): got %v, want ok %v", c.pw, err, c.ok)
		}
	}
}

// A stored hash that is malformed is an error, never a match; the
// iteration count is bounded (1 to 100,000,000) before any work is done.
func TestCheckHashRefusals(t *testing.T) {
	good, err := Hash(pw("password1"))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, "$")
	salt, key := parts[2], parts[3]
	for _, c := range []struct{ hash, want string }{
		{"pbkdf2-sha256$1000$" + salt, "want pbkdf2-sha256$<iterations>$<salt>$<key>"},
		{good + "$x", "want pbkdf2-sha256$"},
		{"pbkdf2-sha1$1000$" + salt + "$" + key, "want pbkdf2-sha256$"},
		{"pbkdf2-sha256$x$" + salt + "$" + key, `bad iteration count "x"`},
		{"pbkdf2-sha256$0$" + salt + "$" + key, `bad iteration count "0"`},
		{"pbkdf2-sha256$-5$" + salt + "$" + key, `bad iteration count "-5"`},
		{"pbkdf2-sha256$100000001$" + salt + "$" + key, `bad iteration count "100000001"`},
		// Counts within the bounds pass that check and fail on the salt.
		{"pbkdf2-sha256$1$!!$" + key, "bad salt"},
		{"pbkdf2-sha256$100000000$!!$" + key, "bad salt"},
		{"pbkdf2-sha256$1000$$" + key, "bad salt"},
		{"pbkdf2-sha256$1000$" + salt + "$!!", "bad key"},
		{"pbkdf2-sha256$1000$" + salt + "$", "bad key"},
	} {
		ok, err := checkHashWithin(t, c.hash, pw("password1"))
		if ok || err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("CheckHash(%q): got %v, %v, want an error containing %q", c.hash, ok, err, c.want)
		}
	}
	// One iteration and a one-byte salt and key are well-formed.
	if ok, err := checkHashWithin(t, "pbkdf2-sha256$1$AA$AA", pw("password1")); ok || err != nil {
		t.Errorf("one iteration: got %v, %v, want false, nil", ok, err)
	}
}

// checkHashWithin is CheckHash with a deadline: a refused iteration count
// costs no work, so a check that runs for 5 s failed to refuse it.
func checkHashWithin(t *testing.T, hash string, p secret.Value) (bool, error) {
	t.Helper()
	type result struct {
		ok  bool
		err error
	}
	done := make(chan result, 1)
	go func() {
		ok, err := CheckHash(hash, p)
		done <- result{ok, err}
	}()
	select {
	case r := <-done:
		return r.ok, r.err
	case <-time.After(5 * time.Second):
		t.Fatalf("CheckHash(%q) did not return within 5 s", hash)
		return false, nil
	}
}

// The users file: a missing file is no users; a malformed or unreadable one
// is an error for every reader and writer, and is left as it is.
func TestUsersFileErrors(t *testing.T) {
	h := newHome(t)
	if f, err := Load(h); err != nil || len(f.Users) != 0 {
		t.Fatalf("missing file: got %+v, %v, want no users", f, err)
	}
	if ok, err := Verify(h, "admin", pw("12345678")); ok || err != nil {
		t.Errorf("Verify without a file: got %v, %v, want false, nil", ok, err)
	}
	os.MkdirAll(h.ConfDir(), 0o755)
	os.WriteFile(h.AdminUsersFile(), []byte(`{"users": [`), 0o600)
	check := func(what string, err error, want string) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error containing %q", what, err, want)
		}
	}
	want := "parsing " + h.AdminUsersFile()
	_, err := Load(h)
	check("Load", err, want)
	_, err = Verify(h, "admin", pw("12345678"))
	check("Verify", err, want)
	_, _, err = Roles(h, "admin")
	check("Roles", err, want)
	check("AddUser", AddUser(h, "bob", pw("12345678"), []string{RoleOperator}), want)
	check("UpdateUser", UpdateUser(h, "bob", pw("12345678"), nil), want)
	check("DeleteUser", DeleteUser(h, "bob"), want)
	if data, _ := os.ReadFile(h.AdminUsersFile()); string(data) != `{"users": [` {
		t.Errorf("file changed to %s", data)
	}
	os.Remove(h.AdminUsersFile())
	blockWithDir(t, h.AdminUsersFile())
	_, err = Load(h)
	check("Load of a directory", err, "reading admin users")

	// A stored hash that is damaged is an error, not a refusal.
	h2 := newHome(t)
	os.MkdirAll(h2.ConfDir(), 0o755)
	os.WriteFile(h2.AdminUsersFile(), []byte(`{"users": [{"name": "admin", "roles": ["API Server Administrator"], "hash": "md5$x"}]}`), 0o600)
	_, err = Verify(h2, "admin", pw("12345678"))
	check("Verify with a damaged hash", err, "password hash")

	// var is a file; the lock cannot be taken; conf cannot be created.
	h3 := newHome(t)
	blockWithFile(t, filepath.Dir(h3.RunDir()))
	check("var is a file", CreateAdmin(h3, "admin", pw("12345678")), "creating run directory")
	h4 := newHome(t)
	blockWithDir(t, filepath.Join(h4.RunDir(), "adminUsers.lock"))
	check("lock unusable", CreateAdmin(h4, "admin", pw("12345678")), "another tool is changing the admin users")
	h5 := newHome(t)
	os.Symlink(filepath.Join(h5.Dir, "nowhere"), h5.ConfDir()) // conf reads as missing, cannot be created
	check("conf a dangling link", CreateAdmin(h5, "admin", pw("12345678")), "creating "+h5.ConfDir())
}

// Writing the users file creates var/run and conf with mode 0755.
func TestUsersFileDirectories(t *testing.T) {
	h := newHome(t)
	if err := CreateAdmin(h, "admin", pw("12345678")); err != nil {
		t.Fatal(err)
	}
	wantMode(t, h.RunDir(), 0o755|os.ModeDir)
	wantMode(t, h.ConfDir(), 0o755|os.ModeDir)
}

func TestInitAdminsRefuses(t *testing.T) {
	h := newHome(t)
	if err := CreateAdmin(h, "old", pw("12345678")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, pw string }{{"new", "short"}, {"a:b", "12345678"}} {
		if err := InitAdmins(h, c.name, pw(c.pw)); err == nil {
			t.Errorf("InitAdmins(%q, %q): got nil, want an error", c.name, c.pw)
		}
	}
	if roles, ok, _ := Roles(h, "old"); !ok || !slices.Equal(roles, []string{RoleAdmin}) {
		t.Errorf("a refused InitAdmins changed the file: old has %v, %v", roles, ok)
	}
}

// newUsers makes a users file: admin (administrator) first, then the
// others given as name → roles.
func newUsers(t *testing.T, others ...[]string) (h home.Home) {
	t.Helper()
	h = newHome(t)
	if err := CreateAdmin(h, "admin", pw("admin-password")); err != nil {
		t.Fatal(err)
	}
	for _, o := range others {
		if err := AddUser(h, o[0], pw(o[0]+"-password"), o[1:]); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func wantRoles(t *testing.T, h home.Home, name string, want ...string) {
	t.Helper()
	roles, ok, err := Roles(h, name)
	if err != nil {
		t.Fatal(err)
	}
	if want == nil && ok {
		t.Errorf("%s: got roles %v, want no such user", name, roles)
	} else if want != nil && (!ok || !slices.Equal(roles, want)) {
		t.Errorf("%s: got roles %v (exists %v), want %v", name, roles, ok, want)
	}
}

func wantPassword(t *testing.T, h home.Home, name, password string, want bool) {
	t.Helper()
	ok, err := Verify(h, name, pw(password))
	if err != nil || ok != want {
		t.Errorf("Verify(%s, %s): got %v, %v, want %v", name, password, ok, err, want)
	}
}

func TestAddUser(t *testing.T) {
	h := newUsers(t, []string{"op", RoleOperator, RoleDeployer})
	wantRoles(t, h, "op", RoleOperator, RoleDeployer)
	wantRoles(t, h, "admin", RoleAdmin)
	wantPassword(t, h, "op", "op-password", true)
	before, _ := os.ReadFile(h.AdminUsersFile())
	for _, c := range []struct {
		name, user, pw string
		roles          []string
		want           error
	}{
		{"no role", "bob", "12345678", nil, nil},
		{"empty roles", "bob", "12345678", []string{}, nil},
		{"taken", "op", "12345678", []string{RoleOperator}, ErrUserExists},
		{"weak password", "bob", "1234567", []string{RoleOperator}, ErrWeakPassword},
		{"bad name", "a:b", "12345678", []string{RoleOperator}, nil},
	} {
		err := AddUser(h, c.user, pw(c.pw), c.roles)
		if err == nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want an error (%v)", c.name, err, c.want)
		}
	}
	if after, _ := os.ReadFile(h.AdminUsersFile()); string(after) != string(before) {
		t.Error("a refused AddUser changed the file")
	}
}

func TestUpdateUser(t *testing.T) {
	h := newUsers(t, []string{"op", RoleOperator})
	before, _ := os.ReadFile(h.AdminUsersFile())
	for _, c := range []struct {
		name, user, pw string
		roles          []string
		want           error
	}{
		{"empty roles", "op", "", []string{}, nil},
		{"weak new password", "op", "1234567", nil, ErrWeakPassword},
		{"weak new password with roles", "op", "1234567", []string{RoleDeployer}, ErrWeakPassword},
		{"unknown user", "nobody", "", []string{RoleOperator}, ErrUserNotFound},
		{"last administrator loses the role", "admin", "", []string{RoleOperator}, ErrLastAdmin},
	} {
		err := UpdateUser(h, c.user, pw(c.pw), c.roles)
		if err == nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want an error (%v)", c.name, err, c.want)
		}
	}
	if after, _ := os.ReadFile(h.AdminUsersFile()); string(after) != string(before) {
		t.Error("a refused UpdateUser changed the file")
	}

	// Roles of a user other than the last administrator change freely.
	if err := UpdateUser(h, "op", secret.Value{}, []string{RoleDeployer, RoleKPSAdmin}); err != nil {
		t.Fatal(err)
	}
	wantRoles(t, h, "op", RoleDeployer, RoleKPSAdmin)
	wantPassword(t, h, "op", "op-password", true)
	// The last administrator keeps the role along with others.
	if err := UpdateUser(h, "admin", secret.Value{}, []string{RoleOperator, RoleAdmin}); err != nil {
		t.Fatal(err)
	}
	wantRoles(t, h, "admin", RoleOperator, RoleAdmin)
	// A new password only: the roles stay, the old password stops working.
	if err := UpdateUser(h, "op", pw("new-password"), nil); err != nil {
		t.Fatal(err)
	}
	wantRoles(t, h, "op", RoleDeployer, RoleKPSAdmin)
	wantPassword(t, h, "op", "new-password", true)
	wantPassword(t, h, "op", "op-password", false)
	// With a second administrator, the first may lose the role.
	if err := UpdateUser(h, "op", secret.Value{}, []string{RoleAdmin}); err != nil {
		t.Fatal(err)
	}
	if err := UpdateUser(h, "admin", secret.Value{}, []string{RoleOperator}); err != nil {
		t.Errorf("one of two administrators loses the role: %v", err)
	}
	wantRoles(t, h, "admin", RoleOperator)
}

func TestDeleteUser(t *testing.T) {
	h := newUsers(t, []string{"op", RoleOperator}, []string{"dep", RoleDeployer})
	if err := DeleteUser(h, "nobody"); !errors.Is(err, ErrUserNotFound) {
		t.Errorf("unknown user: got %v, want ErrUserNotFound", err)
	}
	if err := DeleteUser(h, "admin"); !errors.Is(err, ErrLastAdmin) {
		t.Errorf("the last administrator: got %v, want ErrLastAdmin", err)
	}
	wantRoles(t, h, "admin", RoleAdmin)
	if err := DeleteUser(h, "op"); err != nil {
		t.Fatalf("a non-administrator: %v", err)
	}
	wantRoles(t, h, "op")
	wantRoles(t, h, "dep", RoleDeployer)
	// With a second administrator, the first (first in the file) may go.
	if err := UpdateUser(h, "dep", secret.Value{}, []string{RoleDeployer, RoleAdmin}); err != nil {
		t.Fatal(err)
	}
	if err := DeleteUser(h, "admin"); err != nil {
		t.Fatalf("one of two administrators: %v", err)
	}
	wantRoles(t, h, "admin")
	if err := DeleteUser(h, "dep"); !errors.Is(err, ErrLastAdmin) {
		t.Errorf("the new last administrator: got %v, want ErrLastAdmin", err)
	}
}

// In FIPS 140-only mode (GODEBUG=fips140=only) a stored hash with a key or
// salt too short for FIPS is an error, not a refusal or a match. The test
// binary is run again in that mode.
func TestCheckHashUnderFIPSOnly(t *testing.T) {
	if os.Getenv("GATEHOUSE_RBAC_FIPS_CHILD") == "1" {
		ok, err := CheckHash("pbkdf2-sha256$1$AA$AA", pw("password1"))
		if ok || err == nil || !strings.Contains(err.Error(), "hashing password") {
			t.Fatalf("got %v, %v, want a hashing error", ok, err)
		}
		return
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCheckHashUnderFIPSOnly$", "-test.count=1")
	cmd.Env = append(os.Environ(), "GATEHOUSE_RBAC_FIPS_CHILD=1", "GODEBUG=fips140=only")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("in FIPS 140-only mode: %v\n%s", err, out)
	}
}

// FuzzCheckHash: a stored hash, however damaged, gives an answer or an
// error, never a panic, and a malformed one never matches.
func FuzzCheckHash(f *testing.F) {
	good, _ := Hash(pw("password1"))
	for _, s := range []string{good, "", "$", "$$$", "pbkdf2-sha256", "pbkdf2-sha256$", "pbkdf2-sha256$1", "pbkdf2-sha256$1$", "pbkdf2-sha256$1$AA", "pbkdf2-sha256$1$AA$", "pbkdf2-sha256$1$AA$A", good[:len(good)-1], good + "$"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, hash string) {
		if parts := strings.Split(hash, "$"); len(parts) > 1 && len(parts[1]) > 4 {
			return // up to 100,000,000 iterations are valid: too slow to fuzz
		}
		ok, err := CheckHash(hash, pw("password1"))
		if ok && err != nil {
			t.Fatalf("CheckHash(%q): got a match and %v", hash, err)
		}
	})
}

// TestUserGenerations: every creation and every change of a password or
// roles gives the record a generation never given before; a record left
// alone keeps its own.
func TestUserGenerations(t *testing.T) {
	h := home.Home{Dir: t.TempDir()}
	gen := func(name string) int64 {
		t.Helper()
		f, err := Load(h)
		if err != nil {
			t.Fatal(err)
		}
		u, ok := f.Lookup(name)
		if !ok {
			t.Fatalf("no user %q", name)
		}
		return u.Gen
	}
	if err := CreateAdmin(h, "admin", secret.FromString("admin-pw-12345")); err != nil {
		t.Fatal(err)
	}
	if err := AddUser(h, "ann", secret.FromString("ann-pw-1234567"), []string{RoleOperator}); err != nil {
		t.Fatal(err)
	}
	a0, ann0 := gen("admin"), gen("ann")
	if a0 == 0 || ann0 <= a0 {
		t.Fatalf("generations: admin %d, ann %d", a0, ann0)
	}
	if err := UpdateUser(h, "ann", secret.FromString("ann-pw-7654321"), nil); err != nil {
		t.Fatal(err)
	}
	ann1 := gen("ann")
	if ann1 <= ann0 || gen("admin") != a0 {
		t.Errorf("after a password change: ann %d (was %d), admin %d (was %d)", ann1, ann0, gen("admin"), a0)
	}
	if err := UpdateUser(h, "ann", secret.Value{}, []string{RoleOperator}); err != nil {
		t.Fatal(err)
	}
	if gen("ann") != ann1 {
		t.Errorf("the same roles again changed the generation")
	}
	if err := UpdateUser(h, "ann", secret.Value{}, []string{RoleDeployer}); err != nil {
		t.Fatal(err)
	}
	ann2 := gen("ann")
	if ann2 <= ann1 {
		t.Errorf("after a role change: %d (was %d)", ann2, ann1)
	}
	if err := DeleteUser(h, "ann"); err != nil {
		t.Fatal(err)
	}
	if err := AddUser(h, "ann", secret.FromString("ann-pw-1234567"), []string{RoleOperator}); err != nil {
		t.Fatal(err)
	}
	if gen("ann") <= ann2 {
		t.Errorf("made again: %d, not above the deleted record's %d", gen("ann"), ann2)
	}
}
