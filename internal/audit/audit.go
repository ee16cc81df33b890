// Package audit is the domain audit log: an append-only file of JSON lines
// in conf/audit/audit.log of an install directory, one entry per change to
// the domain (topology changes, instance start and stop through the API),
// successful or not. Each entry carries the SHA-256 of the line before it
// (prev) and of itself (hash), so that an entry removed, reordered or
// altered is found by Verify, which names the first bad sequence number.
// docs/audit.md describes the format and what the chain does and does not
// protect against.
//
// Appends are serialised across processes by flock(2) on
// var/run/audit.lock and each append is fsynced before Record returns.
// Lock order: a caller may hold var/run/topology.lock while appending (the
// topology store records under it); the audit lock is never held while
// taking another lock.
package audit

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// Outcomes of an entry.
const (
	OutcomeOK    = "ok"
	OutcomeError = "error"
)

// Entry is one line of the audit log. Seq, Prev and Hash are set by Record.
type Entry struct {
	Seq    int64     `json:"seq"`
	Time   time.Time `json:"time"`   // UTC
	User   string    `json:"user"`   // the authenticated API user or the OS user of a tool
	Via    string    `json:"via"`    // "api", "managedomain", "quickstart", "nm/topology", ...
	Remote string    `json:"remote"` // client address, or "local" for tools
	Action string    `json:"action"` // "create instance", "start instance", ...
	Detail string    `json:"detail,omitempty"`
	// Targets are the ids the change is about (group-2, instance-3, ...).
	Targets []string `json:"targets,omitempty"`
	Outcome string   `json:"outcome"` // OutcomeOK or OutcomeError
	Error   string   `json:"error,omitempty"`
	// BeforeVersion and AfterVersion are the topology versions around a
	// topology change (AfterVersion 0 when it failed).
	BeforeVersion int64 `json:"beforeVersion,omitempty"`
	AfterVersion  int64 `json:"afterVersion,omitempty"`
	// Prev is the hex SHA-256 of the previous line (without its newline);
	// the first entry has 64 zeros.
	Prev string `json:"prev"`
	// Hash is the hex SHA-256 of this entry encoded with Hash empty.
	Hash string `json:"hash"`
}

// zeroHash is the Prev of the first entry.
var zeroHash = hex.EncodeToString(make([]byte, sha256.Size))

// Dir is conf/audit of h (backed up with conf/).
func Dir(h home.Home) string { return h.Path("conf", "audit") }

// File is the audit log of h.
func File(h home.Home) string { return filepath.Join(Dir(h), "audit.log") }

// HeadFile records the sequence number and line hash of the newest entry,
// so that Verify also notices entries cut off the end of the log.
func HeadFile(h home.Home) string { return filepath.Join(Dir(h), "audit.head") }

func lockFile(h home.Home) string { return filepath.Join(h.RunDir(), "audit.lock") }

// LockTimeout bounds the wait for another appender.
//
// mutate:equivalent const the wait's length: a test would wait 10 s to see it
const LockTimeout = 10 * time.Second

// appendMu serialises the appends of this process, whatever Log value or
// install directory they use, so that goroutines queue here instead of
// polling the flock (which serialises processes). It is the package's only
// state and guards nothing but the order of appends.
var appendMu sync.Mutex

// Log is the audit log of one install directory. It is safe for concurrent
// use by goroutines and processes.
type Log struct {
	h home.Home
	// MaxFileBytes is the size past which audit.log is rotated; 0: the
	// audit.maxFileBytes of nodemanager.yaml, or DefaultMaxFileBytes.
	MaxFileBytes int64
	// open opens the log file for appending (nil: openFile); the package's
	// tests inject I/O faults through it.
	open func(name string) (logFile, error)
}

// logFile is what Record does with the open log file.
type logFile interface {
	io.ReaderAt
	io.Writer
	Stat() (fs.FileInfo, error)
	Sync() error
	Close() error
}

func openFile(name string) (logFile, error) {
	return os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o640)
}

// Open returns the audit log of h. It touches nothing on disk.
func Open(h home.Home) *Log { return &Log{h: h} }

// Home is the install directory of the log.
func (l *Log) Home() home.Home { return l.h }

