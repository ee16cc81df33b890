package tools_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

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
	// Names instead of ids (#15), and what an unknown or ambiguous name says.
	if r = h.Run("", "client", "status", "API Group", "API Server"); r.Code != 0 || !strings.Contains(r.Stdout, "instance-1 (API Server) in "+group.ID+" (API Group): stopped") {
		t.Errorf("status by names: %s", r)
	}
	wantClient(t, "unknown instance name", h.Run("", "client", "status", "API Group", "Nope"), 1, `no instance with the id or name "Nope" in group `+group.ID+` (API Group); the instances are: instance-1 (API Server)`)
	wantClient(t, "unknown group name", h.Run("", "client", "start", "Nope", "API Server"), 1, `no group with the id or name "Nope"`, group.ID+" (API Group)")

	if r = h.Run("", "client", "start", group.ID, "instance-1"); r.Code != 0 || !strings.Contains(r.Stdout, ": running") {
		t.Fatalf("start: %s", r)
	}
	if !strings.Contains(r.Stdout, "inService:") {
		t.Errorf("start: no inService line: %s", r)
	}
	// Killed: status says why, without --json (#15).
	if pid := pidOf(t, h, "instance-1"); pid == 0 || syscall.Kill(pid, syscall.SIGKILL) != nil {
		t.Fatalf("killing instance-1 (pid %d)", pid)
	}
	deadline := time.Now().Add(15 * time.Second)
	for r = h.Run("", "client", "status", group.ID, "instance-1"); !strings.Contains(r.Stdout, "lastExit:") && time.Now().Before(deadline); r = h.Run("", "client", "status", group.ID, "instance-1") {
		time.Sleep(200 * time.Millisecond)
	}
	if !regexp.MustCompile(`lastExit: +killed by signal 9 \(SIGKILL\)`).MatchString(r.Stdout) {
		t.Errorf("status after kill -9: %s", r)
	}
	h.Run("", "client", "start", group.ID, "instance-1")
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

	// The same ANM for the changes: log in again as admin.
	if r = h.Run("changeme-Secret1\n", "client", "--url", apiURL, "--username", "admin", "login"); r.Code != 0 {
		t.Fatalf("login again: %s", r)
	}
	t.Run("topology changes", func(t *testing.T) { testClientTopologyChanges(t, h) })
	t.Run("users and 403", func(t *testing.T) { testClientUsers(t, h, apiURL) })
	t.Run("usage", func(t *testing.T) { testClientUsage(t, h, group.ID) })
}

// runClientIn runs the client with its session in the config directory cfg.
func runClientIn(h *gwtest.Home, cfg, stdin string, args ...string) gwtest.Result {
	h.T.Helper()
	saved := h.Env
	h.Env = append(slices.Clip(saved), "XDG_CONFIG_HOME="+cfg)
	defer func() { h.Env = saved }()
	return h.Run(stdin, args...)
}

// wantClient checks a run's exit code and that its output holds every part.
func wantClient(t *testing.T, what string, r gwtest.Result, code int, parts ...string) {
	t.Helper()
	if r.Code != code {
		t.Errorf("%s: got exit %d, want %d: %s", what, r.Code, code, r)
		return
	}
	for _, p := range parts {
		if !strings.Contains(r.Stdout+r.Stderr, p) {
			t.Errorf("%s: got no %q in the output: %s", what, p, r)
		}
	}
}

var clientCreatedID = regexp.MustCompile(`^created \w+ ([\w-]+) `)

