package apps

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/fieldcrypt"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// HashKeyFile is groups/<group-id>/conf/kps/apikeys.key: the group's key
// for hashing API keys (HashKeyBytes random bytes, 0600). Every process
// that creates or checks the group's keys reads the same file: the
// instances of the group on this host and the Admin Node Manager.
func HashKeyFile(h home.Home, groupID string) string {
	return filepath.Join(h.GroupConfDir(groupID), "kps", "apikeys.key")
}

// HashKeySecret is the name of the hashing key among a shared store's
// secrets (kps.SharedSecrets).
const HashKeySecret = "apikeys.hashkey"

// GroupHashKey is the group's API-key hashing key for store. A store that
// several hosts share (kps.SharedSecrets: PostgreSQL) keeps it: every
// instance and the Admin Node Manager, wherever they run, use the one it
// holds; the first to ask stores it, offering this host's file when there
// is one (a group that ran before kept its key there) and a new random key
// otherwise. A store of one host (the embedded one) has it in the file
// beside it (LoadOrCreateHashKey).
func GroupHashKey(ctx context.Context, h home.Home, groupID string, store kps.Store) (secret.Value, error) {
	shared, ok := store.(kps.SharedSecrets)
	if !ok {
		return LoadOrCreateHashKey(h, groupID)
	}
	offer, err := readHashKey(h, HashKeyFile(h, groupID))
	switch {
	case errors.Is(err, os.ErrNotExist):
		b := make([]byte, HashKeyBytes)
		rand.Read(b) // never fails (crypto/rand, since Go 1.24)
		offer = secret.New(b)
	case err != nil:
		return secret.Value{}, err
	}
	defer offer.Wipe()
	// With the group's passphrase, the store's copy is sealed too
	// (kps/fieldcrypt, with the key its encrypted properties use).
	scope := secret.GroupScope(groupID)
	var keys *fieldcrypt.Keys
	if scope.Protected(h) {
		pass, ok := secret.Passphrase(h, scope)
		if !ok {
			return secret.Value{}, fmt.Errorf("the group's hashing key in its store is sealed with the passphrase of the %s, which this process was not given", scope)
		}
		defer pass.Wipe()
		if err := store.Define(ctx, fieldcrypt.MetaTable()); err != nil {
			return secret.Value{}, fmt.Errorf("the group's hashing key in its store: %w", err)
		}
		if keys, err = fieldcrypt.OpenKey(ctx, store, pass); err != nil {
			return secret.Value{}, fmt.Errorf("the group's hashing key in its store: %w", err)
		}
	}
	offered := offer.Reveal()
	if keys != nil {
		offered = keys.SealShared(HashKeySecret, offered)
	}
	b, err := shared.SharedSecret(ctx, HashKeySecret, offered)
	if err != nil {
		return secret.Value{}, fmt.Errorf("the group's hashing key in its store: %w", err)
	}
	if keys != nil {
		if b, err = keys.OpenShared(HashKeySecret, b); err != nil {
			return secret.Value{}, fmt.Errorf("the group's hashing key: %w", err)
		}
	}
	if len(b) != HashKeyBytes {
		// mutate:equivalent delete-stmt memory hygiene: the damaged bytes are not used after this
		secret.New(b).Wipe()
		return secret.Value{}, fmt.Errorf("the group's hashing key in its store has %d bytes, want %d: it is damaged", len(b), HashKeyBytes)
	}
	return secret.New(b), nil
}

// LoadOrCreateHashKey reads the group's hashing key, creating it when
// there is none. Two processes that create it at once end with the same
// key: each writes a complete file under a temporary name and links it into
// place, and the one that finds it there already reads it.
func LoadOrCreateHashKey(h home.Home, groupID string) (secret.Value, error) {
	path := HashKeyFile(h, groupID)
	if b, err := readHashKey(h, path); !errors.Is(err, os.ErrNotExist) {
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
	// Sealed for path (its name is bound into the seal), written under tmp.
	data, err := secret.Sealed(h, path, key)
	if err != nil {
		return secret.Value{}, err
	}
	if err := home.WriteFileAtomic(tmp, data, 0o600); err != nil {
		return secret.Value{}, err
	}
	defer os.Remove(tmp)
	secret.New(key).Wipe()
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, os.ErrExist) {
		return secret.Value{}, fmt.Errorf("creating %s: %w", path, err)
	}
	home.SyncDir(filepath.Dir(path))
	return readHashKey(h, path)
}

func readHashKey(h home.Home, path string) (secret.Value, error) {
	b, err := secret.ReadFile(h, path)
	if err != nil {
		return secret.Value{}, err
	}
	if len(b) != HashKeyBytes {
		// mutate:equivalent delete-stmt memory hygiene: the damaged bytes are not used after this
		secret.New(b).Wipe()
		return secret.Value{}, fmt.Errorf("%s has %d bytes, want %d: it is damaged (restore it from a backup; a new one would invalidate every API key of the group)", path, len(b), HashKeyBytes)
	}
	return secret.New(b), nil
}
