package apps

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// HashKeyFile is groups/<group-id>/conf/kps/apikeys.key: the group's key
// for hashing API keys (HashKeyBytes random bytes, 0600). Every process
// that creates or checks the group's keys reads the same file: the
// instances of the group on this host and the Admin Node Manager.
func HashKeyFile(h home.Home, groupID string) string {
	return filepath.Join(h.GroupConfDir(groupID), "kps", "apikeys.key")
}

// LoadOrCreateHashKey reads the group's hashing key, creating it when
// there is none. Two processes that create it at once end with the same
// key: each writes a complete file under a temporary name and links it into
// place, and the one that finds it there already reads it.
func LoadOrCreateHashKey(h home.Home, groupID string) (secret.Value, error) {
	path := HashKeyFile(h, groupID)
	if b, err := readHashKey(path); !errors.Is(err, os.ErrNotExist) {
		return b, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return secret.Value{}, fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	key := make([]byte, HashKeyBytes)
	rand.Read(key) // never fails (crypto/rand, since Go 1.24)
	var nonce [8]byte
	rand.Read(nonce[:])
	tmp := fmt.Sprintf("%s.%x.tmp", path, nonce)
	if err := home.WriteFileAtomic(tmp, key, 0o600); err != nil {
		return secret.Value{}, err
	}
	defer os.Remove(tmp)
	secret.New(key).Wipe()
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, os.ErrExist) {
		return secret.Value{}, fmt.Errorf("creating %s: %w", path, err)
	}
	home.SyncDir(filepath.Dir(path))
	return readHashKey(path)
}

func readHashKey(path string) (secret.Value, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return secret.Value{}, err
	}
	if len(b) != HashKeyBytes {
		secret.New(b).Wipe()
		return secret.Value{}, fmt.Errorf("%s has %d bytes, want %d: it is damaged (restore it from a backup; a new one would invalidate every API key of the group)", path, len(b), HashKeyBytes)
	}
	return secret.New(b), nil
}
