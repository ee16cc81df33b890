package secret

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// A test that leaves a change's lock held must not wait a minute.
func init() { recoverWait = 5 * time.Second }

func TestScopeOf(t *testing.T) {
	h := home.Home{Dir: "/opt/gw"}
	for _, c := range []struct {
		path  string
		scope Scope
		rel   string
		ok    bool
	}{
		{"/opt/gw/groups/certs/private/domainkey.pem", ScopeCA, "groups/certs/private/domainkey.pem", true},
		{"/opt/gw/groups/certs/x", ScopeCA, "groups/certs/x", true},
		{"/opt/gw/groups/group-2/conf/kps/apikeys.key", GroupScope("group-2"), "groups/group-2/conf/kps/apikeys.key", true},
		{"/opt/gw/groups/group-2/instance-1/conf/certs/private/instance-key.pem", GroupScope("group-2"), "groups/group-2/instance-1/conf/certs/private/instance-key.pem", true},
		{"/opt/gw/groups/topology.json", "", "groups/topology.json", false},
		{"/opt/gw/system/conf/certs/private/nodemanager-key.pem", ScopeNodeManagers, "system/conf/certs/private/nodemanager-key.pem", true},
		{"/opt/gw/conf/sessionKey", ScopeNodeManagers, "conf/sessionKey", true},
		{"/opt/gw/ext/x", "", "ext/x", false},
		{"/opt/gw/x", "", "x", false},
		{"/opt/other/conf/sessionKey", "", "", false},
		{"/opt/gw", "", "", false},
		{"/opt", "", "", false},             // the install directory's parent
		{"/opt/gw/conf", "", "conf", false}, // a directory of a scope, not a file in it
		{"/opt/gw/groups/group-2", "", "groups/group-2", false},
		{"/opt/gw/groups/group-2/x", GroupScope("group-2"), "groups/group-2/x", true},
	} {
		s, rel, ok := ScopeOf(h, c.path)
		if s != c.scope || ok != c.ok || (ok && rel != c.rel) {
			t.Errorf("ScopeOf(%s) = %q %q %v, want %q %q %v", c.path, s, rel, ok, c.scope, c.rel, c.ok)
		}
	}
	if got := GroupScope("group-7").GroupID(); got != "group-7" {
		t.Errorf("GroupID: %q", got)
	}
	if got := ScopeCA.GroupID(); got != "" {
		t.Errorf("GroupID of the CA scope: %q", got)
	}
	for s, want := range map[Scope]string{
		ScopeCA:               "/opt/gw/groups/certs/private/domain.keyring",
		ScopeNodeManagers:     "/opt/gw/system/conf/passphrase.keyring",
		GroupScope("group-2"): "/opt/gw/groups/group-2/conf/passphrase.keyring",
	} {
		if got := s.KeyringFile(h); got != want {
			t.Errorf("KeyringFile(%s) = %s, want %s", s, got, want)
		}
	}
}

