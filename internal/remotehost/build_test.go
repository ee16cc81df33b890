package remotehost

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/h1"
)

// config is a configuration built without validation (as Build may meet
// one from a caller that did not validate): back ends and remoteHosts
// entries, each entry starting from the defaults.
func config(backends []groupconf.Backend, entries ...func(*groupconf.RemoteHost)) *groupconf.Config {
	cfg := &groupconf.Config{Settings: groupconf.Settings{Backends: backends}}
	for _, set := range entries {
		r := groupconf.RemoteHostDefaults()
		set(&r)
		cfg.RemoteHosts = append(cfg.RemoteHosts, r)
	}
	return cfg
}

func backend(url string) []groupconf.Backend { return []groupconf.Backend{{Name: "be", URL: url}} }

func entry(host string, port int, more func(*groupconf.RemoteHost)) func(*groupconf.RemoteHost) {
	return func(r *groupconf.RemoteHost) {
		r.Host, r.Port = host, port
		if more != nil {
			more(r)
		}
	}
}

func addrs(list ...string) func(*groupconf.RemoteHost) {
	return func(r *groupconf.RemoteHost) {
		for _, a := range list {
			r.Addresses = append(r.Addresses, groupconf.RemoteHostAddress{Address: a})
		}
	}
}

// certPEM writes the certificate of srv to a file in dir and returns its name.
func certPEM(t *testing.T, srv *httptest.Server, dir string) string {
	t.Helper()
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	f := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestBuildRefusesBadRemoteHosts(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  *groupconf.Config
		want string // "" = accepted
	}{
		{"http url", config(backend("http://api.test:8080")), ""},
		{"https url", config(backend("https://api.test")), ""},
		{"unparseable url", config(backend("http://[::1")), "parsing url"},
		{"another scheme", config(backend("ftp://api.test/")), "is not an http:// or https:// URL with a host"},
		{"no scheme", config(backend("api.test:8080")), "is not an http:// or https:// URL with a host"},
		{"no host", config(backend("http:///orders")), "is not an http:// or https:// URL with a host"},
		{"an address that is not an IP", config(backend("http://api.test"), entry("api.test", 0, addrs("10.0.0.1", "api.test"))), `address "api.test"`},
		{"a caFile that does not exist", config(backend("https://api.test"), entry("api.test", 0, func(r *groupconf.RemoteHost) { r.CAFile = "missing.pem" })), "reading caFile"},
		{"a caFile without a certificate", config(backend("https://api.test"), entry("api.test", 0, func(r *groupconf.RemoteHost) { r.CAFile = notPEM })), "no PEM certificate found"},
	}
	for _, tt := range tests {
		s, err := NewRegistry(Options{Dir: dir}).Build(tt.cfg)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: got %v, want accepted", tt.name, err)
		case tt.want == "" && s.Host(0) == nil:
			t.Errorf("%s: got no host", tt.name)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), `back end "be"`)):
			t.Errorf("%s: got %v, want an error about back end \"be\" containing %q", tt.name, err, tt.want)
		case tt.want != "" && s != nil:
			t.Errorf("%s: got a set with the error", tt.name)
		}
	}
}

func build(t *testing.T, opts Options, cfg *groupconf.Config) *Host {
	t.Helper()
	s, err := NewRegistry(opts).Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s.Host(0)
}

func TestRemoteHostNameAndHostHeader(t *testing.T) {
	tests := []struct {
		name       string
		cfg        *groupconf.Config
		wantName   string
		wantHeader string
	}{
		{"an entry for every port", config(backend("http://api.test:8080/v1"), entry("API.Test", 0, nil)), "api.test", "api.test:8080"},
		{"an entry for the port", config(backend("http://api.test:8080"), entry("api.test", 8080, nil)), "api.test:8080", "api.test:8080"},
		{"the port's entry wins", config(backend("http://api.test:8080"), entry("api.test", 0, nil), entry("api.test", 8080, nil)), "api.test:8080", "api.test:8080"},
		{"no entry", config(backend("http://API.test")), "api.test:80", "API.test"},
		{"no entry, https", config(backend("https://api.test")), "api.test:443", "api.test"},
		{"hostHeader", config(backend("http://api.test:8080"), entry("api.test", 0, func(r *groupconf.RemoteHost) { r.HostHeader = "front.example" })), "api.test", "front.example"},
	}
	for _, tt := range tests {
		h := build(t, Options{}, tt.cfg)
		if h.Name != tt.wantName || string(h.HostHeader) != tt.wantHeader {
			t.Errorf("%s: got name %q, Host %q; want %q, %q", tt.name, h.Name, h.HostHeader, tt.wantName, tt.wantHeader)
		}
	}
}

