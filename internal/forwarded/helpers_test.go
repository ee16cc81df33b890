package forwarded

import (
	"errors"
	"testing"
	"time"
)

// within runs f and fails when it has not returned after two seconds: a
// parser loop that no longer advances is a failure, not a hang. It panics
// rather than calling t.Fatal: the goroutine stuck in the loop cannot be
// stopped, and would slow every later test down.
func within(t testing.TB, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		panic(t.Name() + ": did not return within 2s: a parser loop does not advance")
	}
}

// parseAll returns the elements of a Forwarded value read with ParseElement
// as a caller does (going on after a syntax error), and how many were
// malformed. A value of n bytes holds at most n+1 elements: more means that
// the parser does not advance.
func parseAll(t testing.TB, in string) (got []Element, bad int) {
	t.Helper()
	within(t, func() {
		v := []byte(in)
		for range len(in) + 2 {
			e, rest, ok, err := ParseElement(v)
			if !ok {
				if rest != nil || err != nil {
					t.Errorf("no element: got rest %q, err %v, want nil, nil", rest, err)
				}
				return
			}
			if err != nil {
				if !errors.Is(err, ErrSyntax) {
					t.Errorf("got error %v, want ErrSyntax", err)
				}
				bad++
			} else {
				got = append(got, e)
			}
			if len(rest) >= len(v) {
				t.Errorf("ParseElement(%q): rest %q is not shorter", v, rest)
				return
			}
			v = rest
		}
		t.Errorf("%q: more elements than bytes", in)
	})
	return got, bad
}

// xffAll returns the entries of an X-Forwarded-For value read with NextXFF.
func xffAll(t testing.TB, in string) (got []Node) {
	t.Helper()
	within(t, func() {
		v := []byte(in)
		for range len(in) + 2 {
			n, rest, ok := NextXFF(v)
			if !ok {
				if rest != nil {
					t.Errorf("no entry: got rest %q, want nil", rest)
				}
				return
			}
			got = append(got, n)
			if len(rest) >= len(v) {
				t.Errorf("NextXFF(%q): rest %q is not shorter", v, rest)
				return
			}
			v = rest
		}
		t.Errorf("%q: more entries than bytes", in)
	})
	return got
}
