// Package kpsbackup is the form of a Key Property Store backup (kpsadmin
// backup and restore; docs/kpsadmin.md): JSON lines, one record per line,
// sealed by the SHA-256 of every byte before the last line.
//
//	{"format":"gatehouse-kps-backup","version":1}         the first line
//	{"table":{…definition, as kps.Table…}}                 per table, before its rows
//	{"row":{"table":"ALIAS","version":N,"values":{…}}}     per row
//	{"secret":{"name":…,"value":"…base64…"}}              per shared secret (an export
//	                                                      of a shared store: the API-key
//	                                                      hashing key, as stored)
//	{"manifest":{"uuid":…,"gatehouse":…,"created":…,       the next-to-last line
//	  "groupId":…,"groupName":…,"instanceId":…,"instanceName":…,
//	  "backend":…,"tables":[{"alias":…,"rows":N},…]}}
//	{"sha256":"…64 hex digits…"}                           the last line
//
// Parse refuses anything else: a file without its manifest or checksum
// (truncated), a checksum that does not match, a line that is not one
// record, a row whose table was not declared before it or that does not fit
// its table's definition (unknown property, wrong type, missing or repeated
// key), a manifest whose table list or row counts differ from the records.
// It reads the whole file before it returns, so that a caller verifies a
// backup completely before it writes anything.
package kpsbackup

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"regexp"
	"slices"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
)

// Format and Version are the first line's.
const (
	Format  = "gatehouse-kps-backup"
	Version = 1
)

// Ext is the backup files' extension: conf/kps/backup/<uuid>.jsonl.
const Ext = ".jsonl"

// maxLine bounds one line: a row's values are at most kps.MaxRowBytes.
const maxLine = kps.MaxRowBytes + 64<<10

// ErrCorrupt is wrapped by every error of a file that is not a whole,
// intact backup.
var ErrCorrupt = errors.New("not a whole, intact KPS backup")

// Manifest describes a backup.
type Manifest struct {
	UUID         string       `json:"uuid"`
	Gatehouse    string       `json:"gatehouse"` // the version that wrote it
	Created      time.Time    `json:"created"`
	GroupID      string       `json:"groupId"`
	GroupName    string       `json:"groupName"`
	InstanceID   string       `json:"instanceId"`
	InstanceName string       `json:"instanceName"`
	Backend      string       `json:"backend"` // the store it was read from: sqlite, postgres
	Tables       []TableCount `json:"tables"`  // in file order
	// Secrets names the shared secrets the file holds, in file order
	// (kps.Exporter; kpsadmin backup writes none).
	Secrets []string `json:"secrets,omitempty"`
}

// Secret is a shared secret of the store, as stored (kps.SharedSecrets):
// sealed with the group's passphrase when it has one.
type Secret struct {
	Name  string `json:"name"`
	Value []byte `json:"value"`
}

// TableCount is one table of a backup and its number of rows.
type TableCount struct {
	Alias string `json:"alias"`
	Rows  int64  `json:"rows"`
}

// Table is one table of a backup with its rows.
type Table struct {
	Def  kps.Table
	Rows []kps.Row
}

// Backup is a parsed backup.
type Backup struct {
	Manifest Manifest
	Tables   []Table
	Secrets  []Secret
}

// Table returns the table with alias.
func (b *Backup) Table(alias string) (*Table, bool) {
	for i := range b.Tables {
		if b.Tables[i].Def.Alias == alias {
			return &b.Tables[i], true
		}
	}
	return nil, false
}

// record is one line; exactly one field is set (the first line sets Format
// and Version).
type record struct {
	Format   string     `json:"format,omitempty"`
	Version  int        `json:"version,omitempty"`
	Table    *kps.Table `json:"table,omitempty"`
	Row      *rowRecord `json:"row,omitempty"`
	Secret   *Secret    `json:"secret,omitempty"`
	Manifest *Manifest  `json:"manifest,omitempty"`
	SHA256   string     `json:"sha256,omitempty"`
}

type rowRecord struct {
	Table   string          `json:"table"`
	Version int64           `json:"version"`
	Values  json.RawMessage `json:"values"`
}

// Writer writes a backup: NewWriter, then Table and its rows with Row, for
// each table, then Close with the manifest. Not safe for concurrent use.
type Writer struct {
	w       *bufio.Writer
	h       hash.Hash
	tables  []TableCount
	secrets []string
	defs    map[string]*kps.Table
	cur     *kps.Table
	err     error
}

// NewWriter starts a backup on w (the first line is written at once).
func NewWriter(w io.Writer) *Writer {
	// mutate:equivalent const the buffer's size changes no output
	bw := &Writer{w: bufio.NewWriterSize(w, 64<<10), h: sha256.New(), defs: map[string]*kps.Table{}}
	bw.line(record{Format: Format, Version: Version})
	return bw
}

func (w *Writer) line(r record) {
	if w.err != nil {
		return // mutate:equivalent delete-stmt a bufio.Writer's error is sticky: the Write below sets the same error again
	}
	b, err := json.Marshal(r)
	// mutate:equivalent * a record is strings, numbers, a validated table and values json.Marshal made: it marshals
	if err != nil {
		panic("kpsbackup: marshalling a record: " + err.Error()) // mutate:equivalent * as above
	}
	b = append(b, '\n')
	w.h.Write(b)
	_, w.err = w.w.Write(b)
}

