package ratelimit

import (
	"testing"
	"time"
)

// FuzzReceive: a batch of claims from the bus, whatever its bytes, is
// applied or dropped without a panic, and never makes a key unlimited.
func FuzzReceive(f *testing.F) {
	var lid [8]byte
	ok := appendRecord([]byte{2, 'i', '2'}, lid, keyHash([]byte("k")), 1, 5, 2, 1)
	f.Add(ok)
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Add(append([]byte{2, 'i', '2'}, make([]byte, 30)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		clk := newClock()
		s := New(Options{InstanceID: "i1", Now: clk.now, Manual: true})
		defer s.Close()
		l, _ := s.Limiter(Spec{API: "a", Name: "d", Requests: 3, Window: time.Second})
		// Make the fuzzed records address this limiter.
		if len(data) > 3+8 {
			copy(data[3:], l.id[:])
		}
		s.receive(data)
		if n := allowN(l, "k", 10); n > 3 {
			t.Fatalf("after a batch: %d of 10 allowed, want at most 3", n)
		}
	})
}
