package audit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

func newHome(t *testing.T) home.Home {
	t.Helper()
	h, err := home.At(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// record appends n entries of user. Safe to call from other goroutines:
// it reports a failure with t.Errorf and stops.
func record(t *testing.T, l *audit.Log, n int, user string) {
	t.Helper()
	for i := range n {
		if _, err := recordOne(t, l, audit.Entry{User: user, Via: "test", Remote: "local", Action: "create instance", Detail: fmt.Sprintf("instance %d", i), Targets: []string{"instance-" + strconv.Itoa(i)}}); err != nil {
			t.Errorf("recording entry %d of %s: %v", i+1, user, err)
			return
		}
	}
}

// recordOne is l.Record with a deadline: a Record that does not return
// within 5 s fails the test instead of hanging it.
func recordOne(t *testing.T, l *audit.Log, e audit.Entry) (audit.Entry, error) {
	t.Helper()
	type result struct {
		e   audit.Entry
		err error
	}
	done := make(chan result, 1)
	go func() {
		e, err := l.Record(context.Background(), e)
		done <- result{e, err}
	}()
	select {
	case r := <-done:
		return r.e, r.err
	case <-time.After(5 * time.Second):
		return audit.Entry{}, errors.New("Record did not return within 5 s")
	}
}

func verify(t *testing.T, h home.Home) audit.Report {
	t.Helper()
	r, err := audit.Verify(h)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func lines(t *testing.T, h home.Home) [][]byte {
	t.Helper()
	data, err := os.ReadFile(audit.File(h))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
}

func writeLines(t *testing.T, h home.Home, ls [][]byte) {
	t.Helper()
	if err := os.WriteFile(audit.File(h), append(bytes.Join(ls, []byte("\n")), '\n'), 0o640); err != nil {
		t.Fatal(err)
	}
}

func TestRecordAndVerify(t *testing.T) {
	h := newHome(t)
	if r := verify(t, h); !r.Verified || r.Entries != 0 {
		t.Fatalf("empty log: got %+v, want verified with 0 entries", r)
	}
	l := audit.Open(h)
	record(t, l, 5, "alice")
	r := verify(t, h)
	if !r.Verified || r.LastSeq != 5 || r.FirstBad != 0 {
		t.Fatalf("got %+v, want verified up to 5", r)
	}
	ls := lines(t, h)
	var first, second audit.Entry
	json.Unmarshal(ls[0], &first)
	json.Unmarshal(ls[1], &second)
	if first.Seq != 1 || first.Prev != fmt.Sprintf("%064d", 0) || first.Outcome != "ok" || first.Time.Location() != time.UTC {
		t.Errorf("first entry: got %+v", first)
	}
	if second.Seq != 2 || second.Prev == first.Prev || second.Hash == "" {
		t.Errorf("second entry: got %+v", second)
	}
}

// Every kind of tampering is detected and the first bad entry named.
func TestVerifyDetectsTampering(t *testing.T) {
	forge := func(e audit.Entry, prev string) []byte {
		// A forger who knows the format: own hash recomputed.
		e.Prev, e.Hash = prev, ""
		b, _ := json.Marshal(e)
		s := sha256hex(b)
		e.Hash = s
		b, _ = json.Marshal(e)
		return b
	}
	tests := []struct {
		name   string
		tamper func(t *testing.T, h home.Home, ls [][]byte)
		want   int64
	}{
		{"field altered", func(t *testing.T, h home.Home, ls [][]byte) {
			ls[1] = bytes.Replace(ls[1], []byte(`"user":"alice"`), []byte(`"user":"mallory"`), 1)
			writeLines(t, h, ls)
		}, 2},
		{"outcome altered", func(t *testing.T, h home.Home, ls [][]byte) {
			ls[3] = bytes.Replace(ls[3], []byte(`"outcome":"ok"`), []byte(`"outcome":"error"`), 1)
			writeLines(t, h, ls)
		}, 4},
		{"line deleted", func(t *testing.T, h home.Home, ls [][]byte) {
			writeLines(t, h, append(ls[:2:2], ls[3:]...))
		}, 3},
		{"first line deleted", func(t *testing.T, h home.Home, ls [][]byte) {
			writeLines(t, h, ls[1:])
		}, 1},
		{"lines reordered", func(t *testing.T, h home.Home, ls [][]byte) {
			ls[1], ls[2] = ls[2], ls[1]
			writeLines(t, h, ls)
		}, 2},
		{"last line cut off", func(t *testing.T, h home.Home, ls [][]byte) {
			data, _ := os.ReadFile(audit.File(h))
			os.WriteFile(audit.File(h), data[:len(data)-20], 0o640)
		}, 5},
		{"last line removed", func(t *testing.T, h home.Home, ls [][]byte) {
			writeLines(t, h, ls[:4])
		}, 5},
		{"all lines removed", func(t *testing.T, h home.Home, ls [][]byte) {
			os.WriteFile(audit.File(h), nil, 0o640)
		}, 1},
		{"forged line, own hash recomputed, prev wrong", func(t *testing.T, h home.Home, ls [][]byte) {
			var e audit.Entry
			json.Unmarshal(ls[2], &e)
			e.User = "mallory"
			wrong := e.Prev[:63] + "0"
			if wrong == e.Prev { // one time in 16 the last digit is already 0
				wrong = e.Prev[:63] + "1"
			}
			ls[2] = forge(e, wrong)
			writeLines(t, h, ls)
		}, 3},
		{"forged line, own hash and prev right: the next entry breaks", func(t *testing.T, h home.Home, ls [][]byte) {
			var e audit.Entry
			json.Unmarshal(ls[2], &e)
			e.User = "mallory"
			ls[2] = forge(e, e.Prev)
			writeLines(t, h, ls)
		}, 4},
		{"line reformatted", func(t *testing.T, h home.Home, ls [][]byte) {
			ls[0] = bytes.Replace(ls[0], []byte(`,"via"`), []byte(`, "via"`), 1)
			writeLines(t, h, ls)
		}, 1},
		{"field added", func(t *testing.T, h home.Home, ls [][]byte) {
			ls[0] = bytes.Replace(ls[0], []byte(`{"seq"`), []byte(`{"note":"x","seq"`), 1)
			writeLines(t, h, ls)
		}, 1},
		{"head removed and last line removed: a missing head is a failure", func(t *testing.T, h home.Home, ls [][]byte) {
			writeLines(t, h, ls[:4])
			os.Remove(audit.HeadFile(h))
		}, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHome(t)
			record(t, audit.Open(h), 5, "alice")
			tt.tamper(t, h, lines(t, h))
			r := verify(t, h)
			if r.FirstBad != tt.want || r.Verified != (tt.want == 0) {
				t.Fatalf("got firstBad %d verified %v (%s), want firstBad %d", r.FirstBad, r.Verified, r.Reason, tt.want)
			}
		})
	}
}

// A torn last line (a crash mid-write) is reported; the next append starts
// a line of its own and continues the sequence.
func TestRecordAfterTornLine(t *testing.T) {
	h := newHome(t)
	l := audit.Open(h)
	record(t, l, 3, "alice")
	data, _ := os.ReadFile(audit.File(h))
	os.WriteFile(audit.File(h), data[:len(data)-10], 0o640)
	e, err := recordOne(t, l, audit.Entry{User: "bob", Action: "stop instance"})
	if err != nil {
		t.Fatal(err)
	}
	if e.Seq != 3 {
		t.Errorf("got seq %d, want 3 (entry 3 is torn, the last good one is 2)", e.Seq)
	}
	if r := verify(t, h); r.FirstBad != 3 {
		t.Errorf("got firstBad %d (%s), want 3", r.FirstBad, r.Reason)
	}
}

func TestConcurrentGoroutines(t *testing.T) {
	h := newHome(t)
	l := audit.Open(h)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() { record(t, l, 15, "g"+strconv.Itoa(g)) })
	}
	wg.Wait()
	if r := verify(t, h); !r.Verified || r.LastSeq != 120 {
		t.Fatalf("got %+v, want verified up to 120", r)
	}
}

