package nodemanager

import "testing"

func TestExitCode(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"exit status 1", 1, true},
		{"killed by signal 9 (SIGKILL)", 137, true},
		{"stopped", 0, false},
		{"", 0, false},
		{"ended without a clean stop (exit status unknown: not started by this node manager)", 0, false},
	} {
		if got, ok := exitCode(c.in); got != c.want || ok != c.ok {
			t.Errorf("exitCode(%q): got %d %v, want %d %v", c.in, got, ok, c.want, c.ok)
		}
	}
}
