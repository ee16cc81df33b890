package tools_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
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

// TestPassphraseTools: managedomain -i --domain_passphrase_file seals the
// CA's key as it is first written; creating an instance needs the CA's and
// then the group's passphrase (a wrong one changes nothing); the change is
// refused while the group runs and with a wrong current passphrase; a
// node manager and an instance refuse a wrong passphrase and start with
// the right one.
func TestPassphraseTools(t *testing.T) {
	h := gwtest.NewHome(t)
	hh := home.Home{Dir: h.Dir}
	pw := passFile(t, "changeme-Secret1")
	ca, grp, nm, wrong := passFile(t, "CA passphrase 1"), passFile(t, "group passphrase 1"), passFile(t, "node manager passphrase"), passFile(t, "not the passphrase")
	port := gwtest.FreePort(t)
	h.MustRun("", "managedomain", "-i", "--domain_name", "D", "--username", "admin", "--password_file", pw, "--port", strconv.Itoa(port), "--domain_passphrase_file", ca)
	if !secret.IsSealedFile(filepath.Join(h.Dir, "groups", "certs", "private", "domainkey.pem")) {
		t.Fatal("the CA's key is not sealed")
	}
	create := func(name string, extra ...string) gwtest.Result {
		args := append([]string{"managedomain", "-c", "-n", name, "-g", "G", "--traffic_port", strconv.Itoa(gwtest.FreePort(t)), "--management_port", strconv.Itoa(gwtest.FreePort(t))}, extra...)
		return h.Run("", args...)
	}
	if r := create("A", "--ca_passphrase_file", wrong); r.Code != 1 || !strings.Contains(r.Stderr, "wrong passphrase for the domain CA") {
		t.Errorf("create with a wrong CA passphrase: %s", r)
	}
	if _, err := os.Stat(hh.GroupDir("group-2")); err == nil {
		t.Error("a refused creation left the group's directory")
	}
	if r := create("A"); r.Code != 1 || !strings.Contains(r.Stderr, "domain CA") {
		t.Errorf("create without the CA's passphrase off a terminal: %s", r)
	}
	h.MustRun("", "managedomain", "-c", "-n", "A", "-g", "G", "--traffic_port", strconv.Itoa(gwtest.FreePort(t)), "--management_port", strconv.Itoa(gwtest.FreePort(t)), "--ca_passphrase_file", ca)
	h.MustRun("", "managedomain", "--change_passphrase", "-g", "G", "--new_passphrase_file", grp)
	key := pkiInstanceKey(hh, "group-2", "instance-1")
	if !secret.IsSealedFile(key) {
		t.Fatal("the instance's key is not sealed")
	}
	if r := create("B", "--ca_passphrase_file", ca, "--group_passphrase_file", wrong); r.Code != 1 || !strings.Contains(r.Stderr, "wrong passphrase for the group group-2") {
		t.Errorf("create with a wrong group passphrase: %s", r)
	}
	if r := create("B", "--ca_passphrase_file", ca, "--group_passphrase_file", grp); r.Code != 0 || !secret.IsSealedFile(pkiInstanceKey(hh, "group-2", "instance-2")) {
		t.Errorf("create with both passphrases: %s", r)
	}
	// The change: refused with a wrong current passphrase (nothing
	// changes) and while an instance of the group runs.
	before, _ := os.ReadFile(key)
	if r := h.Run("", "managedomain", "--change_passphrase", "-g", "G", "--old_passphrase_file", wrong, "--new_passphrase_file", ca); r.Code != 1 || !strings.Contains(r.Stderr, "wrong passphrase") {
		t.Errorf("change with a wrong passphrase: %s", r)
	}
	if after, _ := os.ReadFile(key); string(after) != string(before) {
		t.Error("a refused change altered the instance's key")
	}
	if r := h.Run("", "startinstance", "-d", "-n", "A", "-g", "G", "--passphrase_file", wrong); r.Code != 1 || !strings.Contains(r.Stderr, "wrong passphrase for the group group-2") {
		t.Errorf("start with a wrong passphrase: %s", r)
	}
	if r := h.Run("", "startinstance", "-d", "-n", "A", "-g", "G"); r.Code != 1 || !strings.Contains(r.Stderr, "has a passphrase") {
		t.Errorf("start without a passphrase off a terminal: %s", r)
	}
	h.MustRun("", "startinstance", "-d", "-n", "A", "-g", "G", "--passphrase_file", grp)
	t.Cleanup(func() { h.Run("", "startinstance", "-k", "-n", "A", "-g", "G") })
	if r := h.Run("", "managedomain", "--change_passphrase", "-g", "G", "--old_passphrase_file", grp, "--new_passphrase_file", ca); r.Code != 1 || !strings.Contains(r.Stderr, "is running") {
		t.Errorf("change while the group runs: %s", r)
	}
	h.MustRun("", "startinstance", "-k", "-n", "A", "-g", "G")
	// The node manager's own passphrase.
	h.MustRun("", "managedomain", "--change_passphrase", "--node_manager", "--new_passphrase_file", nm)
	if !secret.IsSealedFile(filepath.Join(h.Dir, "conf", "sessionKey")) {
		t.Error("the session key is not sealed")
	}
	if r := h.Run("", "nodemanager", "-d", "--passphrase_file", wrong); r.Code != 1 || !strings.Contains(r.Stderr, "wrong passphrase for the node managers") {
		t.Errorf("node manager with a wrong passphrase: %s", r)
	}
	t.Cleanup(func() { h.Run("", "nodemanager", "-k", "-q") })
	// Its first start issues its certificate: it needs the CA's key.
	if r := h.Run("", "nodemanager", "-d", "--passphrase_file", nm); r.Code != 1 || !strings.Contains(r.Stderr, "--ca_passphrase_file") {
		t.Errorf("node manager without the CA's passphrase, no certificate yet: %s", r)
	}
	if r := h.Run("", "nodemanager", "-d", "--passphrase_file", nm, "--ca_passphrase_file", wrong); r.Code != 1 || !strings.Contains(r.Stderr, "wrong passphrase for the domain CA") {
		t.Errorf("node manager with a wrong CA passphrase: %s", r)
	}
	if r := h.Run("", "nodemanager", "-d", "--passphrase_file", nm, "--ca_passphrase_file", ca); r.Code != 0 {
		t.Fatalf("node manager with its passphrase: %s", r)
	}
	if !secret.IsSealedFile(filepath.Join(h.Dir, "system", "conf", "certs", "private", "nodemanager-key.pem")) {
		t.Error("the node manager's key is not sealed")
	}
	// It serves its API with its sealed key and session key.
	h.Env = append(h.Env, "XDG_CONFIG_HOME="+t.TempDir())
	r := h.Run("", "client", "--url", fmt.Sprintf("https://localhost:%d/api", port), "--username", "admin", "--password-file", pw, "login")
	if r.Code != 0 {
		t.Errorf("login against the node manager with sealed keys: %s", r)
	}
	// The CA's passphrase changes too: refused while the node manager runs,
	// then the new one opens the CA's key and the old one does not.
	ca2 := passFile(t, "CA passphrase 2")
	if r := h.Run("", "managedomain", "--change_passphrase", "--domain", "--old_passphrase_file", ca, "--new_passphrase_file", ca2); r.Code != 1 || !strings.Contains(r.Stderr, "is running") {
		t.Errorf("the CA's change while the node manager runs: %s", r)
	}
	h.MustRun("", "nodemanager", "-k")
	h.MustRun("", "managedomain", "--change_passphrase", "--domain", "--old_passphrase_file", ca, "--new_passphrase_file", ca2)
	csr := filepath.Join(t.TempDir(), "d.csr")
	if r := h.Run("", "managedomain", "--domain_csr", "--csr_file", csr, "--ca_passphrase_file", ca); r.Code != 1 || !strings.Contains(r.Stderr, "wrong passphrase for the domain CA") {
		t.Errorf("the CA's old passphrase after the change: %s", r)
	}
	if r := h.Run("", "managedomain", "--domain_csr", "--csr_file", csr, "--ca_passphrase_file", ca2); r.Code != 0 {
		t.Errorf("the CA's new passphrase: %s", r)
	}
	// And the node manager's: the new one starts it.
	nm2 := passFile(t, "node manager passphrase 2")
	h.MustRun("", "managedomain", "--change_passphrase", "--node_manager", "--old_passphrase_file", nm, "--new_passphrase_file", nm2)
	if r := h.Run("", "nodemanager", "-d", "--passphrase_file", nm, "--ca_passphrase_file", ca2); r.Code != 1 || !strings.Contains(r.Stderr, "wrong passphrase") {
		t.Errorf("the node manager's old passphrase after the change: %s", r)
	}
	if r := h.Run("", "nodemanager", "-d", "--passphrase_file", nm2, "--ca_passphrase_file", ca2); r.Code != 0 {
		t.Errorf("the node manager's new passphrase: %s", r)
	}
}

