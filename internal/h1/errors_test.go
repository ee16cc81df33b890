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
