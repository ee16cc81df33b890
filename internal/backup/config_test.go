package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

func TestIsConfig(t *testing.T) {
	for rel, want := range map[string]bool{
		"system/conf/nodemanager.yaml":                      true,
		"conf/acl.json":                                     true,
		"groups/group-2/conf/group.yaml":                    true,
		"groups/group-2/conf/archive/apis.yaml":             true,
		"groups/group-2/instance-1/conf/instance.yaml":      true,
		"conf/adminUsers.json":                              false,
		"conf/sessionKey":                                   false,
		"conf/audit/audit.log":                              false,
		"groups/topology.json":                              false,
		"groups/certs/domaincert.pem":                       false,
		"groups/group-2/conf/kps/kps.db":                    false,
		"groups/group-2/conf/kps/apikeys.key":               false,
		"groups/group-2/conf/secrets/pgpw":                  false,
		"groups/group-2/conf/oauth/keys/k1.json":            false,
		"groups/group-2/conf/passphrase.keyring":            false,
		"groups/group-2/conf/passphrase.keyring.journal":    false,
		"groups/group-2/instance-1/conf/certs/instance.pem": false,
		"groups/group-2/instance-1/conf/kps/backup/u.jsonl": false,
		"groups/group-2/instance-1/logs/instance.log":       false,
		"system/conf/certs/private/nodemanager-key.pem":     false,
		"system/conf/passphrase.keyring":                    false,
		"groups/group-2/conf/../../../etc/passwd":           false,
		"/etc/passwd":                    false,
		"posix/bin/gatehouse":            false,
		"groups/group-2/conf/x.tmp":      false,
		"groups/group-2/conf":            false,
		"groups/group-2/instance-1/conf": false,
	} {
		if got := IsConfig(rel); got != want {
			t.Errorf("IsConfig(%q) = %v, want %v", rel, got, want)
		}
	}
}

