package audit_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/home"
)

func TestMain(m *testing.M) {
	syscall.Umask(0o022) // the modes of created files do not depend on the caller's umask
	os.Exit(m.Run())
}

// Record fills in the time (now, UTC) when it is zero and the outcome when
// it is empty (error when Error is set); given values are kept.
func TestRecordFillsTimeAndOutcome(t *testing.T) {
	h := newHome(t)
	l := audit.Open(h)
	before := time.Now()
	e, err := recordOne(t, l, audit.Entry{User: "u", Action: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if e.Time.Before(before) || e.Time.After(time.Now()) || e.Time.Location() != time.UTC {
		t.Errorf("time: got %v, want now in UTC", e.Time)
	}
	local := time.Date(2026, 11, 27, 11, 4, 5, 6, time.FixedZone("CET", 3600))
	for _, c := range []struct {
		name                   string
		in                     audit.Entry
		wantOutcome, wantError string
	}{
		{"no error", audit.Entry{Time: local}, "ok", ""},
		{"an error", audit.Entry{Time: local, Error: "refused"}, "error", "refused"},
		{"outcome given", audit.Entry{Time: local, Outcome: "error"}, "error", ""},
		{"outcome given with an error", audit.Entry{Time: local, Outcome: "ok", Error: "x"}, "ok", "x"},
	} {
		e, err := recordOne(t, l, c.in)
		if err != nil {
			t.Fatal(err)
		}
		if e.Outcome != c.wantOutcome || e.Error != c.wantError || !e.Time.Equal(local) || e.Time.Location() != time.UTC {
			t.Errorf("%s: got outcome %q error %q time %v, want %q %q %v in UTC", c.name, e.Outcome, e.Error, e.Time, c.wantOutcome, c.wantError, local.UTC())
		}
	}
	got, _ := l.Search(audit.Filter{})
	if len(got) != 5 || got[4].Outcome != "ok" || got[3].Outcome != "ok" || got[2].Outcome != "error" || got[1].Outcome != "error" || got[0].Outcome != "ok" {
		t.Errorf("in the file: got %+v", got)
	}
}

// conf/audit is 0750, var/run 0755, audit.log and audit.head 0640.
func TestRecordModes(t *testing.T) {
	h := newHome(t)
	record(t, audit.Open(h), 1, "u")
	for _, c := range []struct {
		path string
		want os.FileMode
	}{
		{audit.Dir(h), os.ModeDir | 0o750},
		{h.RunDir(), os.ModeDir | 0o755},
		{audit.File(h), 0o640},
		{audit.HeadFile(h), 0o640},
	} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode() & (os.ModeDir | os.ModePerm); got != c.want {
			t.Errorf("%s: got %v, want %v", c.path, got, c.want)
		}
	}
}

// After a crash the log may end in a damaged line; the next entry follows
// the highest entry in the log (not the last one read), on a line of its
// own, and names the damaged line as prev. A last line that parses is
// trusted: the next entry follows it.
func TestRecordAfterDamagedLastLine(t *testing.T) {
	for _, c := range []struct {
		name    string
		damage  func(ls [][]byte) []byte // the new content of audit.log
		wantSeq int64
	}{
		{"an entry with no sequence number", func(ls [][]byte) []byte {
			return append(joinLines(ls), "{}\n"...)
		}, 4},
		{"not JSON", func(ls [][]byte) []byte {
			return append(joinLines(ls), "garbage\n"...)
		}, 4},
		{"torn after a replayed older entry", func(ls [][]byte) []byte {
			return append(joinLines(append(ls, ls[0])), `{"seq":9`...)
		}, 4},
		{"torn after the first entry, the highest", func(ls [][]byte) []byte {
			return append(joinLines(ls[:1]), `{"seq":2,"us`...)
		}, 2},
		{"a replayed older entry last", func(ls [][]byte) []byte {
			return joinLines(append(ls, ls[0]))
		}, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHome(t)
			l := audit.Open(h)
			record(t, l, 3, "alice")
			data := c.damage(lines(t, h))
			os.WriteFile(audit.File(h), data, 0o640)
			e, err := recordOne(t, l, audit.Entry{User: "bob", Action: "stop instance"})
			if err != nil {
				t.Fatal(err)
			}
			if e.Seq != c.wantSeq {
				t.Errorf("got seq %d, want %d", e.Seq, c.wantSeq)
			}
			ls := lines(t, h)
			last := ls[len(ls)-1]
			var got audit.Entry
			if err := json.Unmarshal(last, &got); err != nil || got.Seq != e.Seq {
				t.Fatalf("last line %q: want the new entry on a line of its own", last)
			}
			damaged := bytes.TrimSuffix(data, []byte("\n"))
			damaged = damaged[bytes.LastIndexByte(damaged, '\n')+1:]
			if got.Prev != sha256hex(damaged) {
				t.Errorf("prev: got %s, want the hash of %q", got.Prev, damaged)
			}
		})
	}
}

