package home

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// replaceSet is the change the tests make: two files in two directories
// changed, one made.
func replaceSet(dir string) (old map[string]string, files []NewFile) {
	old = map[string]string{
		filepath.Join(dir, "a", "key.pem"):     "old a",
		filepath.Join(dir, "b", "session.key"): "old b",
		filepath.Join(dir, "a", "keyring"):     "", // absent before
	}
	for _, p := range []string{filepath.Join(dir, "a", "key.pem"), filepath.Join(dir, "b", "session.key"), filepath.Join(dir, "a", "keyring")} {
		files = append(files, NewFile{Path: p, Data: []byte(strings.Replace(old[p], "old", "new", 1) + "new " + filepath.Base(p)), Perm: 0o600})
	}
	return old, files
}

func setUp(t *testing.T, dir string, old map[string]string) {
	t.Helper()
	for p, c := range old {
		os.MkdirAll(filepath.Dir(p), 0o700)
		if c != "" {
			if err := os.WriteFile(p, []byte(c), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// state says whether every file is old, every file new, or a mix, and
// lists what is left beside them.
func state(t *testing.T, dir string, old map[string]string, files []NewFile) (string, []string) {
	t.Helper()
	olds, news := 0, 0
	for _, f := range files {
		b, err := os.ReadFile(f.Path)
		switch {
		case err != nil && old[f.Path] == "":
			olds++
		case err == nil && string(b) == old[f.Path]:
			olds++
		case err == nil && string(b) == string(f.Data):
			news++
		}
	}
	var litter []string
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && (strings.Contains(p, ReplaceSuffix) || strings.Contains(p, ".tmp-") || strings.HasSuffix(p, "journal")) {
			litter = append(litter, p)
		}
		return nil
	})
	switch {
	case olds == len(files):
		return "old", litter
	case news == len(files):
		return "new", litter
	}
	return fmt.Sprintf("a mix (%d old, %d new)", olds, news), litter
}

// TestReplaceFiles: a change done, and RecoverReplace with nothing to do.
func TestReplaceFiles(t *testing.T) {
	dir := t.TempDir()
	old, files := replaceSet(dir)
	setUp(t, dir, old)
	journal := filepath.Join(dir, "journal")
	if err := ReplaceFiles(journal, files); err != nil {
		t.Fatal(err)
	}
	if s, litter := state(t, dir, old, files); s != "new" || len(litter) > 0 {
		t.Errorf("after the change: %s, left %v", s, litter)
	}
	st, _ := os.Stat(files[2].Path)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("a new file's mode: %v", st.Mode())
	}
	if msg, err := RecoverReplace(journal); msg != "" || err != nil {
		t.Errorf("recovery with no journal: %q %v", msg, err)
	}
}

// TestReplaceFilesRefuses: relative paths, a path twice, a journal left
// by an earlier change; nothing is written.
func TestReplaceFilesRefuses(t *testing.T) {
	dir := t.TempDir()
	journal := filepath.Join(dir, "journal")
	for _, c := range []struct {
		files []NewFile
		want  string
	}{
		{[]NewFile{{Path: "rel"}}, "not an absolute path"},
		{[]NewFile{{Path: filepath.Join(dir, "x")}, {Path: filepath.Join(dir, "x")}}, "given twice"},
	} {
		if err := ReplaceFiles(journal, c.files); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v, want %q", err, c.want)
		}
	}
	os.WriteFile(journal, []byte(`{"state":"prepared","paths":[]}`), 0o600)
	if err := ReplaceFiles(journal, []NewFile{{Path: filepath.Join(dir, "y"), Data: []byte("y")}}); err == nil || !strings.Contains(err.Error(), "run its recovery first") {
		t.Errorf("with a journal there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "y"+ReplaceSuffix)); err == nil {
		t.Error("a refused change wrote a file")
	}
	if err := ReplaceFiles(journal, nil); err != nil {
		t.Errorf("no files: %v", err)
	}
	os.WriteFile(journal, []byte(`{"state":"what"}`), 0o600)
	if _, err := RecoverReplace(journal); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("a damaged journal: %v", err)
	}
}

