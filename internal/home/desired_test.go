package home

import (
	"os"
	"testing"
)

func TestDesired(t *testing.T) {
	h := Home{Dir: t.TempDir()}
	rf := h.RunFiles("instance-1")
	if _, ok := ReadDesired(rf); ok {
		t.Fatal("a desired state before any was written")
	}
	if err := WriteDesired(rf, DesiredRunning, "test"); err != nil {
		t.Fatal(err)
	}
	if d, ok := ReadDesired(rf); !ok || d.State != DesiredRunning || d.By != "test" || d.At.IsZero() {
		t.Errorf("got %+v %v", d, ok)
	}
	if err := WriteDesired(rf, DesiredStopped, "op"); err != nil {
		t.Fatal(err)
	}
	if d, _ := ReadDesired(rf); d.State != DesiredStopped {
		t.Errorf("got %+v, want stopped", d)
	}
	if err := WriteDesired(rf, "paused", "x"); err == nil {
		t.Error("an unknown state was written")
	}
	for _, bad := range []string{"{", `{"state":"paused"}`, ""} {
		os.WriteFile(rf.DesiredFile(), []byte(bad), 0o644)
		if _, ok := ReadDesired(rf); ok {
			t.Errorf("%q read as a desired state", bad)
		}
	}
}
