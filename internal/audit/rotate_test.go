package audit_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// rotating is a log of h that rotates past max bytes.
func rotating(h home.Home, max int64) *audit.Log {
	l := audit.Open(h)
	l.MaxFileBytes = max
	return l
}

// logFileNames lists conf/audit's log files, sorted by name.
func logFileNames(t *testing.T, h home.Home) []string {
	t.Helper()
	ents, err := os.ReadDir(audit.Dir(h))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".log") {
			out = append(out, e.Name())
		}
	}
	return out
}

func fileLines(t *testing.T, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
}

func entryOf(t *testing.T, line []byte) audit.Entry {
	t.Helper()
	var e audit.Entry
	if err := json.Unmarshal(line, &e); err != nil {
		t.Fatalf("line %q: %v", line, err)
	}
	return e
}

// Past the size limit audit.log is renamed to audit.000001.log, then
// audit.000002.log, ...; no file grows past the limit; the chain goes on
// across the files (the first entry of a file has the next sequence
// number and the hash of the last line of the file before); Verify reads
// them all and Search finds entries in every file, newest first.
func TestRotationContinuesTheChain(t *testing.T) {
	h := newHome(t)
	const max = 2048
	l := rotating(h, max)
	record(t, l, 40, "u")
	names := logFileNames(t, h)
	if len(names) < 5 {
		t.Fatalf("files %v: want audit.log rotated several times at %d bytes", names, max)
	}
	var want []string
	for i := 1; i < len(names); i++ {
		want = append(want, fmt.Sprintf("audit.%06d.log", i))
	}
	want = append(want, "audit.log")
	if !slices.Equal(names, want) {
		t.Fatalf("files %v, want %v", names, want)
	}
	var prevLast []byte
	var seq int64
	for _, n := range names {
		path := filepath.Join(audit.Dir(h), n)
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > max {
			t.Errorf("%s: %d bytes, over the limit %d", n, st.Size(), max)
		}
		if st.Mode().Perm() != 0o640 {
			t.Errorf("%s: mode %v, want 0640", n, st.Mode().Perm())
		}
		ls := fileLines(t, path)
		first := entryOf(t, ls[0])
		if first.Seq != seq+1 {
			t.Errorf("%s starts with entry %d, want %d", n, first.Seq, seq+1)
		}
		if prevLast != nil && first.Prev != sha256hex(prevLast) {
			t.Errorf("%s: the first entry's prev is not the hash of the last line of the file before", n)
		}
		prevLast = ls[len(ls)-1]
		seq = entryOf(t, prevLast).Seq
	}
	if seq != 40 {
		t.Errorf("the last entry is %d, want 40", seq)
	}
	r := verify(t, h)
	if !r.Verified || r.LastSeq != 40 || r.Entries != 40 || r.Files != len(names) {
		t.Fatalf("verify: %+v, want 40 entries in %d files verified", r, len(names))
	}
	got, err := l.Search(audit.Filter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 40 {
		t.Fatalf("search: %d entries, want 40", len(got))
	}
	for i, e := range got {
		if e.Seq != int64(40-i) {
			t.Fatalf("search: %s, want 40 down to 1", seqs(got))
		}
	}
	// A limit stops early, wherever it falls; a filter reaches the oldest file.
	if got, _ := l.Search(audit.Filter{Limit: 3}); seqs(got) != "[40 39 38]" {
		t.Errorf("limit 3: %s", seqs(got))
	}
	record(t, rotating(h, max), 1, "other")
	if got, _ := l.Search(audit.Filter{User: "u", Limit: 100}); len(got) != 40 || got[39].Seq != 1 {
		t.Errorf("user u: %s", seqs(got))
	}
	if got, _ := l.Search(audit.Filter{User: "other"}); seqs(got) != "[41]" {
		t.Errorf("user other: %s", seqs(got))
	}
}

// An entry that would not fit starts a new file only when audit.log holds
// something: an entry larger than the limit is written, alone, to an empty
// audit.log.
func TestRotationOfLargeEntries(t *testing.T) {
	// A limit of 1 byte: every entry is larger.
	h := newHome(t)
	l := rotating(h, 1)
	for i := range 3 {
		if _, err := recordOne(t, l, audit.Entry{User: "u", Action: "a", Detail: strings.Repeat("x", 200+i)}); err != nil {
			t.Fatal(err)
		}
	}
	if names := logFileNames(t, h); !slices.Equal(names, []string{"audit.000001.log", "audit.000002.log", "audit.log"}) {
		t.Fatalf("files %v: want one entry per file", names)
	}
	for _, n := range logFileNames(t, h) {
		if ls := fileLines(t, filepath.Join(audit.Dir(h), n)); len(ls) != 1 {
			t.Errorf("%s holds %d entries, want 1", n, len(ls))
		}
	}
	if r := verify(t, h); !r.Verified || r.LastSeq != 3 {
		t.Fatalf("verify: %+v", r)
	}
}

// An entry that fits exactly is appended; one byte more rotates.
func TestRotationBoundary(t *testing.T) {
	h := newHome(t)
	// A fixed time: RFC 3339 drops trailing zeros of the nanoseconds,
	// which would change the length of a line.
	e := audit.Entry{User: "u", Action: "a", Detail: "d", Time: time.Date(2026, 12, 6, 1, 2, 3, 123456789, time.UTC)}
	if _, err := recordOne(t, rotating(h, 1<<20), e); err != nil {
		t.Fatal(err)
	}
	size := func() int64 {
		st, err := os.Stat(audit.File(h))
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	one := size()
	// The second line has the same length as the first (seq 2 and a prev
	// of the same length), so two lines are 2*one bytes.
	if _, err := recordOne(t, rotating(h, 2*one), e); err != nil {
		t.Fatal(err)
	}
	if got := logFileNames(t, h); !slices.Equal(got, []string{"audit.log"}) || size() != 2*one {
		t.Fatalf("at exactly the limit: files %v, size %d; want one file of %d bytes", got, size(), 2*one)
	}
	if _, err := recordOne(t, rotating(h, 3*one-1), e); err != nil {
		t.Fatal(err)
	}
	if got := logFileNames(t, h); !slices.Equal(got, []string{"audit.000001.log", "audit.log"}) || size() != one {
		t.Fatalf("one byte over the limit: files %v, size %d; want audit.log rotated", got, size())
	}
}

// Files cut, altered or removed anywhere in the rotated chain are found,
// and the reason names the file.
func TestRotatedTampering(t *testing.T) {
	setup := func(t *testing.T) (home.Home, []string) {
		h := newHome(t)
		record(t, rotating(h, 1500), 30, "u")
		names := logFileNames(t, h)
		if len(names) < 4 {
			t.Fatalf("files %v: want at least 4", names)
		}
		return h, names
	}
	path := func(h home.Home, n string) string { return filepath.Join(audit.Dir(h), n) }
	firstSeq := func(t *testing.T, h home.Home, n string) int64 {
		return entryOf(t, fileLines(t, path(h, n))[0]).Seq
	}
	t.Run("a middle file removed", func(t *testing.T) {
		h, names := setup(t)
		missing := firstSeq(t, h, names[1])
		os.Remove(path(h, names[1]))
		r := verify(t, h)
		if r.Verified || r.FirstBad != missing || !strings.HasPrefix(r.Reason, names[2]+": ") || !strings.Contains(r.Reason, "missing") {
			t.Fatalf("got %+v, want entry %d missing, found in %s", r, missing, names[2])
		}
	})
	t.Run("the oldest file removed", func(t *testing.T) {
		h, names := setup(t)
		os.Remove(path(h, names[0]))
		if r := verify(t, h); r.Verified || r.FirstBad != 1 {
			t.Fatalf("got %+v, want entry 1 missing", r)
		}
	})
	t.Run("the newest files removed", func(t *testing.T) {
		h, names := setup(t)
		last := firstSeq(t, h, names[len(names)-2])
		os.Remove(path(h, names[len(names)-2]))
		os.Remove(audit.File(h))
		if r := verify(t, h); r.Verified || r.FirstBad != last || !strings.Contains(r.Reason, "missing from the end") {
			t.Fatalf("got %+v, want entries from %d missing from the end", r, last)
		}
	})
	t.Run("an entry of a rotated file altered", func(t *testing.T) {
		h, names := setup(t)
		ls := fileLines(t, path(h, names[1]))
		e := entryOf(t, ls[1])
		ls[1] = bytes.Replace(ls[1], []byte(`"user":"u"`), []byte(`"user":"x"`), 1)
		os.WriteFile(path(h, names[1]), append(bytes.Join(ls, []byte("\n")), '\n'), 0o640)
		if r := verify(t, h); r.Verified || r.FirstBad != e.Seq || !strings.HasPrefix(r.Reason, names[1]+": ") {
			t.Fatalf("got %+v, want entry %d altered in %s", r, e.Seq, names[1])
		}
	})
	t.Run("two rotated files swapped", func(t *testing.T) {
		h, names := setup(t)
		a, b := path(h, names[0]), path(h, names[1])
		os.Rename(a, a+".tmp")
		os.Rename(b, a)
		os.Rename(a+".tmp", b)
		if r := verify(t, h); r.Verified || r.FirstBad != 1 || !strings.HasPrefix(r.Reason, names[0]+": ") {
			t.Fatalf("got %+v, want entry 1 missing in %s", r, names[0])
		}
	})
	t.Run("a file that is not a log's is not read", func(t *testing.T) {
		h, _ := setup(t)
		os.WriteFile(filepath.Join(audit.Dir(h), "audit.1.log"), []byte("junk\n"), 0o640)
		os.WriteFile(filepath.Join(audit.Dir(h), "audit.000001.log.bak"), []byte("junk\n"), 0o640)
		if r := verify(t, h); !r.Verified || r.LastSeq != 30 {
			t.Fatalf("got %+v, want the chain verified", r)
		}
	})
}

// A crash after audit.log was renamed and before the next entry was
// written leaves no audit.log: the log still verifies, search finds
// everything, and the next entry continues the chain from the rotated
// file.
func TestCrashAfterRotation(t *testing.T) {
	h := newHome(t)
	l := rotating(h, 1<<20)
	record(t, l, 5, "u")
	last := lines(t, h)[4]
	if err := os.Rename(audit.File(h), audit.RotatedFile(h, 1)); err != nil {
		t.Fatal(err)
	}
	if r := verify(t, h); !r.Verified || r.LastSeq != 5 || r.Files != 1 {
		t.Fatalf("after the rename: %+v", r)
	}
	if got, _ := l.Search(audit.Filter{}); seqs(got) != "[5 4 3 2 1]" {
		t.Errorf("search after the rename: %s", seqs(got))
	}
	e, err := recordOne(t, l, audit.Entry{User: "u", Action: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if e.Seq != 6 || e.Prev != sha256hex(last) {
		t.Fatalf("next entry: seq %d prev %s, want 6 after the rotated file's last line", e.Seq, e.Prev)
	}
	if r := verify(t, h); !r.Verified || r.LastSeq != 6 || r.Files != 2 {
		t.Fatalf("after the next entry: %+v", r)
	}
	// The next rotation takes the next number.
	record(t, rotating(h, 10), 1, "u")
	if names := logFileNames(t, h); !slices.Equal(names, []string{"audit.000001.log", "audit.000002.log", "audit.log"}) {
		t.Fatalf("files %v", names)
	}
}

// A torn last line (a crash in the middle of a write) that is rotated
// stays in the rotated file, where Verify reports it; the new file does
// not start with the newline that would end it.
func TestRotationOfTornLine(t *testing.T) {
	h := newHome(t)
	record(t, audit.Open(h), 3, "u")
	data, _ := os.ReadFile(audit.File(h))
	os.WriteFile(audit.File(h), append(data, `{"seq":4,"ti`...), 0o640)
	e, err := recordOne(t, rotating(h, int64(len(data))), audit.Entry{User: "u", Action: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if e.Seq != 4 {
		t.Errorf("entry after the torn line: %d, want 4", e.Seq)
	}
	if got, _ := os.ReadFile(audit.File(h)); got[0] != '{' {
		t.Errorf("the new file starts with %q", got[:1])
	}
	if r := verify(t, h); r.Verified || r.FirstBad != 4 || !strings.HasPrefix(r.Reason, "audit.000001.log: ") || !strings.Contains(r.Reason, "cut off") {
		t.Fatalf("got %+v, want the torn line of audit.000001.log reported", r)
	}
}

// Goroutines appending while the log rotates keep one chain, and readers
// running meanwhile never see a gap (a file renamed under them).
func TestRotationUnderConcurrency(t *testing.T) {
	h := newHome(t)
	// The readers start after the first entry: between the first line and
	// the first audit.head a log has entries and no head, which Verify
	// rightly reports.
	record(t, audit.Open(h), 1, "first")
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() { record(t, rotating(h, 3000), 40, "g"+strconv.Itoa(g)) })
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			r, err := audit.Verify(h)
			if err != nil || !r.Verified {
				t.Errorf("verify while rotating: %+v %v", r, err)
				return
			}
			got, err := audit.Open(h).Search(audit.Filter{Limit: 1000})
			if err != nil {
				t.Errorf("search while rotating: %v", err)
				return
			}
			for i := 1; i < len(got); i++ {
				if got[i].Seq != got[i-1].Seq-1 {
					t.Errorf("search while rotating: a gap after %d: %s", got[i-1].Seq, seqs(got))
					return
				}
			}
		}
	})
	wg.Wait()
	close(stop)
	readers.Wait()
	if r := verify(t, h); !r.Verified || r.LastSeq != 161 || r.Files < 10 {
		t.Fatalf("got %+v, want 161 entries verified over many files", r)
	}
}

// The limit comes from nodemanager.yaml (audit.maxFileBytes) when the Log
// does not set one, with a floor; without it the default.
func TestRotationLimitFromConf(t *testing.T) {
	for _, c := range []struct {
		conf audit.Conf
		want int64
	}{
		{audit.Conf{}, audit.DefaultMaxFileBytes},
		{audit.Conf{MaxFileBytes: -1}, audit.DefaultMaxFileBytes},
		{audit.Conf{MaxFileBytes: 1}, audit.MinMaxFileBytes},
		{audit.Conf{MaxFileBytes: audit.MinMaxFileBytes - 1}, audit.MinMaxFileBytes},
		{audit.Conf{MaxFileBytes: audit.MinMaxFileBytes}, audit.MinMaxFileBytes},
		{audit.Conf{MaxFileBytes: 5 << 20}, 5 << 20},
	} {
		if got := c.conf.Limit(); got != c.want {
			t.Errorf("%+v: limit %d, want %d", c.conf, got, c.want)
		}
	}
	h := newHome(t)
	os.MkdirAll(h.SystemConfDir(), 0o755)
	// 70,000 bytes: over the floor, and reached by about 150 entries.
	os.WriteFile(h.NodeManagerConf(), []byte("hostID: host-1\naudit:\n  maxFileBytes: 70000\n"), 0o644)
	l := audit.Open(h)
	record(t, l, 400, "u")
	names := logFileNames(t, h)
	if len(names) < 2 || len(names) > 4 {
		t.Fatalf("files %v: want 400 entries rotated at 70000 bytes", names)
	}
	for _, n := range names {
		if st, _ := os.Stat(filepath.Join(audit.Dir(h), n)); st.Size() > 70000 || n != "audit.log" && st.Size() < 60000 {
			t.Errorf("%s: %d bytes, want rotated near 70000", n, st.Size())
		}
	}
	// An unreadable nodemanager.yaml gives the default.
	os.WriteFile(h.NodeManagerConf(), []byte("audit: [\n"), 0o644)
	before := logFileNames(t, h)
	record(t, l, 200, "u")
	if after := logFileNames(t, h); !slices.Equal(before, after) {
		t.Errorf("with a broken nodemanager.yaml: files %v, want no rotation (the default %d)", after, audit.DefaultMaxFileBytes)
	}
}

// The documented defaults (docs/audit.md).
func TestRotationDefaults(t *testing.T) {
	if audit.DefaultMaxFileBytes != 32*1024*1024 || audit.MinMaxFileBytes != 65536 {
		t.Fatalf("default %d, floor %d; docs/audit.md says 33554432 and 65536", audit.DefaultMaxFileBytes, audit.MinMaxFileBytes)
	}
}

// Rotated files are ordered by their number, not their name, past six
// digits; the next number is one more than the highest name present, a
// directory of that form included.
func TestRotatedNumbers(t *testing.T) {
	h := newHome(t)
	record(t, rotating(h, 1), 3, "u") // audit.000001.log, audit.000002.log, audit.log
	os.Rename(audit.RotatedFile(h, 1), audit.RotatedFile(h, 999999))
	os.Rename(audit.RotatedFile(h, 2), audit.RotatedFile(h, 1000000))
	if r := verify(t, h); !r.Verified || r.LastSeq != 3 || r.Files != 3 {
		t.Fatalf("audit.999999.log then audit.1000000.log: %+v", r)
	}
	if got, _ := audit.Open(h).Search(audit.Filter{}); seqs(got) != "[3 2 1]" {
		t.Errorf("search: %s", seqs(got))
	}
	record(t, rotating(h, 1), 1, "u")
	if _, err := os.Stat(audit.RotatedFile(h, 1000001)); err != nil {
		t.Fatalf("the next rotation: %v", err)
	}
	os.Mkdir(audit.RotatedFile(h, 1000005), 0o750)
	record(t, rotating(h, 1), 1, "u")
	if st, err := os.Stat(audit.RotatedFile(h, 1000006)); err != nil || !st.Mode().IsRegular() {
		t.Fatalf("the rotation after a directory named like one: %v", err)
	}
	if r := verify(t, h); !r.Verified || r.LastSeq != 5 {
		t.Fatalf("after: %+v", r)
	}
}

// A log of one file names no file in its reasons.
func TestSingleFileReason(t *testing.T) {
	h := newHome(t)
	record(t, audit.Open(h), 3, "u")
	ls := lines(t, h)
	writeLines(t, h, [][]byte{ls[0], ls[2]})
	if r := verify(t, h); r.Verified || !strings.HasPrefix(r.Reason, "entry 2 is missing") || r.Files != 1 {
		t.Fatalf("got %+v", r)
	}
}

// An audit.log of a single byte (a torn first write) is rotated too.
func TestRotationOfOneByte(t *testing.T) {
	h := newHome(t)
	os.MkdirAll(audit.Dir(h), 0o750)
	os.WriteFile(audit.File(h), []byte("{"), 0o640)
	if _, err := recordOne(t, rotating(h, 10), audit.Entry{User: "u", Action: "a"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(audit.RotatedFile(h, 1)); string(got) != "{" {
		t.Fatalf("audit.000001.log: %q, want the one byte", got)
	}
}

// conf/audit that is not a directory: Verify and Search fail with an
// error, they do not answer "no entries".
func TestLogDirNotADirectory(t *testing.T) {
	h := newHome(t)
	os.MkdirAll(h.Path("conf"), 0o755)
	os.WriteFile(audit.Dir(h), []byte("x"), 0o640)
	if _, err := audit.Verify(h); err == nil {
		t.Error("verify: no error")
	}
	if _, err := audit.Open(h).Search(audit.Filter{}); err == nil {
		t.Error("search: no error")
	}
}

// An empty audit.log is not rotated (there is nothing to keep).
func TestEmptyFileNotRotated(t *testing.T) {
	h := newHome(t)
	os.MkdirAll(audit.Dir(h), 0o750)
	os.WriteFile(audit.File(h), nil, 0o640)
	if _, err := recordOne(t, rotating(h, 1), audit.Entry{User: "u", Action: "a"}); err != nil {
		t.Fatal(err)
	}
	if names := logFileNames(t, h); !slices.Equal(names, []string{"audit.log"}) {
		t.Fatalf("files %v", names)
	}
}
