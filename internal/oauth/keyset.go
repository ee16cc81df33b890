package oauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// Signing algorithms a KeySet can make keys for. ES256 is the default: small
// signatures, fast signing, and what RFC 9068 deployments commonly expect.
var signingAlgs = []string{"ES256", "ES384", "EdDSA", "RS256"}

// keyFile is the stored form of one signing key: <dir>/<kid>.json, mode
// 0600, written atomically. Created orders the keys: the newest is the
// current signing key.
type keyFile struct {
	Kid     string          `json:"kid"`
	Alg     string          `json:"alg"`
	Created time.Time       `json:"created"`
	JWK     json.RawMessage `json:"jwk"` // the private key as a JWK
}

type signingKey struct {
	kid     string
	alg     jose.SignatureAlgorithm
	created time.Time
	private crypto.Signer
	public  jose.JSONWebKey
	signer  jose.Signer
}

// KeySet is the group's set of JWT signing keys, kept as files in one
// directory (one file per key, mode 0600; the directory 0700). The newest
// key signs; the older ones stay for verification until every token they
// signed has expired (Prune). Rotate adds a new key. Several processes may
// share the directory: each reads it at LoadKeySet and again on Reload (a
// verifier that meets an unknown kid reloads, at most once per
// reloadInterval).
//
// The private keys are in clear in their files (as the TLS keys of the
// instance are): encryption with the group passphrase comes with it.
type KeySet struct {
	h   home.Home // the install directory: its key files are secret files (secret.ReadFile)
	dir string
	alg string
	now func() time.Time

	mu         sync.RWMutex
	keys       []*signingKey // oldest first
	lastReload time.Time
	reloading  atomic.Bool
}

const reloadInterval = 10 * time.Second

// LoadKeySet opens the key set in dir, creating dir and a first key of
// algorithm alg ("" means ES256) when it holds none. now is the clock (nil:
// time.Now).
func LoadKeySet(h home.Home, dir, alg string, now func() time.Time) (*KeySet, error) {
	if alg == "" {
		alg = "ES256"
	}
	if !slices.Contains(signingAlgs, alg) {
		return nil, fmt.Errorf("signing algorithm %q: want one of %s", alg, strings.Join(signingAlgs, ", "))
	}
	if now == nil {
		now = time.Now
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the key directory: %w", err)
	}
	ks := &KeySet{h: h, dir: dir, alg: alg, now: now}
	if err := ks.Reload(); err != nil {
		return nil, err
	}
	ks.mu.RLock()
	empty := len(ks.keys) == 0
	ks.mu.RUnlock()
	if empty {
		if _, err := ks.Rotate(); err != nil {
			return nil, err
		}
	}
	return ks, nil
}

// Reload reads the directory again: keys added or removed by another
// process are seen. A directory without any key is refused (the keys held
// stay): a key set never becomes empty.
func (ks *KeySet) Reload() error {
	ks.mu.Lock()
	ks.lastReload = ks.now()
	ks.mu.Unlock()
	ents, err := os.ReadDir(ks.dir)
	if err != nil {
		return fmt.Errorf("reading the key directory: %w", err)
	}
	var keys []*signingKey
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		path := filepath.Join(ks.dir, e.Name())
		b, err := secret.ReadFile(ks.h, path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) { // pruned meanwhile
				continue
			}
			return fmt.Errorf("reading signing key: %w", err)
		}
		k, err := parseKeyFile(b)
		if err != nil {
			return fmt.Errorf("signing key %s: %w", path, err)
		}
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b *signingKey) int {
		if c := a.created.Compare(b.created); c != 0 {
			return c
		}
		return strings.Compare(a.kid, b.kid)
	})
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if len(keys) == 0 {
		if len(ks.keys) == 0 {
			return nil // LoadKeySet makes the first key
		}
		return fmt.Errorf("the key directory %s holds no signing key: keeping the %d keys loaded", ks.dir, len(ks.keys))
	}
	ks.keys = keys
	return nil
}

