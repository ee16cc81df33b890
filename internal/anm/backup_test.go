package anm

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/apitest"
	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/backup"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// asUser is e.do as another user.
func (e *apiEnv) asUser(user, pass, method, path string) apitest.Answer {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.SetBasicAuth(user, pass)
	return apitest.Do(e.t, http.DefaultClient, req)
}

func TestBackupAPI(t *testing.T) {
	e := newAPIEnv(t)
	e.do("POST", "/api/rbac/users", `{"name":"op","password":"operator-pw-1","roles":["API Server Operator"]}`).MustCode(t, 201)
	e.do("POST", "/api/rbac/users", `{"name":"dep","password":"deployer-pw-1","roles":["Deployer"]}`).MustCode(t, 201)

	// The administrator: the archive, streamed, whole.
	a := e.do("POST", "/api/backup", "")
	a.MustCode(t, 200)
	if ct := a.Header.Get("Content-Type"); ct != "application/gzip" || !strings.Contains(a.Header.Get("Content-Disposition"), `filename="gatehouse-host-1-`) {
		t.Errorf("headers: %v", a.Header)
	}
	m, err := backup.Verify(t.Context(), strings.NewReader(a.Body))
	if err != nil {
		t.Fatalf("the archive does not verify: %v", err)
	}
	if m.Host != "host-1" || m.TopologyVersion == 0 || len(m.Entries) == 0 {
		t.Errorf("manifest: host %q, topology version %d, %d entries", m.Host, m.TopologyVersion, len(m.Entries))
	}
	hasACL := false
	for _, en := range m.Entries {
		hasACL = hasACL || en.Path == "conf/acl.json"
		if strings.HasPrefix(en.Path, "logs/") {
			t.Errorf("logs without withLogs: %s", en.Path)
		}
	}
	if !hasACL {
		t.Error("the archive has no conf/acl.json")
	}
	if !bytes.Contains(gunzip(t, a.Body), []byte("PRIVATE KEY")) {
		t.Error("the administrator's archive of a domain without passphrases has no key in clear: the check below would prove nothing")
	}
	e.do("POST", "/api/backup?withLogs=maybe", "").WantError(t, 400, "withLogs")

	// An operator, while the domain's keys are in clear: refused, naming
	// the scopes; a deployer has no backup.create at all.
	e.asUser("op", "operator-pw-1", "POST", "/api/backup").WantError(t, 403, "not sealed with a passphrase", "domain CA", "node managers", "clear-secrets")
	e.asUser("dep", "deployer-pw-1", "POST", "/api/backup").WantError(t, 403, "backup.create")

	// One at a time.
	e.a.backups <- struct{}{}
	e.do("POST", "/api/backup", "").WantError(t, 409, "being written already")
	<-e.a.backups

	// With every scope sealed, the operator may.
	kdf := secret.KDF{Algorithm: "argon2id", Time: 1, MemoryKiB: 8 << 10, Threads: 1}
	for _, s := range []secret.Scope{secret.ScopeCA, secret.ScopeNodeManagers} {
		if files, _ := s.Files(e.h); len(files) == 0 {
			continue
		}
		if err := secret.ChangePassphrase(e.h, s, secret.Value{}, secret.FromString("a long passphrase"), kdf); err != nil {
			t.Fatal(err)
		}
	}
	op := e.asUser("op", "operator-pw-1", "POST", "/api/backup")
	op.MustCode(t, 200)
	if _, err := backup.Verify(t.Context(), strings.NewReader(op.Body)); err != nil {
		t.Fatalf("the operator's archive: %v", err)
	}
	if plain := gunzip(t, op.Body); !bytes.Contains(plain, []byte("conf/acl.json")) || bytes.Contains(plain, []byte("PRIVATE KEY")) {
		t.Error("the operator's archive: not a tar of the install directory, or a key in clear in it")
	}

	// The audit log: each backup and each refusal.
	entries, err := audit.Open(e.h).Search(audit.Filter{Action: "backup"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, en := range entries {
		got = append(got, en.User+":"+en.Detail+":"+en.Error)
	}
	all := strings.Join(got, "\n")
	for _, w := range []string{"admin:", "entries,", "op:refused:", "op:"} {
		if !strings.Contains(all, w) {
			t.Errorf("the audit log does not have %q:\n%s", w, all)
		}
	}
	if n := strings.Count(all, "entries,"); n != 2 {
		t.Errorf("%d backups in the audit log, want 2:\n%s", n, all)
	}
}

func gunzip(t *testing.T, s string) []byte {
	t.Helper()
	zr, err := gzip.NewReader(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
