// Package backup writes, verifies and restores backups of an install
// directory (docs/backup.md): one gzip-compressed tar archive holding what
// the vendor's routine backs up by hand — conf (without conf/opsdb.d),
// groups, ext, system/conf — with each group's embedded Key Property
// Store as a consistent snapshot taken while instances write, and a
// manifest of every entry (size, mode, owner, SHA-256) as its last entry.
//
// Secrets are archived as they are on disk: sealed when their scope has a
// passphrase (docs/passphrase.md), so the archive restores only with the
// passphrases.
package backup

import (
	"archive/tar"
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
	"syscall"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/kps/sqlite"
)

// Format names the archive format in its manifest.
const (
	Format       = "gatehouse-backup"
	Version      = 1
	ManifestName = "manifest.json"
)

// Manifest is the archive's last entry.
type Manifest struct {
	Format          string    `json:"format"`
	Version         int       `json:"version"`
	Gatehouse       string    `json:"gatehouse"`
	Created         time.Time `json:"created"`
	Host            string    `json:"host,omitempty"`
	TopologyVersion int64     `json:"topologyVersion,omitempty"`
	WithLogs        bool      `json:"withLogs,omitempty"`
	Entries         []Entry   `json:"entries"`
}

// Entry is one file or directory of the archive, by its path relative to
// the install directory (slash-separated).
type Entry struct {
	Path   string      `json:"path"`
	Dir    bool        `json:"dir,omitempty"`
	Size   int64       `json:"size"`
	Mode   fs.FileMode `json:"mode"` // permission bits
	UID    int         `json:"uid"`
	GID    int         `json:"gid"`
	SHA256 string      `json:"sha256,omitempty"`
	// KPS marks an embedded store taken as a snapshot.
	KPS bool `json:"kps,omitempty"`
	// Snapshot is when the store's snapshot began: every write committed
	// before it is in the backup (its recovery point).
	Snapshot time.Time `json:"snapshot,omitzero"`
	// Export names the kind of a store read through its API rather than
	// copied as a file ("postgres": a group's PostgreSQL KPS, a
	// kpsbackup file that restore can load).
	Export string `json:"export,omitempty"`
}

// Export is a store a backup reads through its API: a group's PostgreSQL
// KPS (package backup/kpsexport makes them).
type Export struct {
	Path string // its entry, relative to the install directory
	Kind string // Entry.Export
	// Write writes the store to w and returns when its snapshot was
	// taken (every write committed before it is in).
	Write func(ctx context.Context, w io.Writer) (time.Time, error)
}

// Options of Write.
type Options struct {
	Gatehouse       string // the version writing it
	Host            string
	TopologyVersion int64
	WithLogs        bool // logs/ and each instance's logs/ and trace/
	// Exports are read after the files (kpsexport.Exports).
	Exports []Export
	// Progress, when not nil, is told each entry written.
	Progress func(entries int, bytes int64)
}

// roots are the parts of the install directory a backup holds.
var roots = []string{"conf", "groups", "ext", "system/conf"}

// skipped reports whether rel (slash-separated) stays out of a backup.
func skipped(rel string, withLogs bool) bool {
	parts := strings.Split(rel, "/")
	switch {
	case rel == "conf/opsdb.d" || strings.HasPrefix(rel, "conf/opsdb.d/"):
		return true // transient monitoring data
	case strings.HasSuffix(rel, "-wal") || strings.HasSuffix(rel, "-shm") || strings.HasSuffix(rel, ".tmp"):
		return true // a store's log (its snapshot holds it), temporary files
	case !withLogs && len(parts) >= 4 && parts[0] == "groups" && (parts[3] == "logs" || parts[3] == "trace"):
		return true // groups/<gid>/<iid>/logs, trace
	}
	return false
}

