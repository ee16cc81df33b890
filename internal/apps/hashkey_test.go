package apps

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/fieldcrypt"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// sharedStore is an embedded store with kps.SharedSecrets as a store that
// hosts share has them (the first offer is stored and every caller gets
// it: the PostgreSQL backend, TestSharedSecret in kps/postgres); err, when
// set, is SharedSecret's answer.
type sharedStore struct {
	kps.Store
	mu      sync.Mutex
	secrets map[string][]byte
	err     error
}

func (s *sharedStore) SharedSecret(_ context.Context, name string, offer []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	if b, ok := s.secrets[name]; ok {
		return slices.Clone(b), nil
	}
	s.secrets[name] = slices.Clone(offer)
	return slices.Clone(offer), nil
}

func (s *sharedStore) LookupSharedSecret(_ context.Context, name string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.secrets[name]; ok {
		return slices.Clone(b), nil
	}
	return nil, kps.ErrNotFound
}

func (s *sharedStore) ReplaceSharedSecret(_ context.Context, name string, old, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.secrets[name]
	switch {
	case !ok:
		return kps.ErrNotFound
	case string(b) != string(old):
		return kps.ErrConflict
	}
	s.secrets[name] = slices.Clone(value)
	return nil
}

// TestGroupHashKeySealed: with the group's passphrase the shared store's
// copy of the hashing key is sealed (never in clear in the database); a
// process with another passphrase is refused; a copy stored in clear
// before the passphrase is refused until kpsadmin reencrypt seals it;
// after a passphrase change reencrypt moves it and the key stays the same.
func TestGroupHashKeySealed(t *testing.T) {
	ctx := context.Background()
	h := home.Home{Dir: t.TempDir()}
	scope := secret.GroupScope("group-2")
	kdf := secret.KDF{Algorithm: "argon2id", Time: 1, MemoryKiB: 8 << 10, Threads: 1}
	// A copy in clear, from before the passphrase.
	shared := &sharedStore{Store: openStore(t), secrets: map[string][]byte{}}
	clearKey, err := GroupHashKey(ctx, h, "group-2", shared)
	if err != nil {
		t.Fatal(err)
	}
	p1, p2 := secret.FromString("first passphrase"), secret.FromString("second passphrase")
	if err := secret.ChangePassphrase(h, scope, secret.Value{}, p1, kdf); err != nil {
		t.Fatal(err)
	}
	if _, err := GroupHashKey(ctx, h, "group-2", shared); !errors.Is(err, fieldcrypt.ErrNeedsSealing) {
		t.Fatalf("a copy in clear under a passphrase: %v", err)
	}
	shared.Define(ctx, fieldcrypt.MetaTable())
	if err := fieldcrypt.Reencrypt(ctx, shared, nil, []string{HashKeySecret}, secret.Value{}, p1, nil); err != nil {
		t.Fatal(err)
	}
	stored := shared.secrets[HashKeySecret]
	if !secret.IsSealed(string(stored)) || strings.Contains(string(stored), string(clearKey.Reveal())) {
		t.Fatalf("the copy is not sealed: %q", stored)
	}
	k, err := GroupHashKey(ctx, h, "group-2", shared)
	if err != nil || !k.Equal(clearKey) {
		t.Fatalf("after sealing: %v (the same key: %v)", err, k.Equal(clearKey))
	}
	// Another group, sealed from the start.
	s3 := &sharedStore{Store: openStore(t), secrets: map[string][]byte{}}
	if err := secret.ChangePassphrase(h, secret.GroupScope("group-3"), secret.Value{}, p1, kdf); err != nil {
		t.Fatal(err)
	}
	k3, err := GroupHashKey(ctx, h, "group-3", s3)
	if err != nil || len(k3.Reveal()) != HashKeyBytes || !secret.IsSealed(string(s3.secrets[HashKeySecret])) {
		t.Fatalf("sealed from the start: %v %q", err, s3.secrets[HashKeySecret])
	}
	// A new passphrase: refused until reencrypt, then the same key.
	if err := secret.ChangePassphrase(h, scope, p1, p2, kdf); err != nil {
		t.Fatal(err)
	}
	if _, err := GroupHashKey(ctx, h, "group-2", shared); !errors.Is(err, fieldcrypt.ErrWrongPassphrase) {
		t.Fatalf("after a passphrase change: %v", err)
	}
	if err := fieldcrypt.Reencrypt(ctx, shared, nil, []string{HashKeySecret}, p1, p2, nil); err != nil {
		t.Fatal(err)
	}
	if k, err := GroupHashKey(ctx, h, "group-2", shared); err != nil || !k.Equal(clearKey) {
		t.Fatalf("after reencrypt: %v (the same key: %v)", err, k.Equal(clearKey))
	}
	// Without the passphrase in this process: refused.
	secret.Forget(h, scope)
	if _, err := GroupHashKey(ctx, h, "group-2", shared); err == nil || !strings.Contains(err.Error(), "was not given") {
		t.Errorf("without the passphrase: %v", err)
	}
}

