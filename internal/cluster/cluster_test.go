package cluster

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
)

// freePort is a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// logBuf is a concurrency-safe log sink whose lines can be counted.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// count is the number of lines holding every one of parts.
func (l *logBuf) count(parts ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for line := range strings.SplitSeq(l.b.String(), "\n") {
		ok := line != ""
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			n++
		}
	}
	return n
}

type node struct {
	id   string
	port int
	bus  *Bus
	log  *logBuf
}

// options are the test options of instance id on port with peers.
func options(id string, port int, log *logBuf, peers []Peer) Options {
	return Options{
		InstanceID: id, GroupID: "group-2", Address: "127.0.0.1", Port: port, PortSetting: "cluster.port",
		Peers: peers, Logger: slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelInfo})),
		PollInterval: 20 * time.Millisecond, RetryInterval: 100 * time.Millisecond, StartTimeout: 5 * time.Second,
	}
}

// mesh starts n buses on loopback, each given the others as peers (as the
// node manager does), and waits until each sees all the others. With
// withTLS their routes take mutual TLS with instance certificates of a
// domain CA made for the test.
func mesh(t testing.TB, n int, withTLS ...bool) []*node {
	t.Helper()
	var ca *pki.CA
	h := home.Home{Dir: t.TempDir()}
	if len(withTLS) > 0 && withTLS[0] {
		var err error
		if ca, err = pki.NewCA("D"); err != nil {
			t.Fatal(err)
		}
		if err := ca.Save(h); err != nil {
			t.Fatal(err)
		}
	}
	nodes := make([]*node, n)
	for i := range nodes {
		nodes[i] = &node{id: "instance-" + strconv.Itoa(i+1), port: freePort(t), log: &logBuf{}}
	}
	for _, nd := range nodes {
		var peers []Peer
		for _, o := range nodes {
			if o != nd {
				peers = append(peers, Peer{ID: o.id, URL: "127.0.0.1:" + strconv.Itoa(o.port)})
			}
		}
		o := options(nd.id, nd.port, nd.log, nil)
		if ca != nil {
			if _, err := ca.IssueInstance(h, "group-2", nd.id, "127.0.0.1"); err != nil {
				t.Fatal(err)
			}
			live, err := pki.NewLive(h, pki.InstanceCertFile(h, "group-2", nd.id), pki.InstanceKeyFile(h, "group-2", nd.id), pki.CertFile(h))
			if err != nil {
				t.Fatal(err)
			}
			if o.TLS, err = RouteTLS(live, "group-2"); err != nil {
				t.Fatal(err)
			}
		}
		b, err := Start(t.Context(), o)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.SetPeers(t.Context(), peers); err != nil {
			t.Fatal(err)
		}
		nd.bus = b
		t.Cleanup(func() { b.Close() })
	}
	for _, nd := range nodes {
		awaitPeersUp(t, nd.bus, n-1, 10*time.Second)
	}
	return nodes
}

