package ratelimit_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/nodemanager"
	"github.com/gatehouse-gw/gatehouse/internal/supervisor"
)

// The group of the process test: one API limited to 20 requests a minute
// per client address, on a back end of the test.
const groupYAML = `backends:
  - name: be
    url: %s
apis:
  - name: limited
    pathPrefix: /limited
    backend: be
    policies:
      - rateLimit: {requests: 20, window: 60s}
  - name: tenants
    pathPrefix: /tenants
    backend: be
    policies:
      - rateLimit: {requests: 20, window: 60s, key: "header:X-Tenant"}
`

// TestProcessesGroupWideLimit: two instances (real processes of the built
// binary, started by a node manager in this process, their bus formed from
// the topology over mutual TLS) share one limit: 40 requests of one client
// sent alternately to both get 20 through at most, and each instance
// answers 429 with Retry-After and the RateLimit fields once the group's
// limit is reached. Then one is killed with SIGKILL: the survivor enforces
// its share (half), says so in its metrics and logs it once.
func TestProcessesGroupWideLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	h := gwtest.NewHome(t)
	hh := home.Home{Dir: h.Dir}
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("changeme-Secret1\n"), 0o600)
	h.MustRun("", "managedomain", "-i", "--domain_name", "D", "--username", "admin", "--password_file", pw, "--port", strconv.Itoa(gwtest.FreePort(t)))
	tps := map[string]int{}
	for i := range 2 {
		name := "s" + strconv.Itoa(i+1)
		tp := gwtest.FreePort(t)
		h.MustRun("", "managedomain", "-c", "-n", name, "-g", "g1", "--traffic_port", strconv.Itoa(tp), "--management_port", strconv.Itoa(gwtest.FreePort(t)))
		tps[name] = tp
	}
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	t.Cleanup(be.Close)
	gconf, _ := filepath.Glob(h.Path("groups", "group-*", "conf", "group.yaml"))
	if len(gconf) != 1 {
		t.Fatalf("group configurations: %v", gconf)
	}
	if err := os.WriteFile(gconf[0], []byte(fmt.Sprintf(groupYAML, be.URL)), 0o644); err != nil {
		t.Fatal(err)
	}
	gid := filepath.Base(filepath.Dir(filepath.Dir(gconf[0])))
	nm, err := nodemanager.New(nodemanager.Options{Home: hh, Exe: gwtest.Binary(t), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := nm.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		nm.Shutdown(ctx)
	})
	sup := nm.Supervisor()
	var traffic, mgmt []int
	var ids []string
	for _, st := range sup.States() {
		ids = append(ids, st.ID)
		cfg, err := groupconf.LoadInstance(hh, gid, st.ID, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(hh.InstanceDir(gid, st.ID), "conf", "instance.yaml")
		old, _ := os.ReadFile(f)
		extra := fmt.Sprintf("\ncluster:\n  address: 127.0.0.1\n  port: %d\n", gwtest.FreePort(t))
		if err := os.WriteFile(f, append(old, extra...), 0o644); err != nil {
			t.Fatal(err)
		}
		traffic, mgmt = append(traffic, tps[st.Name]), append(mgmt, cfg.Management.Port)
		if s, err := sup.StartInstance(t.Context(), st.ID); err != nil || s.Status != supervisor.StatusRunning {
			t.Fatalf("starting %s: %+v, %v", st.ID, s, err)
		}
	}
	// Each instance's rate limits see the whole group.
	for _, mp := range mgmt {
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, body := h.MgmtGet(mp, "/metrics")
			if strings.Contains(body, `gatehouse_ratelimit_instances{view="live"} 2`) && strings.Contains(body, "gatehouse_ratelimit_partitioned 0") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("management port %d: the rate limits do not see 2 live instances; metrics:\n%s", mp, grep(body, "gatehouse_ratelimit_"))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	time.Sleep(500 * time.Millisecond) // the subscriptions travel through the routes
	// Not across a window's end: the previous window's count weighs in,
	// which makes the count here harder to predict.
	if left := time.Until(time.Now().Truncate(time.Minute).Add(time.Minute)); left < 10*time.Second {
		time.Sleep(left + 100*time.Millisecond)
	}
	allowed := 0
	refused := map[int]*http.Response{}
	for i := range 40 {
		port := traffic[i%2]
		resp, err := gwtest.HTTPClient.Get(fmt.Sprintf("http://127.0.0.1:%d/limited/x", port))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case 200:
			allowed++
			if resp.Header.Get("RateLimit-Policy") != `"default";q=20;w=60` || !strings.HasPrefix(resp.Header.Get("RateLimit"), `"default";r=`) {
				t.Errorf("request %d: 200 with RateLimit-Policy %q RateLimit %q", i+1, resp.Header.Get("RateLimit-Policy"), resp.Header.Get("RateLimit"))
			}
		case 429:
			refused[port] = resp
		default:
			t.Fatalf("request %d to port %d: status %d", i+1, port, resp.StatusCode)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("40 requests of one client over 2 instances, limit 20 a minute: %d allowed", allowed)
	if allowed > 20 || allowed < 17 {
		t.Errorf("got %d allowed, want 17 to 20 (the group's limit, 20; each instance alone would let 20 through)", allowed)
	}
	if len(refused) != 2 {
		t.Fatalf("429 from %d instances, want both", len(refused))
	}
	for port, resp := range refused {
		ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		if err != nil || ra < 1 || ra > 120 {
			t.Errorf("port %d: 429 with Retry-After %q, want 1 to 120 seconds", port, resp.Header.Get("Retry-After"))
		}
		if got := resp.Header.Get("RateLimit"); got != fmt.Sprintf(`"default";r=0;t=%d`, ra) {
			t.Errorf("port %d: 429 with RateLimit %q, want r=0 and t=%d", port, got, ra)
		}
		if resp.Header.Get("RateLimit-Policy") != `"default";q=20;w=60` {
			t.Errorf("port %d: 429 with RateLimit-Policy %q", port, resp.Header.Get("RateLimit-Policy"))
		}
	}

	// A peer killed: the survivor sees 1 of 2 and enforces half the limit.
	st, _ := sup.Status(ids[1])
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	awaitMetric(t, h, mgmt[0], 30*time.Second, `gatehouse_ratelimit_partitioned 1`, `gatehouse_ratelimit_instances{view="live"} 1`, `gatehouse_ratelimit_instances{view="group"} 2`)
	tenant := 0
	for range 30 {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/tenants/x", traffic[0]), nil)
		req.Header.Set("X-Tenant", "t2")
		resp, err := gwtest.HTTPClient.Do(req)
		if err != nil {
			t.Fatalf("the survivor does not answer: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			tenant++
		}
	}
	if tenant != 10 {
		t.Errorf("the survivor of 2, limit 20: got %d of 30 allowed, want 10 (its share)", tenant)
	}
	logData, _ := os.ReadFile(filepath.Join(hh.InstanceLogsDir(gid, ids[0]), "instance.log"))
	if n := strings.Count(string(logData), "rate limits: the group is partitioned"); n != 1 {
		t.Errorf("the survivor logged the partition %d times, want once", n)
	}
}

func awaitMetric(t *testing.T, h *gwtest.Home, port int, within time.Duration, want ...string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		_, body := h.MgmtGet(port, "/metrics")
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(body, w)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("management port %d: want %q within %v; metrics:\n%s", port, want, within, grep(body, "gatehouse_ratelimit_"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func grep(s, part string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, part) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
