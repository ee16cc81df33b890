package h1

import (
	"strconv"
	"unsafe"
)

// field is one header field. Names and values alias memory owned by someone
// else (the connection buffer, the header's arena, or a caller's string) and
// are never written through.
type field struct {
	name, value []byte
}

// Header is an ordered list of fields. Names and values are byte slices that,
// on a parsed request, point into the connection's buffer and are valid only
// until the handler returns. The methods that take a string name keep a view
// of that string, never a copy: callers keep values alive (string constants
// and the parsed request's slices always are). AddCopy and SetContentLength
// copy into an arena owned by the Header.
//
// A Header is not safe for concurrent use.
type Header struct {
	f     []field
	arena []byte
}

// bytesOf returns a read-only view of s. Header never writes through a field.
func bytesOf(s string) []byte {
	if s == "" {
		return nil
	}
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// Len returns the number of fields.
func (h *Header) Len() int { return len(h.f) }

// Get returns the value of the first field named name (ASCII
// case-insensitive), or nil when there is none. A present field with an empty
// value returns a non-nil empty slice.
func (h *Header) Get(name string) []byte {
	for i := range h.f {
		if EqualFoldString(h.f[i].name, name) {
			if h.f[i].value == nil {
				return []byte{}
			}
			return h.f[i].value
		}
	}
	return nil
}

// Has reports whether a field named name is present.
// Count returns how many fields are named name.
func (h *Header) Count(name string) int {
	n := 0
	for i := range h.f {
		if EqualFoldString(h.f[i].name, name) {
			n++
		}
	}
	return n
}

func (h *Header) Has(name string) bool {
	for i := range h.f {
		if EqualFoldString(h.f[i].name, name) {
			return true
		}
	}
	return false
}

// Add appends a field. It copies nothing: the caller keeps value alive.
func (h *Header) Add(name string, value []byte) {
	h.f = append(h.f, field{bytesOf(name), value})
}

// AddString appends a field.
func (h *Header) AddString(name, value string) {
	h.f = append(h.f, field{bytesOf(name), bytesOf(value)})
}

// AddBytes appends a field whose name is a byte slice; it copies nothing.
func (h *Header) AddBytes(name, value []byte) {
	h.f = append(h.f, field{name, value})
}

// AddCopy appends a field after copying name and value into the Header's own
// arena, so that they outlive the caller's buffers (until Reset).
func (h *Header) AddCopy(name, value []byte) {
	n := len(h.arena)
	h.arena = append(h.arena, name...)
	h.arena = append(h.arena, value...)
	a := h.arena[n:len(h.arena):len(h.arena)]
	h.f = append(h.f, field{a[:len(name):len(name)], a[len(name):]})
}

// Set replaces all fields named name by one field name: value, at the place
// of the first one (or at the end).
func (h *Header) Set(name string, value []byte) {
	for i := range h.f {
		if EqualFoldString(h.f[i].name, name) {
			h.f[i].value = value
			h.delFrom(name, i+1)
			return
		}
	}
	h.Add(name, value)
}

// SetString is Set with a string value.
func (h *Header) SetString(name, value string) { h.Set(name, bytesOf(value)) }

// SetContentLength sets Content-Length to n, formatted into the arena.
func (h *Header) SetContentLength(n int64) {
	k := len(h.arena)
	h.arena = strconv.AppendInt(h.arena, n, 10)
	h.Set("Content-Length", h.arena[k:len(h.arena):len(h.arena)])
}

// Del removes every field named name.
func (h *Header) Del(name string) { h.delFrom(name, 0) }

func (h *Header) delFrom(name string, from int) {
	j := from
	for i := from; i < len(h.f); i++ {
		if EqualFoldString(h.f[i].name, name) {
			continue
		}
		h.f[j] = h.f[i]
		j++
	}
	clear(h.f[j:])
	h.f = h.f[:j]
}

// RemoveConnectionNamed removes each Connection field and every field it
// names (RFC 9110 §7.6.1): the hop-by-hop fields of a received message. A
// proxy calls it before it adds fields of its own, so that a client's
// Connection list removes only what that client sent, never a field the
// proxy sets (X-Forwarded-For, a correlation id).
func (h *Header) RemoveConnectionNamed() {
	if !hasConnectionField(h) {
		return // mutate:equivalent delete-stmt without a Connection field nothing is named: the loops below keep every field
	}
	// Mark first (the Connection fields must stay readable while marking),
	// then compact.
	for i := range h.f {
		if !isConnectionField(h.f[i].name) && connectionNamed(h, h.f[i].name) {
			h.f[i].name = nil
		}
	}
	j := 0
	for i := range h.f {
		if h.f[i].name == nil || isConnectionField(h.f[i].name) {
			continue
		}
		h.f[j] = h.f[i]
		j++
	}
	clear(h.f[j:])
	h.f = h.f[:j]
}

func isConnectionField(name []byte) bool {
	return len(name) == 10 && EqualFoldString(name, "connection")
}

// Each calls fn for every field in order and stops when fn returns false.
func (h *Header) Each(fn func(name, value []byte) bool) {
	for i := range h.f {
		if !fn(h.f[i].name, h.f[i].value) {
			return
		}
	}
}

// Reset empties the Header, keeping its capacity.
func (h *Header) Reset() {
	clear(h.f)
	h.f = h.f[:0]
	h.arena = h.arena[:0]
}

// EqualFoldString reports whether b and s are equal under ASCII case
// folding (header names and tokens; policies use it too).
func EqualFoldString(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if x == y {
			continue
		}
		if x|0x20 != y|0x20 || lower(x) < 'a' || lower(x) > 'z' {
			return false
		}
	}
	return true
}

// equalFold reports whether a and b are equal under ASCII case folding.
func equalFold(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 0x20
	}
	return c
}
