package domain

import (
	"os"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// SetNodeManagerPort and SetANMPort change one key and keep the rest of
// nodemanager.yaml, comments included; a bad port changes nothing.
func TestSetNodeManagerPort(t *testing.T) {
	h := home.Home{Dir: t.TempDir()}
	os.MkdirAll(h.SystemConfDir(), 0o755)
	orig := "# hand-written\nhostID: host-2\nnodeManagerID: nodemanager-2\nport: 8090 # the management port\naddress: 127.0.0.3\nanmAddress: 10.0.0.1\nanmPort: 8090\nrollout:\n  leaseSeconds: 60\n"
	os.WriteFile(h.NodeManagerConf(), []byte(orig), 0o644)
	old, err := SetNodeManagerPort(h, 8091)
	if err != nil || old != 8090 {
		t.Fatalf("SetNodeManagerPort: got %d, %v, want 8090, nil", old, err)
	}
	if err := SetANMPort(h, 9443); err != nil {
		t.Fatal(err)
	}
	c, err := LoadNodeManagerConf(h)
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 8091 || c.ANMPort != 9443 || c.Address != "127.0.0.3" || c.Rollout.LeaseSeconds != 60 || c.HostID != "host-2" {
		t.Errorf("after the changes: got %+v", c)
	}
	data, _ := os.ReadFile(h.NodeManagerConf())
	for _, want := range []string{"# hand-written", "# the management port"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("comment %q lost:\n%s", want, data)
		}
	}
	for _, bad := range []int{0, 65536} {
		if _, err := SetNodeManagerPort(h, bad); err == nil {
			t.Errorf("port %d: got no error", bad)
		}
	}
	if c2, _ := LoadNodeManagerConf(h); c2.Port != 8091 {
		t.Errorf("a refused port changed the file: port %d", c2.Port)
	}
}