// TestTLSToBackEnd: an https back end is verified against caFile (relative
// to the install directory, or absolute), under the name in sni, or not at
// all with verifyServerCertificate off.
func TestTLSToBackEnd(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "tls ok") }))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	srv.StartTLS()
	defer srv.Close()
	dir := t.TempDir()
	abs := certPEM(t, srv, dir)
	url := srv.URL // https://127.0.0.1:port; the certificate names 127.0.0.1 and example.com
	tests := []struct {
		name string
		dir  string
		set  func(*groupconf.RemoteHost)
		ok   bool
	}{
		{"caFile relative to the install directory", dir, func(r *groupconf.RemoteHost) { r.CAFile = "ca.pem" }, true},
		{"caFile absolute", t.TempDir(), func(r *groupconf.RemoteHost) { r.CAFile = abs }, true},
		{"the system's CAs", dir, func(r *groupconf.RemoteHost) {}, false},
		{"not verified", dir, func(r *groupconf.RemoteHost) { r.VerifyServerCertificate = false }, true},
		{"sni the certificate names", dir, func(r *groupconf.RemoteHost) { r.CAFile, r.SNI = "ca.pem", "example.com" }, true},
		{"sni the certificate does not name", dir, func(r *groupconf.RemoteHost) { r.CAFile, r.SNI = "ca.pem", "other.test" }, false},
	}
	for _, tt := range tests {
		h := build(t, Options{Dir: tt.dir}, config(backend(url), entry("127.0.0.1", 0, tt.set)))
		w, err := forward(h, "GET", "/", nil, 0)
		if got := err == nil && w.body.String() == "tls ok"; got != tt.ok {
			t.Errorf("%s: got %v (%q), want success %v", tt.name, err, w.body.String(), tt.ok)
		}
	}
}

func TestTLSSessionCache(t *testing.T) {
	for _, n := range []int{0, 1, 32} {
		h := build(t, Options{}, config(backend("https://api.test"), entry("api.test", 0, func(r *groupconf.RemoteHost) { r.TLSSessionCache = n })))
		if got := h.tlsConf.ClientSessionCache != nil; got != (n > 0) {
			t.Errorf("tlsSessionCache %d: got a cache %v, want %v", n, got, n > 0)
		}
		if h.tlsConf.ServerName != "api.test" {
			t.Errorf("tlsSessionCache %d: server name got %q, want api.test", n, h.tlsConf.ServerName)
		}
	}
	if h := build(t, Options{}, config(backend("http://api.test"))); h.tlsConf != nil {
		t.Error("http back end: got a TLS configuration")
	}
}

// TestSampleBackEnd: the sample back end is one address, the sample
// listener's (loopback when it listens on every address), with no byte
// limits of its own.
func TestSampleBackEnd(t *testing.T) {
	tests := []struct{ address, want string }{
		{"", "127.0.0.1:8081"},
		{"0.0.0.0", "127.0.0.1:8081"},
		{"::", "127.0.0.1:8081"},
		{"127.0.0.5", "127.0.0.5:8081"},
		{"::1", "[::1]:8081"},
	}
	for _, tt := range tests {
		cfg := &groupconf.Config{Settings: groupconf.Settings{
			Backends: []groupconf.Backend{{Name: "s", Sample: true}},
			Sample:   groupconf.Sample{Enabled: true, Address: tt.address, Port: 8081},
		}}
		h := build(t, Options{}, cfg)
		g := h.groups.Load()
		if h.Name != "sample" || len(g.all) != 1 || g.all[0].Addr() != tt.want || g.all[0].Priority != 1 || string(h.HostHeader) != tt.want {
			t.Errorf("sample on %q: got %q with %d addresses (%v), Host %q; want sample with %s, priority 1, as Host", tt.address, h.Name, len(g.all), g.all, h.HostHeader, tt.want)
			continue
		}
		up := g.all[0].up
		if len(h.Settings.Addresses) != 1 || h.Settings.Addresses[0].Address != netip.MustParseAddrPort(tt.want).Addr().String() {
			t.Errorf("sample on %q: got configured addresses %+v, want the one address (not DNS)", tt.address, h.Settings.Addresses)
		}
		if h.Settings.MaxSentBytes != 0 || h.Settings.MaxReceivedBytes != 0 || up.MaxSentBytes != 0 || up.MaxReceivedBytes != 0 || h.scheme != "http" {
			t.Errorf("sample on %q: got limits %d/%d (pool %d/%d), scheme %s; want none, http", tt.address,
				h.Settings.MaxSentBytes, h.Settings.MaxReceivedBytes, up.MaxSentBytes, up.MaxReceivedBytes, h.scheme)
		}
	}
}