// TestChangePassphraseKilled kills the real managedomain
// --change_passphrase with SIGKILL at random points, again and again:
// afterwards exactly one of the old and the new passphrase opens the
// group, and every secret file of the group opens with it.
func TestChangePassphraseKilled(t *testing.T) {
	h := gwtest.NewHome(t)
	h.InitDomain()
	hh := home.Home{Dir: h.Dir}
	for _, n := range []string{"A", "B", "C"} {
		h.MustRun("", "managedomain", "-c", "-n", n, "-g", "G", "--traffic_port", strconv.Itoa(gwtest.FreePort(t)), "--management_port", strconv.Itoa(gwtest.FreePort(t)))
	}
	scope := secret.GroupScope("group-2")
	// Files of every kind: the API-key hashing key, a signing key, a TLS key.
	for rel, b := range map[string]string{"kps/apikeys.key": strings.Repeat("k", 32), "oauth/keys/kid1.json": `{"kid":"kid1"}`, "secrets/tls-key.pem": "TLS KEY"} {
		p := filepath.Join(hh.GroupConfDir("group-2"), filepath.FromSlash(rel))
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := scope.Files(hh)
	want := map[string][]byte{}
	for _, f := range files {
		want[f], _ = os.ReadFile(f)
	}
	if len(files) != 6 {
		t.Fatalf("the group's secret files: %v", files)
	}
	pass := []string{"passphrase number 0", "passphrase number 1"}
	pf := []string{passFile(t, pass[0]), passFile(t, pass[1])}
	h.MustRun("", "managedomain", "--change_passphrase", "-g", "G", "--new_passphrase_file", pf[0])
	cur := 0
	// How long a whole change takes, to spread the kills over it.
	start := time.Now()
	h.MustRun("", "managedomain", "--change_passphrase", "-g", "G", "--old_passphrase_file", pf[0], "--new_passphrase_file", pf[1])
	full, cur := time.Since(start), 1
	runs, changed, completed := 12, 0, 0
	for run := range runs {
		cmd := h.Command(context.Background(), "", "managedomain", "--change_passphrase", "-g", "G", "--old_passphrase_file", pf[cur], "--new_passphrase_file", pf[1-cur])
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The files are written last (after two key derivations): the kills
		// land from 60 % of the change's time to 150 %.
		time.Sleep(full*6/10 + time.Duration(rand.Int64N(int64(full)*9/10)))
		cmd.Process.Kill()
		if err := cmd.Wait(); err == nil {
			completed++
		}
		opens := []bool{}
		for _, p := range pass {
			secret.Forget(hh, scope)
			err := secret.Unlock(hh, scope, secret.FromString(p))
			if err != nil && !errors.Is(err, secret.ErrWrongPassphrase) {
				t.Fatalf("run %d: %v", run, err)
			}
			opens = append(opens, err == nil)
		}
		if opens[0] == opens[1] {
			t.Fatalf("run %d: the passphrases open %v: never both, never neither", run, opens)
		}
		if opens[1-cur] {
			cur, changed = 1-cur, changed+1
		}
		secret.Forget(hh, scope)
		secret.Unlock(hh, scope, secret.FromString(pass[cur]))
		for _, f := range files {
			if b, err := secret.ReadFile(hh, f); err != nil || string(b) != string(want[f]) {
				t.Fatalf("run %d: %s: %q %v", run, f, b, err)
			}
		}
	}
	t.Logf("%d kills of a change taking about %v: %d ended changed (%d of them had finished), %d not", runs, full, changed, completed, runs-changed)
	// The kills straddle the decision (home.TestReplaceFilesKilled kills
	// at each step of the protocol in turn, deterministically).
	if changed == 0 || changed == runs {
		t.Errorf("every kill ended the same way (%d of %d changed): the kills do not straddle the change", changed, runs)
	}
}

func pkiInstanceKey(h home.Home, gid, iid string) string {
	return filepath.Join(h.InstanceDir(gid, iid), "conf", "certs", "private", "instance-key.pem")
}

// TestSealFile: managedomain --seal_file seals a file put into a group's
// conf/secrets/ after its passphrase was set; refused elsewhere, for a
// group without a passphrase, and with a wrong passphrase.
func TestSealFile(t *testing.T) {
	h := gwtest.NewHome(t)
	h.InitDomain()
	hh := home.Home{Dir: h.Dir}
	for _, g := range []string{"G", "Other"} {
		h.MustRun("", "managedomain", "-c", "-n", "S"+g, "-g", g, "--traffic_port", strconv.Itoa(gwtest.FreePort(t)), "--management_port", strconv.Itoa(gwtest.FreePort(t)))
	}
	pass, wrong := passFile(t, "group passphrase of G"), passFile(t, "not the passphrase")
	h.MustRun("", "managedomain", "--change_passphrase", "-g", "G", "--new_passphrase_file", pass)
	dir := filepath.Join(hh.GroupConfDir("group-2"), "secrets")
	os.MkdirAll(dir, 0o700)
	f := filepath.Join(dir, "db.password")
	os.WriteFile(f, []byte("database password 42\n"), 0o600)
	seal := func(args ...string) gwtest.Result {
		return h.Run("", append([]string{"managedomain", "--seal_file"}, args...)...)
	}
	if r := seal("-g", "G", "--file", f, "--passphrase_file", wrong); r.Code != 1 || !strings.Contains(r.Stderr, "wrong passphrase") {
		t.Errorf("a wrong passphrase: %s", r)
	}
	if secret.IsSealedFile(f) {
		t.Fatal("sealed with a wrong passphrase")
	}
	outside := filepath.Join(hh.GroupConfDir("group-2"), "db.password")
	os.WriteFile(outside, []byte("x"), 0o600)
	if r := seal("-g", "G", "--file", outside, "--passphrase_file", pass); r.Code != 1 || !strings.Contains(r.Stderr, "is not in") {
		t.Errorf("a file outside conf/secrets: %s", r)
	}
	other := filepath.Join(hh.GroupConfDir("group-3"), "secrets", "x")
	os.MkdirAll(filepath.Dir(other), 0o700)
	os.WriteFile(other, []byte("x"), 0o600)
	if r := seal("-g", "Other", "--file", other, "--passphrase_file", pass); r.Code != 1 || !strings.Contains(r.Stderr, "has no passphrase") {
		t.Errorf("a group without a passphrase: %s", r)
	}
	if r := seal("-g", "G", "--file", f, "--passphrase_file", pass); r.Code != 0 || !secret.IsSealedFile(f) {
		t.Fatalf("seal: %s", r)
	}
	if b, _ := os.ReadFile(f); strings.Contains(string(b), "database password") {
		t.Error("the password is still in clear")
	}
	if r := seal("-g", "G", "--file", f, "--passphrase_file", pass); r.Code != 0 || !strings.Contains(r.Stdout, "sealed already") {
		t.Errorf("a second seal: %s", r)
	}
	secret.Forget(hh, secret.GroupScope("group-2"))
	if err := secret.Unlock(hh, secret.GroupScope("group-2"), secret.FromString("group passphrase of G")); err != nil {
		t.Fatal(err)
	}
	if b, err := secret.ReadFile(hh, f); err != nil || string(b) != "database password 42\n" {
		t.Errorf("the sealed file opens: %q %v", b, err)
	}
}
