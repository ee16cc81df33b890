// Package deploy is the deployment archive of a group configuration: its
// format and canonical form (Normalize, Open), its validation (Validate), the
// Admin Node Manager's store of numbered archives (Store), and, on every
// host, the installed archives and the pointer that says which one an
// instance runs (Install, SetCurrent, Current, Prune).
//
// An upload is either one YAML document, which becomes group.yaml, or a
// gzip-compressed tar of YAML files at its top level, group.yaml among them.
// The files are the group layers of groupconf: group.yaml first, then the
// others in lexical order of their names, a later one winning. Normalize turns
// an upload into the canonical tar.gz, whose sha256 is the archive's checksum.
// See docs/deployment-archives.md.
//
// The functions of this package are safe for concurrent use, by goroutines and
// by processes: the store and the installed archives of a group are guarded by
// advisory locks under var/run.
package deploy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"go.yaml.in/yaml/v4"
)

// Limits of an upload. They are checked while reading: sizes written in tar
// or gzip headers are never trusted.
const (
	MaxUpload    = 8 << 20  // bytes of an upload as sent (a tar.gz, or one YAML document)
	MaxFileSize  = 4 << 20  // bytes of one file, uncompressed
	MaxTotalSize = 16 << 20 // bytes of all files together, uncompressed
	MaxFiles     = 64       // entries of a tar
)

// GroupFile is the one file every archive has: the first group layer.
const GroupFile = "group.yaml"

// ErrInvalid is wrapped by every refusal of an upload, of a stored archive
// read back by Open, and of archive metadata (Meta) that is not acceptable.
var ErrInvalid = errors.New("invalid deployment archive")

// File is one YAML file of an archive.
type File struct {
	Name string // e.g. "group.yaml": [A-Za-z0-9._-]+ ending in .yaml or .yml
	Data []byte
}

// Archive is a deployment archive in canonical form. Treat it as immutable.
type Archive struct {
	// Files are the group layers in the order they apply: group.yaml first,
	// then the others in lexical order of their names.
	Files []File
	// Canonical is the deterministic tar.gz of Files (names sorted, mode
	// 0644, mtime 0, uid and gid 0, no owner names, no PAX records).
	Canonical []byte
	// Checksum is the sha256 of Canonical in lower-case hex.
	Checksum string
}

