package tools_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
)

// The operator's client (gatehouse client) against a real ANM: login and
// the saved session, topology, start/status/stop of an instance through the
// session (so with the CSRF token), users, audit, logout; wrong password,
// an untrusted certificate and an unreachable URL.
func TestClientAgainstANM(t *testing.T) {
	a := startANM(t)
	h := a.h
	cfg := t.TempDir()
	h.Env = append(h.Env, "XDG_CONFIG_HOME="+cfg)
	apiURL := fmt.Sprintf("https://localhost:%d/api", a.port)
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("changeme-Secret1\n"), 0o600)

	// A group and an instance to look at (with curl, as in api_test.go).
	var group struct{ ID string }
	result(t, a.api("POST", "/api/topology/groups", `{"name":"API Group"}`, "-H", `If-Match: "1"`), 201, &group)
	tp, mp := gwtest.FreePort(t), gwtest.FreePort(t)
	result(t, a.api("POST", "/api/topology/services/"+group.ID, fmt.Sprintf(`{"name":"API Server","trafficPort":%d,"managementPort":%d}`, tp, mp), "-H", `If-Match: "2"`), 201, nil)

	// Login with the password on stdin; the session file is 0600.
	r := h.Run("changeme-Secret1\n", "client", "--url", apiURL, "--username", "admin", "login")
	if r.Code != 0 || !strings.Contains(r.Stdout, "logged in to "+apiURL+" as admin") {
		t.Fatalf("login: %s", r)
	}
	sf := filepath.Join(cfg, "gatehouse", "session.json")
	if fi, err := os.Stat(sf); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("session file: %v %v", fi, err)
	}

	// Topology with the saved session (no --url, no password).
	r = h.Run("", "client", "topology")
	if r.Code != 0 || !strings.Contains(r.Stdout, group.ID+" (API Group)") || !strings.Contains(r.Stdout, "instance-1") || !strings.Contains(r.Stdout, "stopped") {
		t.Fatalf("topology: %s", r)
	}
	if r = h.Run("", "client", "--json", "topology"); r.Code != 0 || !strings.Contains(r.Stdout, `"version": 3`) {
		t.Errorf("topology --json: %s", r)
	}

	// Status, start (a change: the session's CSRF token), stop.
	if r = h.Run("", "client", "status", group.ID, "instance-1"); r.Code != 0 || !strings.Contains(r.Stdout, "instance-1 (API Server) in "+group.ID+" (API Group): stopped") {
		t.Errorf("status: %s", r)
	}
	if r = h.Run("", "client", "start", group.ID, "instance-1"); r.Code != 0 || !strings.Contains(r.Stdout, ": running") {
		t.Fatalf("start: %s", r)
	}
	if r = h.Run("", "client", "stop", group.ID, "instance-1"); r.Code != 0 || !strings.Contains(r.Stdout, ": stopped") {
		t.Errorf("stop: %s", r)
	}
	if r = h.Run("", "client", "users"); r.Code != 0 || !strings.Contains(r.Stdout, "admin") {
		t.Errorf("users: %s", r)
	}
	if r = h.Run("", "client", "audit", "--action", "instance"); r.Code != 0 || !strings.Contains(r.Stdout, "start instance") || !strings.Contains(r.Stdout, "hash chain verified") {
		t.Errorf("audit: %s", r)
	}
	// HTTP Basic instead of the session, password from a file.
	if r = h.Run("", "client", "--username", "admin", "--password-file", pw, "status", group.ID, "instance-1"); r.Code != 0 || !strings.Contains(r.Stdout, ": stopped") {
		t.Errorf("status with Basic: %s", r)
	}

	// Logout ends the session and removes the file.
	if r = h.Run("", "client", "logout"); r.Code != 0 || !strings.Contains(r.Stdout, "logged out") {
		t.Errorf("logout: %s", r)
	}
	if _, err := os.Stat(sf); !os.IsNotExist(err) {
		t.Errorf("session file still there: %v", err)
	}
	if r = h.Run("", "client", "topology"); r.Code != 1 || !strings.Contains(r.Stderr, "not logged in") {
		t.Errorf("topology after logout: %s", r)
	}

	// Wrong password: exit 1 with the 401 message.
	r = h.Run("wrong-password\n", "client", "--url", apiURL, "--username", "admin", "login")
	if r.Code != 1 || !strings.Contains(r.Stderr, "wrong credentials (401)") {
		t.Errorf("wrong password: %s", r)
	}

	// No --cacert and no domain CA at the default path: the certificate
	// does not verify; the message says to pass --cacert and shows the
	// fingerprint.
	other := gwtest.NewHome(t)
	other.Env = append(other.Env, "XDG_CONFIG_HOME="+t.TempDir())
	r = other.Run("changeme-Secret1\n", "client", "--url", apiURL, "--username", "admin", "login")
	if r.Code != 1 || !strings.Contains(r.Stderr, "does not verify") || !strings.Contains(r.Stderr, "--cacert") || !strings.Contains(r.Stderr, "SHA-256 fingerprint") {
		t.Errorf("untrusted certificate: %s", r)
	}
	t.Logf("untrusted: %s", r.Stderr)
	// The same with --cacert works.
	if r = other.Run("changeme-Secret1\n", "client", "--url", apiURL, "--cacert", a.ca, "--username", "admin", "login"); r.Code != 0 {
		t.Errorf("login with --cacert: %s", r)
	}

	// Unreachable: the message names the URL.
	dead := fmt.Sprintf("https://127.0.0.1:%d/api", gwtest.FreePort(t))
	r = h.Run("x\n", "client", "--url", dead, "--username", "admin", "login")
	if r.Code != 1 || !strings.Contains(r.Stderr, "cannot reach the Admin Node Manager at "+dead) {
		t.Errorf("unreachable: %s", r)
	}

	t.Logf("unreachable: %s", r.Stderr)
	// Wrong invocations.
	if r = h.Run("", "client", "start", group.ID); r.Code != 2 {
		t.Errorf("start with one argument: %s", r)
	}
}
