// Package secret holds values that must never be printed: passwords, private
// keys, passphrases. A Value formats as "[REDACTED]" with fmt, log/slog and
// encoding/json, so a secret that reaches a log line or an error message by
// mistake leaks nothing. Encryption with the group passphrase arrives with the
// passphrase issue; the type is the seam it will fill.
package secret

import (
	"crypto/subtle"
	"log/slog"
)

// Redacted is what a Value prints as.
const Redacted = "[REDACTED]"

// Value is a secret byte string. Its zero value is the empty secret.
type Value struct {
	b []byte
}

// New wraps b (not copied).
func New(b []byte) Value { return Value{b: b} }

// FromString wraps s.
func FromString(s string) Value { return Value{b: []byte(s)} }

// Reveal returns the secret bytes. Call it only where the secret is used.
func (v Value) Reveal() []byte { return v.b }

// RevealString returns the secret as a string.
func (v Value) RevealString() string { return string(v.b) }

// IsZero reports whether the secret is empty.
func (v Value) IsZero() bool { return len(v.b) == 0 }

// Equal compares in constant time.
func (v Value) Equal(o Value) bool { return subtle.ConstantTimeCompare(v.b, o.b) == 1 }

// String implements fmt.Stringer.
func (Value) String() string { return Redacted }

// GoString implements fmt.GoStringer (%#v).
func (Value) GoString() string { return Redacted }

// LogValue implements slog.LogValuer.
func (Value) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalJSON never emits the secret.
func (Value) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText never emits the secret.
func (Value) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// Wipe zeroes the bytes in place.
func (v Value) Wipe() {
	for i := range v.b {
		v.b[i] = 0
	}
}
