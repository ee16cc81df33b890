package supervisor

import (
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"golang.org/x/sys/unix"
)

func TestNextDelay(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name                             string
		prev, uptime, initial, max, want time.Duration
	}{
		{"first failure", 0, 5 * s, 1 * s, 60 * s, 1 * s},
		{"doubles", 1 * s, 5 * s, 1 * s, 60 * s, 2 * s},
		{"doubles again", 2 * s, 0, 1 * s, 60 * s, 4 * s},
		{"capped", 32 * s, 1 * s, 1 * s, 60 * s, 60 * s},
		{"stays at max", 60 * s, 1 * s, 1 * s, 60 * s, 60 * s},
		{"reset after a stable run", 60 * s, stableAfter, 1 * s, 60 * s, 1 * s},
		{"not reset just before", 8 * s, stableAfter - time.Millisecond, 1 * s, 60 * s, 16 * s},
		{"initial above max", 0, 0, 90 * s, 60 * s, 60 * s},
		{"overflow", time.Duration(1 << 62), 0, 1 * s, time.Duration(1<<63 - 1), time.Duration(1<<63 - 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextDelay(tt.prev, tt.uptime, tt.initial, tt.max, stableAfter); got != tt.want {
				t.Errorf("nextDelay(%v, %v, %v, %v) = %v, want %v", tt.prev, tt.uptime, tt.initial, tt.max, got, tt.want)
			}
		})
	}
	// The whole schedule with the defaults: 1 2 4 8 16 32 60 60.
	var d time.Duration
	var got []time.Duration
	for range 8 {
		d = nextDelay(d, 0, time.Second, time.Minute, stableAfter)
		got = append(got, d/time.Second)
	}
	want := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("schedule %v, want %v", got, want)
		}
	}
}

func TestNextStatus(t *testing.T) {
	tests := []struct {
		cur  string
		ev   event
		want string
	}{
		{StatusUnknown, evSeenRunning, StatusRunning},
		{StatusUnknown, evSeenNotRunning, StatusStopped},
		{StatusStopped, evStarting, StatusStarting},
		{StatusStarting, evSeenRunning, StatusStarting},
		{StatusStarting, evSeenNotRunning, StatusStarting},
		{StatusStarting, evStarted, StatusRunning},
		{StatusRunning, evStopping, StatusStopping},
		{StatusStopping, evSeenRunning, StatusStopping},
		{StatusStopping, evExitClean, StatusStopped},
		{StatusStopping, evExitFailed, StatusStopped}, // asked to stop: never a failure
		{StatusStopping, evStopped, StatusStopped},
		{StatusRunning, evExitClean, StatusStopped}, // startinstance -k by an operator
		{StatusRunning, evExitFailed, StatusFailed},
		{StatusFailed, evSeenNotRunning, StatusFailed}, // stays failed until it runs or is stopped
		{StatusFailed, evSeenRunning, StatusRunning},
		{StatusFailed, evStarting, StatusStarting},
		{StatusFailed, evStopped, StatusStopped},
		{StatusRunning, evSeenNotRunning, StatusStopped},
	}
	for _, tt := range tests {
		if got := nextStatus(tt.cur, tt.ev); got != tt.want {
			t.Errorf("nextStatus(%s, %d) = %s, want %s", tt.cur, tt.ev, got, tt.want)
		}
	}
}

func TestExitVerdict(t *testing.T) {
	rec := home.ProcRecord{PID: 42, StartTime: 1000}
	mark := home.StopMark{PID: 42, StartTime: 1000, How: "SIGTERM"}
	old := home.StopMark{PID: 42, StartTime: 999, How: "SIGTERM"} // an earlier process with the same pid
	const killed9 = unix.WaitStatus(9)                            // signalled, SIGKILL
	const exit1 = unix.WaitStatus(1 << 8)                         // exit status 1
	tests := []struct {
		name      string
		mark      home.StopMark
		markOK    bool
		ws        unix.WaitStatus
		wsOK      bool
		wantClean bool
		wantCause string
	}{
		{"stop mark", mark, true, 0, true, true, "stopped (SIGTERM)"},
		{"stop mark, not our child", mark, true, 0, false, true, "stopped (SIGTERM)"},
		{"SIGKILL", home.StopMark{}, false, killed9, true, false, "killed by signal 9 (SIGKILL)"},
		{"stale mark of another process", old, true, killed9, true, false, "killed by signal 9"},
		{"exit status 1", home.StopMark{}, false, exit1, true, false, "exit status 1"},
		{"unknown", home.StopMark{}, false, 0, false, false, "exit status unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clean, cause := exitVerdict(rec, tt.mark, tt.markOK, tt.ws, tt.wsOK)
			if clean != tt.wantClean || !strings.Contains(cause, tt.wantCause) {
				t.Errorf("got (%v, %q), want (%v, %q)", clean, cause, tt.wantClean, tt.wantCause)
			}
		})
	}
}
