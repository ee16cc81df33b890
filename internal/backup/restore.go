package backup

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// ErrDamaged: the archive is not a whole, unaltered backup. Its message
// names the entry.
var ErrDamaged = errors.New("the backup is damaged")

// maxManifest bounds the manifest's size.
const maxManifest = 64 << 20 // mutate:equivalent const a bound far above any manifest; TestManifestBound checks it is one

// validName reports whether name (as in the archive) is a path a backup
// may hold: relative, clean, under one of its roots or logs/.
func validName(name string) bool {
	// A clean path ("", "a//b", "a/./b", "a/../b" and a trailing "/" are
	// not) that starts with a root: neither absolute nor "..".
	if path.Clean(name) != name || strings.Contains(name, "\x00") {
		return false
	}
	if name == "logs" || strings.HasPrefix(name, "logs/") || name == "system" {
		return true
	}
	for _, r := range roots {
		if name == r || strings.HasPrefix(name, r+"/") {
			return true
		}
	}
	return false
}

// read reads a backup from r, checking every entry against the manifest;
// with into not empty, it writes each entry under that directory as it
// goes (the caller removes it when read fails).
func read(ctx context.Context, r io.Reader, into string) (*Manifest, error) {
	gz, err := gzip.NewReader(bufio.NewReader(r))
	if err != nil {
		return nil, fmt.Errorf("%w: not a gzip-compressed backup: %v", ErrDamaged, err)
	}
	tr := tar.NewReader(gz)
	seen := map[string]Entry{}
	var order []string
	var m *Manifest
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		last := "the start"
		if len(order) > 0 {
			last = order[len(order)-1]
		}
		if err != nil {
			return nil, fmt.Errorf("%w: after %s: %v (truncated?)", ErrDamaged, last, err)
		}
		if m != nil {
			return nil, fmt.Errorf("%w: %q after the manifest", ErrDamaged, hdr.Name)
		}
		if hdr.Name == ManifestName && hdr.Typeflag == tar.TypeReg {
			if hdr.Size > maxManifest {
				return nil, fmt.Errorf("%w: a manifest of %d bytes", ErrDamaged, hdr.Size)
			}
			b, err := io.ReadAll(io.LimitReader(tr, hdr.Size))
			if err != nil {
				return nil, fmt.Errorf("%w: the manifest: %v (truncated?)", ErrDamaged, err)
			}
			m = &Manifest{}
			if err := json.Unmarshal(b, m); err != nil {
				return nil, fmt.Errorf("%w: the manifest: %v", ErrDamaged, err)
			}
			if m.Format != Format || m.Version != Version {
				return nil, fmt.Errorf("%w: format %q version %d, want %q version %d", ErrDamaged, m.Format, m.Version, Format, Version)
			}
			continue
		}
		name := strings.TrimSuffix(hdr.Name, "/")
		if !validName(name) {
			return nil, fmt.Errorf("%w: entry %q is not a path a backup holds", ErrDamaged, hdr.Name)
		}
		if _, dup := seen[name]; dup {
			return nil, fmt.Errorf("%w: entry %q twice", ErrDamaged, name)
		}
		e := Entry{Path: name, Mode: fs.FileMode(hdr.Mode).Perm(), UID: hdr.Uid, GID: hdr.Gid}
		dst := ""
		if into != "" {
			dst = filepath.Join(into, filepath.FromSlash(name))
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			e.Dir = true
			if dst != "" {
				if err := os.MkdirAll(dst, 0o700); err != nil { // mutate:equivalent const every entry's mode is set from the manifest afterwards
					return nil, err
				}
			}
		case tar.TypeReg:
			sum := sha256.New()
			var w io.Writer = sum
			var f *os.File
			if dst != "" {
				if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil { // mutate:equivalent * a backup lists each directory before its files (also made then); every mode is set from the manifest afterwards
					return nil, err
				}
				if f, err = os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err != nil { // mutate:equivalent const every entry's mode is set from the manifest afterwards
					return nil, err
				}
				w = io.MultiWriter(f, sum)
			}
			n, err := io.Copy(w, tr)
			if f != nil {
				if cerr := f.Close(); err == nil { // mutate:equivalent * closing a file just written fails only with the disk; syncTree checks it again
					err = cerr
				}
			}
			if err != nil {
				return nil, fmt.Errorf("%w: entry %q: %v (truncated?)", ErrDamaged, name, err)
			}
			e.Size, e.SHA256 = n, hex.EncodeToString(sum.Sum(nil))
		default:
			return nil, fmt.Errorf("%w: entry %q is neither a file nor a directory", ErrDamaged, hdr.Name)
		}
		seen[name] = e
		order = append(order, name)
	}
	if m == nil {
		return nil, fmt.Errorf("%w: no manifest (truncated after %d entries?)", ErrDamaged, len(order))
	}
	if len(m.Entries) != len(seen) {
		return nil, fmt.Errorf("%w: the manifest lists %d entries, the archive holds %d", ErrDamaged, len(m.Entries), len(seen))
	}
	for _, want := range m.Entries {
		got, ok := seen[want.Path]
		switch {
		case !ok:
			return nil, fmt.Errorf("%w: entry %q of the manifest is missing", ErrDamaged, want.Path)
		case got.Dir != want.Dir:
			return nil, fmt.Errorf("%w: entry %q: a directory in one place, a file in the other", ErrDamaged, want.Path)
		case got.Size != want.Size || got.SHA256 != want.SHA256:
			return nil, fmt.Errorf("%w: entry %q: checksum mismatch (%d bytes, sha256 %.12s…; the manifest says %d bytes, %.12s…)", ErrDamaged, want.Path, got.Size, got.SHA256, want.Size, want.SHA256)
		case got.Mode != want.Mode:
			return nil, fmt.Errorf("%w: entry %q: mode %v, the manifest says %v", ErrDamaged, want.Path, got.Mode, want.Mode)
		}
	}
	return m, nil
}

