package audit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// writeEntries writes n entries (seq 1..n, one a minute) straight to the
// log: Search reads lines, it does not verify them.
func writeEntries(t *testing.T, h home.Home, n int) {
	t.Helper()
	os.MkdirAll(audit.Dir(h), 0o750)
	var b bytes.Buffer
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for i := 1; i <= n; i++ {
		line, _ := json.Marshal(audit.Entry{Seq: int64(i), Time: t0.Add(time.Duration(i) * time.Minute), User: "u", Action: "a"})
		b.Write(line)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(audit.File(h), b.Bytes(), 0o640); err != nil {
		t.Fatal(err)
	}
}

// Search returns at most Limit entries, newest first: 100 when Limit is
// zero or negative, never more than 10000.
func TestSearchLimits(t *testing.T) {
	h := newHome(t)
	writeEntries(t, h, 10001)
	l := audit.Open(h)
	for _, c := range []struct {
		limit, want int
	}{{0, 100}, {-1, 100}, {1, 1}, {2, 2}, {100, 100}, {101, 101}, {10000, 10000}, {10001, 10000}, {20000, 10000}} {
		got, err := l.Search(audit.Filter{Limit: c.limit})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != c.want || got[0].Seq != 10001 || got[len(got)-1].Seq != int64(10002-c.want) {
			t.Errorf("limit %d: got %d entries, want %d newest first", c.limit, len(got), c.want)
		}
	}
}

// No log is an empty list (JSON []); empty and damaged lines are skipped;
// a log that cannot be read is an error.
func TestSearchReading(t *testing.T) {
	h := newHome(t)
	got, err := audit.Open(h).Search(audit.Filter{})
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("no log: got %#v, %v, want an empty list", got, err)
	}
	writeEntries(t, h, 2)
	f, _ := os.OpenFile(audit.File(h), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString("\ngarbage\n{\"seq\":3,\"user\":\"u\",\"action\":\"a\"}\n{\"seq\":4,")
	f.Close()
	got, _ = audit.Open(h).Search(audit.Filter{})
	if len(got) != 3 || got[0].Seq != 3 || got[1].Seq != 2 || got[2].Seq != 1 {
		t.Errorf("got %+v, want entries 3, 2, 1", got)
	}
	h2 := newHome(t)
	putDir(t, audit.File(h2))
	if _, err := audit.Open(h2).Search(audit.Filter{}); err == nil || !strings.Contains(err.Error(), "reading audit log") {
		t.Errorf("unreadable log: got %v, want a reading error", err)
	}
}

// Filters combine: an entry must pass all of them.
func TestSearchFiltersCombine(t *testing.T) {
	h := newHome(t)
	l := audit.Open(h)
	t0 := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	for i, e := range []audit.Entry{
		{User: "alice", Action: "create instance"},
		{User: "bob", Action: "create instance"},
		{User: "alice", Action: "delete group"},
		{User: "bob", Action: "Stop Instance"},
	} {
		e.Time = t0.Add(time.Duration(i) * time.Hour)
		if _, err := recordOne(t, l, e); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		f    audit.Filter
		want string
	}{
		{audit.Filter{User: "alice", Action: "instance"}, "[1]"},
		{audit.Filter{User: "bob", Action: "stop"}, "[4]"},
		{audit.Filter{User: "alice", Since: t0.Add(time.Hour)}, "[3]"},
		{audit.Filter{Action: "instance", Until: t0.Add(3 * time.Hour)}, "[2 1]"},
		{audit.Filter{Since: t0.Add(time.Hour), Until: t0.Add(3 * time.Hour)}, "[3 2]"},
		{audit.Filter{User: "carol", Action: "instance"}, "[]"},
		{audit.Filter{Action: "INSTANCE"}, "[4 2 1]"},
	} {
		got, _ := l.Search(c.f)
		if s := seqs(got); s != c.want {
			t.Errorf("Search(%+v): got %s, want %s", c.f, s, c.want)
		}
	}
}

func seqs(es []audit.Entry) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, e := range es {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatInt(e.Seq, 10))
	}
	b.WriteByte(']')
	return b.String()
}

// The recorder writes each topology change to the audit log and, with a
// Logger, to the log too; a change it cannot write is reported to the
// Logger or, without one, to Warn (standard error when nil); nothing is
// reported when it was written.
func TestRecorderReports(t *testing.T) {
	change := topology.Change{Actor: topology.Actor{User: "alice", Via: "api", Remote: "10.0.0.9"}, Action: "create group",
		Detail: `group "g" (group-2), then group-2 again, and instance-3`}

	h := newHome(t)
	var logged, warned bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logged, nil))
	audit.Recorder{Log: audit.Open(h), Logger: logger, Warn: &warned}.Record(context.Background(), change)
	got, _ := audit.Open(h).Search(audit.Filter{})
	if len(got) != 1 || seqsOf(got[0].Targets) != "group-2,instance-3" {
		t.Errorf("audit log: got %+v, want the change with targets group-2, instance-3", got)
	}
	if !strings.Contains(logged.String(), "create group") || strings.Contains(logged.String(), "not written") || warned.Len() != 0 {
		t.Errorf("written: got log %q and warning %q, want the change logged, no warning", logged.String(), warned.String())
	}

	logged.Reset()
	audit.Recorder{Logger: logger}.Record(context.Background(), change) // no audit log: logged only
	if !strings.Contains(logged.String(), "create group") {
		t.Errorf("without a Log: got %q, want the change logged", logged.String())
	}

	broken := newHome(t)
	putFile(t, broken.ConfDir())
	logged.Reset()
	audit.Recorder{Log: audit.Open(broken), Logger: logger, Warn: &warned}.Record(context.Background(), change)
	if !strings.Contains(logged.String(), "audit entry not written") || warned.Len() != 0 {
		t.Errorf("not written, with a Logger: got log %q and warning %q, want the failure logged only", logged.String(), warned.String())
	}
	audit.Recorder{Log: audit.Open(broken), Warn: &warned}.Record(context.Background(), change)
	if !strings.HasPrefix(warned.String(), "warning: audit entry not written: audit log: creating") {
		t.Errorf("not written, without a Logger: got %q, want a warning", warned.String())
	}

	stderr := captureStderr(t, func() {
		audit.Recorder{Log: audit.Open(broken)}.Record(context.Background(), change)
	})
	if !strings.HasPrefix(stderr, "warning: audit entry not written:") {
		t.Errorf("not written, no Logger nor Warn: got %q on standard error, want a warning", stderr)
	}
}

func seqsOf(ss []string) string { return strings.Join(ss, ",") }

// captureStderr runs fn with os.Stderr redirected to a pipe.
func captureStderr(t *testing.T, fn func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stderr
	os.Stderr = w
	defer func() { os.Stderr = old }()
	done := make(chan string, 1)
	go func() { b, _ := io.ReadAll(r); done <- string(b) }()
	fn()
	w.Close()
	select {
	case s := <-done:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("reading standard error: no end within 5 s")
		return ""
	}
}
