package tools_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/rbac"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

func loadTopology(t *testing.T, h *gwtest.Home) *topology.Topology {
	t.Helper()
	data, err := os.ReadFile(h.Path("groups", "topology.json"))
	if err != nil {
		t.Fatal(err)
	}
	top, err := topology.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return top
}

func wantFail(t *testing.T, r gwtest.Result, code int, substrings ...string) {
	t.Helper()
	if r.Code != code {
		t.Errorf("exit code: got %d, want %d\n%s", r.Code, code, r)
	}
	for _, s := range substrings {
		if !strings.Contains(r.Stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, r.Stderr)
		}
	}
}

func TestManagedomainInitialize(t *testing.T) {
	h := gwtest.NewHome(t)
	h.InitDomain()

	// Layout: binary and links, CA key mode, ids.
	fi, err := os.Stat(h.Path("posix", "bin", "gatehouse"))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("posix/bin/gatehouse: got %v, %v", fi, err)
	}
	for _, tool := range []string{"managedomain", "startinstance"} {
		if target, err := os.Readlink(h.Path("posix", "bin", tool)); err != nil || target != "gatehouse" {
			t.Errorf("posix/bin/%s: got %q, %v, want a link to gatehouse", tool, target, err)
		}
	}
	fi, err = os.Stat(h.Path("groups", "certs", "private", "domainkey.pem"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("domainkey.pem: got %v, %v, want mode 0600", fi, err)
	}
	if fi, err := os.Stat(h.Path("groups", "certs", "private")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("certs/private: got %v, %v, want mode 0700", fi, err)
	}
	if _, err := os.Stat(h.Path("groups", "certs", "domaincert.pem")); err != nil {
		t.Error(err)
	}
	for _, d := range []string{"conf/opsdb.d", "ext", "system/conf/nodemanager.yaml", "conf/adminUsers.json"} {
		if _, err := os.Stat(h.Path(d)); err != nil {
			t.Error(err)
		}
	}
	top := loadTopology(t, h)
	if top.Hosts[0].ID != "host-1" || top.Groups[0].ID != "group-1" || top.Groups[0].Name != "Node Manager Group" {
		t.Errorf("topology: got hosts %+v groups %+v", top.Hosts, top.Groups)
	}
	nm, err := top.AdminNodeManager()
	if err != nil || nm.ID != "nodemanager-1" || nm.ManagementPort != 8090 || nm.Scheme != "https" {
		t.Errorf("admin node manager: got %+v, %v", nm, err)
	}
	hm, _ := home.At(h.Dir)
	if ok, err := rbac.Verify(hm, "admin", secret.FromString("changeme-Secret1")); !ok || err != nil {
		t.Errorf("admin password: got %v, %v", ok, err)
	}
	users, _ := os.ReadFile(h.Path("conf", "adminUsers.json"))
	if strings.Contains(string(users), "changeme-Secret1") {
		t.Error("password stored in clear")
	}

	// A second -i is refused and names the directory.
	before, _ := os.ReadFile(h.Path("groups", "topology.json"))
	r := h.Run("", "managedomain", "-i", "--domain_name", "Other", "--username", "admin", "--password", "abcdefgh1")
	wantFail(t, r, 1, "already exists", h.Dir)
	if after, _ := os.ReadFile(h.Path("groups", "topology.json")); string(after) != string(before) {
		t.Error("second -i changed the topology")
	}

	// The install directory works on its own: the installed link, without
	// GATEHOUSE_HOME, finds its directory.
	cmd := exec.Command(h.Path("posix", "bin", "managedomain"), "-p")
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), `Domain "TestDomain"`) {
		t.Errorf("posix/bin/managedomain -p: %v\n%s", err, out)
	}
}