// A group and an instance created, started, stopped and deleted through
// the admin's session; host create, rename and delete; a stale --version
// (409), a running instance's delete (409), a gone group (404), a bad name
// (400).
func testClientTopologyChanges(t *testing.T, h *gwtest.Home) {
	r := h.Run("", "client", "group", "create", "Client Group")
	wantClient(t, "group create", r, 0, "created group group-", "(Client Group) (topology version ")
	m := clientCreatedID.FindStringSubmatch(r.Stdout)
	if m == nil {
		t.Fatalf("group create: no id in %q", r.Stdout)
	}
	gid := m[1]
	r = h.Run("", "client", "group", "create", "Other", "--version", "1")
	wantClient(t, "group create with a stale version", r, 1, "conflict (409): the topology is no longer at version 1", "gatehouse client topology")
	t.Logf("409: %s", r.Stderr)
	wantClient(t, "group create of an existing name", h.Run("", "client", "group", "create", "Client Group"), 1, "conflict (409)", "Client Group")
	wantClient(t, "group create with a bad name", h.Run("", "client", "group", "create", ""), 1, "refused (400): ")

	tp, mp := gwtest.FreePort(t), gwtest.FreePort(t)
	r = h.Run("", "client", "instance", "create", gid, "Client Server", "--traffic-port", strconv.Itoa(tp), "--management-port", strconv.Itoa(mp))
	wantClient(t, "instance create", r, 0, "created instance instance-", fmt.Sprintf("in %s on host-", gid), fmt.Sprintf("traffic port %d, management port %d: stopped", tp, mp))
	if m = clientCreatedID.FindStringSubmatch(r.Stdout); m == nil {
		t.Fatalf("instance create: no id in %q", r.Stdout)
	}
	sid := m[1]
	wantClient(t, "topology", h.Run("", "client", "topology"), 0, gid+" (Client Group)", sid, "Client Server", fmt.Sprintf("%d/%d", tp, mp))
	wantClient(t, "start", h.Run("", "client", "start", gid, sid), 0, ": running")
	wantClient(t, "status", h.Run("", "client", "status", gid, sid), 0, sid+" (Client Server) in "+gid+" (Client Group): running")
	wantClient(t, "instance delete while it runs", h.Run("", "client", "instance", "delete", gid, sid), 1, "conflict (409)")
	wantClient(t, "stop", h.Run("", "client", "stop", gid, sid), 0, ": stopped")
	wantClient(t, "instance delete", h.Run("", "client", "instance", "delete", gid, sid), 0, "deleted instance "+sid+" (topology version ")
	wantClient(t, "group delete", h.Run("", "client", "group", "delete", gid), 0, "deleted group "+gid)
	wantClient(t, "group delete again", h.Run("", "client", "group", "delete", gid), 1, "not found (404)", gid)
	if r = h.Run("", "client", "topology"); strings.Contains(r.Stdout, "Client Group") {
		t.Errorf("the group is still in the topology: %s", r)
	}

	r = h.Run("", "client", "host", "create", "client-host", "--json")
	wantClient(t, "host create --json", r, 0, `"name": "client-host"`)
	var host struct{ ID string }
	if err := json.Unmarshal([]byte(r.Stdout), &host); err != nil || host.ID == "" {
		t.Fatalf("host create --json: %v: %q", err, r.Stdout)
	}
	wantClient(t, "host rename", h.Run("", "client", "host", "rename", host.ID, "client-host-2"), 0, "renamed host "+host.ID+" to client-host-2")
	wantClient(t, "host delete", h.Run("", "client", "host", "delete", host.ID), 0, "deleted host "+host.ID)
}