// secretHome makes an install directory with a secret file of every kind.
func secretHome(t *testing.T) (home.Home, map[string][]byte) {
	t.Helper()
	h := home.Home{Dir: t.TempDir()}
	files := map[string][]byte{
		"groups/certs/private/domainkey.pem":                            []byte("CA KEY 0123456789\n"),
		"system/conf/certs/private/nodemanager-key.pem":                 []byte("NM KEY 0123456789\n"),
		"conf/sessionKey":                                               []byte("SESSION KEY 0123456789\n"),
		"groups/group-2/instance-1/conf/certs/private/instance-key.pem": []byte("INSTANCE KEY 1\n"),
		"groups/group-2/instance-2/conf/certs/private/instance-key.pem": []byte("INSTANCE KEY 2\n"),
		"groups/group-2/conf/kps/apikeys.key":                           []byte("HASH KEY of group-2"),
		"groups/group-2/conf/oauth/keys/abc.json":                       []byte(`{"kid":"abc"}`),
		"groups/group-3/conf/kps/apikeys.key":                           []byte("HASH KEY of group-3"),
	}
	for rel, b := range files {
		p := filepath.Join(h.Dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := WriteFile(h, p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return h, files
}

// TestFilesEdges: the errors and answers of the file functions at their
// edges.
func TestFilesEdges(t *testing.T) {
	h, _ := secretHome(t)
	g2 := GroupScope("group-2")
	var le *LockedError
	if e := (&LockedError{Scope: ScopeCA, Path: "k"}).Error(); !strings.Contains(e, "--ca_passphrase_file") {
		t.Errorf("the CA's locked message: %s", e)
	}
	if e := (&LockedError{Scope: g2, Path: "k"}).Error(); strings.Contains(e, "--ca_passphrase_file") || !strings.Contains(e, "--passphrase_file") {
		t.Errorf("a group's locked message: %s", e)
	}
	if err := Unlock(h, g2, FromString("first passphrase")); err == nil {
		t.Error("Unlock of a scope without a keyring")
	}
	if _, err := ReadFile(h, filepath.Join(h.Dir, "groups/group-2/conf/missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing file: %v", err)
	}
	if IsSealedFile(filepath.Join(h.Dir, "missing")) {
		t.Error("a missing file is sealed")
	}
	elsewhere := filepath.Join(t.TempDir(), "sealed")
	os.WriteFile(elsewhere, []byte(Seal(NewKey(), fileBinding("x"), []byte("x"))), 0o600)
	if _, err := ReadFile(h, elsewhere); err == nil || !strings.Contains(err.Error(), "outside every passphrase's scope") {
		t.Errorf("a sealed file outside the install directory: %v", err)
	}
	plain := filepath.Join(t.TempDir(), "plain")
	if err := WriteFile(h, plain, []byte("clear"), 0o600); err != nil || IsSealedFile(plain) {
		t.Errorf("a file outside every scope: %v", err)
	}
	// A held key whose keyring became unreadable: dropped, no panic.
	if err := ChangePassphrase(h, g2, Value{}, FromString("first passphrase"), testKDF); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(g2.KeyringFile(h), []byte("{"), 0o600)
	if Unlocked(h, g2) {
		t.Error("a key held over a damaged keyring")
	}
	os.Remove(g2.KeyringFile(h))
	if Unlocked(h, g2) {
		t.Error("a key held over a removed keyring")
	}
	// Unlock over a damaged journal.
	os.WriteFile(g2.JournalFile(h), []byte("{"), 0o600)
	if err := Unlock(h, g2, FromString("first passphrase")); err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Errorf("Unlock over a damaged journal: %v", err)
	}
	// An unlocker removed is not asked any more.
	h2, _ := secretHome(t)
	if err := ChangePassphrase(h2, g2, Value{}, FromString("first passphrase"), testKDF); err != nil {
		t.Fatal(err)
	}
	Forget(h2, g2)
	asked := 0
	SetUnlocker(h2, func(Scope) error { asked++; return errors.New("no") })
	SetUnlocker(h2, nil)
	if err := WriteFile(h2, filepath.Join(h2.Dir, "groups/group-2/conf/kps/apikeys.key"), []byte("x"), 0o600); !errors.As(err, &le) || asked != 0 {
		t.Errorf("after SetUnlocker(nil): %v, asked %d", err, asked)
	}
}

func TestScopeFiles(t *testing.T) {
	h, _ := secretHome(t)
	got, err := GroupScope("group-2").Files(h)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"groups/group-2/conf/kps/apikeys.key",
		"groups/group-2/conf/oauth/keys/abc.json",
		"groups/group-2/instance-1/conf/certs/private/instance-key.pem",
		"groups/group-2/instance-2/conf/certs/private/instance-key.pem",
	}
	if len(got) != len(want) {
		t.Fatalf("files of group-2: %v", got)
	}
	for i := range want {
		if got[i] != filepath.Join(h.Dir, want[i]) {
			t.Errorf("file %d: %s, want %s", i, got[i], want[i])
		}
	}
	nm, _ := ScopeNodeManagers.Files(h)
	ca, _ := ScopeCA.Files(h)
	if len(nm) != 2 || len(ca) != 1 {
		t.Errorf("node managers %v, CA %v", nm, ca)
	}
}

func TestFilesInClearWithoutPassphrase(t *testing.T) {
	h, files := secretHome(t)
	for rel, want := range files {
		p := filepath.Join(h.Dir, rel)
		raw, _ := os.ReadFile(p)
		got, err := ReadFile(h, p)
		if err != nil || !bytes.Equal(got, want) || !bytes.Equal(raw, want) {
			t.Errorf("%s: %q %q %v", rel, raw, got, err)
		}
		if IsSealedFile(p) {
			t.Errorf("%s: sealed without a passphrase", rel)
		}
	}
}

func TestChangePassphrase(t *testing.T) {
	h, files := secretHome(t)
	g2 := GroupScope("group-2")
	first, second := FromString("first passphrase"), FromString("second passphrase")
	if err := ChangePassphrase(h, g2, Value{}, FromString("short"), testKDF); err == nil {
		t.Fatal("a 5-character passphrase was accepted")
	}
	if g2.Protected(h) {
		t.Fatal("a refused passphrase left a keyring")
	}
	if err := ChangePassphrase(h, g2, Value{}, first, testKDF); err != nil {
		t.Fatal(err)
	}
	if !g2.Protected(h) || !Unlocked(h, g2) {
		t.Fatal("no keyring, or the key not kept")
	}
	for rel, want := range files {
		p := filepath.Join(h.Dir, rel)
		raw, _ := os.ReadFile(p)
		inG2 := strings.HasPrefix(rel, "groups/group-2/")
		if inG2 == bytes.Contains(raw, want) || inG2 != IsSealedFile(p) {
			t.Errorf("%s: sealed %v, want %v: %q", rel, IsSealedFile(p), inG2, raw)
		}
		if got, err := ReadFile(h, p); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: read %q %v", rel, got, err)
		}
		if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v", rel, fi.Mode())
		}
	}
	// Another process: nothing opens without the passphrase.
	Forget(h, g2)
	key := filepath.Join(h.Dir, "groups/group-2/conf/kps/apikeys.key")
	var le *LockedError
	if _, err := ReadFile(h, key); !errors.As(err, &le) || le.Scope != g2 || !strings.Contains(err.Error(), "group group-2") {
		t.Errorf("read without the key: %v", err)
	}
	if err := WriteFile(h, key, []byte("x"), 0o600); !errors.As(err, &le) {
		t.Errorf("write without the key: %v", err)
	}
	if err := Unlock(h, g2, second); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("a wrong passphrase: %v", err)
	}
	if err := Unlock(h, g2, first); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadFile(h, key); err != nil || !bytes.Equal(got, files["groups/group-2/conf/kps/apikeys.key"]) {
		t.Errorf("after Unlock: %q %v", got, err)
	}
	// A sealed file copied over another does not open.
	other := filepath.Join(h.Dir, "groups/group-2/instance-2/conf/certs/private/instance-key.pem")
	saved, _ := os.ReadFile(other)
	b, _ := os.ReadFile(filepath.Join(h.Dir, "groups/group-2/instance-1/conf/certs/private/instance-key.pem"))
	os.WriteFile(other, b, 0o600)
	if _, err := ReadFile(h, other); !errors.Is(err, ErrNotOpened) {
		t.Errorf("a sealed file copied over another: %v", err)
	}
	// A file in clear in a protected scope is refused.
	os.WriteFile(other, []byte("INSTANCE KEY 2\n"), 0o600)
	if _, err := ReadFile(h, other); !errors.Is(err, ErrClearInProtected) {
		t.Errorf("a file in clear: %v", err)
	}
	if err := ChangePassphrase(h, g2, first, second, testKDF); !errors.Is(err, ErrClearInProtected) {
		t.Errorf("a change over a file in clear: %v", err)
	}
	os.WriteFile(other, saved, 0o600)
	// A wrong old passphrase changes nothing.
	before := snapshot(t, h.Dir)
	if err := ChangePassphrase(h, g2, FromString("not the passphrase"), second, testKDF); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("change with a wrong passphrase: %v", err)
	}
	if after := snapshot(t, h.Dir); !equalSnapshots(before, after) {
		t.Error("a refused change altered files")
	}
	// The change: a new data key, the old passphrase opens nothing.
	if err := ChangePassphrase(h, g2, first, second, testKDF); err != nil {
		t.Fatal(err)
	}
	after := snapshot(t, h.Dir)
	for rel := range files {
		if strings.HasPrefix(rel, "groups/group-2/") && bytes.Equal(before[rel], after[rel]) {
			t.Errorf("%s: not sealed anew", rel)
		}
	}
	Forget(h, g2)
	if err := Unlock(h, g2, first); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("the old passphrase after a change: %v", err)
	}
	if err := Unlock(h, g2, second); err != nil {
		t.Fatal(err)
	}
	for rel, want := range files {
		if got, err := ReadFile(h, filepath.Join(h.Dir, rel)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s after the change: %q %v", rel, got, err)
		}
	}
	// A keyring of another scope put in its place does not open it.
	if err := ChangePassphrase(h, GroupScope("group-3"), Value{}, second, testKDF); err != nil {
		t.Fatal(err)
	}
	kr, _ := os.ReadFile(GroupScope("group-3").KeyringFile(h))
	os.WriteFile(g2.KeyringFile(h), kr, 0o600)
	if err := Unlock(h, g2, second); !errors.Is(err, ErrCorrupt) {
		t.Errorf("another scope's keyring: %v", err)
	}
}

