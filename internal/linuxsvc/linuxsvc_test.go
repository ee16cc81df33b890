package linuxsvc

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var cases = []struct {
	name string
	svc  Service
}{
	{"plain", Service{Home: "/opt/gatehouse/apigateway", GroupID: "group-2", InstanceID: "instance-1",
		GroupName: "QuickStart Group", InstanceName: "QuickStart Server", StopTimeout: 70 * time.Second}},
	{"awkward", Service{Home: "/srv/my gate's 100% $HOME", GroupID: "group-12", InstanceID: "instance-7",
		GroupName: "Team 'A' 50%", InstanceName: "it's $x & `y`", StopTimeout: 1500 * time.Millisecond}},
	{"nodemanager", Service{Home: "/opt/gatehouse/apigateway", InstanceID: "nodemanager-1", InstanceName: "gw1",
		NodeManager: true, Admin: true, StopTimeout: 60 * time.Second}},
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/linuxsvc -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run with -update after checking):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

func TestGolden(t *testing.T) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			unit, err := SystemdUnit(c.svc)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, c.name+".service", unit)
			script, err := InitScript(c.svc)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, c.name+".initd", script)
		})
	}
}

func TestSystemdUnitContents(t *testing.T) {
	unit, err := SystemdUnit(cases[0].svc)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Type=forking\n",
		"PIDFile=/opt/gatehouse/apigateway/var/run/instance-1.pid\n",
		`Environment="GATEHOUSE_HOME=/opt/gatehouse/apigateway"` + "\n",
		`ExecStart="/opt/gatehouse/apigateway/posix/bin/startinstance" -d -h "/opt/gatehouse/apigateway/groups/group-2/instance-1"` + "\n",
		`ExecStop="/opt/gatehouse/apigateway/posix/bin/startinstance" -k -h "/opt/gatehouse/apigateway/groups/group-2/instance-1"` + "\n",
		"TimeoutStopSec=70\n",
		"Restart=on-failure\n",
		"WantedBy=multi-user.target\n",
		`Description=Gatehouse API Gateway instance "QuickStart Server" in group "QuickStart Group" (instance-1, group-2)`,
	} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	awk, _ := SystemdUnit(cases[1].svc)
	for _, want := range []string{
		`ExecStart="/srv/my gate's 100%% $$HOME/posix/bin/startinstance" -d -h "/srv/my gate's 100%% $$HOME/groups/group-12/instance-7"`,
		`Environment="GATEHOUSE_HOME=/srv/my gate's 100%% $HOME"`,
		"PIDFile=/srv/my gate's 100%% $HOME/var/run/instance-7.pid\n",
		"TimeoutStopSec=2\n",
	} {
		if !strings.Contains(string(awk), want) {
			t.Errorf("unit lacks %q:\n%s", want, awk)
		}
	}
}

func TestRejects(t *testing.T) {
	bad := []Service{
		{Home: "relative", GroupID: "group-1", InstanceID: "instance-1", StopTimeout: time.Second},
		{Home: "/x", GroupID: "group-1", InstanceID: "../etc", StopTimeout: time.Second},
		{Home: "/x", GroupID: "group-1", InstanceID: "instance-1"},
		{Home: "/x\ny", GroupID: "group-1", InstanceID: "instance-1", StopTimeout: time.Second},
	}
	for _, s := range bad {
		if _, err := SystemdUnit(s); err == nil {
			t.Errorf("SystemdUnit(%+v) accepted", s)
		}
		if _, err := InitScript(s); err == nil {
			t.Errorf("InitScript(%+v) accepted", s)
		}
	}
}

func TestInitScriptSyntax(t *testing.T) {
	for _, c := range cases {
		script, err := InitScript(c.svc)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "script")
		os.WriteFile(path, script, 0o755)
		if out, err := exec.Command("sh", "-n", path).CombinedOutput(); err != nil {
			t.Errorf("%s: sh -n: %v\n%s", c.name, err, out)
		}
	}
}

// TestInitScriptBehaviour runs the script against a fake startinstance that
// keeps its state in a file, in an install directory with awkward characters.
func TestInitScriptBehaviour(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "my gate's $dir")
	bin := filepath.Join(dir, "posix", "bin")
	os.MkdirAll(bin, 0o755)
	state := filepath.Join(dir, "state")
	calls := filepath.Join(dir, "calls")
	writeFakeTool(t, filepath.Join(bin, "startinstance"))
	svc := Service{Home: dir, GroupID: "group-2", InstanceID: "instance-1", GroupName: "g", InstanceName: "i", StopTimeout: time.Second}
	script, err := InitScript(svc)
	if err != nil {
		t.Fatal(err)
	}
	sdir := t.TempDir()
	paths, err := Install(svc, Dirs{Systemd: sdir, InitD: sdir})
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(paths[1]); fi.Mode().Perm() != 0o755 {
		t.Errorf("script mode: got %v, want 0755", fi.Mode().Perm())
	}
	if got, _ := os.ReadFile(paths[1]); !bytes.Equal(got, script) {
		t.Error("installed script differs from InitScript")
	}
	run := func(arg string) int {
		cmd := exec.Command("sh", paths[1], arg)
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%s: %v\n%s", arg, err, out)
		}
		return 0
	}
	steps := []struct {
		arg     string
		want    int
		running bool
	}{
		{"status", 3, false},
		{"stop", 0, false},
		{"start", 0, true},
		{"status", 0, true},
		{"start", 0, true},
		{"restart", 0, true},
		{"stop", 0, false},
		{"status", 3, false},
		{"bogus", 2, false},
	}
	for _, s := range steps {
		if got := run(s.arg); got != s.want {
			t.Errorf("%s: exit got %d, want %d", s.arg, got, s.want)
		}
		_, err := os.Stat(state)
		if running := err == nil; running != s.running {
			t.Errorf("after %s: running got %v, want %v", s.arg, running, s.running)
		}
	}
	log, _ := os.ReadFile(calls)
	instDir := filepath.Join(dir, "groups", "group-2", "instance-1")
	if !strings.Contains(string(log), "-d|-h|"+instDir+"|") {
		t.Errorf("startinstance not called with the instance directory as one argument:\n%s", log)
	}
	os.Chmod(filepath.Join(bin, "startinstance"), 0o644)
	if got := run("status"); got != 4 {
		t.Errorf("status without startinstance: got %d, want 4", got)
	}
	if got := run("start"); got != 5 {
		t.Errorf("start without startinstance: got %d, want 5", got)
	}
}