func TestStandaloneSettings(t *testing.T) {
	d := groupconf.RemoteHostDefaults()
	one := groupconf.Duration(1) // 1 ns: any positive value overrides
	tests := []struct {
		name string
		b    groupconf.Backend
		want [4]any
	}{
		{"none set: the defaults", groupconf.Backend{Name: "be", URL: "http://127.0.0.1:9"}, [4]any{d.ConnectTimeout, d.ActiveTimeout, d.MaxIdleConns, d.IdleTimeout}},
		{"each set", groupconf.Backend{Name: "be", URL: "http://127.0.0.1:9", ConnectTimeout: one, Timeout: one, MaxIdleConns: 1, IdleTimeout: one}, [4]any{one, one, 1, one}},
	}
	for _, tt := range tests {
		h, err := Standalone(tt.b, groupconf.Sample{}, Options{})
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		s := h.Settings
		if got := [4]any{s.ConnectTimeout, s.ActiveTimeout, s.MaxIdleConns, s.IdleTimeout}; got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
		if h.Backend != "be" || h.groups.Load().all[0].Addr() != "127.0.0.1:9" {
			t.Errorf("%s: got back end %q at %v, want be at 127.0.0.1:9", tt.name, h.Backend, h.groups.Load().all)
		}
	}
}

