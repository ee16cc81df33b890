package secret

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// A keyring holds, for one scope (a group, the domain's node managers, the
// domain CA), the data key that seals that scope's secrets, itself sealed
// under a key derived from the passphrase with argon2id (RFC 9106). The
// passphrase's check is that seal: a wrong passphrase does not open it
// (ErrWrongPassphrase), found at once, before anything else is read or
// written. The KDF's parameters and salt are stored beside it, so that
// they can be raised later.
//
// The file (JSON, mode 0600):
//
//	{"format": "gatehouse-keyring", "version": 1, "scope": "group group-1",
//	 "kdf": {"algorithm": "argon2id", "time": 3, "memoryKiB": 65536, "threads": 4, "salt": "…"},
//	 "dataKey": "gh-sealed:1:…"}
type Keyring struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	Scope   string `json:"scope"`
	KDF     KDF    `json:"kdf"`
	DataKey string `json:"dataKey"`
}

// KDF is the key derivation of a keyring.
type KDF struct {
	Algorithm string `json:"algorithm"`
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memoryKiB"`
	Threads   uint8  `json:"threads"`
	Salt      []byte `json:"salt"` // base64 in JSON
}

// DefaultKDF is RFC 9106's second recommended option (t=3, 64 MiB) with 4
// lanes: about 0.1-0.3 s on one core here, once per process start.
var DefaultKDF = KDF{Algorithm: "argon2id", Time: 3, MemoryKiB: 64 << 10, Threads: 4}

// The bounds a keyring's parameters must lie within: a keyring altered to
// demand terabytes of memory is refused, not obeyed.
const (
	minMemoryKiB = 8 << 10
	maxMemoryKiB = 4 << 20
	maxTime      = 64
	minSaltBytes = 16
	maxSaltBytes = 64
	keyringMax   = 64 << 10 // bytes of a keyring file
)

// MinPassphrase and MaxPassphrase bound a new passphrase's length in
// characters.
const (
	MinPassphrase = 10
	MaxPassphrase = 1024
)

// ErrWrongPassphrase: the passphrase does not open the keyring.
var ErrWrongPassphrase = errors.New("wrong passphrase")

const keyringFormat = "gatehouse-keyring"

// CheckNewPassphrase says why a passphrase cannot be set, or nil.
func CheckNewPassphrase(p Value) error {
	if !utf8.Valid(p.Reveal()) {
		return errors.New("the passphrase is not valid UTF-8")
	}
	switch n := utf8.RuneCount(p.Reveal()); {
	case n < MinPassphrase:
		return fmt.Errorf("the passphrase has %d characters, at least %d are needed", n, MinPassphrase)
	case n > MaxPassphrase:
		return fmt.Errorf("the passphrase has %d characters, at most %d", n, MaxPassphrase)
	}
	return nil
}

// NewKeyring makes a keyring for scope with a new random data key, sealed
// under passphrase with kdf's parameters and a new salt. It returns the
// keyring and its data key.
func NewKeyring(scope string, passphrase Value, kdf KDF) (*Keyring, *Key, error) {
	if err := CheckNewPassphrase(passphrase); err != nil {
		return nil, nil, err
	}
	kdf.Salt = newSalt()
	if err := kdf.check(); err != nil {
		return nil, nil, err
	}
	dk := NewKey()
	r := &Keyring{Format: keyringFormat, Version: 1, Scope: scope, KDF: kdf}
	r.wrap(passphrase, dk)
	return r, dk, nil
}

// SaltBytes is the length of a new keyring's salt.
const SaltBytes = 32

func newSalt() []byte {
	b := make([]byte, SaltBytes)
	rand.Read(b) // never fails (see NewKey)
	return b
}

// Rewrap seals data key dk under a new passphrase with a new salt (kdf's
// other parameters), as a new keyring of the same scope.
func (r *Keyring) Rewrap(passphrase Value, dk *Key, kdf KDF) (*Keyring, error) {
	if err := CheckNewPassphrase(passphrase); err != nil {
		return nil, err
	}
	kdf.Salt = newSalt()
	if err := kdf.check(); err != nil {
		return nil, err
	}
	n := &Keyring{Format: keyringFormat, Version: 1, Scope: r.Scope, KDF: kdf}
	n.wrap(passphrase, dk)
	return n, nil
}

func (r *Keyring) binding() Binding { return Binding{Purpose: "data key", Name: r.Scope} }

