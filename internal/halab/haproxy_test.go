package halab

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
)

// haproxy is a real HAProxy in HTTP mode in front of the group's traffic
// ports, with a stats listener the lab reads to know which servers are in
// the pool and how many connection attempts HAProxy had to retry.
type haproxy struct {
	addr    string // the frontend, host:port
	stats   string // the stats CSV's URL
	dir     string // configuration and output
	servers []string
	exited  <-chan struct{}
	client  *http.Client
}

// haproxyBin finds HAProxy; the lab is skipped without it.
func haproxyBin(t *testing.T) string {
	return gwtest.HAProxy(t, "the HA lab needs a real load balancer")
}

// The health check is the one docs/deployment.md asks of a load balancer:
// GET /healthchecklb every 500 ms. fall 2 / rise 2: a server leaves the
// pool after two failed checks (at most about 1 s, less than the
// zero-downtime delays of the lab's group configuration) and comes back
// after two good ones.
//
// retries 2 and "option redispatch 1": a connection that cannot be made
// (an instance killed with SIGKILL has no listener any more) is retried on
// another server, as any production configuration does; what cannot be
// retried is a request already sent. The retries are counted (wretr and
// wredis of the backend) so that the zero-downtime scenarios can promise
// that HAProxy never even had to retry.
const haproxyConfig = `global
  maxconn 2000
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  timeout check 2s
  timeout http-keep-alive 30s
  retries 2
  option redispatch 1
frontend fe
  bind 127.0.0.1:%d
  default_backend gws
backend gws
  balance roundrobin
  option httpchk GET /healthchecklb
  http-check expect status 200
  default-server inter 500 fall 2 rise 2
%slisten stats
  bind 127.0.0.1:%d
  stats enable
  stats uri /stats
`

// startHAProxy runs HAProxy in the foreground until the test ends and
// returns once every server is UP.
func startHAProxy(t *testing.T, ports []int) *haproxy {
	t.Helper()
	bin := haproxyBin(t)
	lb := &haproxy{dir: t.TempDir(), client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}}
	fp, sp := gwtest.FreePort(t), gwtest.FreePort(t)
	var servers strings.Builder
	for i, p := range ports {
		name := fmt.Sprintf("gw%d", i+1)
		lb.servers = append(lb.servers, name)
		fmt.Fprintf(&servers, "  server %s 127.0.0.1:%d check\n", name, p)
	}
	file := filepath.Join(lb.dir, "haproxy.cfg")
	if err := os.WriteFile(file, []byte(fmt.Sprintf(haproxyConfig, fp, servers.String(), sp)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-db", "-f", file)
	out, err := os.Create(filepath.Join(lb.dir, "haproxy.out"))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting haproxy: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cancel(); <-exited; out.Close() })
	lb.exited = exited
	lb.addr = "127.0.0.1:" + strconv.Itoa(fp)
	lb.stats = fmt.Sprintf("http://127.0.0.1:%d/stats;csv", sp)
	if err := lb.awaitAllUp(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	return lb
}

// lbStats is what the stats CSV says: each server's status (UP, DOWN,
// "UP 1/2", …) and the backend's retries and redispatches so far.
type lbStats struct {
	status         map[string]string
	retries, redis int64
}

func (lb *haproxy) read() (lbStats, error) {
	select {
	case <-lb.exited:
		data, _ := os.ReadFile(filepath.Join(lb.dir, "haproxy.out"))
		return lbStats{}, fmt.Errorf("haproxy exited: %s", data)
	default:
	}
	resp, err := lb.client.Get(lb.stats)
	if err != nil {
		return lbStats{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return lbStats{}, err
	}
	// The first line is the header, "# pxname,svname,…": columns by name.
	r := csv.NewReader(strings.NewReader(strings.TrimPrefix(string(body), "# ")))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil || len(rows) < 2 {
		return lbStats{}, fmt.Errorf("haproxy stats: %v: %q", err, body)
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	field := func(row []string, name string) string {
		if i, ok := col[name]; ok && i < len(row) {
			return row[i]
		}
		return ""
	}
	st := lbStats{status: map[string]string{}}
	for _, row := range rows[1:] {
		if field(row, "pxname") != "gws" {
			continue
		}
		switch sv := field(row, "svname"); sv {
		case "BACKEND":
			st.retries, _ = strconv.ParseInt(field(row, "wretr"), 10, 64)
			st.redis, _ = strconv.ParseInt(field(row, "wredis"), 10, 64)
		case "FRONTEND":
		default:
			st.status[sv] = field(row, "status")
		}
	}
	return st, nil
}

// retried is the number of connection attempts HAProxy retried so far.
func (lb *haproxy) retried() int64 {
	st, err := lb.read()
	if err != nil {
		return 0
	}
	return st.retries + st.redis
}

// awaitUp waits until HAProxy has server i (0-based) fully UP.
func (lb *haproxy) awaitUp(i int, within time.Duration) error {
	return poll(within, 50*time.Millisecond, func() (bool, string) {
		st, err := lb.read()
		if err != nil {
			return false, err.Error()
		}
		s := st.status[lb.servers[i]]
		return s == "UP", fmt.Sprintf("HAProxy has %s %q", lb.servers[i], s)
	})
}

func (lb *haproxy) awaitAllUp(within time.Duration) error {
	for i := range lb.servers {
		if err := lb.awaitUp(i, within); err != nil {
			return err
		}
	}
	return nil
}

// poll calls cond every interval until it says true or within has passed;
// the error then carries cond's last description of what it saw.
func poll(within, interval time.Duration, cond func() (bool, string)) error {
	deadline := time.Now().Add(within)
	for {
		ok, last := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v: %s", within, last)
		}
		time.Sleep(interval) // polling interval of a condition with a deadline
	}
}
