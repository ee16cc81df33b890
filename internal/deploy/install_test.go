package deploy

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// stored adds archives to a store and returns their metadata and archives.
func stored(t *testing.T, h home.Home, as ...Archive) []Meta {
	t.Helper()
	var ms []Meta
	for _, a := range as {
		m, err := NewStore(h).Add("group-2", a, Meta{By: "admin", Comment: "c"})
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	return ms
}

func mkInstance(t *testing.T, h home.Home, iid, instanceYAML string) {
	t.Helper()
	p := h.InstanceConfFile("group-2", iid)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(instanceYAML), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestInstallIdempotent(t *testing.T) {
	h := testHome(t)
	a := archiveOf(t, "debug", true)
	m := stored(t, h, a)[0]
	if err := Install(h, m, a); err != nil {
		t.Fatal(err)
	}
	dir := h.GroupArchiveDir("group-2", 1)
	for _, f := range a.Files {
		b, err := os.ReadFile(filepath.Join(dir, f.Name))
		if err != nil || string(b) != string(f.Data) {
			t.Errorf("installed %s: got %q, %v; want %q", f.Name, b, err, f.Data)
		}
	}
	st1, err := os.Stat(filepath.Join(dir, "archive.json"))
	if err != nil {
		t.Fatal(err)
	}
	// Again, and concurrently: nothing to do, the same directory.
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = Install(h, m, a) }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Errorf("second Install: %v", err)
		}
	}
	st2, err := os.Stat(filepath.Join(dir, "archive.json"))
	if err != nil || !os.SameFile(st1, st2) {
		t.Errorf("second Install rewrote archive.json (%v)", err)
	}
	entries, _ := os.ReadDir(h.GroupArchivesDir("group-2"))
	if len(entries) != 1 || entries[0].Name() != "1" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("archives directory: got %q, want only 1 (no temporary directories left)", names)
	}
	// Another archive under the same id is refused.
	b := archiveOf(t, "warn", false)
	mb := m
	mb.Checksum, mb.Files = b.Checksum, b.Names()
	if err := Install(h, mb, b); err == nil || !strings.Contains(err.Error(), "already installed with checksum") {
		t.Errorf("other archive as id 1: got %v, want an error", err)
	}
	// Metadata that does not match the archive is refused.
	if err := Install(h, Meta{Group: "group-2", ID: 2, Checksum: a.Checksum, Files: a.Names()}, b); !errors.Is(err, ErrCorrupt) {
		t.Errorf("archive with another's metadata: got %v, want ErrCorrupt", err)
	}
	// An installed archive that was altered is not silently accepted.
	os.WriteFile(filepath.Join(dir, "apis.yaml"), []byte("apis: []\n"), 0o644)
	if err := Install(h, m, a); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Install over an altered archive: got %v, want ErrCorrupt", err)
	}
}