func TestManagedomainInitPasswords(t *testing.T) {
	t.Run("from stdin", func(t *testing.T) {
		h := gwtest.NewHome(t)
		r := h.Run("stdin-pass-123\n", "managedomain", "--initialize", "--domain_name=D", "--username", "root admin", "--port", "9443", "--host_name", "gw host")
		if r.Code != 0 {
			t.Fatal(r)
		}
		if strings.Contains(r.Stdout+r.Stderr, "stdin-pass-123") {
			t.Error("password echoed")
		}
		hm, _ := home.At(h.Dir)
		if ok, _ := rbac.Verify(hm, "root admin", secret.FromString("stdin-pass-123")); !ok {
			t.Error("password from stdin not stored")
		}
		top := loadTopology(t, h)
		if top.Hosts[0].Name != "gw host" || top.Groups[0].Services[0].ManagementPort != 9443 {
			t.Errorf("got host %+v, node manager %+v", top.Hosts[0], top.Groups[0].Services[0])
		}
	})
	for _, tt := range []struct {
		name  string
		stdin string
		args  []string
		code  int
		want  string
	}{
		{"no password at end of input", "", nil, 1, "no password given"},
		{"short password", "", []string{"--password", "zq7"}, 1, "at least 8 characters"},
		{"both password flags", "", []string{"--password", "abcdefgh1", "--password_file", "/x"}, 2, "not both"},
		{"missing password file", "", []string{"--password_file", "/nonexistent/pw"}, 1, "password file"},
		{"bad port", "", []string{"--password", "abcdefgh1", "--port", "http"}, 2, `--port "http" is not a port`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := gwtest.NewHome(t)
			args := append([]string{"managedomain", "-i", "--domain_name", "D", "--username", "admin"}, tt.args...)
			r := h.Run(tt.stdin, args...)
			wantFail(t, r, tt.code, tt.want)
			if strings.Contains(r.Stderr, "zq7") {
				t.Error("error shows the password")
			}
			if _, err := os.Stat(h.Path("groups", "topology.json")); err == nil {
				t.Error("a domain was created")
			}
		})
	}
}

func TestManagedomainInstances(t *testing.T) {
	h := gwtest.NewHome(t)
	h.InitDomain()

	r := h.MustRun("", "managedomain", "-c", "-n", "Server One", "-g", "Prod Group")
	if !strings.Contains(r.Stdout, "instance-1") || !strings.Contains(r.Stdout, "group-2") {
		t.Errorf("output lacks the ids:\n%s", r)
	}
	for _, d := range []string{"groups/group-2/conf/group.yaml", "groups/group-2/instance-1/conf/instance.yaml", "groups/group-2/instance-1/logs", "groups/group-2/instance-1/trace"} {
		if _, err := os.Stat(h.Path(d)); err != nil {
			t.Error(err)
		}
	}
	inst, _ := os.ReadFile(h.Path("groups", "group-2", "instance-1", "conf", "instance.yaml"))
	if !strings.Contains(string(inst), "port: 8080") || !strings.Contains(string(inst), "port: 8085") {
		t.Errorf("instance.yaml:\n%s", inst)
	}

	// Port clashes name the port and who has it; nothing is created.
	wantFail(t, h.Run("", "managedomain", "-c", "-n", "Two", "-g", "Prod Group", "--traffic_port", "8080", "--management_port", "9085"),
		1, "port 8080 (traffic.port) is already used by instance \"Server One\"")
	wantFail(t, h.Run("", "managedomain", "-c", "-n", "Two", "-g", "Other", "--traffic_port", "9080", "--management_port", "8085"),
		1, "port 8085 (management.port)")
	wantFail(t, h.Run("", "managedomain", "-c", "-n", "Two", "-g", "Other", "--traffic_port", "8090", "--management_port", "9085"),
		1, "port 8090", "node manager")
	if top := loadTopology(t, h); len(top.Groups) != 2 {
		t.Errorf("refused creations changed the topology: %+v", top.Groups)
	}
	if _, err := os.Stat(h.Path("groups", "group-3")); err == nil {
		t.Error("a refused creation left groups/group-3 behind")
	}
	h.MustRun("", "managedomain", "--create_instance", "--name=Two", "--group", "Prod Group", "--traffic_port=9080", "--management_port", "9085")

	// Unknown names list what is registered.
	wantFail(t, h.Run("", "managedomain", "--delete_instance", "-n", "Nope", "-g", "Prod Group"), 1, `no instance "Nope" in group "Prod Group"; registered: "Server One", "Two"`)
	wantFail(t, h.Run("", "managedomain", "--delete_instance", "-n", "Two", "-g", "Nope"), 1, `no group "Nope"; registered: "Prod Group"`)
	wantFail(t, h.Run("", "managedomain", "--rename_group", "-g", "Nope", "--new_name", "X"), 1, `registered: "Prod Group"`)
	wantFail(t, h.Run("", "managedomain", "--delete_group", "-g", "Nope"), 1, `registered: "Prod Group"`)

	// Delete, and ids are never reused.
	h.MustRun("", "managedomain", "--delete_instance", "-n", "Two", "-g", "Prod Group")
	if _, err := os.Stat(h.Path("groups", "group-2", "instance-2")); !os.IsNotExist(err) {
		t.Errorf("instance directory still there: %v", err)
	}
	r = h.MustRun("", "managedomain", "-c", "-n", "Two", "-g", "Prod Group", "--traffic_port", "9080", "--management_port", "9085")
	if !strings.Contains(r.Stdout, "instance-3") {
		t.Errorf("re-created instance: want instance-3\n%s", r)
	}

	// Rename moves nothing.
	h.MustRun("", "managedomain", "--rename_group", "-g", "Prod Group", "--new_name", "Renamed")
	if _, err := os.Stat(h.Path("groups", "group-2", "instance-1")); err != nil {
		t.Error(err)
	}
	wantFail(t, h.Run("", "managedomain", "--rename_group", "-g", "Node Manager Group", "--new_name", "X"), 1, "cannot be renamed")

	// Print topology: tree and JSON.
	r = h.MustRun("", "managedomain", "-p")
	for _, want := range []string{`Domain "TestDomain"`, "host-1", `group-2      "Renamed"`, `instance-1       "Server One"`, "traffic 8080, management 8085", "traffic 9080, management 9085", "nodemanager-1", "Admin Node Manager, management https on every interface, port 8090"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("print_topology lacks %q:\n%s", want, r.Stdout)
		}
	}
	if strings.Contains(r.Stdout, "://:") {
		t.Errorf("print_topology prints a URL without a host:\n%s", r.Stdout)
	}
	r = h.MustRun("", "managedomain", "--print_topology", "--json")
	var doc map[string]any
	if err := json.Unmarshal([]byte(r.Stdout), &doc); err != nil || doc["domainName"] != "TestDomain" {
		t.Errorf("--json: %v\n%s", err, r.Stdout)
	}

	// A running instance cannot be deleted, alone or with its group.
	hm, _ := home.At(h.Dir)
	claim, err := home.ClaimRunFiles(hm.RunFiles("instance-1"))
	if err != nil {
		t.Fatal(err)
	}
	wantFail(t, h.Run("", "managedomain", "--delete_instance", "-n", "Server One", "-g", "Renamed"), 1, "is running", "startinstance -k")
	wantFail(t, h.Run("", "managedomain", "--delete_group", "-g", "Renamed"), 1, "is running")
	claim.Release()

	h.MustRun("", "managedomain", "--delete_group", "-g", "Renamed")
	if _, err := os.Stat(h.Path("groups", "group-2")); !os.IsNotExist(err) {
		t.Errorf("group directory still there: %v", err)
	}
	r = h.MustRun("", "managedomain", "-c", "-n", "Server One", "-g", "Renamed")
	if !strings.Contains(r.Stdout, "instance-4") || !strings.Contains(r.Stdout, "group-3") {
		t.Errorf("ids reused after delete group:\n%s", r)
	}
}

