package responsecache

import "testing"

// FuzzCacheControl: any Cache-Control and Vary value parses without
// panicking, and ages stay within 0..2^31 or absent.
func FuzzCacheControl(f *testing.F) {
	for _, s := range []string{"no-store", "public, max-age=60", `private="a,b"`, `max-age="9`, "s-maxage=99999999999999999999999", `a="\"`, ",,,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d := directives{maxAge: -1, sMaxAge: -1}
		parseCacheControl(&d, s)
		for _, a := range []int64{d.maxAge, d.sMaxAge} {
			if a < -1 || a > maxDelta {
				t.Fatalf("%q: age %d", s, a)
			}
		}
		varyCovered(s, []string{"accept"})
	})
}

// FuzzDecodeEntry: a stored entry (which may come from a peer) decodes or
// is refused without panicking; what decodes has only valid fields and
// encodes back to the same bytes.
func FuzzDecodeEntry(f *testing.F) {
	var b entryBuilder
	b.start(200, 1)
	b.field([]byte("A"), []byte("b"))
	b.finishHead()
	b.buf = append(b.buf, "body"...)
	f.Add(b.buf)
	f.Add([]byte("R\x01\x00\xc8\x00\x00\x00\x00\x00\x01\x00"))
	f.Fuzz(func(t *testing.T, v []byte) {
		e, err := decode(v)
		if err != nil {
			return
		}
		var rb entryBuilder
		rb.start(e.status, e.age)
		e.each(func(n, val []byte) {
			if !isToken(n) || !validValue(val) {
				t.Fatalf("invalid field %q: %q", n, val)
			}
			rb.field(n, val)
		})
		rb.finishHead()
		rb.buf = append(rb.buf, e.body...)
		if string(rb.buf) != string(v) {
			t.Fatalf("re-encoded %q, want %q", rb.buf, v)
		}
	})
}