// Table starts table t: the rows given next are its.
func (w *Writer) Table(t kps.Table) error {
	if w.err != nil {
		return w.err
	}
	if err := t.Validate(); err != nil {
		return err
	}
	if _, dup := w.defs[t.Alias]; dup {
		return fmt.Errorf("table %q written twice", t.Alias)
	}
	t = t.Clone()
	w.defs[t.Alias] = &t
	w.cur = &t
	w.tables = append(w.tables, TableCount{Alias: t.Alias})
	w.line(record{Table: &t})
	return w.err
}

// Row writes a row of the current table.
func (w *Writer) Row(r kps.Row) error {
	if w.err != nil {
		return w.err
	}
	if w.cur == nil {
		return errors.New("a row before any table")
	}
	e, err := w.cur.Encode(r.Values)
	if err != nil {
		return err
	}
	w.line(record{Row: &rowRecord{Table: w.cur.Alias, Version: max(r.Version, 1), Values: e.Data}})
	w.tables[len(w.tables)-1].Rows++
	return w.err
}

// Secret writes a shared secret (kps.ExportSink).
func (w *Writer) Secret(name string, value []byte) error {
	if w.err != nil {
		return w.err
	}
	if name == "" || len(value) == 0 {
		return fmt.Errorf("shared secret %q: a secret needs a name and a value", name)
	}
	if slices.Contains(w.secrets, name) {
		return fmt.Errorf("shared secret %q written twice", name)
	}
	w.secrets = append(w.secrets, name)
	w.line(record{Secret: &Secret{Name: name, Value: value}})
	return w.err
}

var _ kps.ExportSink = (*Writer)(nil)

// Close writes the manifest m (its Tables are filled from what was
// written) and the checksum, and flushes. It does not close the file.
func (w *Writer) Close(m Manifest) (Manifest, error) {
	m.Tables = slices.Clone(w.tables)
	m.Secrets = slices.Clone(w.secrets)
	if m.Tables == nil {
		m.Tables = []TableCount{}
	}
	w.line(record{Manifest: &m})
	if w.err != nil {
		return m, w.err // mutate:equivalent delete-stmt a bufio.Writer's error is sticky: the Write and Flush below return it
	}
	sum := hex.EncodeToString(w.h.Sum(nil))
	b, _ := json.Marshal(record{SHA256: sum})
	if _, err := w.w.Write(append(b, '\n')); err != nil {
		return m, err // mutate:equivalent * a bufio.Writer's error is sticky: Flush returns it
	}
	return m, w.w.Flush()
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// ValidUUID reports whether s is a UUID in canonical lowercase form (a
// backup's name).
func ValidUUID(s string) bool { return uuidRE.MatchString(s) }

// Parse reads and checks a whole backup (see the package comment). Its
// errors wrap ErrCorrupt (or the reader's error) and name the line.
func Parse(r io.Reader) (*Backup, error) {
	// mutate:equivalent const the buffer's size changes no result (readLine joins fragments)
	br := bufio.NewReaderSize(r, 64<<10)
	h := sha256.New()
	b := &Backup{}
	n := 0
	var manifest *Manifest
	var sum string
	keys := map[string]map[string]bool{} // alias → primary keys seen
	secs := map[string]map[string]bool{} // alias → secondary keys seen
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("line %d: %s: %w", n, fmt.Sprintf(format, args...), ErrCorrupt)
	}
	for {
		line, err := readLine(br)
		if err == io.EOF {
			break
		}
		n++
		if err != nil {
			if errors.Is(err, errLong) || errors.Is(err, errNoNewline) {
				return nil, corrupt("%v", err)
			}
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if sum != "" {
			return nil, corrupt("data after the checksum line")
		}
		var rec record
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec); err != nil {
			return nil, corrupt("not a record: %v", err)
		}
		if rest := line[dec.InputOffset():]; string(rest) != "\n" {
			return nil, corrupt("%q after the record: want one JSON object a line", rest)
		}
		kinds := 0
		for _, set := range []bool{rec.Format != "" || rec.Version != 0, rec.Table != nil, rec.Row != nil, rec.Secret != nil, rec.Manifest != nil, rec.SHA256 != ""} {
			if set {
				kinds++
			}
		}
		if kinds != 1 {
			return nil, corrupt("a record holds exactly one of format, table, row, secret, manifest, sha256")
		}
		if n == 1 {
			if rec.Format != Format || rec.Version != Version {
				return nil, corrupt("want the first line %s version %d, got %q version %d", Format, Version, rec.Format, rec.Version)
			}
			h.Write(line)
			continue
		}
		if manifest != nil && rec.SHA256 == "" {
			return nil, corrupt("a record after the manifest")
		}
		switch {
		case rec.Format != "" || rec.Version != 0:
			return nil, corrupt("the format line again")
		case rec.Table != nil:
			t := rec.Table
			if err := t.Validate(); err != nil {
				return nil, corrupt("%v", err)
			}
			if _, dup := b.Table(t.Alias); dup {
				return nil, corrupt("table %q declared twice", t.Alias)
			}
			b.Tables = append(b.Tables, Table{Def: *t})
			keys[t.Alias], secs[t.Alias] = map[string]bool{}, map[string]bool{}
		case rec.Row != nil:
			rr := rec.Row
			t, ok := b.Table(rr.Table)
			if !ok {
				return nil, corrupt("a row of table %q, which is not declared before it", rr.Table)
			}
			if rr.Version < 1 {
				return nil, corrupt("table %q: version %d: want 1 or more", rr.Table, rr.Version)
			}
			vals, err := decodeValues(&t.Def, rr.Values)
			if err != nil {
				return nil, corrupt("table %q: %v", rr.Table, err)
			}
			e, err := t.Def.Encode(vals)
			if err != nil {
				return nil, corrupt("%v", err)
			}
			if keys[rr.Table][e.Key] {
				return nil, corrupt("table %q: primary key %q given twice", rr.Table, e.Key)
			}
			keys[rr.Table][e.Key] = true
			if e.HasSecondary {
				if secs[rr.Table][e.Secondary] {
					return nil, corrupt("table %q: secondary key %q given twice", rr.Table, e.Secondary)
				}
				secs[rr.Table][e.Secondary] = true
			}
			t.Rows = append(t.Rows, kps.Row{Values: e.Values, Version: rr.Version})
		case rec.Secret != nil:
			sec := *rec.Secret
			if sec.Name == "" || len(sec.Value) == 0 {
				return nil, corrupt("a shared secret without a name or a value")
			}
			if slices.ContainsFunc(b.Secrets, func(o Secret) bool { return o.Name == sec.Name }) {
				return nil, corrupt("shared secret %q given twice", sec.Name)
			}
			b.Secrets = append(b.Secrets, sec)
		case rec.Manifest != nil:
			manifest = rec.Manifest
			if err := checkManifest(manifest, b); err != nil {
				return nil, corrupt("manifest: %v", err)
			}
		case rec.SHA256 != "":
			if manifest == nil {
				return nil, corrupt("the checksum line comes before the manifest")
			}
			sum = rec.SHA256
			got := hex.EncodeToString(h.Sum(nil))
			if sum != got {
				return nil, corrupt("checksum mismatch: the file says SHA-256 %s, its content has %s", sum, got)
			}
			continue
		}
		h.Write(line)
	}
	switch {
	case n == 0:
		return nil, fmt.Errorf("empty file: %w", ErrCorrupt)
	case manifest == nil:
		return nil, fmt.Errorf("no manifest: the file ends at line %d (truncated?): %w", n, ErrCorrupt)
	case sum == "":
		return nil, fmt.Errorf("no checksum line: the file ends at line %d (truncated?): %w", n, ErrCorrupt)
	}
	b.Manifest = *manifest
	return b, nil
}

