package oauth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"slices"
	"sync"

	"github.com/go-jose/go-jose/v4"

	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// Client authentication methods (RFC 8414 token_endpoint_auth_methods).
const (
	AuthSecretBasic = "client_secret_basic"
	AuthSecretPost  = "client_secret_post"
	AuthPrivateKey  = "private_key_jwt"
	AuthNone        = "none" // a public client
)

// Client is an OAuth client as the registry holds it. A confidential client
// has SecretHashes (HashSecret of its secrets: several while one is being
// rotated) or JWKS (its public keys for private_key_jwt), or both; a public
// client (Public) has neither and may use only authorization_code (with
// PKCE, always required here) and refresh_token.
type Client struct {
	ID           string
	Name         string
	Enabled      bool
	Public       bool
	SecretHashes []string
	// AuthMethod, when set, is the only authentication method the client
	// may use (one of the Auth* constants); "" allows every method it has
	// credentials for.
	AuthMethod   string
	RedirectURIs []string // exact match at the authorization endpoint and at code redemption
	GrantTypes   []string // the Grant* constants it may use
	Scopes       []string // the scopes it may be given
	JWKS         *jose.JSONWebKeySet
}

// ErrUnknownClient is what a Clients returns (wrapped or not) for a client id
// it does not have. Any other error is an outage: the token endpoint answers
// 503 and never treats it as a failed authentication.
var ErrUnknownClient = errors.New("oauth: unknown client")

// Clients is the client registry (client applications, wired by the
// instance). Client returns ErrUnknownClient when there is no such client.
// It must be safe for concurrent use; it is called on every request that
// authenticates a client, so it should be cached by the implementation.
type Clients interface {
	Client(ctx context.Context, id string) (Client, error)
}

// MemClients is an in-memory Clients (tests, examples). Safe for
// concurrent use.
type MemClients struct {
	mu sync.RWMutex
	m  map[string]Client
}

// NewMemClients holds the given clients.
func NewMemClients(cs ...Client) *MemClients {
	m := &MemClients{m: map[string]Client{}}
	for _, c := range cs {
		m.Put(c)
	}
	return m
}

// Put adds or replaces a client.
func (m *MemClients) Put(c Client) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.m[c.ID] = c
}

// Client implements Clients.
func (m *MemClients) Client(_ context.Context, id string) (Client, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	c, ok := m.m[id]
	if !ok {
		return Client{}, fmt.Errorf("client %q: %w", id, ErrUnknownClient)
	}
	return c, nil
}

// Readable prefixes of the random values this package makes: a leaked one
// is recognisable by secret scanners and in support tickets.
const (
	PrefixClientSecret = "gcs_"
	PrefixAccessToken  = "gat_"
	PrefixRefreshToken = "grt_"
	PrefixCode         = "gac_"
)

// randomChars is the length of the random part: 52 base32 characters are
// 260 bits (>= 256, RFC 9700 §4.1 and RFC 6749 §10.10 ask for at least 128).
const randomChars = 52

var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// random returns prefix followed by 260 random bits in lower-case base32.
func random(prefix string) string {
	var b [33]byte  // 264 bits, 260 used
	rand.Read(b[:]) // never fails (crypto/rand, since Go 1.24)
	return prefix + b32.EncodeToString(b[:])[:randomChars]
}

// NewClientSecret generates a client secret: "gcs_" and 260 random bits.
// Show it once to whoever registers the client and store only
// HashSecret(hashKey, secret).
func NewClientSecret() secret.Value {
	return secret.FromString(random(PrefixClientSecret))
}

// HashSecret is the stored form of a client secret (and of every token and
// code): hex HMAC-SHA256 under the group's hash key. The secrets are random
// and long, so a fast keyed hash is enough: no guess can be tested without
// the key, and a grant pays microseconds instead of a deliberately slow hash.
func HashSecret(hashKey secret.Value, s string) string {
	m := hmac.New(sha256.New, hashKey.Reveal())
	m.Write([]byte(s))
	return hex.EncodeToString(m.Sum(nil))
}

// hasher computes HashSecret with a pooled HMAC state (one per goroutine
// in use), so the hot paths do not allocate one per call.
type hasher struct{ pool sync.Pool }

func newHasher(key secret.Value) *hasher {
	k := slices.Clone(key.Reveal())
	h := &hasher{}
	h.pool.New = func() any { return hmac.New(sha256.New, k) }
	return h
}

func (h *hasher) sum(s string, out *[sha256.Size]byte) {
	m := h.pool.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte(s))
	m.Sum(out[:0])
	h.pool.Put(m)
}

// hash is HashSecret(key, s).
func (h *hasher) hash(s string) string {
	var sum [sha256.Size]byte
	h.sum(s, &sum)
	return hex.EncodeToString(sum[:])
}

// verify reports whether s hashes to one of stored, comparing every stored
// hash in constant time (no early exit on a match).
func (h *hasher) verify(s string, stored []string) bool {
	var sum, want [sha256.Size]byte
	h.sum(s, &sum)
	ok := 0
	for _, st := range stored {
		if len(st) != 2*sha256.Size {
			continue
		}
		if _, err := hex.Decode(want[:], []byte(st)); err != nil {
			continue
		}
		ok |= boolInt(hmac.Equal(sum[:], want[:]))
	}
	return ok == 1
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func subtleEq(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }
