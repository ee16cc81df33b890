package secret

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// Secret files of an install directory. Each lies in a scope — a group,
// the domain's node managers, the domain CA — found from its path alone
// (ScopeOf). A scope whose keyring file exists has a passphrase: its
// secret files are sealed under the keyring's data key, bound to their
// path relative to the install directory, and a process reads or writes
// them only once it has unlocked that scope (Unlock). A scope with no
// keyring keeps them in clear, as before any passphrase is set.

// Scope names a passphrase's scope: ScopeCA, ScopeNodeManagers or
// GroupScope(id). It is also the keyring's Scope field.
type Scope string

const (
	ScopeCA           Scope = "domain CA"
	ScopeNodeManagers Scope = "node managers"
	groupScopePrefix        = "group "
)

// GroupScope is the scope of a group's secrets.
func GroupScope(groupID string) Scope { return Scope(groupScopePrefix + groupID) }

// GroupID returns the group of a group scope ("" otherwise).
func (s Scope) GroupID() string {
	id, ok := strings.CutPrefix(string(s), groupScopePrefix)
	if !ok {
		return ""
	}
	return id
}

// KeyringFile is where the scope's keyring lives in install directory h:
//
//	domain CA      groups/certs/private/domain.keyring
//	node managers  system/conf/passphrase.keyring
//	group ID       groups/ID/conf/passphrase.keyring
func (s Scope) KeyringFile(h home.Home) string {
	switch s {
	case ScopeCA:
		return filepath.Join(h.CertsPrivateDir(), "domain.keyring")
	case ScopeNodeManagers:
		return filepath.Join(h.SystemConfDir(), "passphrase.keyring")
	}
	return filepath.Join(h.GroupConfDir(s.GroupID()), "passphrase.keyring")
}

// JournalFile is the journal of a change of the scope's passphrase
// (home.ReplaceFiles): beside the keyring.
func (s Scope) JournalFile(h home.Home) string { return s.KeyringFile(h) + ".journal" }

// Protected reports whether the scope has a passphrase in h (its keyring
// file exists), once a change that a killed process left half done is
// finished or undone (s.Recover).
func (s Scope) Protected(h home.Home) bool {
	s.Recover(h)
	_, err := os.Lstat(s.KeyringFile(h))
	return err == nil
}

func (s Scope) lockFile(h home.Home) string {
	return filepath.Join(h.RunDir(), "passphrase-"+strings.ReplaceAll(string(s), " ", "-")+".lock")
}

// recoverWait bounds how long Recover waits for a change that runs.
var recoverWait = time.Minute

// Recover finishes or undoes a change of the scope's passphrase that a
// killed process left half done (its journal is there; home.RecoverReplace),
// under the lock the change holds: a change still running is waited for
// (up to a minute), never undone under its feet.
func (s Scope) Recover(h home.Home) error {
	if _, err := os.Lstat(s.JournalFile(h)); err != nil {
		return nil // mutate:equivalent delete-stmt without a journal RecoverReplace has nothing to do either
	}
	ctx, cancel := context.WithTimeout(context.Background(), recoverWait)
	defer cancel()
	if err := os.MkdirAll(h.RunDir(), 0o755); err != nil { // mutate:equivalent const the directory's mode is not a secret's
		return err
	}
	lock, err := home.LockWait(ctx, s.lockFile(h))
	if err != nil {
		return fmt.Errorf("waiting for a passphrase change of the %s: %w", s, err)
	}
	defer lock.Unlock()
	if _, err := home.RecoverReplace(s.JournalFile(h)); err != nil {
		return fmt.Errorf("completing an interrupted passphrase change of the %s: %w", s, err)
	}
	return nil
}

// ScopeOf is the scope of the file at path in h: groups/certs/… is the
// CA's, groups/ID/… group ID's, system/… and conf/… the node managers'.
// Anything else has no scope (ok false).
func ScopeOf(h home.Home, path string) (s Scope, rel string, ok bool) {
	rel, err := filepath.Rel(h.Dir, path)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
		return "", "", false
	}
	rel = filepath.ToSlash(rel)
	parts := strings.Split(rel, "/")
	if len(parts) < 2 {
		return "", rel, false
	}
	switch {
	case parts[0] == "groups" && parts[1] == "certs":
		return ScopeCA, rel, true
	case parts[0] == "groups" && len(parts) > 2:
		return GroupScope(parts[1]), rel, true
	case parts[0] == "system" || parts[0] == "conf":
		return ScopeNodeManagers, rel, true
	}
	return "", rel, false
}

// The data keys this process has unlocked, with the passphrases that
// unlocked them and the keyring they came from, by install directory and
// scope. A key whose keyring was replaced since (another process changed
// the passphrase) is dropped when next asked for: what this process seals
// afterwards is never sealed under a key that no passphrase opens.
var unlocked = struct {
	sync.Mutex
	m         map[string]*held
	unlockers map[string]func(Scope) error
}{m: map[string]*held{}, unlockers: map[string]func(Scope) error{}}

type held struct {
	key  *Key
	pass Value  // zero when only the key was given (Remember)
	ring string // the keyring's sealed data key when it was unlocked
}