func TestManagedomainBusybox(t *testing.T) {
	h := gwtest.NewHome(t)
	h.InitDomain()
	a := h.MustRun("", "managedomain", "-p")
	b := h.RunAs("managedomain", "", "-p")
	if b.Code != 0 || a.Stdout != b.Stdout {
		t.Errorf("managedomain -p differs from gatehouse managedomain -p:\n%s\n---\n%s", b, a)
	}
	if r := h.RunAs("managedomain", "", "--version"); r.Code != 0 || !strings.Contains(r.Stdout, "managedomain") {
		t.Errorf("--version: %s", r)
	}
}

func TestManagedomainUsage(t *testing.T) {
	h := gwtest.NewHome(t)
	r := h.MustRun("", "managedomain", "--help")
	for _, want := range []string{"--initialize", "--create_instance", "--delete_instance", "--rename_group", "--delete_group", "--print_topology", "--add_service", "--remove_service", "--menu", "--traffic_port", "--management_port", "--password_file", "--systemd_dir", "--initd_dir", "--new_name", "--json", "--domain_name", "--host_name", "exit status"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	if r := h.Run("", "managedomain", "-h"); r.Code != 0 || !strings.Contains(r.Stdout, "--create_instance") {
		t.Errorf("-h: %s", r)
	}
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"--bogus"}, []string{`unknown flag "--bogus"`, "--create_instance", "--traffic_port"}},
		{[]string{"-c", "-n", "x"}, []string{"create_instance needs -g GROUP"}},
		{[]string{"-c", "-n", "x", "-g", "y", "--new_name", "z"}, []string{"--new_name is not accepted with create_instance", "--traffic_port"}},
		{[]string{"-c", "-p"}, []string{"one operation at a time"}},
		{[]string{"-n", "x"}, []string{"no operation given"}},
		{[]string{"-c", "-n"}, []string{"-n needs a value"}},
		{[]string{"-c", "-n", "x", "-g", "y", "--traffic_port", "99999"}, []string{"not a port"}},
		{[]string{"stray"}, []string{`unexpected argument "stray"`}},
	} {
		r := h.Run("", append([]string{"managedomain"}, tt.args...)...)
		wantFail(t, r, 2, tt.want...)
	}
	// Without a domain, operations say what to run.
	wantFail(t, h.Run("", "managedomain", "-p"), 1, "no domain", "managedomain -i")
}

