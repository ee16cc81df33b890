package tools_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/backup/schedule"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// TestBackupRestoreTools: gatehouse backup of a domain whose instance runs
// and whose KPS is written meanwhile, verified; restored with gatehouse
// restore into an empty directory (a non-empty one refused, a damaged
// archive refused naming the entry and writing nothing); the restored
// domain's instance starts and answers, with the KPS rows of the backup.
func TestBackupRestoreTools(t *testing.T) {
	h := gwtest.NewHome(t)
	p := newInstance(t, h, "G", "S", false)
	hh := home.Home{Dir: h.Dir}
	st, err := sqlite.Open(context.Background(), kps.SQLiteConfig{Path: sqlite.GroupPath(hh, "group-2")})
	if err != nil {
		t.Fatal(err)
	}
	tbl := kps.Table{Collection: "C", Name: "T", Alias: "t", PrimaryKey: "id", Properties: []kps.Property{{Name: "id", Type: kps.String}}}
	st.Define(context.Background(), tbl)
	for i := range 200 {
		st.Insert(context.Background(), "t", map[string]any{"id": fmt.Sprintf("row-%03d", i)})
	}
	h.MustRun("", "startinstance", "-d", "-n", "S", "-g", "G")
	t.Cleanup(func() { h.Run("", "startinstance", "-k", "-n", "S", "-g", "G") })
	gwtest.AwaitHTTP(t, p.url("/healthcheck"), 200, 10*time.Second)
	// Writes while the backup runs.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 200; i < 400; i++ {
			st.Insert(context.Background(), "t", map[string]any{"id": fmt.Sprintf("row-%03d", i)})
		}
	}()
	dir := t.TempDir()
	out := filepath.Join(dir, "domain.backup")
	if r := h.Run("", "backup"); r.Code != 2 || !strings.Contains(r.Stderr, "-o FILE") {
		t.Errorf("backup without -o: %s", r)
	}
	if r := h.Run("", "backup", "-o", filepath.Join(h.Dir, "x.backup")); r.Code != 1 || !strings.Contains(r.Stderr, "inside the install directory") {
		t.Errorf("a backup into the install directory: %s", r)
	}
	r := h.Run("", "backup", "-o", out)
	<-done
	st.Close()
	if r.Code != 0 || !strings.Contains(r.Stdout, "Backed up") || !strings.Contains(r.Stdout, "Verified") {
		t.Fatalf("backup: %s", r)
	}
	if !strings.Contains(r.Stdout, "answered /healthcheck") || !strings.Contains(r.Stdout, "started and answered") {
		t.Errorf("backup's verification did not start the copy: %s", r)
	}
	// verify: restored into a scratch directory, started on other ports
	// beside the live domain, stopped and removed.
	scratch := t.TempDir()
	r = h.Run("", "backup", "verify", out, "--scratch", scratch)
	if r.Code != 0 || !strings.Contains(r.Stdout, "every checksum right") || !strings.Contains(r.Stdout, `Instance "S" of group "G" started`) {
		t.Errorf("verify: %s", r)
	}
	var rowsSeen int
	if _, err := fmt.Sscanf(r.Stdout[strings.Index(r.Stdout, `Key property store of group "G" opened: `)+len(`Key property store of group "G" opened: `):], "%d rows", &rowsSeen); err != nil || rowsSeen < 200 {
		t.Errorf("verify counted %d rows (%v), want at least the 200 written before", rowsSeen, err)
	}
	if ents, _ := os.ReadDir(scratch); len(ents) != 0 {
		t.Errorf("verify left %v in its scratch directory", ents)
	}
	gwtest.AwaitHTTP(t, p.url("/healthcheck"), 200, 5*time.Second) // the live instance, untouched
	if r := h.Run("", "backup", "verify", out, "--checksums-only"); r.Code != 0 || !strings.Contains(r.Stdout, "every checksum right") || strings.Contains(r.Stdout, "started") {
		t.Errorf("verify --checksums-only: %s", r)
	}
	// To standard output, verified from standard input.
	stream := h.Run("", "backup", "-o", "-")
	if stream.Code != 0 || len(stream.Stdout) < 1000 {
		t.Fatalf("backup -o -: %d bytes, %s", len(stream.Stdout), stream.Stderr)
	}
	if r := h.Run(stream.Stdout, "backup", "verify", "-"); r.Code != 0 {
		t.Errorf("verify -: %s", r)
	}
	// A damaged copy: refused, naming an entry, nothing written.
	b, _ := os.ReadFile(out)
	damaged := filepath.Join(dir, "damaged.backup")
	bad := bytes.Clone(b)
	bad[len(bad)/2] ^= 0xff
	os.WriteFile(damaged, bad, 0o600)
	if r := h.Run("", "backup", "verify", damaged); r.Code != 1 || !strings.Contains(r.Stderr, "damaged") {
		t.Errorf("verify of a damaged backup: %s", r)
	}
	target := filepath.Join(t.TempDir(), "dr", "apigateway")
	restored := &gwtest.Home{T: t, Dir: target}
	if r := restored.Run("", "restore", damaged); r.Code != 1 || !strings.Contains(r.Stderr, "nothing was written") {
		t.Errorf("restore of a damaged backup: %s", r)
	}
	if ents, _ := os.ReadDir(filepath.Dir(target)); len(ents) != 0 {
		t.Errorf("a refused restore left %v", ents)
	}
	if r := restored.Run("", "restore", out); r.Code != 0 || !strings.Contains(r.Stdout, "Restored") {
		t.Fatalf("restore: %s", r)
	}
	if r := restored.Run("", "restore", out); r.Code != 1 || !strings.Contains(r.Stderr, "not empty") {
		t.Errorf("a second restore over it: %s", r)
	}
	// Every file of the backup, equal (the store by its rows).
	filepath.WalkDir(filepath.Join(h.Dir, "groups"), func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(h.Dir, p)
		if err != nil || d.IsDir() || strings.Contains(rel, "/logs/") || strings.Contains(rel, "/trace/") || strings.Contains(rel, "kps.db") {
			return nil
		}
		a, _ := os.ReadFile(p)
		c, err := os.ReadFile(filepath.Join(target, rel))
		if err != nil || !bytes.Equal(a, c) {
			t.Errorf("%s: not restored as it was (%v)", rel, err)
		}
		return nil
	})
	rst, err := sqlite.Open(context.Background(), kps.SQLiteConfig{Path: sqlite.GroupPath(home.Home{Dir: target}, "group-2")})
	if err != nil {
		t.Fatal(err)
	}
	n, _ := rst.Count(context.Background(), "t")
	rst.Close()
	if n < 200 || n > 400 {
		t.Errorf("%d rows restored, want 200 to 400", n)
	}
	// The restored domain runs (the original stopped: the same ports).
	h.MustRun("", "startinstance", "-k", "-n", "S", "-g", "G")
	os.MkdirAll(filepath.Join(target, "posix", "bin"), 0o755)
	exe, _ := os.ReadFile(gwtest.Binary(t))
	os.WriteFile(filepath.Join(target, "posix", "bin", "gatehouse"), exe, 0o755)
	restored.MustRun("", "startinstance", "-d", "-n", "S", "-g", "G")
	t.Cleanup(func() { restored.Run("", "startinstance", "-k", "-n", "S", "-g", "G") })
	gwtest.AwaitHTTP(t, p.url("/healthcheck"), 200, 10*time.Second)
	if code, _ := gwtest.Get(t, p.url("/sample/echo")); code != 200 {
		t.Errorf("the restored instance's sample API: %d", code)
	}
	t.Logf("%d rows restored (200 before the backup, 400 by its end)", n)
}