// TestEffectiveSettings: a back end's own connectTimeout, timeout,
// maxIdleConns and idleTimeout override its remote host only when written
// in a configuration layer.
func TestEffectiveSettings(t *testing.T) {
	entryKeys := "    connectTimeout: 7\n    activeTimeout: 8\n    maxIdleConns: 9\n    idleTimeout: 10\n"
	tests := []struct {
		name    string
		backend string
		want    string
	}{
		{"the remote host's", "", "7s 8s 9 10s"},
		{"the back end's", "    connectTimeout: 3\n    timeout: 4\n    maxIdleConns: 5\n    idleTimeout: 6\n", "3s 4s 5 6s"},
	}
	for _, tt := range tests {
		y := "backends:\n  - name: be\n    url: http://api.test:8080\n" + tt.backend + "remoteHosts:\n  - host: api.test\n" + entryKeys +
			"apis:\n  - name: a\n    pathPrefix: /\n    backend: be\n"
		cfg, err := groupconf.Load(groupconf.Layer{Name: "group.yaml", YAML: []byte(y)})
		if err != nil {
			t.Fatal(err)
		}
		r := Effective(cfg, 0)
		if got := fmt.Sprintf("%v %v %d %v", r.ConnectTimeout.D(), r.ActiveTimeout.D(), r.MaxIdleConns, r.IdleTimeout.D()); got != tt.want {
			t.Errorf("%s: got %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestAddressesFromConfiguration(t *testing.T) {
	var many []string
	for i := range MaxAddresses + 6 {
		many = append(many, fmt.Sprintf("10.0.%d.%d", i/250, i%250+1))
	}
	h := build(t, Options{}, config(backend("http://api.test:8080"), entry("api.test", 0, addrs(many...))))
	if g := h.groups.Load(); len(g.all) != MaxAddresses || g.all[MaxAddresses-1].Addr() != "10.0.0.64:8080" {
		t.Errorf("%d addresses: got %d, want the first %d", len(many), len(g.all), MaxAddresses)
	}
	if MaxAddresses != 64 {
		t.Errorf("MaxAddresses: got %d, want 64 (the bits of a request's tried set)", MaxAddresses)
	}

	h = build(t, Options{}, config(backend("http://api.test:8080"), entry("api.test", 0, func(r *groupconf.RemoteHost) {
		r.Addresses = []groupconf.RemoteHostAddress{{Address: "10.0.0.1", Port: 9000, Priority: 2}, {Address: "::ffff:10.0.0.2"}}
	})))
	g := h.groups.Load()
	got := fmt.Sprintf("%s/%d %s/%d expires %d", g.all[0].Addr(), g.all[0].Priority, g.all[1].Addr(), g.all[1].Priority, g.expires)
	if want := "10.0.0.2:8080/1 10.0.0.1:9000/2 expires 0"; got != want {
		t.Errorf("got %s, want %s (priority 0 is 1, port 0 the url's, never refreshed)", got, want)
	}

	h = build(t, Options{}, config(backend("http://10.0.0.7:81")))
	g = h.groups.Load()
	if g == nil || len(g.all) != 1 || g.all[0].Addr() != "10.0.0.7:81" || g.all[0].Priority != 1 || g.expires != 0 {
		t.Errorf("IP in the url: got %+v, want the one address 10.0.0.7:81, priority 1, never refreshed", g)
	}
	if h := build(t, Options{}, config(backend("http://api.test:81"))); h.groups.Load() != nil {
		t.Error("a host name without addresses: got addresses before any lookup")
	}
}

func TestStateAndMetrics(t *testing.T) {
	r := NewRegistry(Options{})
	if st := r.State(); st.RemoteHosts == nil || len(st.RemoteHosts) != 0 {
		t.Errorf("before any configuration: got %#v, want an empty list", st.RemoteHosts)
	}
	dst := []AddressMetrics{{RemoteHost: "kept"}}
	if got := r.AppendMetrics(dst); len(got) != 1 {
		t.Errorf("metrics before any configuration: got %d entries, want the 1 given", len(got))
	}
	cfg := config([]groupconf.Backend{
		{Name: "a", URL: "http://api.test:8080"},
		{Name: "b", URL: "http://api.test:8080/other"},
		{Name: "c", URL: "http://dns.test:8080"},
	}, entry("api.test", 8080, addrs("10.0.0.1", "10.0.0.2")))
	s, err := r.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.Activate(s)
	defer r.Close()
	g := s.Host(0).groups.Load()
	now := mono()
	g.all[0].st.observe(now, int64(10*time.Millisecond), 10)
	g.all[1].st.failN(now, int64(time.Hour), 1, fmt.Errorf("refused"))

	st := r.State()
	if len(st.RemoteHosts) != 2 {
		t.Fatalf("got %d remote hosts, want 2 (api.test:8080 for a and b, dns.test:8080)", len(st.RemoteHosts))
	}
	api, dns := st.RemoteHosts[0], st.RemoteHosts[1]
	if fmt.Sprint(api.Backends) != "[a b]" || api.DNS || len(api.Addresses) != 2 {
		t.Errorf("api.test: got back ends %v, dns %v, %d addresses; want [a b], false, 2", api.Backends, api.DNS, len(api.Addresses))
	}
	if a := api.Addresses[0]; !a.Up || !near(a.AvgResponseMs, 10) || a.DownReason != "" {
		t.Errorf("10.0.0.1: got %+v, want up with 10 ms", a)
	}
	if a := api.Addresses[1]; a.Up || a.DownReason != "failed" || a.LastError != "refused" {
		t.Errorf("10.0.0.2: got %+v, want down (failed), last error refused", a)
	}
	if dns.Name != "dns.test:8080" || !dns.DNS || len(dns.Addresses) != 0 || dns.Addresses == nil {
		t.Errorf("dns.test: got %+v, want DNS with no address yet", dns)
	}
	m := r.AppendMetrics(nil)
	if len(m) != 2 {
		t.Fatalf("metrics: got %d entries, want 2 (each address once)", len(m))
	}
	if !m[0].Up || m[1].Up || m[1].Failures != 1 || !near(m[0].AvgResponseSeconds, 0.01) {
		t.Errorf("metrics: got %+v, want 10.0.0.1 up (0.01 s), 10.0.0.2 down with 1 failure", m)
	}
}

// forward sends one request through h with a deadline and records the answer.
func forward(h *Host, method, path string, body *strings.Reader, cl int64) (*rec, error) {
	w, _, err := forwardRes(h, method, path, body, cl)
	return w, err
}

// A request here takes milliseconds; the 2 s deadline ends one that
// would loop (a request must try each address once, then stop).
func forwardRes(h *Host, method, path string, body *strings.Reader, cl int64) (*rec, h1.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	w := &rec{}
	var a h1.Attempt
	out := &h1.Outgoing{Method: []byte(method), Path: []byte(path), Host: h.HostHeader, ContentLength: cl}
	if body != nil {
		out.Body = body
	}
	res, err := h.Forward(ctx, w, out, &a)
	return w, res, err
}