// refresh reloads the directory when the last reload is older than
// reloadInterval, in one goroutine at a time (the others go on with the
// keys held). So a process sees a key another process made, and signs
// with it, within reloadInterval.
func (ks *KeySet) refresh() {
	ks.mu.RLock()
	stale := ks.now().Sub(ks.lastReload) >= reloadInterval
	ks.mu.RUnlock()
	if !stale || !ks.reloading.CompareAndSwap(false, true) { // mutate:equivalent bool reloading more often than needed changes only the cost
		return
	}
	defer ks.reloading.Store(false)
	ks.Reload() // on failure the keys held stay; the next interval tries again
}

func parseKeyFile(b []byte) (*signingKey, error) {
	var f keyFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("not a key file: %w", err)
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(f.JWK); err != nil {
		return nil, fmt.Errorf("its jwk: %w", err)
	}
	priv, ok := jwk.Key.(crypto.Signer)
	if !ok || jwk.IsPublic() || f.Kid == "" || jwk.KeyID != f.Kid || !slices.Contains(signingAlgs, f.Alg) {
		return nil, fmt.Errorf("want a private key with kid %q and one of the algorithms %s", f.Kid, strings.Join(signingAlgs, ", "))
	}
	return newSigningKey(f.Kid, f.Alg, f.Created, priv)
}

func newSigningKey(kid, alg string, created time.Time, priv crypto.Signer) (*signingKey, error) {
	k := &signingKey{kid: kid, alg: jose.SignatureAlgorithm(alg), created: created, private: priv}
	k.public = jose.JSONWebKey{Key: priv.Public(), KeyID: kid, Algorithm: alg, Use: "sig"}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: jose.JSONWebKey{Key: priv, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		return nil, fmt.Errorf("making a signer: %w", err) // mutate:equivalent * unreachable: NewSigner fails only for a key of another type than its algorithm, and the key was made or checked for it
	}
	k.signer = s
	return k, nil
}

func generate(alg string) (crypto.Signer, error) {
	switch alg {
	case "ES256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "EdDSA":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	case "RS256":
		return rsa.GenerateKey(rand.Reader, 3072)
	}
	return nil, fmt.Errorf("signing algorithm %q: want one of %s", alg, strings.Join(signingAlgs, ", ")) // mutate:equivalent * unreachable: LoadKeySet refused any other algorithm
}

// Rotate makes a new key, writes it (temporary file, fsync, rename, mode
// 0600) and makes it the current signing key. The older keys stay for
// verification. It returns the new key's kid.
func (ks *KeySet) Rotate() (string, error) {
	priv, err := generate(ks.alg)
	if err != nil {
		return "", fmt.Errorf("generating a signing key: %w", err) // mutate:equivalent * unreachable: generate fails only for an algorithm LoadKeySet refused; key generation with crypto/rand does not fail
	}
	kid := random("")[:22] // 110 random bits: unique, not secret
	// The newest key signs: a new key is strictly newer than every key
	// held, even when the clock has not moved (or went back).
	created := ks.now().UTC()
	ks.mu.RLock()
	if n := len(ks.keys); n > 0 && !created.After(ks.keys[n-1].created) {
		created = ks.keys[n-1].created.Add(time.Millisecond)
	}
	ks.mu.RUnlock()
	jwk, err := jose.JSONWebKey{Key: priv, KeyID: kid, Algorithm: ks.alg, Use: "sig"}.MarshalJSON()
	if err != nil {
		return "", fmt.Errorf("encoding the signing key: %w", err) // mutate:equivalent * unreachable: a key just generated of a supported type always encodes
	}
	b, err := json.Marshal(keyFile{Kid: kid, Alg: ks.alg, Created: created, JWK: jwk})
	if err != nil {
		return "", fmt.Errorf("encoding the signing key: %w", err) // mutate:equivalent * unreachable: strings, a time and JSON just made always encode
	}
	if err := secret.WriteFile(ks.h, filepath.Join(ks.dir, kid+".json"), b, 0o600); err != nil {
		return "", fmt.Errorf("storing the signing key: %w", err)
	}
	k, err := newSigningKey(kid, ks.alg, created, priv)
	if err != nil {
		return "", err // mutate:equivalent * unreachable: newSigningKey fails only as NewSigner does, for a key of another type than its algorithm
	}
	ks.mu.Lock()
	ks.keys = append(ks.keys, k)
	slices.SortFunc(ks.keys, func(a, b *signingKey) int { return a.created.Compare(b.created) })
	ks.mu.Unlock()
	return kid, nil
}

