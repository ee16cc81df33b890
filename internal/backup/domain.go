package backup

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"
)

// A domain backup gathers the backups of every host of a domain (each one
// host's archive, as Write makes it) into one file: a tar (the parts are
// compressed already) of hosts/<host-id>.backup entries and, last,
// domain-manifest.json, which lists each part with its size and SHA-256,
// and the hosts that could not be reached (--skip-unreachable).

// DomainFormat names the domain backup format.
const DomainFormat = "gatehouse-domain-backup"

// DomainManifestName is the domain archive's last entry.
const DomainManifestName = "domain-manifest.json"

// DomainManifest is the domain archive's last entry.
type DomainManifest struct {
	Format          string     `json:"format"`
	Version         int        `json:"version"`
	Gatehouse       string     `json:"gatehouse"`
	Created         time.Time  `json:"created"`
	TopologyVersion int64      `json:"topologyVersion,omitempty"`
	Hosts           []HostPart `json:"hosts"`
	// Gaps are the hosts whose part is missing: not reachable when the
	// backup was taken with --skip-unreachable.
	Gaps []Gap `json:"gaps,omitempty"`
}

// HostPart is one host's backup in a domain archive.
type HostPart struct {
	HostID   string    `json:"hostId"`
	HostName string    `json:"hostName,omitempty"`
	Entry    string    `json:"entry"` // hosts/<host-id>.backup
	Size     int64     `json:"size"`
	SHA256   string    `json:"sha256"`
	Entries  int       `json:"entries"` // in its own manifest
	Created  time.Time `json:"created"`
	// RecoveryPoint is its stores' (Manifest.RecoveryPoint).
	RecoveryPoint time.Time `json:"recoveryPoint"`
}

// Gap is a host whose part is missing, and why.
type Gap struct {
	HostID   string `json:"hostId"`
	HostName string `json:"hostName,omitempty"`
	Error    string `json:"error"`
}

// Source is one host of a domain backup: Fetch writes its backup to w.
type Source struct {
	HostID, HostName string
	Fetch            func(ctx context.Context, w io.Writer) error
}

// DomainOptions of WriteDomain.
type DomainOptions struct {
	Gatehouse       string
	TopologyVersion int64
	// Skip, when not nil, says whether a host's failure is a gap to record
	// (the host is unreachable and --skip-unreachable was given) rather
	// than the end of the backup.
	Skip func(err error) bool
	// Progress, when not nil, is told each host's part as it is done.
	Progress func(hostID string, size int64, err error)
}