func (r *Keyring) wrap(passphrase Value, dk *Key) {
	kek := r.KDF.derive(passphrase)
	defer kek.Wipe()
	r.DataKey = Seal(kek, r.binding(), dk.b[:])
}

// Unlock derives the key from passphrase and opens the data key:
// ErrWrongPassphrase if it does not open.
func (r *Keyring) Unlock(passphrase Value) (*Key, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	kek := r.KDF.derive(passphrase)
	defer kek.Wipe()
	b, err := Open(kek, r.binding(), r.DataKey)
	if errors.Is(err, ErrNotOpened) {
		return nil, ErrWrongPassphrase
	}
	if err != nil {
		return nil, fmt.Errorf("keyring of %s: %w", r.Scope, err)
	}
	if len(b) != len(Key{}.b) {
		return nil, fmt.Errorf("keyring of %s: %w: a data key of %d bytes", r.Scope, ErrCorrupt, len(b))
	}
	k := new(Key)
	copy(k.b[:], b)
	clear(b)
	return k, nil
}

// DeriveKey derives a key from passphrase with kdf, whose parameters must
// lie within the keyrings' bounds (ErrCorrupt otherwise).
func DeriveKey(passphrase Value, kdf KDF) (*Key, error) {
	if err := kdf.check(); err != nil {
		return nil, err
	}
	return kdf.derive(passphrase), nil
}

// NewKDF is DefaultKDF with a new random salt.
func NewKDF() KDF {
	k := DefaultKDF
	k.Salt = newSalt()
	return k
}

func (k KDF) derive(passphrase Value) *Key {
	out := new(Key)
	copy(out.b[:], argon2.IDKey(passphrase.Reveal(), k.Salt, k.Time, k.MemoryKiB, k.Threads, uint32(len(out.b))))
	return out
}

func (k KDF) check() error {
	switch {
	case k.Algorithm != "argon2id":
		return fmt.Errorf("%w: key derivation %q, want argon2id", ErrCorrupt, k.Algorithm)
	case k.Time < 1 || k.Time > maxTime:
		return fmt.Errorf("%w: argon2id time %d, want 1 to %d", ErrCorrupt, k.Time, maxTime)
	case k.MemoryKiB < minMemoryKiB || k.MemoryKiB > maxMemoryKiB:
		return fmt.Errorf("%w: argon2id memory %d KiB, want %d to %d", ErrCorrupt, k.MemoryKiB, minMemoryKiB, maxMemoryKiB)
	case k.Threads < 1:
		return fmt.Errorf("%w: argon2id threads 0, want at least 1", ErrCorrupt)
	case len(k.Salt) < minSaltBytes || len(k.Salt) > maxSaltBytes:
		return fmt.Errorf("%w: a salt of %d bytes, want %d to %d", ErrCorrupt, len(k.Salt), minSaltBytes, maxSaltBytes)
	}
	return nil
}

func (r *Keyring) check() error {
	if r.Format != keyringFormat || r.Version != 1 {
		return fmt.Errorf("%w: not a keyring of this version (format %q, version %d)", ErrCorrupt, r.Format, r.Version)
	}
	if !IsSealed(r.DataKey) {
		return fmt.Errorf("%w: the keyring holds no sealed data key", ErrCorrupt)
	}
	return r.KDF.check()
}

// ParseKeyring reads a keyring from its JSON, checking its form (not the
// passphrase).
func ParseKeyring(b []byte) (*Keyring, error) {
	if len(b) > keyringMax {
		return nil, fmt.Errorf("%w: a keyring of %d bytes, at most %d", ErrCorrupt, len(b), keyringMax)
	}
	var r Keyring
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	return &r, nil
}

// LoadKeyring reads the keyring file at path; a missing file is an error
// wrapping fs.ErrNotExist (no passphrase is set for that scope).
func LoadKeyring(path string) (*Keyring, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r, err := ParseKeyring(b)
	if err != nil {
		return nil, fmt.Errorf("keyring %s: %w", path, err)
	}
	return r, nil
}

// Save writes the keyring to path atomically (temporary file, fsync,
// rename), mode 0600.
func (r *Keyring) Save(path string) error {
	b, err := r.marshal()
	if err != nil {
		// mutate:equivalent * a Keyring of strings, integers and bytes always marshals
		return err
	}
	return home.WriteFileAtomic(path, b, 0o600)
}

func (r *Keyring) marshal() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	return append(b, '\n'), err
}
