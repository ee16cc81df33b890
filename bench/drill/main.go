// Command drill measures the recovery time of a disaster-recovery drill
// (issue 21: "RTO under 60 s for a domain of 3 hosts, 6 instances and
// 100,000 KPS rows on this machine").
//
// It builds such a domain with the given gatehouse binary on loopback: an
// Admin Node Manager on 127.0.0.2 and two joined hosts on 127.0.0.3 and
// 127.0.0.4 (separate install directories, real node managers), a group
// with two instances on each host, running, and -rows rows in the group's
// embedded store on the Admin Node Manager's host (its client
// applications' table, as kpsadmin sees them). Then it runs
// gatehouse dr drill --domain -rounds times and prints each round's
// recovery time and the median. Everything is stopped and removed at the
// end.
//
//	go build -o /tmp/gatehouse ./cmd/gatehouse
//	go run ./bench/drill -bin /tmp/gatehouse -rows 100000 -rounds 3
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apps"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/sqlite"
)

const password = "drill-bench-Secret1"

type host struct {
	dir, ip string
	port    int
}

func (h host) run(bin string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "GATEHOUSE_HOME="+h.dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("gatehouse %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func freePort(ip string) int {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		die("a free port on %s: %v", ip, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func die(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "drill: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	bin := flag.String("bin", "", "the gatehouse binary (go build -o /tmp/gatehouse ./cmd/gatehouse)")
	rows := flag.Int("rows", 100000, "KPS rows in the group's store")
	rounds := flag.Int("rounds", 3, "drills")
	keep := flag.Bool("keep", false, "keep the install directories")
	flag.Parse()
	if *bin == "" {
		die("-bin is needed")
	}
	abs, err := filepath.Abs(*bin)
	if err != nil {
		die("%v", err)
	}
	*bin = abs
	root, err := os.MkdirTemp("", "gatehouse-drill-bench-")
	if err != nil {
		die("%v", err)
	}
	hosts := []host{{ip: "127.0.0.2"}, {ip: "127.0.0.3"}, {ip: "127.0.0.4"}}
	stop := func() {
		for _, h := range hosts {
			if h.dir != "" {
				h.run(*bin, "nodemanager", "-k", "-q")
				for i := 1; i <= 6; i++ {
					exec.Command("sh", "-c", fmt.Sprintf("cd %s && for f in var/run/instance-*.pid; do [ -f \"$f\" ] && kill $(cut -d' ' -f1 \"$f\") 2>/dev/null; done", h.dir)).Run()
				}
			}
		}
		if !*keep {
			os.RemoveAll(root)
		}
	}
	defer stop()
	pw := filepath.Join(root, "pw")
	os.WriteFile(pw, []byte(password+"\n"), 0o600)
	for i := range hosts {
		hosts[i].dir = filepath.Join(root, fmt.Sprintf("host%d", i+1), "apigateway")
		hosts[i].port = freePort(hosts[i].ip)
	}
	anm := hosts[0]
	out, err := anm.run(*bin, "managedomain", "-i", "--domain_name", "Drill", "--username", "admin", "--password_file", pw,
		"--host_name", "drill-1", "--nm_address", anm.ip, "--port", strconv.Itoa(anm.port))
	if err != nil {
		die("%v", err)
	}
	m := regexp.MustCompile(`SHA-256 fingerprint ([0-9A-F:]+)`).FindStringSubmatch(out)
	if m == nil {
		die("no fingerprint in: %s", out)
	}
	if _, err := anm.run(*bin, "nodemanager", "-d", "-q"); err != nil {
		die("%v", err)
	}
	for i, h := range hosts[1:] {
		if _, err := h.run(*bin, "managedomain", "-a", "--anm_host", fmt.Sprintf("%s:%d", anm.ip, anm.port), "--username", "admin", "--password_file", pw,
			"--host_name", fmt.Sprintf("drill-%d", i+2), "--nm_address", h.ip, "--port", strconv.Itoa(h.port), "--anm_fingerprint", m[1]); err != nil {
			die("%v", err)
		}
		if _, err := h.run(*bin, "nodemanager", "-d", "-q"); err != nil {
			die("%v", err)
		}
	}
	api := newAPI(anm)
	var group struct{ ID string }
	api.call("POST", "/api/topology/groups", `{"name":"G"}`, &group)
	var ids []string
	for hi := range hosts {
		for k := 1; k <= 2; k++ {
			var svc struct{ ID string }
			api.call("POST", "/api/topology/services/"+group.ID, fmt.Sprintf(`{"name":"gw%d-%d","hostID":"host-%d","trafficPort":%d,"managementPort":%d}`,
				hi+1, k, hi+1, freePort("127.0.0.1"), freePort("127.0.0.1")), &svc)
			ids = append(ids, svc.ID)
		}
	}
	// The rows, before the instances open the store.
	t0 := time.Now()
	if err := loadRows(home.Home{Dir: anm.dir}, group.ID, *rows); err != nil {
		die("loading %d rows: %v", *rows, err)
	}
	fmt.Printf("domain: 3 hosts (127.0.0.2-4), 6 instances, %d KPS rows (loaded in %.1f s)\n", *rows, time.Since(t0).Seconds())
	for _, id := range ids {
		api.call("POST", "/api/management/start/"+group.ID+"/"+id, "", nil)
	}
	re := regexp.MustCompile(`Recovery time: ([0-9.]+) s to the first successful smoke request, ([0-9.]+) s to the last \(restore ([0-9.]+) s`)
	var first, last []float64
	for r := 1; r <= *rounds; r++ {
		out, err := anm.run(*bin, "dr", "drill", "--domain", "--report", filepath.Join(root, fmt.Sprintf("drill-%d.json", r)))
		if err != nil {
			die("round %d: %v", r, err)
		}
		mm := re.FindStringSubmatch(out)
		if mm == nil {
			die("round %d: no recovery time in:\n%s", r, out)
		}
		f, _ := strconv.ParseFloat(mm[1], 64)
		l, _ := strconv.ParseFloat(mm[2], 64)
		first, last = append(first, f), append(last, l)
		fmt.Printf("round %d: recovery time %s s to the first smoke request, %s s to the last (restore %s s)\n", r, mm[1], mm[2], mm[3])
	}
	fmt.Printf("median of %d rounds: %.1f s to the first smoke request, %.1f s to the last (target: under 60 s)\n", *rounds, median(first), median(last))
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// loadRows puts n client applications into the group's embedded store.
func loadRows(h home.Home, gid string, n int) error {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, kps.SQLiteConfig{Path: sqlite.GroupPath(h, gid)})
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Define(ctx, apps.Tables()...); err != nil {
		return err
	}
	const batch = 5000
	now := time.Now().UnixMilli()
	for i := 0; i < n; i += batch {
		var rows []map[string]any
		for j := i; j < min(i+batch, n); j++ {
			rows = append(rows, appRow(j, now))
		}
		if err := st.InsertMany(ctx, apps.AppsTable, rows); err != nil {
			return err
		}
	}
	return nil
}

// appRow is client application j.
func appRow(j int, now int64) map[string]any {
	return map[string]any{"id": fmt.Sprintf("drill-app-%07d", j), "name": fmt.Sprintf("drill application %07d", j),
		"description": "made by bench/drill", "contact": "ops@example.com", "enabled": true, "apis": []string{}, "createdAt": now}
}

type apiClient struct {
	base string
	hc   *http.Client
}

func newAPI(anm host) *apiClient {
	ca, err := os.ReadFile(filepath.Join(anm.dir, "groups", "certs", "domaincert.pem"))
	if err != nil {
		die("%v", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &apiClient{base: fmt.Sprintf("https://%s:%d", anm.ip, anm.port),
		hc: &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
}

func (a *apiClient) call(method, path, body string, out any) {
	req, _ := http.NewRequest(method, a.base+path, strings.NewReader(body))
	req.SetBasicAuth("admin", password)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		die("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		die("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	if out != nil {
		var env struct{ Result json.RawMessage }
		json.Unmarshal(data, &env)
		json.Unmarshal(env.Result, out)
	}
}
