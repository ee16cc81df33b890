package tools

import (
	"strings"
	"testing"
)

// pickID: an id as it is (also one the topology lacks: the server answers
// 404), a unique name, and the errors for an unknown or ambiguous name.
func TestPickID(t *testing.T) {
	items := []clientNamed{{"group-2", "A"}, {"group-3", "B"}, {"group-4", "B"}, {"group-5", "group-2"}}
	for _, c := range []struct{ arg, want, err string }{
		{"group-2", "group-2", ""},
		{"A", "group-2", ""},
		{"group-9", "group-9", ""},
		{"B", "", `the group name "B" is ambiguous in G: group-3, group-4 have it; give the id`},
		{"C", "", `no group with the id or name "C" in G; the groups are: group-2 (A), group-3 (B), group-4 (B), group-5 (group-2)`},
	} {
		got, err := pickID("group", c.arg, " in G", items)
		if got != c.want || (err == nil) != (c.err == "") || err != nil && err.Error() != c.err {
			t.Errorf("pickID(%q) = %q, %v; want %q, %q", c.arg, got, err, c.want, c.err)
		}
	}
	if _, err := pickID("host", "x", "", nil); err == nil || !strings.Contains(err.Error(), "there is none") {
		t.Errorf("no hosts: %v", err)
	}
	for _, c := range []struct{ kind, arg string }{{"group", "group-7"}, {"instance", "instance-3"}, {"instance", "nodemanager-1"}, {"host", "host-2"}} {
		if got, err := idOnly(c.kind, c.arg); err != nil || got != c.arg {
			t.Errorf("idOnly(%s, %s): %q %v", c.kind, c.arg, got, err)
		}
	}
	if _, err := idOnly("group", "My Group"); err == nil || !strings.Contains(err.Error(), "may not read the topology") {
		t.Errorf("idOnly of a name: %v", err)
	}
}