// TestBackupThatDoesNotStart: a backup whose checksums are right but whose
// domain does not start (here a group configuration that names a back end
// it does not define) fails verification, naming what did not start; the
// file is kept (it is what there is) and the copy leaves nothing running.
func TestBackupThatDoesNotStart(t *testing.T) {
	h := gwtest.NewHome(t)
	newInstance(t, h, "G", "S", false)
	if err := os.WriteFile(h.Path("groups", "group-2", "conf", "group.yaml"), []byte("apis:\n  - name: a\n    pathPrefix: /a\n    backend: nowhere\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "broken.backup")
	r := h.Run("", "backup", "-o", out)
	if r.Code != 1 || !strings.Contains(r.Stderr, "was written, but did not verify") || !strings.Contains(r.Stderr, `instance "S" of group "G" did not start`) || !strings.Contains(r.Stderr, "nowhere") {
		t.Fatalf("backup of a domain that does not start: %s", r)
	}
	if _, err := os.Stat(out); err != nil {
		t.Errorf("the backup file is gone: %v", err)
	}
	scratch := t.TempDir()
	r = h.Run("", "backup", "verify", out, "--scratch", scratch, "--keep-scratch")
	if r.Code != 1 || !strings.Contains(r.Stderr, "did not start") {
		t.Fatalf("verify: %s", r)
	}
	copies, _ := filepath.Glob(filepath.Join(scratch, "gatehouse-verify-*", "apigateway"))
	if len(copies) != 1 {
		t.Fatalf("--keep-scratch kept %v", copies)
	}
	c := &gwtest.Home{T: t, Dir: copies[0]}
	if r := c.Run("", "nodemanager", "-s"); r.Code != 1 {
		t.Errorf("the copy's node manager still runs after a failed verify: %s", r)
	}
	if r := c.Run("", "startinstance", "-s", "-n", "S", "-g", "G"); r.Code != 1 {
		t.Errorf("the copy's instance runs after a failed verify: %s", r)
	}
	// Its ports were moved: the live domain's stay as they were.
	live, _ := os.ReadFile(h.Path("system", "conf", "nodemanager.yaml"))
	moved, _ := os.ReadFile(filepath.Join(copies[0], "system", "conf", "nodemanager.yaml"))
	if bytes.Equal(live, moved) || !strings.Contains(string(moved), "address: 127.0.0.1") {
		t.Errorf("the copy's node manager settings were not moved to loopback ports:\n%s", moved)
	}
	if r := h.Run("", "backup", "verify", "--checksums-only", out); r.Code != 0 {
		t.Errorf("its checksums are right: %s", r)
	}
	if r := h.Run("", "backup", "verify", out, "--scratch"); r.Code != 2 || !strings.Contains(r.Stderr, "--scratch needs a value") {
		t.Errorf("--scratch without a value: %s", r)
	}
	if r := h.Run("", "backup", "-o", out+"2", "--checksums-only"); r.Code != 2 {
		t.Errorf("--checksums-only on a backup: %s", r)
	}

	// A cold site whose host has another name and address.
	tp, err := topology.NewStore(home.Home{Dir: h.Dir}, nil).Load()
	if err != nil {
		t.Fatal(err)
	}
	name := tp.Hosts[0].Name
	dr := &gwtest.Home{T: t, Dir: filepath.Join(t.TempDir(), "apigateway")}
	if r := dr.Run("", "restore", out, "--map-address", "10.0.0.1=dr"); r.Code != 2 || !strings.Contains(r.Stderr, `"dr" is not an IP address`) {
		t.Errorf("a bad --map-address: %s", r)
	}
	if r := dr.Run("", "restore", out, "--map-host", "nosuchhost=x"); r.Code != 1 || !strings.Contains(r.Stderr, `no host is named "nosuchhost"`) {
		t.Errorf("--map-host of an unknown host: %s", r)
	}
	r = dr.Run("", "restore", out, "--force", "--map-host", name+"=dr-site", "--map-address", "127.0.0.1=127.0.0.2")
	if r.Code != 0 || !strings.Contains(r.Stdout, "name "+name+" → dr-site") || !strings.Contains(r.Stdout, "regen_certs") {
		t.Fatalf("restore with --map-host: %s", r)
	}
	if tp, err := topology.NewStore(home.Home{Dir: dr.Dir}, nil).Load(); err != nil || tp.Hosts[0].Name != "dr-site" {
		t.Errorf("the restored topology's host: %v %v", tp, err)
	}
}

// TestScheduledBackups: a node manager with backup.schedule writes verified
// backups on time, keeps the newest (backup.keep), and gatehouse backup
// status reports them; a schedule that does not parse stops the node
// manager from starting, naming it.
func TestScheduledBackups(t *testing.T) {
	h := gwtest.NewHome(t)
	newInstance(t, h, "G", "S", false)
	hh := home.Home{Dir: h.Dir}
	dir := t.TempDir()
	setBackup := func(c schedule.Conf) {
		nm, err := domain.LoadNodeManagerConf(hh)
		if err != nil {
			t.Fatal(err)
		}
		nm.Backup = c
		if err := domain.SaveNodeManagerConf(hh, nm); err != nil {
			t.Fatal(err)
		}
	}
	if r := h.Run("", "backup", "status"); r.Code != 0 || !strings.Contains(r.Stdout, "No scheduled backups") {
		t.Errorf("status without a schedule: %s", r)
	}
	setBackup(schedule.Conf{Schedule: "@every 1s", Directory: dir, Keep: 1})
	h.MustRun("", "nodemanager", "-d", "-q")
	t.Cleanup(func() { h.Run("", "nodemanager", "-k", "-q") })
	deadline := time.Now().Add(90 * time.Second)
	var st schedule.State
	for time.Now().Before(deadline) {
		st, _ = schedule.ReadState(hh)
		if st.Succeeded >= 2 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	h.MustRun("", "nodemanager", "-k", "-q")
	if st.Succeeded < 2 || st.Failed != 0 {
		t.Fatalf("scheduled backups: %+v", st)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "gatehouse-host-1-*.backup"))
	if len(files) != 1 {
		t.Fatalf("kept %v, want the newest 1", files)
	}
	if r := h.Run("", "backup", "verify", "--checksums-only", files[0]); r.Code != 0 {
		t.Errorf("the kept backup: %s", r)
	}
	r := h.Run("", "backup", "status")
	if r.Code != 0 || !strings.Contains(r.Stdout, `"@every 1s" into `+dir) || !strings.Contains(r.Stdout, "succeeded, 0 failed") {
		t.Errorf("backup status: %s", r)
	}
	// A failure (the directory cannot be made) is counted, and status
	// exits 1 saying why.
	blocker := filepath.Join(t.TempDir(), "file")
	os.WriteFile(blocker, nil, 0o600)
	setBackup(schedule.Conf{Schedule: "@every 1s", Directory: filepath.Join(blocker, "sub")})
	h.MustRun("", "nodemanager", "-d", "-q")
	for deadline = time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if st, _ = schedule.ReadState(hh); st.Failed > 0 {
			break
		}
	}
	h.MustRun("", "nodemanager", "-k", "-q")
	if r := h.Run("", "backup", "status"); r.Code != 1 || !strings.Contains(r.Stderr, "the last scheduled backup failed") || !strings.Contains(r.Stdout, "1 failed") {
		t.Errorf("status after a failure: %s", r)
	}
	// A schedule that does not parse: the node manager does not start.
	setBackup(schedule.Conf{Schedule: "every day", Directory: dir})
	if r := h.Run("", "nodemanager", "-d", "-q"); r.Code != 1 || !strings.Contains(r.Stderr+r.Stdout, `backup.schedule "every day"`) {
		t.Errorf("a bad schedule: %s", r)
	}
}

// TestBackupVerifyPassphrases: a domain whose node manager and group have
// passphrases: backup verifies the checksums only and says why; verify
// without them exits 1 naming what is needed; with a wrong one, 1 naming
// the wrong passphrase; with the right ones, the copy starts.
func TestBackupVerifyPassphrases(t *testing.T) {
	h := gwtest.NewHome(t)
	newInstance(t, h, "G", "S", false)
	dir := t.TempDir()
	pass := func(name, v string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(v+"\n"), 0o600)
		return p
	}
	nmPass, gPass, wrong := pass("nm", "node manager passphrase 1"), pass("g", "group passphrase 1"), pass("w", "not the passphrase")
	h.MustRun("", "managedomain", "--change_passphrase", "--node_manager", "--new_passphrase_file", nmPass)
	h.MustRun("", "managedomain", "--change_passphrase", "-g", "G", "--new_passphrase_file", gPass)
	out := filepath.Join(dir, "sealed.backup")
	r := h.Run("", "backup", "-o", out)
	if r.Code != 0 || !strings.Contains(r.Stderr, "NOT started in a scratch directory") || !strings.Contains(r.Stdout, "the copy was not started") {
		t.Fatalf("backup of a domain with passphrases: %s", r)
	}
	if r := h.Run("", "backup", "verify", out); r.Code != 1 || !strings.Contains(r.Stderr, "--passphrase_file") || !strings.Contains(r.Stderr, "--group_passphrase_file") {
		t.Errorf("verify without the passphrases: %s", r)
	}
	if r := h.Run("", "backup", "verify", out, "--passphrase_file", wrong, "--group_passphrase_file", gPass); r.Code != 1 || !strings.Contains(r.Stderr, "node manager did not start") || !strings.Contains(strings.ToLower(r.Stderr), "wrong passphrase") {
		t.Errorf("verify with a wrong passphrase: %s", r)
	}
	r = h.Run("", "backup", "verify", out, "--passphrase_file", nmPass, "--group_passphrase_file", gPass)
	if r.Code != 0 || !strings.Contains(r.Stdout, `Instance "S" of group "G" started`) {
		t.Errorf("verify with the passphrases: %s", r)
	}
}

