package audit

import (
	"context"
	"os"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

func internalHome(t *testing.T) home.Home {
	t.Helper()
	h, err := home.At(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func appendN(t *testing.T, l *Log, n int) {
	t.Helper()
	for range n {
		if _, err := l.Record(context.Background(), Entry{User: "u", Action: "a"}); err != nil {
			t.Fatal(err)
		}
	}
}

// A rotation between a reader's listing of the files and its opening them
// (the file it listed as audit.log is gone, or is a new one) makes it list
// again: Verify and Search still see every entry. A log that rotates at
// every attempt is an error, not a partial answer.
func TestReaderRacesRotation(t *testing.T) {
	defer noFileLeaks(t)()
	h := internalHome(t)
	l := &Log{h: h, MaxFileBytes: 400}
	appendN(t, l, 6)
	rotations := 0
	testHookListed = func(attempt int) {
		if attempt == 0 {
			if err := rotate(h); err != nil {
				t.Error(err)
			}
			rotations++
			appendN(t, l, 1) // a new audit.log
		}
	}
	defer func() { testHookListed = nil }()
	r, err := Verify(h)
	if err != nil || !r.Verified || r.LastSeq != 7 || rotations != 1 {
		t.Fatalf("verify with a rotation in between: %+v %v (%d rotations)", r, err, rotations)
	}
	rotations = 0
	got, err := l.Search(Filter{})
	if err != nil || len(got) != 8 || got[0].Seq != 8 || got[7].Seq != 1 || rotations != 1 {
		t.Fatalf("search with a rotation in between: %d entries %v (%d rotations)", len(got), err, rotations)
	}
	// Removing audit.log between listing and opening (the rename of a
	// rotation, without the next entry yet) is the same.
	testHookListed = func(attempt int) {
		if attempt == 0 {
			if err := rotate(h); err != nil {
				t.Error(err)
			}
		}
	}
	if r, err := Verify(h); err != nil || !r.Verified || r.LastSeq != 8 {
		t.Fatalf("verify with a bare rotation in between: %+v %v", r, err)
	}
	// Rotating at every attempt: the reader gives up after 4 attempts.
	attempts := 0
	testHookListed = func(attempt int) {
		attempts++
		if attempts > 8 {
			t.Fatalf("the reader is still trying after %d attempts", attempts)
		}
		appendN(t, l, 1)
		if err := rotate(h); err != nil {
			t.Error(err)
		}
	}
	if _, err := Verify(h); err == nil || !strings.Contains(err.Error(), "kept being rotated") || attempts != 4 {
		t.Fatalf("verify while always rotating: %v after %d attempts, want an error after 4", err, attempts)
	}
	attempts = 0
	if _, err := l.Search(Filter{}); err == nil || attempts != 4 {
		t.Fatalf("search while always rotating: %v after %d attempts", err, attempts)
	}
	// A rotated file removed once listed: listed again, the chain has a gap.
	testHookListed = func(attempt int) {
		if attempt == 0 {
			os.Remove(RotatedFile(h, 1))
		}
	}
	if r, err := Verify(h); err != nil || r.Verified || r.FirstBad != 1 {
		t.Fatalf("verify with the oldest file removed once listed: %+v %v, want entry 1 missing", r, err)
	}
	// One that cannot be opened (a symbolic link to itself: ELOOP) is an
	// error.
	testHookListed = func(attempt int) {
		os.Remove(RotatedFile(h, 2))
		os.Symlink(RotatedFile(h, 2), RotatedFile(h, 2))
	}
	if _, err := Verify(h); err == nil || !strings.Contains(err.Error(), "audit.000002.log") {
		t.Fatalf("verify with a listed file that cannot be opened: %v", err)
	}
	os.Remove(RotatedFile(h, 2))
	os.WriteFile(RotatedFile(h, 2), []byte("x\n"), 0o640)
	if _, err := l.Search(Filter{}); err == nil {
		t.Fatal("search with a listed file that cannot be opened: no error")
	}
}

// The files a Record, Verify and Search open are closed again, rotations
// included.
func TestNoFileLeaks(t *testing.T) {
	h := internalHome(t)
	l := &Log{h: h, MaxFileBytes: 300}
	appendN(t, l, 3)
	defer noFileLeaks(t)()
	for range 20 {
		appendN(t, l, 1) // rotates each time
		os.Remove(File(h))
		appendN(t, l, 1) // continues from the newest rotated file
		if _, err := Verify(h); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Search(Filter{}); err != nil {
			t.Fatal(err)
		}
	}
}

// noFileLeaks counts this process's open files, with the garbage collector
// (whose finalizers would close leaked files) off; the function it returns
// fails the test when more are open than before.
func noFileLeaks(t *testing.T) func() {
	t.Helper()
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("no /proc/self/fd")
		}
		return len(ents)
	}
	gc := debug.SetGCPercent(-1)
	before := fds()
	return func() {
		after := fds()
		debug.SetGCPercent(gc)
		if after > before+1 {
			t.Errorf("open files: %d before, %d after", before, after)
		}
	}
}