func heldKey(h home.Home, s Scope) string { return h.Dir + "\x00" + string(s) }

// ringOf is the sealed data key of s's keyring in h now ("" without one).
func ringOf(h home.Home, s Scope) string {
	b, err := os.ReadFile(s.KeyringFile(h))
	if err != nil {
		return ""
	}
	r, err := ParseKeyring(b)
	if err != nil {
		return ""
	}
	return r.DataKey
}

func remember(h home.Home, s Scope, key *Key, pass Value, ring string) {
	unlocked.Lock()
	defer unlocked.Unlock()
	if old := unlocked.m[heldKey(h, s)]; old != nil {
		old.pass.Wipe() // mutate:equivalent delete-stmt memory hygiene: the old copy is not used after this
	}
	e := &held{key: key, ring: ring}
	if !pass.IsZero() {
		e.pass = New(append([]byte(nil), pass.b...))
	}
	unlocked.m[heldKey(h, s)] = e
}

// current returns what this process holds for s in h, dropping it when its
// keyring changed since; when it holds nothing, the unlocker set for h
// (SetUnlocker) is asked once, if ask.
func current(h home.Home, s Scope, ask bool) *held {
	unlocked.Lock()
	e := unlocked.m[heldKey(h, s)]
	u := unlocked.unlockers[h.Dir]
	unlocked.Unlock()
	if e != nil && e.ring == ringOf(h, s) {
		return e
	}
	if e != nil { // mutate:equivalent * a stale entry is never returned (its keyring differs): forgetting it only wipes it
		Forget(h, s) // mutate:equivalent delete-stmt a stale entry is never returned (its keyring differs): forgetting it only wipes it
	}
	if !ask || u == nil || !s.Protected(h) || u(s) != nil {
		return nil // mutate:equivalent delete-stmt what follows finds nothing held either (a stale entry was forgotten above)
	}
	unlocked.Lock()
	defer unlocked.Unlock()
	return unlocked.m[heldKey(h, s)]
}

// SetUnlocker makes unlock what this process calls, for install directory
// h, when a scope's key is needed and it holds none (or its keyring
// changed): the node manager's, which runs passphraseExec. nil removes it.
func SetUnlocker(h home.Home, unlock func(Scope) error) {
	unlocked.Lock()
	defer unlocked.Unlock()
	if unlock == nil {
		delete(unlocked.unlockers, h.Dir)
		return
	}
	unlocked.unlockers[h.Dir] = unlock
}

// Passphrase returns (a copy of) the passphrase that unlocked s in h in
// this process: the key of the group's encrypted KPS fields is derived
// from it (kps/fieldcrypt), and the node manager hands it to instances.
func Passphrase(h home.Home, s Scope) (Value, bool) {
	e := current(h, s, true)
	unlocked.Lock()
	defer unlocked.Unlock()
	if e == nil || e.pass.IsZero() {
		return Value{}, false
	}
	return New(append([]byte(nil), e.pass.b...)), true
}

func unlockedKey(h home.Home, s Scope) *Key {
	if e := current(h, s, true); e != nil {
		return e.key
	}
	return nil
}

// Remember makes key the data key of scope s in h for this process's
// secret files, as long as s's keyring stays the one there now.
func Remember(h home.Home, s Scope, key *Key) { remember(h, s, key, Value{}, ringOf(h, s)) }

// Forget drops what this process holds for s in h.
func Forget(h home.Home, s Scope) {
	unlocked.Lock()
	defer unlocked.Unlock()
	if e, ok := unlocked.m[heldKey(h, s)]; ok {
		e.pass.Wipe()
		delete(unlocked.m, heldKey(h, s))
	}
}

// Unlocked reports whether this process holds the data key of s in h (and
// its keyring has not changed since).
func Unlocked(h home.Home, s Scope) bool { return current(h, s, false) != nil }

// LockedError: a secret file of a scope with a passphrase, and this process
// was not given it.
type LockedError struct {
	Scope Scope
	Path  string
}

func (e *LockedError) Error() string {
	how := "-P, --passphrase_file, --passphrase_fd or passphraseExec"
	if e.Scope == ScopeCA {
		how = "nodemanager --ca_passphrase_file or -P, managedomain --ca_passphrase_file, or passphraseExec"
	}
	return fmt.Sprintf("%s is protected by the passphrase of the %s, which this process was not given (%s: docs/passphrase.md)", e.Path, e.Scope, how)
}

// ErrClearInProtected: a secret file is in clear although its scope has a
// passphrase (copied in by hand, or left by a tool that did not seal it).
// It is refused rather than used, so that the mistake is seen.
var ErrClearInProtected = errors.New("is in clear although its scope has a passphrase")

