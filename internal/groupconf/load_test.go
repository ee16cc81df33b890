package groupconf

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPrecedence(t *testing.T) {
	group := Layer{Name: "group.yaml", YAML: []byte("zeroDowntime:\n  shutdown:\n    enabled: true\n    delay: 5\ntraffic:\n  port: 9000\n")}
	inst := Layer{Name: "instance.yaml", YAML: []byte("traffic:\n  port: 9100\nzeroDowntime:\n  shutdown:\n    delay: 2.5\n")}
	props := Layer{Name: "-D", Properties: map[string]string{"zeroDowntime.shutdown.delay": "1500ms"}}
	cfg, err := Load(group, inst, props)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Traffic.Port, 9100; got != want {
		t.Errorf("traffic.port: got %d, want %d", got, want)
	}
	if !cfg.ZeroDowntime.Shutdown.Enabled {
		t.Errorf("zeroDowntime.shutdown.enabled: got false, want true (from group)")
	}
	if got, want := cfg.ZeroDowntime.Shutdown.Delay.D(), 1500*time.Millisecond; got != want {
		t.Errorf("delay: got %v, want %v", got, want)
	}
	if got, want := cfg.Management.Port, 8085; got != want {
		t.Errorf("management.port default: got %d, want %d", got, want)
	}
	if got, want := cfg.Origin("traffic.port").String(), "instance.yaml:2"; got != want {
		t.Errorf("origin: got %q, want %q", got, want)
	}
	cfg2, err := Load(group, inst)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg2.ZeroDowntime.Shutdown.Delay.D(), 2500*time.Millisecond; got != want {
		t.Errorf("delay without -D: got %v, want %v", got, want)
	}
}

func TestErrors(t *testing.T) {
	cases := []struct {
		name  string
		layer Layer
		want  []string
	}{
		{"unknown top key", Layer{Name: "g.yaml", YAML: []byte("traffic:\n  port: 1\ntrafic: {}\n")}, []string{"g.yaml:3", `unknown key "trafic"`, "did you mean \"traffic\"", "accepted at the top level"}},
		{"unknown nested key", Layer{Name: "i.yaml", YAML: []byte("traffic:\n  prot: 80\n")}, []string{"i.yaml:2", "traffic.prot", "accepted under traffic: address, port"}},
		{"unknown list item key", Layer{Name: "g.yaml", YAML: []byte("apis:\n  - name: a\n    pth: /x\n")}, []string{"g.yaml:3", "apis[0].pth"}},
		{"type error", Layer{Name: "g.yaml", YAML: []byte("traffic:\n  port: eighty\n")}, []string{"g.yaml:2", "eighty"}},
		{"syntax error", Layer{Name: "g.yaml", YAML: []byte("traffic:\n  port: 80\n bad\n")}, []string{"g.yaml:3", "did not find expected key"}},
		// The line of the fault, not of the block it is in (yaml.v3 named line 1 here).
		{"badly indented", Layer{Name: "g.yaml", YAML: []byte("backends:\n  - name: be\n   url: http://127.0.0.1:1\n")}, []string{"g.yaml:3", "did not find expected '-' indicator"}},
		{"bad duration", Layer{Name: "g.yaml", YAML: []byte("zeroDowntime:\n  shutdown:\n    delay: soon\n")}, []string{"g.yaml:3", "not a duration"}},
		{"semantic", Layer{Name: "i.yaml", YAML: []byte("traffic:\n  port: 70000\n")}, []string{"i.yaml:2", "traffic.port", "not a TCP port"}},
		{"port clash", Layer{Name: "i.yaml", YAML: []byte("traffic:\n  port: 8085\n")}, []string{"management.port", "8085"}},
		{"api without backend", Layer{Name: "g.yaml", YAML: []byte("apis:\n  - name: a\n    pathPrefix: /a\n    backend: nope\n")}, []string{"g.yaml:4", "nope", "not defined"}},
		{"unknown property", Layer{Name: "-D", Properties: map[string]string{"zeroDowntime.shutdown.dealy": "1"}}, []string{"unknown property", "zeroDowntime.shutdown.delay"}},
		{"section property", Layer{Name: "-D", Properties: map[string]string{"traffic": "1"}}, []string{"is a section", "traffic.port"}},
		{"list property", Layer{Name: "-D", Properties: map[string]string{"apis": "1"}}, []string{"a list"}},
		{"management not loopback", Layer{Name: "i.yaml", YAML: []byte("management:\n  address: 0.0.0.0\n")}, []string{"i.yaml:2", "loopback"}},
		{"ticket rotation too short", Layer{Name: "i.yaml", YAML: []byte("traffic:\n  tls:\n    sessionTickets:\n      rotation: 30s\n")}, []string{"traffic.tls.sessionTickets.rotation", "30s", "from 1m to 24h"}},
		{"ticket rotation too long", Layer{Name: "-D", Properties: map[string]string{"traffic.tls.sessionTickets.rotation": "25h"}}, []string{"traffic.tls.sessionTickets.rotation", "25h0m0s", "from 1m to 24h"}},
		{"alias", Layer{Name: "g.yaml", YAML: []byte("traffic: &t\n  port: 1\nmanagement: *t\n")}, []string{"aliases"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.layer)
			if err == nil {
				t.Fatalf("got no error, want one containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q, want it to contain %q", err, w)
				}
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Errorf("got %T, want a *groupconf.Error inside", err)
			}
		})
	}
}

