package deploy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// Limits of the metadata given with an archive.
const (
	MaxCommentLen = 1024 // bytes of Meta.Comment
	MaxNameLen    = 256  // bytes of Meta.By and Meta.From
)

var (
	// ErrNotFound is wrapped when a group has no archive of the id asked for.
	ErrNotFound = errors.New("deployment archive not found")
	// ErrCorrupt is wrapped when a stored or installed archive, or its
	// metadata, does not match its checksum or cannot be read back.
	ErrCorrupt = errors.New("deployment archive corrupt")
)

// Meta describes a stored archive. It is <id>.json in the store and the
// metadata part of archive.json in an installed archive.
type Meta struct {
	Group    string   `json:"group"`
	ID       int      `json:"id"`       // 1, 2, 3, ... per group, never reused
	Checksum string   `json:"checksum"` // sha256 hex of the canonical tar.gz
	Size     int64    `json:"size"`     // bytes of the canonical tar.gz
	Files    []string `json:"files"`    // the group layers in order, group.yaml first
	Comment  string   `json:"comment,omitempty"`
	// Name is an operator's label for the archive ("orders v2"); set with
	// SetProperties (managedomain menu 22).
	Name string    `json:"name,omitempty"`
	By   string    `json:"by,omitempty"`   // the user who uploaded it
	From string    `json:"from,omitempty"` // where from (client address)
	At   time.Time `json:"at"`             // when it was stored
}

// checkText refuses a metadata field that is too long or holds control
// characters (a comment is one line of text).
func checkText(field, s string, maxLen int) error {
	if len(s) > maxLen {
		return invalid("%s is %d bytes, over the limit of %d", field, len(s), maxLen)
	}
	if !utf8.ValidString(s) {
		return invalid("%s is not UTF-8 text", field)
	}
	if i := strings.IndexFunc(s, unicode.IsControl); i >= 0 {
		return invalid("%s has a control character at byte %d; give one line of text", field, i)
	}
	return nil
}

// checkGroupID refuses a group id that cannot be a directory name of the
// install directory.
func checkGroupID(id string) error {
	if id == "" || id == "." || id == ".." || len(id) > 128 ||
		strings.ContainsFunc(id, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
		}) {
		return fmt.Errorf("%w: %q is not a group id", ErrInvalid, id)
	}
	return nil
}

// Store is the Admin Node Manager's domain-wide store of deployment archives:
// conf/deployments/<groupID>/<id>.tar.gz (the canonical archive) and <id>.json
// (its Meta), so that a backup of conf/ captures them. Ids are given per group
// by a counter file (last-id) and never reused. A Store is safe for
// concurrent use by goroutines and processes.
type Store struct {
	h home.Home
}

// NewStore returns the store of the install directory h. It does not touch
// the disk.
func NewStore(h home.Home) *Store { return &Store{h: h} }

// lockTimeout bounds the wait for another writer of the store.
const lockTimeout = 30 * time.Second