// awaitPeersUp waits until b has want peers up (and is up when want > 0).
func awaitPeersUp(t testing.TB, b *Bus, want int, within time.Duration) Status {
	t.Helper()
	deadline := time.Now().Add(within)
	var st Status
	for time.Now().Before(deadline) {
		st = b.Status()
		up := 0
		for _, p := range st.Peers {
			if p.State == "up" {
				up++
			}
		}
		if up == want && (want == 0 || st.State == StateUp) {
			return st
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: want %d peers up within %v; status %+v", b.opts.InstanceID, want, within, st)
	return st
}

func TestNoPeersRunsNothing(t *testing.T) {
	port := freePort(t)
	b, err := Start(t.Context(), options("instance-1", port, &logBuf{}, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if got := b.State(); got != StateOff {
		t.Errorf("State() = %v, want off", got)
	}
	if err := b.Publish("x", nil); err != ErrNotRunning {
		t.Errorf("Publish without peers: got %v, want ErrNotRunning", err)
	}
	// Nothing listens on the route port.
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("the route port is taken by a bus without peers: %v", err)
	}
	l.Close()
}

func TestMeshDeliversToEveryPeer(t *testing.T) {
	nodes := mesh(t, 3)
	got := make(chan string, 10)
	for _, nd := range nodes[1:] {
		nd.bus.Subscribe("test.hello", func(m Msg) { got <- nd.id + ":" + string(m.Data) })
	}
	self := make(chan string, 1)
	nodes[0].bus.Subscribe("test.hello", func(m Msg) { self <- string(m.Data) })
	// Subscriptions travel through the routes: retry until both receive.
	seen := map[string]bool{}
	deadline := time.Now().Add(5 * time.Second)
	for len(seen) < 2 && time.Now().Before(deadline) {
		if err := nodes[0].bus.Publish("test.hello", []byte("hi")); err != nil {
			t.Fatal(err)
		}
		select {
		case s := <-got:
			seen[s] = true
		case <-time.After(50 * time.Millisecond):
		}
	}
	if !seen["instance-2:hi"] || !seen["instance-3:hi"] {
		t.Fatalf("delivered to %v, want instance-2 and instance-3", seen)
	}
	select {
	case s := <-self:
		t.Errorf("the publisher received its own message %q", s)
	default:
	}
	// Request and answer.
	nodes[2].bus.Subscribe("test.echo", func(m Msg) { m.Respond(append([]byte("echo "), m.Data...)) })
	var ans []byte
	var err error
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		ans, err = nodes[0].bus.Request(ctx, "test.echo", []byte("x"))
		cancel()
		if err == nil {
			break
		}
	}
	if string(ans) != "echo x" {
		t.Errorf("Request: got %q, %v; want \"echo x\"", ans, err)
	}
	if n := nodes[0].bus.PeersUp(); n != 2 || len(nodes[0].bus.Peers()) != 2 {
		t.Errorf("PeersUp() = %d, Peers() %d; want 2, 2", n, len(nodes[0].bus.Peers()))
	}
	st := nodes[0].bus.Status()
	if st.MessagesOut == 0 || st.State != StateUp || len(st.Peers) != 2 || st.InstanceID != "instance-1" {
		t.Errorf("Status() = %+v, want up, 2 peers, messages out", st)
	}
	for _, p := range st.Peers {
		if p.URL == "" || p.LastSeen.IsZero() {
			t.Errorf("peer %+v: want its URL and last seen", p)
		}
	}
}

func TestPeerLeavesAndReturns(t *testing.T) {
	nodes := mesh(t, 3)
	a, c := nodes[0], nodes[2]
	c.bus.Close()
	awaitPeersUp(t, a.bus, 1, 10*time.Second)
	if n := a.log.count("cluster peer left", "peer=instance-3"); n != 1 {
		t.Errorf("%d \"peer left\" lines for instance-3, want 1", n)
	}
	st := a.bus.Status()
	var gone *PeerState
	for i := range st.Peers {
		if st.Peers[i].ID == "instance-3" {
			gone = &st.Peers[i]
		}
	}
	if gone == nil || gone.State != "down" {
		t.Fatalf("instance-3 in %+v: want listed down", st.Peers)
	}
	// It comes back on the same port: the others dial it again by themselves.
	b2, err := Start(t.Context(), options(c.id, c.port, c.log, []Peer{{ID: a.id, URL: "127.0.0.1:" + strconv.Itoa(a.port)}}))
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	awaitPeersUp(t, a.bus, 2, 10*time.Second)
	awaitPeersUp(t, b2, 2, 10*time.Second) // instance-2 found through instance-1 (gossip)
	if n := a.log.count("cluster peer joined", "peer=instance-3", "rejoined=true"); n != 1 {
		t.Errorf("%d \"peer joined ... rejoined\" lines for instance-3, want 1", n)
	}
	if got := a.bus.Status().Reconnects; got != 1 {
		t.Errorf("Reconnects = %d, want 1", got)
	}
	if n := a.log.count("cluster peer left", "peer=instance-3"); n != 1 {
		t.Errorf("%d \"peer left\" lines for instance-3 after its return, want still 1", n)
	}
}

func TestPortInUseThenFreed(t *testing.T) {
	other := freePort(t)
	hold, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := hold.Addr().(*net.TCPAddr).Port
	lb := &logBuf{}
	b, err := Start(t.Context(), options("instance-1", port, lb, []Peer{{URL: "127.0.0.1:" + strconv.Itoa(other)}}))
	if err != nil {
		t.Fatalf("Start with its port taken: %v; want a bus that is down, not an error", err)
	}
	defer b.Close()
	st := b.Status()
	want := fmt.Sprintf("port %d on 127.0.0.1 (cluster.port) is in use", port)
	if st.State != StateDown || !strings.Contains(st.Error, want) {
		t.Fatalf("Status() = %v %q, want down with %q", st.State, st.Error, want)
	}
	time.Sleep(350 * time.Millisecond) // three retries
	if n := lb.count("cluster bus down"); n != 1 {
		t.Errorf("%d \"bus down\" lines over three retries, want 1", n)
	}
	hold.Close()
	deadline := time.Now().Add(5 * time.Second)
	for b.State() != StateIsolated && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := b.State(); got != StateIsolated {
		t.Fatalf("after the port was freed: state %v, want isolated (its peer is not there)", got)
	}
	// The peer arrives: up.
	p, err := Start(t.Context(), options("instance-2", other, &logBuf{}, []Peer{{URL: "127.0.0.1:" + strconv.Itoa(port)}}))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	awaitPeersUp(t, b, 1, 10*time.Second)
}

func TestSetPeersReloadsRoutes(t *testing.T) {
	pa, pb, pc := freePort(t), freePort(t), freePort(t)
	url := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }
	a, err := Start(t.Context(), options("instance-1", pa, &logBuf{}, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, _ := Start(t.Context(), options("instance-2", pb, &logBuf{}, nil))
	defer b.Close()
	c, _ := Start(t.Context(), options("instance-3", pc, &logBuf{}, nil))
	defer c.Close()
	ctx := t.Context()
	// a and b know each other; c is nobody's peer and has none: off.
	a.SetPeers(ctx, []Peer{{ID: "instance-2", URL: url(pb)}})
	b.SetPeers(ctx, []Peer{{ID: "instance-1", URL: url(pa)}})
	awaitPeersUp(t, a, 1, 10*time.Second)
	if c.State() != StateOff {
		t.Fatalf("c: state %v, want off", c.State())
	}
	// The topology grows: a is told of c (a reload, no restart), c of a.
	addr := a.Status().RouteListener
	if err := a.SetPeers(ctx, []Peer{{ID: "instance-2", URL: url(pb)}, {ID: "instance-3", URL: url(pc)}, {ID: "instance-1", URL: url(pa)}}); err != nil {
		t.Fatal(err)
	}
	c.SetPeers(ctx, []Peer{{ID: "instance-1", URL: url(pa)}})
	awaitPeersUp(t, a, 2, 10*time.Second)
	awaitPeersUp(t, c, 2, 10*time.Second)
	if got := a.Status().RouteListener; got != addr {
		t.Errorf("route listener %q after the reload, want %q (not restarted)", got, addr)
	}
	// c leaves the group: told no peers, it stops its server.
	c.SetPeers(ctx, nil)
	if c.State() != StateOff {
		t.Errorf("c without peers: state %v, want off", c.State())
	}
	awaitPeersUp(t, b, 1, 10*time.Second)
	if err := a.SetPeers(ctx, []Peer{{URL: "no-port"}}); err == nil || !strings.Contains(err.Error(), "no-port") {
		t.Errorf("SetPeers(no-port): got %v, want an error naming it", err)
	}
}

func TestKPSChangeReachesEveryPeer(t *testing.T) {
	nodes := mesh(t, 3)
	type got struct {
		id string
		c  KPSChange
	}
	ch := make(chan got, 100)
	for _, nd := range nodes[1:] {
		nd.bus.OnKPSChange(func(c KPSChange) { ch <- got{nd.id, c} })
	}
	awaitInterest(t, nodes[0].bus, KPSChangedSubject+".t", 2)
	for _, k := range []any{"abc", int64(42), nil} {
		if err := nodes[0].bus.PublishKPSChange(KPSChange{Table: "prices", Key: k}); err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for len(seen) < 2 {
			select {
			case g := <-ch:
				if g.c.Table != "prices" || g.c.Key != k || g.c.At.IsZero() {
					t.Errorf("%s received %+v, want table prices key %v", g.id, g.c, k)
				}
				seen[g.id] = true
			case <-time.After(5 * time.Second):
				t.Fatalf("key %v: received by %v only", k, seen)
			}
		}
	}
	if err := nodes[0].bus.PublishKPSChange(KPSChange{Table: "a b"}); err == nil {
		t.Error("PublishKPSChange(table \"a b\"): want an error")
	}
	if err := nodes[0].bus.PublishKPSChange(KPSChange{Table: "t", Key: 1.5}); err == nil {
		t.Error("PublishKPSChange(key 1.5): want an error")
	}
}

// awaitInterest waits until n peers subscribed to subject are known to b's
// server (subscriptions propagate through the routes asynchronously).
func awaitInterest(t testing.TB, b *Bus, subject string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b.mu.Lock()
		srv := b.srv
		b.mu.Unlock()
		if srv != nil {
			if r := srv.GlobalAccount().Interest(subject); r >= n {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: %d peers' interest in %s not seen within 10s", b.opts.InstanceID, n, subject)
}

// TestRouteTLSOnlyTheGroup: routes take mutual TLS with the domain's
// instance certificates; an instance of another group, or a certificate of
// another CA, is refused.
func TestRouteTLSOnlyTheGroup(t *testing.T) {
	dir := t.TempDir()
	h := home.Home{Dir: dir}
	ca, err := pki.NewCA("D")
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Save(h); err != nil {
		t.Fatal(err)
	}
	tlsFor := func(gid, iid string) *pki.Live {
		if _, err := ca.IssueInstance(h, gid, iid, "127.0.0.1"); err != nil {
			t.Fatal(err)
		}
		live, err := pki.NewLive(h, pki.InstanceCertFile(h, gid, iid), pki.InstanceKeyFile(h, gid, iid), pki.CertFile(h))
		if err != nil {
			t.Fatal(err)
		}
		return live
	}
	start := func(gid, iid string, port int, live *pki.Live, peers ...int) *Bus {
		conf, err := RouteTLS(live, gid)
		if err != nil {
			t.Fatal(err)
		}
		o := options(iid, port, &logBuf{}, nil)
		o.GroupID, o.TLS = gid, conf
		for _, p := range peers {
			o.Peers = append(o.Peers, Peer{URL: "localhost:" + strconv.Itoa(p)})
		}
		b, err := Start(t.Context(), o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
	p1, p2, p3 := freePort(t), freePort(t), freePort(t)
	b1 := start("group-2", "instance-1", p1, tlsFor("group-2", "instance-1"), p2, p3)
	b2 := start("group-2", "instance-2", p2, tlsFor("group-2", "instance-2"), p1)
	// instance-9 of group-3, same CA, trying both directions.
	b3 := start("group-2", "instance-9", p3, tlsFor("group-3", "instance-9"), p1)
	awaitPeersUp(t, b1, 1, 10*time.Second)
	awaitPeersUp(t, b2, 1, 10*time.Second)
	time.Sleep(1500 * time.Millisecond) // a route retry or more
	if st := b1.Status(); countUp(st) != 1 {
		t.Errorf("instance-1: %d peers up, want 1 (instance-9 of group-3 refused): %+v", countUp(st), st.Peers)
	}
	if st := b3.Status(); countUp(st) != 0 {
		t.Errorf("instance-9 (group-3): %d peers up, want 0", countUp(st))
	}
	// Another CA altogether.
	other, _ := pki.NewCA("Other")
	oh := home.Home{Dir: t.TempDir()}
	other.Save(oh)
	other.IssueInstance(oh, "group-2", "instance-7", "127.0.0.1")
	ol, err := pki.NewLive(oh, pki.InstanceCertFile(oh, "group-2", "instance-7"), pki.InstanceKeyFile(oh, "group-2", "instance-7"), pki.CertFile(oh))
	if err != nil {
		t.Fatal(err)
	}
	b7 := start("group-2", "instance-7", freePort(t), ol, p1)
	time.Sleep(1500 * time.Millisecond)
	if st := b7.Status(); countUp(st) != 0 {
		t.Errorf("instance-7 (another CA): %d peers up, want 0", countUp(st))
	}
	if st := b1.Status(); countUp(st) != 1 {
		t.Errorf("instance-1: %d peers up with another CA's instance knocking, want 1", countUp(st))
	}
}

func countUp(st Status) int {
	n := 0
	for _, p := range st.Peers {
		if p.State == "up" {
			n++
		}
	}
	return n
}

func TestDecodeKPSChange(t *testing.T) {
	for _, tc := range []struct {
		in      string
		wantKey any
		wantErr bool
	}{
		{`{"table":"t","key":"a"}`, "a", false},
		{`{"table":"t","key":7}`, int64(7), false},
		{`{"table":"t"}`, nil, false},
		{`{"table":"t","key":null}`, nil, false},
		{`{"table":"t","key":1.5}`, nil, true},
		{`{"table":"t","key":[1]}`, nil, true},
		{`{"key":"a"}`, nil, true},
		{`not json`, nil, true},
	} {
		c, err := DecodeKPSChange([]byte(tc.in))
		if (err != nil) != tc.wantErr || (err == nil && c.Key != tc.wantKey) {
			t.Errorf("DecodeKPSChange(%s) = %+v, %v; want key %v, error %v", tc.in, c, err, tc.wantKey, tc.wantErr)
		}
	}
}

func TestInstanceCNPrefix(t *testing.T) {
	if cn := pki.InstanceCommonName("group-2", "instance-1"); !strings.HasPrefix(cn, instanceCNPrefix) || instanceCNPrefix != "Gatehouse Instance " {
		t.Errorf("instanceCNPrefix %q does not start %q", instanceCNPrefix, cn)
	}
}

// freezer is a TCP relay to target that can stop passing bytes without
// closing anything: a peer behind it goes silent, as behind a network cut.
type freezer struct {
	ln     net.Listener
	frozen atomic.Bool
}

func newFreezer(t testing.TB, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go f.pipe(c, u)
			go f.pipe(u, c)
		}
	}()
	return f
}

func (f *freezer) pipe(from, to net.Conn) {
	defer from.Close()
	defer to.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		for f.frozen.Load() {
			time.Sleep(10 * time.Millisecond)
		}
		if n > 0 {
			if _, werr := to.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (f *freezer) addr() string { return f.ln.Addr().String() }

// TestSilentPeerDropped: a peer that stops answering without closing its
// connection (a cut network) is dropped after the route's pings go
// unanswered (RoutePingInterval × RouteMaxPingsOut), logged once, and
// joins again when the network comes back.
func TestSilentPeerDropped(t *testing.T) {
	pa, pb := freePort(t), freePort(t)
	fz := newFreezer(t, "127.0.0.1:"+strconv.Itoa(pb))
	la := &logBuf{}
	a, err := Start(t.Context(), options("instance-1", pa, la, []Peer{{ID: "instance-2", URL: fz.addr()}}))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Start(t.Context(), options("instance-2", pb, &logBuf{}, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// b must run its server to accept a's route (through the freezer): give
	// it a peer that is not there, so that it only accepts.
	b.SetPeers(t.Context(), []Peer{{URL: "127.0.0.1:1"}})
	awaitPeersUp(t, a, 1, 10*time.Second)
	fz.frozen.Store(true)
	start := time.Now()
	awaitPeersUp(t, a, 0, RoutePingInterval*time.Duration(RouteMaxPingsOut+3))
	t.Logf("silent peer dropped after %v", time.Since(start).Round(100*time.Millisecond))
	if n := la.count("cluster peer left", "peer=instance-2"); n != 1 {
		t.Errorf("%d \"peer left\" lines, want 1", n)
	}
	fz.frozen.Store(false)
	awaitPeersUp(t, a, 1, 15*time.Second)
	if n := la.count("cluster peer joined", "peer=instance-2", "rejoined=true"); n != 1 {
		t.Errorf("%d \"rejoined\" lines, want 1", n)
	}
}