// TestReplaceFilesKilled: the process is killed with SIGKILL after each
// step of the change in turn (and, the last case, not at all); after
// RecoverReplace every file is old or every file is new, never a mix, and
// nothing is left beside them. From the journal's "prepared" on, the
// change is finished; before it, undone.
func TestReplaceFilesKilled(t *testing.T) {
	if os.Getenv("GH_REPLACE_CHILD") != "" {
		return // the child's part is TestMain's
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	steps := 2*3 + 3 // journal, 3 writes, journal, 3 renames, journal removed
	for at := 1; at <= steps+1; at++ {
		dir := t.TempDir()
		old, files := replaceSet(dir)
		setUp(t, dir, old)
		cmd := exec.Command(exe, "-test.run", "^$")
		cmd.Env = append(os.Environ(), "GH_REPLACE_CHILD="+dir, "GH_REPLACE_KILL_AT="+strconv.Itoa(at))
		out, err := cmd.CombinedOutput()
		killed := false
		if ee, ok := err.(*exec.ExitError); ok {
			ws, _ := ee.Sys().(syscall.WaitStatus)
			killed = ws.Signaled() && ws.Signal() == syscall.SIGKILL
		}
		if at <= steps && !killed {
			t.Fatalf("kill at step %d: the child was not killed (%v): %s", at, err, out)
		}
		if at > steps && err != nil {
			t.Fatalf("no kill: the child failed: %v %s", err, out)
		}
		msg, err := RecoverReplace(filepath.Join(dir, "journal"))
		if err != nil {
			t.Fatalf("kill at step %d: recovery: %v", at, err)
		}
		s, litter := state(t, dir, old, files)
		want := "old"
		if at >= 5 { // killed after the journal said "prepared"
			want = "new"
		}
		if s != want || len(litter) > 0 {
			t.Errorf("kill at step %d: %s after recovery (%q), want %s; left %v", at, s, msg, want, litter)
		}
	}
}

// TestMain runs the child of TestReplaceFilesKilled: the change, killed
// at the step it is told.
func TestMain(m *testing.M) {
	if dir := os.Getenv("GH_REPLACE_CHILD"); dir != "" {
		at, _ := strconv.Atoi(os.Getenv("GH_REPLACE_KILL_AT"))
		_, files := replaceSet(dir)
		n := 0
		err := replaceFiles(filepath.Join(dir, "journal"), files, func(string) {
			n++
			if n == at {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestRecoverRemovesTemps: a kill inside a write leaves WriteFileAtomic's
// temporary files (of a PATH.replace, or of the journal); recovery removes
// them with the change.
func TestRecoverRemovesTemps(t *testing.T) {
	for _, state := range []string{"preparing", "prepared"} {
		dir := t.TempDir()
		p := filepath.Join(dir, "key.pem")
		os.WriteFile(p, []byte("old"), 0o600)
		journal := filepath.Join(dir, "journal")
		os.WriteFile(journal, []byte(`{"state":"`+state+`","paths":["`+p+`"]}`), 0o600)
		litter := []string{filepath.Join(dir, ".key.pem"+ReplaceSuffix+".tmp-123"), filepath.Join(dir, ".journal.tmp-456")}
		for _, l := range litter {
			os.WriteFile(l, []byte("half"), 0o600)
		}
		msg, err := RecoverReplace(journal)
		if err != nil || !strings.Contains(msg, map[string]string{"preparing": "undone", "prepared": "finished"}[state]) {
			t.Errorf("%s: %q %v", state, msg, err)
		}
		for _, l := range litter {
			if _, err := os.Stat(l); err == nil {
				t.Errorf("%s: %s left", state, l)
			}
		}
		if b, _ := os.ReadFile(p); string(b) != "old" {
			t.Errorf("%s: the file (whose .replace never got written) is %q", state, b)
		}
	}
}

// TestReplaceFilesFaults: each way the file system can refuse a step
// gives an error naming it, and leaves the files all old (before the
// journal said "prepared") or all new (after), with nothing beside them
// where the step allowed cleaning up.
func TestReplaceFilesFaults(t *testing.T) {
	t.Run("journal not writable", func(t *testing.T) {
		dir := t.TempDir()
		old, files := replaceSet(dir)
		setUp(t, dir, old)
		var steps []string
		err := replaceFiles(filepath.Join(dir, "no", "such", "journal"), files, func(s string) { steps = append(steps, s) })
		if err == nil || !strings.Contains(err.Error(), "journal") || len(steps) > 0 {
			t.Errorf("got %v after steps %v, want an error before any", err, steps)
		}
		if s, litter := state(t, dir, old, files); s != "old" || len(litter) > 0 {
			t.Errorf("%s, left %v", s, litter)
		}
	})
	t.Run("a new file not writable", func(t *testing.T) {
		dir := t.TempDir()
		old, files := replaceSet(dir)
		setUp(t, dir, old)
		os.WriteFile(filepath.Join(dir, "afile"), nil, 0o600)
		files = append(files, NewFile{Path: filepath.Join(dir, "afile", "x"), Data: []byte("x"), Perm: 0o600}) // its directory is a file
		journal := filepath.Join(dir, "journal")
		err := ReplaceFiles(journal, files)
		if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "afile", "x")) {
			t.Errorf("got %v", err)
		}
		if s, litter := state(t, dir, old, files[:3]); s != "old" || len(litter) > 0 {
			t.Errorf("%s, left %v", s, litter)
		}
	})
	t.Run("the journal's directory gone before prepared", func(t *testing.T) {
		dir := t.TempDir()
		old, files := replaceSet(dir)
		setUp(t, dir, old)
		jdir := filepath.Join(dir, "j")
		os.Mkdir(jdir, 0o700)
		err := replaceFiles(filepath.Join(jdir, "journal"), files, func(step string) {
			if step == "wrote "+files[2].Path+ReplaceSuffix {
				os.RemoveAll(jdir)
			}
		})
		// Both failures are told: the journal's write, and the undo's sync
		// of the journal's directory.
		if err == nil || !strings.Contains(err.Error(), "writing "+filepath.Join(jdir, "journal")) || !strings.Contains(err.Error(), "opening "+jdir) {
			t.Errorf("got %v", err)
		}
		if s, litter := state(t, dir, old, files); s != "old" || len(litter) > 0 {
			t.Errorf("%s, left %v", s, litter)
		}
	})
	t.Run("the prepared journal not writable, undone", func(t *testing.T) {
		dir := t.TempDir()
		old, files := replaceSet(dir)
		setUp(t, dir, old)
		journal := filepath.Join(dir, "journal")
		err := replaceFiles(journal, files, func(step string) {
			if step == "wrote "+files[2].Path+ReplaceSuffix {
				os.Remove(journal)
				os.Mkdir(journal, 0o700) // the rename of the new journal over it fails; the undo removes it
			}
		})
		if err == nil || !strings.Contains(err.Error(), "renaming into "+journal) || strings.Contains(err.Error(), "undoing") {
			t.Errorf("got %v", err)
		}
		if s, litter := state(t, dir, old, files); s != "old" || len(litter) > 0 {
			t.Errorf("%s, left %v", s, litter)
		}
	})
	t.Run("a write refused and its undo refused", func(t *testing.T) {
		dir := t.TempDir()
		old, files := replaceSet(dir)
		setUp(t, dir, old)
		// Something in the way of the first new file: a directory where its
		// .replace goes, not empty. Its write fails, and so does its undo.
		os.MkdirAll(filepath.Join(files[0].Path+ReplaceSuffix, "x"), 0o700)
		err := ReplaceFiles(filepath.Join(dir, "journal"), files)
		if err == nil || !strings.Contains(err.Error(), "renaming into "+files[0].Path+ReplaceSuffix) || !strings.Contains(err.Error(), "undoing the change of "+files[0].Path) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("a write refused and the journal not removable", func(t *testing.T) {
		dir := t.TempDir()
		old, files := replaceSet(dir)
		setUp(t, dir, old)
		os.WriteFile(filepath.Join(dir, "afile"), nil, 0o600)
		files = append(files, NewFile{Path: filepath.Join(dir, "afile", "x"), Data: []byte("x"), Perm: 0o600})
		journal := filepath.Join(dir, "journal")
		err := replaceFiles(journal, files, func(step string) {
			if step == "journal preparing" {
				os.Remove(journal)
				os.MkdirAll(filepath.Join(journal, "x"), 0o700)
			}
		})
		if err == nil || !strings.Contains(err.Error(), "removing the journal "+journal) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("the journal removed under it", func(t *testing.T) {
		dir := t.TempDir()
		old, files := replaceSet(dir)
		setUp(t, dir, old)
		journal := filepath.Join(dir, "journal")
		var mode os.FileMode
		err := replaceFiles(journal, files, func(step string) {
			switch step {
			case "journal preparing":
				if st, err := os.Stat(journal); err == nil {
					mode = st.Mode().Perm()
				}
			case "renamed " + files[2].Path:
				os.Remove(journal)
			}
		})
		if err == nil || !strings.Contains(err.Error(), "removing the journal") {
			t.Errorf("got %v", err)
		}
		if mode != 0o600 {
			t.Errorf("the journal's mode: %v, want 0600", mode)
		}
		if s, _ := state(t, dir, old, files); s != "new" {
			t.Errorf("%s, want new (the change was prepared)", s)
		}
	})
	t.Run("the journal's directory gone at the end", func(t *testing.T) {
		dir := t.TempDir()
		old, files := replaceSet(dir)
		setUp(t, dir, old)
		jdir := filepath.Join(dir, "j")
		os.Mkdir(jdir, 0o700)
		err := replaceFiles(filepath.Join(jdir, "journal"), files, func(step string) {
			if step == "journal removed" {
				os.Remove(jdir)
			}
		})
		if err == nil || !strings.Contains(err.Error(), jdir) {
			t.Errorf("got %v", err)
		}
	})
}

// TestRecoverFaults: a recovery that cannot finish or undo says so, naming
// the file, and leaves the journal for the next try.
func TestRecoverFaults(t *testing.T) {
	dir := t.TempDir()
	journal := filepath.Join(dir, "journal")
	write := func(state string, paths ...string) {
		b, _ := json.Marshal(replaceJournal{State: state, Paths: paths})
		os.WriteFile(journal, b, 0o600)
	}
	os.Mkdir(filepath.Join(dir, "isdir"), 0o700)
	if _, err := RecoverReplace(filepath.Join(dir, "isdir")); err == nil || !strings.Contains(err.Error(), "reading the journal") {
		t.Errorf("a journal that is a directory: %v", err)
	}
	// Finishing: PATH is a directory with something in it.
	busy := filepath.Join(dir, "busy")
	os.MkdirAll(filepath.Join(busy, "x"), 0o700)
	os.WriteFile(busy+ReplaceSuffix, []byte("new"), 0o600)
	write("prepared", busy)
	if _, err := RecoverReplace(journal); err == nil || !strings.Contains(err.Error(), "replacing "+busy) {
		t.Errorf("finish over a directory: %v", err)
	}
	// Undoing: PATH.replace is a directory with something in it.
	os.Remove(busy + ReplaceSuffix)
	os.MkdirAll(filepath.Join(busy+ReplaceSuffix, "y"), 0o700)
	write("preparing", busy)
	if _, err := RecoverReplace(journal); err == nil || !strings.Contains(err.Error(), "undoing the change of "+busy) {
		t.Errorf("undo of a directory: %v", err)
	}
	if _, err := os.Stat(journal); err != nil {
		t.Errorf("the journal is gone after a failed recovery: %v", err)
	}
	// A file whose directory is gone: its directory cannot be synced.
	gone := filepath.Join(dir, "gone", "f")
	for _, state := range []string{"preparing", "prepared"} {
		write(state, gone)
		if _, err := RecoverReplace(journal); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "gone")) {
			t.Errorf("%s, a directory gone: %v", state, err)
		}
	}
}