// TestKeyringReplacedElsewhere: a key this process holds is dropped once
// another process replaced the scope's keyring (a passphrase change):
// nothing is sealed under a data key that no passphrase opens any more;
// the unlocker (the node manager's passphraseExec) is asked instead.
func TestKeyringReplacedElsewhere(t *testing.T) {
	h, files := secretHome(t)
	g2 := GroupScope("group-2")
	if err := ChangePassphrase(h, g2, Value{}, FromString("first passphrase"), testKDF); err != nil {
		t.Fatal(err)
	}
	if !Unlocked(h, g2) {
		t.Fatal("not held after the change")
	}
	if p, ok := Passphrase(h, g2); !ok || p.RevealString() != "first passphrase" {
		t.Errorf("Passphrase: %v", ok)
	}
	// Another process writes a new keyring (what its change does last).
	r, _, err := NewKeyring(string(g2), FromString("second passphrase"), testKDF)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Save(g2.KeyringFile(h)); err != nil {
		t.Fatal(err)
	}
	if Unlocked(h, g2) {
		t.Error("the old key is still held after the keyring changed")
	}
	if _, ok := Passphrase(h, g2); ok {
		t.Error("the old passphrase is still given after the keyring changed")
	}
	key := filepath.Join(h.Dir, "groups/group-2/conf/kps/apikeys.key")
	var le *LockedError
	if err := WriteFile(h, key, []byte("new"), 0o600); !errors.As(err, &le) {
		t.Errorf("a write with a stale key: %v", err)
	}
	// With an unlocker: it is asked, and what it unlocks is used.
	asked := 0
	SetUnlocker(h, func(s Scope) error {
		asked++
		return Unlock(h, s, FromString("second passphrase"))
	})
	t.Cleanup(func() { SetUnlocker(h, nil) })
	if err := WriteFile(h, key, []byte("new"), 0o600); err != nil || asked != 1 {
		t.Fatalf("a write with the unlocker: %v (asked %d)", err, asked)
	}
	Forget(h, g2)
	if err := Unlock(h, g2, FromString("second passphrase")); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFile(h, key); err != nil || string(b) != "new" {
		t.Errorf("the file written after the change opens with the new passphrase: %q %v", b, err)
	}
	// A scope without a passphrase never asks the unlocker.
	asked = 0
	if b, err := ReadFile(h, filepath.Join(h.Dir, "groups/group-3/conf/kps/apikeys.key")); err != nil || string(b) != string(files["groups/group-3/conf/kps/apikeys.key"]) || asked != 0 {
		t.Errorf("a scope without a passphrase: %q %v (asked %d)", b, err, asked)
	}
}