// Unlock opens the keyring of s in h with passphrase and remembers the
// data key for this process: ErrWrongPassphrase when it does not open. A
// change of the passphrase that a killed process left half done is first
// finished or undone (home.RecoverReplace).
func Unlock(h home.Home, s Scope, passphrase Value) error {
	if err := s.Recover(h); err != nil {
		return err
	}
	r, err := LoadKeyring(s.KeyringFile(h))
	if err != nil {
		return err
	}
	if r.Scope != string(s) {
		return fmt.Errorf("keyring %s: %w: it belongs to the %s, not the %s", s.KeyringFile(h), ErrCorrupt, r.Scope, s)
	}
	k, err := r.Unlock(passphrase)
	if err != nil {
		return fmt.Errorf("the %s: %w", s, err)
	}
	remember(h, s, k, passphrase, r.DataKey)
	return nil
}

func fileBinding(rel string) Binding { return Binding{Purpose: "install file", Name: rel} }

// ReadFile reads the secret file at path in h: opened with its scope's
// data key when it is sealed; as it is when in clear and the scope has no
// passphrase. A sealed file this process cannot open is a *LockedError;
// a file in clear in a protected scope wraps ErrClearInProtected.
func ReadFile(h home.Home, path string) ([]byte, error) { return ReadFileAs(h, path, path) }

// ReadFileAs is ReadFile of the file at path, sealed for the path as
// (its scope and name): a file waiting beside its place, as the keys of a
// certificate regeneration do before they are moved (SealedFor).
func ReadFileAs(h home.Home, path, as string) ([]byte, error) {
	if s, _, ok := ScopeOf(h, as); ok {
		if err := s.Recover(h); err != nil {
			return nil, err
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, rel, ok := ScopeOf(h, as)
	sealed := IsSealed(string(b))
	switch {
	case sealed && !ok:
		return nil, fmt.Errorf("%s: sealed, but outside every passphrase's scope", path)
	case sealed:
		k := unlockedKey(h, s)
		if k == nil {
			return nil, &LockedError{Scope: s, Path: path}
		}
		out, err := Open(k, fileBinding(rel), string(b))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return out, nil
	case ok && s.Protected(h):
		clear(b)
		return nil, fmt.Errorf("%s %w (the %s): seal it again with managedomain --change_passphrase, or restore it from a backup", path, ErrClearInProtected, s)
	}
	return b, nil
}

// Sealed returns what WriteFile would store for data at path: sealed when
// the scope has a passphrase (a *LockedError when this process does not
// hold its key), data itself otherwise.
func Sealed(h home.Home, path string, data []byte) ([]byte, error) { return SealedFor(h, path, data) }

// SealedFor is Sealed for the file that will be at path (written
// elsewhere first; ReadFileAs reads it there).
func SealedFor(h home.Home, path string, data []byte) ([]byte, error) {
	s, rel, ok := ScopeOf(h, path)
	if !ok { // mutate:equivalent * a path outside every scope has no keyring: the data goes out as it came
		return data, nil
	}
	if k := unlockedKey(h, s); k != nil {
		return []byte(Seal(k, fileBinding(rel), data) + "\n"), nil
	}
	if s.Protected(h) {
		return nil, &LockedError{Scope: s, Path: path}
	}
	return data, nil
}

// WriteFile writes the secret file at path in h atomically with mode
// perm: sealed when its scope has a passphrase, in clear otherwise.
func WriteFile(h home.Home, path string, data []byte, perm fs.FileMode) error {
	out, err := Sealed(h, path, data)
	if err != nil {
		return err
	}
	return home.WriteFileAtomic(path, out, perm)
}

// The secret files of each scope, as patterns relative to the install
// directory (filepath.Match; GROUP stands for the group's id). Every
// writer of a secret file uses WriteFile; these are what a passphrase
// change re-seals. A test checks that a domain with every kind of secret
// has no secret outside them.
var scopeFiles = map[string][]string{
	string(ScopeCA):           {"groups/certs/private/domainkey.pem"},
	string(ScopeNodeManagers): {"system/conf/certs/private/nodemanager-key.pem", "conf/sessionKey"},
	groupScopePrefix: {
		"groups/GROUP/*/conf/certs/private/instance-key.pem",
		"groups/GROUP/conf/kps/apikeys.key",
		"groups/GROUP/conf/oauth/keys/*.json",
		"groups/GROUP/conf/secrets/*", // what the configuration names: a database password file, a TLS key
	},
}

// Files lists the secret files of s that exist in h, sorted.
func (s Scope) Files(h home.Home) ([]string, error) {
	pats := scopeFiles[string(s)]
	if gid := s.GroupID(); gid != "" {
		for _, p := range scopeFiles[groupScopePrefix] {
			pats = append(pats, strings.Replace(p, "GROUP", gid, 1)) // mutate:equivalent const each pattern names GROUP once
		}
	}
	var out []string
	for _, p := range pats {
		m, err := filepath.Glob(filepath.Join(h.Dir, filepath.FromSlash(p)))
		if err != nil {
			return nil, err // mutate:equivalent * the patterns are constants that compile
		}
		out = append(out, m...)
	}
	sort.Strings(out)
	return out, nil
}

// IsSealedFile reports whether the file at path holds a sealed value.
func IsSealedFile(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	buf := make([]byte, len(SealedPrefix))
	n, _ := f.Read(buf)
	return bytes.Equal(buf[:n], []byte(SealedPrefix))
}
