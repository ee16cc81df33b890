package rbac

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

func TestMain(m *testing.M) {
	iterations = 1000    // speed; the count is recorded in each hash
	syscall.Umask(0o022) // the modes of created directories do not depend on the caller's umask
	os.Exit(m.Run())
}

func newHome(t *testing.T) home.Home {
	t.Helper()
	h, err := home.At(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestCreateAndVerify(t *testing.T) {
	h := newHome(t)
	pw := secret.FromString("correct horse")
	if err := CreateAdmin(h, "admin", pw); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(h.AdminUsersFile())
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("mode: got %v, want 0600", got)
	}
	data, _ := os.ReadFile(h.AdminUsersFile())
	if strings.Contains(string(data), "correct horse") {
		t.Fatal("password stored in clear")
	}
	var f File
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Users) != 1 || f.Users[0].Name != "admin" || len(f.Users[0].Roles) != 1 || f.Users[0].Roles[0] != RoleAdmin {
		t.Fatalf("got %+v, want one admin", f.Users)
	}
	if !strings.HasPrefix(f.Users[0].Hash, "pbkdf2-sha256$1000$") {
		t.Errorf("hash %q does not record the iteration count used", f.Users[0].Hash)
	}
	tests := []struct {
		user, pw string
		want     bool
	}{
		{"admin", "correct horse", true},
		{"admin", "wrong horse!", false},
		{"admin", "", false},
		{"nobody", "correct horse", false},
	}
	for _, tt := range tests {
		got, err := Verify(h, tt.user, secret.FromString(tt.pw))
		if err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("Verify(%q): got %v, want %v", tt.user, got, tt.want)
		}
	}
}

func TestCreateAdminRefuses(t *testing.T) {
	h := newHome(t)
	if err := CreateAdmin(h, "admin", secret.FromString("12345678")); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(h.AdminUsersFile())
	tests := []struct {
		name, user, pw string
		want           error
	}{
		{"duplicate", "admin", "abcdefgh", ErrUserExists},
		{"short password", "bob", "1234567", ErrWeakPassword},
		{"empty name", "", "abcdefgh", nil},
		{"colon", "a:b", "abcdefgh", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CreateAdmin(h, tt.user, secret.FromString(tt.pw))
			if err == nil {
				t.Fatal("accepted")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
			if strings.Contains(err.Error(), tt.pw) && tt.pw != "" {
				t.Errorf("error %q contains the password", err)
			}
			after, _ := os.ReadFile(h.AdminUsersFile())
			if string(after) != string(before) {
				t.Error("file changed by a refused change")
			}
		})
	}
}

func TestInitAdminsReplaces(t *testing.T) {
	h := newHome(t)
	CreateAdmin(h, "old", secret.FromString("12345678"))
	if err := InitAdmins(h, "new", secret.FromString("abcdefgh")); err != nil {
		t.Fatal(err)
	}
	f, err := Load(h)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Users) != 1 || f.Users[0].Name != "new" {
		t.Errorf("got %+v, want only new", f.Users)
	}
}

func TestHashFormat(t *testing.T) {
	old := iterations
	iterations = Iterations
	defer func() { iterations = old }()
	hash, err := Hash(secret.FromString("password1"))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(hash, "$")
	if len(parts) != 4 || parts[0] != "pbkdf2-sha256" || parts[1] != "600000" || len(parts[2]) != 22 || len(parts[3]) != 43 {
		t.Fatalf("got %q, want pbkdf2-sha256$600000$<22 b64>$<43 b64>", hash)
	}
	ok, err := CheckHash(hash, secret.FromString("password1"))
	if err != nil || !ok {
		t.Errorf("CheckHash: got %v, %v, want true", ok, err)
	}
	for _, bad := range []string{"", "md5$1$a$b", "pbkdf2-sha256$x$AAAA$AAAA", "pbkdf2-sha256$10$!!$AAAA"} {
		if _, err := CheckHash(bad, secret.FromString("x")); err == nil {
			t.Errorf("CheckHash(%q) accepted", bad)
		}
	}
}
