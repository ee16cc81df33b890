package topology

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

type recorder struct {
	mu      sync.Mutex
	changes []Change
}

func (r *recorder) Record(_ context.Context, c Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, c)
}

func newDomain(t *testing.T) (*Store, *recorder) {
	t.Helper()
	h, _ := home.At(t.TempDir())
	if err := h.EnsureSkeleton(); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	s := NewStore(h, rec)
	topo := &Topology{ID: "d", DomainName: "D"}
	hostID := topo.NextID(KindHost)
	topo.Hosts = append(topo.Hosts, Host{ID: hostID, Name: "h"})
	if err := s.Create(t.Context(), Actor{User: "u", Via: "test"}, topo); err != nil {
		t.Fatal(err)
	}
	return s, rec
}

func TestUpdateVersionsAndIDs(t *testing.T) {
	s, rec := newDomain(t)
	actor := Actor{User: "alice", Via: "test", Remote: "local"}
	var gid, iid string
	topo, err := s.Update(t.Context(), actor, "create instance", 0, func(t *Topology) (string, error) {
		g, err := t.AddGroup("G")
		if err != nil {
			return "", err
		}
		gid = g.ID
		sv, err := t.AddService(g.ID, Service{Name: "I", Type: TypeGateway, HostID: "host-1"})
		if err != nil {
			return "", err
		}
		iid = sv.ID
		return "I in G", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if gid != "group-1" || iid != "instance-1" || topo.Version != 2 {
		t.Errorf("got %s %s v%d, want group-1 instance-1 v2", gid, iid, topo.Version)
	}
	// Delete and recreate: the id is not reused.
	if _, err := s.Update(t.Context(), actor, "delete", 0, func(t *Topology) (string, error) { return "", t.RemoveService(gid, iid) }); err != nil {
		t.Fatal(err)
	}
	topo, err = s.Update(t.Context(), actor, "create", 0, func(t *Topology) (string, error) {
		sv, err := t.AddService(gid, Service{Name: "I", Type: TypeGateway, HostID: "host-1"})
		if err == nil {
			iid = sv.ID
		}
		return "", err
	})
	if err != nil {
		t.Fatal(err)
	}
	if iid != "instance-2" || topo.Version != 4 {
		t.Errorf("got %s v%d, want instance-2 v4", iid, topo.Version)
	}
	if len(rec.changes) != 4 || rec.changes[1].Actor.User != "alice" || rec.changes[1].AfterVersion != 2 {
		t.Errorf("recorder got %+v", rec.changes)
	}
}

func TestUpdateFailureWritesNothing(t *testing.T) {
	s, rec := newDomain(t)
	before, _ := os.ReadFile(s.home.TopologyFile())
	_, err := s.Update(t.Context(), Actor{}, "bad", 0, func(t *Topology) (string, error) {
		t.AddGroup("X")
		return "", errors.New("boom")
	})
	if err == nil {
		t.Fatal("want error")
	}
	_, err = s.Update(t.Context(), Actor{}, "stale", 99, func(t *Topology) (string, error) { return "", nil })
	if !IsConflict(err) {
		t.Errorf("got %v, want a conflict", err)
	}
	after, _ := os.ReadFile(s.home.TopologyFile())
	if string(before) != string(after) {
		t.Errorf("topology changed after failed updates")
	}
	last := rec.changes[len(rec.changes)-1]
	if last.Err == nil || last.AfterVersion != 0 {
		t.Errorf("failed change recorded as %+v", last)
	}
}

func TestCreateTwiceRefused(t *testing.T) {
	s, _ := newDomain(t)
	err := s.Create(t.Context(), Actor{}, &Topology{ID: "x"})
	if !errors.Is(err, ErrExists) {
		t.Errorf("got %v, want ErrExists", err)
	}
}

func TestConcurrentUpdatesSerialise(t *testing.T) {
	s, _ := newDomain(t)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Update(context.Background(), Actor{}, "add", 0, func(t *Topology) (string, error) {
				_, err := t.AddGroup("G" + t.NextID("tmp"))
				return "", err
			}); err != nil {
				panic(err)
			}
		}()
	}
	wg.Wait()
	topo, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(topo.Groups) != 8 || topo.Version != 9 {
		t.Errorf("got %d groups v%d, want 8 groups v9 (lost update)", len(topo.Groups), topo.Version)
	}
}

func TestValidateNames(t *testing.T) {
	for _, bad := range []string{"", " x", "a\"b", "a/b", "a\nb", strings.Repeat("x", 129)} {
		if err := ValidateName("group", bad); err == nil {
			t.Errorf("ValidateName(%q): got nil, want error", bad)
		}
	}
	for _, good := range []string{"QuickStart Group", "my server 1", "Ünïcode"} {
		if err := ValidateName("group", good); err != nil {
			t.Errorf("ValidateName(%q): got %v", good, err)
		}
	}
}

func TestNotFoundListsRegistered(t *testing.T) {
	topo := &Topology{Groups: []Group{{ID: "group-2", Name: "A"}, {ID: "group-3", Name: "B"}}}
	_, err := topo.GroupByName("C")
	if err == nil || !strings.Contains(err.Error(), `"A", "B"`) || !errors.Is(err, ErrNotFound) {
		t.Errorf("got %v, want a not-found error listing A and B", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":1,"id":"x","version":1,"counters":{"host":1},"hosts":[{"id":"host-1","name":"h"}],"groups":[]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		topo, err := Parse(data)
		if err == nil {
			if err := topo.Clone().Validate(); err != nil {
				t.Fatalf("clone of a valid topology is invalid: %v", err)
			}
		}
	})
}

// Replace takes only a newer topology of the same domain; Reset also an
// older one, never another domain's; both are recorded.
func TestReplaceAndReset(t *testing.T) {
	s, rec := newDomain(t)
	actor := Actor{User: "u", Via: "test"}
	cur, _ := s.Load()
	older := *cur
	older.Version = cur.Version - 1
	older.Hosts = append([]Host(nil), cur.Hosts...)
	older.Hosts[0].Name = "renamed"
	if err := s.Replace(t.Context(), actor, "push", &older); !errors.Is(err, ErrConflict) {
		t.Fatalf("Replace with an older version: %v, want ErrConflict", err)
	}
	same := older
	same.Version = cur.Version
	if err := s.Replace(t.Context(), actor, "push", &same); !errors.Is(err, ErrConflict) {
		t.Fatalf("Replace with the same version: %v, want ErrConflict", err)
	}
	other := older
	other.ID = "another"
	if err := s.Reset(t.Context(), actor, "reset", &other); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Reset to another domain: %v, want ErrInvalid", err)
	}
	n := len(rec.changes)
	if err := s.Reset(t.Context(), actor, "reset", &older); err != nil {
		t.Fatalf("Reset to an older version: %v", err)
	}
	got, _ := s.Load()
	if got.Version != older.Version || got.Hosts[0].Name != "renamed" {
		t.Fatalf("after Reset: version %d host %q", got.Version, got.Hosts[0].Name)
	}
	if len(rec.changes) != n+1 || rec.changes[n].Action != "reset" || rec.changes[n].Err != nil || rec.changes[n].BeforeVersion != cur.Version {
		t.Errorf("recorded: %+v", rec.changes[n:])
	}
}
