package audit

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"

	"go.yaml.in/yaml/v4"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// Rotation: when an append would take audit.log past the size limit, the
// file is renamed to audit.NNNNNN.log (1 the oldest, numbers increasing,
// never reused) and the entry starts a new audit.log. The chain goes on
// across files: the first entry of the new file has the next sequence
// number and the hash of the last line of the rotated one as its prev.
// Gatehouse never deletes a rotated file (docs/audit.md).

// DefaultMaxFileBytes is the size past which audit.log is rotated when
// nodemanager.yaml does not say otherwise.
const DefaultMaxFileBytes = 32 << 20

// MinMaxFileBytes is the smallest limit accepted from nodemanager.yaml
// (smaller values are raised to it, so that one file always holds many
// entries).
const MinMaxFileBytes = 64 << 10

// Conf is the audit section of system/conf/nodemanager.yaml.
type Conf struct {
	// MaxFileBytes is the size past which audit.log is rotated (0:
	// DefaultMaxFileBytes; below MinMaxFileBytes: MinMaxFileBytes).
	MaxFileBytes int64 `yaml:"maxFileBytes,omitempty"`
}

// Limit is the rotation size c asks for.
func (c Conf) Limit() int64 {
	switch {
	case c.MaxFileBytes <= 0:
		return DefaultMaxFileBytes
	case c.MaxFileBytes < MinMaxFileBytes: // mutate:equivalent boundary at the floor both give the floor
		return MinMaxFileBytes
	}
	return c.MaxFileBytes
}

// confLimit reads the rotation size from h's nodemanager.yaml; a missing
// or unreadable file (parsed strictly by the node manager, which reports
// it) gives the default.
func confLimit(h home.Home) int64 {
	var c struct {
		Audit Conf `yaml:"audit"`
	}
	// A missing file reads as nothing, and a file that does not parse
	// leaves the section zero (or as far as it was decoded): the default.
	data, _ := os.ReadFile(h.NodeManagerConf())
	_ = yaml.Unmarshal(data, &c)
	return c.Audit.Limit()
}

// rotatedName matches a rotated file's name.
var rotatedName = regexp.MustCompile(`^audit\.([0-9]{6,18})\.log$`)

// RotatedFile is the name of the n-th rotated file.
func RotatedFile(h home.Home, n int64) string {
	return filepath.Join(Dir(h), fmt.Sprintf("audit.%06d.log", n))
}

// logFiles lists the files of the log of h, oldest first: the rotated
// ones, then audit.log (listed whether or not it exists).
func logFiles(h home.Home) ([]string, error) {
	ents, err := os.ReadDir(Dir(h))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		// mutate:equivalent delete-stmt without it audit.log, under the same directory, fails to open the same way
		return nil, fmt.Errorf("listing %s: %w", Dir(h), err)
	}
	type rot struct {
		n    int64
		name string
	}
	var rs []rot
	for _, e := range ents {
		m := rotatedName.FindStringSubmatch(e.Name())
		if m == nil || !e.Type().IsRegular() {
			continue
		}
		// mutate:equivalent const parsing decimal digits in base 11, or with another bit size that holds 18 digits, gives the same number
		n, _ := strconv.ParseInt(m[1], 10, 64) // at most 18 digits: fits
		rs = append(rs, rot{n, e.Name()})
	}
	slices.SortFunc(rs, func(a, b rot) int { return cmp.Compare(a.n, b.n) })
	out := make([]string, 0, len(rs)+1) // mutate:equivalent const a capacity
	for _, r := range rs {
		out = append(out, filepath.Join(Dir(h), r.name))
	}
	return append(out, File(h)), nil
}

// nextRotated is the number the next rotated file of h gets: one more than
// the highest of any name in the directory that looks like one (a
// directory or a link of that name included, so that a rename never
// lands on one).
func nextRotated(h home.Home) (int64, error) {
	ents, err := os.ReadDir(Dir(h))
	if err != nil {
		return 0, fmt.Errorf("listing %s: %w", Dir(h), err)
	}
	var n int64
	for _, e := range ents {
		if m := rotatedName.FindStringSubmatch(e.Name()); m != nil {
			// mutate:equivalent const parsing decimal digits in base 11, or with another bit size that holds 18 digits, gives the same number
			v, _ := strconv.ParseInt(m[1], 10, 64)
			n = max(n, v)
		}
	}
	return n + 1, nil
}

// rotate renames audit.log of h to the next rotated name and syncs the
// directory, so that the rename survives a crash before the next entry is
// written to a new audit.log.
func rotate(h home.Home) error {
	n, err := nextRotated(h)
	if err != nil {
		return fmt.Errorf("rotating: %w", err)
	}
	to := RotatedFile(h, n)
	if err := os.Rename(File(h), to); err != nil {
		return fmt.Errorf("rotating: %w", err)
	}
	if err := home.SyncDir(Dir(h)); err != nil {
		return fmt.Errorf("rotating: %w", err)
	}
	return nil
}

// newestRotated opens the newest rotated file of h and returns it with its
// last line; nil, nil when there is none.
func newestRotated(h home.Home) (*os.File, []byte, error) {
	files, err := logFiles(h)
	if err != nil {
		return nil, nil, err
	}
	if len(files) < 2 {
		return nil, nil, nil
	}
	name := files[len(files)-2]
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", name, err)
	}
	last, _, _, err := lastLine(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("reading %s: %w", name, err)
	}
	return f, last, nil
}

// openFiles opens the files of the log of h, oldest first, without a lock:
// the files are listed, opened, and listed again, and when a rotation
// renamed audit.log in between (the lists differ) it starts again, so
// that a reader never misses the entries of a file rotated while it
// opened them. A missing audit.log is left out. The caller closes the
// files.
func openFiles(h home.Home) ([]*os.File, error) {
	for attempt := 0; ; attempt++ {
		names, err := logFiles(h)
		if err != nil {
			// mutate:equivalent delete-stmt without it the second listing fails the same way
			return nil, err
		}
		if testHookListed != nil {
			testHookListed(attempt)
		}
		fs, err := openAll(names)
		if err == nil {
			again, lerr := logFiles(h)
			if lerr != nil {
				closeAll(fs)
				return nil, lerr
			}
			if slices.Equal(names, again) {
				return fs, nil
			}
			closeAll(fs)
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		if attempt >= 3 {
			return nil, fmt.Errorf("opening the audit log in %s: files kept being rotated while they were opened", Dir(h))
		}
	}
}

// testHookListed, when set by a test, runs in openFiles between listing
// the files and opening them (to rotate the log there).
var testHookListed func(attempt int)

// openAll opens names; the last (audit.log) may be missing.
func openAll(names []string) ([]*os.File, error) {
	var fs []*os.File
	for i, name := range names {
		f, err := os.Open(name)
		if errors.Is(err, os.ErrNotExist) && i == len(names)-1 {
			break
		}
		if err != nil {
			closeAll(fs)
			return nil, fmt.Errorf("opening %s: %w", name, err)
		}
		fs = append(fs, f)
	}
	return fs, nil
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}
