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

	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/sqlite"
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
	if r := h.Run("", "backup", "verify", out); r.Code != 0 || !strings.Contains(r.Stdout, "every checksum right") {
		t.Errorf("verify: %s", r)
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