func TestManagedomainMenu(t *testing.T) {
	h := gwtest.NewHome(t)
	h.InitDomain()
	input := strings.Join([]string{
		"99",          // no such option
		"5",           // create: name, group, traffic [8080], management [8085]
		"Menu Server", //
		"Menu Group",  //
		"",            // default traffic port
		"",            // default management port
		"23",          // change a group passphrase: the group, then the new passphrase (one line each off a terminal)
		"Menu Group",
		"menu passphrase 1",
		"13", // print
		"7",  // delete: group, then instance (cut short by EOF)
		"Menu Group",
	}, "\n") + "\n"
	r := h.Run(input, "managedomain", "--menu")
	if r.Code != 0 {
		t.Fatalf("menu: %s", r)
	}
	for _, want := range []string{
		" 5) Create a gateway instance\n",
		" 1) Register a host in an existing domain\n",
		" 2) Edit a host\n",
		"23) Change a group passphrase\n",
		"24) Regenerate certificates\n",
		"26) Submit a certificate\n",
		"The passphrase of the group group-2 is set",
		`There is no option "99"`,
		"Traffic port [8080]:",
		"Management port [8085]:",
		`Created instance "Menu Server" (instance-1) in group "Menu Group" (group-2`,
		`instance-1       "Menu Server"`,
		`Registered groups: "Menu Group"`,
		`Registered instances in group "Menu Group": "Menu Server"`,
		"End of input: delete_instance not performed.",
	} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("menu output lacks %q", want)
		}
	}
	for _, line := range strings.Split(r.Stdout, "\n") {
		for _, n := range []string{" 1)", " 2)", " 3)", " 4)", " 5)", " 6)", " 7)", " 8)", " 9)", "10)", "11)", "12)", "13)", "14)", "15)", "16)", "17)", "18)", "19)", "20)", "21)", "22)", "23)", "24)", "25)", "26)"} {
			if strings.HasPrefix(line, " "+n) && strings.Contains(line, "not available") {
				t.Errorf("option marked not available: %q", line)
			}
		}
	}
	top := loadTopology(t, h)
	if _, err := top.FindInstance("Menu Group", "Menu Server"); err != nil {
		t.Errorf("instance not created or deleted by the cut-short prompt: %v", err)
	}

	// Next free ports are offered (and, the group having a passphrase now,
	// it is asked for: the new instance's key is sealed with it); q quits;
	// rename and delete group.
	r = h.Run("5\nSecond\nMenu Group\n\n\nmenu passphrase 1\n11\nMenu Group\nNew Name\n12\nNew Name\nq\nnot read\n", "managedomain", "--menu")
	if r.Code != 0 {
		t.Fatal(r)
	}
	for _, want := range []string{"Traffic port [8081]:", "Management port [8086]:", `Renamed group "Menu Group" to "New Name"`, `Deleted group "New Name"`} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("menu output lacks %q:\n%s", want, r.Stdout)
		}
	}
	// Errors are printed and the menu goes on.
	r = h.Run("12\nNope\n13\n", "managedomain", "--menu")
	if r.Code != 0 || !strings.Contains(r.Stderr, `no group "Nope"`) || !strings.Contains(r.Stdout, `Domain "TestDomain"`) {
		t.Errorf("menu after an error: %s", r)
	}
	// End of input right away quits cleanly.
	if r := h.Run("", "managedomain", "--menu"); r.Code != 0 {
		t.Errorf("empty input: %s", r)
	}
}

