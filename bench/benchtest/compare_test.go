// Package benchtest tests the benchmark scripts' logic that can be tested
// without measuring: bench/compare's verdict on a run's measurements.
package benchtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runs writes a measurements file (bench/run's .tsv) with the given req/s
// and p99 per round for gatehouse and gatehouse-ref, plus rows that must
// not count (the c1 phase, another target).
func runs(t *testing.T, head, ref [][2]int) string {
	t.Helper()
	var b strings.Builder
	for i := range head {
		fmt.Fprintf(&b, "c64\tbackend\t%d\t150000\t200\t600\t0\t50\t50\t1\t1\t0\t0\n", i+1)
		fmt.Fprintf(&b, "c64\tgatehouse\t%d\t%d\t1200\t%d\t0\t50\t100\t1\t1\t0\t0\n", i+1, head[i][0], head[i][1])
		fmt.Fprintf(&b, "c64\tgatehouse-ref\t%d\t%d\t1200\t%d\t0\t50\t100\t1\t1\t0\t0\n", i+1, ref[i][0], ref[i][1])
		fmt.Fprintf(&b, "c1\tgatehouse\t%d\t1\t100\t999999\t0\t50\t100\t1\t1\t0\t0\n", i+1)
		fmt.Fprintf(&b, "c1\tgatehouse-ref\t%d\t99999\t100\t1\t0\t50\t100\t1\t1\t0\t0\n", i+1)
	}
	p := filepath.Join(t.TempDir(), "run.tsv")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func compare(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{"../compare"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// TestCompareVerdict: the medians of the rounds at 64 connections decide;
// HEAD may be up to 5 % slower in throughput and p99, not more; one bad
// round does not decide; the one-connection phase does not count.
func TestCompareVerdict(t *testing.T) {
	same := [][2]int{{50000, 3000}, {52000, 3100}, {51000, 2900}, {49000, 3200}, {50500, 3000}}
	for _, c := range []struct {
		name      string
		head      [][2]int
		code      int
		want      string
		tolerance string
	}{
		{"equal", same, 0, "= 1.000 (want >= 0.95): ok", ""},
		{"4 % slower", scale(same, 0.96, 1), 0, "(want >= 0.95): ok", ""},
		{"6 % slower", scale(same, 0.94, 1), 1, "(want >= 0.95): SLOWER", ""},
		{"p99 6 % higher", scale(same, 1, 1.06), 1, "(want <= 1.05): SLOWER", ""},
		{"p99 4 % higher", scale(same, 1, 1.04), 0, "(want <= 1.05): ok", ""},
		{"one bad round", [][2]int{{50000, 3000}, {10000, 90000}, {51000, 2900}, {49000, 3200}, {50500, 3000}}, 0, "throughput HEAD ÷ ref = 0.99", ""},
		{"6 % slower, tolerance 0.10", scale(same, 0.94, 1), 0, "(want >= 0.90): ok", "0.10"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var env []string
			if c.tolerance != "" {
				env = append(env, "BENCH_COMPARE_TOLERANCE="+c.tolerance)
			}
			out, code := compare(t, env, "--tsv", runs(t, c.head, same))
			if code != c.code || !strings.Contains(out, c.want) {
				t.Errorf("exit %d, want %d; output lacks %q:\n%s", code, c.code, c.want, out)
			}
		})
	}
}

func scale(r [][2]int, rps, p99 float64) [][2]int {
	out := make([][2]int, len(r))
	for i, x := range r {
		out[i] = [2]int{int(float64(x[0]) * rps), int(float64(x[1]) * p99)}
	}
	return out
}

// TestCompareUsage: wrong invocations exit 2 saying why, before measuring.
func TestCompareUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  []string
		want string
	}{
		{nil, nil, "usage: bench/compare REV"},
		{[]string{"a", "b"}, nil, "usage: bench/compare REV"},
		{[]string{"no-such-revision-xyz"}, nil, "is not a revision of this repository"},
		{[]string{"--tsv", "/nonexistent.tsv"}, nil, "no such file"},
		{[]string{"HEAD"}, []string{"BENCH_COMPARE_ROUNDS=2"}, "want 3 or more"},
		{[]string{"HEAD"}, []string{"BENCH_COMPARE_TOLERANCE=5%"}, "want a fraction"},
	} {
		out, code := compare(t, c.env, c.args...)
		if code != 2 || !strings.Contains(out, c.want) {
			t.Errorf("bench/compare %v: exit %d, want 2 with %q:\n%s", c.args, code, c.want, out)
		}
	}
	empty := filepath.Join(t.TempDir(), "empty.tsv")
	os.WriteFile(empty, nil, 0o600)
	if out, code := compare(t, nil, "--tsv", empty); code != 2 || !strings.Contains(out, "no measurements of gatehouse") {
		t.Errorf("an empty run: exit %d:\n%s", code, out)
	}
}
