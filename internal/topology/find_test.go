package topology

import (
	"errors"
	"strings"
	"testing"
)

// The tools take a group or instance by name or by id; a value that is the
// name of one and the id of another is refused.
func TestFindGroupAndInstance(t *testing.T) {
	tp := &Topology{Groups: []Group{
		{ID: "group-2", Name: "A", Services: []Service{{ID: "instance-1", Name: "one", Type: TypeGateway}, {ID: "instance-2", Name: "instance-1", Type: TypeGateway}}},
		{ID: "group-3", Name: "group-2"},
		{ID: "group-4", Name: "B", Services: []Service{{ID: "instance-3", Name: "x", Type: TypeGateway}}},
	}}
	for _, c := range []struct{ arg, want, err string }{
		{"A", "group-2", ""},
		{"group-4", "group-4", ""},
		{"B", "group-4", ""},
		{"group-2", "", `"group-2" is the name of group group-3 and the id of group "A"`},
		{"nope", "", `no group "nope"; registered: "A", "group-2", "B"`},
	} {
		g, err := tp.FindGroup(c.arg)
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("FindGroup(%q): %v, want %q", c.arg, err, c.err)
			}
		case err != nil || g.ID != c.want:
			t.Errorf("FindGroup(%q): %v %v, want %s", c.arg, g, err, c.want)
		}
	}
	if _, err := tp.FindGroup("group-2"); !errors.Is(err, ErrInvalid) {
		t.Errorf("ambiguous: %v, want ErrInvalid", err)
	}
	if _, err := tp.FindGroup("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown: %v, want ErrNotFound", err)
	}
	g, _ := tp.FindGroup("B")
	if s, err := g.FindInstance("instance-3"); err != nil || s.Name != "x" {
		t.Errorf("instance by id: %v %v", s, err)
	}
	if s, err := g.FindInstance("x"); err != nil || s.ID != "instance-3" {
		t.Errorf("instance by name: %v %v", s, err)
	}
	a, _ := tp.FindGroup("A")
	if _, err := a.FindInstance("instance-1"); err == nil || !strings.Contains(err.Error(), "is the name of instance instance-2 and the id of instance \"one\"") {
		t.Errorf("ambiguous instance: %v", err)
	}
	if r, err := tp.FindInstance("group-4", "x"); err != nil || r.Service.ID != "instance-3" {
		t.Errorf("FindInstance by ids and names: %v %v", r, err)
	}
	if _, err := a.FindInstance("zzz"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown instance: %v", err)
	}
}
