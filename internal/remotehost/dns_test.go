package remotehost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/h1"
)

// fakeResolver answers lookups from the test; with a gate, a lookup waits
// until the gate closes (or its context ends).
type fakeResolver struct {
	mu     sync.Mutex
	calls  int
	answer []netip.Addr
	err    error
	gate   chan struct{}
}

func (f *fakeResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	f.mu.Lock()
	f.calls++
	ans, err, gate := f.answer, f.err, f.gate
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return ans, err
}

func (f *fakeResolver) set(err error, ips ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err, f.answer = err, nil
	for _, ip := range ips {
		f.answer = append(f.answer, netip.MustParseAddr(ip))
	}
}

func (f *fakeResolver) n() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// dnsConfig is a back end on http://dns.test:port without addresses.
func dnsConfig(t *testing.T, port int, entry string) *groupconf.Config {
	t.Helper()
	y := fmt.Sprintf("backends:\n  - name: be\n    url: http://dns.test:%d\nremoteHosts:\n  - host: dns.test\n%s", port, entry) +
		"apis:\n  - name: a\n    pathPrefix: /\n    backend: be\n"
	cfg, err := groupconf.Load(groupconf.Layer{Name: "group.yaml", YAML: []byte(y)})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10 s for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestDNSFirstLookup: a host name without addresses is looked up on first
// use, once; its addresses are in priority group 1.
func TestDNSFirstLookup(t *testing.T) {
	srv := newServer(t)
	f := &fakeResolver{}
	f.set(nil, "127.0.0.1")
	r := NewRegistry(Options{Resolver: f})
	h := host(t, r, dnsConfig(t, srv.port, ""))
	for range 2 {
		if w, err := forward(h, "GET", "/ok", nil, 0); err != nil || w.body.String() != "/ok" {
			t.Fatalf("got %v %q, want /ok", err, w.body.String())
		}
	}
	st := r.State().RemoteHosts[0]
	if f.n() != 1 || !st.DNS || len(st.Addresses) != 1 || st.Addresses[0].Address != fmt.Sprintf("127.0.0.1:%d", srv.port) || st.Addresses[0].Priority != 1 {
		t.Errorf("got %d lookups, %+v; want 1 lookup, the answer in priority group 1", f.n(), st)
	}
	// A request that waited for another's lookup takes its answer.
	g, err := h.firstLookup(context.Background())
	if err != nil || g != h.groups.Load() || f.n() != 1 {
		t.Errorf("after a lookup: got %v (%d lookups), want the same addresses and no lookup", err, f.n())
	}
}

func TestDNSFailures(t *testing.T) {
	srv := newServer(t)
	errNX := errors.New("no such host")
	tests := []struct {
		name string
		err  error
		ips  []string
		want string
	}{
		{"the lookup fails", errNX, nil, "resolving dns.test: no such host"},
		{"the answer is empty", nil, nil, "resolving dns.test: no address"},
	}
	for _, tt := range tests {
		f := &fakeResolver{}
		f.set(tt.err)
		r := NewRegistry(Options{Resolver: f})
		h := host(t, r, dnsConfig(t, srv.port, ""))
		_, err := forward(h, "GET", "/ok", nil, 0)
		var ae *AddressError
		var fe *h1.ForwardError
		if !errors.As(err, &ae) || ae.Address != "dns.test" || !errors.As(err, &fe) || fe.Kind != h1.ErrConnect || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want a connect error of dns.test: %s", tt.name, err, tt.want)
		}
		if tt.err != nil && !errors.Is(err, tt.err) {
			t.Errorf("%s: got %v, want it to wrap the resolver's error", tt.name, err)
		}
		if h.groups.Load() != nil {
			t.Errorf("%s: got addresses", tt.name)
		}
		f.set(nil, "127.0.0.1")
		if _, err := forward(h, "GET", "/ok", nil, 0); err != nil {
			t.Errorf("%s, then an answer: got %v, want the request through", tt.name, err)
		}
	}
}

