package difftest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
)

// proxy is one reverse proxy under test and its own recording back end.
type proxy struct {
	name string
	addr string // 127.0.0.1:port of its traffic listener
	rec  *Recorder
}

func newRecorder(t *testing.T) *Recorder {
	t.Helper()
	rec, err := NewRecorder()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rec.Close)
	return rec
}

// binary finds a peer's executable on PATH or in the sbin folders, or skips
// the test (scripts/test installs both peers with apt-get).
func binary(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skipf("%s is not installed (scripts/test installs it with apt-get): differential test not run", name)
	return ""
}

// runForeground runs bin with args until the test ends, output in
// dir/NAME.out; the channel is closed if it exits.
func runForeground(t *testing.T, dir, name, bin string, args ...string) <-chan struct{} {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	out, err := os.Create(filepath.Join(dir, name+".out"))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cancel(); <-exited; out.Close() })
	return exited
}

// awaitListening polls addr until it accepts connections.
func awaitListening(t *testing.T, name, dir, addr string, exited <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			data, _ := os.ReadFile(filepath.Join(dir, name+".out"))
			t.Fatalf("%s exited: %s", name, data)
		case <-time.After(20 * time.Millisecond): // polling for readiness, not synchronising
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not accept on %s", name, addr)
		}
	}
}

// startNginx runs nginx in the foreground (no daemon, no master) as a
// reverse proxy to rec with keep-alive upstream connections.
func startNginx(t *testing.T, bin string, rec *Recorder) *proxy {
	t.Helper()
	dir := t.TempDir()
	port := gwtest.FreePort(t)
	cfg := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 512; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  upstream recorder {
    server %[2]s;
    keepalive 8;
  }
  server {
    listen 127.0.0.1:%[3]d;
    location / {
      proxy_pass http://recorder;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_read_timeout 5s;
    }
  }
}
`, dir, rec.Addr(), port)
	file := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	exited := runForeground(t, dir, "nginx", bin, "-p", dir, "-c", file, "-e", filepath.Join(dir, "error.log"))
	p := &proxy{name: "nginx", addr: "127.0.0.1:" + strconv.Itoa(port), rec: rec}
	awaitListening(t, "nginx", dir, p.addr, exited)
	return p
}

// startHAProxy runs HAProxy in the foreground in HTTP mode in front of rec,
// reusing server connections.
func startHAProxy(t *testing.T, bin string, rec *Recorder) *proxy {
	t.Helper()
	dir := t.TempDir()
	port := gwtest.FreePort(t)
	cfg := fmt.Sprintf(`global
  maxconn 500
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 5s
  timeout http-request 10s
  http-reuse always
frontend fe
  bind 127.0.0.1:%d
  default_backend recorder
backend recorder
  server rec %s
`, port, rec.Addr())
	file := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	exited := runForeground(t, dir, "haproxy", bin, "-db", "-f", file)
	p := &proxy{name: "haproxy", addr: "127.0.0.1:" + strconv.Itoa(port), rec: rec}
	awaitListening(t, "haproxy", dir, p.addr, exited)
	return p
}

// gatehouseGroup forwards every path to the recorder, keeping up to 8 idle
// connections to it (the default keeps 64: keep-alive is on either way),
// and skips the address after a failure for 1 ms only, so that a malformed
// response does not turn the next cases into 503s.
const gatehouseGroup = `backends:
  - name: recorder
    url: http://127.0.0.1:%[1]d
remoteHosts:
  - host: 127.0.0.1
    port: %[1]d
    maxIdleConns: 8
    failedAddressSkip: 1ms
    activeTimeout: 5
apis:
  - name: all
    pathPrefix: /
    backend: recorder
`

// startGatehouse creates a domain with one instance whose only API forwards
// everything to rec, and starts it.
func startGatehouse(t *testing.T, rec *Recorder) *proxy {
	t.Helper()
	h := gwtest.NewHome(t)
	h.InitDomain()
	traffic, mgmt := gwtest.FreePort(t), gwtest.FreePort(t)
	id := []string{"-n", "Diff Server", "-g", "Diff Group"}
	h.MustRun("", append([]string{"managedomain", "-c", "--traffic_port", strconv.Itoa(traffic), "--management_port", strconv.Itoa(mgmt)}, id...)...)
	gdirs, _ := filepath.Glob(h.Path("groups", "group-*", "conf"))
	if len(gdirs) != 1 {
		t.Fatalf("group configuration folders: got %v, want one", gdirs)
	}
	if err := os.WriteFile(filepath.Join(gdirs[0], "group.yaml"), []byte(fmt.Sprintf(gatehouseGroup, rec.Port())), 0o644); err != nil {
		t.Fatal(err)
	}
	h.MustRun("", append([]string{"startinstance", "-d", "-q"}, id...)...)
	t.Cleanup(func() { h.Run("", append([]string{"startinstance", "-k"}, id...)...) })
	return &proxy{name: "gatehouse", addr: "127.0.0.1:" + strconv.Itoa(traffic), rec: rec}
}
