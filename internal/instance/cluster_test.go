package instance

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/cluster"
)

// TestClusterThroughManagement: three in-process instances are given their
// peers with PUT /cluster/peers (as node managers do), GET /cluster shows
// them up, and a KPS change posted to one reaches the others' caches.
func TestClusterThroughManagement(t *testing.T) {
	type member struct {
		ti     *testInstance
		route  int
		forgot chan cluster.KPSChange
	}
	var ms []*member
	for n := range 3 {
		p, route := newPorts(t), freePort(t)
		ti := newInstance(t, quickstartYAML(p, fmt.Sprintf("cluster: {address: 127.0.0.1, port: %d}\n", route)), func(o *Options) {
			o.InstanceID = fmt.Sprintf("instance-%d", n+1)
		})
		m := &member{ti: ti, route: route, forgot: make(chan cluster.KPSChange, 8)}
		ti.testHookKPSForget = func(c cluster.KPSChange) { m.forgot <- c }
		if err := ti.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ti.Close() })
		ti.mgmt = fmt.Sprintf("http://127.0.0.1:%d", ti.Ports().Management)
		ms = append(ms, m)
	}
	// Alone, the bus is off: nothing listens on the route port.
	var st cluster.Status
	getJSON(t, ms[0].ti.mgmt+"/cluster", &st)
	if st.State != cluster.StateOff || st.InstanceID != "instance-1" {
		t.Fatalf("GET /cluster before peers: %+v, want off", st)
	}
	for i, m := range ms {
		var peers []cluster.Peer
		for j, o := range ms {
			if j != i {
				peers = append(peers, cluster.Peer{ID: o.ti.opts.InstanceID, URL: fmt.Sprintf("127.0.0.1:%d", o.route)})
			}
		}
		body, _ := json.Marshal(PeersBody{Peers: peers})
		if code, out := send(t, http.MethodPut, m.ti.mgmt+"/cluster/peers", string(body)); code != 200 {
			t.Fatalf("PUT /cluster/peers: %d %s", code, out)
		}
	}
	for _, m := range ms {
		deadline := time.Now().Add(10 * time.Second)
		for {
			getJSON(t, m.ti.mgmt+"/cluster", &st)
			up := 0
			for _, p := range st.Peers {
				if p.State == "up" {
					up++
				}
			}
			if st.State == cluster.StateUp && up == 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: GET /cluster %+v, want up with 2 peers up", m.ti.opts.InstanceID, st)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// A KPS change through instance-1 reaches instance-2 and -3.
	got := map[string]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < 2 && time.Now().Before(deadline) {
		code, body := send(t, http.MethodPost, ms[0].ti.mgmt+"/cluster/kps", `{"table": "prices", "key": 42}`)
		if code != 200 || !strings.Contains(body, `"announced": true`) {
			t.Fatalf("POST /cluster/kps: %d %s, want 200 announced", code, body)
		}
		for i, m := range ms[1:] {
			select {
			case c := <-m.forgot:
				if c.Table != "prices" || c.Key != int64(42) {
					t.Errorf("instance-%d forgot %+v, want prices/42", i+2, c)
				}
				got[m.ti.opts.InstanceID] = true
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	if len(got) != 2 {
		t.Fatalf("KPS change reached %v, want instance-2 and instance-3", got)
	}
	select {
	case c := <-ms[0].forgot:
		t.Errorf("instance-1 received its own change %+v from the bus", c)
	default:
	}
	for _, tc := range []struct{ body, want string }{
		{`{"table": "t", "key": 1.5}`, "not an integer"},
		{`{"key": "a"}`, "table is missing"},
		{`{"table": "t", "other": 1}`, "unknown field"},
	} {
		if code, body := send(t, http.MethodPost, ms[0].ti.mgmt+"/cluster/kps", tc.body); code != 400 || !strings.Contains(body, tc.want) {
			t.Errorf("POST /cluster/kps %s: %d %s, want 400 with %q", tc.body, code, body, tc.want)
		}
	}
	// The metrics say so.
	code, metrics := getBody(t, ms[0].ti.mgmt+"/metrics")
	for _, want := range []string{"gatehouse_cluster_peers_up 2", `gatehouse_cluster_state{state="up"} 1`, "gatehouse_cluster_messages_out_total"} {
		if code != 200 || !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	code, body := getBody(t, url)
	if code != 200 {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: %v in %s", url, err, body)
	}
}

func getBody(t *testing.T, url string) (int, string) {
	t.Helper()
	r := do(t, http.DefaultClient, http.MethodGet, url, nil)
	return r.status, r.body
}

// send sends method url with a JSON body and returns status and body.
func send(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestClusterManualPeersOnSwap: cluster.peers changed by a configuration
// swap (a reload) applies at once, without a restart.
func TestClusterManualPeersOnSwap(t *testing.T) {
	pa, pb := newPorts(t), newPorts(t)
	ra, rb := freePort(t), freePort(t)
	yamlA := func(peers string) string {
		return quickstartYAML(pa, fmt.Sprintf("cluster: {address: 127.0.0.1, port: %d, peers: [%s]}\n", ra, peers))
	}
	a := startInstance(t, yamlA(""), func(o *Options) { o.InstanceID = "instance-1" })
	b := startInstance(t, quickstartYAML(pb, fmt.Sprintf("cluster: {address: 127.0.0.1, port: %d, peers: [\"127.0.0.1:%d\"]}\n", rb, ra)), func(o *Options) { o.InstanceID = "instance-2" })
	if st := a.Bus().Status(); st.State != cluster.StateOff {
		t.Fatalf("a without peers: %v, want off", st.State)
	}
	if err := a.Swap(loadConfig(t, yamlA(fmt.Sprintf("\"127.0.0.1:%d\"", rb)))); err != nil {
		t.Fatal(err)
	}
	for _, ti := range []*testInstance{a, b} {
		deadline := time.Now().Add(10 * time.Second)
		for ti.Bus().State() != cluster.StateUp {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %+v, want up after the swap", ti.opts.InstanceID, ti.Bus().Status())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// And taken away again: a stops its server.
	if err := a.Swap(loadConfig(t, yamlA(""))); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for a.Bus().State() != cluster.StateOff {
		if time.Now().After(deadline) {
			t.Fatalf("a: %v, want off once its peers are gone", a.Bus().State())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
