package groupconf

import (
	"strings"
	"testing"
)

func TestClusterSettings(t *testing.T) {
	c, err := Load(Layer{Name: "instance.yaml", YAML: []byte("management:\n  port: 8086\n")})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Cluster.Enabled || c.RoutePort() != 18086 {
		t.Errorf("defaults: enabled %v, route port %d; want true, 18086 (management + 10000)", c.Cluster.Enabled, c.RoutePort())
	}
	for _, tc := range []struct{ yaml, want string }{
		{"cluster:\n  port: 70000\n", "instance.yaml:2: cluster.port: 70000 is not a TCP port"},
		{"cluster:\n  port: 8080\n", "cluster.port: port 8080 is also traffic.port"},
		{"cluster:\n  address: here\n", "cluster.address: \"here\" is not an IP address"},
		{"cluster:\n  advertise: nohost\n", "cluster.advertise: \"nohost\": want host:port"},
		{"cluster:\n  peers: [a:1, \"b:0\"]\n", "cluster.peers: entry 2, \"b:0\": port \"0\" is not a TCP port"},
		{"cluster:\n  clientPort: 8085\n", "cluster.clientPort: port 8085 is also management.port"},
	} {
		_, err := Load(Layer{Name: "instance.yaml", YAML: []byte(tc.yaml)})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want an error containing %q", tc.yaml, err, tc.want)
		}
	}
	if got := DefaultRoutePort(60000); got != 50000 {
		t.Errorf("DefaultRoutePort(60000) = %d, want 50000 (70000 is not a port)", got)
	}
	c, err = Load(Layer{Name: "instance.yaml", YAML: []byte("cluster:\n  enabled: false\n  port: 8080\n")})
	if err != nil {
		t.Errorf("a disabled bus's port is not checked against the listeners: %v", err)
	}
	c, err = Load(Layer{Name: "instance.yaml", YAML: []byte("cluster:\n  port: 7000\n  peers: [\"10.0.0.2:7000\", \"nats-route://h:7001\"]\n")})
	if err != nil || c.RoutePort() != 7000 || len(c.Cluster.Peers) != 2 {
		t.Errorf("port 7000 and two peers: %v, %+v", err, c.Cluster)
	}
}