// WriteDomain writes a domain backup of sources to w: each host's part is
// fetched into a temporary file, checked (Verify: a part damaged on the way
// fails the backup), then copied in; the manifest goes last.
func WriteDomain(ctx context.Context, w io.Writer, sources []Source, o DomainOptions) (*DomainManifest, error) {
	scratch, err := os.MkdirTemp("", "gatehouse-domain-backup-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)
	dm := &DomainManifest{Format: DomainFormat, Version: Version, Gatehouse: o.Gatehouse, Created: time.Now().UTC().Truncate(time.Second),
		TopologyVersion: o.TopologyVersion, Hosts: []HostPart{}}
	tw := tar.NewWriter(w)
	for _, src := range sources {
		part, err := fetchPart(ctx, scratch, src)
		if o.Progress != nil {
			o.Progress(src.HostID, part.Size, err)
		}
		if err != nil {
			if o.Skip != nil && o.Skip(err) {
				dm.Gaps = append(dm.Gaps, Gap{HostID: src.HostID, HostName: src.HostName, Error: err.Error()})
				continue
			}
			return nil, fmt.Errorf("host %s: %w", src.HostID, err)
		}
		if err := copyPart(tw, partFile(scratch, src.HostID), part); err != nil {
			return nil, err
		}
		dm.Hosts = append(dm.Hosts, part)
	}
	mj, err := json.MarshalIndent(dm, "", "  ")
	if err != nil {
		return nil, err // mutate:equivalent * strings, numbers and times always marshal
	}
	if err := tw.WriteHeader(&tar.Header{Name: DomainManifestName, Mode: 0o600, Size: int64(len(mj)), ModTime: dm.Created, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil { // mutate:equivalent const the outer entries are read, never restored as files
		return nil, err
	}
	if _, err := tw.Write(mj); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return dm, nil
}

func partFile(dir, hostID string) string { return dir + "/" + hostID + ".backup" }

// fetchPart fetches src's backup into dir and checks it.
func fetchPart(ctx context.Context, dir string, src Source) (HostPart, error) {
	part := HostPart{HostID: src.HostID, HostName: src.HostName, Entry: "hosts/" + src.HostID + ".backup"}
	if !hostIDOK(src.HostID) {
		return part, fmt.Errorf("host id %q cannot name a file", src.HostID)
	}
	f, err := os.OpenFile(partFile(dir, src.HostID), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600) // mutate:equivalent const in a 0700 directory of its own
	if err != nil {
		return part, err
	}
	defer f.Close()
	sum := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(f, sum), 256<<10) // mutate:equivalent const a buffer's size
	if err := src.Fetch(ctx, bw); err != nil {
		return part, err
	}
	if err := bw.Flush(); err != nil {
		return part, err
	}
	st, err := f.Stat()
	if err != nil {
		return part, err
	}
	part.Size, part.SHA256 = st.Size(), hex.EncodeToString(sum.Sum(nil))
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return part, err
	}
	m, err := Verify(ctx, bufio.NewReader(f))
	if err != nil {
		return part, fmt.Errorf("its backup does not verify: %w", err)
	}
	if m.Host != "" && m.Host != src.HostID {
		return part, fmt.Errorf("its backup is of host %s, not %s", m.Host, src.HostID)
	}
	part.Entries, part.Created, part.RecoveryPoint = len(m.Entries), m.Created, m.RecoveryPoint()
	return part, nil
}

func copyPart(tw *tar.Writer, file string, part HostPart) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := tw.WriteHeader(&tar.Header{Name: part.Entry, Mode: 0o600, Size: part.Size, ModTime: part.Created, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil { // mutate:equivalent const the outer entries are read, never restored as files
		return err
	}
	if _, err := io.CopyN(tw, f, part.Size); err != nil {
		return fmt.Errorf("%s: %w", part.Entry, err)
	}
	return nil
}

// IsDomain reports whether the archive that starts with head (at least
// its first 512 bytes, or all of it) is a domain backup (a tar) rather
// than one host's (gzip).
func IsDomain(head []byte) bool {
	// A host's backup is gzip: as a tar it has no valid header.
	h, err := tar.NewReader(bytes.NewReader(head)).Next()
	return err == nil && (path.Dir(h.Name) == "hosts" || h.Name == DomainManifestName)
}

// ReadDomain reads a domain archive: every part is checked (its size and
// SHA-256 against the domain manifest, and Verify of the part itself);
// part, when not nil, is given each part's bytes as they are read (to
// restore one), and may stop early with errStop. An archive that does
// not end in a manifest listing exactly its parts is damaged.
func ReadDomain(ctx context.Context, r io.Reader, part func(hostID string, r io.Reader) error) (*DomainManifest, error) {
	tr := tar.NewReader(r)
	type seen struct {
		size int64
		sum  string
	}
	parts := map[string]seen{}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h, err := tr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("%w: the domain archive ends before its manifest", ErrDamaged)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrDamaged, err)
		}
		if h.Name == DomainManifestName {
			data, err := io.ReadAll(io.LimitReader(tr, 16<<20))
			if err != nil {
				return nil, fmt.Errorf("%w: its manifest: %v", ErrDamaged, err)
			}
			var dm DomainManifest
			if err := json.Unmarshal(data, &dm); err != nil {
				return nil, fmt.Errorf("%w: its manifest: %v", ErrDamaged, err)
			}
			if dm.Format != DomainFormat || dm.Version != Version {
				return nil, fmt.Errorf("%w: format %q version %d, want %q version %d", ErrDamaged, dm.Format, dm.Version, DomainFormat, Version)
			}
			if len(dm.Hosts) != len(parts) {
				return nil, fmt.Errorf("%w: the manifest lists %d hosts, the archive holds %d", ErrDamaged, len(dm.Hosts), len(parts))
			}
			for _, p := range dm.Hosts {
				s, ok := parts[p.Entry]
				switch {
				case !ok:
					return nil, fmt.Errorf("%w: %s is missing", ErrDamaged, p.Entry)
				case s.size != p.Size || s.sum != p.SHA256:
					return nil, fmt.Errorf("%w: %s: %d bytes with SHA-256 %s, the manifest says %d bytes, %s", ErrDamaged, p.Entry, s.size, s.sum, p.Size, p.SHA256)
				}
			}
			if _, err := tr.Next(); err != io.EOF {
				return nil, fmt.Errorf("%w: entries after the manifest", ErrDamaged)
			}
			return &dm, nil
		}
		if path.Dir(h.Name) != "hosts" || path.Ext(h.Name) != ".backup" || h.Typeflag != tar.TypeReg || !hostIDOK(strings.TrimSuffix(path.Base(h.Name), ".backup")) {
			return nil, fmt.Errorf("%w: %q is not an entry of a domain backup", ErrDamaged, h.Name)
		}
		if _, dup := parts[h.Name]; dup {
			return nil, fmt.Errorf("%w: %s twice", ErrDamaged, h.Name)
		}
		hostID := path.Base(h.Name[:len(h.Name)-len(".backup")])
		sum := sha256.New()
		cr := &countReader{r: io.TeeReader(tr, sum)}
		var perr error
		if part != nil {
			perr = part(hostID, cr)
		} else {
			_, perr = Verify(ctx, cr)
		}
		if perr != nil && !errors.Is(perr, errStop) {
			return nil, fmt.Errorf("%s: %w", h.Name, perr)
		}
		// Whatever the callback left is read too: the checksum is of all.
		if _, err := io.Copy(io.Discard, cr); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrDamaged, h.Name, err)
		}
		parts[h.Name] = seen{cr.n, hex.EncodeToString(sum.Sum(nil))}
	}
}

