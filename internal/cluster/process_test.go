package cluster_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apps"
	"github.com/gatehouse-gw/gatehouse/internal/cluster"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/nodemanager"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
	"github.com/gatehouse-gw/gatehouse/internal/supervisor"
)

// The group of the tests below: a lookup of a custom KPS table whose rows
// are cached for 10 minutes, so that only the bus can make a change seen
// in time; the back end answers the tier the gateway found.
const groupYAML = `kps:
  cache: {ttl: 10m, negativeTTL: 10m}
  tables:
    - collection: Test
      name: Tiers
      alias: tiers
      properties: [{name: id, type: string}, {name: tier, type: string}]
      primaryKey: id
backends:
  - name: be
    url: %s
apis:
  - name: tiers
    path: /tier/{id}
    backend: be
    policies:
      - lookup: {table: tiers, key: "param:id", as: t, required: true}
      - headers: {request: {set: {X-Tier: "${t.tier}"}}}
`

// lab is an install directory with a node manager (in this process) and n
// instances of one group (real processes of the built binary), each with
// its route listener on a loopback port of its own (instance.yaml).
type lab struct {
	h    *gwtest.Home
	hh   home.Home
	nm   *nodemanager.NodeManager
	sup  *supervisor.Supervisor
	gid  string
	ids  []string       // instance ids, in creation order
	tp   map[string]int // traffic port by id
	mp   map[string]int // management port by id
	rp   map[string]int // route port by id
	asNM *http.Client   // presents a certificate with this host's node manager's name
	anm  int            // the Admin Node Manager's port (the node manager in this process)
}