// Two processes (this test binary re-executed) and goroutines of this one
// append to one log at once, rotating it: one chain, no entry lost.
func TestConcurrentProcesses(t *testing.T) {
	if dir := os.Getenv("GATEHOUSE_AUDIT_CHILD"); dir != "" {
		h, _ := home.At(dir)
		record(t, rotating(h, 4000), 40, "child")
		return
	}
	h := newHome(t)
	var cmds []*exec.Cmd
	for range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestConcurrentProcesses$", "-test.count=1")
		cmd.Env = append(os.Environ(), "GATEHOUSE_AUDIT_CHILD="+h.Dir)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Log(out.String())
			}
		})
		cmds = append(cmds, cmd)
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { record(t, rotating(h, 4000), 20, "parent") })
	}
	wg.Wait()
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("child: %v", err)
		}
	}
	// Every appender rotates the log at 4000 bytes: the files hold one
	// chain.
	if r := verify(t, h); !r.Verified || r.LastSeq != 120 || r.Files < 5 {
		t.Fatalf("got %+v, want verified up to 120 over several files", r)
	}
}

func TestRecorderAndSearch(t *testing.T) {
	h := newHome(t)
	l := audit.Open(h)
	rec := audit.Recorder{Log: l}
	t0 := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	rec.Record(t.Context(), topology.Change{Actor: topology.Actor{User: "alice", Via: "managedomain", Remote: "local"}, Action: "create instance", Detail: `instance "s1" (instance-2) in group "g" (group-2)`, BeforeVersion: 3, AfterVersion: 4, Time: t0})
	rec.Record(t.Context(), topology.Change{Actor: topology.Actor{User: "bob", Via: "api", Remote: "10.0.0.9"}, Action: "delete group", BeforeVersion: 4, Err: errors.New("group \"x\" not found"), Time: t0.Add(time.Hour)})
	l.Record(context.Background(), audit.Entry{User: "bob", Via: "api", Remote: "10.0.0.9", Action: "start instance", Targets: []string{"group-2", "instance-2"}, Time: t0.Add(2 * time.Hour)})

	all, err := l.Search(audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 || all[0].Seq != 3 || all[2].Seq != 1 {
		t.Fatalf("got %+v, want 3 entries newest first", all)
	}
	first := all[2]
	if first.AfterVersion != 4 || first.BeforeVersion != 3 || fmt.Sprint(first.Targets) != "[instance-2 group-2]" || first.Outcome != "ok" {
		t.Errorf("topology change: got %+v", first)
	}
	failed := all[1]
	if failed.Outcome != "error" || failed.Error != `group "x" not found` || failed.AfterVersion != 0 {
		t.Errorf("failed change: got %+v", failed)
	}
	for _, tt := range []struct {
		f    audit.Filter
		want string
	}{
		{audit.Filter{User: "bob"}, "[3 2]"},
		{audit.Filter{Action: "INSTANCE"}, "[3 1]"},
		{audit.Filter{Since: t0.Add(time.Hour)}, "[3 2]"},
		{audit.Filter{Until: t0.Add(time.Hour)}, "[1]"},
		{audit.Filter{Limit: 1}, "[3]"},
		{audit.Filter{User: "carol"}, "[]"},
	} {
		got, _ := l.Search(tt.f)
		var seqs []int64
		for _, e := range got {
			seqs = append(seqs, e.Seq)
		}
		if s := fmt.Sprint(seqs); s != tt.want {
			t.Errorf("Search(%+v): got %s, want %s", tt.f, s, tt.want)
		}
	}
}
