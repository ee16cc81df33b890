package secret

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/chacha20poly1305"
)

// A sealed value is text, safe in a file of its own, in YAML and in JSON:
//
//	gh-sealed:1:<base64url without padding of nonce (24 bytes) || ciphertext || tag (16 bytes)>
//
// encrypted with XChaCha20-Poly1305 (random 192-bit nonces: no counter to
// keep, no practical collision) under a 256-bit data key. The associated
// data binds the value to what it is and where it lives (Binding): a
// sealed private key copied over another file, or a sealed database
// password pasted into another key of a configuration, does not open.
const SealedPrefix = "gh-sealed:1:"

// MaxPlaintext is the most a sealed value holds (1 MiB).
const MaxPlaintext = 1 << 20

// MaxSealed is the length of the text of a sealed value of MaxPlaintext
// bytes: anything longer is refused before it is decoded.
var MaxSealed = len(SealedPrefix) + base64.RawURLEncoding.EncodedLen(chacha20poly1305.NonceSizeX+MaxPlaintext+chacha20poly1305.Overhead)

// Errors of Open. ErrNotSealed: the text is not a sealed value at all (a
// file in clear). ErrCorrupt: it says it is, but is not well formed.
// ErrNotOpened: well formed, but the key is wrong, or it was altered, or it
// was bound to another purpose or file.
var (
	ErrNotSealed = errors.New("not a sealed value")
	ErrCorrupt   = errors.New("sealed value damaged")
	ErrNotOpened = errors.New("sealed value does not open: the key is wrong, or the value was altered or belongs elsewhere")
)

// Key is a 256-bit data key. It never prints (String, GoString).
type Key struct {
	b [chacha20poly1305.KeySize]byte
}

// NewKey returns a random key.
func NewKey() *Key {
	k := new(Key)
	rand.Read(k.b[:]) // never fails (crypto/rand, Go 1.24 and later: it crashes the program instead)
	return k
}

// String implements fmt.Stringer without the key.
func (*Key) String() string { return Redacted }

// GoString implements fmt.GoStringer without the key.
func (*Key) GoString() string { return Redacted }

// Wipe zeroes the key.
func (k *Key) Wipe() { clear(k.b[:]) }

// Binding is what a sealed value is bound to: its purpose ("private key",
// "session key", "kps hashing key", "config") and its name (the file's
// path relative to the install directory, or the configuration key).
type Binding struct {
	Purpose string
	Name    string
}

func (b Binding) aad() []byte {
	// Lengths first, so that no two bindings give the same bytes.
	return fmt.Appendf(nil, "gatehouse sealed v1\x00%d:%s\x00%d:%s", len(b.Purpose), b.Purpose, len(b.Name), b.Name)
}

// Seal encrypts plaintext (at most MaxPlaintext bytes: more panics, a
// programming error) under k, bound to b.
func Seal(k *Key, b Binding, plaintext []byte) string {
	if len(plaintext) > MaxPlaintext {
		panic(fmt.Sprintf("secret.Seal: %d bytes, at most %d", len(plaintext), MaxPlaintext))
	}
	aead, _ := chacha20poly1305.NewX(k.b[:]) // fails only for a key of another size
	out := make([]byte, chacha20poly1305.NonceSizeX, chacha20poly1305.NonceSizeX+len(plaintext)+chacha20poly1305.Overhead)
	rand.Read(out) // the nonce; never fails (see NewKey)
	out = aead.Seal(out, out, plaintext, b.aad())
	return SealedPrefix + base64.RawURLEncoding.EncodeToString(out)
}

// IsSealed reports whether s has the form of a sealed value (without
// opening it).
func IsSealed(s string) bool { return strings.HasPrefix(strings.TrimSpace(s), SealedPrefix) }

// Open decrypts a sealed value with k, checking it is bound to b. Leading
// and trailing white space (a final newline in a file) is ignored.
func Open(k *Key, b Binding, sealed string) ([]byte, error) {
	s := strings.TrimSpace(sealed)
	if !strings.HasPrefix(s, SealedPrefix) {
		return nil, ErrNotSealed
	}
	if len(s) > MaxSealed {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrCorrupt, len(s), MaxSealed)
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(s[len(SealedPrefix):]) // strict: one text per value
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if len(raw) < chacha20poly1305.NonceSizeX+chacha20poly1305.Overhead {
		return nil, fmt.Errorf("%w: %d bytes, shorter than a nonce and a tag", ErrCorrupt, len(raw))
	}
	aead, _ := chacha20poly1305.NewX(k.b[:]) // fails only for a key of another size
	nonce, ct := raw[:chacha20poly1305.NonceSizeX], raw[chacha20poly1305.NonceSizeX:]
	pt, err := aead.Open(nil, nonce, ct, b.aad())
	if err != nil {
		return nil, ErrNotOpened
	}
	return pt, nil
}