func TestBackendDefaultsAndSample(t *testing.T) {
	cfg, err := Load(Layer{Name: "g.yaml", YAML: []byte(`
sample: {enabled: true, port: 9999}
backends:
  - name: s
    sample: true
  - name: b
    url: http://127.0.0.1:1/base
    timeout: 2
apis:
  - name: s
    pathPrefix: /sample
    stripPrefix: true
    backend: s
`)})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Backends[0].Timeout.D(), 30*time.Second; got != want {
		t.Errorf("default timeout: got %v, want %v", got, want)
	}
	if got, want := cfg.Backends[1].Timeout.D(), 2*time.Second; got != want {
		t.Errorf("timeout: got %v, want %v", got, want)
	}
}

func TestSetKeysKeepsComments(t *testing.T) {
	p := filepath.Join(t.TempDir(), "instance.yaml")
	os.WriteFile(p, []byte("# my comment\ntraffic:\n  port: 1000 # traffic\n"), 0o644)
	if err := SetKeys(p, map[string]string{"traffic.port": "2000", "sample.port": "3000"}, []string{"traffic.port", "sample.port"}, ""); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(p)
	for _, w := range []string{"# my comment", "port: 2000", "port: 3000", "# traffic"} {
		if !strings.Contains(string(data), w) {
			t.Errorf("got %q, want it to contain %q", data, w)
		}
	}
	if err := SetKeys(p, map[string]string{"traffic.bogus": "1"}, nil, ""); err == nil {
		t.Errorf("got no error for an unknown key")
	}
	data2, _ := os.ReadFile(p)
	if string(data2) != string(data) {
		t.Errorf("file changed after a failed SetKeys")
	}
}

func TestKeysDocumented(t *testing.T) {
	keys := Keys()
	seen := map[string]bool{}
	for _, k := range keys {
		if k.Doc == "" {
			t.Errorf("key %s has no doc tag", k.Key)
		}
		seen[k.Key] = true
	}
	for _, want := range []string{"traffic.port", "zeroDowntime.shutdown.delay", "apis[].pathPrefix", "backends[].timeout"} {
		if !seen[want] {
			t.Errorf("Keys() lacks %s", want)
		}
	}
}

func TestCommentOnlyFile(t *testing.T) {
	cfg, err := Load(Layer{Name: "g.yaml", YAML: []byte("# nothing but\n# comments\n")})
	if err != nil {
		t.Fatalf("got %v, want a comment-only file to load as empty", err)
	}
	if cfg.Traffic.Port != 8080 {
		t.Errorf("got %d, want default 8080", cfg.Traffic.Port)
	}
}

