// Package gwtest is the integration-test harness: it builds the gatehouse
// binary once per test process, makes temporary install directories, runs the
// real tools against them and starts, awaits and stops real instances.
package gwtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// repoRoot finds the module root from this file's location.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Binary builds ./cmd/gatehouse once (per test binary) and returns its path.
// Set GATEHOUSE_BIN to test a prebuilt binary instead.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if p := os.Getenv("GATEHOUSE_BIN"); p != "" {
			binPath = p
			return
		}
		dir, err := os.MkdirTemp("", "gatehouse-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "gatehouse")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/gatehouse")
		cmd.Dir = repoRoot()
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Result is what a finished command printed and returned.
type Result struct {
	Stdout, Stderr string
	Code           int
}

func (r Result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
}

// Home is a temporary install directory for one test.
type Home struct {
	T   testing.TB
	Dir string
	// Env is added to every command's environment (GATEHOUSE_HOME is set).
	Env []string

	mgmtMu                sync.Mutex // guards the fields below (mgmt.go)
	clientCert, clientKey string
	mgmtClient            *http.Client
}

// NewHome makes an empty install directory. Instances started in it are
// stopped (SIGKILL after a grace period) when the test ends.
func NewHome(t testing.TB) *Home {
	t.Helper()
	h := &Home{T: t, Dir: filepath.Join(t.TempDir(), "apigateway")}
	if err := os.MkdirAll(h.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.killAll)
	return h
}

// Command returns an exec.Cmd running the gatehouse binary with args in h.
// Use argv0 to run it under a tool's name ("" keeps "gatehouse").
func (h *Home) Command(ctx context.Context, argv0 string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, Binary(h.T), args...)
	if argv0 != "" {
		cmd.Args[0] = argv0
	}
	cmd.Env = append(os.Environ(), "GATEHOUSE_HOME="+h.Dir)
	cmd.Env = append(cmd.Env, h.Env...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Run runs `gatehouse args...` with stdin (may be nil) and returns its result.
// It fails the test only if the binary could not be run at all.
func (h *Home) Run(stdin string, args ...string) Result {
	h.T.Helper()
	return h.RunAs("", stdin, args...)
}

// RunAs is Run with argv[0] set to argv0 (busybox-style tool name).
func (h *Home) RunAs(argv0, stdin string, args ...string) Result {
	h.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := h.Command(ctx, argv0, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := Result{Stdout: out.String(), Stderr: errb.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			h.T.Fatalf("running gatehouse %v: %v", args, err)
		}
		r.Code = ee.ExitCode()
	}
	return r
}

// MustRun runs and fails the test unless the exit code is 0.
func (h *Home) MustRun(stdin string, args ...string) Result {
	h.T.Helper()
	r := h.Run(stdin, args...)
	if r.Code != 0 {
		h.T.Fatalf("gatehouse %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// Path joins elements under the install directory.
func (h *Home) Path(elem ...string) string {
	return filepath.Join(append([]string{h.Dir}, elem...)...)
}

// InitDomain runs managedomain -i with a password file.
func (h *Home) InitDomain() {
	h.T.Helper()
	pw := filepath.Join(h.T.TempDir(), "pw")
	os.WriteFile(pw, []byte("changeme-Secret1\n"), 0o600)
	h.MustRun("", "managedomain", "-i", "--domain_name", "TestDomain", "--username", "admin", "--password_file", pw)
}

// killAll stops every node manager and instance still running in h (test
// cleanup).
func (h *Home) killAll() {
	matches, _ := filepath.Glob(h.Path("var", "run", "*.pid"))
	// Node managers first, so that none restarts an instance being stopped.
	for _, m := range matches {
		if strings.HasPrefix(filepath.Base(m), "nodemanager-") {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			h.Command(ctx, "", "nodemanager", "-k", "-q").Run()
			cancel()
		}
	}
	for _, m := range matches {
		id := strings.TrimSuffix(filepath.Base(m), ".pid")
		if strings.HasPrefix(id, "nodemanager-") {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := h.Command(ctx, "", "startinstance", "-k", "-h", h.instanceDirByID(id))
		cmd.Run()
		cancel()
	}
}

func (h *Home) instanceDirByID(id string) string {
	matches, _ := filepath.Glob(h.Path("groups", "group-*", id))
	if len(matches) == 1 {
		return matches[0]
	}
	return h.Path("groups", "unknown", id)
}

var (
	portsMu sync.Mutex
	handed  = map[int]bool{}
)

// FreePort returns a TCP port of 127.0.0.1 that was free a moment ago and
// that no other FreePort call of this test process returned. Ports are
// taken below the kernel's ephemeral range (32768+), so that outgoing
// connections and listeners on port 0 do not take them in the meantime.
func FreePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for tries := 0; tries < 2000; tries++ {
		port := 20000 + rand.IntN(12000)
		if handed[port] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		handed[port] = true
		return port
	}
	t.Fatal("no free port found")
	return 0
}

// HTTPClient is a client with a timeout and no proxy.
var HTTPClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 8}}

// Get fetches url and returns status and body.
func Get(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := HTTPClient.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// AwaitHTTP polls url until it answers want or the deadline passes.
func AwaitHTTP(t testing.TB, url string, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		resp, err := HTTPClient.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("GET %s: want %d within %v, last: %s", url, want, within, last)
}

// HAProxy is the path of the haproxy binary (on the PATH, or in the
// Debian and source-install places). Without it the test is skipped,
// saying why (what tests it) — scripts/test installs it with apt-get.
func HAProxy(t testing.TB, why string) string {
	t.Helper()
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/haproxy", "/usr/local/sbin/haproxy"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skip("haproxy is not installed (scripts/test installs it with apt-get): " + why)
	return ""
}
