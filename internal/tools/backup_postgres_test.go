package tools_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apps"
	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/postgres"
	"github.com/gatehouse-gw/gatehouse/internal/kps/postgres/pgtest"
)

// TestBackupPostgresKPS (issue 21): a group whose key property store is
// PostgreSQL, its instance running and rows written while gatehouse backup
// runs: the backup holds a consistent export of the database (a prefix of
// the writes, the API-key hashing key the instance made); restore loads it
// into another database named on the command line (refused into tables
// that hold rows unless --force, a password in the URL refused), or, without
// it, leaves it where kpsadmin restore --uuid finds it.
func TestBackupPostgresKPS(t *testing.T) {
	ctx := context.Background()
	h := gwtest.NewHome(t)
	p := newInstance(t, h, "G", "S", false)
	pg := pgtest.Shared(t)
	src := pg.NewDatabase(t)
	gconf := h.Path("groups", "group-2", "conf")
	pw := filepath.Join(gconf, "pgpw")
	os.WriteFile(pw, []byte(src.Password.RevealString()+"\n"), 0o600)
	ca := filepath.Join(gconf, "pgca.pem")
	caPEM, _ := os.ReadFile(src.SSLRootCert)
	os.WriteFile(ca, caPEM, 0o644)
	group, _ := os.ReadFile(filepath.Join(gconf, "group.yaml"))
	kpsConf := fmt.Sprintf("kps:\n  backend: postgres\n  postgres: {host: 127.0.0.1, port: %d, database: %s, user: %s, passwordFile: %s, sslMode: verify-full, sslRootCert: %s}\n",
		src.Port, src.Database, src.User, "groups/group-2/conf/pgpw", "groups/group-2/conf/pgca.pem") // relative: a restore elsewhere finds them
	os.WriteFile(filepath.Join(gconf, "group.yaml"), append(group, kpsConf...), 0o644)
	h.MustRun("", "startinstance", "-d", "-n", "S", "-g", "G")
	t.Cleanup(func() { h.Run("", "startinstance", "-k", "-n", "S", "-g", "G") })
	gwtest.AwaitHTTP(t, p.url("/healthcheck"), 200, 15*time.Second)

	st, err := postgres.Open(ctx, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tbl := kps.Table{Collection: "C", Name: "T", Alias: "t", PrimaryKey: "id", Properties: []kps.Property{{Name: "id", Type: kps.String}}}
	if err := st.Define(ctx, tbl); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		st.Insert(ctx, "t", map[string]any{"id": fmt.Sprintf("row-%04d", i)})
	}
	// The group's API-key hashing key, as the first process that needs it
	// stores it (apps.GroupHashKey).
	hashKey, err := st.SharedSecret(ctx, apps.HashKeySecret, []byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 200; i < 2000; i++ {
			st.Insert(ctx, "t", map[string]any{"id": fmt.Sprintf("row-%04d", i)})
		}
	}()
	out := filepath.Join(t.TempDir(), "pg.backup")
	r := h.Run("", "backup", "-o", out)
	<-done
	if r.Code != 0 || !strings.Contains(r.Stdout, "Verified") {
		t.Fatalf("backup: %s", r)
	}
	if !regexp.MustCompile(`PostgreSQL key property store export of group "G" read: \d+ rows in \d+ tables, 1 shared secrets`).MatchString(r.Stdout) {
		t.Errorf("backup's verification did not read the export: %s", r)
	}

	// Restored into a fresh directory and loaded into another database.
	dst := pg.NewDatabase(t)
	dpw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(dpw, []byte(dst.Password.RevealString()+"\n"), 0o600)
	url := fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=verify-full&sslrootcert=%s", dst.User, dst.Port, dst.Database, dst.SSLRootCert)
	restored := &gwtest.Home{T: t, Dir: filepath.Join(t.TempDir(), "dr", "apigateway")}
	if r := restored.Run("", "restore", out, "--kps-postgres", strings.Replace(url, "@", ":hunter2@", 1)); r.Code != 2 || !strings.Contains(r.Stderr, "holds a password") || strings.Contains(r.Stderr, "hunter2") {
		t.Errorf("a password in the URL: %s", r)
	}
	if r := restored.Run("", "restore", out, "--kps-postgres", "G=mysql://x@y/z"); r.Code != 2 || !strings.Contains(r.Stderr, "want postgres://") {
		t.Errorf("not a postgres URL: %s", r)
	}
	r = restored.Run("", "restore", out, "--kps-postgres", "G="+url, "--kps-postgres-password-file", dpw)
	if r.Code != 0 || !regexp.MustCompile(`Group "G": its key property store \(\d+ rows in \d+ tables, shared secrets apikeys\.hashkey\) loaded into postgres://`).MatchString(r.Stdout) {
		t.Fatalf("restore --kps-postgres: %s", r)
	}
	if !strings.Contains(r.Stdout, "the group's configuration names postgres://") {
		t.Errorf("restore did not say that the group's configuration names the other database: %s", r)
	}
	ds, err := postgres.Open(ctx, dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	res, err := ds.List(ctx, "t", kps.Page{Limit: kps.MaxLimit})
	n := len(res.Rows)
	for res.Next != "" && err == nil {
		res, err = ds.List(ctx, "t", kps.Page{Limit: kps.MaxLimit, Cursor: res.Next})
		n += len(res.Rows)
	}
	if err != nil {
		t.Fatal(err)
	}
	if n < 200 || n > 2000 {
		t.Errorf("%d rows loaded, want 200 to 2000", n)
	}
	// A consistent export: exactly the first n writes.
	for i := range n {
		if _, err := ds.Get(ctx, "t", fmt.Sprintf("row-%04d", i)); err != nil {
			t.Fatalf("%d rows loaded but row-%04d missing: not a prefix of the writes: %v", n, i, err)
		}
	}
	if got, err := ds.LookupSharedSecret(ctx, apps.HashKeySecret); err != nil || string(got) != string(hashKey) {
		t.Errorf("the hashing key loaded: %v; want the source's", err)
	}
	aliases := func(s kps.Store) (out []string) {
		ts, err := s.Tables(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, t := range ts {
			out = append(out, t.Alias)
		}
		slices.Sort(out)
		return out
	}
	if a, b := aliases(st), aliases(ds); !slices.Equal(a, b) || !slices.Contains(b, "t") {
		t.Errorf("tables loaded: %v, want the source's %v", b, a)
	}
	t.Logf("%d rows in the export (200 before the backup, 2000 by its end)", n)

	// Again into the same database: its tables hold rows now.
	again := &gwtest.Home{T: t, Dir: filepath.Join(t.TempDir(), "dr2", "apigateway")}
	r = again.Run("", "restore", out, "--kps-postgres", url, "--kps-postgres-password-file", dpw)
	if r.Code != 1 || !strings.Contains(r.Stderr, `"t" holds`) || !strings.Contains(r.Stderr, "--force") {
		t.Errorf("a load into tables with rows: %s", r)
	}
	if r := again.Run("", "restore", out, "--force", "--kps-postgres", url, "--kps-postgres-password-file", dpw); r.Code != 0 || !strings.Contains(r.Stdout, "loaded into") {
		t.Errorf("restore --force --kps-postgres: %s", r)
	}
	// A group the backup has no export of.
	third := &gwtest.Home{T: t, Dir: filepath.Join(t.TempDir(), "dr3", "apigateway")}
	if r := third.Run("", "restore", out, "--kps-postgres", "Other="+url, "--kps-postgres-password-file", dpw); r.Code != 1 || !strings.Contains(r.Stderr, `no PostgreSQL export of group "Other"`) || !strings.Contains(r.Stderr, `"G" (group-2)`) {
		t.Errorf("--kps-postgres of a group without an export: %s", r)
	}
	// Without --kps-postgres: left where kpsadmin restore finds it.
	fourth := &gwtest.Home{T: t, Dir: filepath.Join(t.TempDir(), "dr4", "apigateway")}
	r = fourth.Run("", "restore", out)
	m := regexp.MustCompile(`--uuid ([0-9a-f-]{36})`).FindStringSubmatch(r.Stdout)
	if r.Code != 0 || !strings.Contains(r.Stdout, "not loaded") || m == nil {
		t.Fatalf("restore without --kps-postgres: %s", r)
	}
	if _, err := os.Stat(filepath.Join(fourth.Dir, "groups", "group-2", "instance-1", "conf", "kps", "backup", m[1]+".jsonl")); err != nil {
		t.Errorf("the export is not where kpsadmin restore --uuid looks: %v", err)
	}
}

// TestBackupPostgresKPSSealed: the group's database password file is
// sealed with the group's passphrase: a backup without it fails saying
// what to give, and nothing is written; with --group_passphrase_file the
// export is taken, and a restore loads it.
func TestBackupPostgresKPSSealed(t *testing.T) {
	ctx := context.Background()
	h := gwtest.NewHome(t)
	newInstance(t, h, "G", "S", false)
	pg := pgtest.Shared(t)
	src := pg.NewDatabase(t)
	gconf := h.Path("groups", "group-2", "conf")
	os.MkdirAll(filepath.Join(gconf, "secrets"), 0o700)
	os.WriteFile(filepath.Join(gconf, "secrets", "pgpw"), []byte(src.Password.RevealString()+"\n"), 0o600)
	caPEM, _ := os.ReadFile(src.SSLRootCert)
	os.WriteFile(filepath.Join(gconf, "pgca.pem"), caPEM, 0o644)
	group, _ := os.ReadFile(filepath.Join(gconf, "group.yaml"))
	os.WriteFile(filepath.Join(gconf, "group.yaml"), append(group, fmt.Sprintf("kps:\n  backend: postgres\n  postgres: {host: 127.0.0.1, port: %d, database: %s, user: %s, passwordFile: groups/group-2/conf/secrets/pgpw, sslMode: verify-full, sslRootCert: groups/group-2/conf/pgca.pem}\n",
		src.Port, src.Database, src.User)...), 0o644)
	st, err := postgres.Open(ctx, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tbl := kps.Table{Collection: "C", Name: "T", Alias: "t", PrimaryKey: "id", Properties: []kps.Property{{Name: "id", Type: kps.String}}}
	st.Define(ctx, tbl)
	for i := range 30 {
		st.Insert(ctx, "t", map[string]any{"id": fmt.Sprint(i)})
	}
	pass := filepath.Join(t.TempDir(), "pass")
	os.WriteFile(pass, []byte("group passphrase of G\n"), 0o600)
	h.MustRun("", "managedomain", "--change_passphrase", "-g", "G", "--new_passphrase_file", pass)
	if b, _ := os.ReadFile(filepath.Join(gconf, "secrets", "pgpw")); strings.Contains(string(b), src.Password.RevealString()) {
		t.Fatal("the password file is still in clear")
	}
	out := filepath.Join(t.TempDir(), "sealed.backup")
	r := h.Run("", "backup", "-o", out, "--no-verify")
	if r.Code != 1 || !strings.Contains(r.Stderr, "protected by the passphrase") || !strings.Contains(r.Stderr, "--group_passphrase_file") {
		t.Errorf("a backup without the group's passphrase: %s", r)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed backup left its file")
	}
	r = h.Run("", "backup", "-o", out, "--no-verify", "--group_passphrase_file", pass)
	if r.Code != 0 {
		t.Fatalf("a backup with the group's passphrase: %s", r)
	}
	dst := pg.NewDatabase(t)
	dpw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(dpw, []byte(dst.Password.RevealString()+"\n"), 0o600)
	url := fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=verify-full&sslrootcert=%s", dst.User, dst.Port, dst.Database, dst.SSLRootCert)
	restored := &gwtest.Home{T: t, Dir: filepath.Join(t.TempDir(), "dr", "apigateway")}
	if r := restored.Run("", "restore", out, "--kps-postgres", url, "--kps-postgres-password-file", dpw); r.Code != 0 || !strings.Contains(r.Stdout, "(30 rows in") {
		t.Errorf("restore of the sealed group's export: %s", r)
	}
}