// TestGroupHashKey: the embedded store's key is the file beside it; a
// shared store's is the one it holds, the first host's file offered (a
// group that ran before keeps its keys valid), else a new random key, and
// no file is written; a damaged file or secret, or a store that cannot
// answer, is an error, never a new key.
func TestGroupHashKey(t *testing.T) {
	ctx := context.Background()
	h := home.Home{Dir: t.TempDir()}
	// The embedded store: the file.
	k, err := GroupHashKey(ctx, h, "group-2", openStore(t))
	if err != nil {
		t.Fatal(err)
	}
	if f, err := LoadOrCreateHashKey(h, "group-2"); err != nil || !f.Equal(k) {
		t.Errorf("the embedded store's key is not its file's: %v", err)
	}
	// A shared store, no file here: a new key, in the store only.
	shared := &sharedStore{Store: openStore(t), secrets: map[string][]byte{}}
	k1, err := GroupHashKey(ctx, h, "group-3", shared)
	if err != nil || len(k1.Reveal()) != HashKeyBytes || string(shared.secrets[HashKeySecret]) != string(k1.Reveal()) {
		t.Fatalf("a shared store without a file: %v", err)
	}
	if _, err := os.Stat(HashKeyFile(h, "group-3")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file was written for a shared store: %v", err)
	}
	other := home.Home{Dir: t.TempDir()}
	if k2, err := GroupHashKey(ctx, other, "group-3", shared); err != nil || !k2.Equal(k1) {
		t.Errorf("another host: %v (a different key: %v)", err, !k2.Equal(k1))
	}
	// A shared store, a file here: it is offered, and kept when the store
	// had none.
	f, _ := LoadOrCreateHashKey(h, "group-4")
	if k, err := GroupHashKey(ctx, h, "group-4", &sharedStore{Store: shared.Store, secrets: map[string][]byte{}}); err != nil || !k.Equal(f) {
		t.Errorf("a shared store and this host's file: %v (the file's key: %v)", err, k.Equal(f))
	}
	// The store's wins over the file's.
	if k, err := GroupHashKey(ctx, h, "group-4", shared); err != nil || !k.Equal(k1) {
		t.Errorf("a shared store holding a key, and a file: %v (the store's: %v)", err, k.Equal(k1))
	}
	// A damaged file: an error naming it.
	os.WriteFile(HashKeyFile(h, "group-4"), []byte("short"), 0o600)
	if _, err := GroupHashKey(ctx, h, "group-4", shared); err == nil || !strings.Contains(err.Error(), "apikeys.key has 5 bytes") {
		t.Errorf("a damaged file: %v", err)
	}
	// The store cannot answer.
	down := &sharedStore{Store: shared.Store, err: kps.Unavailable(errors.New("connection refused"))}
	if _, err := GroupHashKey(ctx, other, "group-3", down); !errors.Is(err, kps.ErrUnavailable) || !strings.HasPrefix(err.Error(), "the group's hashing key in its store: ") {
		t.Errorf("the store down: %v", err)
	}
	// The store's secret damaged.
	shared.secrets[HashKeySecret] = []byte("short")
	if _, err := GroupHashKey(ctx, other, "group-3", shared); err == nil || !strings.Contains(err.Error(), "has 5 bytes, want 32: it is damaged") {
		t.Errorf("a damaged secret in the store: %v", err)
	}
}

// TestHashKeyNotStored: a hashing key that cannot be stored is an error,
// never a key (a key that is not in the file would be another key for the
// next process: every API key of the group invalid). Root writes
// anywhere, so the file is made unwritable by its place: a directory that
// is a dangling symbolic link, and a path whose temporary file's name is
// longer than the system allows (PATH_MAX, 4096 on Linux).
func TestHashKeyNotStored(t *testing.T) {
	h := home.Home{Dir: t.TempDir()}
	dir := filepath.Dir(HashKeyFile(h, "group-2"))
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(h.Dir, "nowhere"), dir); err != nil {
		t.Fatal(err)
	}
	if k, err := LoadOrCreateHashKey(h, "group-2"); err == nil || !strings.HasPrefix(err.Error(), "creating "+dir+": ") || !k.IsZero() {
		t.Errorf("its directory a dangling link: %v", err)
	}

	// The key file's path is 4080 bytes long: it can be read (it is not
	// there), but a temporary file beside it cannot be made.
	deep := t.TempDir()
	want := 4080 - len("/"+HashKeyFile(home.Home{}, "g")) // the length of the home directory
	for len(deep) < want {
		n := min(200, want-len(deep)-1) // "/" and n bytes
		if want-len(deep)-1-n == 1 {
			n-- // never one byte left: a name has one at least, after its "/"
		}
		deep = filepath.Join(deep, strings.Repeat("d", n))
	}
	h = home.Home{Dir: deep}
	if n := len(HashKeyFile(h, "g")); n != 4080 {
		t.Fatalf("the key file's path has %d bytes", n)
	}
	if err := os.MkdirAll(deep, 0o700); err != nil {
		t.Fatal(err)
	}
	k, err := LoadOrCreateHashKey(h, "g")
	if err == nil || !errors.Is(err, syscall.ENAMETOOLONG) || !strings.HasPrefix(err.Error(), "writing "+HashKeyFile(h, "g")+".") || !k.IsZero() {
		t.Errorf("a key file that cannot be written: %v", err)
	}
	if _, err := os.Stat(HashKeyFile(h, "g")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the key file: %v, want none", err)
	}
}
