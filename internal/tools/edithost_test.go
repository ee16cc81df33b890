package tools_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
)

// nmConfPort is a port setting (port or anmPort) of h's nodemanager.yaml.
func nmConfPort(t *testing.T, h *gwtest.Home, key string) int {
	t.Helper()
	data, err := os.ReadFile(h.Path("system", "conf", "nodemanager.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, key+": "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// nmPortInTopology is the management port of node manager id in h's
// topology.
func nmPortInTopology(t *testing.T, h *gwtest.Home, id string) int {
	t.Helper()
	for _, g := range loadTopology(t, h).Groups {
		for _, s := range g.Services {
			if s.ID == id {
				return s.ManagementPort
			}
		}
	}
	t.Fatalf("no %s in the topology of %s", id, h.Dir)
	return 0
}

type instanceState struct {
	Status string
	PID    int
}

// Menu 2 against real processes (docs/managedomain.md, --edit_host): an
// ANM on 127.0.0.2 and a second host on 127.0.0.3 with a running instance.
// The second host's node manager moves to another port (a port in use
// refused naming the pid, an instance's port and an out-of-range port
// refused, nothing changed), its instance keeps running with the same pid;
// the ANM's own port moves, the new address is printed, the second host's
// anmPort follows and options 14 on both hosts say in sync; an instance is
// stopped and started through the ANM on its new port; every change is in
// the audit log.
func TestEditHostNodeManagerPort(t *testing.T) {
	pw := adminPasswordFile(t)
	anm, fingerprint := startANMHost(t, "127.0.0.2", pw)
	second, join := newHostOn(t, "127.0.0.3", anm, pw)
	second.h.MustRun("", append(join, "--anm_fingerprint", fingerprint)...)
	t.Cleanup(func() { second.h.Run("", "nodemanager", "-k", "-q") })
	second.h.MustRun("", "nodemanager", "-d")
	inStep(t, "the join", anm.h, second.h)
	cred := []string{"--username", "admin", "--password_file", pw}
	edit := func(h *gwtest.Home, args ...string) gwtest.Result {
		return h.Run("", append(append([]string{"managedomain", "--edit_host"}, args...), cred...)...)
	}

	var group struct{ ID string }
	result(t, anm.api("POST", "/api/topology/groups", `{"name":"G"}`), 201, &group)
	tp2, mp2 := gwtest.FreePort(t), gwtest.FreePort(t)
	var svc struct{ ID string }
	result(t, anm.api("POST", "/api/topology/services/"+group.ID, fmt.Sprintf(`{"name":"two","hostID":"host-2","trafficPort":%d,"managementPort":%d}`, tp2, mp2)), 201, &svc)
	var st instanceState
	result(t, anm.api("POST", "/api/management/start/"+group.ID+"/"+svc.ID, ""), 200, &st)
	if st.Status != "running" || st.PID == 0 {
		t.Fatalf("start instance-2: got %+v", st)
	}
	pid := st.PID
	inStep(t, "the instance", anm.h, second.h)

	// Refusals: nothing changes on either host.
	before := topologyVersion(t, anm.h)
	busy, err := net.Listen("tcp", "127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	wantFail(t, edit(anm.h, "--host", "second", "--nm_port", strconv.Itoa(busyPort)), 1, fmt.Sprintf("port %d on host host-2 is in use: held by pid %d", busyPort, os.Getpid()), "nothing was changed")
	wantFail(t, edit(anm.h, "--host", "second", "--nm_port", strconv.Itoa(mp2)), 1, fmt.Sprintf("port %d is a port of instance \"two\" (%s)", mp2, svc.ID))
	wantFail(t, edit(anm.h, "--host", "second", "--nm_port", "70000"), 2, "not a port")
	wantFail(t, edit(anm.h, "--host", "second", "--nm_port", "0"), 2, "not a port")
	if v := topologyVersion(t, anm.h); v != before {
		t.Errorf("topology version after the refusals: got %d, want %d", v, before)
	}
	if p := nmConfPort(t, second.h, "port"); p != second.port {
		t.Errorf("second host's nodemanager.yaml port after the refusals: got %d, want %d", p, second.port)
	}

	// The second host's node manager moves; its instance keeps running.
	newPort := gwtest.FreePortOn(t, second.ip)
	r := edit(anm.h, "--host", "second", "--nm_port", strconv.Itoa(newPort))
	if r.Code != 0 || !strings.Contains(r.Stdout, fmt.Sprintf("node manager nodemanager-2 of host host-2 now listens on port %d (the other node managers reach it at 127.0.0.3:%d)", newPort, newPort)) {
		t.Fatalf("edit_host --nm_port for the second host: %s", r)
	}
	oldPort := second.port
	second.port = newPort
	inStep(t, "the second host's port change", anm.h, second.h)
	for _, h := range []*gwtest.Home{anm.h, second.h} {
		if p := nmPortInTopology(t, h, "nodemanager-2"); p != newPort {
			t.Errorf("nodemanager-2's port in the topology of %s: got %d, want %d", h.Dir, p, newPort)
		}
	}
	if p := nmConfPort(t, second.h, "port"); p != newPort {
		t.Errorf("second host's nodemanager.yaml port: got %d, want %d", p, newPort)
	}
	own := []string{"--cert", second.h.Path("system", "conf", "certs", "nodemanager.pem"), "--key", second.h.Path("system", "conf", "certs", "private", "nodemanager-key.pem")}
	if r := second.curl(anm.h, append(own, "/nm/status")...); r.code != 200 {
		t.Errorf("/nm/status on the new port: got %d %s %s", r.code, r.body, r.stderr)
	}
	waitClosed(t, net.JoinHostPort(second.ip, strconv.Itoa(oldPort)))
	result(t, anm.api("POST", "/api/management/status/"+group.ID+"/"+svc.ID, ""), 200, &st)
	if st.Status != "running" || st.PID != pid {
		t.Errorf("instance-2 after its node manager moved: got %+v, want running with pid %d (not restarted)", st, pid)
	}
	if r := second.h.MustRun("", "nodemanager", "-s"); r.Code != 0 {
		t.Errorf("nodemanager -s on the second host: %s", r)
	}

	// The ANM's own port: the new address is printed; the second host
	// finds the ANM there.
	anmNew := gwtest.FreePortOn(t, anm.ip)
	r = edit(anm.h, "--host", "first", "--nm_port", strconv.Itoa(anmNew))
	if r.Code != 0 || !strings.Contains(r.Stdout, fmt.Sprintf("management API has moved: it is now at https://127.0.0.2:%d/api", anmNew)) {
		t.Fatalf("edit_host --nm_port for the ANM's host: %s", r)
	}
	anmOld := anm.port
	anm.port = anmNew
	if p := nmConfPort(t, anm.h, "port"); p != anmNew {
		t.Errorf("ANM's nodemanager.yaml port: got %d, want %d", p, anmNew)
	}
	inStep(t, "the ANM's port change", anm.h, second.h)
	deadline := time.Now().Add(15 * time.Second)
	for nmConfPort(t, second.h, "anmPort") != anmNew && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if p := nmConfPort(t, second.h, "anmPort"); p != anmNew {
		t.Errorf("second host's anmPort: got %d, want %d", p, anmNew)
	}
	waitClosed(t, net.JoinHostPort(anm.ip, strconv.Itoa(anmOld)))
	for _, h := range []*gwtest.Home{anm.h, second.h} {
		if r := h.MustRun("", "managedomain", "--check_topology"); !strings.Contains(r.Stdout, "All topologies are in sync") {
			t.Errorf("check_topology on %s: %s", h.Dir, r)
		}
	}
	result(t, anm.api("POST", "/api/management/stop/"+group.ID+"/"+svc.ID, ""), 200, &st)
	result(t, anm.api("POST", "/api/management/start/"+group.ID+"/"+svc.ID, ""), 200, &st)
	if st.Status != "running" {
		t.Errorf("instance-2 started through the ANM on its new port: got %+v", st)
	}
	if r := second.curl(anm.h, "-u", adminCreds, "/api/topology"); r.code != 404 || !strings.Contains(r.body, fmt.Sprintf("port %d", anmNew)) {
		t.Errorf("/api on the second host: got %d %s, want 404 naming the ANM's new port", r.code, r.body)
	}
	result(t, anm.api("POST", "/api/management/stop/"+group.ID+"/"+svc.ID, ""), 200, nil)

	// The audit log has both changes and the refusals.
	audit, err := os.ReadFile(anm.h.Path("conf", "audit", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		fmt.Sprintf("node manager nodemanager-2 port %d to %d", oldPort, newPort),
		fmt.Sprintf("node manager nodemanager-1 port %d to %d", anmOld, anmNew),
		"port " + strconv.Itoa(busyPort) + " on host host-2 is in use",
	} {
		if !strings.Contains(string(audit), want) {
			t.Errorf("audit log lacks %q", want)
		}
	}
}

// waitClosed waits until nothing accepts at addr.
func waitClosed(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(35 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Errorf("the old port %s still accepts connections", addr)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// --metrics on|off and --service add|remove (menu 2): metrics of the second
// host's node manager with its instance, read with a domain certificate
// (and refused without), 404 when off; the ANM's with an admin user;
// the service written only on the host it is for.
func TestEditHostMetricsAndService(t *testing.T) {
	pw := adminPasswordFile(t)
	anm, fingerprint := startANMHost(t, "127.0.0.2", pw)
	second, join := newHostOn(t, "127.0.0.3", anm, pw)
	second.h.MustRun("", append(join, "--anm_fingerprint", fingerprint)...)
	t.Cleanup(func() { second.h.Run("", "nodemanager", "-k", "-q") })
	second.h.MustRun("", "nodemanager", "-d")
	inStep(t, "the join", anm.h, second.h)
	cred := []string{"--username", "admin", "--password_file", pw}
	edit := func(h *gwtest.Home, args ...string) gwtest.Result {
		return h.Run("", append(append([]string{"managedomain", "--edit_host"}, args...), cred...)...)
	}
	var group struct{ ID string }
	result(t, anm.api("POST", "/api/topology/groups", `{"name":"G"}`), 201, &group)
	var svc struct{ ID string }
	result(t, anm.api("POST", "/api/topology/services/"+group.ID, fmt.Sprintf(`{"name":"two","hostID":"host-2","trafficPort":%d,"managementPort":%d}`, gwtest.FreePort(t), gwtest.FreePort(t))), 201, &svc)
	result(t, anm.api("POST", "/api/management/start/"+group.ID+"/"+svc.ID, ""), 200, nil)
	t.Cleanup(func() { anm.api("POST", "/api/management/stop/"+group.ID+"/"+svc.ID, "") })

	own := []string{"--cert", anm.h.Path("system", "conf", "certs", "nodemanager.pem"), "--key", anm.h.Path("system", "conf", "certs", "private", "nodemanager-key.pem")}
	metrics := func(n *nmHost, args ...string) curlResult {
		return n.curl(anm.h, append(args, n.base()+"/metrics")...)
	}
	if r := metrics(second, own...); r.code != 404 || !strings.Contains(r.body, "metrics are off") {
		t.Errorf("metrics before --metrics on: got %d %s", r.code, r.body)
	}
	r := edit(anm.h, "--host", "second", "--metrics", "on")
	if r.Code != 0 || !strings.Contains(r.Stdout, "metrics of node manager nodemanager-2 of host host-2: on: GET https://127.0.0.3:") {
		t.Fatalf("--metrics on: %s", r)
	}
	inStep(t, "metrics on", anm.h, second.h)
	r2 := metrics(second, own...)
	if r2.code != 200 {
		t.Fatalf("metrics with a domain certificate: got %d %s %s", r2.code, r2.body, r2.stderr)
	}
	for _, want := range []string{
		`gatehouse_nodemanager_build_info{`,
		`node_manager_id="nodemanager-2"`,
		`gatehouse_nodemanager_instance_up{group_id="` + group.ID + `",group_name="G",instance_id="` + svc.ID + `",instance_name="two"} 1`,
		`gatehouse_nodemanager_instance_restarts_total{group_id="` + group.ID + `",group_name="G",instance_id="` + svc.ID + `",instance_name="two"} 0`,
		`gatehouse_nodemanager_instance_status{group_id="` + group.ID + `",group_name="G",instance_id="` + svc.ID + `",instance_name="two",status="running"} 1`,
	} {
		if !strings.Contains(r2.body, want) {
			t.Errorf("metrics lack %q:\n%s", want, r2.body)
		}
	}
	if !strings.Contains(r2.body, "gatehouse_nodemanager_instance_in_service{") || !strings.Contains(r2.body, "gatehouse_nodemanager_instance_phase{") {
		// The phase and in-service state come with the first /status probe (every 2 s).
		time.Sleep(3 * time.Second)
		r2 = metrics(second, own...)
		for _, want := range []string{`instance_id="` + svc.ID + `",instance_name="two",phase="serving"} 1`, "gatehouse_nodemanager_instance_in_service{"} {
			if !strings.Contains(r2.body, want) {
				t.Errorf("metrics lack %q:\n%s", want, r2.body)
			}
		}
	}
	if r := metrics(second); r.code != 403 {
		t.Errorf("metrics of a joined host without a client certificate: got %d %s", r.code, r.body)
	}
	// On the ANM: an admin user (metrics.read), or a domain certificate;
	// turned on through the interpreter.
	if r := anm.h.Run("edit_host --host first --metrics on --username admin --password_file "+pw+"\nquit\n", "managedomain"); r.Code != 0 || !strings.Contains(r.Stdout, "metrics of node manager nodemanager-1 of host host-1: on") {
		t.Fatalf("interpreter: edit_host --metrics on for the ANM: %s", r)
	}
	if r := metrics(anm, "-u", adminCreds); r.code != 200 || !strings.Contains(r.body, `node_manager_id="nodemanager-1"`) {
		t.Errorf("ANM metrics with an admin user: got %d %.300s", r.code, r.body)
	}
	if r := metrics(anm); r.code != 401 {
		t.Errorf("ANM metrics without credentials: got %d %s", r.code, r.body)
	}
	// Off through the menu (option 2: host, new name, port, metrics,
	// service, user, password).
	r = anm.h.Run("2\nsecond\n\n\noff\n\nadmin\nchangeme-Secret1\nq\n", "managedomain", "--menu")
	if r.Code != 0 || !strings.Contains(r.Stdout, "Metrics at GET /metrics: on or off") || !strings.Contains(r.Stdout, "off (GET /metrics answers 404)") {
		t.Fatalf("menu 2, metrics off: %s", r)
	}
	inStep(t, "metrics off", anm.h, second.h)
	if r := metrics(second, own...); r.code != 404 {
		t.Errorf("metrics after --metrics off: got %d %s", r.code, r.body)
	}
	wantFail(t, edit(anm.h, "--host", "second", "--metrics", "maybe"), 2, "want on or off")
	audit, _ := os.ReadFile(anm.h.Path("conf", "audit", "audit.log"))
	for _, want := range []string{"metrics of node manager nodemanager-2 on", "metrics of node manager nodemanager-2 off"} {
		if !strings.Contains(string(audit), want) {
			t.Errorf("audit log lacks %q", want)
		}
	}

	// --service: this host only; no user needed.
	sd, id := t.TempDir(), t.TempDir()
	dirs := []string{"--systemd_dir", sd, "--initd_dir", id}
	wantFail(t, anm.h.Run("", append([]string{"managedomain", "--edit_host", "--host", "second", "--service", "add"}, dirs...)...), 1, "is not this host", "run managedomain --edit_host --host second --service add")
	if entries, _ := os.ReadDir(sd); len(entries) != 0 {
		t.Errorf("a refused --service wrote %v", entries)
	}
	r = second.h.Run("", append([]string{"managedomain", "--edit_host", "--host", "second", "--service", "add"}, dirs...)...)
	if r.Code != 0 || !strings.Contains(r.Stdout, "node manager nodemanager-2") {
		t.Fatalf("--service add on the second host: %s", r)
	}
	unit := filepath.Join(sd, "gatehouse-nodemanager-2.service")
	if data, err := os.ReadFile(unit); err != nil || !strings.Contains(string(data), "posix/bin/nodemanager\" -d") {
		t.Errorf("unit %s: %v\n%s", unit, err, data)
	}
	if _, err := os.Stat(filepath.Join(id, "gatehouse-nodemanager-2")); err != nil {
		t.Errorf("init.d script: %v", err)
	}
	second.h.MustRun("", append([]string{"managedomain", "--edit_host", "--host", "host-2", "--service", "remove"}, dirs...)...)
	if _, err := os.Stat(unit); err == nil {
		t.Error("--service remove left the unit")
	}
	wantFail(t, second.h.Run("", "managedomain", "--edit_host", "--host", "second"), 2, "wants --new_name, --nm_port, --metrics or --service")
	wantFail(t, second.h.Run("", "managedomain", "--edit_host", "--host", "second", "--metrics", "on"), 2, "needs --username")
}