// Names returns the names of the files, in layer order.
func (a Archive) Names() []string {
	names := make([]string, len(a.Files))
	for i, f := range a.Files {
		names[i] = f.Name
	}
	return names
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Normalize checks an upload (one YAML document, or a gzip-compressed tar of
// YAML files; told apart by the gzip magic number, not by a name) and returns
// it in canonical form. Every refusal wraps ErrInvalid and says what is
// accepted. Normalize checks the format and that each file is YAML; whether
// the files make a valid configuration is Validate's job.
func Normalize(upload []byte) (Archive, error) {
	if len(upload) > MaxUpload {
		return Archive{}, invalid("the upload is %d bytes, over the limit of %d (8 MiB)", len(upload), MaxUpload)
	}
	if len(bytes.TrimSpace(upload)) == 0 {
		return Archive{}, invalid("the upload is empty; send a YAML document or a tar.gz (an empty configuration is an empty group.yaml in a tar.gz)")
	}
	if isGzip(upload) {
		files, err := readTarGz(upload)
		if err != nil {
			return Archive{}, err
		}
		return build(files)
	}
	if len(upload) > MaxFileSize {
		return Archive{}, invalid("%s is %d bytes, over the limit of %d (4 MiB) for one file", GroupFile, len(upload), MaxFileSize)
	}
	if looksLikeTar(upload) {
		return Archive{}, invalid("the upload is a tar that is not gzip-compressed; send a YAML document or a tar.gz (tar czf conf.tar.gz group.yaml ...)")
	}
	if v := groupconf.EstimateValues(upload); v > groupconf.MaxValues {
		return Archive{}, tooManyValues(GroupFile, v)
	}
	if err := checkYAML(GroupFile, upload, true); err != nil {
		return Archive{}, err
	}
	return build([]File{{Name: GroupFile, Data: bytes.Clone(upload)}})
}

// Open reads back a canonical archive (as stored by a Store or sent to a
// host) with the checks of Normalize. The checksum is that of the bytes given.
func Open(canonical []byte) (Archive, error) {
	if len(canonical) > MaxUpload {
		return Archive{}, invalid("the archive is %d bytes, over the limit of %d (8 MiB)", len(canonical), MaxUpload)
	}
	if !isGzip(canonical) {
		return Archive{}, invalid("not a gzip-compressed tar")
	}
	files, err := readTarGz(canonical)
	if err != nil {
		return Archive{}, err
	}
	sortLayers(files)
	sum := sha256.Sum256(canonical)
	return Archive{Files: files, Canonical: bytes.Clone(canonical), Checksum: hex.EncodeToString(sum[:])}, nil
}

func isGzip(b []byte) bool { return len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b }

// looksLikeTar reports a ustar or GNU tar header at the start.
func looksLikeTar(b []byte) bool {
	return len(b) >= 512 && (bytes.HasPrefix(b[257:], []byte("ustar\x00")) || bytes.HasPrefix(b[257:], []byte("ustar ")))
}

// checkYAML refuses data that is not YAML text: not UTF-8, NUL bytes, or a
// YAML syntax error (reported with its line).
func checkYAML(name string, data []byte, wholeUpload bool) error {
	what := name
	if wholeUpload {
		what = "the upload"
	}
	if !utf8.Valid(data) || bytes.IndexByte(data, 0) >= 0 {
		if wholeUpload {
			return invalid("the upload is neither a gzip-compressed tar nor a YAML document (binary data)")
		}
		return invalid("%s is not YAML text (binary data)", name)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return invalid("%s is not YAML (%s: %v)", what, name, err)
		}
	}
}

// readTarGz reads a gzip-compressed tar with every check of the format. The
// files come back in the order of the tar.
func readTarGz(b []byte) ([]File, error) {
	br := bytes.NewReader(b)
	zr, err := gzip.NewReader(br)
	if err != nil {
		return nil, invalid("not a valid gzip stream: %v", err)
	}
	zr.Multistream(false)
	// The decompressed stream holds the files plus tar headers and padding:
	// allow that much, counted as it is read.
	const streamLimit = MaxTotalSize + (MaxFiles+2)*512*4 + 64<<10
	cr := &capReader{r: zr, left: streamLimit}
	tr := tar.NewReader(cr)
	var files []File
	seen := map[string]bool{}
	total, values := 0, 0
	for entries := 1; ; entries++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, tarError(cr, err)
		}
		if entries > MaxFiles {
			return nil, invalid("more than %d entries in the tar", MaxFiles)
		}
		if err := checkEntry(hdr); err != nil {
			return nil, err
		}
		if seen[hdr.Name] {
			return nil, invalid("%s is in the tar twice", hdr.Name)
		}
		seen[hdr.Name] = true
		data, err := io.ReadAll(io.LimitReader(tr, MaxFileSize+1))
		if err != nil {
			return nil, tarError(cr, err)
		}
		if len(data) > MaxFileSize {
			return nil, invalid("%s is over the limit of %d bytes (4 MiB) for one file", hdr.Name, MaxFileSize)
		}
		if total += len(data); total > MaxTotalSize {
			return nil, invalid("the files are over the limit of %d bytes (16 MiB) together, uncompressed", MaxTotalSize)
		}
		// The values the files hold, bounded as they arrive (before
		// anything is parsed, and before the rest is unpacked).
		if values += groupconf.EstimateValues(data); values > groupconf.MaxValues {
			return nil, tooManyValues(hdr.Name, values)
		}
		files = append(files, File{Name: hdr.Name, Data: data})
	}
	// After the end-of-archive marker a tar may be padded with zeros to its
	// record size; anything else is garbage.
	rest, err := io.ReadAll(cr)
	if err != nil {
		return nil, tarError(cr, err)
	}
	if slices.ContainsFunc(rest, func(c byte) bool { return c != 0 }) {
		return nil, invalid("data after the end of the tar")
	}
	if err := zr.Close(); err != nil {
		return nil, invalid("not a valid gzip stream: %v", err)
	}
	if br.Len() > 0 {
		return nil, invalid("%d bytes after the end of the gzip stream", br.Len())
	}
	if !seen[GroupFile] {
		return nil, invalid("no %s in the tar; it is required (the first group layer)", GroupFile)
	}
	// The costlier check last, once the sizes are known to be acceptable.
	for _, f := range files {
		if err := checkYAML(f.Name, f.Data, false); err != nil {
			return nil, err
		}
	}
	return files, nil
}

func tooManyValues(name string, values int) error {
	return invalid("%s: the configuration holds about %d values (lines and list items, all files together), over the limit of %d: it is refused before it is parsed", name, values, groupconf.MaxValues)
}

func tarError(cr *capReader, err error) error {
	switch {
	case cr.over:
		return invalid("the files are over the limit of %d bytes (16 MiB) together, uncompressed", MaxTotalSize)
	case cr.srcErr != nil && !errors.Is(cr.srcErr, io.EOF):
		return invalid("truncated or damaged gzip stream: %v", cr.srcErr)
	}
	return invalid("not a valid tar: %v", err)
}

