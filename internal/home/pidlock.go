package home

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The pid-and-lock protocol, shared by startinstance and the node manager.
//
// A supervised process (an instance, a node manager) owns two files under
// var/run/, named by its topology id:
//
//	<id>.lock  flock(2)ed exclusively by the running process for its whole
//	           life; its content is a JSON ProcRecord (pid, kernel start time).
//	<id>.pid   the pid alone, one line (what systemd's PIDFile= reads).
//
// "Running" means the lock is held. The pid file is only a convenience: a pid
// file whose lock is free is stale (the process is gone) and is removed by the
// next Probe. Before a signal is sent, the recorded kernel start time is
// compared with /proc/<pid>/stat, so a pid reused by another program is never
// signalled. Because the kernel drops the lock when the process dies, no
// crash can leave a process looking alive.

// RunFiles names the runtime files of one supervised process.
type RunFiles struct {
	ID   string // topology id, e.g. "instance-1"
	Lock string
	PID  string
}

// RunFiles returns the runtime file names for the process with topology id.
func (h Home) RunFiles(id string) RunFiles {
	return RunFiles{ID: id, Lock: filepath.Join(h.RunDir(), id+".lock"), PID: filepath.Join(h.RunDir(), id+".pid")}
}

// ProcRecord identifies a running process beyond its pid.
type ProcRecord struct {
	PID       int       `json:"pid"`
	StartTime uint64    `json:"startTime"` // clock ticks after boot, /proc/<pid>/stat field 22
	Started   time.Time `json:"started"`
	ID        string    `json:"id"`
	// StopBudget is how long the process may take to stop after SIGTERM
	// (zero-downtime delay + drain timeout); a stopper waits at least this
	// long before resorting to SIGKILL. 0 means unknown.
	StopBudget time.Duration `json:"stopBudget"`
}

// ErrRunning is wrapped by Claim when the process is already running.
var ErrRunning = errors.New("already running")

// Claim is held by a running process: the lock and its record.
type Claim struct {
	rf   RunFiles
	lock *Lock
	Rec  ProcRecord
}

// ClaimRunFiles takes the lock for rf on behalf of the calling process, writes
// its record and pid file, and returns the claim. If another process holds the
// lock it returns an error wrapping ErrRunning that names the holder's pid.
func ClaimRunFiles(rf RunFiles) (*Claim, error) {
	if err := os.MkdirAll(filepath.Dir(rf.Lock), 0o755); err != nil {
		return nil, fmt.Errorf("creating run directory: %w", err)
	}
	l, err := TryLock(rf.Lock)
	if errors.Is(err, ErrLocked) {
		if st, perr := Probe(rf); perr == nil && st.Record != nil {
			return nil, fmt.Errorf("%s is %w (pid %d)", rf.ID, ErrRunning, st.Record.PID)
		}
		return nil, fmt.Errorf("%s is %w", rf.ID, ErrRunning)
	}
	if err != nil {
		return nil, err
	}
	st, err := ProcStartTime(os.Getpid())
	if err != nil {
		l.Unlock()
		return nil, err
	}
	c := &Claim{rf: rf, lock: l, Rec: ProcRecord{PID: os.Getpid(), StartTime: st, Started: time.Now().UTC(), ID: rf.ID}}
	if err := c.writeRecord(); err != nil {
		l.Unlock()
		return nil, err
	}
	rec := c.Rec
	if err := WriteFileAtomic(rf.PID, []byte(strconv.Itoa(rec.PID)+"\n"), 0o644); err != nil {
		l.Unlock()
		return nil, err
	}
	return c, nil
}

// SetStopBudget records how long the process may take to stop after SIGTERM.
func (c *Claim) SetStopBudget(d time.Duration) error {
	c.Rec.StopBudget = d
	return c.writeRecord()
}

func (c *Claim) writeRecord() error {
	data, _ := json.Marshal(c.Rec)
	f := c.lock.File()
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("writing %s: %w", c.rf.Lock, err)
	}
	if _, err := f.WriteAt(append(data, '\n'), 0); err != nil {
		return fmt.Errorf("writing %s: %w", c.rf.Lock, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", c.rf.Lock, err)
	}
	return nil
}

// Release removes the pid file and releases the lock. Call it last, once the
// process has finished its work.
func (c *Claim) Release() error {
	if c == nil || c.lock == nil {
		return nil
	}
	os.Remove(c.rf.PID)
	// Empty the record before unlocking so nobody reads a dead process's data.
	c.lock.File().Truncate(0)
	err := c.lock.Unlock()
	c.lock = nil
	return err
}

// ProcState is what Probe learned about a supervised process.
type ProcState struct {
	Running bool
	// Record is the running process's record; nil when not running or when
	// the record could not be verified (then the process is not signalled).
	Record *ProcRecord
	// StalePID is set when a pid file was found for a process that is not
	// running (or whose pid now belongs to another program); Probe removed it.
	StalePID int
}

// Probe reports whether the process of rf is running, detecting and removing
// a stale pid file. It never trusts the pid file alone.
func Probe(rf RunFiles) (ProcState, error) {
	var st ProcState
	l, err := TryLock(rf.Lock)
	switch {
	case err == nil:
		// Nobody holds the lock: not running. Any pid file is stale.
		if pid := readPIDFile(rf.PID); pid != 0 {
			st.StalePID = pid
			os.Remove(rf.PID)
		}
		l.File().Truncate(0)
		l.Unlock()
		return st, nil
	case errors.Is(err, ErrLocked):
		st.Running = true
	default:
		if errors.Is(err, os.ErrNotExist) {
			return st, nil
		}
		return st, err
	}
	// The lock is held. Read the holder's record; it may be being written.
	for i := 0; i < 50; i++ {
		data, rerr := os.ReadFile(rf.Lock)
		if rerr == nil {
			var rec ProcRecord
			if json.Unmarshal(bytes.TrimSpace(data), &rec) == nil && rec.PID > 0 {
				if t, terr := ProcStartTime(rec.PID); terr == nil && t == rec.StartTime {
					st.Record = &rec
				}
				return st, nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return st, nil
}

// Signal sends sig to the recorded process after checking that the pid still
// belongs to it (same kernel start time).
func (r ProcRecord) Signal(sig syscall.Signal) error {
	t, err := ProcStartTime(r.PID)
	if err != nil {
		return fmt.Errorf("process %d: %w", r.PID, err)
	}
	if t != r.StartTime {
		return fmt.Errorf("pid %d now belongs to another program (start time %d, recorded %d); not signalling", r.PID, t, r.StartTime)
	}
	return syscall.Kill(r.PID, sig)
}

// WaitStopped waits until the lock of rf is free (the process has exited) or
// ctx is done.
func WaitStopped(ctx context.Context, rf RunFiles) error {
	l, err := LockWait(ctx, rf.Lock)
	if err != nil {
		return err
	}
	os.Remove(rf.PID)
	return l.Unlock()
}

func readPIDFile(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return -1
	}
	return pid
}

// ProcStartTime returns the start time of process pid in clock ticks after
// boot (field 22 of /proc/<pid>/stat).
func ProcStartTime(pid int) (uint64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("reading process %d: %w", pid, err)
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(data[i+1:]))
	// fields[0] is field 3 (state); field 22 is fields[19].
	if len(fields) < 20 {
		return 0, fmt.Errorf("parsing /proc/%d/stat: %d fields", pid, len(fields))
	}
	return strconv.ParseUint(fields[19], 10, 64)
}
