package home

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// The stop mark tells a supervisor how a process ended. A process that
// stops because it was asked to (a signal from startinstance -k, the node
// manager or an operator) writes var/run/<id>.stopped just before it
// releases its lock; a process that dies any other way (killed, crashed, a
// listener failed) leaves none. The mark names the process (pid and kernel
// start time), so a mark left by an earlier run never speaks for a later
// one; ClaimStopMark removes it when a new run claims the run files.
//
// Rule, for a supervisor that saw process P end: P stopped on purpose if and
// only if the mark exists and names P (StopMark.Is).

// StopMark is the content of var/run/<id>.stopped.
type StopMark struct {
	PID       int       `json:"pid"`
	StartTime uint64    `json:"startTime"`
	At        time.Time `json:"at"`
	How       string    `json:"how"` // e.g. "SIGTERM", "killed by startinstance -k after the stop budget"
}

// StopMarkFile is the stop mark's path for rf.
func (rf RunFiles) StopMarkFile() string {
	return filepath.Join(filepath.Dir(rf.Lock), rf.ID+".stopped")
}

// Is reports whether the mark was written for the process of rec.
func (m StopMark) Is(rec ProcRecord) bool {
	return m.PID == rec.PID && m.StartTime == rec.StartTime
}

// WriteStopMark records that the process of rec stopped on purpose.
func WriteStopMark(rf RunFiles, rec ProcRecord, how string) error {
	data, _ := json.Marshal(StopMark{PID: rec.PID, StartTime: rec.StartTime, At: time.Now().UTC(), How: how})
	if err := WriteFileAtomic(rf.StopMarkFile(), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing stop mark: %w", err)
	}
	return nil
}

// ReadStopMark reads the stop mark of rf; ok is false when there is none (or
// it cannot be parsed).
func ReadStopMark(rf RunFiles) (m StopMark, ok bool) {
	data, err := os.ReadFile(rf.StopMarkFile())
	if err != nil {
		return m, false
	}
	if json.Unmarshal(data, &m) != nil || m.PID <= 0 {
		return StopMark{}, false
	}
	return m, true
}

// ClearStopMark removes the stop mark of rf; a process calls it once it has
// claimed its run files, so that the mark of an earlier run is gone.
func ClearStopMark(rf RunFiles) error {
	if err := os.Remove(rf.StopMarkFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing stop mark: %w", err)
	}
	return nil
}
