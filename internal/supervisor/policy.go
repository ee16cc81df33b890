package supervisor

import (
	"fmt"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"golang.org/x/sys/unix"
)

// Instance statuses, as InstanceState.Status reports them.
const (
	StatusRunning  = "running"
	StatusStopped  = "stopped"
	StatusStarting = "starting"
	StatusStopping = "stopping"
	StatusFailed   = "failed" // ended without being asked to stop, and not (yet) restarted
	StatusUnknown  = "unknown"
)

// event is what the supervisor learnt about an instance.
type event int

const (
	evStarting       event = iota // StartInstance (or a restart) began
	evStarted                     // startinstance -d reported it ready
	evStopping                    // StopInstance began
	evStopped                     // startinstance -k returned: the process has ended
	evSeenRunning                 // a probe found its lock held
	evSeenNotRunning              // a probe found its lock free
	evExitClean                   // the watched process ended with its stop mark (asked to stop)
	evExitFailed                  // the watched process ended without one (killed, crashed, failed)
)

// nextStatus is the state machine of InstanceState.Status. While a start or
// a stop is in progress, what probes see does not change the status: the
// operation sets it when it ends. A failed instance stays failed until it
// runs again or is stopped on purpose.
func nextStatus(cur string, ev event) string {
	busy := cur == StatusStarting || cur == StatusStopping
	switch ev {
	case evStarting:
		return StatusStarting
	case evStarted, evSeenRunning:
		if ev == evSeenRunning && busy {
			return cur
		}
		return StatusRunning
	case evStopping:
		return StatusStopping
	case evStopped, evExitClean:
		if ev == evExitClean && cur == StatusStarting {
			return cur
		}
		return StatusStopped
	case evSeenNotRunning:
		if busy || cur == StatusFailed {
			return cur
		}
		return StatusStopped
	case evExitFailed:
		switch cur {
		case StatusStopping: // asked to stop: whatever the exit, it is not a failure to undo
			return StatusStopped
		case StatusStarting:
			return cur
		}
		return StatusFailed
	}
	return cur
}

// stableAfter is how long an instance must stay up for its back-off to
// start again from nodeManager.restartBackoff.
const stableAfter = 2 * time.Minute

// nextDelay is the back-off before a restart: initial for a first failure,
// or after the instance stayed up stable (uptime ≥ stable) since its last
// restart; otherwise twice the previous delay, at most max. prev is 0 when
// there was no previous restart.
func nextDelay(prev, uptime, initial, max, stable time.Duration) time.Duration {
	if prev <= 0 || uptime >= stable {
		return min(initial, max)
	}
	d := prev * 2
	if d > max || d < prev { // overflow guard
		d = max
	}
	return d
}

// exitVerdict decides how a watched process rec ended. clean means it was
// asked to stop (its stop mark names it: home.StopMark) and must not be
// restarted. cause is what InstanceState.LastExit says: the wait status when
// the node manager reaped the process itself (it is the instances'
// subreaper), else what the stop mark says.
func exitVerdict(rec home.ProcRecord, mark home.StopMark, markOK bool, ws unix.WaitStatus, wsOK bool) (clean bool, cause string) {
	clean = markOK && mark.Is(rec)
	switch {
	case clean && mark.How != "":
		cause = "stopped (" + mark.How + ")"
	case clean:
		cause = "stopped"
	case wsOK && ws.Signaled():
		cause = fmt.Sprintf("killed by signal %d (%s)", int(ws.Signal()), unix.SignalName(ws.Signal()))
	case wsOK:
		cause = fmt.Sprintf("exit status %d", ws.ExitStatus())
	default:
		cause = "ended without a clean stop (exit status unknown: not started by this node manager)"
	}
	return clean, cause
}