// TestRestoreKilled: a restore killed with SIGKILL half-way leaves the
// target as it was — missing, or the directory that was there with
// --force — and the half-written copy beside it, marked incomplete; the
// next restore is not hindered by it.
func TestRestoreKilled(t *testing.T) {
	h := gwtest.NewHome(t)
	newInstance(t, h, "G", "S", false)
	// Some weight, so that half the archive is a real half-way point.
	big := make([]byte, 4<<20)
	for i := range big {
		big[i] = byte(i * 7 % 251)
	}
	os.WriteFile(h.Path("ext", "big.bin"), big, 0o644)
	out := filepath.Join(t.TempDir(), "b.backup")
	h.MustRun("", "backup", "-o", out, "--no-verify", "--with-logs")
	data, _ := os.ReadFile(out)
	kill := func(target string, args ...string) {
		t.Helper()
		c := &gwtest.Home{T: t, Dir: target}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		cmd := c.Command(ctx, "", append([]string{"restore", "-"}, args...)...)
		stdin, _ := cmd.StdinPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		stdin.Write(data[:len(data)/2])
		parent := filepath.Dir(target)
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if m, _ := filepath.Glob(filepath.Join(parent, ".apigateway.restore-incomplete-*", "ext")); len(m) > 0 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		cmd.Process.Kill()
		cmd.Wait()
		if m, _ := filepath.Glob(filepath.Join(parent, ".apigateway.restore-incomplete-*")); len(m) != 1 {
			t.Fatalf("the half-written copy beside the target: %v", m)
		}
	}
	parent := t.TempDir()
	target := filepath.Join(parent, "apigateway")
	kill(target)
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Fatalf("a killed restore left the target: %v", err)
	}
	c := &gwtest.Home{T: t, Dir: target}
	if r := c.Run("", "restore", out); r.Code != 0 {
		t.Fatalf("the restore after a killed one: %s", r)
	}
	if got, _ := os.ReadFile(filepath.Join(target, "ext", "big.bin")); !bytes.Equal(got, big) {
		t.Fatal("the restore after a killed one is not whole")
	}
	// --force over a directory: killed half-way, the directory is as it was.
	os.WriteFile(filepath.Join(target, "marker"), []byte("the old one"), 0o644)
	for _, m := range mustGlob(filepath.Join(parent, ".apigateway.restore-incomplete-*")) {
		os.RemoveAll(m)
	}
	kill(target, "--force")
	if got, err := os.ReadFile(filepath.Join(target, "marker")); err != nil || string(got) != "the old one" {
		t.Errorf("a killed restore --force changed the directory there: %q %v", got, err)
	}
	if m := mustGlob(filepath.Join(parent, "apigateway.replaced-*")); len(m) != 0 {
		t.Errorf("a killed restore --force moved the directory aside: %v", m)
	}
}

func mustGlob(p string) []string {
	m, _ := filepath.Glob(p)
	return m
}
