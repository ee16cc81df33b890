package instance

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"
)

// HeaderCorrelationID carries the correlation id of a request, to the back
// end and back to the client.
const HeaderCorrelationID = "X-CorrelationID"

// idSource generates correlation ids: "Id-", 8 hex digits of the unix time in
// seconds, then 16 hex digits from a SplitMix64 generator whose state is
// seeded from crypto/rand and advanced with one atomic add (no lock). The ids
// are unique within an instance and not guessable from outside without the
// seed; they are not secrets.
type idSource struct {
	state atomic.Uint64
}

func newIDSource() (*idSource, error) {
	var seed [8]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("seeding correlation ids: %w", err)
	}
	s := &idSource{}
	s.state.Store(binary.LittleEndian.Uint64(seed[:]))
	return s, nil
}

func (s *idSource) next() uint64 {
	z := s.state.Add(0x9e3779b97f4a7c15)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

const hexDigits = "0123456789abcdef"

// newID returns a fresh id for the time now.
func (s *idSource) newID(now time.Time) string {
	var b [3 + 8 + 16]byte
	copy(b[:], "Id-")
	secs := uint32(now.Unix())
	for i := 0; i < 8; i++ {
		b[3+i] = hexDigits[(secs>>(28-4*i))&0xf]
	}
	r := s.next()
	for i := 0; i < 16; i++ {
		b[11+i] = hexDigits[(r>>(60-4*i))&0xf]
	}
	return string(b[:])
}

// appendNewID appends a fresh id for the time now to dst.
func (s *idSource) appendNewID(dst []byte, now time.Time) []byte {
	dst = append(dst, "Id-"...)
	secs := uint32(now.Unix())
	for i := 0; i < 8; i++ {
		dst = append(dst, hexDigits[(secs>>(28-4*i))&0xf])
	}
	r := s.next()
	for i := 0; i < 16; i++ {
		dst = append(dst, hexDigits[(r>>(60-4*i))&0xf])
	}
	return dst
}

// acceptBytes appends to dst the client's id when it is well formed, a
// fresh one otherwise. It allocates nothing when dst has room.
func (s *idSource) acceptBytes(client []byte, now time.Time, dst []byte) []byte {
	if validID(b2s(client)) {
		return append(dst, client...)
	}
	return s.appendNewID(dst, now)
}

// accept returns the client's id when it is well formed, a fresh one
// otherwise.
func (s *idSource) accept(client string, now time.Time) string {
	if validID(client) {
		return client
	}
	return s.newID(now)
}

// validID reports whether id matches ^[A-Za-z0-9._:-]{1,128}$.
func validID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}
