package deploy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
)

func testHome(t *testing.T) home.Home {
	t.Helper()
	h, err := home.At(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// archiveOf normalizes a tar.gz of group.yaml with the given level and,
// when apis is set, apis.yaml.
func archiveOf(t testing.TB, level string, apis bool) Archive {
	t.Helper()
	es := []entry{{name: "group.yaml", data: "log:\n  level: " + level + "\nbackends:\n  - name: b\n    url: http://127.0.0.1:9\n"}}
	if apis {
		es = append(es, entry{name: "apis.yaml", data: apisYAML})
	}
	a, err := Normalize(tarGz(t, es...))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestStoreAddListGet(t *testing.T) {
	h := testHome(t)
	s := NewStore(h)
	if ms, err := s.List("group-2"); err != nil || len(ms) != 0 {
		t.Fatalf("List of an empty store: got %v, %v; want nothing", ms, err)
	}
	a1 := archiveOf(t, "debug", true)
	m1, err := s.Add("group-2", a1, Meta{Comment: "first", By: "admin", From: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if m1.ID != 1 || m1.Group != "group-2" || m1.Checksum != a1.Checksum || m1.Size != int64(len(a1.Canonical)) || !slices.Equal(m1.Files, []string{"group.yaml", "apis.yaml"}) || m1.At.IsZero() {
		t.Errorf("Add: got %+v, want id 1 with group, checksum, size, files and time filled", m1)
	}
	m2, err := s.Add("group-2", archiveOf(t, "info", false), Meta{Comment: "second"})
	if err != nil {
		t.Fatal(err)
	}
	if m2.ID != 2 {
		t.Errorf("second id: got %d, want 2", m2.ID)
	}
	// Ids are per group.
	m3, err := s.Add("group-1", archiveOf(t, "warn", false), Meta{})
	if err != nil {
		t.Fatal(err)
	}
	if m3.ID != 1 {
		t.Errorf("first id of another group: got %d, want 1", m3.ID)
	}
	// The same content again is a new archive (a redeploy), same checksum.
	m4, err := s.Add("group-2", a1, Meta{Comment: "again"})
	if err != nil {
		t.Fatal(err)
	}
	if m4.ID != 3 || m4.Checksum != m1.Checksum {
		t.Errorf("re-added archive: got id %d checksum %s, want 3 and %s", m4.ID, m4.Checksum, m1.Checksum)
	}

	ms, err := s.List("group-2")
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(ms); !slices.Equal(got, []int{1, 2, 3}) {
		t.Errorf("List: got ids %v, want [1 2 3]", got)
	}
	if ms[0].Comment != "first" || ms[0].By != "admin" || ms[0].From != "127.0.0.1" || !ms[0].At.Equal(m1.At) {
		t.Errorf("List[0]: got %+v, want %+v", ms[0], m1)
	}
	all, err := s.ListAll()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range all {
		got = append(got, fmt.Sprintf("%s/%d", m.Group, m.ID))
	}
	if want := []string{"group-1/1", "group-2/1", "group-2/2", "group-2/3"}; !slices.Equal(got, want) {
		t.Errorf("ListAll: got %v, want %v", got, want)
	}

	gm, ga, err := s.Get("group-2", 1)
	if err != nil {
		t.Fatal(err)
	}
	if gm.Checksum != a1.Checksum || ga.Checksum != a1.Checksum || !sameFiles(ga.Files, a1.Files) {
		t.Errorf("Get: got %+v %q, want the archive added", gm, ga.Names())
	}
	if _, _, err := s.Get("group-2", 9); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of an unknown id: got %v, want ErrNotFound", err)
	}
	if _, _, err := s.Get("group-7", 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of an unknown group: got %v, want ErrNotFound", err)
	}
	if _, _, err := s.Get("../conf", 1); !errors.Is(err, ErrInvalid) {
		t.Errorf("Get of a path as group: got %v, want ErrInvalid", err)
	}
	// Files on disk where the backup of conf/ finds them.
	for _, f := range []string{"1.tar.gz", "1.json", "3.json", "last-id"} {
		if _, err := os.Stat(filepath.Join(h.ConfDir(), "deployments", "group-2", f)); err != nil {
			t.Errorf("store file: %v", err)
		}
	}
}

func ids(ms []Meta) []int {
	var out []int
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

func TestStoreConcurrentAdd(t *testing.T) {
	s := NewStore(testHome(t))
	const n = 12
	a := archiveOf(t, "debug", false)
	got := make([]int, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each goroutine has its own Store: as two processes would.
			m, err := NewStore(s.h).Add("group-2", a, Meta{Comment: fmt.Sprint("upload ", i)})
			got[i], errs[i] = m.ID, err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Add %d: %v", i, err)
		}
	}
	slices.Sort(got)
	for i, id := range got {
		if id != i+1 {
			t.Fatalf("ids of %d concurrent uploads: got %v, want 1..%d each once", n, got, n)
		}
	}
	ms, err := s.List("group-2")
	if err != nil || len(ms) != n {
		t.Fatalf("List: got %d archives, %v; want %d", len(ms), err, n)
	}
	// Every stored comment belongs to its id's upload, once.
	seen := map[string]bool{}
	for _, m := range ms {
		if seen[m.Comment] {
			t.Errorf("comment %q stored twice", m.Comment)
		}
		seen[m.Comment] = true
	}
}

func TestStoreIDsNeverReused(t *testing.T) {
	h := testHome(t)
	s := NewStore(h)
	a := archiveOf(t, "debug", false)
	for range 3 {
		if _, err := s.Add("group-2", a, Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	dir := h.GroupDeploymentsDir("group-2")
	// Archive 3 removed by hand: the counter still says 3 was given.
	os.Remove(filepath.Join(dir, "3.tar.gz"))
	os.Remove(filepath.Join(dir, "3.json"))
	m, err := s.Add("group-2", a, Meta{})
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != 4 {
		t.Errorf("after removing archive 3: got id %d, want 4", m.ID)
	}
	// The counter restored from an older backup: the stored files count.
	if err := os.WriteFile(filepath.Join(dir, "last-id"), []byte("1\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	m, err = s.Add("group-2", a, Meta{})
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != 5 {
		t.Errorf("after counter 1 with archives up to 4: got id %d, want 5", m.ID)
	}
	if err := os.WriteFile(filepath.Join(dir, "last-id"), []byte("7\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	m, err = s.Add("group-2", a, Meta{})
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != 8 {
		t.Errorf("after counter 7: got id %d, want 8", m.ID)
	}
	// Counter lost: the highest stored id counts.
	os.Remove(filepath.Join(dir, "last-id"))
	m, err = s.Add("group-2", a, Meta{})
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != 9 {
		t.Errorf("without counter: got id %d, want 9", m.ID)
	}
	// A corrupt counter stops uploads rather than guessing.
	os.WriteFile(filepath.Join(dir, "last-id"), []byte("x"), 0o640)
	if _, err := s.Add("group-2", a, Meta{}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("corrupt counter: got %v, want ErrCorrupt", err)
	}
}

func TestStoreRefusals(t *testing.T) {
	h := testHome(t)
	s := NewStore(h)
	good := archiveOf(t, "debug", false)
	invalidConf, err := Normalize([]byte("log:\n  level: debug\n  levl: x\n"))
	if err != nil {
		t.Fatal(err)
	}
	tampered := good
	tampered.Files = []File{{Name: "group.yaml", Data: []byte("log:\n  level: warn\n")}}
	cases := []struct {
		name  string
		group string
		a     Archive
		m     Meta
		want  string
	}{
		{"invalid configuration", "group-2", invalidConf, Meta{}, "group.yaml:3: log.levl: unknown key"},
		{"comment with newline", "group-2", good, Meta{Comment: "a\nb"}, "comment has a control character"},
		{"comment with escape", "group-2", good, Meta{Comment: "a\x1b[31m"}, "control character"},
		{"comment too long", "group-2", good, Meta{Comment: strings.Repeat("c", MaxCommentLen+1)}, "comment is 1025 bytes"},
		{"comment not UTF-8", "group-2", good, Meta{Comment: "\xff"}, "not UTF-8"},
		{"user with control", "group-2", good, Meta{By: "a\tb"}, "user has a control character"},
		{"files not the canonical", "group-2", tampered, Meta{}, "do not match its canonical form"},
		{"checksum given differs", "group-2", good, Meta{Checksum: strings.Repeat("0", 64)}, "metadata checksum"},
		{"group given differs", "group-2", good, Meta{Group: "group-3"}, "metadata of group"},
		{"bad group id", "../x", good, Meta{}, "not a group id"},
		{"empty archive", "group-2", Archive{}, Meta{}, "not a gzip"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := s.Add(c.group, c.a, c.m)
			if err == nil {
				t.Fatalf("got %+v, want an error", m)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %q, want it to contain %q", err, c.want)
			}
		})
	}
	// Nothing was stored: no archive, no id used.
	if _, err := os.Stat(h.DeploymentsDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("store directory after refusals: got %v, want none", err)
	}
	m, err := s.Add("group-2", good, Meta{Comment: "ünïcode and spaces are fine"})
	if err != nil || m.ID != 1 {
		t.Errorf("first accepted archive: got %+v, %v; want id 1", m, err)
	}
	var ce *groupconf.Error
	if _, err := s.Add("group-2", invalidConf, Meta{}); !errors.As(err, &ce) {
		t.Errorf("invalid configuration: got %T, want *groupconf.Error", err)
	}
}

func TestStoreCorrupt(t *testing.T) {
	cases := []struct {
		name  string
		spoil func(t *testing.T, dir string)
	}{
		{"archive byte flipped", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "1.tar.gz")
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 0xff
			os.WriteFile(p, b, 0o640)
		}},
		{"archive truncated", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "1.tar.gz")
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:len(b)-1], 0o640)
		}},
		{"archive missing", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "1.tar.gz")) }},
		{"metadata not JSON", func(t *testing.T, dir string) { os.WriteFile(filepath.Join(dir, "1.json"), []byte("{"), 0o640) }},
		{"metadata of another id", func(t *testing.T, dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, "2.json"))
			os.WriteFile(filepath.Join(dir, "1.json"), b, 0o640)
		}},
		{"archive of another id", func(t *testing.T, dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, "2.tar.gz"))
			os.WriteFile(filepath.Join(dir, "1.tar.gz"), b, 0o640)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := testHome(t)
			s := NewStore(h)
			if _, err := s.Add("group-2", archiveOf(t, "debug", false), Meta{}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Add("group-2", archiveOf(t, "warn", true), Meta{}); err != nil {
				t.Fatal(err)
			}
			c.spoil(t, h.GroupDeploymentsDir("group-2"))
			_, _, err := s.Get("group-2", 1)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), filepath.Join(h.GroupDeploymentsDir("group-2"), "1.")) {
				t.Errorf("got %q, want it to name the file", err)
			}
			if _, _, err := s.Get("group-2", 2); err != nil && !strings.Contains(c.name, "metadata of another") {
				t.Errorf("archive 2 beside the corrupt one: %v", err)
			}
		})
	}
}

