package tools_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/rbac"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

func TestManagedomainChangeCredentials(t *testing.T) {
	h := gwtest.NewHome(t)
	h.InitDomain()
	hm, _ := home.At(h.Dir)
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("new-Secret-22\n"), 0o600)
	r := h.MustRun("", "managedomain", "--change_credentials", "--username", "admin", "--password_file", pw)
	if strings.Contains(r.Stdout+r.Stderr, "new-Secret-22") {
		t.Error("password echoed")
	}
	if ok, _ := rbac.Verify(hm, "admin", secret.FromString("new-Secret-22")); !ok {
		t.Error("new password not stored")
	}
	if ok, _ := rbac.Verify(hm, "admin", secret.FromString("changeme-Secret1")); ok {
		t.Error("old password still valid")
	}
	// The menu: option 4, the user, the password on standard input.
	r = h.Run("4\nadmin\nmenu-Secret-33\nq\n", "managedomain", "--menu")
	if ok, _ := rbac.Verify(hm, "admin", secret.FromString("menu-Secret-33")); !ok {
		t.Errorf("menu 4 did not change the password:\n%s", r)
	}
	wantFail(t, h.Run("", "managedomain", "--change_credentials", "--username", "nobody", "--password", "abcdefgh1"), 1, `no admin user "nobody"`)
	wantFail(t, h.Run("", "managedomain", "--change_credentials", "--username", "admin", "--password", "zq7"), 1, "at least 8 characters")
}