func TestSetCurrentAndLoadInstance(t *testing.T) {
	h := testHome(t)
	a1, a2 := archiveOf(t, "debug", true), archiveOf(t, "warn", false)
	ms := stored(t, h, a1, a2)
	mkInstance(t, h, "instance-1", "traffic:\n  port: 9100\n")
	// The undeployed group.yaml.
	os.MkdirAll(h.GroupConfDir("group-2"), 0o755)
	if err := os.WriteFile(h.GroupConfFile("group-2"), []byte("log:\n  level: error\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	if m, err := Current(h, "group-2", "instance-1"); m != nil || err != nil {
		t.Fatalf("Current before any deployment: got %+v, %v; want nil, nil", m, err)
	}
	if err := SetCurrent(h, "group-2", "instance-1", ms[0]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SetCurrent before Install: got %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(h.InstanceDeploymentFile("group-2", "instance-1")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("deployment.json after a refused SetCurrent: %v", err)
	}
	for i, m := range ms {
		if err := Install(h, m, []Archive{a1, a2}[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := SetCurrent(h, "group-2", "instance-9", ms[0]); err == nil {
		t.Errorf("SetCurrent of an instance that is not on this host: got nil, want an error")
	}
	before := time.Now().Add(-time.Second)
	if err := SetCurrent(h, "group-2", "instance-1", ms[0]); err != nil {
		t.Fatal(err)
	}
	cur, err := Current(h, "group-2", "instance-1")
	if err != nil || cur == nil || cur.ID != 1 || cur.Checksum != ms[0].Checksum || !slices.Equal(cur.Files, ms[0].Files) {
		t.Fatalf("Current: got %+v, %v; want archive 1", cur, err)
	}
	cfg, err := groupconf.LoadInstance(h, "group-2", "instance-1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Log.Level != "debug" || len(cfg.APIs) != 1 || cfg.Traffic.Port != 9100 {
		t.Errorf("LoadInstance on archive 1: got level %q, %d APIs, port %d; want debug, 1, 9100", cfg.Log.Level, len(cfg.APIs), cfg.Traffic.Port)
	}
	// group.yaml ("level: error") is not archive 1's: the configuration says so.
	if cfg.GroupFileNotDeployed != h.GroupConfFile("group-2") {
		t.Errorf("GroupFileNotDeployed: %q, want %s", cfg.GroupFileNotDeployed, h.GroupConfFile("group-2"))
	}
	// The same bytes as the archive's group.yaml: nothing to say.
	if err := os.WriteFile(h.GroupConfFile("group-2"), a1.Files[0].Data, 0o644); err != nil {
		t.Fatal(err)
	}
	if c, err := groupconf.LoadInstance(h, "group-2", "instance-1", nil, nil); err != nil || c.GroupFileNotDeployed != "" {
		t.Errorf("group.yaml as deployed: %q %v", c.GroupFileNotDeployed, err)
	}
	d := cfg.Deployment
	if d == nil || d.Archive != 1 || d.Checksum != ms[0].Checksum || d.DeployedBy != "admin" || d.Comment != "c" || d.DeployedAt.Before(before) {
		t.Errorf("Config.Deployment: got %+v, want archive 1 by admin, deployed now", d)
	}
	if got, want := cfg.Origin("log.level").File, filepath.Join(h.GroupArchiveDir("group-2", 1), "group.yaml"); got != want {
		t.Errorf("origin of log.level: got %q, want %q", got, want)
	}

	// Archive 2, then back to 1 (a rollback).
	if err := SetCurrent(h, "group-2", "instance-1", ms[1]); err != nil {
		t.Fatal(err)
	}
	if cfg, err = groupconf.LoadInstance(h, "group-2", "instance-1", nil, nil); err != nil || cfg.Log.Level != "warn" || len(cfg.APIs) != 0 || cfg.Deployment.Archive != 2 {
		t.Fatalf("LoadInstance on archive 2: got %v", err)
	}
	if err := SetCurrent(h, "group-2", "instance-1", ms[0]); err != nil {
		t.Fatal(err)
	}
	if cur, err = Current(h, "group-2", "instance-1"); err != nil || cur.ID != 1 {
		t.Fatalf("Current after rollback: got %+v, %v; want archive 1", cur, err)
	}

	// A wrong checksum for an installed id is refused.
	bad := ms[0]
	bad.Checksum = ms[1].Checksum
	if err := SetCurrent(h, "group-2", "instance-1", bad); err == nil {
		t.Errorf("SetCurrent with another checksum: got nil, want an error")
	}

	// The installed archive altered: Current and LoadInstance both refuse,
	// neither falls back to group.yaml.
	os.WriteFile(filepath.Join(h.GroupArchiveDir("group-2", 1), "group.yaml"), []byte("log:\n  level: info\n"), 0o644)
	if _, err := Current(h, "group-2", "instance-1"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Current of an altered archive: got %v, want ErrCorrupt", err)
	}
	if _, err := groupconf.LoadInstance(h, "group-2", "instance-1", nil, nil); !errors.Is(err, groupconf.ErrBadDeployment) {
		t.Errorf("LoadInstance of an altered archive: got %v, want ErrBadDeployment", err)
	}
	if err := SetCurrent(h, "group-2", "instance-1", ms[0]); !errors.Is(err, ErrCorrupt) {
		t.Errorf("SetCurrent to an altered archive: got %v, want ErrCorrupt", err)
	}
	// A corrupt pointer.
	os.WriteFile(h.InstanceDeploymentFile("group-2", "instance-1"), []byte("{"), 0o644)
	if _, err := Current(h, "group-2", "instance-1"); !errors.Is(err, groupconf.ErrBadDeployment) || !strings.Contains(err.Error(), "deployment.json") {
		t.Errorf("Current with a corrupt deployment.json: got %v, want ErrBadDeployment naming the file", err)
	}
}

func TestPrune(t *testing.T) {
	h := testHome(t)
	var as []Archive
	for _, lvl := range []string{"debug", "info", "warn", "error", "debug"} {
		as = append(as, archiveOf(t, lvl, lvl == "debug" && len(as) > 0))
	}
	ms := stored(t, h, as...)
	for i, m := range ms {
		if err := Install(h, m, as[i]); err != nil {
			t.Fatal(err)
		}
	}
	mkInstance(t, h, "instance-1", "")
	mkInstance(t, h, "instance-2", "")
	mkInstance(t, h, "instance-3", "") // runs group.yaml
	if err := SetCurrent(h, "group-2", "instance-1", ms[1]); err != nil {
		t.Fatal(err)
	}
	if err := SetCurrent(h, "group-2", "instance-2", ms[4]); err != nil {
		t.Fatal(err)
	}
	removed, err := Prune(h, "group-2", 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{1, 3, 4}; !slices.Equal(removed, want) {
		t.Errorf("removed: got %v, want %v", removed, want)
	}
	entries, _ := os.ReadDir(h.GroupArchivesDir("group-2"))
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if want := []string{"2", "5"}; !slices.Equal(left, want) {
		t.Errorf("left: got %q, want %q", left, want)
	}
	for _, iid := range []string{"instance-1", "instance-2"} {
		if _, err := groupconf.LoadInstance(h, "group-2", iid, nil, nil); err != nil {
			t.Errorf("%s after Prune: %v", iid, err)
		}
	}
	// keep counts the newest: with keep 5 nothing more goes; a pruned
	// archive installs again.
	if removed, err := Prune(h, "group-2", 5); err != nil || len(removed) != 0 {
		t.Errorf("Prune keep 5: got %v, %v; want nothing removed", removed, err)
	}
	if err := Install(h, ms[0], as[0]); err != nil {
		t.Errorf("reinstall of a pruned archive: %v", err)
	}
	// An unreadable pointer stops Prune: it could name any archive.
	os.WriteFile(h.InstanceDeploymentFile("group-2", "instance-3"), []byte("not json"), 0o644)
	if _, err := Prune(h, "group-2", 0); err == nil {
		t.Errorf("Prune with a corrupt deployment.json: got nil, want an error")
	}
	if _, err := os.Stat(h.GroupArchiveDir("group-2", 1)); err != nil {
		t.Errorf("archive 1 after a refused Prune: %v", err)
	}
}