func joinLines(ls [][]byte) []byte { return append(bytes.Join(ls, []byte("\n")), '\n') }

// A line longer than the first read of the log's end (64 KiB) is still
// chained whole.
func TestRecordAfterLongLine(t *testing.T) {
	h := newHome(t)
	l := audit.Open(h)
	record(t, l, 2, "alice")
	if _, err := recordOne(t, l, audit.Entry{User: "alice", Action: "create group", Detail: strings.Repeat("x", 300<<10)}); err != nil {
		t.Fatal(err)
	}
	record(t, l, 2, "alice")
	if r := verify(t, h); !r.Verified || r.LastSeq != 5 {
		t.Fatalf("got %+v, want verified up to 5", r)
	}
	// And a log of one long line.
	h2 := newHome(t)
	l2 := audit.Open(h2)
	if _, err := recordOne(t, l2, audit.Entry{User: "alice", Action: "create group", Detail: strings.Repeat("y", 100<<10)}); err != nil {
		t.Fatal(err)
	}
	record(t, l2, 1, "alice")
	if r := verify(t, h2); !r.Verified || r.LastSeq != 2 {
		t.Fatalf("one long line: got %+v, want verified up to 2", r)
	}
}

// A Record that cannot write says why, and leaves no half-written entry.
func TestRecordErrors(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(t *testing.T, h home.Home)
		entry audit.Entry
		want  string
	}{
		{"conf is a file", func(t *testing.T, h home.Home) { putFile(t, h.ConfDir()) }, audit.Entry{}, "audit log: creating " + "CONF_AUDIT"},
		{"var is a file", func(t *testing.T, h home.Home) { putFile(t, filepath.Dir(h.RunDir())) }, audit.Entry{}, "audit log: creating run directory"},
		{"lock unusable", func(t *testing.T, h home.Home) { putDir(t, filepath.Join(h.RunDir(), "audit.lock")) }, audit.Entry{}, "audit log: opening lock"},
		{"log unusable", func(t *testing.T, h home.Home) { putDir(t, audit.File(h)) }, audit.Entry{}, "audit log: open " + "AUDIT_LOG"},
		{"time not encodable", func(t *testing.T, h home.Home) {}, audit.Entry{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}, "audit log: encoding entry"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHome(t)
			c.setup(t, h)
			want := strings.NewReplacer("CONF_AUDIT", audit.Dir(h), "AUDIT_LOG", audit.File(h)).Replace(c.want)
			_, err := recordOne(t, audit.Open(h), c.entry)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("got %v, want an error containing %q", err, want)
			}
			if data, _ := os.ReadFile(audit.File(h)); len(data) != 0 {
				t.Errorf("got %q in the log, want nothing", data)
			}
		})
	}
}

// When audit.head cannot be replaced, Record says so; the entry is in the
// log (fsynced before the head is written).
func TestRecordHeadNotWritten(t *testing.T) {
	h := newHome(t)
	putDir(t, audit.HeadFile(h))
	_, err := recordOne(t, audit.Open(h), audit.Entry{User: "u", Action: "a"})
	if err == nil || !strings.Contains(err.Error(), "audit log: writing "+audit.HeadFile(h)) {
		t.Fatalf("got %v, want an error naming audit.head", err)
	}
	if ls := lines(t, h); len(ls) != 1 {
		t.Errorf("got %d lines, want the entry", len(ls))
	}
}

func putFile(t *testing.T, path string) {
	t.Helper()
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, []byte("not a directory\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// putDir puts a non-empty directory where a file is wanted: opening it for
// writing and renaming over it fail.
func putDir(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(path, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
}
