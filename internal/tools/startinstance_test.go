package tools_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
)

// sampleGroup is a group configuration with the sample API and zero-downtime
// shutdown on, with a short delay (tests take delays from configuration).
const sampleGroup = `zeroDowntime:
  shutdown:
    enabled: %v
    delay: 2
    drainTimeout: 10
backends:
  - name: sample
    sample: true
apis:
  - name: sample
    pathPrefix: /sample
    stripPrefix: true
    backend: sample
`

type ports struct{ traffic, mgmt, sample int }

func (p ports) url(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", p.traffic, path) }

// newInstance creates a domain with instance name in group, the sample API,
// and free ports.
func newInstance(t *testing.T, h *gwtest.Home, group, name string, zdt bool) ports {
	t.Helper()
	if _, err := os.Stat(h.Path("groups", "topology.json")); err != nil {
		h.InitDomain()
	}
	p := ports{gwtest.FreePort(t), gwtest.FreePort(t), gwtest.FreePort(t)}
	h.MustRun("", "managedomain", "-c", "-n", name, "-g", group, "--traffic_port", strconv.Itoa(p.traffic), "--management_port", strconv.Itoa(p.mgmt))
	gdirs, _ := filepath.Glob(h.Path("groups", "group-*", "conf"))
	for _, gd := range gdirs {
		if err := os.WriteFile(filepath.Join(gd, "group.yaml"), []byte(fmt.Sprintf(sampleGroup, zdt)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	idirs, _ := filepath.Glob(h.Path("groups", "group-*", "instance-*", "conf", "instance.yaml"))
	for _, f := range idirs {
		data, _ := os.ReadFile(f)
		if strings.Contains(string(data), strconv.Itoa(p.traffic)) {
			if err := groupconf.SetKeys(f, map[string]string{"sample.enabled": "true", "sample.port": strconv.Itoa(p.sample)}, []string{"sample.enabled", "sample.port"}, ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	return p
}

func TestStartStatusStop(t *testing.T) {
	h := gwtest.NewHome(t)
	p := newInstance(t, h, "Group A", "Server One", false)
	id := []string{"-n", "Server One", "-g", "Group A"}

	if r := h.Run("", append([]string{"startinstance", "-s"}, id...)...); r.Code != 1 || !strings.Contains(r.Stdout, "not running") {
		t.Fatalf("status before start: %s", r)
	}
	r := h.MustRun("", append([]string{"startinstance", "-d"}, id...)...)
	if !strings.Contains(r.Stdout, "Started") {
		t.Errorf("start output: %s", r)
	}
	// -d returned: the instance must already serve, no polling needed.
	code, body := gwtest.Get(t, p.url("/healthcheck"))
	if code != 200 || body != "<status>ok</status>" {
		t.Errorf("healthcheck: got %d %q, want 200 <status>ok</status>", code, body)
	}
	resp, err := gwtest.HTTPClient.Get(p.url("/healthchecklb"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/xml") {
		t.Errorf("healthchecklb: got %d %q, want 200 text/xml", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if code, body := gwtest.Get(t, p.url("/sample/echo")); code != 200 || !strings.Contains(body, `"path"`) {
		t.Errorf("sample echo: got %d %s", code, body)
	}
	if r := h.Run("", append([]string{"startinstance", "-s"}, id...)...); r.Code != 0 || !strings.Contains(r.Stdout, "running (pid") {
		t.Errorf("status while running: %s", r)
	}
	if r := h.Run("", append([]string{"startinstance", "-d"}, id...)...); r.Code != 1 || !strings.Contains(r.Stderr, "already running") {
		t.Errorf("second start: %s", r)
	}
	pidData, err := os.ReadFile(h.Path("var", "run", "instance-1.pid"))
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pidData)))
	if r := h.Run("", append([]string{"startinstance", "-k"}, id...)...); r.Code != 0 || !strings.Contains(r.Stdout, "stopped") {
		t.Fatalf("stop: %s", r)
	}
	// -k returned: the process has ended.
	if alive(pid) {
		t.Errorf("process %d still exists after -k returned", pid)
	}
	if r := h.Run("", append([]string{"startinstance", "-s"}, id...)...); r.Code != 1 {
		t.Errorf("status after stop: %s", r)
	}
	if _, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p.traffic), time.Second); err == nil {
		t.Errorf("traffic port still accepts after stop")
	}
	if r := h.Run("", append([]string{"startinstance", "-k"}, id...)...); r.Code != 0 || !strings.Contains(r.Stdout, "not running") {
		t.Errorf("stop when stopped: %s", r)
	}
}

func TestListingAndOnlyOne(t *testing.T) {
	h := gwtest.NewHome(t)
	newInstance(t, h, "Group A", "Server One", false)
	// One instance: "startinstance -d" with no name starts it; -s and -k find it too.
	if r := h.RunAs("startinstance", "", "-d", "-q"); r.Code != 0 {
		t.Fatalf("start the only one: %s", r)
	}
	if r := h.RunAs("startinstance", "", "-s"); r.Code != 0 {
		t.Errorf("status of the only one: %s", r)
	}
	h.MustRun("", "startinstance", "-k")
	newInstance(t, h, "Group B", "Server Two", false)
	r := h.RunAs("startinstance", "")
	if r.Code != 0 {
		t.Fatalf("listing: %s", r)
	}
	want := []string{
		`usage:"startinstance [[-n instance-name -g group-name [instance-args]] | [directory-location [instance-args]]]"`,
		"The API Gateway instances listed below are available to run on this machine as follows:",
		`startinstance -n "Server One" -g "Group A"`,
		`startinstance -n "Server Two" -g "Group B"`,
	}
	for _, w := range want {
		if !strings.Contains(r.Stdout, w) {
			t.Errorf("listing lacks %q:\n%s", w, r.Stdout)
		}
	}
}

func TestDirectoryForm(t *testing.T) {
	h := gwtest.NewHome(t)
	p := newInstance(t, h, "G", "S", false)
	dir := h.Path("groups", "group-2", "instance-1")
	h.MustRun("", "startinstance", "-d", "-h", dir)
	gwtest.AwaitHTTP(t, p.url("/healthcheck"), 200, 5*time.Second)
	if r := h.Run("", "startinstance", "-s", dir); r.Code != 0 {
		t.Errorf("status by positional dir: %s", r)
	}
	h.MustRun("", "startinstance", "-k", dir)
	if r := h.Run("", "startinstance", "-s", h.Path("groups", "group-2")); r.Code != 1 || !strings.Contains(r.Stderr, "not an instance directory") {
		t.Errorf("bad dir: %s", r)
	}
}

func TestZeroDowntimeShutdown(t *testing.T) {
	h := gwtest.NewHome(t)
	p := newInstance(t, h, "G", "S", true)
	id := []string{"-n", "S", "-g", "G"}
	h.MustRun("", append([]string{"startinstance", "-d", "-q"}, id...)...)

	// A slow request in flight before the stop begins.
	slow := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		req, _ := http.NewRequest("GET", p.url("/sample/delay/3000"), nil)
		c := &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second}
		close(started)
		resp, err := c.Do(req)
		if err != nil {
			slow <- err
			return
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 {
			slow <- fmt.Errorf("status %d", resp.StatusCode)
			return
		}
		slow <- nil
	}()
	<-started
	// Make sure the slow request reached the instance before -k.
	awaitStatus(t, h, p, func(s map[string]any) bool { n, _ := s["inFlight"].(float64); return n >= 1 })

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kill := h.Command(ctx, "", append([]string{"startinstance", "-k"}, id...)...)
	var kout strings.Builder
	kill.Stdout, kill.Stderr = &kout, &kout
	if err := kill.Start(); err != nil {
		t.Fatal(err)
	}
	gwtest.AwaitHTTP(t, p.url("/healthchecklb"), 503, 10*time.Second)
	// During the delay every other route is still served.
	if code, _ := gwtest.Get(t, p.url("/sample/echo")); code != 200 {
		t.Errorf("/sample/echo during the delay: got %d, want 200", code)
	}
	if code, _ := gwtest.Get(t, p.url("/healthcheck")); code != 200 {
		t.Errorf("/healthcheck during the delay: got %d, want 200", code)
	}
	awaitStatus(t, h, p, func(s map[string]any) bool { return s["phase"] == "draining" })
	if err := kill.Wait(); err != nil {
		t.Fatalf("startinstance -k: %v\n%s", err, kout.String())
	}
	if err := <-slow; err != nil {
		t.Errorf("in-flight /sample/delay/3000: %v, want 200", err)
	}
	logs, _ := os.ReadFile(h.Path("groups", "group-2", "instance-1", "logs", "instance.log"))
	for _, phase := range []string{"draining", "closing", "stopped"} {
		if !strings.Contains(string(logs), phase) {
			t.Errorf("instance.log lacks phase %q", phase)
		}
	}
}

func TestShutdownWithoutZDTFinishesInFlight(t *testing.T) {
	h := gwtest.NewHome(t)
	p := newInstance(t, h, "G", "S", false)
	h.MustRun("", "startinstance", "-d", "-q", "-n", "S", "-g", "G")
	slow := make(chan int, 1)
	go func() {
		resp, err := (&http.Client{Transport: &http.Transport{}}).Get(p.url("/sample/delay/1500"))
		if err != nil {
			slow <- -1
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		slow <- resp.StatusCode
	}()
	awaitStatus(t, h, p, func(s map[string]any) bool { n, _ := s["inFlight"].(float64); return n >= 1 })
	h.MustRun("", "startinstance", "-k", "-n", "S", "-g", "G")
	if got := <-slow; got != 200 {
		t.Errorf("in-flight request: got %d, want 200", got)
	}
}

func TestDPropertyAndSignals(t *testing.T) {
	h := gwtest.NewHome(t)
	p := newInstance(t, h, "G", "S", false)
	// -D turns zero-downtime shutdown on for one run, with a long delay...
	h.MustRun("", "startinstance", "-d", "-q", "-n", "S", "-g", "G", "-DzeroDowntime.shutdown.enabled", "-D", "zeroDowntime.shutdown.delay=60")
	pid := readPID(t, h)
	syscall.Kill(pid, syscall.SIGTERM)
	gwtest.AwaitHTTP(t, p.url("/healthchecklb"), 503, 10*time.Second)
	// ...which a second signal cuts short.
	syscall.Kill(pid, syscall.SIGTERM)
	awaitGone(t, pid)

	// SIGQUIT stops at once, even mid-delay.
	h.MustRun("", "startinstance", "-d", "-q", "-n", "S", "-g", "G", "-DzeroDowntime.shutdown.enabled=true", "-DzeroDowntime.shutdown.delay=60")
	pid = readPID(t, h)
	syscall.Kill(pid, syscall.SIGQUIT)
	awaitGone(t, pid)
	if r := h.Run("", "startinstance", "-s", "-n", "S", "-g", "G"); r.Code != 1 {
		t.Errorf("status after SIGQUIT: %s", r)
	}
}

func TestForegroundSIGTERM(t *testing.T) {
	h := gwtest.NewHome(t)
	p := newInstance(t, h, "G", "S", false)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := h.Command(ctx, "startinstance", "-n", "S", "-g", "G")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	gwtest.AwaitHTTP(t, p.url("/healthcheck"), 200, 20*time.Second)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("foreground instance after SIGTERM: %v, want exit 0\n%s", err, out.String())
	}
}

func TestStalePIDFile(t *testing.T) {
	h := gwtest.NewHome(t)
	p := newInstance(t, h, "G", "S", false)
	os.MkdirAll(h.Path("var", "run"), 0o755)
	// A pid file left by a crash, naming a live process that is not the
	// instance (this test): it must not be trusted.
	os.WriteFile(h.Path("var", "run", "instance-1.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	r := h.Run("", "startinstance", "-s", "-n", "S", "-g", "G")
	if r.Code != 1 || !strings.Contains(r.Stderr, "stale pid file") {
		t.Errorf("status with a stale pid file: %s", r)
	}
	os.WriteFile(h.Path("var", "run", "instance-1.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	if r := h.Run("", "startinstance", "-k", "-n", "S", "-g", "G"); r.Code != 0 || !strings.Contains(r.Stdout, "not running") {
		t.Errorf("-k with a stale pid file must not signal pid %d: %s", os.Getpid(), r)
	}
	os.WriteFile(h.Path("var", "run", "instance-1.pid"), []byte("999999\n"), 0o644)
	h.MustRun("", "startinstance", "-d", "-q", "-n", "S", "-g", "G")
	gwtest.AwaitHTTP(t, p.url("/healthcheck"), 200, 5*time.Second)
	if pid := readPID(t, h); pid == 999999 {
		t.Errorf("pid file not rewritten")
	}
}

func TestBadInput(t *testing.T) {
	h := gwtest.NewHome(t)
	p := newInstance(t, h, "Group A", "Server One", false)
	cases := []struct {
		name     string
		args     []string
		code     int
		contains []string
	}{
		{"unknown instance", []string{"startinstance", "-d", "-n", "Nope", "-g", "Group A"}, 1, []string{`no instance "Nope"`, `startinstance -n "Server One" -g "Group A"`}},
		{"unknown group", []string{"startinstance", "-s", "-n", "Server One", "-g", "Nope"}, 1, []string{`no group "Nope"`, `"Group A"`}},
		{"unknown flag", []string{"startinstance", "-x"}, 2, []string{`unknown option "-x"`, "accepted"}},
		{"-n without -g", []string{"startinstance", "-n", "Server One"}, 2, []string{"-n and -g go together"}},
		{"unknown property", []string{"startinstance", "-d", "-n", "Server One", "-g", "Group A", "-Dtraffic.prot=1"}, 1, []string{`unknown property "traffic.prot"`, "traffic.port"}},
		{"two passphrase sources", []string{"startinstance", "-P", "--passphrase_fd", "0"}, 2, []string{"exclude each other"}},
		{"--passphrase_fd not a number", []string{"startinstance", "--passphrase_fd", "x"}, 2, []string{"file descriptor number"}},
		{"--passphrase_file without value", []string{"startinstance", "--passphrase_file"}, 2, []string{"needs a value"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := h.Run("", tc.args...)
			if r.Code != tc.code {
				t.Errorf("exit: got %d, want %d\n%s", r.Code, tc.code, r)
			}
			for _, c := range tc.contains {
				if !strings.Contains(r.Stdout+r.Stderr, c) {
					t.Errorf("output lacks %q\n%s", c, r)
				}
			}
		})
	}
	t.Run("yaml error", func(t *testing.T) {
		gf := h.Path("groups", "group-2", "conf", "group.yaml")
		good, _ := os.ReadFile(gf)
		os.WriteFile(gf, []byte("zeroDowntime:\n  shutdown:\n    dealy: 3\n"), 0o644)
		defer os.WriteFile(gf, good, 0o644)
		r := h.Run("", "startinstance", "-d", "-n", "Server One", "-g", "Group A")
		if r.Code != 1 || !strings.Contains(r.Stderr, "group.yaml:3") || !strings.Contains(r.Stderr, "delay") {
			t.Errorf("yaml error: %s", r)
		}
		if r := h.Run("", "startinstance", "-s", "-n", "Server One", "-g", "Group A"); r.Code != 1 {
			t.Errorf("instance runs after a YAML error")
		}
	})
	t.Run("port in use", func(t *testing.T) {
		l, err := net.Listen("tcp", fmt.Sprintf(":%d", p.traffic))
		if err != nil {
			t.Skipf("cannot hold the port: %v", err)
		}
		defer l.Close()
		r := h.Run("", "startinstance", "-d", "-n", "Server One", "-g", "Group A")
		if r.Code != 1 || !strings.Contains(r.Stderr, strconv.Itoa(p.traffic)) || !strings.Contains(r.Stderr, "pid "+strconv.Itoa(os.Getpid())) {
			t.Errorf("port in use: want the port and pid %d named: %s", os.Getpid(), r)
		}
		if r := h.Run("", "startinstance", "-s", "-n", "Server One", "-g", "Group A"); r.Code != 1 {
			t.Errorf("instance runs after a port clash")
		}
	})
	t.Run("no domain", func(t *testing.T) {
		empty := gwtest.NewHome(t)
		r := empty.Run("", "startinstance")
		if r.Code != 1 || !strings.Contains(r.Stderr, "managedomain -i") {
			t.Errorf("no domain: %s", r)
		}
	})
}

func TestHelp(t *testing.T) {
	h := gwtest.NewHome(t)
	for _, args := range [][]string{{"startinstance", "--help"}, {"quickstart", "--help"}, {"--help"}} {
		r := h.Run("", args...)
		if r.Code != 0 || !strings.Contains(r.Stdout, "usage") {
			t.Errorf("%v: %s", args, r)
		}
	}
	if r := h.Run("", "nosuchtool"); r.Code != 2 || !strings.Contains(r.Stderr, "unknown tool") {
		t.Errorf("unknown tool: %s", r)
	}
}

func TestQuickstart(t *testing.T) {
	h := gwtest.NewHome(t)
	p := ports{gwtest.FreePort(t), gwtest.FreePort(t), gwtest.FreePort(t)}
	r := h.MustRun("", "quickstart", "-d", "--traffic_port", strconv.Itoa(p.traffic), "--management_port", strconv.Itoa(p.mgmt), "--sample_port", strconv.Itoa(p.sample))
	if !strings.Contains(r.Stdout, "password:") || !strings.Contains(r.Stdout, "/sample/echo") {
		t.Errorf("quickstart output: %s", r)
	}
	pw := strings.Fields(r.Stdout[strings.Index(r.Stdout, "password:"):])[1]
	users, _ := os.ReadFile(h.Path("conf", "adminUsers.json"))
	if strings.Contains(string(users), pw) {
		t.Errorf("the admin password is stored in plaintext")
	}
	code, body := gwtest.Get(t, p.url("/sample/echo?x=1"))
	var echo map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &echo) != nil || echo["method"] != "GET" {
		t.Errorf("sample echo: %d %s", code, body)
	}
	if code, _ := gwtest.Get(t, p.url("/sample/status/418")); code != 418 {
		t.Errorf("sample status: got %d, want 418", code)
	}
	if code, _ := gwtest.Get(t, p.url("/nope")); code != 404 {
		t.Errorf("unknown path: got %d, want 404", code)
	}
	// The install directory works on its own: posix/bin/startinstance is the binary.
	link := h.Path("posix", "bin", "startinstance")
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("posix/bin/startinstance: %v", err)
	}
	r2 := h.Run("", "quickstart", "-d")
	if r2.Code != 1 || !strings.Contains(r2.Stderr, "already running") {
		t.Errorf("quickstart while running: %s", r2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := h.Command(ctx, "", "-k", "-n", "QuickStart Server", "-g", "QuickStart Group")
	cmd.Path = link
	cmd.Args[0] = link
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("posix/bin/startinstance -k: %v\n%s", err, out)
	}
	// Again: the domain is reused, no new password, new port applied.
	p.traffic = gwtest.FreePort(t)
	r3 := h.MustRun("", "quickstart", "-d", "--traffic_port", strconv.Itoa(p.traffic))
	if strings.Contains(r3.Stdout, "password:") {
		t.Errorf("second quickstart printed a password: %s", r3)
	}
	if code, _ := gwtest.Get(t, p.url("/sample/echo")); code != 200 {
		t.Errorf("after re-run on a new port: got %d", code)
	}
	h.MustRun("", "startinstance", "-k", "-n", "QuickStart Server", "-g", "QuickStart Group")
}

func readPID(t *testing.T, h *gwtest.Home) int {
	t.Helper()
	data, err := os.ReadFile(h.Path("var", "run", "instance-1.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

func awaitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("process %d still running", pid)
}

// awaitStatus polls the management /status (mutual TLS, a client
// certificate of h's domain CA) until cond holds.
func awaitStatus(t *testing.T, h *gwtest.Home, p ports, cond func(map[string]any) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last map[string]any
	for time.Now().Before(deadline) {
		resp, err := h.MgmtClient().Get(gwtest.MgmtURL(p.mgmt, "/status"))
		if err == nil {
			last = nil
			json.NewDecoder(resp.Body).Decode(&last)
			resp.Body.Close()
			if cond(last) {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("management status never met the condition; last %v", last)
}

// alive reports whether pid is a live process (a zombie waiting for a
// parent that does not reap counts as ended).
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// TestDaemonReadinessTimeout: an instance that does not report ready within
// startup.timeout is killed, and -d fails saying so.
func TestDaemonReadinessTimeout(t *testing.T) {
	h := gwtest.NewHome(t)
	newInstance(t, h, "G", "S", false)
	r := h.Run("", "startinstance", "-d", "-n", "S", "-g", "G", "-Dstartup.timeout=1ms")
	if r.Code != 1 || !strings.Contains(r.Stderr, "did not report ready within 1ms (startup.timeout)") || !strings.Contains(r.Stderr, "boot.log") {
		t.Errorf("readiness timeout: %s", r)
	}
	if r := h.Run("", "startinstance", "-s", "-n", "S", "-g", "G"); r.Code != 1 {
		t.Errorf("the instance runs after a readiness timeout: %s", r)
	}
}

// TestStartStopAudited: starts and stops made with startinstance are in the
// domain audit log, refused ones too, once each, and the chain verifies.
func TestStartStopAudited(t *testing.T) {
	h := gwtest.NewHome(t)
	newInstance(t, h, "G", "S", false)
	h.MustRun("", "startinstance", "-d", "-q", "-n", "S", "-g", "G")
	h.Run("", "startinstance", "-d", "-q", "-n", "S", "-g", "G") // refused: already running
	h.MustRun("", "startinstance", "-k", "-q", "-n", "S", "-g", "G")
	data, err := os.ReadFile(h.Path("conf", "audit", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var e struct{ Via, Action, Outcome string }
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		if e.Via == "startinstance" {
			got = append(got, e.Action+" "+e.Outcome)
		}
	}
	want := []string{"start instance ok", "start instance error", "stop instance ok"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("audit entries via startinstance: got %v, want %v", got, want)
	}
	if r := h.Run("", "audit", "verify"); r.Code != 0 {
		t.Errorf("audit verify: %s", r)
	}
}

// The path from QuickStart to a first changed API (#15): the group.yaml
// QuickStart wrote, changed, deployed with gatehouse deploy through the
// Admin Node Manager, is served by the QuickStart instance. The upload is
// validated with the instance's own settings (which enable the sample back
// end the group uses).
func TestQuickstartDeploy(t *testing.T) {
	h := gwtest.NewHome(t)
	p := ports{gwtest.FreePort(t), gwtest.FreePort(t), gwtest.FreePort(t)}
	nm := gwtest.FreePort(t)
	r := h.MustRun("", "quickstart", "-d", "--traffic_port", strconv.Itoa(p.traffic), "--management_port", strconv.Itoa(p.mgmt), "--sample_port", strconv.Itoa(p.sample), "--port", strconv.Itoa(nm))
	t.Cleanup(func() {
		h.Run("", "nodemanager", "-k", "-q")
		h.Run("", "startinstance", "-k", "-n", "QuickStart Server", "-g", "QuickStart Group")
	})
	pw := strings.Fields(r.Stdout[strings.Index(r.Stdout, "password:"):])[1]
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte(pw+"\n"), 0o600)
	h.MustRun("", "nodemanager", "-d")
	group, _ := filepath.Glob(h.Path("groups", "group-*", "conf", "group.yaml"))
	if len(group) != 1 {
		t.Fatalf("group.yaml: %v", group)
	}
	data, err := os.ReadFile(group[0])
	if err != nil {
		t.Fatal(err)
	}
	changed := filepath.Join(t.TempDir(), "group.yaml")
	os.WriteFile(changed, append(data, "  - name: echo2\n    pathPrefix: /echo2\n    stripPrefix: true\n    backend: sample\n"...), 0o644)
	client := []string{"--url", fmt.Sprintf("https://127.0.0.1:%d/api", nm), "--username", "admin", "--password-file", pwFile}
	// Unchanged first (the QuickStart group as it was written).
	if r := h.Run("", append(append([]string{"deploy"}, client...), "-g", "QuickStart Group", group[0])...); r.Code != 0 || !strings.Contains(r.Stdout, "succeeded") {
		t.Fatalf("deploy %s: %s", group[0], r)
	}
	// Then changed, with the tools on the PATH as QuickStart says.
	bin := h.Path("posix", "bin")
	if !strings.Contains(r.Stdout, "export PATH="+bin+":$PATH") {
		t.Errorf("quickstart does not print the PATH line: %s", r.Stdout)
	}
	for _, tool := range []string{"gatehouse", "managedomain", "startinstance", "nodemanager", "quickstart", "client", "deploy", "rollback", "deployments", "archive", "audit", "kpsadmin"} {
		if _, err := os.Stat(filepath.Join(bin, tool)); err != nil {
			t.Errorf("posix/bin/%s: %v", tool, err)
		}
	}
	shArgs := append([]string{"-c", `export PATH="$BIN:$PATH"; deploy "$@"`, "sh"}, client...)
	sh := exec.Command("sh", append(shArgs, "-g", "QuickStart Group", changed)...)
	sh.Env = append(os.Environ(), "BIN="+bin)
	if out, err := sh.CombinedOutput(); err != nil || !strings.Contains(string(out), "succeeded") {
		t.Fatalf("deploy from the PATH: %v\n%s", err, out)
	}
	code, body := gwtest.Get(t, p.url("/echo2/echo?x=1"))
	if code != 200 || !strings.Contains(body, `"method"`) {
		t.Fatalf("the new API after the deployment: %d %s", code, body)
	}
	if code, _ := gwtest.Get(t, p.url("/sample/status/418")); code != 418 {
		t.Errorf("the QuickStart API after the deployment: %d", code)
	}
	// The instance runs archive 2; conf/group.yaml is not it: the reload
	// of the deployment says so in the instance's log.
	logs, _ := filepath.Glob(h.Path("groups", "group-2", "instance-1", "logs", "instance*.log"))
	var all string
	for _, f := range logs {
		b, _ := os.ReadFile(f)
		all += string(b)
	}
	if !strings.Contains(all, "the group's group.yaml differs from the deployed archive this instance runs") {
		t.Errorf("no warning that group.yaml is not what runs in %v", logs)
	}
	if r := h.Run("", "quickstart", "--port", "9999"); r.Code != 2 || !strings.Contains(r.Stderr, "this domain exists") {
		t.Errorf("quickstart --port on an existing domain: %s", r)
	}
}

// TestStartinstanceYAMLLine (#15 bug 3): a badly indented item in the
// group's configuration is reported on its own line (3), not on the line
// of the block it is in (yaml.v3 said line 1), and the instance does not
// start.
func TestStartinstanceYAMLLine(t *testing.T) {
	h := gwtest.NewHome(t)
	newInstance(t, h, "G", "one", false)
	gdirs, _ := filepath.Glob(h.Path("groups", "group-*", "conf", "group.yaml"))
	if len(gdirs) != 1 {
		t.Fatalf("group files: %v", gdirs)
	}
	if err := os.WriteFile(gdirs[0], []byte("backends:\n  - name: be\n   url: http://127.0.0.1:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := h.Run("", "startinstance", "-n", "one", "-g", "G", "-d")
	t.Cleanup(func() { h.Run("", "startinstance", "-n", "one", "-g", "G", "-k") })
	if r.Code == 0 || !strings.Contains(r.Stderr, "group.yaml:3") || strings.Contains(r.Stderr, "group.yaml:1:") {
		t.Errorf("startinstance with a badly indented line 3: %s", r)
	}
}