func TestManagedomainInterpreter(t *testing.T) {
	h := gwtest.NewHome(t)
	h.InitDomain()
	input := `help
help create_instance
create_instance -n "My Server" -g 'Team'"'"'s Group'
create_instance -n "Other" -g "Team's Group" --traffic_port 9080 --management_port 9085
bogus verb
create_instance -n "x
create_instance -n x -g y --traffic_port 8080
print_topology
delete_instance -n Other -g "Team's Group"
rename_group -g "Team's Group" --new_name "Renamed Group"
print_topology
`
	r := h.Run(input, "managedomain")
	if r.Code != 0 {
		t.Fatalf("interpreter: %s", r)
	}
	for _, want := range []string{
		"managedomain> ",
		"create_instance -n NAME -g GROUP [--traffic_port N] [--management_port M]",
		`Created instance "My Server" (instance-1) in group "Team's Group"`,
		`Created instance "Other" (instance-2)`,
		`Deleted instance "Other"`,
		`Renamed group "Team's Group" to "Renamed Group"`,
		`group-2      "Renamed Group"`,
	} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("interpreter output lacks %q", want)
		}
	}
	for _, want := range []string{`unknown verb "bogus"`, "unterminated", "port 8080 (traffic.port)"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("interpreter errors lack %q:\n%s", want, r.Stderr)
		}
	}
	if r := h.Run("print_topology\nquit\ndelete_group -g \"Renamed Group\"\n", "managedomain"); r.Code != 0 {
		t.Errorf("quit: %s", r)
	}
	if _, err := loadTopology(t, h).GroupByName("Renamed Group"); err != nil {
		t.Error("a verb after quit was run")
	}
}

func TestManagedomainService(t *testing.T) {
	h := gwtest.NewHome(t)
	h.InitDomain()
	h.MustRun("", "managedomain", "-c", "-n", "Svc 'One'", "-g", "Svc Group")
	sd, id := t.TempDir(), t.TempDir()
	r := h.MustRun("", "managedomain", "--add_service", "-n", "Svc 'One'", "-g", "Svc Group", "--systemd_dir", sd, "--initd_dir", id)
	unitPath := filepath.Join(sd, "gatehouse-instance-1.service")
	scriptPath := filepath.Join(id, "gatehouse-instance-1")
	if !strings.Contains(r.Stdout, unitPath) || !strings.Contains(r.Stdout, scriptPath) {
		t.Errorf("output lacks the paths:\n%s", r)
	}
	unit, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	inst := h.Path("groups", "group-2", "instance-1")
	start := h.Path("posix", "bin", "startinstance")
	for _, want := range []string{
		"Type=forking\n",
		"PIDFile=" + h.Path("var", "run", "instance-1.pid") + "\n",
		`Environment="GATEHOUSE_HOME=` + h.Dir + `"`,
		`ExecStart="` + start + `" -d -h "` + inst + `"`,
		`ExecStop="` + start + `" -k -h "` + inst + `"`,
		"TimeoutStopSec=60\n", // drain 30 s + 30 s margin; zero-downtime off
		"Restart=on-failure\n",
		"WantedBy=multi-user.target\n",
		`"Svc 'One'" in group "Svc Group"`,
	} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	script, err := os.ReadFile(scriptPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(scriptPath); fi.Mode().Perm() != 0o755 {
		t.Errorf("script mode: got %v, want 0755", fi.Mode().Perm())
	}
	for _, want := range []string{"### BEGIN INIT INFO", "# Provides:          gatehouse-instance-1", "GATEHOUSE_HOME='" + h.Dir + "'", "INSTANCE_DIR='" + inst + "'", "TOOL='" + start + "'", `"$TOOL" "$@" -h "$INSTANCE_DIR"`, "tool -d", "tool -k", "exit 3"} {
		if !strings.Contains(string(script), want) {
			t.Errorf("script lacks %q", want)
		}
	}
	if out, err := exec.Command("sh", "-n", scriptPath).CombinedOutput(); err != nil {
		t.Errorf("sh -n: %v\n%s", err, out)
	}
	// The script answers status through the real startinstance: not running.
	if err := exec.Command("sh", scriptPath, "status").Run(); err == nil {
		t.Error("status of a stopped instance exited 0")
	}

	h.MustRun("", "managedomain", "--remove_service", "-n", "Svc 'One'", "-g", "Svc Group", "--systemd_dir", sd, "--initd_dir", id)
	for _, p := range []string{unitPath, scriptPath} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there", p)
		}
	}
	wantFail(t, h.Run("", "managedomain", "--add_service", "-n", "Nope", "-g", "Svc Group", "--systemd_dir", sd, "--initd_dir", id), 1, `registered: "Svc 'One'"`)
	wantFail(t, h.Run("", "managedomain", "--add_service", "-n", "Svc 'One'", "-g", "Svc Group", "--systemd_dir", filepath.Join(sd, "missing"), "--initd_dir", id), 1, "not a directory")

	// The node manager's service (#15): its init.d script starts, reports
	// and stops the real node manager; stopping it leaves instances alone.
	r = h.MustRun("", "managedomain", "--add_nm_service", "--systemd_dir", sd, "--initd_dir", id)
	nmUnit, nmScript := filepath.Join(sd, "gatehouse-nodemanager-1.service"), filepath.Join(id, "gatehouse-nodemanager-1")
	if !strings.Contains(r.Stdout, nmUnit) || !strings.Contains(r.Stdout, "systemctl daemon-reload && systemctl enable --now gatehouse-nodemanager-1.service") {
		t.Errorf("add_nm_service output:\n%s", r)
	}
	unit, _ = os.ReadFile(nmUnit)
	nm := h.Path("posix", "bin", "nodemanager")
	for _, want := range []string{`ExecStart="` + nm + `" -d` + "\n", `ExecStop="` + nm + `" -k` + "\n", "PIDFile=" + h.Path("var", "run", "nodemanager-1.pid") + "\n", "KillMode=process\n", "Gatehouse Admin Node Manager nodemanager-1"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("node manager unit lacks %q:\n%s", want, unit)
		}
	}
	t.Cleanup(func() { h.Run("", "nodemanager", "-k", "-q") })
	initd := func(arg string) int {
		cmd := exec.Command("sh", nmScript, arg)
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%s: %v\n%s", arg, err, out)
		}
		return 0
	}
	if got := initd("status"); got != 3 {
		t.Errorf("node manager script status before start: %d, want 3", got)
	}
	if got := initd("start"); got != 0 || pidOf(t, h, "nodemanager-1") == 0 {
		t.Fatalf("node manager script start: %d", got)
	}
	if got := initd("status"); got != 0 {
		t.Errorf("node manager script status: %d, want 0", got)
	}
	if got := initd("stop"); got != 0 || initd("status") != 3 {
		t.Errorf("node manager script stop: %d", got)
	}
	h.MustRun("", "managedomain", "--remove_nm_service", "--systemd_dir", sd, "--initd_dir", id)
	for _, p := range []string{nmUnit, nmScript} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there", p)
		}
	}
}