// hostIDOK reports whether id can name a part: letters, digits, '.', '_'
// and '-', not "." or "..".
func hostIDOK(id string) bool {
	if id == "" || id == "." || id == ".." || len(id) > 200 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// errStop is what a part callback returns when it has what it wants.
var errStop = errors.New("stop")

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// VerifyDomain checks a domain archive: every part, and the manifest.
func VerifyDomain(ctx context.Context, r io.Reader) (*DomainManifest, error) {
	return ReadDomain(ctx, r, nil)
}

// ExtractPart copies host hostID's part of a domain archive into w and
// returns the domain manifest; the whole archive is read and checked. A
// host that has no part is an error naming the hosts it has.
func ExtractPart(ctx context.Context, r io.Reader, hostID string, w io.Writer) (*DomainManifest, error) {
	found := false
	dm, err := ReadDomain(ctx, r, func(id string, pr io.Reader) error {
		if id != hostID {
			_, err := Verify(ctx, pr)
			return err
		}
		found = true
		_, err := io.Copy(w, pr)
		return err
	})
	if err != nil {
		return nil, err
	}
	if !found {
		ids := make([]string, len(dm.Hosts))
		for i, p := range dm.Hosts {
			ids[i] = p.HostID
		}
		return dm, fmt.Errorf("the domain backup has no part for host %s (it has: %v)", hostID, ids)
	}
	return dm, nil
}