func newLab(t *testing.T, n int) *lab {
	t.Helper()
	h := gwtest.NewHome(t)
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("changeme-Secret1\n"), 0o600)
	anmPort := gwtest.FreePort(t)
	h.MustRun("", "managedomain", "-i", "--domain_name", "D", "--username", "admin", "--password_file", pw, "--port", strconv.Itoa(anmPort))
	l := &lab{h: h, hh: home.Home{Dir: h.Dir}, tp: map[string]int{}, mp: map[string]int{}, rp: map[string]int{}}
	l.anm = anmPort
	tps := map[string]int{}
	for i := range n {
		name := "s" + strconv.Itoa(i+1)
		tp, mp := gwtest.FreePort(t), gwtest.FreePort(t)
		h.MustRun("", "managedomain", "-c", "-n", name, "-g", "g1", "--traffic_port", strconv.Itoa(tp), "--management_port", strconv.Itoa(mp))
		tps[name] = tp
	}
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write([]byte(r.Header.Get("X-Tier")))
	}))
	t.Cleanup(be.Close)
	gconf, _ := filepath.Glob(h.Path("groups", "group-*", "conf", "group.yaml"))
	if len(gconf) != 1 {
		t.Fatalf("group configurations: %v", gconf)
	}
	if err := os.WriteFile(gconf[0], []byte(fmt.Sprintf(groupYAML, be.URL)), 0o644); err != nil {
		t.Fatal(err)
	}
	l.gid = filepath.Base(filepath.Dir(filepath.Dir(gconf[0])))
	nm, err := nodemanager.New(nodemanager.Options{Home: l.hh, Exe: gwtest.Binary(t), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
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
	l.nm, l.sup = nm, nm.Supervisor()
	for _, st := range l.sup.States() {
		l.ids = append(l.ids, st.ID)
		l.tp[st.ID] = tps[st.Name]
		cfg, err := groupconf.LoadInstance(l.hh, l.gid, st.ID, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		l.mp[st.ID] = cfg.Management.Port
		l.rp[st.ID] = gwtest.FreePort(t)
		f := filepath.Join(l.hh.InstanceDir(l.gid, st.ID), "conf", "instance.yaml")
		old, _ := os.ReadFile(f)
		extra := fmt.Sprintf("\ncluster:\n  address: 127.0.0.1\n  port: %d\n", l.rp[st.ID])
		if err := os.WriteFile(f, append(old, extra...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if len(l.ids) != n {
		t.Fatalf("instances %v, want %d", l.ids, n)
	}
	l.asNM = l.nodeManagerClient(t)
	// The row the lookups find.
	l.withStore(t, func(st kps.Store) {
		if _, err := st.Insert(context.Background(), "tiers", map[string]any{"id": "acme", "tier": "gold"}); err != nil {
			t.Fatal(err)
		}
	})
	return l
}

// nodeManagerClient is a management client whose certificate bears the
// name of this host's node manager (the instances take changes from it
// only).
func (l *lab) nodeManagerClient(t *testing.T) *http.Client {
	t.Helper()
	conf, err := domain.LoadNodeManagerConf(l.hh)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadCA(l.hh)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.IssueKeyPair(pki.NodeManagerCommonName(conf.NodeManagerID, conf.HostID), []string{"localhost"}, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, []byte(kp.KeyPEM.Reveal()))
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, TLSClientConfig: pki.MutualTLSClient(cert, ca.Cert)}}
}

func (l *lab) withStore(t *testing.T, fn func(kps.Store)) {
	t.Helper()
	cfg, err := groupconf.LoadInstance(l.hh, l.gid, l.ids[0], nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := apps.OpenGroupStore(ctx, l.hh, l.gid, cfg.KPS, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fn(st)
}

func (l *lab) start(t *testing.T, id string) {
	t.Helper()
	if st, err := l.sup.StartInstance(t.Context(), id); err != nil || st.Status != supervisor.StatusRunning {
		t.Fatalf("starting %s: %+v, %v", id, st, err)
	}
}

// status is GET /cluster of instance id.
func (l *lab) status(t *testing.T, id string) cluster.Status {
	t.Helper()
	code, body := l.h.MgmtGet(l.mp[id], "/cluster")
	var st cluster.Status
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
		t.Fatalf("GET /cluster of %s: %d %s", id, code, body)
	}
	return st
}

// awaitUp waits until id's bus is up with exactly the peers want up.
func (l *lab) awaitUp(t *testing.T, id string, want []string, within time.Duration) cluster.Status {
	t.Helper()
	deadline := time.Now().Add(within)
	var st cluster.Status
	for {
		st = l.status(t, id)
		var up []string
		for _, p := range st.Peers {
			if p.State == "up" {
				up = append(up, p.ID)
			}
		}
		sort.Strings(up)
		if st.State == cluster.StateUp && slices.Equal(up, want) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: want bus up with peers %v up within %v; GET /cluster: %+v", id, want, within, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tier asks instance id for the tier of acme.
func (l *lab) tier(id string) (int, string, error) {
	resp, err := gwtest.HTTPClient.Get(fmt.Sprintf("http://127.0.0.1:%d/tier/acme", l.tp[id]))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// logLines counts the lines of id's instance log holding every part.
func (l *lab) logLines(t *testing.T, id string, parts ...string) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(l.hh.InstanceLogsDir(l.gid, id), "instance.log"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		ok := len(line) > 0
		for _, p := range parts {
			ok = ok && bytes.Contains(line, []byte(p))
		}
		if ok {
			n++
		}
	}
	return n
}

func others(ids []string, id string) []string {
	var out []string
	for _, x := range ids {
		if x != id {
			out = append(out, x)
		}
	}
	sort.Strings(out)
	return out
}

// TestProcessesFormClusterFromTopology: three instances started by a node
// manager form the bus from the topology alone (the node manager tells
// each its peers); a KPS change announced through one of them is seen by
// all three at once although their caches keep rows for 10 minutes; a peer
// killed with SIGKILL is logged once as gone by the others, which serve
// throughout, and it rejoins when started again, without restarting them.
func TestProcessesFormClusterFromTopology(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	l := newLab(t, 3)
	for _, id := range l.ids {
		l.start(t, id)
	}
	started := time.Now()
	for _, id := range l.ids {
		st := l.awaitUp(t, id, others(l.ids, id), 30*time.Second)
		t.Logf("%s: bus up with both peers %v after the last instance was started", id, time.Since(started).Round(10*time.Millisecond))
		if st.RouteListener != "127.0.0.1:"+strconv.Itoa(l.rp[id]) {
			t.Errorf("%s: route listener %q, want 127.0.0.1:%d (cluster.port)", id, st.RouteListener, l.rp[id])
		}
		// The route listener speaks TLS with the instance's certificate and
		// wants one back: without one nothing is read.
		ca, err := pki.LoadCACert(l.hh)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", st.RouteListener, &tls.Config{RootCAs: pool, ServerName: "localhost"})
		if err != nil {
			t.Fatalf("%s: TLS to the route listener: %v", id, err)
		}
		if cn := c.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != pki.InstanceCommonName(l.gid, id) {
			t.Errorf("%s: the route listener presents %q, want the instance's certificate", id, cn)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 512)); err == nil || strings.Contains(err.Error(), "timeout") {
			t.Errorf("%s: read %d bytes, %v from the route listener without a client certificate; want the handshake refused", id, n, err)
		}
		c.Close()
	}

	t.Run("KPS change evicts on every instance", func(t *testing.T) {
		for _, id := range l.ids {
			if code, tier, err := l.tier(id); code != 200 || tier != "gold" {
				t.Fatalf("%s: %d %q %v, want 200 gold", id, code, tier, err)
			}
		}
		l.withStore(t, func(st kps.Store) {
			r, err := st.Get(context.Background(), "tiers", "acme")
			if err != nil {
				t.Fatal(err)
			}
			r.Values["tier"] = "platinum"
			if _, err := st.Update(context.Background(), "tiers", r); err != nil {
				t.Fatal(err)
			}
		})
		// Cached for 10 minutes: still gold everywhere.
		for _, id := range l.ids {
			if _, tier, _ := l.tier(id); tier != "gold" {
				t.Fatalf("%s answers %q before the announcement; want the cached gold (the test proves nothing otherwise)", id, tier)
			}
		}
		// Announced through the first instance, as the node manager does.
		start := time.Now()
		resp, err := l.asNM.Post(gwtest.MgmtURL(l.mp[l.ids[0]], "/cluster/kps"), "application/json", strings.NewReader(`{"table":"tiers","key":"acme"}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"announced": true`)) {
			t.Fatalf("POST /cluster/kps: %d %s", resp.StatusCode, body)
		}
		for _, id := range l.ids {
			deadline := time.Now().Add(2 * time.Second)
			for {
				_, tier, _ := l.tier(id)
				if tier == "platinum" {
					t.Logf("%s sees the change %v after the announcement began", id, time.Since(start).Round(time.Millisecond))
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s still answers %q 2 s after the announcement; want platinum", id, tier)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	})

	t.Run("KPS change through the management API", func(t *testing.T) {
		ca, err := pki.LoadCACert(l.hh)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: pool}}}
		req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("https://127.0.0.1:%d/api/kps/%s/tiers/acme", l.anm, l.gid), strings.NewReader(`{"values":{"tier":"silver"}}`))
		req.SetBasicAuth("admin", "changeme-Secret1")
		req.Header.Set("Content-Type", "application/json")
		start := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("PUT /api/kps/…/tiers/acme: %d %s", resp.StatusCode, body)
		}
		answered := time.Now()
		t.Logf("the PUT was answered after %v", answered.Sub(start).Round(time.Millisecond))
		for _, id := range l.ids {
			deadline := time.Now().Add(2 * time.Second)
			for {
				_, tier, _ := l.tier(id)
				if tier == "silver" {
					t.Logf("%s sees the change %v after the PUT was answered", id, time.Since(answered).Round(time.Millisecond))
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s still answers %q 2 s after the management API's change; want silver", id, tier)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	})

	t.Run("peer killed and returning", func(t *testing.T) {
		victim := l.ids[2]
		survivors := l.ids[:2]
		pids := map[string]int{}
		for _, id := range survivors {
			st, _ := l.sup.Status(id)
			pids[id] = st.PID
		}
		// Traffic to the survivors throughout.
		var failures, served atomic.Int64
		var lastErr atomic.Value
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for _, id := range survivors {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					code, _, err := l.tier(id)
					if code != 200 {
						failures.Add(1)
						lastErr.Store(fmt.Sprintf("%s: %d %v", id, code, err))
					} else {
						served.Add(1)
					}
					time.Sleep(10 * time.Millisecond)
				}
			})
		}
		st, _ := l.sup.Status(victim)
		if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		for _, id := range survivors {
			l.awaitUp(t, id, others(survivors, id), 20*time.Second)
		}
		t.Logf("both survivors list %s down %v after the SIGKILL", victim, time.Since(killed).Round(10*time.Millisecond))
		time.Sleep(500 * time.Millisecond) // more polls of the routes: still one line each
		for _, id := range survivors {
			if n := l.logLines(t, id, `"msg":"cluster peer left"`, `"peer":"`+victim+`"`); n != 1 {
				t.Errorf("%s logged %d \"cluster peer left\" lines for %s, want 1", id, n, victim)
			}
		}
		l.start(t, victim)
		back := time.Now()
		for _, id := range l.ids {
			l.awaitUp(t, id, others(l.ids, id), 30*time.Second)
		}
		t.Logf("the mesh is whole again %v after %s was started again", time.Since(back).Round(10*time.Millisecond), victim)
		close(stop)
		wg.Wait()
		if f := failures.Load(); f != 0 || served.Load() == 0 {
			t.Errorf("survivors: %d failed requests (last: %v), %d served; want none failed", f, lastErr.Load(), served.Load())
		}
		for _, id := range survivors {
			if n := l.logLines(t, id, `"msg":"cluster peer joined"`, `"peer":"`+victim+`"`, `"rejoined":true`); n != 1 {
				t.Errorf("%s logged %d \"rejoined\" lines for %s, want 1", id, n, victim)
			}
			if st, _ := l.sup.Status(id); st.PID != pids[id] {
				t.Errorf("%s was restarted (pid %d, was %d); the bus must heal without restarts", id, st.PID, pids[id])
			}
			if got := l.status(t, id).Reconnects; got != 1 {
				t.Errorf("%s: reconnects %d, want 1", id, got)
			}
		}
	})
}

// TestProcessTopologyGrows: an instance added to the group while the others
// run is announced to them by the node manager (their GET /cluster lists it,
// down, at the route port its management port gives) before it even
// starts; once started, the four form one mesh without any restart.
func TestProcessTopologyGrows(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	l := newLab(t, 2)
	for _, id := range l.ids {
		l.start(t, id)
	}
	for _, id := range l.ids {
		l.awaitUp(t, id, others(l.ids, id), 30*time.Second)
	}
	tp, mp := gwtest.FreePort(t), gwtest.FreePort(t) // its route port: the default, mp + 10000
	l.h.MustRun("", "managedomain", "-c", "-n", "s9", "-g", "g1", "--traffic_port", strconv.Itoa(tp), "--management_port", strconv.Itoa(mp))
	var newID string
	deadline := time.Now().Add(20 * time.Second)
	for newID == "" {
		for _, st := range l.sup.States() {
			if st.Name == "s9" {
				newID = st.ID
			}
		}
		if newID == "" {
			if time.Now().After(deadline) {
				t.Fatal("the node manager did not see the new instance")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	l.tp[newID], l.mp[newID] = tp, mp
	wantURL := "127.0.0.1:" + strconv.Itoa(groupconf.DefaultRoutePort(mp))
	for _, id := range l.ids {
		deadline := time.Now().Add(20 * time.Second)
		for {
			st := l.status(t, id)
			i := slices.IndexFunc(st.Peers, func(p cluster.PeerState) bool { return p.ID == newID })
			if i >= 0 && st.Peers[i].URL == wantURL && st.Peers[i].State == "down" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s was not told of %s at %s: %+v", id, newID, wantURL, st.Peers)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	pids := map[string]int{}
	for _, id := range l.ids {
		st, _ := l.sup.Status(id)
		pids[id] = st.PID
	}
	l.start(t, newID)
	all := append(slices.Clone(l.ids), newID)
	for _, id := range all {
		l.awaitUp(t, id, others(all, id), 30*time.Second)
	}
	for _, id := range l.ids {
		if st, _ := l.sup.Status(id); st.PID != pids[id] {
			t.Errorf("%s was restarted", id)
		}
	}
}

// TestProcessBusDownAtStart: an instance whose route port is taken starts
// and serves all the same, says why its bus is down (the port and its
// setting), logs it once, and joins the group once the port is free,
// without a restart.
func TestProcessBusDownAtStart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	l := newLab(t, 2)
	a, b := l.ids[0], l.ids[1]
	hold, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(l.rp[b]))
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	l.start(t, a)
	l.start(t, b)
	if code, tier, err := l.tier(b); code != 200 || tier != "gold" {
		t.Fatalf("%s with its bus down: %d %q %v, want 200 gold", b, code, tier, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	var st cluster.Status
	for {
		st = l.status(t, b)
		if st.State == cluster.StateDown {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: GET /cluster %+v, want down", b, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	want := fmt.Sprintf("port %d on 127.0.0.1 (cluster.port) is in use", l.rp[b])
	if !strings.Contains(st.Error, want) {
		t.Errorf("%s: error %q, want it to contain %q", b, st.Error, want)
	}
	time.Sleep(6 * time.Second) // a retry (every 5 s) that fails again
	if n := l.logLines(t, b, `"msg":"cluster bus down`); n != 1 {
		t.Errorf("%s logged %d \"bus down\" lines, want 1", b, n)
	}
	pid := func() int { s, _ := l.sup.Status(b); return s.PID }
	before := pid()
	hold.Close()
	l.awaitUp(t, b, []string{a}, 20*time.Second)
	l.awaitUp(t, a, []string{b}, 20*time.Second)
	if n := l.logLines(t, b, `"msg":"cluster bus up"`); n != 1 {
		t.Errorf("%s logged %d \"bus up\" lines, want 1", b, n)
	}
	if pid() != before {
		t.Errorf("%s was restarted; the bus must come up by itself", b)
	}
}
