package apps

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// An API key is
//
//	gk_<id>_<secret>
//
// id is 12 characters of lower-case base32 (60 random bits): the key's
// public name, kept in clear in the store and shown in listings, logs and
// the access log (gk_<id>). secret is 26 characters of lower-case base32
// (130 random bits): it exists only in the key the client holds. The store
// keeps only HMAC-SHA256(group hashing key, whole key) (Hash), compared in
// constant time (Verify): a copy of the store gives neither the keys nor a
// way to test guesses without the hashing key.
const (
	KeyPrefix    = "gk_"
	idChars      = 12
	secretChars  = 26
	KeyLength    = len(KeyPrefix) + idChars + 1 + secretChars
	HashKeyBytes = 32
)

// encoding is base32 in lower case without padding: keys are easy to read
// aloud, select with a double click and put in a URL or a header.
var encoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// ErrMalformed: the value is not an API key of this form (wrong length,
// prefix or characters).
var ErrMalformed = errors.New("not a Gatehouse API key")

// NewKey generates a key: its id (gk_…, the public part) and the whole
// key, which is shown once and never stored.
func NewKey() (id string, key secret.Value) {
	// mutate:equivalent const 24 or 26 bytes are 39 or 42 base32 characters, all random: the key takes 38 (190 bits) either way
	b := make([]byte, 25) // 200 bits: 60 for the id, 130 for the secret, the rest dropped
	rand.Read(b)          // never fails (crypto/rand, since Go 1.24)
	s := encoding.EncodeToString(b)
	id = KeyPrefix + s[:idChars]
	whole := id + "_" + s[idChars:idChars+secretChars]
	secret.New(b).Wipe()
	return id, secret.FromString(whole)
}

// ParseKey checks the form of a presented key and returns its id.
func ParseKey(key string) (id string, err error) {
	if len(key) != KeyLength || !strings.HasPrefix(key, KeyPrefix) || key[len(KeyPrefix)+idChars] != '_' {
		return "", ErrMalformed
	}
	for i := len(KeyPrefix); i < len(key); i++ {
		c := key[i]
		if i == len(KeyPrefix)+idChars {
			continue
		}
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return "", ErrMalformed
		}
	}
	return key[:len(KeyPrefix)+idChars], nil
}

// Hash is the stored form of key: hex HMAC-SHA256 under the group's
// hashing key.
func Hash(hashKey []byte, key string) string {
	m := hmac.New(sha256.New, hashKey)
	m.Write([]byte(key))
	return hex.EncodeToString(m.Sum(nil))
}

// Verify reports, in constant time, whether key hashes to stored.
func Verify(hashKey []byte, key, stored string) bool {
	var want, got [sha256.Size]byte
	if len(stored) != 2*sha256.Size {
		return false
	}
	if _, err := hex.Decode(want[:], []byte(stored)); err != nil {
		// mutate:equivalent delete-stmt a hash that does not decode leaves want partly zero: no HMAC equals it
		return false
	}
	m := hmac.New(sha256.New, hashKey)
	m.Write([]byte(key))
	return hmac.Equal(m.Sum(got[:0]), want[:])
}

// Verifier is Verify with the hashing key's HMAC state made once and
// reused (the request path checks a key per request). It is safe for
// concurrent use.
type Verifier struct {
	pool sync.Pool
}

// NewVerifier checks keys hashed under hashKey.
func NewVerifier(hashKey []byte) *Verifier {
	k := slices.Clone(hashKey)
	v := &Verifier{}
	v.pool.New = func() any { return hmac.New(sha256.New, k) }
	return v
}

// Verify reports, in constant time, whether key hashes to stored.
func (v *Verifier) Verify(key, stored string) bool {
	var want [sha256.Size]byte
	return decodeHash(stored, &want) && v.VerifySum(key, &want)
}

// VerifySum reports, in constant time, whether key's HMAC is sum.
func (v *Verifier) VerifySum(key string, sum *[sha256.Size]byte) bool {
	var got [sha256.Size]byte
	m := v.pool.Get().(hash.Hash)
	m.Reset()
	io.WriteString(m, key)
	ok := hmac.Equal(m.Sum(got[:0]), sum[:])
	v.pool.Put(m)
	return ok
}

// decodeHash decodes a stored hash (hex HMAC-SHA256) into sum.
func decodeHash(stored string, sum *[sha256.Size]byte) bool {
	if len(stored) != 2*sha256.Size {
		return false
	}
	_, err := hex.Decode(sum[:], []byte(stored))
	return err == nil
}