// Prune deletes the keys no token can still need: a key is retired when a
// newer key was made, and removed once maxTokenLifetime (the longest
// access token lifetime, plus any leeway) has passed since then. It returns
// the kids removed.
func (ks *KeySet) Prune(maxTokenLifetime time.Duration) ([]string, error) {
	now := ks.now()
	ks.mu.Lock()
	defer ks.mu.Unlock()
	var keep []*signingKey
	var removed []string
	for i, k := range ks.keys {
		if i+1 < len(ks.keys) && !ks.keys[i+1].created.Add(maxTokenLifetime).After(now) {
			if err := os.Remove(filepath.Join(ks.dir, k.kid+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
				return removed, fmt.Errorf("removing retired signing key %s: %w", k.kid, err)
			}
			removed = append(removed, k.kid)
			continue
		}
		keep = append(keep, k)
	}
	ks.keys = keep
	// mutate:equivalent * the directory's fsync after removals: not observable without a crash, and SyncDir does not fail on a directory just read
	if len(removed) > 0 {
		if err := home.SyncDir(ks.dir); err != nil { // mutate:equivalent * as above (an early return of removed and nil is the same answer)
			return removed, err // mutate:equivalent * as above
		}
	}
	return removed, nil
}

// PublishDelay is how long a new key is published (in the JWKS, and to the
// other instances, which reload the directory every reloadInterval) before
// it signs: a token it signs is then never met by an instance that does
// not know it yet.
const PublishDelay = 2 * reloadInterval

// current is the signing key, after a refresh: the newest key published
// for PublishDelay, or the oldest when none is that old (a key set just
// made).
func (ks *KeySet) current() *signingKey {
	ks.refresh()
	now := ks.now()
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	for i := len(ks.keys) - 1; i >= 0; i-- {
		if !ks.keys[i].created.Add(PublishDelay).After(now) {
			return ks.keys[i]
		}
	}
	return ks.keys[0]
}

// Current returns the kid and algorithm of the signing key.
func (ks *KeySet) Current() (kid, alg string) {
	k := ks.current()
	return k.kid, string(k.alg)
}

// key finds a key by kid; on a miss it reloads the directory (at most once
// per reloadInterval) and looks again.
func (ks *KeySet) key(kid string) (*signingKey, bool) {
	ks.mu.RLock()
	k, ok := ks.find(kid)
	ks.mu.RUnlock()
	if ok {
		return k, ok
	}
	ks.refresh()
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return ks.find(kid)
}

func (ks *KeySet) find(kid string) (*signingKey, bool) {
	for _, k := range ks.keys {
		if k.kid == kid {
			return k, true
		}
	}
	return nil, false
}

// algs are the algorithms of the keys held (for parsing: a token whose alg
// is not one of them is refused before any key is tried).
func (ks *KeySet) algs() []jose.SignatureAlgorithm {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	var out []jose.SignatureAlgorithm
	for _, k := range ks.keys {
		if !slices.Contains(out, k.alg) {
			out = append(out, k.alg)
		}
	}
	return out
}

// JWKS is the public key set: every key held, current and retired.
func (ks *KeySet) JWKS() jose.JSONWebKeySet {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(ks.keys))}
	for i := len(ks.keys) - 1; i >= 0; i-- { // current first
		set.Keys = append(set.Keys, ks.keys[i].public)
	}
	return set
}
