package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/sqlite"
)

var table = kps.Table{Collection: "C", Name: "T", Alias: "t", PrimaryKey: "id", Properties: []kps.Property{{Name: "id", Type: kps.String}, {Name: "v", Type: kps.String}}}

// installDir makes an install directory with a file of every kind a
// backup holds or leaves out, and a group's embedded store.
func installDir(t *testing.T) (home.Home, kps.Store) {
	t.Helper()
	h := home.Home{Dir: filepath.Join(t.TempDir(), "apigateway")}
	for rel, mode := range map[string]fs.FileMode{
		"conf/adminUsers.json":                             0o600,
		"conf/acl.json":                                    0o644,
		"conf/opsdb.d/metrics":                             0o644,
		"conf/audit/audit.log":                             0o640,
		"groups/topology.json":                             0o644,
		"groups/certs/private/domainkey.pem":               0o600,
		"groups/group-2/conf/group.yaml":                   0o644,
		"groups/group-2/instance-1/conf/instance.yaml":     0o644,
		"groups/group-2/instance-1/logs/instance.log":      0o644,
		"groups/group-2/instance-1/trace/boot.log":         0o644,
		"ext/lib/extension.txt":                            0o644,
		"system/conf/nodemanager.yaml":                     0o644,
		"system/conf/certs/private/nodemanager-key.pem":    0o600,
		"system/lib/not-backed-up":                         0o644,
		"var/run/instance-1.pid":                           0o644,
		"logs/nodemanager/nodemanager.log":                 0o644,
		"posix/bin/gatehouse":                              0o755,
		"groups/group-2/conf/kps/kps.db-wal.tmp":           0o600,
		"groups/group-2/instance-1/conf/kps/backup/x.json": 0o600,
	} {
		p := filepath.Join(h.Dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("content of "+rel+"\n"), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
	}
	os.Chmod(filepath.Join(h.Dir, "groups/certs/private"), 0o700)
	st, err := sqlite.Open(t.Context(), kps.SQLiteConfig{Path: sqlite.GroupPath(h, "group-2")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Define(t.Context(), table); err != nil {
		t.Fatal(err)
	}
	return h, st
}

func rows(t *testing.T, st kps.Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	for page := (kps.Page{Limit: kps.MaxLimit}); ; {
		res, err := st.List(context.Background(), "t", page)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res.Rows {
			out[r.Values["id"].(string)] = r.Values["v"].(string)
		}
		if res.Next == "" {
			return out
		}
		page.Cursor = res.Next
	}
}

// TestBackupRestore: a backup taken while the store is written restores
// into a fresh directory with every file equal (contents and modes), the
// excluded parts out, and the store's rows a consistent prefix of the
// writes (every row written before the backup began, none half-written).
func TestBackupRestore(t *testing.T) {
	ctx := t.Context()
	h, st := installDir(t)
	for i := range 500 {
		if _, err := st.Insert(ctx, "t", map[string]any{"id": fmt.Sprintf("r%05d", i), "v": fmt.Sprintf("value %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	// Writes go on during the backup.
	var written atomic.Int64
	written.Store(500)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 500; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := st.Insert(ctx, "t", map[string]any{"id": fmt.Sprintf("r%05d", i), "v": fmt.Sprintf("value %d", i)}); err != nil {
				t.Error(err)
				return
			}
			written.Add(1)
		}
	}()
	out := filepath.Join(t.TempDir(), "domain.backup")
	var progress int
	m, err := WriteFile(ctx, h, out, Options{Gatehouse: "test", Host: "host-1", TopologyVersion: 7, Progress: func(int, int64) { progress++ }})
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if progress == 0 || m.Host != "host-1" || m.TopologyVersion != 7 || m.Gatehouse != "test" {
		t.Errorf("manifest %+v, progress %d", m, progress)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the backup file: %v %v", fi, err)
	}
	if left, _ := filepath.Glob(out + "*partial*"); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	f, _ := os.Open(out)
	vm, err := Verify(ctx, f)
	f.Close()
	if err != nil || len(vm.Entries) != len(m.Entries) {
		t.Fatalf("verify: %v", err)
	}
	paths := map[string]Entry{}
	for _, e := range m.Entries {
		paths[e.Path] = e
	}
	for _, in := range []string{"conf/adminUsers.json", "conf/audit/audit.log", "groups/topology.json", "groups/certs/private/domainkey.pem", "groups/group-2/instance-1/conf/instance.yaml", "ext/lib/extension.txt", "system/conf/nodemanager.yaml", "groups/group-2/conf/kps/kps.db", "groups/group-2/instance-1/conf/kps/backup/x.json"} {
		if _, ok := paths[in]; !ok {
			t.Errorf("%s is not in the backup", in)
		}
	}
	for _, out := range []string{"conf/opsdb.d/metrics", "groups/group-2/instance-1/logs/instance.log", "groups/group-2/instance-1/trace/boot.log", "var/run/instance-1.pid", "logs/nodemanager/nodemanager.log", "posix/bin/gatehouse", "system/lib/not-backed-up", "groups/group-2/conf/kps/kps.db-wal", "groups/group-2/conf/kps/kps.db-wal.tmp"} {
		if _, ok := paths[out]; ok {
			t.Errorf("%s is in the backup", out)
		}
	}
	if !paths["groups/group-2/conf/kps/kps.db"].KPS {
		t.Error("the store is not marked as a snapshot")
	}

	target := filepath.Join(t.TempDir(), "restored", "apigateway")
	f, _ = os.Open(out)
	rm, replaced, err := Restore(ctx, f, target, RestoreOptions{})
	f.Close()
	if err != nil || replaced != "" || len(rm.Entries) != len(m.Entries) {
		t.Fatalf("restore: %v %q", err, replaced)
	}
	for _, e := range m.Entries {
		src, dst := filepath.Join(h.Dir, e.Path), filepath.Join(target, e.Path)
		sfi, _ := os.Stat(src)
		dfi, err := os.Stat(dst)
		if err != nil || dfi.Mode() != sfi.Mode() {
			t.Errorf("%s: restored mode %v, was %v (%v)", e.Path, dfi.Mode(), sfi.Mode(), err)
			continue
		}
		if e.Dir || e.KPS {
			continue
		}
		a, _ := os.ReadFile(src)
		b, _ := os.ReadFile(dst)
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs", e.Path)
		}
	}
	for _, d := range []string{"var/run", "posix/bin", "logs"} {
		if fi, err := os.Stat(filepath.Join(target, d)); err != nil || !fi.IsDir() {
			t.Errorf("%s not made: %v", d, err)
		}
	}
	rst, err := sqlite.Open(ctx, kps.SQLiteConfig{Path: filepath.Join(target, "groups/group-2/conf/kps/kps.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer rst.Close()
	got, all := rows(t, rst), rows(t, st)
	if len(got) < 500 || len(got) > int(written.Load()) {
		t.Errorf("%d rows restored: want 500 to %d", len(got), written.Load())
	}
	for id, v := range got {
		if all[id] != v {
			t.Errorf("row %s restored as %q, written as %q", id, v, all[id])
		}
	}
	// The rows are a prefix: no gap (one transaction each, in order).
	for i := range len(got) {
		if _, ok := got[fmt.Sprintf("r%05d", i)]; !ok {
			t.Errorf("row %d missing while %d were restored", i, len(got))
			break
		}
	}
	t.Logf("%d entries; %d rows restored of %d written by the end of the backup", len(m.Entries), len(got), written.Load())

	// A non-empty target: refused, then replaced with --force, the old kept.
	f, _ = os.Open(out)
	_, _, err = Restore(ctx, f, target, RestoreOptions{})
	f.Close()
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("a non-empty target: %v", err)
	}
	os.WriteFile(filepath.Join(target, "marker"), []byte("x"), 0o644)
	f, _ = os.Open(out)
	_, replaced, err = Restore(ctx, f, target, RestoreOptions{Force: true})
	f.Close()
	if err != nil || replaced == "" {
		t.Fatalf("--force: %v %q", err, replaced)
	}
	if _, err := os.Stat(filepath.Join(replaced, "marker")); err != nil {
		t.Errorf("the replaced directory is not kept: %v", err)
	}
	if _, err := os.Stat(filepath.Join(target, "marker")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the target still holds the old files: %v", err)
	}
}

// TestDamagedBackups: a truncated archive, a flipped byte, an entry
// altered or added or removed behind the manifest's back, a path out of
// the install directory: each refused, naming what, and a restore writes
// nothing.
func TestDamagedBackups(t *testing.T) {
	ctx := t.Context()
	h, _ := installDir(t)
	var buf bytes.Buffer
	if _, err := Write(ctx, h, &buf, Options{}); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	// The entries, to rebuild archives with one change.
	entries := untar(t, good)
	check := func(name string, archive []byte, wantIn string) {
		t.Helper()
		if _, err := Verify(ctx, bytes.NewReader(archive)); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), wantIn) {
			t.Errorf("%s: verify: %v (want it to name %q)", name, err, wantIn)
		}
		target := filepath.Join(t.TempDir(), "apigateway")
		if _, _, err := Restore(ctx, bytes.NewReader(archive), target, RestoreOptions{}); !errors.Is(err, ErrDamaged) {
			t.Errorf("%s: restore: %v", name, err)
		}
		if left, _ := os.ReadDir(filepath.Dir(target)); len(left) != 0 {
			t.Errorf("%s: the restore left %v", name, left)
		}
	}
	check("truncated", good[:len(good)*2/3], "truncated")
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x40
	if _, err := Verify(ctx, bytes.NewReader(flipped)); !errors.Is(err, ErrDamaged) {
		t.Errorf("a flipped byte: %v", err)
	}
	check("not gzip", []byte("not a backup at all"), "gzip")
	// An entry altered (the manifest kept).
	alt := clone(entries)
	alt[idx(alt, "groups/topology.json")].data = []byte("altered")
	check("altered", retar(t, alt), `"groups/topology.json": checksum mismatch`)
	// An entry removed.
	rm := clone(entries)
	i := idx(rm, "ext/lib/extension.txt")
	rm = append(rm[:i], rm[i+1:]...)
	check("removed", retar(t, rm), "lists")
	// An entry added.
	add := clone(entries)
	add = append(add[:1], append([]tarEntry{{hdr: tar.Header{Name: "conf/planted", Mode: 0o644, Typeflag: tar.TypeReg}, data: []byte("x")}}, add[1:]...)...)
	check("added", retar(t, add), "lists")
	// A mode changed.
	mode := clone(entries)
	mode[idx(mode, "groups/certs/private/domainkey.pem")].hdr.Mode = 0o644
	check("mode", retar(t, mode), "mode")
	// Paths that are not the install directory's.
	for _, bad := range []string{"../etc/passwd", "/etc/passwd", "conf/../../x", "var/run/x", "posix/bin/gatehouse"} {
		e := clone(entries)
		e = append([]tarEntry{{hdr: tar.Header{Name: bad, Mode: 0o644, Typeflag: tar.TypeReg}, data: []byte("x")}}, e...)
		check("path "+bad, retar(t, e), "not a path a backup holds")
	}
	// A link.
	ln := clone(entries)
	ln = append([]tarEntry{{hdr: tar.Header{Name: "conf/link", Linkname: "/etc/shadow", Typeflag: tar.TypeSymlink}}}, ln...)
	check("symlink", retar(t, ln), "neither a file nor a directory")
	// No manifest, or something after it.
	check("no manifest", retar(t, entries[:len(entries)-1]), "no manifest")
	after := append(clone(entries), tarEntry{hdr: tar.Header{Name: "conf/late", Mode: 0o644, Typeflag: tar.TypeReg}, data: []byte("x")})
	check("after the manifest", retar(t, after), "after the manifest")
}

// TestWriteFileFailure: a backup that fails (here: cancelled) removes its
// partial file and leaves the previous backup as it was.
func TestWriteFileFailure(t *testing.T) {
	h, _ := installDir(t)
	out := filepath.Join(t.TempDir(), "domain.backup")
	os.WriteFile(out, []byte("the previous backup"), 0o600)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := WriteFile(ctx, h, out, Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if b, _ := os.ReadFile(out); string(b) != "the previous backup" {
		t.Errorf("the previous backup was touched: %q", b)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".*partial*")); len(left) != 0 {
		t.Errorf("partial files left: %v", left)
	}
	if _, err := WriteFile(t.Context(), h, filepath.Join(t.TempDir(), "missing-dir", "x"), Options{}); err == nil {
		t.Error("a backup into a missing directory")
	}
	// A writer that fails (a full disk): the error, not a backup.
	if _, err := Write(t.Context(), h, failAfter{n: 1000}, Options{}); err == nil {
		t.Error("a writer that fails")
	}
}

type failAfter struct{ n int }

func (f failAfter) Write(p []byte) (int, error) { return 0, errors.New("no space left on device") }

type tarEntry struct {
	hdr  tar.Header
	data []byte
}

func untar(t *testing.T, b []byte) []tarEntry {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var out []tarEntry
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		out = append(out, tarEntry{hdr: *hdr, data: data})
	}
}

func retar(t *testing.T, es []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range es {
		h := e.hdr
		h.Size = int64(len(e.data))
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write(e.data)
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func clone(es []tarEntry) []tarEntry {
	out := make([]tarEntry, len(es))
	copy(out, es)
	return out
}

func idx(es []tarEntry, name string) int {
	for i, e := range es {
		if e.hdr.Name == name {
			return i
		}
	}
	panic("no entry " + name)
}

// TestWithLogs: --with-logs adds the node manager's and the instances'
// logs and traces, and still leaves out var/run and opsdb.d.
func TestWithLogs(t *testing.T) {
	h, _ := installDir(t)
	var buf bytes.Buffer
	m, err := Write(t.Context(), h, &buf, Options{WithLogs: true})
	if err != nil || !m.WithLogs {
		t.Fatal(err)
	}
	paths := map[string]bool{}
	for _, e := range m.Entries {
		paths[e.Path] = true
	}
	for p, want := range map[string]bool{"logs/nodemanager/nodemanager.log": true, "groups/group-2/instance-1/logs/instance.log": true, "groups/group-2/instance-1/trace/boot.log": true, "var/run/instance-1.pid": false, "conf/opsdb.d/metrics": false} {
		if paths[p] != want {
			t.Errorf("%s in the backup: %v, want %v", p, paths[p], want)
		}
	}
	if _, err := Verify(t.Context(), &buf); err != nil {
		t.Errorf("verify: %v", err)
	}
}

func TestValidName(t *testing.T) {
	for name, want := range map[string]bool{
		"conf": true, "conf/x": true, "groups/g/x": true, "ext": true, "system": true, "system/conf": true, "system/conf/x": true,
		"logs": true, "logs/nodemanager/x": true,
		"": false, "/conf/x": false, "conf/./x": false, "conf//x": false, "conf/../x": false, ".": false, "..": false,
		"conf/x\x00": false, "var/run/x": false, "posix/bin/gatehouse": false, "system/lib": false, "confx": false, "groupsx/y": false,
		"conf/x/": false,
	} {
		if got := validName(name); got != want {
			t.Errorf("validName(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestRestoreEdges: the manifest's format and version, an altered entry of
// the same size, owners kept only when asked, an empty target directory,
// a target that is a file, the modes of what a restore makes.
func TestRestoreEdges(t *testing.T) {
	ctx := t.Context()
	h, _ := installDir(t)
	var buf bytes.Buffer
	if _, err := Write(ctx, h, &buf, Options{}); err != nil {
		t.Fatal(err)
	}
	entries := untar(t, buf.Bytes())
	mi := idx(entries, ManifestName)
	for _, c := range []struct{ from, to string }{{`"format": "gatehouse-backup"`, `"format": "something-else"`}, {`"version": 1`, `"version": 2`}} {
		e := clone(entries)
		e[mi].data = bytes.Replace(e[mi].data, []byte(c.from), []byte(c.to), 1)
		if _, err := Verify(ctx, bytes.NewReader(retar(t, e))); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "format") {
			t.Errorf("%s: %v", c.to, err)
		}
	}
	// The same size, another content.
	e := clone(entries)
	i := idx(e, "conf/acl.json")
	e[i].data = bytes.ToUpper(e[i].data)
	if _, err := Verify(ctx, bytes.NewReader(retar(t, e))); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("same size, other bytes: %v", err)
	}
	// Owners: the archive's only with Chown.
	own := clone(entries)
	for k := range own {
		own[k].hdr.Uid, own[k].hdr.Gid = 4321, 4321
	}
	uid := []byte(fmt.Sprintf(`"uid": %d,`, os.Getuid()))
	own[mi].data = bytes.ReplaceAll(own[mi].data, uid, []byte(`"uid": 4321,`))
	archive := retar(t, own)
	target := filepath.Join(t.TempDir(), "a")
	if _, _, err := Restore(ctx, bytes.NewReader(archive), target, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(filepath.Join(target, "conf/acl.json"))
	if uid := st.Sys().(*syscall.Stat_t).Uid; int(uid) != os.Getuid() {
		t.Errorf("owner %d without Chown, want %d", uid, os.Getuid())
	}
	if fi, err := os.Stat(target); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("the install directory's mode: %v %v", fi.Mode(), err)
	}
	for _, d := range []string{"var/run", "posix/bin", "logs"} {
		if fi, err := os.Stat(filepath.Join(target, d)); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v %v", d, fi, err)
		}
	}
	if os.Geteuid() == 0 {
		target2 := filepath.Join(t.TempDir(), "b")
		if _, _, err := Restore(ctx, bytes.NewReader(archive), target2, RestoreOptions{Chown: true}); err != nil {
			t.Fatal(err)
		}
		st, _ := os.Stat(filepath.Join(target2, "conf/acl.json"))
		if uid := st.Sys().(*syscall.Stat_t).Uid; uid != 4321 {
			t.Errorf("owner %d with Chown, want 4321", uid)
		}
	}
	// An empty directory is a fine target (no --force), and replaced.
	empty := filepath.Join(t.TempDir(), "empty")
	os.MkdirAll(empty, 0o700)
	if _, replaced, err := Restore(ctx, bytes.NewReader(buf.Bytes()), empty, RestoreOptions{}); err != nil || replaced != "" {
		t.Errorf("an empty target: %v %q", err, replaced)
	}
	if _, err := os.Stat(filepath.Join(empty, "conf/acl.json")); err != nil {
		t.Errorf("restored into the empty directory: %v", err)
	}
	// A target that is a file.
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, []byte("x"), 0o644)
	if _, _, err := Restore(ctx, bytes.NewReader(buf.Bytes()), file, RestoreOptions{}); err == nil {
		t.Error("a target that is a file")
	}
}

// TestWriteEdges: entries' owners, directories in the manifest, a missing
// root, a skipped file before a kept one, a cancelled backup without a
// store to snapshot.
func TestWriteEdges(t *testing.T) {
	h, _ := installDir(t)
	os.RemoveAll(h.Path("ext"))
	os.WriteFile(h.Path("groups", "group-2", "conf", "a.tmp"), []byte("temporary"), 0o600)
	var buf bytes.Buffer
	m, err := Write(t.Context(), h, &buf, Options{})
	if err != nil {
		t.Fatalf("a backup without ext/: %v", err)
	}
	paths := map[string]Entry{}
	for _, e := range m.Entries {
		paths[e.Path] = e
	}
	if e, ok := paths["groups/group-2/conf/group.yaml"]; !ok || e.UID != os.Getuid() || e.GID != os.Getgid() {
		t.Errorf("group.yaml (after a skipped file): %+v %v", e, ok)
	}
	if e := paths["groups/group-2/conf"]; !e.Dir || e.Mode != 0o755 {
		t.Errorf("a directory in the manifest: %+v", e)
	}
	for _, p := range []string{"groups/group-2/conf/a.tmp", "groups/group-2/instance-1/logs", "conf/opsdb.d"} {
		if _, ok := paths[p]; ok {
			t.Errorf("%s is in the backup", p)
		}
	}
	h2 := home.Home{Dir: t.TempDir()}
	os.MkdirAll(h2.Path("conf"), 0o755)
	os.WriteFile(h2.Path("conf", "x"), []byte("x"), 0o644)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Write(ctx, h2, io.Discard, Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled backup: %v", err)
	}
}

// TestManifestBound: a manifest over maxManifest is refused before it is
// read; an empty directory of the install directory comes back; a target
// holding one file is not empty; a truncated archive names the last
// entry read.
func TestManifestBound(t *testing.T) {
	ctx := t.Context()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	tw.WriteHeader(&tar.Header{Name: ManifestName, Mode: 0o600, Size: maxManifest + 1, Typeflag: tar.TypeReg})
	io.CopyN(tw, zeros{}, maxManifest+1)
	tw.Close()
	gz.Close()
	if _, err := Verify(ctx, &buf); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "a manifest of") {
		t.Errorf("a manifest over the bound: %v", err)
	}
	h, _ := installDir(t)
	os.MkdirAll(h.Path("ext", "empty"), 0o750)
	var b bytes.Buffer
	if _, err := Write(ctx, h, &b, Options{}); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "x")
	if _, _, err := Restore(ctx, bytes.NewReader(b.Bytes()), target, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(target, "ext", "empty")); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o750 {
		t.Errorf("an empty directory: %v %v", fi, err)
	}
	one := filepath.Join(t.TempDir(), "one")
	os.MkdirAll(one, 0o755)
	os.WriteFile(filepath.Join(one, "f"), []byte("x"), 0o644)
	if _, _, err := Restore(ctx, bytes.NewReader(b.Bytes()), one, RestoreOptions{}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("a target holding one file: %v", err)
	}
	good := b.Bytes()
	// Cut in an entry's data, the entry is named; between entries, the one before.
	if _, err := Verify(ctx, bytes.NewReader(good[:len(good)*2/3])); err == nil || !(strings.Contains(err.Error(), "after ") || strings.Contains(err.Error(), `entry "`)) || strings.Contains(err.Error(), "after the start") {
		t.Errorf("a truncated archive names the entry where it ends: %v", err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// failingAt fails every write once n bytes went through (a disk that
// fills).
type failingAt struct{ n, done int }

func (f *failingAt) Write(p []byte) (int, error) {
	if f.done+len(p) > f.n {
		return 0, errors.New("no space left on device")
	}
	f.done += len(p)
	return len(p), nil
}

// TestDiskFills: a backup whose writer fails at any point fails, whatever
// the point (entries, the store's snapshot, the manifest, the end).
func TestDiskFills(t *testing.T) {
	h, _ := installDir(t)
	big := make([]byte, 2<<20)
	for i := range big {
		big[i] = byte(i*7 + i>>8) // compresses poorly enough to be written as it goes
	}
	os.WriteFile(h.Path("ext", "big.bin"), big, 0o644)
	var whole bytes.Buffer
	if _, err := Write(t.Context(), h, &whole, Options{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, 100, 10_000, whole.Len() / 4, whole.Len() / 2, whole.Len() - 100, whole.Len() - 1} {
		if _, err := Write(t.Context(), h, &failingAt{n: n}, Options{}); err == nil {
			t.Errorf("a writer failing after %d of %d bytes: no error", n, whole.Len())
		}
	}
	if _, err := Write(t.Context(), h, &failingAt{n: whole.Len() + 1000}, Options{}); err != nil {
		t.Errorf("a writer with room enough: %v", err)
	}
}

// An export (a store read through its API) is an entry like a file, marked
// with its kind and snapshot time, restored as a file; a failing export
// fails the backup naming it.
func TestExports(t *testing.T) {
	h, _ := installDir(t)
	at := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	ex := Export{Path: "groups/group-2/instance-1/conf/kps/backup/x.jsonl", Kind: "postgres",
		Write: func(ctx context.Context, w io.Writer) (time.Time, error) {
			_, err := io.WriteString(w, "exported rows\n")
			return at, err
		}}
	var buf bytes.Buffer
	m, err := Write(t.Context(), h, &buf, Options{Exports: []Export{ex}})
	if err != nil {
		t.Fatal(err)
	}
	last := m.Entries[len(m.Entries)-1]
	if last.Path != ex.Path || last.Export != "postgres" || !last.KPS || !last.Snapshot.Equal(at) || last.Size != 14 || last.Mode != 0o600 {
		t.Errorf("the export's entry: %+v", last)
	}
	if rp := m.RecoveryPoint(); rp.After(at) {
		t.Errorf("recovery point %v after the export's snapshot %v", rp, at)
	}
	target := filepath.Join(t.TempDir(), "r")
	if _, _, err := Restore(t.Context(), bytes.NewReader(buf.Bytes()), target, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(target, filepath.FromSlash(ex.Path))); err != nil || string(b) != "exported rows\n" {
		t.Errorf("the export restored: %q, %v", b, err)
	}
	boom := errors.New("connection refused")
	ex.Write = func(context.Context, io.Writer) (time.Time, error) { return time.Time{}, boom }
	if _, err := Write(t.Context(), h, io.Discard, Options{Exports: []Export{ex}}); !errors.Is(err, boom) || !strings.Contains(err.Error(), ex.Path) {
		t.Errorf("a failing export: %v", err)
	}
}
