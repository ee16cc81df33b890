package tools_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
)

// nmDomain makes a domain whose node manager listens on a free port, with
// instance "s1" in group "g1" (group.yaml: group), and stops the node
// manager when the test ends (before the harness stops the instances).
func nmDomain(t *testing.T, group string) *gwtest.Home {
	t.Helper()
	h := gwtest.NewHome(t)
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("changeme-Secret1\n"), 0o600)
	h.MustRun("", "managedomain", "-i", "--domain_name", "D", "--username", "admin", "--password_file", pw, "--port", strconv.Itoa(gwtest.FreePort(t)))
	h.MustRun("", "managedomain", "-c", "-n", "s1", "-g", "g1", "--traffic_port", strconv.Itoa(gwtest.FreePort(t)), "--management_port", strconv.Itoa(gwtest.FreePort(t)))
	gconf, _ := filepath.Glob(h.Path("groups", "group-*", "conf", "group.yaml"))
	for _, f := range gconf {
		os.WriteFile(f, []byte(group), 0o644)
	}
	t.Cleanup(func() { h.Run("", "nodemanager", "-k", "-q") })
	return h
}

func pidOf(t *testing.T, h *gwtest.Home, id string) int {
	t.Helper()
	data, err := os.ReadFile(h.Path("var", "run", id+".pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

func TestNodemanagerDaemonStatusStop(t *testing.T) {
	h := nmDomain(t, "")
	if r := h.Run("", "nodemanager", "-s"); r.Code != 1 || !strings.Contains(r.Stdout, "not running") {
		t.Fatalf("-s before start: %s", r)
	}
	r := h.MustRun("", "nodemanager", "-d")
	if !strings.Contains(r.Stdout, "Started") {
		t.Errorf("-d output: %s", r)
	}
	pid := pidOf(t, h, "nodemanager-1")
	if r := h.Run("", "nodemanager", "-s"); r.Code != 0 || !strings.Contains(r.Stdout, "pid "+strconv.Itoa(pid)) {
		t.Errorf("-s while running (pid %d): %s", pid, r)
	}
	// A second node manager on the same install directory is refused, naming the pid.
	if r := h.Run("", "nodemanager", "-d"); r.Code != 1 || !strings.Contains(r.Stderr, "already running (pid "+strconv.Itoa(pid)+")") {
		t.Errorf("second -d: %s", r)
	}
	if r := h.Run("", "nodemanager"); r.Code != 1 || !strings.Contains(r.Stderr, "already running") {
		t.Errorf("second foreground: %s", r)
	}
	// Under its own name, as posix/bin/nodemanager.
	if r := h.RunAs("nodemanager", "", "-s"); r.Code != 0 {
		t.Errorf("nodemanager -s under its own name: %s", r)
	}
	// Its log is in logs/nodemanager.
	if _, err := os.Stat(h.Path("logs", "nodemanager", "nodemanager.log")); err != nil {
		t.Errorf("log file: %v", err)
	}
	// -k returns once the process has ended.
	h.MustRun("", "nodemanager", "-k")
	if err := syscall.Kill(pid, 0); err == nil {
		if data, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); !strings.Contains(string(data), ") Z") {
			t.Errorf("pid %d still alive after -k", pid)
		}
	}
	if r := h.Run("", "nodemanager", "-s"); r.Code != 1 {
		t.Errorf("-s after -k: %s", r)
	}
	if r := h.Run("", "nodemanager", "-k"); r.Code != 0 || !strings.Contains(r.Stdout, "not running") {
		t.Errorf("-k when stopped: %s", r)
	}
}

func TestNodemanagerUsage(t *testing.T) {
	h := gwtest.NewHome(t)
	if r := h.Run("", "nodemanager", "--help"); r.Code != 0 || !strings.Contains(r.Stdout, "usage: nodemanager") {
		t.Errorf("--help: %s", r)
	}
	if r := h.Run("", "nodemanager", "-P", "--passphrase_file", "f"); r.Code != 2 || !strings.Contains(r.Stderr, "exclude each other") {
		t.Errorf("-P --passphrase_file: %s", r)
	}
	if r := h.Run("", "nodemanager", "-x"); r.Code != 2 || !strings.Contains(r.Stderr, "-d -k -s") {
		t.Errorf("-x: %s", r)
	}
	if r := h.Run("", "nodemanager", "-d", "-k"); r.Code != 2 {
		t.Errorf("-d -k: %s", r)
	}
}

// The daemon node manager adopts an instance an operator started, restarts
// it after a SIGKILL when the group asks, leaves it stopped after
// startinstance -k, and the instance outlives the node manager.
func TestNodemanagerRestartsKilledInstance(t *testing.T) {
	h := nmDomain(t, "nodeManager:\n  restartOnFailure: true\n  restartBackoff: 200ms\n")
	h.MustRun("", "nodemanager", "-d")
	h.MustRun("", "startinstance", "-d", "-n", "s1", "-g", "g1")
	pid := pidOf(t, h, "instance-1")
	// Wait until the node manager watches it (found by its probe), then kill it.
	logPath := h.Path("logs", "nodemanager", "nodemanager.log")
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(readFile(logPath), `"watching instance"`); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the node manager does not watch the instance; log:\n%s", readFile(logPath))
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	syscall.Kill(pid, syscall.SIGKILL)
	var newPID int
	for time.Now().Before(deadline) {
		if r := h.Run("", "startinstance", "-s", "-q", "-n", "s1", "-g", "g1"); r.Code == 0 {
			if newPID = pidOf(t, h, "instance-1"); newPID != 0 && newPID != pid {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if newPID == 0 || newPID == pid {
		t.Fatalf("instance not restarted after SIGKILL; node manager log:\n%s", readFile(h.Path("logs", "nodemanager", "nodemanager.log")))
	}
	if log := readFile(h.Path("logs", "nodemanager", "nodemanager.log")); !strings.Contains(log, `"instance died"`) || !strings.Contains(log, `"level":"WARN"`) {
		t.Errorf("the death is not reported at warn:\n%s", log)
	}
	// Each key once per line (the supervisor's lines had "component" twice).
	logs, _ := filepath.Glob(h.Path("groups", "group-*", "instance-1", "logs", "instance*.log"))
	for _, f := range append(logs, logPath) {
		for i, line := range strings.Split(strings.TrimSpace(readFile(f)), "\n") {
			if dup := duplicateKeys(line); len(dup) > 0 {
				t.Errorf("%s line %d has %v more than once: %s", filepath.Base(f), i+1, dup, line)
			}
		}
	}
	// A clean stop is not undone.
	h.MustRun("", "startinstance", "-k", "-n", "s1", "-g", "g1")
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if r := h.Run("", "startinstance", "-s", "-q", "-n", "s1", "-g", "g1"); r.Code != 1 {
			t.Fatalf("restarted after startinstance -k")
		}
	}
	// Instances outlive the node manager.
	h.MustRun("", "startinstance", "-d", "-n", "s1", "-g", "g1")
	h.MustRun("", "nodemanager", "-k")
	if r := h.Run("", "startinstance", "-s", "-n", "s1", "-g", "g1"); r.Code != 0 {
		t.Errorf("instance stopped with the node manager: %s", r)
	}
}

func readFile(p string) string {
	data, _ := os.ReadFile(p)
	return string(data)
}

// TestNodemanagerRemembersWhatShouldRun: when the node manager and an
// instance are both killed, the restarted node manager starts the instance
// again (it should run: home.Desired), and an instance stopped on purpose
// stays stopped.
func TestNodemanagerRemembersWhatShouldRun(t *testing.T) {
	h := nmDomain(t, "nodeManager:\n  restartOnFailure: true\n  restartBackoff: 200ms\n")
	h.MustRun("", "nodemanager", "-d")
	h.MustRun("", "startinstance", "-d", "-n", "s1", "-g", "g1")
	pid := pidOf(t, h, "instance-1")
	nmPID := pidOf(t, h, "nodemanager-1")
	if pid == 0 || nmPID == 0 {
		t.Fatalf("pids: instance %d, node manager %d", pid, nmPID)
	}
	syscall.Kill(nmPID, syscall.SIGKILL)
	syscall.Kill(pid, syscall.SIGKILL)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if r := h.Run("", "startinstance", "-s", "-q", "-n", "s1", "-g", "g1"); r.Code != 0 && syscall.Kill(nmPID, 0) != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the killed processes are still there")
		}
	}
	h.MustRun("", "nodemanager", "-d")
	var newPID int
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if r := h.Run("", "startinstance", "-s", "-q", "-n", "s1", "-g", "g1"); r.Code == 0 {
			if newPID = pidOf(t, h, "instance-1"); newPID != 0 && newPID != pid {
				break
			}
		}
	}
	if newPID == 0 || newPID == pid {
		t.Fatalf("the instance that should run was not started again; node manager log:\n%s", readFile(h.Path("logs", "nodemanager", "nodemanager.log")))
	}
	if log := readFile(h.Path("logs", "nodemanager", "nodemanager.log")); !strings.Contains(log, "instance should run but does not") {
		t.Errorf("no warning saying why it was started:\n%s", log)
	}
	// Stopped on purpose, then both restarted: it stays stopped.
	h.MustRun("", "startinstance", "-k", "-n", "s1", "-g", "g1")
	h.MustRun("", "nodemanager", "-k")
	h.MustRun("", "nodemanager", "-d")
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if r := h.Run("", "startinstance", "-s", "-q", "-n", "s1", "-g", "g1"); r.Code != 1 {
			t.Fatalf("started although it was stopped on purpose")
		}
	}
}

// duplicateKeys lists the keys of a JSON object line that occur more than
// once at its top level (encoding/json would silently keep the last).
func duplicateKeys(line string) []string {
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return []string{"(not an object)"}
	}
	seen := map[string]bool{}
	var dup []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return []string{"(bad JSON)"}
		}
		k, _ := tok.(string)
		if seen[k] {
			dup = append(dup, k)
		}
		seen[k] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return []string{"(bad JSON)"}
		}
	}
	return dup
}