// TestDNSRefresh: an answer older than dnsCacheTTL is refreshed in the
// background while it is still used; a refresh keeps the connections of
// addresses that stay and closes those of addresses that left; a failed
// refresh keeps the previous answer and is logged.
func TestDNSRefresh(t *testing.T) {
	srv := newServer(t)
	f := &fakeResolver{}
	f.set(nil, "127.0.0.1")
	lr := &logRec{}
	r := NewRegistry(Options{Resolver: f, Logger: slog.New(lr)})
	h := host(t, r, dnsConfig(t, srv.port, "    dnsCacheTTL: 1\n"))
	if _, err := forward(h, "GET", "/ok", nil, 0); err != nil {
		t.Fatal(err)
	}
	g := h.groups.Load()
	if g.expires == 0 {
		t.Fatal("a DNS answer that never expires")
	}
	gate := make(chan struct{})
	f.mu.Lock()
	f.gate = gate
	f.mu.Unlock()
	// Not yet expired: no refresh.
	if got, _ := h.resolve(context.Background(), g.expires); got != g || h.refreshing.Load() {
		t.Fatalf("at the expiry: got a refresh, want the answer as it is")
	}
	refresh := func(ips ...string) *groupList {
		t.Helper()
		f.set(nil, ips...)
		old := h.groups.Load()
		if got, _ := h.resolve(context.Background(), old.expires+1); got != old || !h.refreshing.Load() {
			t.Fatalf("after the expiry: got no refresh in the background")
		}
		if got, _ := h.resolve(context.Background(), old.expires+1); got != old {
			t.Fatalf("during the refresh: got another answer, want the previous")
		}
		close(gate)
		waitFor(t, "the refresh", func() bool { return !h.refreshing.Load() })
		gate = make(chan struct{})
		f.mu.Lock()
		f.gate = gate
		f.mu.Unlock()
		return h.groups.Load()
	}
	g2 := refresh("127.0.0.1")
	if g2 == g || g2.all[0].up != g.all[0].up || f.n() != 2 {
		t.Fatalf("refreshed with the same address: got a new pool (%d lookups), want the same", f.n())
	}
	if _, res, err := forwardRes(h, "GET", "/ok", nil, 0); err != nil || !res.Reused {
		t.Errorf("after the refresh: got %v (reused %v), want the pooled connection reused", err, res.Reused)
	}
	if n := lr.count("refreshing dns answer"); n != 0 {
		t.Errorf("successful refresh: got %d warnings, want none", n)
	}
	select {
	case <-srv.closed:
		t.Fatal("a connection closed before its address left")
	default:
	}
	g3 := refresh("127.0.0.3")
	if len(g3.all) != 1 || g3.all[0].Addr() != fmt.Sprintf("127.0.0.3:%d", srv.port) {
		t.Fatalf("got %v, want 127.0.0.3", g3.all)
	}
	select {
	case <-srv.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("127.0.0.1 left the answer: its idle connection is still open")
	}

	gate2 := gate
	f.set(errors.New("timeout"))
	h.resolve(context.Background(), g3.expires+1)
	close(gate2)
	waitFor(t, "the failed refresh", func() bool { return !h.refreshing.Load() })
	if h.groups.Load() != g3 || lr.count("WARN refreshing dns answer; keeping the previous one") != 1 {
		t.Errorf("failed refresh: got %v, %d warnings; want the previous answer kept and 1 warning", h.groups.Load().all, lr.count("refreshing dns answer"))
	}
}

func TestConfiguredAddressesNeverLookedUp(t *testing.T) {
	f := &fakeResolver{gate: make(chan struct{})}
	defer close(f.gate)
	r := NewRegistry(Options{Resolver: f})
	h := host(t, r, dnsConfig(t, 80, "    addresses:\n      - {address: 10.0.0.1}\n"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	g, err := h.resolve(ctx, 1<<62)
	if err != nil || g == nil || h.refreshing.Load() || f.n() != 0 {
		t.Errorf("got %v, refreshing %v, %d lookups; want the addresses and no lookup", err, h.refreshing.Load(), f.n())
	}
}

// TestDNSAddressesAcrossConfigurations: a DNS host's addresses get
// watchdogs once looked up, and their state survives a configuration swap
// (the new configuration has not looked them up yet).
func TestDNSAddressesAcrossConfigurations(t *testing.T) {
	srv := newServer(t)
	f := &fakeResolver{}
	f.set(nil, "127.0.0.1")
	r := NewRegistry(Options{Resolver: f})
	cfg := dnsConfig(t, srv.port, "    watchdog: {enabled: true, interval: 1h}\n")
	h := host(t, r, cfg)
	watchdogs := func() int { r.mu.Lock(); defer r.mu.Unlock(); return len(r.watchdogs) }
	if n := watchdogs(); n != 0 {
		t.Fatalf("before the lookup: got %d watchdogs, want 0", n)
	}
	if _, err := forward(h, "GET", "/ok", nil, 0); err != nil {
		t.Fatal(err)
	}
	if n := watchdogs(); n != 1 {
		t.Errorf("after the lookup: got %d watchdogs, want 1", n)
	}
	s2, err := r.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.Activate(s2)
	if _, err := forward(s2.Host(0), "GET", "/ok", nil, 0); err != nil {
		t.Fatal(err)
	}
	if got := stateOf(r, 0).Requests; got != 2 {
		t.Errorf("after the swap: got %d requests, want 2 (the state kept)", got)
	}

	// A set that is not current looks up without touching the registry's
	// watchdogs; after Close, nothing starts.
	r2 := NewRegistry(Options{Resolver: f})
	s3, err := r2.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := forward(s3.Host(0), "GET", "/ok", nil, 0); err != nil {
		t.Fatal(err)
	}
	r3 := NewRegistry(Options{Resolver: f})
	s4, err := r3.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r3.Activate(s4)
	r3.Close()
	if _, err := forward(s4.Host(0), "GET", "/ok", nil, 0); err != nil {
		t.Fatal(err)
	}
	r3.mu.Lock()
	n := len(r3.watchdogs)
	r3.mu.Unlock()
	if n != 0 {
		t.Errorf("lookup after Close: got %d watchdogs, want 0", n)
	}
}