// A user with the Operator role created by the admin; logged in (its own
// session) it reads the topology but gets a 403 naming the missing
// permission for a change; its roles and password changed; deleted.
func testClientUsers(t *testing.T, h *gwtest.Home, apiURL string) {
	dir := t.TempDir()
	opPW := filepath.Join(dir, "op-pw")
	os.WriteFile(opPW, []byte("operator-Secret1\n"), 0o600)
	wantClient(t, "user create", h.Run("", "client", "user", "create", "op1", "--role", "API Server Operator", "--new-password-file", opPW), 0,
		"created user op1 with the roles: API Server Operator")
	wantClient(t, "user create again", h.Run("", "client", "user", "create", "op1", "--role", "API Server Operator", "--new-password-file", opPW), 1, "conflict (409)", "op1")
	wantClient(t, "user create with a short password", h.Run("short\n", "client", "user", "create", "op9", "--role", "API Server Operator"), 1, "refused (400)", "password")
	wantClient(t, "user create with an unknown role", h.Run("", "client", "user", "create", "op9", "--role", "Janitor", "--new-password-file", opPW), 1,
		"refused (400)", `unknown role "Janitor"`)
	wantClient(t, "users", h.Run("", "client", "users"), 0, "op1", "API Server Operator")

	// The operator's session, in its own config directory.
	opCfg := t.TempDir()
	wantClient(t, "operator login", runClientIn(h, opCfg, "operator-Secret1\n", "client", "--url", apiURL, "--username", "op1", "login"), 0, "as op1")
	wantClient(t, "operator topology", runClientIn(h, opCfg, "", "client", "topology"), 0, "domain ")
	r := runClientIn(h, opCfg, "", "client", "group", "create", "Not Allowed")
	wantClient(t, "operator group create", r, 1, "forbidden (403)", `user "op1"`, "API Server Operator", "missing permission", "topology.write")
	t.Logf("403: %s", r.Stderr)
	wantClient(t, "operator user delete", runClientIn(h, opCfg, "", "client", "user", "delete", "admin"), 1, "forbidden (403)", "users.write")

	// Roles replaced and a new password from stdin (the admin's session).
	wantClient(t, "user update", h.Run("operator-Secret2\n", "client", "user", "update", "op1", "--role", "API Server Operator", "--role", "Deployer", "--new-password"), 0,
		"changed user op1 (roles: API Server Operator, Deployer; password changed)")
	wantClient(t, "operator login with the old password", runClientIn(h, opCfg, "operator-Secret1\n", "client", "--url", apiURL, "--username", "op1", "login"), 1, "wrong credentials (401)")
	// HTTP Basic: the caller's password and the new one, one line each of stdin.
	wantClient(t, "user update with Basic", runClientIn(h, t.TempDir(), "changeme-Secret1\noperator-Secret3\n", "client", "--url", apiURL, "--username", "admin", "user", "update", "op1", "--new-password"), 0,
		"changed user op1 (roles: API Server Operator, Deployer; password changed)")
	wantClient(t, "operator login with the new password", runClientIn(h, opCfg, "operator-Secret3\n", "client", "--url", apiURL, "--username", "op1", "login"), 0, "as op1")
	wantClient(t, "user update of nobody", h.Run("", "client", "user", "update", "nobody", "--role", "Deployer"), 1, "not found (404)", "nobody")

	wantClient(t, "user delete", h.Run("", "client", "user", "delete", "op1"), 0, "deleted user op1")
	wantClient(t, "user delete again", h.Run("", "client", "user", "delete", "op1"), 1, "not found (404)")
	wantClient(t, "the deleted user's session", runClientIn(h, opCfg, "", "client", "topology"), 1, "(401)")
}

// Wrong invocations exit 2 and say what is accepted; --help per verb.
func testClientUsage(t *testing.T, h *gwtest.Home, gid string) {
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no verb", nil, "want a verb"},
		{"unknown verb", []string{"frobnicate"}, `unknown verb "frobnicate"`},
		{"noun without action", []string{"group"}, "group wants one of: create, delete"},
		{"unknown action", []string{"host", "explode", "x"}, "host takes: create, rename, delete"},
		{"start with one argument", []string{"start", gid}, "start wants GROUP INSTANCE"},
		{"instance create without a name", []string{"instance", "create", gid}, "instance create wants GROUP NAME"},
		{"too many arguments", []string{"group", "delete", "a", "b"}, "group delete wants GROUP"},
		{"option of another verb", []string{"users", "--role", "Deployer"}, "--role is not an option of users; it is for: user create, user update"},
		{"version not a number", []string{"group", "create", "G", "--version", "x"}, `--version "x"`},
		{"port out of range", []string{"instance", "create", gid, "I", "--traffic-port", "70000"}, `--traffic-port "70000"`},
		{"user create without a role", []string{"user", "create", "u"}, "at least one --role"},
		{"user update without a change", []string{"user", "update", "u"}, "user update wants --role"},
		{"unknown option", []string{"topology", "--colour"}, "unknown option --colour"},
		{"password file without a user", []string{"user", "create", "u", "--role", "Deployer", "--password-file", "f"}, "the password of the user being changed is --new-password-file"},
	} {
		r := h.Run("", append([]string{"client"}, tt.args...)...)
		wantClient(t, tt.name, r, 2, tt.want)
	}
	wantClient(t, "verb --help", h.Run("", "client", "instance", "create", "--help"), 0,
		"usage: gatehouse client [OPTIONS] instance create GROUP NAME", "--traffic-port N", "--version N", "POST /api/topology/services/{groupID}")
	wantClient(t, "help VERB", h.Run("", "client", "help", "user", "create"), 0, "--new-password-file F")
	wantClient(t, "--help", h.Run("", "client", "--help"), 0, "host create NAME", "user delete NAME", "--insecure-skip-tls-verify")
}