// A backup's configuration, diffed against the install directory changed
// since, and applied: the install directory's configuration is the
// backup's again; everything else is as it was.
func TestConfigRoundTrip(t *testing.T) {
	h, _ := installDir(t)
	var buf bytes.Buffer
	if _, err := Write(t.Context(), h, &buf, Options{}); err != nil {
		t.Fatal(err)
	}
	want, m, err := ConfigOfBackup(t.Context(), bytes.NewReader(buf.Bytes()), t.TempDir())
	if err != nil || m == nil {
		t.Fatal(err)
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range want {
			if !yield(k) {
				return
			}
		}
	})
	if exp := []string{"conf/acl.json", "groups/group-2/conf/group.yaml", "groups/group-2/instance-1/conf/instance.yaml", "system/conf/nodemanager.yaml"}; !reflect.DeepEqual(names, exp) {
		t.Fatalf("configuration of the backup: %v, want %v", names, exp)
	}
	if string(want["conf/acl.json"].Data) != "content of conf/acl.json\n" || want["conf/acl.json"].Mode != 0o644 {
		t.Errorf("acl.json from the backup: %+v", want["conf/acl.json"])
	}
	// Changed since: a file rewritten, one with another mode, one added,
	// one removed, and data that is not configuration.
	write := func(rel, content string, mode os.FileMode) {
		p := filepath.Join(h.Dir, filepath.FromSlash(rel))
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(content), mode)
		os.Chmod(p, mode)
	}
	write("groups/group-2/conf/group.yaml", "apis: [changed]\n", 0o644)
	write("system/conf/nodemanager.yaml", "content of system/conf/nodemanager.yaml\n", 0o600)
	write("groups/group-2/conf/new.yaml", "added\n", 0o644)
	os.Remove(filepath.Join(h.Dir, "conf", "acl.json"))
	write("conf/adminUsers.json", "users changed\n", 0o600)
	cur, err := Config(h)
	if err != nil {
		t.Fatal(err)
	}
	c := DiffConfig(want, cur)
	if got := slices.Sorted(func(yield func(string) bool) {
		for k := range c.Write {
			if !yield(k) {
				return
			}
		}
	}); !reflect.DeepEqual(got, []string{"conf/acl.json", "groups/group-2/conf/group.yaml", "system/conf/nodemanager.yaml"}) || !reflect.DeepEqual(c.Remove, []string{"groups/group-2/conf/new.yaml"}) {
		t.Fatalf("the change: write %v, remove %v", got, c.Remove)
	}
	done, err := ApplyConfig(h, c)
	if err != nil || len(done) != 4 || !strings.Contains(strings.Join(done, "\n"), "removed groups/group-2/conf/new.yaml (not in the backup)") {
		t.Fatalf("apply: %q, %v", done, err)
	}
	after, _ := Config(h)
	if c := DiffConfig(want, after); !c.Empty() {
		t.Errorf("after apply, still different: %+v", c)
	}
	if fi, _ := os.Stat(filepath.Join(h.Dir, "system", "conf", "nodemanager.yaml")); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode put back: %v", fi.Mode())
	}
	if b, _ := os.ReadFile(filepath.Join(h.Dir, "conf", "adminUsers.json")); string(b) != "users changed\n" {
		t.Errorf("data that is not configuration was changed: %q", b)
	}
	// Refused, nothing written: a path that is not configuration, content
	// that does not match its checksum.
	for name, bad := range map[string]ConfigChange{
		"not configuration": {Write: map[string]ConfigFile{"conf/adminUsers.json": want["conf/acl.json"], "conf/acl.json": want["conf/acl.json"]}},
		"escape":            {Remove: []string{"groups/group-2/conf/../../../x"}},
		"checksum":          {Write: map[string]ConfigFile{"conf/acl.json": {SHA256: want["conf/acl.json"].SHA256, Mode: 0o644, Data: []byte("other")}}},
		"mode":              {Write: map[string]ConfigFile{"conf/acl.json": {SHA256: want["conf/acl.json"].SHA256, Mode: 0o4755, Data: want["conf/acl.json"].Data}}},
	} {
		os.WriteFile(filepath.Join(h.Dir, "conf", "acl.json"), []byte("before\n"), 0o644)
		if _, err := ApplyConfig(h, bad); err == nil || !strings.Contains(err.Error(), "nothing was changed") {
			t.Errorf("%s: %v", name, err)
		}
		if b, _ := os.ReadFile(filepath.Join(h.Dir, "conf", "acl.json")); string(b) != "before\n" {
			t.Errorf("%s: acl.json was written", name)
		}
	}
	// A damaged backup gives no configuration.
	bad := bytes.Clone(buf.Bytes())
	bad[len(bad)/2] ^= 0xff
	if _, _, err := ConfigOfBackup(t.Context(), bytes.NewReader(bad), t.TempDir()); err == nil {
		t.Error("the configuration of a damaged backup was read")
	}
}

// An install directory without some roots has the configuration it has; a
// file too large for configuration is an error naming it.
func TestConfigEdges(t *testing.T) {
	h := home.Home{Dir: t.TempDir()}
	if c, err := Config(h); err != nil || len(c) != 0 {
		t.Errorf("an empty directory: %v, %v", c, err)
	}
	p := filepath.Join(h.Dir, "groups", "group-2", "conf", "big.yaml")
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, nil, 0o644)
	if err := os.Truncate(p, maxConfigFile); err != nil {
		t.Fatal(err)
	}
	if c, err := Config(h); err != nil || len(c) != 1 {
		t.Errorf("a file of exactly the bound: %v", err)
	}
	os.Truncate(p, maxConfigFile+1)
	if _, err := Config(h); err == nil || !strings.Contains(err.Error(), "groups/group-2/conf/big.yaml") {
		t.Errorf("a file over the bound: %v", err)
	}
	if (ConfigChange{Remove: []string{"x"}}).Empty() || (ConfigChange{Write: map[string]ConfigFile{"x": {}}}).Empty() || !(ConfigChange{}).Empty() {
		t.Error("Empty")
	}
	// An executable mode is kept.
	os.Remove(p)
	data := []byte("#!/bin/sh\n")
	sum := sha256.Sum256(data)
	c := ConfigChange{Write: map[string]ConfigFile{"groups/group-2/conf/hook.sh": {SHA256: hex.EncodeToString(sum[:]), Mode: 0o755, Data: data}}}
	if _, err := ApplyConfig(h, c); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(h.Dir, "groups", "group-2", "conf", "hook.sh")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("mode 0755: %v %v", fi.Mode(), err)
	}
}
