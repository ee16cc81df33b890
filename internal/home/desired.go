package home

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// The desired state says whether an instance should run: startinstance
// writes it when it is asked to start one (running) or to stop one
// (stopped), whoever asks (an operator, or the node manager on behalf of
// the management API), before it acts. A node manager that starts and
// finds an instance that should run but does not (both were killed, the
// host rebooted) starts it again, with the group's restart policy; an
// instance stopped on purpose stays stopped.

// EnvBy names who asked for a start or a stop when it is not the user at
// the terminal: the node manager sets it when it runs startinstance.
const EnvBy = "GATEHOUSE_BY"

// Desired states.
const (
	DesiredRunning = "running"
	DesiredStopped = "stopped"
)

// Desired is the content of var/run/<id>.desired.
type Desired struct {
	State string    `json:"state"` // DesiredRunning or DesiredStopped
	By    string    `json:"by"`    // who asked: "startinstance -d (user root)", …
	At    time.Time `json:"at"`
}

// DesiredFile is the desired state's path for rf.
func (rf RunFiles) DesiredFile() string {
	return filepath.Join(filepath.Dir(rf.Lock), rf.ID+".desired")
}

// WriteDesired records that the process of rf should be in state.
func WriteDesired(rf RunFiles, state, by string) error {
	if state != DesiredRunning && state != DesiredStopped {
		return fmt.Errorf("desired state %q: want %s or %s", state, DesiredRunning, DesiredStopped)
	}
	data, _ := json.Marshal(Desired{State: state, By: by, At: time.Now().UTC()})
	if err := os.MkdirAll(filepath.Dir(rf.Lock), 0o755); err != nil {
		return fmt.Errorf("writing desired state: %w", err)
	}
	if err := WriteFileAtomic(rf.DesiredFile(), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing desired state: %w", err)
	}
	return nil
}

// ReadDesired reads the desired state of rf; ok is false when there is
// none or it cannot be parsed (nothing is known: the process is left as it
// is).
func ReadDesired(rf RunFiles) (d Desired, ok bool) {
	data, err := os.ReadFile(rf.DesiredFile())
	if err != nil {
		return d, false
	}
	if json.Unmarshal(data, &d) != nil || (d.State != DesiredRunning && d.State != DesiredStopped) {
		return Desired{}, false
	}
	return d, true
}