func TestInstallRemove(t *testing.T) {
	sd, id := t.TempDir(), t.TempDir()
	svc := cases[1].svc
	paths, err := Install(svc, Dirs{Systemd: sd, InitD: id})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(sd, "gatehouse-instance-7.service"), filepath.Join(id, "gatehouse-instance-7")}
	if strings.Join(paths, ",") != strings.Join(want, ",") {
		t.Errorf("got %v, want %v", paths, want)
	}
	removed, err := Remove(svc.InstanceID, Dirs{Systemd: sd, InitD: id})
	if err != nil || len(removed) != 2 {
		t.Errorf("Remove: got %v, %v, want both files", removed, err)
	}
	removed, err = Remove(svc.InstanceID, Dirs{Systemd: sd, InitD: id})
	if err != nil || len(removed) != 0 {
		t.Errorf("second Remove: got %v, %v, want nothing, no error", removed, err)
	}
	if _, err := Install(svc, Dirs{Systemd: filepath.Join(sd, "missing"), InitD: id}); err == nil {
		t.Error("Install into a missing directory accepted")
	}
	if entries, _ := os.ReadDir(id); len(entries) != 0 {
		t.Errorf("failed Install left %v behind", entries)
	}
}

// The node manager's init.d script drives nodemanager -d/-k/-s, without an
// instance directory.
func TestNodeManagerInitScript(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "gate's $home")
	bin := filepath.Join(dir, "posix", "bin")
	os.MkdirAll(bin, 0o755)
	writeFakeTool(t, filepath.Join(bin, "nodemanager"))
	svc := Service{Home: dir, InstanceID: "nodemanager-2", InstanceName: "second", NodeManager: true, StopTimeout: time.Minute}
	sdir := t.TempDir()
	paths, err := Install(svc, Dirs{Systemd: sdir, InitD: sdir})
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(paths[0]) != "gatehouse-nodemanager-2.service" || filepath.Base(paths[1]) != "gatehouse-nodemanager-2" {
		t.Fatalf("paths: %v", paths)
	}
	unit, _ := os.ReadFile(paths[0])
	for _, want := range []string{"ExecStart=\"" + filepath.Join(bin, "nodemanager") + "\" -d\n", "ExecStop=\"" + filepath.Join(bin, "nodemanager") + "\" -k\n",
		"PIDFile=" + filepath.Join(dir, "var", "run", "nodemanager-2.pid"), "Gatehouse Node Manager nodemanager-2 of host \"second\"", "--add_nm_service", "KillMode=process\n"} {
		if !strings.Contains(string(unit), strings.ReplaceAll(want, "$", "$$")) && !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	for _, step := range []struct {
		arg  string
		want int
	}{{"status", 3}, {"start", 0}, {"status", 0}, {"stop", 0}, {"status", 3}} {
		cmd := exec.Command("sh", paths[1], step.arg)
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		err := cmd.Run()
		got := 0
		if ee, ok := err.(*exec.ExitError); ok {
			got = ee.ExitCode()
		}
		if got != step.want {
			t.Errorf("%s: exit %d, want %d", step.arg, got, step.want)
		}
	}
	calls, _ := os.ReadFile(filepath.Join(dir, "calls"))
	if !strings.Contains(string(calls), "-d|\n") || strings.Contains(string(calls), "-h") {
		t.Errorf("nodemanager calls:\n%s", calls)
	}
}

// docs/managedomain.md shows the generated units as they are generated:
// each golden unit file appears there whole.
func TestDocsShowGeneratedUnits(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "managedomain.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"plain.service", "nodemanager.service"} {
		unit, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(doc, append([]byte("```ini\n"), unit...)) {
			t.Errorf("docs/managedomain.md does not show testdata/%s as generated", name)
		}
	}
}

// writeFakeTool writes at path a stand-in for startinstance or nodemanager
// that records its arguments in $GATEHOUSE_HOME/calls and keeps "running"
// as the file $GATEHOUSE_HOME/state (-d makes it, -k removes it, -s tests
// it).
func writeFakeTool(t *testing.T, path string) {
	t.Helper()
	fake := `#!/bin/sh
printf '%s|' "$@" >> "$GATEHOUSE_HOME/calls"; echo >> "$GATEHOUSE_HOME/calls"
case "$1" in
-s) [ -f "$GATEHOUSE_HOME/state" ] ;;
-d) touch "$GATEHOUSE_HOME/state" ;;
-k) rm -f "$GATEHOUSE_HOME/state" ;;
esac
`
	if err := os.WriteFile(path, []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
}