// SetProperties changes the comment and the name only: a field not given
// is kept, text with a control character or too long is refused, an unknown
// archive is ErrNotFound, and the archive's bytes never change.
func TestStoreSetProperties(t *testing.T) {
	h := testHome(t)
	s := NewStore(h)
	a := archiveOf(t, "info", false)
	m, err := s.Add("group-2", a, Meta{Comment: "first"})
	if err != nil {
		t.Fatal(err)
	}
	name := "orders v2"
	got, err := s.SetProperties("group-2", m.ID, nil, &name)
	if err != nil || got.Comment != "first" || got.Name != name {
		t.Fatalf("name only: %+v %v", got, err)
	}
	c := "reviewed"
	if got, err = s.SetProperties("group-2", m.ID, &c, nil); err != nil || got.Comment != c || got.Name != name {
		t.Fatalf("comment only: %+v %v", got, err)
	}
	back, arch, err := s.Get("group-2", m.ID)
	if err != nil || back.Comment != c || back.Name != name || arch.Checksum != a.Checksum || back.Checksum != m.Checksum {
		t.Fatalf("read back: %+v %v", back, err)
	}
	bad := "two\nlines"
	if _, err := s.SetProperties("group-2", m.ID, &bad, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("a comment with a newline: %v", err)
	}
	long := strings.Repeat("x", MaxNameLen+1)
	if _, err := s.SetProperties("group-2", m.ID, nil, &long); !errors.Is(err, ErrInvalid) {
		t.Errorf("a name too long: %v", err)
	}
	if _, err := s.SetProperties("group-2", 9, &c, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("an unknown archive: %v", err)
	}
	if back, _, _ := s.Get("group-2", m.ID); back.Comment != c {
		t.Errorf("a refused change changed the comment: %+v", back)
	}
}