// Write writes a backup of h to w and returns its manifest. Nothing is
// written to h.
func Write(ctx context.Context, h home.Home, w io.Writer, o Options) (*Manifest, error) {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	m := &Manifest{Format: Format, Version: Version, Gatehouse: o.Gatehouse, Created: time.Now().UTC().Truncate(time.Second),
		Host: o.Host, TopologyVersion: o.TopologyVersion, WithLogs: o.WithLogs}
	scratch, err := os.MkdirTemp("", "gatehouse-backup-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)
	var total int64
	add := func(rel string, fi fs.FileInfo, src string, snapshot time.Time) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		e := Entry{Path: rel, Mode: fi.Mode().Perm(), KPS: !snapshot.IsZero(), Snapshot: snapshot}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok { // mutate:equivalent negate-if on Linux Sys is always a *syscall.Stat_t
			e.UID, e.GID = int(st.Uid), int(st.Gid)
		}
		hdr := &tar.Header{Name: rel, Mode: int64(e.Mode), Uid: e.UID, Gid: e.GID, ModTime: fi.ModTime(), Format: tar.FormatPAX}
		if fi.IsDir() {
			e.Dir = true
			hdr.Typeflag, hdr.Name = tar.TypeDir, rel+"/"
			m.Entries = append(m.Entries, e)
			return tw.WriteHeader(hdr)
		}
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		defer f.Close()
		// The size when opened: files of the install directory are
		// replaced by rename, so an open one does not change; a log that
		// grows is archived up to it.
		st, err := f.Stat()
		if err != nil {
			return err
		}
		e.Size, hdr.Size, hdr.Typeflag = st.Size(), st.Size(), tar.TypeReg
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		sum := sha256.New()
		n, err := io.CopyN(io.MultiWriter(tw, sum), f, e.Size)
		if err != nil {
			return fmt.Errorf("%s: %w (%d of %d bytes)", rel, err, n, e.Size)
		}
		e.SHA256 = hex.EncodeToString(sum.Sum(nil))
		m.Entries = append(m.Entries, e)
		total += e.Size
		if o.Progress != nil {
			o.Progress(len(m.Entries), total)
		}
		return nil
	}
	for _, root := range roots {
		base := filepath.Join(h.Dir, filepath.FromSlash(root))
		err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) && p == base {
				return fs.SkipDir // mutate:equivalent err-return WalkDir ends the same way for a root it could not stat
			}
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(h.Dir, p)
			rel = filepath.ToSlash(rel)
			if skipped(rel, o.WithLogs) {
				if d.IsDir() { // mutate:equivalent delete-stmt the files under a skipped directory are skipped one by one too
					return fs.SkipDir // mutate:equivalent * the files under a skipped directory are skipped one by one too
				}
				return nil
			}
			fi, err := os.Lstat(p)
			if err != nil {
				return err
			}
			switch {
			case fi.IsDir():
				return add(rel, fi, p, time.Time{})
			case !fi.Mode().IsRegular():
				return nil // sockets, links: nothing Gatehouse keeps there
			case path.Base(rel) == "kps.db":
				// The embedded store: a snapshot, consistent while instances write.
				snap := filepath.Join(scratch, fmt.Sprintf("kps-%d.db", len(m.Entries)))
				began := time.Now().UTC()
				if err := sqlite.Snapshot(ctx, p, snap); err != nil {
					return err
				}
				sfi, err := os.Stat(snap)
				if err != nil {
					return err
				}
				return add(rel, modeOf(sfi, fi), snap, began)
			}
			return add(rel, fi, p, time.Time{})
		})
		if err != nil {
			return nil, fmt.Errorf("backing up %s: %w", root, err)
		}
	}
	for i, ex := range o.Exports {
		if err := writeExport(ctx, ex, filepath.Join(scratch, fmt.Sprintf("export-%d", i)), add); err != nil {
			return nil, fmt.Errorf("backing up %s: %w", ex.Path, err)
		}
		m.Entries[len(m.Entries)-1].Export = ex.Kind
	}
	if o.WithLogs {
		base := h.Path("logs")
		if _, err := os.Stat(base); err == nil {
			err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				fi, err := os.Lstat(p)
				if err != nil || !(fi.IsDir() || fi.Mode().IsRegular()) {
					return err
				}
				rel, _ := filepath.Rel(h.Dir, p)
				return add(filepath.ToSlash(rel), fi, p, time.Time{})
			})
			if err != nil {
				return nil, fmt.Errorf("backing up logs: %w", err)
			}
		}
	}
	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err // mutate:equivalent * a Manifest of strings, numbers and times always marshals
	}
	if err := tw.WriteHeader(&tar.Header{Name: ManifestName, Mode: 0o600, Size: int64(len(mj)), ModTime: m.Created, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil { // mutate:equivalent const the manifest is read, never restored as a file
		return nil, err
	}
	if _, err := tw.Write(mj); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return m, nil
}

// writeExport writes ex to the scratch file at snap and adds it.
func writeExport(ctx context.Context, ex Export, snap string, add func(rel string, fi fs.FileInfo, src string, snapshot time.Time) error) error {
	f, err := os.OpenFile(snap, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	began, err := ex.Write(ctx, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	fi, err := os.Stat(snap)
	if err != nil {
		return err // mutate:equivalent * the file was just written and closed
	}
	return add(ex.Path, fi, snap, began)
}

// RecoveryPoint is the earliest snapshot time of the backup's stores (every
// write committed before it is in), or its creation time without stores.
func (m *Manifest) RecoveryPoint() time.Time {
	var rp time.Time
	for _, e := range m.Entries {
		if e.KPS && (rp.IsZero() || e.Snapshot.Before(rp)) {
			rp = e.Snapshot
		}
	}
	if rp.IsZero() {
		return m.Created
	}
	return rp
}

// modeOf is the snapshot's file info with the original's mode, owner and time.
func modeOf(snap, orig fs.FileInfo) fs.FileInfo { return snapInfo{snap, orig} }

type snapInfo struct{ snap, orig fs.FileInfo }

func (s snapInfo) Name() string       { return s.orig.Name() }
func (s snapInfo) Size() int64        { return s.snap.Size() }
func (s snapInfo) Mode() fs.FileMode  { return s.orig.Mode() }
func (s snapInfo) ModTime() time.Time { return s.orig.ModTime() }
func (s snapInfo) IsDir() bool        { return false }
func (s snapInfo) Sys() any           { return s.orig.Sys() }

// WriteFile writes a backup of h to path atomically: a temporary file in
// its directory, fsynced, renamed only once complete (a failure, a full
// disk included, removes it and leaves any previous file as it was).
func WriteFile(ctx context.Context, h home.Home, path string, o Options) (*Manifest, error) {
	var m *Manifest
	err := WriteAtomic(path, func(w io.Writer) error {
		var err error
		m, err = Write(ctx, h, w, o)
		return err
	})
	return m, err
}

// WriteAtomic writes path with write, atomically: a temporary file beside
// it (mode 0600), fsynced, renamed only when write succeeded; otherwise it
// is removed and a file already at path is left as it was.
func WriteAtomic(path string, write func(w io.Writer) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".partial-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			f.Close() // mutate:equivalent delete-stmt the file is removed right after; the descriptor goes with the process
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil { // mutate:equivalent const os.CreateTemp makes the file 0600 already
		return err
	}
	if err := write(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	done = true
	home.SyncDir(dir)
	return nil
}