func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			if !strings.HasPrefix(rel, "var/") {
				m[filepath.ToSlash(rel)], _ = os.ReadFile(p)
			}
		}
		return nil
	})
	return m
}

func equalSnapshots(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

const changeChildEnv = "GATEHOUSE_TEST_CHANGE_CHILD"

// TestChangeChild is the process TestChangeKilled kills: it changes the
// passphrase of group-2 in the directory it is given, from "old" to "new".
func TestChangeChild(t *testing.T) {
	dir := os.Getenv(changeChildEnv)
	if dir == "" {
		t.Skip("run by TestChangeKilled")
	}
	h := home.Home{Dir: dir}
	old := FromString("old passphrase")
	if os.Getenv(changeChildEnv+"_FROM_CLEAR") != "" {
		old = Value{}
	}
	fmt.Println("ready")
	start := time.Now()
	if err := ChangePassphrase(h, GroupScope("group-2"), old, FromString("new passphrase"), testKDF); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	fmt.Println("took", time.Since(start).Nanoseconds())
}

// TestChangeKilled kills a real change of a group's passphrase with
// SIGKILL at random points, many times: afterwards exactly one of the old
// and the new passphrase opens the scope, and every file opens with it.
func TestChangeKilled(t *testing.T) {
	t.Run("from a passphrase", func(t *testing.T) { testChangeKilled(t, false) })
	t.Run("from clear", func(t *testing.T) { testChangeKilled(t, true) })
}

// testChangeKilled: fromClear sets the first passphrase (the files were
// in clear): afterwards, either they still are, and no keyring is there,
// or all are sealed and the new passphrase opens them.
func testChangeKilled(t *testing.T, fromClear bool) {
	runs := 30
	if testing.Short() {
		runs = 8
	}
	childEnv := []string{}
	if fromClear {
		childEnv = append(childEnv, changeChildEnv+"_FROM_CLEAR=1")
	}
	h0, files := secretHome(t)
	// Many files, so that a kill lands among them as often as not.
	for i := range 40 {
		rel := fmt.Sprintf("groups/group-2/instance-%d/conf/certs/private/instance-key.pem", i+10)
		files[rel] = []byte(fmt.Sprintf("INSTANCE KEY %d", i+10))
		p := filepath.Join(h0.Dir, rel)
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := WriteFile(h0, p, files[rel], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	g2 := GroupScope("group-2")
	if !fromClear {
		if err := ChangePassphrase(h0, g2, Value{}, FromString("old passphrase"), testKDF); err != nil {
			t.Fatal(err)
		}
		Forget(h0, g2)
	}
	template := snapshot(t, h0.Dir)
	// How long a whole change takes, to spread the kills over it.
	full := measureChange(t, template, childEnv)
	var oldWins, newWins int
	for run := range runs {
		h := home.Home{Dir: t.TempDir()}
		restore(t, h.Dir, template)
		cmd := exec.Command(os.Args[0], "-test.run", "^TestChangeChild$")
		cmd.Env = append(append(os.Environ(), childEnv...), changeChildEnv+"="+h.Dir)
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The kill lands within the change itself, not the process's start.
		line, _ := bufio.NewReader(out).ReadString('\n')
		if line != "ready\n" {
			t.Fatalf("run %d: the child said %q", run, line)
		}
		time.Sleep(time.Duration(rand.Int64N(int64(full) + 1)))
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		var errOld, errNew error
		if fromClear {
			// Protected finishes or undoes the change; "old" is no keyring.
			errOld = errors.New("a keyring")
			if !g2.Protected(h) {
				errOld = nil
			} else {
				errNew = Unlock(h, g2, FromString("new passphrase"))
			}
			if errOld == nil {
				errNew = errors.New("no keyring")
			}
		} else {
			errOld, errNew = Unlock(h, g2, FromString("old passphrase")), Unlock(h, g2, FromString("new passphrase"))
		}
		switch {
		case errOld == nil && errNew == nil:
			t.Fatalf("run %d: both passphrases open the scope", run)
		case errOld == nil:
			oldWins++
		case errNew == nil:
			newWins++
		default:
			t.Fatalf("run %d: neither passphrase opens the scope: %v / %v", run, errOld, errNew)
		}
		for rel, want := range files {
			got, err := ReadFile(h, filepath.Join(h.Dir, rel))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("run %d (old opens: %v): %s: %q %v", run, errOld == nil, rel, got, err)
			}
		}
		filepath.Walk(h.Dir, func(p string, fi os.FileInfo, err error) error {
			if err == nil && (strings.HasSuffix(p, home.ReplaceSuffix) || strings.HasSuffix(p, ".journal")) {
				t.Errorf("run %d: %s left behind", run, p)
			}
			return nil
		})
		Forget(h, g2)
	}
	t.Logf("%d runs: the old passphrase opened %d, the new one %d (a change takes about %v)", runs, oldWins, newWins, full)
}

func measureChange(t *testing.T, template map[string][]byte, childEnv []string) time.Duration {
	t.Helper()
	var best time.Duration
	for range 3 {
		dir := t.TempDir()
		restore(t, dir, template)
		cmd := exec.Command(os.Args[0], "-test.run", "^TestChangeChild$")
		cmd.Env = append(append(os.Environ(), childEnv...), changeChildEnv+"="+dir)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("the change: %v\n%s", err, out)
		}
		var ns int64
		if _, err := fmt.Sscanf(strings.TrimPrefix(string(out), "ready\n"), "took %d", &ns); err != nil {
			t.Fatalf("the child said %q", out)
		}
		if d := time.Duration(ns); best == 0 || d < best {
			best = d
		}
	}
	return best
}

func restore(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for rel, b := range files {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestChangeFaults: each way a change can fail is reported and changes
// nothing.
func TestChangeFaults(t *testing.T) {
	p1, p2 := FromString("first passphrase"), FromString("second passphrase")
	g2 := GroupScope("group-2")
	// The run directory cannot be made.
	h, _ := secretHome(t)
	os.MkdirAll(filepath.Dir(h.RunDir()), 0o755)
	os.WriteFile(h.RunDir(), []byte("a file"), 0o644)
	if err := ChangePassphrase(h, g2, Value{}, p1, testKDF); err == nil {
		t.Error("a change without a run directory")
	}
	// The lock is held by another change; its file cannot be opened.
	h, _ = secretHome(t)
	os.MkdirAll(h.RunDir(), 0o755)
	l, err := home.TryLock(g2.lockFile(h))
	if err != nil {
		t.Fatal(err)
	}
	if err := ChangePassphrase(h, g2, Value{}, p1, testKDF); err == nil || !strings.Contains(err.Error(), "another change") {
		t.Errorf("a change while another runs: %v", err)
	}
	l.Unlock()
	os.Remove(g2.lockFile(h))
	os.MkdirAll(g2.lockFile(h), 0o755)
	if err := ChangePassphrase(h, g2, Value{}, p1, testKDF); err == nil || strings.Contains(err.Error(), "another change") {
		t.Errorf("a lock file that cannot be opened: %v", err)
	}
	os.Remove(g2.lockFile(h))
	// A damaged journal of an earlier change.
	os.WriteFile(g2.JournalFile(h), []byte("{not json"), 0o600)
	if err := ChangePassphrase(h, g2, Value{}, p1, testKDF); err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Errorf("a damaged journal: %v", err)
	}
	if err := g2.Recover(h); err == nil {
		t.Error("Recover over a damaged journal")
	}
	if _, err := ReadFile(h, filepath.Join(h.Dir, "groups/group-2/conf/kps/apikeys.key")); err == nil {
		t.Error("a read over a damaged journal")
	}
	os.Remove(g2.JournalFile(h))
	// A damaged keyring, and another scope's.
	if err := ChangePassphrase(h, g2, Value{}, p1, testKDF); err != nil {
		t.Fatal(err)
	}
	kr, _ := os.ReadFile(g2.KeyringFile(h))
	if fi, _ := os.Stat(g2.KeyringFile(h)); fi.Mode().Perm() != 0o600 {
		t.Errorf("keyring mode %v", fi.Mode())
	}
	os.WriteFile(g2.KeyringFile(h), []byte("{"), 0o600)
	if err := ChangePassphrase(h, g2, p1, p2, testKDF); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a damaged keyring: %v", err)
	}
	if err := ChangePassphrase(h, GroupScope("group-3"), Value{}, p1, testKDF); err != nil {
		t.Fatal(err)
	}
	other, _ := os.ReadFile(GroupScope("group-3").KeyringFile(h))
	os.WriteFile(g2.KeyringFile(h), other, 0o600)
	if err := ChangePassphrase(h, g2, p1, p2, testKDF); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "belongs to") {
		t.Errorf("another scope's keyring: %v", err)
	}
	os.WriteFile(g2.KeyringFile(h), kr, 0o600)
	// Parameters out of bounds: nothing written.
	before := snapshot(t, h.Dir)
	if err := ChangePassphrase(h, g2, p1, p2, KDF{Algorithm: "argon2id"}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a derivation out of bounds: %v", err)
	}
	// A directory where a secret file is expected, a sealed file under a
	// key that is not the scope's.
	sub := filepath.Join(h.Dir, "groups/group-2/conf/secrets/a-directory")
	os.MkdirAll(sub, 0o700)
	if err := ChangePassphrase(h, g2, p1, p2, testKDF); err == nil {
		t.Error("a directory among the secret files")
	}
	os.Remove(sub)
	stray := filepath.Join(h.Dir, "groups/group-2/conf/secrets/stray")
	os.WriteFile(stray, []byte(Seal(NewKey(), fileBinding("groups/group-2/conf/secrets/stray"), []byte("x"))), 0o600)
	if err := ChangePassphrase(h, g2, p1, p2, testKDF); !errors.Is(err, ErrNotOpened) {
		t.Errorf("a file sealed under another key: %v", err)
	}
	os.Remove(stray)
	if after := snapshot(t, h.Dir); !equalSnapshots(before, after) {
		t.Error("a refused change altered files")
	}
	// A sealed file in a scope without a keyring.
	g4 := GroupScope("group-4")
	f4 := filepath.Join(h.Dir, "groups/group-4/conf/kps/apikeys.key")
	os.MkdirAll(filepath.Dir(f4), 0o700)
	os.WriteFile(f4, []byte(Seal(NewKey(), fileBinding("groups/group-4/conf/kps/apikeys.key"), []byte("x"))), 0o600)
	if err := ChangePassphrase(h, g4, Value{}, p1, testKDF); err == nil || !strings.Contains(err.Error(), "no keyring") {
		t.Errorf("a sealed file without a keyring: %v", err)
	}
	// A group id that is not a pattern.
	if err := ChangePassphrase(h, GroupScope("group-["), Value{}, p1, testKDF); err == nil {
		t.Error("a scope whose files cannot be listed")
	}
	// The keyring's directory cannot be made; the journal cannot be written.
	h5 := home.Home{Dir: t.TempDir()}
	os.MkdirAll(filepath.Join(h5.Dir, "groups/group-5"), 0o755)
	os.WriteFile(h5.GroupConfDir("group-5"), []byte("a file"), 0o644)
	if err := ChangePassphrase(h5, GroupScope("group-5"), Value{}, p1, testKDF); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a keyring whose directory cannot be made: %v", err)
	}
	h6 := home.Home{Dir: t.TempDir()}
	k6 := filepath.Join(h6.GroupConfDir("group-6"), "kps", "apikeys.key")
	os.MkdirAll(k6+home.ReplaceSuffix, 0o755) // a directory where the key's new content goes
	os.WriteFile(k6, []byte("a hashing key"), 0o600)
	if err := ChangePassphrase(h6, GroupScope("group-6"), Value{}, p1, testKDF); err == nil || !strings.Contains(err.Error(), "changing the passphrase") {
		t.Errorf("a journal that cannot be written: %v", err)
	}
	h7 := home.Home{Dir: t.TempDir()}
	if err := ChangePassphrase(h7, GroupScope("group-7"), Value{}, p1, testKDF); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(h7.GroupConfDir("group-7")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the keyring's directory made: %v %v", fi.Mode(), err)
	}
}

