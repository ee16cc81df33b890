package groupconf

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

const (
	testGroup    = "group-2"
	testInstance = "instance-3"
	testChecksum = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

// installArchive writes an installed archive the way internal/deploy does:
// the files and archive.json with their sha256.
func installArchive(t *testing.T, h home.Home, id int, files map[string]string, order []string) {
	t.Helper()
	dir := h.GroupArchiveDir(testGroup, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sums := map[string]string{}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256([]byte(data))
		sums[name] = hex.EncodeToString(s[:])
	}
	writeJSON(t, filepath.Join(dir, "archive.json"), InstalledArchive{Group: testGroup, ID: id, Checksum: testChecksum, Files: order, SHA256: sums})
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// deployedHome is an install directory with group.yaml (log.level warn,
// traffic.port 9000), instance.yaml (traffic.port 9100) and archive 3
// installed (group.yaml: log.level debug; later.yaml: log.maxBackups 7 and
// traffic.port 9200, overridden by instance.yaml), with deployment.json
// pointing at it.
func deployedHome(t *testing.T) (home.Home, Deployed) {
	t.Helper()
	h, err := home.At(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, h.GroupConfFile(testGroup), "log:\n  level: warn\ntraffic:\n  port: 9000\n")
	writeFile(t, h.InstanceConfFile(testGroup, testInstance), "traffic:\n  port: 9100\n")
	installArchive(t, h, 3, map[string]string{
		"group.yaml": "log:\n  level: debug\n  maxBackups: 2\n",
		"later.yaml": "# second layer\nlog:\n  maxBackups: 7\ntraffic:\n  port: 9200\n",
	}, []string{"group.yaml", "later.yaml"})
	dep := Deployed{Group: testGroup, Archive: 3, Checksum: testChecksum, Files: []string{"group.yaml", "later.yaml"},
		DeployedAt: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC), DeployedBy: "admin", Comment: "third"}
	writeJSON(t, h.InstanceDeploymentFile(testGroup, testInstance), dep)
	return h, dep
}

func TestLoadInstanceWithoutDeployment(t *testing.T) {
	h, _ := deployedHome(t)
	if err := os.Remove(h.InstanceDeploymentFile(testGroup, testInstance)); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadInstance(h, testGroup, testInstance, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Deployment != nil {
		t.Errorf("Deployment: got %+v, want nil", cfg.Deployment)
	}
	if got, want := cfg.Log.Level, "warn"; got != want {
		t.Errorf("log.level: got %q, want %q (from group.yaml)", got, want)
	}
	if got, want := cfg.Origin("log.level").File, h.GroupConfFile(testGroup); got != want {
		t.Errorf("origin: got %q, want %q", got, want)
	}
}

func TestLoadInstanceFromArchive(t *testing.T) {
	h, dep := deployedHome(t)
	cfg, err := LoadInstance(h, testGroup, testInstance, map[string]string{"log.compress": "true"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Log.Level, "debug"; got != want {
		t.Errorf("log.level: got %q, want %q (from the archive, not group.yaml)", got, want)
	}
	if got, want := cfg.Log.MaxBackups, 7; got != want {
		t.Errorf("log.maxBackups: got %d, want %d (later.yaml after group.yaml)", got, want)
	}
	if got, want := cfg.Traffic.Port, 9100; got != want {
		t.Errorf("traffic.port: got %d, want %d (instance.yaml over the archive)", got, want)
	}
	if !cfg.Log.Compress {
		t.Errorf("log.compress: got false, want true (-D)")
	}
	wantOrigin := filepath.Join(h.GroupArchiveDir(testGroup, 3), "later.yaml") + ":3"
	if got := cfg.Origin("log.maxBackups").String(); got != wantOrigin {
		t.Errorf("origin: got %q, want %q", got, wantOrigin)
	}
	d := cfg.Deployment
	if d == nil {
		t.Fatal("Deployment: got nil, want archive 3")
	}
	if d.Archive != 3 || d.Checksum != dep.Checksum || d.DeployedBy != "admin" || d.Comment != "third" || !d.DeployedAt.Equal(dep.DeployedAt) {
		t.Errorf("Deployment: got %+v, want %+v", *d, dep)
	}

	// Without an archive the same instance loads group.yaml.
	cfg, err = LoadInstanceWith(h, testGroup, testInstance, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Log.Level != "warn" || cfg.Deployment != nil {
		t.Errorf("LoadInstanceWith(nil): got level %q deployment %v, want warn and nil", cfg.Log.Level, cfg.Deployment)
	}
}

func TestLoadInstanceArchiveYAMLErrorNamesInstalledFile(t *testing.T) {
	h, _ := deployedHome(t)
	installArchive(t, h, 3, map[string]string{
		"group.yaml": "log:\n  level: debug\n",
		"later.yaml": "log:\n  maxBackups: 7\n  levl: x\n",
	}, []string{"group.yaml", "later.yaml"})
	_, err := LoadInstance(h, testGroup, testInstance, nil, nil)
	want := filepath.Join(h.GroupArchiveDir(testGroup, 3), "later.yaml") + ":3: log.levl: unknown key"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want an error containing %q", err, want)
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Errorf("got %T, want *groupconf.Error", err)
	}
}

func TestLoadInstanceBadDeployment(t *testing.T) {
	depFile := func(h home.Home) string { return h.InstanceDeploymentFile(testGroup, testInstance) }
	archDir := func(h home.Home) string { return h.GroupArchiveDir(testGroup, 3) }
	cases := []struct {
		name  string
		spoil func(t *testing.T, h home.Home, d Deployed)
		want  func(h home.Home) string // a part of the error
	}{
		{"not JSON", func(t *testing.T, h home.Home, d Deployed) { writeFile(t, depFile(h), "{\"group\":") }, depFile},
		{"empty", func(t *testing.T, h home.Home, d Deployed) { writeFile(t, depFile(h), "") }, depFile},
		{"trailing data", func(t *testing.T, h home.Home, d Deployed) {
			b, _ := json.Marshal(d)
			writeFile(t, depFile(h), string(b)+"{}")
		}, depFile},
		{"misspelt field", func(t *testing.T, h home.Home, d Deployed) {
			writeFile(t, depFile(h), `{"group":"group-2","archiv":3}`)
		}, depFile},
		{"other group", func(t *testing.T, h home.Home, d Deployed) { d.Group = "group-9"; writeJSON(t, depFile(h), d) }, depFile},
		{"archive 0", func(t *testing.T, h home.Home, d Deployed) { d.Archive = 0; writeJSON(t, depFile(h), d) }, depFile},
		{"bad checksum", func(t *testing.T, h home.Home, d Deployed) { d.Checksum = "abc"; writeJSON(t, depFile(h), d) }, depFile},
		{"no files", func(t *testing.T, h home.Home, d Deployed) { d.Files = nil; writeJSON(t, depFile(h), d) }, depFile},
		{"group.yaml not first", func(t *testing.T, h home.Home, d Deployed) {
			d.Files = []string{"later.yaml", "group.yaml"}
			writeJSON(t, depFile(h), d)
		}, depFile},
		{"path in file name", func(t *testing.T, h home.Home, d Deployed) {
			d.Files = []string{"group.yaml", "../../../group.yaml"}
			writeJSON(t, depFile(h), d)
		}, depFile},
		{"archive not installed", func(t *testing.T, h home.Home, d Deployed) { d.Archive = 4; writeJSON(t, depFile(h), d) },
			func(h home.Home) string { return "archive 4 of group group-2 is not installed" }},
		{"archive directory removed", func(t *testing.T, h home.Home, d Deployed) { os.RemoveAll(archDir(h)) },
			func(h home.Home) string { return "archive 3 of group group-2 is not installed" }},
		{"file missing", func(t *testing.T, h home.Home, d Deployed) { os.Remove(filepath.Join(archDir(h), "later.yaml")) },
			func(h home.Home) string { return "incomplete" }},
		{"file altered", func(t *testing.T, h home.Home, d Deployed) {
			writeFile(t, filepath.Join(archDir(h), "later.yaml"), "log:\n  maxBackups: 8\n")
		}, func(h home.Home) string {
			return filepath.Join(archDir(h), "later.yaml") + " does not match the sha256"
		}},
		{"archive.json corrupt", func(t *testing.T, h home.Home, d Deployed) {
			writeFile(t, filepath.Join(archDir(h), "archive.json"), "[")
		},
			func(h home.Home) string { return filepath.Join(archDir(h), "archive.json") + " is corrupt" }},
		{"archive.json of another archive", func(t *testing.T, h home.Home, d Deployed) {
			d.Checksum = strings.Repeat("f", 64)
			writeJSON(t, depFile(h), d)
		}, func(h home.Home) string { return "not archive 3" }},
		{"files differ from archive.json", func(t *testing.T, h home.Home, d Deployed) {
			d.Files = []string{"group.yaml"}
			writeJSON(t, depFile(h), d)
		}, func(h home.Home) string { return "lists files" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, d := deployedHome(t)
			c.spoil(t, h, d)
			cfg, err := LoadInstance(h, testGroup, testInstance, nil, nil)
			if err == nil {
				t.Fatalf("got a configuration (log.level %q), want an error", cfg.Log.Level)
			}
			if !errors.Is(err, ErrBadDeployment) {
				t.Errorf("got %v, want an error wrapping ErrBadDeployment", err)
			}
			if want := c.want(h); !strings.Contains(err.Error(), want) {
				t.Errorf("got %q, want it to contain %q", err, want)
			}
		})
	}
}

func TestArchiveFileName(t *testing.T) {
	for name, want := range map[string]bool{
		"group.yaml": true, "a-b_c.1.yml": true, "x.yaml": true,
		"": false, "group.json": false, "a/b.yaml": false, "../x.yaml": false, "a b.yaml": false, "é.yaml": false, ".yaml": false, "._group.yaml": false,
	} {
		if got := ArchiveFileName(name); got != want {
			t.Errorf("ArchiveFileName(%q): got %v, want %v", name, got, want)
		}
	}
}