// checkEntry refuses everything but a regular file with a plain name.
func checkEntry(hdr *tar.Header) error {
	name := hdr.Name
	switch hdr.Typeflag {
	case tar.TypeReg: // the reader reports the old TypeRegA as TypeReg
	case tar.TypeDir:
		return invalid("%q is a directory; put the YAML files at the top level of the tar, without directories", name)
	case tar.TypeSymlink, tar.TypeLink:
		return invalid("%q is a link; only regular files are accepted", name)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return invalid("%q is a device or a pipe; only regular files are accepted", name)
	default:
		return invalid("%q is of tar type %q; only regular files are accepted", name, hdr.Typeflag)
	}
	switch {
	case len(name) > 0 && name[0] == '/':
		return invalid("%q is an absolute path; give plain file names", name)
	case slices.Contains(strings.Split(name, "/"), ".."):
		return invalid("%q contains \"..\"; give plain file names", name)
	case strings.Contains(name, "/"):
		return invalid("%q is not at the top level of the tar (create it with: tar czf conf.tar.gz -C DIR group.yaml other.yaml)", name)
	case !groupconf.ArchiveFileName(name):
		return invalid("%q is not an accepted file name: want [A-Za-z0-9._-]+ ending in .yaml or .yml, not starting with a dot, at most 100 bytes", name)
	}
	return nil
}

// capReader reads at most left bytes and then fails, remembering it did.
type capReader struct {
	r      io.Reader
	left   int64
	over   bool
	srcErr error // the last error of r: io.EOF once the gzip stream ended whole
}

var errTooLarge = errors.New("uncompressed archive too large")

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		// One more byte tells a stream that ends exactly at the limit from
		// one that goes on.
		var one [1]byte
		n, err := c.r.Read(one[:])
		if err != nil {
			c.srcErr = err
		}
		if n > 0 {
			c.over = true
			return 0, errTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	if err != nil {
		c.srcErr = err
	}
	c.left -= int64(n)
	return n, err
}

// sortLayers puts group.yaml first and the other files in lexical order.
func sortLayers(files []File) {
	slices.SortFunc(files, func(a, b File) int {
		switch {
		case a.Name == b.Name:
			return 0
		case a.Name == GroupFile:
			return -1
		case b.Name == GroupFile:
			return 1
		case a.Name < b.Name:
			return -1
		}
		return 1
	})
}

// build writes the canonical tar.gz of files.
func build(files []File) (Archive, error) {
	sortLayers(files)
	byName := slices.Clone(files)
	slices.SortFunc(byName, func(a, b File) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return Archive{}, fmt.Errorf("compressing archive: %w", err)
	}
	tw := tar.NewWriter(zw)
	for _, f := range byName {
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     f.Name,
			Mode:     0o644,
			Size:     int64(len(f.Data)),
			ModTime:  time.Unix(0, 0),
			Format:   tar.FormatUSTAR,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return Archive{}, fmt.Errorf("writing archive entry %s: %w", f.Name, err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			return Archive{}, fmt.Errorf("writing archive entry %s: %w", f.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return Archive{}, fmt.Errorf("writing archive: %w", err)
	}
	if err := zw.Close(); err != nil {
		return Archive{}, fmt.Errorf("compressing archive: %w", err)
	}
	if buf.Len() > MaxUpload {
		// Cannot happen for files within the limits unless they do not
		// compress at all; Open would refuse it, so refuse it here.
		return Archive{}, invalid("the archive is %d bytes compressed, over the limit of %d (8 MiB)", buf.Len(), MaxUpload)
	}
	sum := sha256.Sum256(buf.Bytes())
	return Archive{Files: files, Canonical: buf.Bytes(), Checksum: hex.EncodeToString(sum[:])}, nil
}

// Validate loads the defaults, the archive's files as the group layers (each
// named by its name in the archive, so that an error reads
// "group.yaml:7: ...") and the optional instance layers with groupconf.Load,
// and returns groupconf's error unchanged. Without instance layers it
// validates the group's own configuration (groupconf.Parsed.LoadGroup):
// what only an instance's settings decide is left to them.
func Validate(a Archive, instanceLayers ...groupconf.Layer) error {
	_, err := Load(a, instanceLayers...)
	return err
}

// Load is Validate that also returns the configuration.
func Load(a Archive, instanceLayers ...groupconf.Layer) (*groupconf.Config, error) {
	p, err := Parse(a)
	if err != nil {
		return nil, err
	}
	if len(instanceLayers) == 0 {
		return p.LoadGroup()
	}
	return p.Load(instanceLayers...)
}

// Parse parses the archive's files once (groupconf.Parse), to be loaded
// alone and with each instance's settings.
func Parse(a Archive) (*groupconf.Parsed, error) {
	if len(a.Files) == 0 || a.Files[0].Name != GroupFile {
		return nil, invalid("the archive has no %s first", GroupFile)
	}
	layers := make([]groupconf.Layer, 0, len(a.Files))
	for _, f := range a.Files {
		layers = append(layers, groupconf.Layer{Name: f.Name, YAML: f.Data})
	}
	return groupconf.Parse(layers...)
}