func (s *Store) lock() (*home.Lock, error) {
	if err := os.MkdirAll(s.h.RunDir(), 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", s.h.RunDir(), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), lockTimeout)
	defer cancel()
	return home.LockWait(ctx, filepath.Join(s.h.RunDir(), "deployments.lock"))
}

func (s *Store) paths(groupID string, id int) (tgz, meta string) {
	dir := s.h.GroupDeploymentsDir(groupID)
	return filepath.Join(dir, strconv.Itoa(id)+".tar.gz"), filepath.Join(dir, strconv.Itoa(id)+".json")
}

// Add stores a as the next archive of groupID and returns its metadata: m
// with ID set, Group, Checksum, Size and Files taken from a, and At set to
// now when zero. The archive must pass Validate (without instance layers);
// an invalid archive, or metadata with an over-long comment or control
// characters, is refused (ErrInvalid) and nothing is written. The archive is
// written before its metadata, both atomically, after the counter: a crash
// leaves at most an unlisted archive file and an id that is skipped.
func (s *Store) Add(groupID string, a Archive, m Meta) (Meta, error) {
	return s.AddRecorded(groupID, a, m, nil)
}

// AddRecorded is Add that calls record with the archive's metadata (its id
// taken) before anything of it is written: an audit entry written there
// exists before the archive does, so that a crash can never leave a stored
// archive without one. An error of record stores nothing.
func (s *Store) AddRecorded(groupID string, a Archive, m Meta, record func(Meta) error) (Meta, error) {
	if err := checkGroupID(groupID); err != nil {
		return Meta{}, err
	}
	if m.Group != "" && m.Group != groupID {
		return Meta{}, fmt.Errorf("%w: metadata of group %q given for group %q", ErrInvalid, m.Group, groupID)
	}
	if err := checkText("comment", m.Comment, MaxCommentLen); err != nil {
		return Meta{}, err
	}
	if err := checkText("user", m.By, MaxNameLen); err != nil {
		return Meta{}, err
	}
	if err := checkText("from", m.From, MaxNameLen); err != nil {
		return Meta{}, err
	}
	// a must be what it says: its canonical bytes read back to its files.
	back, err := Open(a.Canonical)
	if err != nil {
		return Meta{}, err
	}
	if back.Checksum != a.Checksum || !sameFiles(back.Files, a.Files) {
		return Meta{}, fmt.Errorf("%w: the archive's files or checksum do not match its canonical form", ErrInvalid)
	}
	if m.Checksum != "" && m.Checksum != a.Checksum {
		return Meta{}, fmt.Errorf("%w: metadata checksum %s is not the archive's %s", ErrInvalid, m.Checksum, a.Checksum)
	}
	if err := Validate(back); err != nil {
		return Meta{}, err
	}
	m.Group, m.Checksum, m.Size, m.Files = groupID, a.Checksum, int64(len(a.Canonical)), a.Names()
	if m.At.IsZero() {
		m.At = time.Now().UTC().Truncate(time.Millisecond)
	}

	l, err := s.lock()
	if err != nil {
		return Meta{}, fmt.Errorf("storing archive of group %s: %w", groupID, err)
	}
	defer l.Unlock()
	dir := s.h.GroupDeploymentsDir(groupID)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return Meta{}, fmt.Errorf("creating %s: %w", dir, err)
	}
	last, err := s.lastID(groupID)
	if err != nil {
		return Meta{}, err
	}
	m.ID = last + 1
	if record != nil {
		if err := record(m); err != nil {
			return Meta{}, fmt.Errorf("storing archive of group %s: %w", groupID, err)
		}
	}
	if err := home.WriteFileAtomic(filepath.Join(dir, "last-id"), []byte(strconv.Itoa(m.ID)+"\n"), 0o640); err != nil {
		return Meta{}, fmt.Errorf("storing archive of group %s: %w", groupID, err)
	}
	tgz, mp := s.paths(groupID, m.ID)
	if err := home.WriteFileAtomic(tgz, a.Canonical, 0o640); err != nil {
		return Meta{}, fmt.Errorf("storing archive %d of group %s: %w", m.ID, groupID, err)
	}
	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Meta{}, fmt.Errorf("encoding metadata: %w", err)
	}
	if err := home.WriteFileAtomic(mp, append(mj, '\n'), 0o640); err != nil {
		return Meta{}, fmt.Errorf("storing archive %d of group %s: %w", m.ID, groupID, err)
	}
	return m, nil
}

func sameFiles(a, b []File) bool {
	return slices.EqualFunc(a, b, func(x, y File) bool { return x.Name == y.Name && string(x.Data) == string(y.Data) })
}

// lastID is the highest id ever given in the group: the counter, or the
// highest id of a file in the directory when that is higher (a counter
// restored from an older backup must not give an id twice).
func (s *Store) lastID(groupID string) (int, error) {
	dir := s.h.GroupDeploymentsDir(groupID)
	last := 0
	data, err := os.ReadFile(filepath.Join(dir, "last-id"))
	switch {
	case err == nil:
		n, perr := strconv.Atoi(strings.TrimSpace(string(data)))
		if perr != nil || n < 0 {
			return 0, fmt.Errorf("%w: %s holds %q, not an id", ErrCorrupt, filepath.Join(dir, "last-id"), data)
		}
		last = n
	case !errors.Is(err, os.ErrNotExist):
		return 0, fmt.Errorf("reading archive counter: %w", err)
	}
	ids, err := storedIDs(dir, false)
	if err != nil {
		return 0, err
	}
	if len(ids) > 0 {
		last = max(last, ids[len(ids)-1])
	}
	return last, nil
}