// checkManifest compares m with the records read.
func checkManifest(m *Manifest, b *Backup) error {
	if !ValidUUID(m.UUID) {
		return fmt.Errorf("uuid %q is not a UUID", m.UUID)
	}
	if m.Created.IsZero() {
		return errors.New("no creation time")
	}
	if len(m.Tables) != len(b.Tables) {
		return fmt.Errorf("lists %d tables, the file holds %d", len(m.Tables), len(b.Tables))
	}
	for i, tc := range m.Tables {
		t := b.Tables[i]
		if tc.Alias != t.Def.Alias {
			return fmt.Errorf("table %d is %q, the file's is %q", i+1, tc.Alias, t.Def.Alias)
		}
		if tc.Rows != int64(len(t.Rows)) {
			return fmt.Errorf("table %q: %d rows, the file holds %d", tc.Alias, tc.Rows, len(t.Rows))
		}
	}
	var names []string
	for _, sec := range b.Secrets {
		names = append(names, sec.Name)
	}
	if !slices.Equal(m.Secrets, names) {
		return fmt.Errorf("lists shared secrets %q, the file holds %q", m.Secrets, names)
	}
	return nil
}

// decodeValues reads a row's values strictly: an object whose every member
// is a declared property with a non-null value of its type.
func decodeValues(t *kps.Table, raw json.RawMessage) (map[string]any, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil || members == nil {
		return nil, fmt.Errorf("values: want a JSON object")
	}
	for name, v := range members {
		if _, ok := t.Property(name); !ok {
			return nil, fmt.Errorf("no property %q in the table's definition", name)
		}
		if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			return nil, fmt.Errorf("property %q is null", name)
		}
	}
	return t.Decode(raw)
}

var (
	errLong      = fmt.Errorf("a line longer than %d bytes", maxLine)
	errNoNewline = errors.New("the last line has no line end (truncated?)")
)

// readLine returns one line with its '\n'. io.EOF only at the end of the
// input with nothing read.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > maxLine {
			return nil, errLong
		}
		switch {
		case err == nil:
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF && len(line) == 0:
			return nil, io.EOF
		case err == io.EOF:
			return nil, errNoNewline
		default:
			return nil, err
		}
	}
}
