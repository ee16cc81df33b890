package home

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestClaimProbeRelease(t *testing.T) {
	h, _ := At(t.TempDir())
	rf := h.RunFiles("instance-1")
	c, err := ClaimRunFiles(rf)
	if err != nil {
		t.Fatal(err)
	}
	st, err := Probe(rf)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Running || st.Record == nil || st.Record.PID != os.Getpid() {
		t.Fatalf("got %+v, want running with our pid %d", st, os.Getpid())
	}
	if _, err := ClaimRunFiles(rf); !errors.Is(err, ErrRunning) || !strings.Contains(err.Error(), strconv.Itoa(os.Getpid())) {
		t.Errorf("second claim: got %v, want ErrRunning naming pid", err)
	}
	data, _ := os.ReadFile(rf.PID)
	if got, want := strings.TrimSpace(string(data)), strconv.Itoa(os.Getpid()); got != want {
		t.Errorf("pid file: got %q, want %q", got, want)
	}
	if err := c.Release(); err != nil {
		t.Fatal(err)
	}
	if st, _ := Probe(rf); st.Running {
		t.Errorf("after release: got running, want stopped")
	}
	if _, err := os.Stat(rf.PID); !os.IsNotExist(err) {
		t.Errorf("pid file still there after release")
	}
}

func TestStalePIDFile(t *testing.T) {
	h, _ := At(t.TempDir())
	os.MkdirAll(h.RunDir(), 0o755)
	rf := h.RunFiles("instance-2")
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := cmd.Process.Pid
	os.WriteFile(rf.PID, []byte(strconv.Itoa(dead)+"\n"), 0o644)
	st, err := Probe(rf)
	if err != nil {
		t.Fatal(err)
	}
	if st.Running || st.StalePID != dead {
		t.Errorf("got %+v, want not running with stale pid %d", st, dead)
	}
	if _, err := os.Stat(rf.PID); !os.IsNotExist(err) {
		t.Errorf("stale pid file not removed")
	}
	// A pid file naming a live but unrelated process (our own) is stale too:
	// nobody holds the lock.
	os.WriteFile(rf.PID, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	if st, _ := Probe(rf); st.Running || st.StalePID != os.Getpid() {
		t.Errorf("got %+v, want stale pid %d (reused pid)", st, os.Getpid())
	}
}

func TestPIDReuseNotSignalled(t *testing.T) {
	st, err := ProcStartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	rec := ProcRecord{PID: os.Getpid(), StartTime: st + 1}
	if err := rec.Signal(syscall.Signal(0)); err == nil || !strings.Contains(err.Error(), "another program") {
		t.Errorf("got %v, want refusal naming another program", err)
	}
	rec.StartTime = st
	if err := rec.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("got %v, want nil for a matching start time", err)
	}
}

func TestProbeUnverifiableRecord(t *testing.T) {
	h, _ := At(t.TempDir())
	rf := h.RunFiles("instance-3")
	c, err := ClaimRunFiles(rf)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()
	// Corrupt the record's start time: the process looks running, but its
	// identity cannot be verified, so no record is returned to signal.
	rec := c.Rec
	rec.StartTime++
	data, _ := json.Marshal(rec)
	c.lock.File().Truncate(0)
	c.lock.File().WriteAt(data, 0)
	st, _ := Probe(rf)
	if !st.Running || st.Record != nil {
		t.Errorf("got %+v, want running with no verified record", st)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/f"
	if err := WriteFileAtomic(p, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(p, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(p)
	fi, _ := os.Stat(p)
	if string(data) != "two" || fi.Mode().Perm() != 0o600 {
		t.Errorf("got %q %v, want two 0600", data, fi.Mode().Perm())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("got %d entries, want 1 (temp files left behind)", len(ents))
	}
	if err := WriteFileAtomic(dir+"/missing/f", []byte("x"), 0o600); err == nil {
		t.Errorf("got nil error writing into a missing directory")
	}
}
