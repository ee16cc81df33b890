package nodemanager_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/nodemanager"
	"github.com/gatehouse-gw/gatehouse/internal/supervisor"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// supervisedHome is an install directory with a domain (node manager on a
// free port) and one instance "s1" in group "g1" whose group.yaml is group.
func supervisedHome(t *testing.T, group string) (*gwtest.Home, home.Home) {
	t.Helper()
	h := gwtest.NewHome(t)
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("changeme-Secret1\n"), 0o600)
	h.MustRun("", "managedomain", "-i", "--domain_name", "D", "--username", "admin", "--password_file", pw, "--port", strconv.Itoa(gwtest.FreePort(t)))
	h.MustRun("", "managedomain", "-c", "-n", "s1", "-g", "g1", "--traffic_port", strconv.Itoa(gwtest.FreePort(t)), "--management_port", strconv.Itoa(gwtest.FreePort(t)))
	gconf, _ := filepath.Glob(h.Path("groups", "group-*", "conf", "group.yaml"))
	for _, f := range gconf {
		if err := os.WriteFile(f, []byte(group), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return h, home.Home{Dir: h.Dir}
}

func startNodeManager(t *testing.T, hh home.Home) *nodemanager.NodeManager {
	t.Helper()
	nm, err := nodemanager.New(nodemanager.Options{Home: hh, Exe: gwtest.Binary(t), Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := nm.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		nm.Shutdown(ctx)
	})
	return nm
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// await polls the state of id until ok accepts it, or fails after within.
func await(t *testing.T, sup *supervisor.Supervisor, id string, within time.Duration, what string, ok func(supervisor.InstanceState) bool) supervisor.InstanceState {
	t.Helper()
	deadline := time.Now().Add(within)
	var st supervisor.InstanceState
	for time.Now().Before(deadline) {
		var err error
		if st, err = sup.Status(id); err != nil {
			t.Fatal(err)
		}
		if ok(st) {
			return st
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v; last state %+v", what, within, st)
	return st
}

// holds checks that the state of id keeps satisfying ok for d (a negative
// check: nothing happens within a bounded window).
func holds(t *testing.T, sup *supervisor.Supervisor, id string, d time.Duration, what string, ok func(supervisor.InstanceState) bool) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if st, _ := sup.Status(id); !ok(st) {
			t.Fatalf("%s: state changed to %+v", what, st)
		}
	}
}

const restartGroup = "nodeManager:\n  restartOnFailure: true\n  restartBackoff: 200ms\n  restartBackoffMax: 1s\n"

func TestSupervisorStartStopAndRestart(t *testing.T) {
	h, hh := supervisedHome(t, restartGroup)
	nm := startNodeManager(t, hh)
	sup := nm.Supervisor()
	dir := h.Path("groups", "group-2", "instance-1")
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("instance directory: %v", err)
	}

	states := sup.States()
	if len(states) != 1 || states[0].ID != "instance-1" || states[0].Name != "s1" || states[0].GroupName != "g1" || states[0].Status != supervisor.StatusStopped {
		t.Fatalf("States() = %+v, want instance-1 s1/g1 stopped", states)
	}
	if _, err := sup.Status("instance-99"); !errors.Is(err, topology.ErrNotFound) || !strings.Contains(err.Error(), "instance-99") {
		t.Errorf("Status(instance-99): got %v, want an error wrapping ErrNotFound naming the id", err)
	}

	ctx := t.Context()
	st, err := sup.StartInstance(ctx, "instance-1")
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != supervisor.StatusRunning || st.PID == 0 || st.Health != "ok" || st.Phase != "serving" || len(st.ConfigChecksum) != 64 {
		t.Errorf("after StartInstance: %+v, want running, a pid, healthy, serving, a checksum", st)
	}
	if r := h.Run("", "startinstance", "-s", "-h", dir); r.Code != 0 || !strings.Contains(r.Stdout, fmt.Sprintf("pid %d", st.PID)) {
		t.Errorf("startinstance -s disagrees with the supervisor (pid %d): %s", st.PID, r)
	}
	if _, err := sup.StartInstance(ctx, "instance-1"); !errors.Is(err, home.ErrRunning) {
		t.Errorf("second StartInstance: got %v, want an error wrapping home.ErrRunning", err)
	}

	// Killed with SIGKILL: reported and restarted after the back-off.
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	old := st.PID
	st = await(t, sup, "instance-1", 30*time.Second, "restart after SIGKILL", func(s supervisor.InstanceState) bool {
		return s.Status == supervisor.StatusRunning && s.PID != 0 && s.PID != old && s.Restarts == 1
	})
	if !strings.Contains(st.LastExit, "killed by signal 9") {
		t.Errorf("LastExit = %q, want killed by signal 9", st.LastExit)
	}
	if r := h.Run("", "startinstance", "-s", "-h", dir); r.Code != 0 || !strings.Contains(r.Stdout, fmt.Sprintf("pid %d", st.PID)) {
		t.Errorf("startinstance -s after the restart (pid %d): %s", st.PID, r)
	}

	// An operator's startinstance -k is a stop on purpose: not restarted.
	h.MustRun("", "startinstance", "-k", "-h", dir)
	st = await(t, sup, "instance-1", 10*time.Second, "stopped after startinstance -k", func(s supervisor.InstanceState) bool {
		return s.Status == supervisor.StatusStopped
	})
	if !strings.Contains(st.LastExit, "stopped") || st.PID != 0 || st.Health != "" {
		t.Errorf("after startinstance -k: %+v, want LastExit stopped, no pid, no health", st)
	}
	holds(t, sup, "instance-1", 1500*time.Millisecond, "not restarted after startinstance -k", func(s supervisor.InstanceState) bool {
		return s.Status == supervisor.StatusStopped && s.Restarts == 1
	})

	// Started by an operator: adopted; stopped through the supervisor.
	h.MustRun("", "startinstance", "-d", "-h", dir)
	await(t, sup, "instance-1", 10*time.Second, "adopted", func(s supervisor.InstanceState) bool {
		return s.Status == supervisor.StatusRunning && s.Health == "ok"
	})
	if st, err = sup.StopInstance(ctx, "instance-1"); err != nil || st.Status != supervisor.StatusStopped {
		t.Fatalf("StopInstance: %+v, %v", st, err)
	}
	if r := h.Run("", "startinstance", "-s", "-h", dir); r.Code != 1 {
		t.Errorf("startinstance -s after StopInstance: %s", r)
	}
	if st, err = sup.StopInstance(ctx, "instance-1"); err != nil || st.Status != supervisor.StatusStopped {
		t.Errorf("StopInstance of a stopped instance: %+v, %v; want stopped, no error", st, err)
	}
}

func TestSupervisorNoRestartWhenNotAsked(t *testing.T) {
	h, hh := supervisedHome(t, "nodeManager:\n  restartOnFailure: false\n  restartBackoff: 100ms\n")
	sup := startNodeManager(t, hh).Supervisor()
	st, err := sup.StartInstance(t.Context(), "instance-1")
	if err != nil {
		t.Fatal(err)
	}
	syscall.Kill(st.PID, syscall.SIGKILL)
	st = await(t, sup, "instance-1", 10*time.Second, "failed after SIGKILL", func(s supervisor.InstanceState) bool {
		return s.Status == supervisor.StatusFailed
	})
	if !strings.Contains(st.LastExit, "killed by signal 9") || st.PID != 0 {
		t.Errorf("after SIGKILL: %+v, want LastExit killed by signal 9, no pid", st)
	}
	holds(t, sup, "instance-1", time.Second, "not restarted", func(s supervisor.InstanceState) bool {
		return s.Status == supervisor.StatusFailed && s.Restarts == 0
	})
	if r := h.Run("", "startinstance", "-s", "-n", "s1", "-g", "g1"); r.Code != 1 {
		t.Errorf("startinstance -s: %s", r)
	}
}

func TestSupervisorStartFailureNamesReason(t *testing.T) {
	h, hh := supervisedHome(t, "")
	sup := startNodeManager(t, hh).Supervisor()
	// Take the instance's traffic port.
	data, _ := os.ReadFile(h.Path("groups", "group-2", "instance-1", "conf", "instance.yaml"))
	var port int
	for _, line := range strings.Split(string(data), "\n") {
		if s, ok := strings.CutPrefix(strings.TrimSpace(line), "port: "); ok && port == 0 {
			port, _ = strconv.Atoi(s)
		}
	}
	if port == 0 {
		t.Fatalf("no port in instance.yaml:\n%s", data)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	st, err := sup.StartInstance(t.Context(), "instance-1")
	if !errors.Is(err, supervisor.ErrNotStarted) || !strings.Contains(err.Error(), strconv.Itoa(port)) {
		t.Errorf("StartInstance with its port taken: got %v, want ErrNotStarted naming port %d", err, port)
	}
	if st.Status != supervisor.StatusStopped {
		t.Errorf("status after a failed start: %s, want stopped", st.Status)
	}
}
