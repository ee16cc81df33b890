package tools_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
)

// gatehouse client cluster: a group of two running instances on a real
// ANM, their buses formed from the topology, each seeing the other up;
// one group by name; an unknown group refused; a stopped instance shown.
func TestClientCluster(t *testing.T) {
	a := startANM(t)
	h := a.h
	h.Env = append(h.Env, "XDG_CONFIG_HOME="+t.TempDir())
	apiURL := fmt.Sprintf("https://localhost:%d/api", a.port)
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("changeme-Secret1\n"), 0o600)
	wantClient(t, "login", h.Run("", "client", "--url", apiURL, "--username", "admin", "--password-file", pw, "login"), 0, "logged in")
	wantClient(t, "group create", h.Run("", "client", "group", "create", "Bus Group"), 0, "created group group-2")
	for i, name := range []string{"One", "Two"} {
		tp, mp := gwtest.FreePort(t), gwtest.FreePort(t)
		wantClient(t, "instance create", h.Run("", "client", "instance", "create", "Bus Group", name, "--traffic-port", strconv.Itoa(tp), "--management-port", strconv.Itoa(mp)), 0, fmt.Sprintf("created instance instance-%d", i+1))
		wantClient(t, "start", h.Run("", "client", "start", "Bus Group", name), 0, ": running")
		t.Cleanup(func() { h.Run("", "client", "stop", "Bus Group", name) })
	}
	// The node manager tells each the other's route listener; wait for
	// both buses to see their peer.
	var r gwtest.Result
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if r = h.Run("", "client", "cluster"); r.Code == 0 && strings.Count(r.Stdout, " up ") == 2 {
			break
		}
	}
	if r.Code != 0 || strings.Count(r.Stdout, " up ") != 2 || !strings.Contains(r.Stdout, "1/1 instance-2") || !strings.Contains(r.Stdout, "1/1 instance-1") {
		t.Fatalf("client cluster with two instances up: %s", r)
	}
	wantClient(t, "client cluster GROUP", h.Run("", "client", "cluster", "Bus Group"), 0, "One (instance-1)", "Two (instance-2)")
	wantClient(t, "client cluster --json", h.Run("", "client", "cluster", "--json"), 0, `"instanceId": "instance-1"`, `"state": "up"`)
	wantClient(t, "client cluster of an unknown group", h.Run("", "client", "cluster", "Nope"), 1, `no group with the id or name "Nope"`)
	wantClient(t, "stop", h.Run("", "client", "stop", "Bus Group", "Two"), 0)
	r = h.Run("", "client", "cluster", "Bus Group")
	if !strings.Contains(r.Stdout, "Two (instance-2)") || !strings.Contains(r.Stdout, "stopped") {
		t.Errorf("client cluster with an instance stopped: %s", r)
	}
}