// Record appends e, setting Seq, Prev, Hash, Time (when zero) and Outcome
// (when empty: ok, or error when Error is set). When it returns nil the
// entry is on disk (fsynced). It returns the entry as written.
func (l *Log) Record(ctx context.Context, e Entry) (Entry, error) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time = e.Time.UTC()
	if e.Outcome == "" {
		e.Outcome = OutcomeOK
		if e.Error != "" {
			e.Outcome = OutcomeError
		}
	}
	if err := os.MkdirAll(Dir(l.h), 0o750); err != nil {
		return e, fmt.Errorf("audit log: creating %s: %w", Dir(l.h), err)
	}
	if err := os.MkdirAll(l.h.RunDir(), 0o755); err != nil {
		return e, fmt.Errorf("audit log: creating run directory: %w", err)
	}
	appendMu.Lock()
	defer appendMu.Unlock()
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), LockTimeout)
	defer cancel()
	lk, err := home.LockWait(lctx, lockFile(l.h))
	if err != nil {
		return e, fmt.Errorf("audit log: %w", err)
	}
	defer lk.Unlock()

	open := l.open
	if open == nil {
		open = openFile
	}
	f, err := open(File(l.h))
	if err != nil {
		return e, fmt.Errorf("audit log: %w", err)
	}
	defer func() { f.Close() }()
	last, torn, size, err := lastLine(f)
	if err != nil {
		return e, fmt.Errorf("audit log: reading %s: %w", File(l.h), err)
	}
	var src io.ReaderAt = f // the file holding the last line
	if last == nil {
		// audit.log is empty or new (just rotated): the chain goes on
		// from the newest rotated file.
		rf, rlast, err := newestRotated(l.h)
		if err != nil {
			return e, fmt.Errorf("audit log: %w", err)
		}
		if rf != nil {
			defer rf.Close()
			last, src = rlast, rf
		}
	}
	e.Seq, e.Prev = 1, zeroHash
	if last != nil {
		var p Entry
		if err := json.Unmarshal(last, &p); err == nil && p.Seq > 0 {
			e.Seq = p.Seq + 1
		} else {
			// The last line is damaged (Verify reports it); the chain
			// continues after the highest entry so that nothing is lost.
			n, err := lastGoodSeq(src)
			if err != nil {
				return e, fmt.Errorf("audit log: reading %s: %w", File(l.h), err)
			}
			e.Seq = n + 1
		}
		e.Prev = lineHash(last)
	}
	line, err := encode(&e)
	if err != nil {
		return e, fmt.Errorf("audit log: encoding entry: %w", err)
	}
	limit := l.MaxFileBytes
	if limit <= 0 {
		limit = confLimit(l.h)
	}
	if size > 0 && size+int64(len(line))+1 > limit {
		// A torn last line stays as it is in the rotated file (Verify
		// reports it there); the new file starts clean.
		f.Close()
		if err := rotate(l.h); err != nil {
			return e, fmt.Errorf("audit log: %w", err)
		}
		if f, err = open(File(l.h)); err != nil {
			return e, fmt.Errorf("audit log: %w", err)
		}
		torn = false
	}
	var buf []byte
	if torn {
		buf = append(buf, '\n') // end a torn line so that ours is a line of its own
	}
	buf = append(append(buf, line...), '\n')
	if _, err := f.Write(buf); err != nil {
		return e, fmt.Errorf("audit log: writing %s: %w", File(l.h), err)
	}
	if err := f.Sync(); err != nil {
		return e, fmt.Errorf("audit log: syncing %s: %w", File(l.h), err)
	}
	if err := writeHead(l.h, head{Seq: e.Seq, Line: lineHash(line)}); err != nil {
		return e, fmt.Errorf("audit log: %w", err)
	}
	return e, nil
}

// encode sets e.Hash and returns the line (without newline).
func encode(e *Entry) ([]byte, error) {
	e.Hash = ""
	b, err := json.Marshal(e)
	if err != nil {
		// mutate:equivalent delete-stmt without it the second json.Marshal of the same entry fails the same way
		return nil, err
	}
	e.Hash = lineHash(b)
	return json.Marshal(e)
}

func lineHash(line []byte) string {
	s := sha256.Sum256(line)
	return hex.EncodeToString(s[:])
}

// lastLine returns the last non-empty line of f (without newline),
// whether the file ends without a newline (a torn write) and its size.
func lastLine(f logFile) (last []byte, torn bool, size int64, err error) {
	st, err := f.Stat()
	if err != nil {
		return nil, false, size, err
	}
	size = st.Size()
	if size == 0 {
		return nil, false, size, nil
	}
	// mutate:equivalent const the first read's size: the loop reads more until it holds the whole last line, so only the number of reads changes
	chunk := int64(64 << 10)
	for {
		off := max(0, size-chunk)
		buf := make([]byte, size-off)
		if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
			return nil, false, size, err
		}
		torn := buf[len(buf)-1] != '\n'
		trimmed := bytes.TrimRight(buf, "\n")
		if i := bytes.LastIndexByte(trimmed, '\n'); i != -1 || off == 0 {
			return trimmed[i+1:], torn, size, nil
		}
		chunk *= 4 // mutate:equivalent const the growth of the read: only the number of reads changes
	}
}

// lastGoodSeq is the highest sequence number of a parsable line of f (0 if
// none).
func lastGoodSeq(f io.ReaderAt) (int64, error) {
	data, err := io.ReadAll(io.NewSectionReader(f, 0, math.MaxInt64))
	if err != nil {
		// mutate:equivalent const the number returned with an error is never used (Record returns the error)
		return 0, err
	}
	var n int64
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		var e Entry
		if json.Unmarshal(line, &e) == nil {
			n = max(n, e.Seq)
		}
	}
	return n, nil
}

// head is the content of audit.head.
type head struct {
	Seq  int64  `json:"seq"`
	Line string `json:"line"` // SHA-256 of the entry's line
	// MAC is HMAC-SHA256 of Seq and Line with a key derived from the
	// domain's session key (conf/sessionKey, on the Admin Node Manager's
	// host only): a head recomputed after cutting entries from the end
	// does not have it. Empty on a host without the key.
	MAC string `json:"mac,omitempty"`
}

// SessionKeyFile is where the domain key the head's MAC comes from lies
// (the same file as rbac.SessionKeyFile).
func SessionKeyFile(h home.Home) string { return h.Path("conf", "sessionKey") }

// headKey is the MAC key of audit.head on this host; nil without the
// domain key.
func headKey(h home.Home) []byte {
	data, _ := os.ReadFile(SessionKeyFile(h)) // none: no key (nil decodes to nothing)
	k, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(k) < 32 {
		return nil
	}
	return k
}

// headMAC is the MAC of hd under key.
func headMAC(key []byte, hd head) string {
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "gatehouse audit head\x00%d\x00%s", hd.Seq, hd.Line)
	return hex.EncodeToString(m.Sum(nil))
}

func writeHead(h home.Home, hd head) error {
	if key := headKey(h); key != nil {
		hd.MAC = headMAC(key, hd)
	}
	b, _ := json.Marshal(hd)
	if err := home.WriteFileAtomic(HeadFile(h), append(b, '\n'), 0o640); err != nil {
		return fmt.Errorf("writing %s: %w", HeadFile(h), err)
	}
	return nil
}