// create_instance without ports in command mode takes the lowest free ones,
// as the menu offers (#15: the second one clashed on 8080/8085).
func TestCreateInstanceFreePortsCommandMode(t *testing.T) {
	h := gwtest.NewHome(t)
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("changeme-Secret1\n"), 0o600)
	h.MustRun("", "managedomain", "-i", "--domain_name", "D", "--username", "admin", "--password_file", pw)
	if r := h.MustRun("", "managedomain", "-c", "-n", "one", "-g", "G"); !strings.Contains(r.Stdout, "traffic port 8080, management port 8085") {
		t.Errorf("first: %s", r.Stdout)
	}
	if r := h.MustRun("", "managedomain", "-c", "-n", "two", "-g", "G"); !strings.Contains(r.Stdout, "traffic port 8081, management port 8086") {
		t.Errorf("second: %s", r.Stdout)
	}
	// Ids where names go (#15): a group and an instance by id.
	if r := h.MustRun("", "managedomain", "-c", "-n", "three", "-g", "group-2"); !strings.Contains(r.Stdout, `in group "G" (group-2)`) {
		t.Errorf("create in a group given by id: %s", r.Stdout)
	}
	if r := h.Run("", "startinstance", "-s", "-n", "instance-1", "-g", "group-2"); !strings.Contains(r.Stdout+r.Stderr, `"one"`) || strings.Contains(r.Stderr, "no group") || strings.Contains(r.Stderr, "no instance") {
		t.Errorf("startinstance -s by ids: %s", r)
	}
	h.MustRun("", "managedomain", "--delete_instance", "-g", "group-2", "-n", "instance-3")
	h.MustRun("", "managedomain", "--rename_group", "-g", "group-2", "--new_name", "Renamed")
	if r := h.MustRun("", "managedomain", "-p"); !strings.Contains(r.Stdout, `group-2      "Renamed"`) || strings.Contains(r.Stdout, "three") {
		t.Errorf("after the changes by id: %s", r.Stdout)
	}
}