func TestRemoteHosts(t *testing.T) {
	base := "backends:\n  - name: o\n    url: http://orders.internal:9000/v1\n"
	cfg, err := Load(Layer{Name: "g.yaml", YAML: []byte(base + `remoteHosts:
  - host: orders.internal
    loadBalancing: responseTime
    addresses:
      - {address: 127.0.0.2, priority: 1}
      - {address: 127.0.0.3, port: 9001, priority: 2}
    watchdog: {enabled: true, interval: 1}
`)})
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.RemoteHosts[0]
	if r.ConnectTimeout.D() != 30*time.Second || r.MaxSentBytes != 10<<20 || r.Watchdog.Method != "OPTIONS" || r.Watchdog.UnhealthyThreshold != 3 || r.Watchdog.Interval.D() != time.Second {
		t.Errorf("defaults not applied: %+v", r)
	}
	if got := cfg.RemoteHostFor(cfg.Backends[0]); got != 0 {
		t.Errorf("RemoteHostFor: got %d, want 0", got)
	}
	bad := []struct{ yaml, want string }{
		{"remoteHosts:\n  - host: other.internal\n", "not used by any back end"},
		{"remoteHosts:\n  - host: orders.internal\n    addresses:\n      - {address: 300.1.1.1}\n", "g.yaml:7"},
		{"remoteHosts:\n  - host: orders.internal\n    loadBalancing: random\n", "accepted: roundRobin, responseTime"},
		{"remoteHosts:\n  - host: orders.internal\n  - host: orders.internal\n", "defined twice"},
		{"traffic:\n  trustedProxies: [10.0.0.0/8, nonsense]\n", "trustedProxies[1]"},
		{"traffic:\n  proxyProtocol: true\n", "none are listed"},
	}
	for _, b := range bad {
		_, err := Load(Layer{Name: "g.yaml", YAML: []byte(base + b.yaml)})
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%q: got %v, want an error containing %q", b.yaml, err, b.want)
		}
	}
	if p, err := ParsePrefix("192.0.2.7"); err != nil || p.Bits() != 32 {
		t.Errorf("ParsePrefix of an address: got %v %v", p, err)
	}
}

// LoadGroup validates a group's own layers without an instance's: a back
// end using the sample service, which an instance enables, is left to the
// instance's load; everything else is still checked.
func TestLoadGroup(t *testing.T) {
	group := Layer{Name: "group.yaml", YAML: []byte("backends:\n  - name: s\n    sample: true\napis:\n  - name: a\n    pathPrefix: /a\n    backend: s\n")}
	p, err := Parse(group)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.LoadGroup(); err != nil {
		t.Fatalf("LoadGroup: %v", err)
	}
	if _, err := p.Load(); err == nil || !strings.Contains(err.Error(), "sample.enabled is false for this instance") {
		t.Fatalf("Load without the instance: %v", err)
	}
	if _, err := p.Load(Layer{Name: "instance.yaml", YAML: []byte("sample:\n  enabled: true\n")}); err != nil {
		t.Fatalf("Load with an instance enabling the sample: %v", err)
	}
	bad, err := Parse(Layer{Name: "group.yaml", YAML: []byte("backends:\n  - name: s\n    sample: true\n    url: http://x\n")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.LoadGroup(); err == nil || !strings.Contains(err.Error(), "either url or sample") {
		t.Fatalf("LoadGroup of a wrong group: %v", err)
	}
}

func TestTicketRotationBounds(t *testing.T) {
	for _, r := range []string{"1m", "24h"} {
		c, err := Load(Layer{Name: "-D", Properties: map[string]string{"traffic.tls.sessionTickets.rotation": r}})
		if err != nil {
			t.Fatalf("rotation %s: %v", r, err)
		}
		if got := c.Traffic.TLS.SessionTickets.Rotation.D().String(); got != map[string]string{"1m": "1m0s", "24h": "24h0m0s"}[r] {
			t.Errorf("rotation %s: got %s", r, got)
		}
	}
	if d := Defaults().Traffic.TLS.SessionTickets; !d.Enabled || !d.Shared || d.Rotation.D() != time.Hour {
		t.Errorf("defaults: %+v, want on, shared, 1h", d)
	}
}