// Verify reads a whole backup from r and checks every entry's size and
// SHA-256 against its manifest, and that nothing is missing or added.
func Verify(ctx context.Context, r io.Reader) (*Manifest, error) { return read(ctx, r, "") }

// RestoreOptions of Restore.
type RestoreOptions struct {
	// Force replaces a target that is not empty; the old one is kept
	// beside it, renamed TARGET.replaced-TIME.
	Force bool
	// Chown gives files their archived owners (when running as root).
	Chown bool
}

// Restore restores the backup read from r into the install directory
// target. Everything is written into a directory beside target first
// (TARGET.restore-incomplete-…) and checked; only a whole, unaltered
// backup is moved into place, in one rename. A damaged archive, or a
// restore cut short, leaves target as it was. It returns the manifest and
// the path of a replaced directory ("" when none).
func Restore(ctx context.Context, r io.Reader, target string, o RestoreOptions) (m *Manifest, replaced string, err error) {
	target, err = filepath.Abs(target)
	if err != nil {
		return nil, "", err
	}
	nonEmpty := false
	if ents, err := os.ReadDir(target); err == nil && len(ents) > 0 {
		nonEmpty = true
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, "", err
	}
	if nonEmpty && !o.Force {
		return nil, "", fmt.Errorf("%s is not empty: restore into an empty directory, or give --force (the directory there is kept beside it)", target)
	}
	parent := filepath.Dir(target)
	if err := os.MkdirAll(parent, 0o755); err != nil { // mutate:equivalent const the parent usually exists; its mode is the operator's
		return nil, "", err
	}
	staging, err := os.MkdirTemp(parent, "."+filepath.Base(target)+".restore-incomplete-")
	if err != nil {
		return nil, "", err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(staging)
		}
	}()
	if m, err = read(ctx, r, staging); err != nil {
		return nil, "", err
	}
	// Modes, owners and times as archived, deepest first.
	for i := len(m.Entries) - 1; i >= 0; i-- {
		e := m.Entries[i]
		p := filepath.Join(staging, filepath.FromSlash(e.Path))
		if err = os.Chmod(p, e.Mode); err != nil {
			return nil, "", err
		}
		if o.Chown {
			if err = os.Lchown(p, e.UID, e.GID); err != nil {
				return nil, "", err
			}
		}
	}
	for _, d := range []string{"var/run", "posix/bin", "logs"} {
		if err = os.MkdirAll(filepath.Join(staging, d), 0o755); err != nil {
			return nil, "", err
		}
	}
	if err = syncTree(staging); err != nil {
		return nil, "", err
	}
	if _, serr := os.Stat(target); serr == nil {
		if nonEmpty {
			replaced = fmt.Sprintf("%s.replaced-%s", target, time.Now().UTC().Format("20060102T150405Z"))
			if err = os.Rename(target, replaced); err != nil {
				return nil, "", err
			}
		} else if err = os.Remove(target); err != nil {
			return nil, "", err
		}
	}
	if err = os.Rename(staging, target); err != nil {
		if replaced != "" {
			os.Rename(replaced, target) // put it back
		}
		return nil, "", err
	}
	if err = os.Chmod(target, 0o755); err != nil {
		return nil, "", err
	}
	home.SyncDir(parent)
	return m, replaced, nil
}

// syncTree fsyncs every file and directory under dir.
func syncTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error { // mutate:equivalent err-return a directory just written is walked without error
		if err != nil { // mutate:equivalent * a directory just written is walked without error
			return err
		}
		f, err := os.Open(p)
		if err != nil { // mutate:equivalent * a file just written opens (as root, whatever its mode)
			return err
		}
		defer f.Close()
		return f.Sync() // mutate:equivalent err-return an fsync error needs a failing disk
	})
}