// TestRecoverWaits: a reader finds a change's journal while the change
// holds its lock: it waits (recoverWait) and says so, never undoing it.
func TestRecoverWaits(t *testing.T) {
	h, _ := secretHome(t)
	g2 := GroupScope("group-2")
	os.MkdirAll(h.RunDir(), 0o755)
	l, err := home.TryLock(g2.lockFile(h))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	os.WriteFile(g2.JournalFile(h), []byte(`{"state":"preparing","paths":[]}`), 0o600)
	old := recoverWait
	recoverWait = 200 * time.Millisecond
	defer func() { recoverWait = old }()
	if err := g2.Recover(h); err == nil || !strings.Contains(err.Error(), "waiting for a passphrase change") {
		t.Errorf("recover while the change holds its lock: %v", err)
	}
	if _, err := os.Stat(g2.JournalFile(h)); err != nil {
		t.Error("the running change's journal was touched")
	}
	l.Unlock()
	if err := g2.Recover(h); err != nil {
		t.Errorf("recover once the lock is free: %v", err)
	}
	if _, err := os.Stat(g2.JournalFile(h)); !errors.Is(err, os.ErrNotExist) {
		t.Error("the journal is still there")
	}
	// The run directory cannot be made.
	h2, _ := secretHome(t)
	os.WriteFile(g2.JournalFile(h2), []byte(`{"state":"preparing","paths":[]}`), 0o600)
	os.MkdirAll(filepath.Dir(h2.RunDir()), 0o755)
	os.WriteFile(h2.RunDir(), []byte("a file"), 0o644)
	if err := g2.Recover(h2); err == nil {
		t.Error("recover without a run directory")
	}
}
