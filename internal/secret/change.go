package secret

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// ChangePassphrase sets or changes the passphrase of scope s in h: every
// secret file of the scope is sealed under a new data key, and the new
// keyring holds that key under newPass, all or none (home.ReplaceFiles,
// journal beside the keyring), also when the process is killed half-way.
// When the scope has a passphrase, old must open it (ErrWrongPassphrase
// otherwise, and nothing changes); when it has none, old is ignored and
// the files in clear are sealed. The caller makes sure no process of the
// scope writes its secret files meanwhile (the tools refuse while they
// run). Afterwards this process holds the new data key.
func ChangePassphrase(h home.Home, s Scope, old, newPass Value, kdf KDF) error {
	if err := CheckNewPassphrase(newPass); err != nil {
		return err // mutate:equivalent delete-stmt NewKeyring checks it too, before anything is written
	}
	if err := os.MkdirAll(h.RunDir(), 0o755); err != nil { // mutate:equivalent const the directory's mode is not a secret's
		return err // mutate:equivalent delete-stmt the lock cannot be taken there either: TryLock fails the same way
	}
	lock, err := home.TryLock(s.lockFile(h))
	if errors.Is(err, home.ErrLocked) {
		return fmt.Errorf("another change of the %s's passphrase is running", s)
	}
	if err != nil {
		return err
	}
	defer lock.Unlock()
	if _, err := home.RecoverReplace(s.JournalFile(h)); err != nil {
		return fmt.Errorf("completing an interrupted passphrase change of the %s: %w", s, err)
	}
	var oldKey *Key
	if _, err := os.Lstat(s.KeyringFile(h)); err == nil {
		r, err := LoadKeyring(s.KeyringFile(h))
		if err != nil {
			return err
		}
		if r.Scope != string(s) {
			return fmt.Errorf("keyring %s: %w: it belongs to the %s, not the %s", s.KeyringFile(h), ErrCorrupt, r.Scope, s)
		}
		if oldKey, err = r.Unlock(old); err != nil {
			return fmt.Errorf("the %s: %w", s, err)
		}
		defer oldKey.Wipe() // mutate:equivalent delete-stmt memory hygiene: the key is not used after this
	}
	r, newKey, err := NewKeyring(string(s), newPass, kdf)
	if err != nil {
		return err
	}
	paths, err := s.Files(h)
	if err != nil {
		return err
	}
	var files []home.NewFile
	for _, p := range paths {
		b, fi, err := readForChange(h, p, oldKey)
		if err != nil {
			newKey.Wipe() // mutate:equivalent delete-stmt memory hygiene: the key is not used after this
			return err
		}
		_, rel, _ := ScopeOf(h, p)
		files = append(files, home.NewFile{Path: p, Data: []byte(Seal(newKey, fileBinding(rel), b) + "\n"), Perm: fi.Mode().Perm()})
		clear(b)
	}
	kr, err := r.marshal()
	if err != nil {
		newKey.Wipe() // mutate:equivalent * memory hygiene on a path a keyring always marshals past
		return err    // mutate:equivalent * a Keyring always marshals
	}
	files = append(files, home.NewFile{Path: s.KeyringFile(h), Data: kr, Perm: 0o600})
	if err := os.MkdirAll(filepath.Dir(s.KeyringFile(h)), 0o700); err != nil {
		newKey.Wipe() // mutate:equivalent delete-stmt memory hygiene: the key is not used after this
		return err
	}
	if err := home.ReplaceFiles(s.JournalFile(h), files); err != nil {
		newKey.Wipe() // mutate:equivalent delete-stmt memory hygiene: the key is not used after this
		return fmt.Errorf("changing the passphrase of the %s: %w", s, err)
	}
	remember(h, s, newKey, newPass, r.DataKey)
	return nil
}

// readForChange reads a secret file of a scope whose data key is oldKey
// (nil: the scope has no passphrase, its files are in clear).
func readForChange(h home.Home, path string, oldKey *Key) ([]byte, fs.FileInfo, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	_, rel, _ := ScopeOf(h, path)
	switch sealed := IsSealed(string(b)); {
	case sealed && oldKey == nil:
		return nil, nil, fmt.Errorf("%s is sealed although its scope has no keyring: restore the scope's keyring from a backup", path)
	case sealed:
		out, err := Open(oldKey, fileBinding(rel), string(b))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		return out, fi, nil
	case oldKey != nil:
		clear(b)
		return nil, nil, fmt.Errorf("%s %w: restore it from a backup before changing the passphrase", path, ErrClearInProtected)
	}
	return b, fi, nil
}
