package responsecache

import (
	"encoding/binary"
	"errors"
)

// A stored response is one byte slice, so that a cache (and the cluster
// bus) carries it as any other value:
//
//	'R' 1                      magic and format version
//	status      uint16
//	age         uint32         the back end's Age, in seconds, when stored
//	fields      uint16         how many
//	  nameLen uint16, name, valueLen uint32, value   (each field)
//	body                       the rest
//
// Decoding checks every length and that names are tokens and values hold
// no line break nor NUL: an entry from a peer can never inject a field.

const entryMagic, entryVersion = 'R', 1

// maxFields bounds the fields of an entry.
const maxFields = 256

var errEntry = errors.New("responsecache: malformed entry")

// entryBuilder builds an entry.
type entryBuilder struct {
	buf    []byte
	fields int
}

func (b *entryBuilder) start(status int, age uint32) {
	b.buf = append(b.buf[:0], entryMagic, entryVersion)
	b.buf = binary.BigEndian.AppendUint16(b.buf, uint16(status))
	b.buf = binary.BigEndian.AppendUint32(b.buf, age)
	b.buf = append(b.buf, 0, 0) // field count, set by finish
	b.fields = 0
}

// field adds a field; false when there are too many or it is too long.
func (b *entryBuilder) field(name, value []byte) bool {
	if b.fields >= maxFields || len(name) > 0xffff || len(value) > 1<<20 {
		return false
	}
	b.buf = binary.BigEndian.AppendUint16(b.buf, uint16(len(name)))
	b.buf = append(b.buf, name...)
	b.buf = binary.BigEndian.AppendUint32(b.buf, uint32(len(value)))
	b.buf = append(b.buf, value...)
	b.fields++
	return true
}

// headEnd is the length of the head written so far; the body follows.
func (b *entryBuilder) finishHead() {
	binary.BigEndian.PutUint16(b.buf[8:10], uint16(b.fields))
}

// entry is a decoded stored response; its slices point into the stored
// value, which is never modified.
type entry struct {
	status int
	age    uint32
	fields int
	head   []byte // the encoded fields
	body   []byte
}

// decode parses a stored response.
func decode(v []byte) (entry, error) {
	var e entry
	if len(v) < 10 || v[0] != entryMagic || v[1] != entryVersion {
		return e, errEntry
	}
	e.status = int(binary.BigEndian.Uint16(v[2:4]))
	e.age = binary.BigEndian.Uint32(v[4:8])
	e.fields = int(binary.BigEndian.Uint16(v[8:10]))
	if e.status < 200 || e.status > 599 || e.fields > maxFields {
		return e, errEntry
	}
	rest := v[10:]
	start := rest
	for range e.fields {
		name, value, r, ok := nextField(rest)
		if !ok || !isToken(name) || !validValue(value) {
			return e, errEntry
		}
		rest = r
	}
	e.head = start[:len(start)-len(rest)]
	e.body = rest
	return e, nil
}

// each calls fn for each field of a decoded entry.
func (e entry) each(fn func(name, value []byte)) {
	rest := e.head
	for range e.fields {
		name, value, r, _ := nextField(rest)
		fn(name, value)
		rest = r
	}
}

func nextField(b []byte) (name, value, rest []byte, ok bool) {
	if len(b) < 2 {
		return nil, nil, nil, false
	}
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	if len(b) < n+4 {
		return nil, nil, nil, false
	}
	name, b = b[:n:n], b[n:]
	m := binary.BigEndian.Uint32(b)
	b = b[4:]
	if uint64(len(b)) < uint64(m) {
		return nil, nil, nil, false
	}
	return name, b[:m:m], b[m:], true
}

// isToken reports whether s is an RFC 9110 token (a field name).
func isToken(s []byte) bool {
	if len(s) == 0 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c < 0x80 && tokenPunct[c]) {
			return false
		}
	}
	return true
}

var tokenPunct = func() (t [128]bool) {
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return
}()

// validValue: no CR, LF or NUL.
func validValue(v []byte) bool {
	for _, c := range v {
		if c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return true
}
