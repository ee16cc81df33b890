package tools_test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
)

// The commands of README.md and docs/tools.md, run as written (#15): the
// only changes are the install directory (a temporary one for
// /opt/gatehouse/apigateway) and an editor that saves the file unchanged.
// They use the documented default ports (8080, 8085, 8081, 8090).

// docBlocks are the ```sh blocks of a docs file, after the heading that
// contains after, each as its lines.
func docBlocks(t *testing.T, path, after string) [][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	i := strings.Index(s, after)
	if i < 0 {
		t.Fatalf("%s has no %q", path, after)
	}
	var out [][]string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(s[i:], -1) {
		out = append(out, strings.Split(strings.TrimRight(m[1], "\n"), "\n"))
	}
	return out
}

// docRunner runs documented command lines one at a time, keeping the
// variables their export lines set.
type docRunner struct {
	t    *testing.T
	env  []string
	dir  string // working directory
	home string // stands for /opt/gatehouse/apigateway
}

func newDocRunner(t *testing.T, dir string) *docRunner {
	bin := t.TempDir()
	if err := os.Symlink(gwtest.Binary(t), filepath.Join(bin, "gatehouse")); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(t.TempDir(), "apigateway")
	env := append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "GATEHOUSE_HOME="+home, "XDG_CONFIG_HOME="+t.TempDir(), "EDITOR=true")
	return &docRunner{t: t, env: env, dir: dir, home: home}
}

// line prepares a documented line: the install directory replaced, the
// trailing comment cut.
func (r *docRunner) line(l string) string {
	l = strings.ReplaceAll(l, "/opt/gatehouse/apigateway", r.home)
	if i := strings.Index(l, "  #"); i >= 0 {
		l = l[:i]
	}
	return strings.TrimSpace(l)
}

// run runs one line with stdin and returns its output; an export line
// updates the environment.
func (r *docRunner) run(l, stdin string) (string, error) {
	r.t.Helper()
	if strings.HasPrefix(l, "export ") {
		name, val, _ := strings.Cut(strings.TrimPrefix(l, "export "), "=")
		cmd := exec.Command("sh", "-c", `printf %s "`+val+`"`)
		cmd.Env = r.env
		out, err := cmd.Output()
		if err != nil {
			r.t.Fatalf("%s: %v", l, err)
		}
		r.env = append(r.env, name+"="+string(out))
		return "", nil
	}
	cmd := exec.Command("sh", "-c", l)
	cmd.Env, cmd.Dir, cmd.Stdin = r.env, r.dir, strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func repoRoot(t *testing.T) string {
	t.Helper()
	wd, _ := os.Getwd()
	return filepath.Join(wd, "..", "..")
}

func waitHealthy(t *testing.T, url string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		res, err := http.Get(url)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer 200 within %s", url, within)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// README.md: the first command (QuickStart in the foreground), the
// commands it says to try, the PATH line and the command that stops it.
func TestREADMECommands(t *testing.T) {
	root := repoRoot(t)
	r := newDocRunner(t, root)
	blocks := docBlocks(t, filepath.Join(root, "README.md"), "## The two commands")
	if len(blocks) < 3 {
		t.Fatalf("README.md: %d sh blocks after the two commands", len(blocks))
	}
	var first string
	for _, l := range blocks[0] {
		if strings.Contains(l, "quickstart") && !strings.HasPrefix(l, "#") {
			first = r.line(l)
		}
	}
	if first != "go run ./cmd/gatehouse quickstart" {
		t.Fatalf("README's first command: %q", first)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	qs := exec.CommandContext(ctx, "sh", "-c", "exec "+first)
	qs.Env, qs.Dir = r.env, root
	var qsOut bytes.Buffer
	qs.Stdout, qs.Stderr = &qsOut, &qsOut
	if err := qs.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		qs.Process.Signal(syscall.SIGINT)
		qs.Wait()
		if t.Failed() {
			t.Logf("quickstart output:\n%s", qsOut.String())
		}
	})
	waitHealthy(t, "http://127.0.0.1:8080/healthcheck", 3*time.Minute)
	for _, l := range blocks[1] {
		l = r.line(l)
		out, err := r.run(l, "")
		if err != nil || out == "" {
			t.Errorf("%s: %v\n%s", l, err, out)
		}
		if strings.HasSuffix(l, "/healthcheck") && !strings.Contains(out, "<status>ok</status>") {
			t.Errorf("%s: %s", l, out)
		}
		if strings.Contains(l, "status/418") && !strings.Contains(out, "418") {
			t.Errorf("%s: %s", l, out)
		}
	}
	// The PATH block: the tools by their names, and the stop.
	for _, l := range blocks[2] {
		l = r.line(l)
		if out, err := r.run(l, ""); err != nil {
			t.Errorf("%s: %v\n%s", l, err, out)
		}
	}
	done := make(chan error, 1)
	go func() { done <- qs.Wait() }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("QuickStart still runs after the README's stop command")
	}
}

// docs/tools.md "A domain from scratch", line by line.
func TestToolsDocFromScratch(t *testing.T) {
	root := repoRoot(t)
	r := newDocRunner(t, t.TempDir())
	blocks := docBlocks(t, filepath.Join(root, "docs", "tools.md"), "## A domain from scratch")
	t.Cleanup(func() {
		r.run("nodemanager -k -q", "")
		r.run(`startinstance -k -n "server1" -g "group1"`, "")
	})
	const pw = "changeme-Secret1\n"
	ran := 0
	for _, raw := range blocks[0] {
		l := r.line(raw)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.Contains(l, "--add_service") {
			continue // it writes into /etc/systemd/system: TestManagedomainService runs it with test directories
		}
		out, err := r.run(l, pw)
		if err != nil {
			t.Fatalf("%s: %v\n%s", raw, err, out)
		}
		t.Logf("$ %s\n%s", l, out)
		ran++
		switch {
		case strings.HasPrefix(l, "curl"):
			if !strings.Contains(out, "<status>ok</status>") {
				t.Errorf("%s: %s", l, out)
			}
		case strings.Contains(l, "--dry-run"):
			if !strings.Contains(out, "is valid") {
				t.Errorf("%s: %s", l, out)
			}
		case strings.HasPrefix(l, "gatehouse deploy"):
			if !strings.Contains(out, "succeeded") || !strings.Contains(out, filepath.Join("groups", "group-2", "conf", "group.yaml")) {
				t.Errorf("%s: %s", l, out)
			}
		}
	}
	if ran < 10 {
		t.Errorf("only %d commands of docs/tools.md ran", ran)
	}
}
