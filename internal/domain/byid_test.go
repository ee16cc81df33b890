package domain

import (
	"errors"
	"os"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// The by-id operations the management API uses: they take the version a
// change is based on and return the new one.
func TestByIDOperations(t *testing.T) {
	h := initDomain(t)
	ctx := t.Context()
	g, v, err := CreateGroup(ctx, h, actor, 1, "API group")
	if err != nil {
		t.Fatal(err)
	}
	if g.ID != "group-2" || v != 2 {
		t.Errorf("CreateGroup: got %s version %d, want group-2 version 2", g.ID, v)
	}
	if _, err := os.Stat(h.GroupConfFile(g.ID)); err != nil {
		t.Errorf("group.yaml: %v", err)
	}
	if _, _, err := CreateGroup(ctx, h, actor, 0, "API group"); !errors.Is(err, topology.ErrExists) {
		t.Errorf("duplicate group: got %v, want ErrExists", err)
	}
	if _, _, err := CreateGroup(ctx, h, actor, 1, "Other"); !errors.Is(err, topology.ErrConflict) {
		t.Errorf("stale version: got %v, want ErrConflict", err)
	}
	if _, err := os.Stat(h.GroupDir("group-3")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused group left a directory: %v", err)
	}

	c, err := CreateInstance(ctx, h, actor, InstanceSpec{GroupID: g.ID, Name: "one", ExpectVersion: v})
	if err != nil {
		t.Fatal(err)
	}
	if c.GroupID != g.ID || c.NewGroup || c.Version != 3 {
		t.Errorf("CreateInstance by group id: got %+v", c)
	}
	if _, err := CreateInstance(ctx, h, actor, InstanceSpec{GroupID: "group-9", Name: "two", TrafficPort: 9000, ManagementPort: 9001}); !errors.Is(err, topology.ErrNotFound) {
		t.Errorf("unknown group id: got %v, want ErrNotFound", err)
	}
	if _, err := CreateInstance(ctx, h, actor, InstanceSpec{GroupID: g.ID, Name: "two", TrafficPort: 9000, ManagementPort: 9001, ExpectVersion: 2}); !errors.Is(err, topology.ErrConflict) {
		t.Errorf("stale version: got %v, want ErrConflict", err)
	}
	if _, err := CreateInstance(ctx, h, actor, InstanceSpec{GroupID: "group-1", Name: "two", TrafficPort: 9000, ManagementPort: 9001}); !errors.Is(err, topology.ErrInvalid) {
		t.Errorf("instance in the Node Manager Group: got %v, want ErrInvalid", err)
	}
	if _, err := DeleteInstanceID(ctx, h, actor, 0, g.ID, "nodemanager-1"); !errors.Is(err, topology.ErrNotFound) {
		t.Errorf("delete a service of another group: got %v, want ErrNotFound", err)
	}
	if _, err := DeleteInstanceID(ctx, h, actor, 2, g.ID, c.InstanceID); !errors.Is(err, topology.ErrConflict) {
		t.Errorf("stale delete: got %v, want ErrConflict", err)
	}
	v, err = DeleteInstanceID(ctx, h, actor, 3, g.ID, c.InstanceID)
	if err != nil || v != 4 {
		t.Fatalf("DeleteInstanceID: got %d, %v; want 4, nil", v, err)
	}
	if _, err := os.Stat(h.InstanceDir(g.ID, c.InstanceID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("instance directory left: %v", err)
	}
	if _, err := DeleteGroupID(ctx, h, actor, 0, "group-1"); !errors.Is(err, topology.ErrInvalid) {
		t.Errorf("delete the Node Manager Group: got %v, want ErrInvalid", err)
	}
	if v, err = DeleteGroupID(ctx, h, actor, 4, g.ID); err != nil || v != 5 {
		t.Errorf("DeleteGroupID: got %d, %v; want 5, nil", v, err)
	}
}
