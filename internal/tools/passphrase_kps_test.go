package tools_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apps"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/fieldcrypt"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

const encryptedGroupYAML = `kps:
  tables:
    - collection: Back ends
      name: Credentials
      alias: creds
      properties: [{name: id, type: string}, {name: secret, type: string, encrypted: true}]
      primaryKey: id
backends:
  - name: be
    url: %s
apis:
  - name: orders
    path: /orders/{customer}
    backend: be
    policies:
      - lookup: {table: creds, key: "param:customer", as: c, required: true}
      - headers: {request: {set: {X-Backend-Secret: "${c.secret}"}}}
`

func passFile(t *testing.T, p string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(f, []byte(p+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestKPSEncryptedFields: a custom table's encrypted property is sealed
// in the store once the group has a passphrase, read in clear by the
// instance's lookup policy (the back end gets it), kept sealed in kpsadmin
// backups; after the group's passphrase changes the instance refuses to
// start, naming kpsadmin reencrypt, which moves the fields (a wrong
// passphrase changes nothing); then the instance serves again.
func TestKPSEncryptedFields(t *testing.T) {
	h := gwtest.NewHome(t)
	h.InitDomain()
	hh := home.Home{Dir: h.Dir}
	tp, mp := gwtest.FreePort(t), gwtest.FreePort(t)
	h.MustRun("", "managedomain", "-c", "-n", "S", "-g", "G", "--traffic_port", strconv.Itoa(tp), "--management_port", strconv.Itoa(mp))
	const gid = "group-2"
	got := make(chan string, 8)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		got <- r.Header.Get("X-Backend-Secret")
		w.Write([]byte("ok"))
	}))
	t.Cleanup(be.Close)
	if err := os.WriteFile(hh.GroupConfFile(gid), []byte(fmt.Sprintf(encryptedGroupYAML, be.URL)), 0o644); err != nil {
		t.Fatal(err)
	}
	p1, p2 := passFile(t, "first passphrase of G"), passFile(t, "second passphrase of G")
	h.MustRun("", "managedomain", "--change_passphrase", "-g", "G", "--new_passphrase_file", p1)

	// The rows, written as the management API does (sealed on the way in).
	cfg, err := groupconf.LoadInstance(hh, gid, "instance-1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	open := func(pass string, mode apps.Mode) (kps.Store, error) {
		secret.Forget(hh, secret.GroupScope(gid))
		if err := secret.Unlock(hh, secret.GroupScope(gid), secret.FromString(pass)); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return apps.OpenGroupStoreMode(ctx, hh, gid, cfg.KPS, nil, mode)
	}
	st, err := open("first passphrase of G", apps.SealWrites)
	if err != nil {
		t.Fatal(err)
	}
	const known = "backend-password-7b1f"
	r, err := st.Insert(context.Background(), "creds", map[string]any{"id": "acme", "secret": known})
	if err != nil {
		t.Fatal(err)
	}
	if s := r.Values["secret"].(string); !secret.IsSealed(s) {
		t.Errorf("the management API's view shows the value in clear: %q", s)
	}
	st.Close()
	db, _ := os.ReadFile(filepath.Join(hh.GroupConfDir(gid), "kps", "kps.db"))
	wal, _ := os.ReadFile(filepath.Join(hh.GroupConfDir(gid), "kps", "kps.db-wal"))
	if strings.Contains(string(db)+string(wal), known) {
		t.Error("the encrypted property is in clear in the store's files")
	}

	start := func(pass string) gwtest.Result {
		return h.Run("", "startinstance", "-d", "-n", "S", "-g", "G", "--passphrase_file", pass)
	}
	call := func() (int, string) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/orders/acme", tp))
		if err != nil {
			return 0, err.Error()
		}
		resp.Body.Close()
		select {
		case v := <-got:
			return resp.StatusCode, v
		case <-time.After(5 * time.Second):
			return resp.StatusCode, ""
		}
	}
	if r := start(p1); r.Code != 0 {
		t.Fatalf("start with the group's passphrase: %s", r)
	}
	if code, v := call(); code != 200 || v != known {
		t.Errorf("the lookup policy: %d, the back end got %q", code, v)
	}
	// kpsadmin's backup keeps the value sealed.
	b := h.Run("", "kpsadmin", "backup", "-g", "G")
	if b.Code != 0 {
		t.Fatalf("backup: %s", b)
	}
	backups, _ := filepath.Glob(filepath.Join(hh.InstanceDir(gid, "instance-1"), "conf", "kps", "backup", "*.jsonl"))
	if len(backups) != 1 {
		t.Fatalf("backups: %v", backups)
	}
	if bb, _ := os.ReadFile(backups[0]); strings.Contains(string(bb), known) || !strings.Contains(string(bb), secret.SealedPrefix) {
		t.Errorf("the backup holds the value in clear, or not sealed: %s", bb)
	}
	h.MustRun("", "startinstance", "-k", "-n", "S", "-g", "G")

	// A new passphrase: the instance refuses to start until reencrypt.
	h.MustRun("", "managedomain", "--change_passphrase", "-g", "G", "--old_passphrase_file", p1, "--new_passphrase_file", p2)
	if r := start(p2); r.Code != 1 || !strings.Contains(r.Stderr, "kpsadmin reencrypt") {
		t.Errorf("start after the change, before reencrypt: %s", r)
	}
	if _, err := open("second passphrase of G", apps.Plain); !errors.Is(err, fieldcrypt.ErrWrongPassphrase) {
		t.Errorf("opening the store with the new passphrase before reencrypt: %v", err)
	}
	if r := h.Run("", "kpsadmin", "reencrypt", "-g", "G", "--passphrase_file", p2, "--old_passphrase_file", p2); r.Code != 1 {
		t.Errorf("reencrypt with a wrong old passphrase: %s", r)
	}
	if r := h.Run("", "kpsadmin", "reencrypt", "-g", "G", "--passphrase_file", p1, "--old_passphrase_file", p1); r.Code != 1 || !strings.Contains(r.Stderr, "wrong passphrase") {
		t.Errorf("reencrypt with a passphrase that is not the group's: %s", r)
	}
	if r := h.Run("", "kpsadmin", "reencrypt", "-g", "G", "--passphrase_file", p2, "--old_passphrase_file", p1); r.Code != 0 || !strings.Contains(r.Stdout, "sealed with the group's passphrase") {
		t.Fatalf("reencrypt: %s", r)
	}
	if r := start(p2); r.Code != 0 {
		t.Fatalf("start after reencrypt: %s", r)
	}
	if code, v := call(); code != 200 || v != known {
		t.Errorf("after reencrypt: %d, the back end got %q", code, v)
	}
	if r := h.Run("", "kpsadmin", "reencrypt", "-g", "G", "--passphrase_file", p2, "--old_passphrase_file", p2); r.Code != 1 || !strings.Contains(r.Stderr, "running") {
		t.Errorf("reencrypt while an instance runs: %s", r)
	}
	h.MustRun("", "startinstance", "-k", "-n", "S", "-g", "G")
}
