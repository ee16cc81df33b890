package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// The configuration of a host: what gatehouse upgrade --rollback puts back
// from the backup taken before the upgrade (docs/backup.md#upgrades). It is
// the settings a program may rewrite — the node manager's
// (system/conf/nodemanager.yaml), the ACL (conf/acl.json), each group's
// configuration and installed archive (groups/<gid>/conf/…) and each
// instance's settings (groups/<gid>/<iid>/conf/…) — and never data or keys:
// key property stores and their backups (kps/), certificates and keys
// (certs/, private/, secrets/, oauth/ signing keys, keyrings), logs, the
// audit log, the admin users, the topology (it has a version protocol of
// its own: the ANM's).

// excluded are path components below which nothing is configuration.
var excluded = map[string]bool{"kps": true, "certs": true, "private": true, "secrets": true, "oauth": true, "logs": true, "trace": true}

// IsConfig reports whether rel (slash-separated, relative to the install
// directory) is configuration.
func IsConfig(rel string) bool {
	if !validName(rel) {
		return false
	}
	parts := strings.Split(rel, "/")
	for _, p := range parts {
		if excluded[p] {
			return false
		}
	}
	base := parts[len(parts)-1]
	if strings.HasSuffix(base, ".keyring") || strings.HasSuffix(base, ".journal") || skipped(rel, false) {
		return false
	}
	switch {
	case rel == "system/conf/nodemanager.yaml" || rel == "conf/acl.json":
		return true
	case len(parts) >= 4 && parts[0] == "groups" && parts[2] == "conf": // groups/<gid>/conf/…
		return true
	case len(parts) >= 5 && parts[0] == "groups" && parts[3] == "conf": // groups/<gid>/<iid>/conf/…
		return true
	}
	return false
}

// ConfigFile is one configuration file: its SHA-256 and mode, and its
// content when read from a backup.
type ConfigFile struct {
	SHA256 string      `json:"sha256"`
	Mode   fs.FileMode `json:"mode"`
	Data   []byte      `json:"data,omitempty"`
}

// maxConfigFile bounds one configuration file read (an installed archive's
// files are small; a larger file is not configuration).
const maxConfigFile = 16 << 20

// Config lists the configuration files of h with their checksums (without
// their content).
func Config(h home.Home) (map[string]ConfigFile, error) {
	return configOf(h.Dir, false)
}

// configOf walks dir's configuration files.
func configOf(dir string, withData bool) (map[string]ConfigFile, error) {
	out := map[string]ConfigFile{}
	for _, root := range []string{"conf", "groups", "system/conf"} {
		base := filepath.Join(dir, filepath.FromSlash(root))
		err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) && p == base {
				return fs.SkipDir
			}
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			rel = filepath.ToSlash(rel)
			if d.IsDir() {
				if excluded[d.Name()] { // mutate:equivalent * a shortcut: the files under it are not configuration (IsConfig)
					return fs.SkipDir // mutate:equivalent * as above
				}
				return nil // mutate:equivalent delete-stmt a directory is not a regular file: the next test returns nil
			}
			if !d.Type().IsRegular() || !IsConfig(rel) {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			if fi.Size() > maxConfigFile {
				return fmt.Errorf("%s: %d bytes: more than a configuration file holds (%d)", rel, fi.Size(), maxConfigFile)
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			cf := ConfigFile{SHA256: hex.EncodeToString(sum[:]), Mode: fi.Mode().Perm()}
			if withData {
				cf.Data = data
			}
			out[rel] = cf
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ConfigOfBackup reads a host's backup whole (every checksum checked, as
// restore does) and returns its configuration files with their content.
// scratch is a directory for the time it takes (emptied afterwards).
func ConfigOfBackup(ctx context.Context, r io.Reader, scratch string) (map[string]ConfigFile, *Manifest, error) {
	dir, err := os.MkdirTemp(scratch, "gatehouse-config-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	m, err := read(ctx, r, dir)
	if err != nil {
		return nil, nil, err
	}
	files, err := configOf(dir, true)
	if err != nil {
		return nil, nil, err
	}
	// Modes as the manifest lists them (read restores them only with a
	// final pass, which it leaves to Restore).
	for _, e := range m.Entries {
		if f, ok := files[e.Path]; ok {
			f.Mode = e.Mode
			files[e.Path] = f
		}
	}
	return files, m, nil
}

// ConfigChange is what puts a host's configuration back to a backup's:
// the files to write (with content and mode) and the paths to remove
// (configuration files the backup did not have).
type ConfigChange struct {
	Write  map[string]ConfigFile `json:"write"`
	Remove []string              `json:"remove"`
}

// Empty reports whether c changes nothing.
func (c ConfigChange) Empty() bool { return len(c.Write) == 0 && len(c.Remove) == 0 }

// DiffConfig is the change that makes current (checksums) equal to want
// (with content).
func DiffConfig(want, current map[string]ConfigFile) ConfigChange {
	c := ConfigChange{Write: map[string]ConfigFile{}, Remove: []string{}}
	for p, w := range want {
		if cur, ok := current[p]; !ok || cur.SHA256 != w.SHA256 || cur.Mode != w.Mode {
			c.Write[p] = w
		}
	}
	for p := range current {
		if _, ok := want[p]; !ok {
			c.Remove = append(c.Remove, p)
		}
	}
	slices.Sort(c.Remove)
	return c
}

// ApplyConfig makes the change c in h: every path is checked first (only
// configuration, each file's content matching its checksum), then each
// file written atomically with its mode and each removal done. It returns
// what it did, one line each.
func ApplyConfig(h home.Home, c ConfigChange) ([]string, error) {
	paths := slices.Sorted(maps.Keys(c.Write))
	for _, p := range append(slices.Clone(paths), c.Remove...) {
		if !IsConfig(p) {
			return nil, fmt.Errorf("%q is not a configuration file of an install directory: nothing was changed", p)
		}
	}
	for _, p := range paths {
		f := c.Write[p]
		sum := sha256.Sum256(f.Data)
		if hex.EncodeToString(sum[:]) != f.SHA256 {
			return nil, fmt.Errorf("%s: its content does not match its SHA-256: nothing was changed", p)
		}
		if f.Mode&^0o777 != 0 {
			return nil, fmt.Errorf("%s: mode %v: nothing was changed", p, f.Mode)
		}
	}
	var done []string
	for _, p := range paths {
		f := c.Write[p]
		dst := filepath.Join(h.Dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return done, err
		}
		if err := home.WriteFileAtomic(dst, f.Data, f.Mode); err != nil {
			return done, err
		}
		done = append(done, "put back "+p)
	}
	for _, p := range c.Remove {
		err := os.Remove(filepath.Join(h.Dir, filepath.FromSlash(p)))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return done, err
		}
		done = append(done, "removed "+p+" (not in the backup)")
	}
	return done, nil
}
