package tools_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
)

// nmHost is one host of a test domain: an install directory whose node
// manager listens on its own loopback address.
type nmHost struct {
	t    *testing.T
	h    *gwtest.Home
	ip   string
	port int
}

func (n *nmHost) base() string { return fmt.Sprintf("https://%s:%d", n.ip, n.port) }

// curl runs the real curl against this host's node manager, trusting the
// domain CA of ca (an install directory).
func (n *nmHost) curl(ca *gwtest.Home, args ...string) curlResult {
	n.t.Helper()
	base := []string{"-sS", "--max-time", "90", "-o", "-", "-w", "\n%{http_code}", "--cacert", ca.Path("groups", "certs", "domaincert.pem")}
	for _, a := range args {
		if strings.HasPrefix(a, "/nm/") || strings.HasPrefix(a, "/api/") {
			a = n.base() + a
		}
		base = append(base, a)
	}
	cmd := exec.Command("curl", base...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	r := curlResult{stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.exit = ee.ExitCode()
		return r
	} else if err != nil {
		n.t.Fatal(err)
	}
	s := string(out)
	i := strings.LastIndexByte(s, '\n')
	r.body, r.code = s[:i], atoi(s[i+1:])
	return r
}

func (n *nmHost) api(method, path, body string) curlResult {
	n.t.Helper()
	args := []string{"-u", adminCreds, "-X", method}
	if body != "" {
		args = append(args, "-H", "Content-Type: application/json", "--data-binary", body)
	}
	return n.curl(n.h, append(args, path)...)
}

func topologyVersion(t *testing.T, h *gwtest.Home) int64 {
	t.Helper()
	data, err := os.ReadFile(h.Path("groups", "topology.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ Version int64 }
	json.Unmarshal(data, &v)
	return v.Version
}

// inStep waits until both hosts hold the same topology version.
func inStep(t *testing.T, what string, a, b *gwtest.Home) int64 {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		va, vb := topologyVersion(t, a), topologyVersion(t, b)
		if va == vb {
			return va
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: ANM topology version %d, second host %d", what, va, vb)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A second host with real processes: an ANM on 127.0.0.2 and a host on
// 127.0.0.3 joined with managedomain -a (a wrong fingerprint refused);
// instances created, started, read through the router and stopped on both
// hosts through the API; the topology in step after each change; the second
// node manager down → 502 naming the host and "unknown"; options 14 to 16;
// certificates not from the domain CA refused on /nm.
// adminPasswordFile writes the test domain's admin password to a file.
func adminPasswordFile(t *testing.T) string {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatalf("curl is needed (scripts/test installs it): %v", err)
	}
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("changeme-Secret1\n"), 0o600)
	return pw
}

// startANMHost makes a domain whose first host's node manager (the ANM)
// listens on ip, starts it, and returns it with the CA's fingerprint.
func startANMHost(t *testing.T, ip, pw string) (*nmHost, string) {
	t.Helper()
	anm := &nmHost{t: t, h: gwtest.NewHome(t), ip: ip}
	anm.port = gwtest.FreePortOn(t, anm.ip)
	r := anm.h.MustRun("", "managedomain", "-i", "--domain_name", "D", "--username", "admin", "--password_file", pw,
		"--host_name", "first", "--nm_address", anm.ip, "--port", strconv.Itoa(anm.port))
	m := regexp.MustCompile(`SHA-256 fingerprint ([0-9A-F:]+)`).FindStringSubmatch(r.Stdout)
	if m == nil {
		t.Fatalf("no fingerprint in: %s", r.Stdout)
	}
	t.Cleanup(func() { anm.h.Run("", "nodemanager", "-k", "-q") })
	anm.h.MustRun("", "nodemanager", "-d")
	return anm, m[1]
}

// newHostOn is an install directory for a host whose node manager will
// listen on ip, and the managedomain -a command that joins it to anm's
// domain as "second" (without --anm_fingerprint).
func newHostOn(t *testing.T, ip string, anm *nmHost, pw string) (*nmHost, []string) {
	n := &nmHost{t: t, h: gwtest.NewHome(t), ip: ip}
	n.port = gwtest.FreePortOn(t, n.ip)
	return n, []string{"managedomain", "-a", "--anm_host", fmt.Sprintf("%s:%d", anm.ip, anm.port), "--username", "admin", "--password_file", pw,
		"--host_name", "second", "--nm_address", n.ip, "--port", strconv.Itoa(n.port)}
}

func TestSecondHost(t *testing.T) {
	pw := adminPasswordFile(t)
	anm, fingerprint := startANMHost(t, "127.0.0.2", pw)
	second, join := newHostOn(t, "127.0.0.3", anm, pw)

	// A wrong fingerprint: refused, nothing written.
	wrong := strings.Repeat("AB:", 31) + "AB"
	r := second.h.Run("", append(join, "--anm_fingerprint", wrong)...)
	if r.Code != 1 || !strings.Contains(r.Stderr, "fingerprint") || !strings.Contains(r.Stdout, fingerprint) {
		t.Fatalf("wrong fingerprint: %s", r)
	}
	if _, err := os.Stat(second.h.Path("groups", "topology.json")); err == nil {
		t.Fatal("a topology was written although the fingerprint was refused")
	}
	// Not confirmed on standard input: refused.
	if r := second.h.Run("no\n", join...); r.Code != 1 || !strings.Contains(r.Stderr, "not trusted") {
		t.Fatalf("not confirmed: %s", r)
	}

	// The join.
	r = second.h.MustRun("", append(join, "--anm_fingerprint", strings.ToLower(strings.ReplaceAll(fingerprint, ":", "")))...)
	if !strings.Contains(r.Stdout, "as host \"second\" (host-2) with node manager nodemanager-2") {
		t.Errorf("join output: %s", r.Stdout)
	}
	if _, err := os.Stat(second.h.Path("groups", "certs", "private")); err == nil {
		t.Error("the joined host has groups/certs/private; the CA key must stay on the ANM's host")
	}
	if fi, err := os.Stat(second.h.Path("system", "conf", "certs", "private", "nodemanager-key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("node manager key: %v %v", fi, err)
	}
	conf, _ := os.ReadFile(second.h.Path("system", "conf", "nodemanager.yaml"))
	for _, want := range []string{"hostID: host-2", "nodeManagerID: nodemanager-2", "address: 127.0.0.3", "anmAddress: 127.0.0.2", "anmPort: " + strconv.Itoa(anm.port)} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("nodemanager.yaml lacks %q:\n%s", want, conf)
		}
	}
	if _, err := os.Stat(second.h.Path("posix", "bin", "nodemanager")); err != nil {
		t.Errorf("binary links: %v", err)
	}
	if r := second.h.Run("", append(join, "--anm_fingerprint", fingerprint)...); r.Code != 1 || !strings.Contains(r.Stderr, "already belongs to a domain") {
		t.Errorf("second -a: %s", r)
	}
	t.Cleanup(func() { second.h.Run("", "nodemanager", "-k", "-q") })
	second.h.MustRun("", "nodemanager", "-d")
	inStep(t, "the join", anm.h, second.h)

	// A group, an instance on each host.
	var group struct{ ID string }
	result(t, anm.api("POST", "/api/topology/groups", `{"name":"G"}`), 201, &group)
	inStep(t, "create group", anm.h, second.h)
	tp1, mp1, tp2, mp2 := gwtest.FreePort(t), gwtest.FreePort(t), gwtest.FreePort(t), gwtest.FreePort(t)
	var svc struct{ ID, HostID, Status string }
	result(t, anm.api("POST", "/api/topology/services/"+group.ID, fmt.Sprintf(`{"name":"one","hostID":"host-1","trafficPort":%d,"managementPort":%d}`, tp1, mp1)), 201, &svc)
	inStep(t, "create instance on host-1", anm.h, second.h)
	result(t, anm.api("POST", "/api/topology/services/"+group.ID, fmt.Sprintf(`{"name":"two","hostID":"host-2","trafficPort":%d,"managementPort":%d}`, tp2, mp2)), 201, &svc)
	if svc.ID != "instance-2" || svc.HostID != "host-2" {
		t.Fatalf("instance on host-2: got %+v", svc)
	}
	inStep(t, "create instance on host-2", anm.h, second.h)

	// Topology changes on the joined host are refused, naming the ANM, and
	// change nothing on either host (#15: they split the topology).
	before := topologyVersion(t, second.h)
	for _, args := range [][]string{
		{"managedomain", "-c", "-n", "local", "-g", "G", "--traffic_port", strconv.Itoa(gwtest.FreePort(t)), "--management_port", strconv.Itoa(gwtest.FreePort(t))},
		{"managedomain", "--delete_instance", "-g", "G", "-n", "two"},
		{"managedomain", "--rename_group", "-g", "G", "--new_name", "H"},
		{"managedomain", "--delete_group", "-g", "G"},
	} {
		r := second.h.Run("", args...)
		if r.Code != 1 || !strings.Contains(r.Stderr, fmt.Sprintf("joined the domain of the Admin Node Manager at 127.0.0.2:%d", anm.port)) || !strings.Contains(r.Stderr, "gatehouse client --url") {
			t.Errorf("%v on the joined host: %s", args[1], r)
		}
	}
	if v := topologyVersion(t, second.h); v != before || topologyVersion(t, anm.h) != before {
		t.Errorf("topology versions after the refused changes: host %d, ANM %d, want %d", v, topologyVersion(t, anm.h), before)
	}

	// A host ahead of the ANM (an older version wrote it locally) takes the
	// ANM's topology back with --reset_topology (menu 17); the ANM's own
	// host refuses it.
	tf := second.h.Path("groups", "topology.json")
	orig, _ := os.ReadFile(tf)
	var doc map[string]any
	json.Unmarshal(orig, &doc)
	doc["version"] = float64(before + 5)
	ahead, _ := json.Marshal(doc)
	os.WriteFile(tf, ahead, 0o644)
	if r := second.h.Run("", "managedomain", "--sync_topology"); r.Code == 0 {
		t.Logf("sync_topology with the host ahead: %s", r) // the ANM cannot push an older version
	}
	r = second.h.MustRun("", "managedomain", "--reset_topology")
	if !strings.Contains(r.Stdout, fmt.Sprintf("Reset the local topology (version %d) to the Admin Node Manager's (version %d)", before+5, before)) {
		t.Errorf("reset_topology: %s", r)
	}
	if v := topologyVersion(t, second.h); v != before {
		t.Errorf("after reset_topology the host has version %d, want the ANM's %d", v, before)
	}
	if r := second.h.MustRun("", "managedomain", "--reset_topology"); !strings.Contains(r.Stdout, "nothing to reset") {
		t.Errorf("reset_topology again: %s", r)
	}
	wantFail(t, anm.h.Run("", "managedomain", "--reset_topology"), 1, "is the Admin Node Manager")
	if _, err := os.Stat(second.h.Path("groups", group.ID, "instance-2", "conf", "instance.yaml")); err != nil {
		t.Errorf("instance files on the second host: %v", err)
	}
	if _, err := os.Stat(second.h.Path("groups", group.ID, "instance-2", "conf", "certs", "instance.pem")); err != nil {
		t.Errorf("instance certificate on the second host: %v", err)
	}

	// Start, health through the router, stop: both hosts.
	for _, id := range []string{"instance-1", "instance-2"} {
		var st struct{ Status string }
		result(t, anm.api("POST", "/api/management/start/"+group.ID+"/"+id, ""), 200, &st)
		if st.Status != "running" {
			t.Errorf("start %s: got %+v", id, st)
		}
		if r := anm.curl(anm.h, "-u", adminCreds, "/api/router/service/"+id+"/healthcheck"); r.code != 200 || r.body != "<status>ok</status>" {
			t.Errorf("%s health through the router: got %d %q %s", id, r.code, r.body, r.stderr)
		}
	}
	var topo struct {
		Groups []struct {
			Services []struct{ ID, Status string } `json:"services"`
		} `json:"groups"`
	}
	statusOf := func(id string) string {
		result(t, anm.curl(anm.h, "-u", adminCreds, "/api/topology"), 200, &topo)
		for _, g := range topo.Groups {
			for _, s := range g.Services {
				if s.ID == id {
					return s.Status
				}
			}
		}
		return ""
	}
	if st := statusOf("instance-2"); st != "running" {
		t.Errorf("instance-2 in the topology: got %q, want running", st)
	}
	if st := statusOf("nodemanager-2"); st != "running" {
		t.Errorf("nodemanager-2 in the topology: got %q, want running", st)
	}
	for _, id := range []string{"instance-1", "instance-2"} {
		var st struct{ Status string }
		result(t, anm.api("POST", "/api/management/stop/"+group.ID+"/"+id, ""), 200, &st)
		if st.Status != "stopped" {
			t.Errorf("stop %s: got %+v", id, st)
		}
	}

	// Options 14 and 15 on both hosts: in sync.
	for _, h := range []*gwtest.Home{anm.h, second.h} {
		if r := h.MustRun("", "managedomain", "--check_topology"); !strings.Contains(r.Stdout, "All topologies are in sync") {
			t.Errorf("check_topology: %s", r)
		}
		if r := h.MustRun("", "managedomain", "--compare_topology"); !strings.Contains(r.Stdout, "They are the same") {
			t.Errorf("compare_topology: %s", r)
		}
	}

	// Node manager certificates: only the domain CA's.
	rogue, err := pki.NewCA("rogue")
	if err != nil {
		t.Fatal(err)
	}
	kp, err := rogue.IssueKeyPair("Gatehouse Node Manager nodemanager-1 (host-1)", []string{"localhost"}, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rc, rk := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	kp.Save(home.Home{Dir: dir}, rc, rk)
	if r := second.curl(anm.h, "--cert", rc, "--key", rk, "/nm/status"); r.exit == 0 {
		t.Errorf("a node manager certificate from another CA was let in: %d %s", r.code, r.body)
	}
	if r := second.curl(anm.h, "/nm/status"); r.code != 403 {
		t.Errorf("/nm without a client certificate: got %d %s", r.code, r.body)
	}
	own := []string{"--cert", second.h.Path("system", "conf", "certs", "nodemanager.pem"), "--key", second.h.Path("system", "conf", "certs", "private", "nodemanager-key.pem")}
	if r := second.curl(anm.h, append(own, "/nm/status")...); r.code != 200 {
		t.Errorf("/nm/status with a domain certificate: got %d %s %s", r.code, r.body, r.stderr)
	}
	// A domain certificate that is not the ANM's cannot push a topology.
	if r := second.curl(anm.h, append(own, "-X", "PUT", "--data-binary", "{}", "/nm/topology")...); r.code != 403 || !strings.Contains(r.body, "Admin Node Manager") {
		t.Errorf("push with a non-ANM certificate: got %d %s", r.code, r.body)
	}

	// The second node manager down: 502 naming the host, state unknown, and
	// a change it misses.
	second.h.MustRun("", "nodemanager", "-k")
	r2 := anm.api("POST", "/api/management/start/"+group.ID+"/instance-2", "")
	if r2.code != 502 || !strings.Contains(r2.body, "host-2") || !strings.Contains(r2.body, `\"second\"`) {
		t.Errorf("start with the host's node manager down: got %d %s", r2.code, r2.body)
	}
	if st := statusOf("instance-2"); st != "unknown" {
		t.Errorf("instance-2 with its node manager down: got %q, want unknown", st)
	}
	if st := statusOf("instance-1"); st != "stopped" {
		t.Errorf("instance-1: got %q, want stopped", st)
	}
	result(t, anm.api("POST", "/api/topology/groups", `{"name":"Missed"}`), 201, nil)
	if r := anm.h.Run("", "managedomain", "--check_topology"); r.Code != 1 || !strings.Contains(r.Stdout, "UNREACHABLE") {
		t.Errorf("check_topology with a host down: %s", r)
	}
	if r := second.h.Run("", "managedomain", "--compare_topology"); r.Code != 1 || !strings.Contains(r.Stdout, `+ group group-3 {"name":"Missed"}`) {
		t.Errorf("compare_topology with a missed change: %s", r)
	}
	// Back up: option 16 brings it in step.
	second.h.MustRun("", "nodemanager", "-d")
	if r := second.h.MustRun("", "managedomain", "--sync_topology"); !strings.Contains(r.Stdout, "All topologies are in sync") {
		t.Errorf("sync_topology: %s", r)
	}
	inStep(t, "sync", anm.h, second.h)
	if r := second.h.MustRun("", "managedomain", "--compare_topology"); !strings.Contains(r.Stdout, "They are the same") {
		t.Errorf("compare after sync: %s", r)
	}
}