// storedIDs lists the ids of <id>.json files (metaOnly) or of any <id>.*
// file in dir, sorted.
func storedIDs(dir string, metaOnly bool) ([]int, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", dir, err)
	}
	var ids []int
	for _, e := range entries {
		base, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok && !metaOnly {
			base, ok = strings.CutSuffix(e.Name(), ".tar.gz")
		}
		if !ok {
			continue
		}
		if id, err := strconv.Atoi(base); err == nil && id > 0 && strconv.Itoa(id) == base && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// List returns the metadata of the group's archives by id; none (and no
// error) for a group without archives.
func (s *Store) List(groupID string) ([]Meta, error) {
	if err := checkGroupID(groupID); err != nil {
		return nil, err
	}
	ids, err := storedIDs(s.h.GroupDeploymentsDir(groupID), true)
	if err != nil {
		return nil, err
	}
	out := make([]Meta, 0, len(ids))
	for _, id := range ids {
		m, err := s.meta(groupID, id)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// ListAll returns the metadata of every group's archives, sorted by group,
// then id.
func (s *Store) ListAll() ([]Meta, error) {
	entries, err := os.ReadDir(s.h.DeploymentsDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", s.h.DeploymentsDir(), err)
	}
	var out []Meta
	for _, e := range entries { // ReadDir sorts by name
		if !e.IsDir() || checkGroupID(e.Name()) != nil {
			continue
		}
		ms, err := s.List(e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, ms...)
	}
	return out, nil
}

func (s *Store) meta(groupID string, id int) (Meta, error) {
	_, mp := s.paths(groupID, id)
	data, err := os.ReadFile(mp)
	if errors.Is(err, os.ErrNotExist) {
		return Meta{}, fmt.Errorf("%w: group %s has no archive %d", ErrNotFound, groupID, id)
	}
	if err != nil {
		return Meta{}, fmt.Errorf("reading archive metadata: %w", err)
	}
	var m Meta
	if err := json.Unmarshal(data, &m); err != nil {
		return Meta{}, fmt.Errorf("%w: %s: %v", ErrCorrupt, mp, err)
	}
	if m.Group != groupID || m.ID != id {
		return Meta{}, fmt.Errorf("%w: %s describes archive %d of group %q", ErrCorrupt, mp, m.ID, m.Group)
	}
	return m, nil
}

// SetProperties changes the comment and the name of archive id of groupID
// (nil: unchanged) and returns the metadata as written (atomically, under
// the store's lock). The archive itself never changes.
func (s *Store) SetProperties(groupID string, id int, comment, name *string) (Meta, error) {
	if err := checkGroupID(groupID); err != nil {
		return Meta{}, err
	}
	if comment != nil {
		if err := checkText("comment", *comment, MaxCommentLen); err != nil {
			return Meta{}, err
		}
	}
	if name != nil {
		if err := checkText("name", *name, MaxNameLen); err != nil {
			return Meta{}, err
		}
	}
	l, err := s.lock()
	if err != nil {
		return Meta{}, err
	}
	defer l.Unlock()
	m, err := s.meta(groupID, id)
	if err != nil {
		return Meta{}, err
	}
	if comment != nil {
		m.Comment = *comment
	}
	if name != nil {
		m.Name = *name
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Meta{}, err
	}
	_, mp := s.paths(groupID, id)
	if err := home.WriteFileAtomic(mp, append(b, '\n'), 0o640); err != nil {
		return Meta{}, fmt.Errorf("writing archive metadata: %w", err)
	}
	return m, nil
}

// Get returns an archive and its metadata, after checking the stored bytes
// against the checksum: a stored archive that does not match, or does not
// read back, is an error wrapping ErrCorrupt. An unknown id wraps
// ErrNotFound.
func (s *Store) Get(groupID string, id int) (Meta, Archive, error) {
	if err := checkGroupID(groupID); err != nil {
		return Meta{}, Archive{}, err
	}
	m, err := s.meta(groupID, id)
	if err != nil {
		return Meta{}, Archive{}, err
	}
	tgz, _ := s.paths(groupID, id)
	data, err := os.ReadFile(tgz)
	if errors.Is(err, os.ErrNotExist) {
		return Meta{}, Archive{}, fmt.Errorf("%w: %s is missing", ErrCorrupt, tgz)
	}
	if err != nil {
		return Meta{}, Archive{}, fmt.Errorf("reading archive %d of group %s: %w", id, groupID, err)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != m.Checksum || int64(len(data)) != m.Size {
		return Meta{}, Archive{}, fmt.Errorf("%w: %s has sha256 %s and %d bytes, its metadata says %s and %d", ErrCorrupt, tgz, got, len(data), m.Checksum, m.Size)
	}
	a, err := Open(data)
	if err != nil {
		return Meta{}, Archive{}, fmt.Errorf("%w: %s: %w", ErrCorrupt, tgz, err)
	}
	if !slices.Equal(a.Names(), m.Files) {
		return Meta{}, Archive{}, fmt.Errorf("%w: %s holds %q, its metadata says %q", ErrCorrupt, tgz, a.Names(), m.Files)
	}
	return m, a, nil
}
