package h1

import "testing"

// TestErrKindString: each kind has its name, and the zero ErrKind (a
// ForwardError whose Kind was never set) is none of them.
func TestErrKindString(t *testing.T) {
	for _, c := range []struct {
		kind ErrKind
		want string
	}{
		{0, "ErrKind(0)"},
		{ErrConnect, "connect"},
		{ErrTimeout, "timeout"},
		{ErrUpstreamProtocol, "upstream protocol"},
		{ErrClient, "client"},
		{ErrNoConnAvailable, "no connection available"},
	} {
		if got := c.kind.String(); got != c.want {
			t.Errorf("ErrKind(%d).String() = %q, want %q", int(c.kind), got, c.want)
		}
	}
}

// TestErrKindValues: the kinds are numbered from 1 in the order of their
// declaration, and stay so (a caller may have logged or stored a kind as
// its number); a number past the last kind is no kind and is shown as a
// number.
func TestErrKindValues(t *testing.T) {
	for i, k := range []ErrKind{ErrConnect, ErrTimeout, ErrUpstreamProtocol, ErrClient, ErrNoConnAvailable} {
		if int(k) != i+1 {
			t.Errorf("%v = %d, want %d", k, int(k), i+1)
		}
	}
	if got := ErrKind(6).String(); got != "ErrKind(6)" {
		t.Errorf("ErrKind(6).String() = %q, want ErrKind(6)", got)
	}
}
