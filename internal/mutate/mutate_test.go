package mutate

import (
	"context"
	"fmt"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

const sample = `package p

import "errors"

const limit = 8 // mutate:equivalent const limit is only a hint

var errTooBig = errors.New("too big")

func check(n int, ok bool) error {
	if n > limit && ok {
		return errTooBig
	}
	// mutate:equivalent negate-cmp the two branches do the same here
	if n == 0 {
		n++
	}
	return nil
}

func noError(a, b int) bool { return a <= b || a == 3 }

var table [4]int
`

func descs(ms []Mutant) []string {
	var out []string
	for _, m := range ms {
		s := m.Op + " " + m.Desc
		if m.Equiv {
			s += " [eq: " + m.Reason + "]"
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func TestFind(t *testing.T) {
	ms, err := Find("p.go", []byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(descs(ms), "\n")
	want := strings.Join([]string{
		"bool && → ||",
		"bool || → &&",
		"boundary <= → <",
		"boundary > → >=",
		"const 0 → 1",
		"const 3 → 2",
		"const 3 → 4",
		"const 8 → 7 [eq: limit is only a hint]",
		"const 8 → 9 [eq: limit is only a hint]",
		"delete-stmt delete n++",
		"delete-stmt delete return errTooBig",
		"err-return return errTooBig → nil",
		"negate-cmp == → !=",
		"negate-cmp == → != [eq: the two branches do the same here]",
		"negate-if if n == 0 → if !(…)",
		"negate-if if n > limit && ok → if !(…)",
	}, "\n")
	if got != want {
		t.Errorf("mutants:\n%s\n\nwant:\n%s", got, want)
	}
	// Every mutant parses, and changes the file.
	for _, m := range ms {
		out := m.Apply([]byte(sample))
		if string(out) == sample {
			t.Errorf("%s: changes nothing", m)
		}
		if _, err := parser.ParseFile(token.NewFileSet(), "p.go", out, 0); err != nil {
			t.Errorf("%s: does not parse: %v", m, err)
		}
	}
}

func TestApply(t *testing.T) {
	m := Mutant{Edits: []Edit{{3, 3, "!("}, {4, 4, ")"}, {9, 11, "||"}}}
	if got := string(m.Apply([]byte("if a { b && c }"))); got != "if !(a) { b || c }" {
		t.Errorf("got %q", got)
	}
}

func TestMarkNeedsReason(t *testing.T) {
	src := "package p\n\nfunc f(a int) bool { return a < 2 } // mutate:equivalent boundary\n"
	ms, err := Find("p.go", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Equiv {
			t.Errorf("%s: marked equivalent by a mark without a reason", m)
		}
	}
}

func FuzzFind(f *testing.F) {
	f.Add([]byte(sample))
	f.Add([]byte("package p\nfunc f() (int, error) { if x := g(); x != nil { return 0, x }; return 1, nil }\n"))
	f.Add([]byte("package p\nvar _ = func() error { for i := 0; i < 0x10; i++ {}; return nil }\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		ms, err := Find("f.go", src)
		if err != nil {
			return
		}
		for _, m := range ms {
			if _, err := parser.ParseFile(token.NewFileSet(), "f.go", m.Apply(src), 0); err != nil {
				t.Fatalf("%s: mutant does not parse: %v\n%s", m, err, m.Apply(src))
			}
		}
	})
}

// TestRun runs the tester on a small module of its own: a function, a test
// that pins down some of it, and a loop that one mutant makes endless.
func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	dir := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/m\n\ngo 1.22\n")
	write("m.go", `package m

// Clamp limits n to [0, max].
func Clamp(n, max int) int {
	if n < 0 {
		return 0
	}
	if n > max {
		return max
	}
	return n
}

// Spin counts up to n.
func Spin(n int) int {
	i := 0
	for i < n {
		i += 1
	}
	return i
}

// Unused is run by no test.
func Unused(n int) int {
	if n > 2 {
		return 1
	}
	return 0
}

// Sign is 1 or -1: the case's expression runs, its body does not.
func Sign(n int) int {
	switch {
	case n < 0:
		return -1
	}
	return 1
}
`)
	write("m_test.go", `package m

import "testing"

func TestClamp(t *testing.T) {
	if Clamp(-5, 10) != 0 || Clamp(50, 10) != 10 {
		t.Fatal("clamp")
	}
}

func TestSpin(t *testing.T) {
	if Spin(3) != 3 {
		t.Fatal("spin")
	}
}

func TestSign(t *testing.T) {
	if Sign(0) != 1 {
		t.Fatal("sign")
	}
}
`)
	var log strings.Builder
	results, sums, err := Run(context.Background(), Config{Packages: []string{"./"}, Dir: dir, Jobs: 2, Timeout: 5 * time.Second, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, r := range results {
		status[fmt.Sprintf("%d %s %s", r.Line, r.Op, r.Desc)] = r.Status
	}
	for k, want := range map[string]string{
		"5 boundary < → <=":              Survived, // Clamp(0, …) is not tested
		"5 negate-if if n < 0 → if !(…)": Killed,
		"6 delete-stmt delete return 0":  Killed,
		"8 boundary > → >=":              Survived, // Clamp(max, max) is not tested
		"16 const 0 → 1":                 Survived, // 1, 2, 3: the same result
		"17 boundary < → <=":             Killed,
		"18 const 1 → 0":                 TimedOut, // i += 0: the loop never ends
		"18 const 1 → 2":                 Killed,
		"25 boundary > → >=":             Survived, // not covered: not run
		"34 boundary < → <=":             Killed,   // the case's expression runs, its body does not
	} {
		if got := status[k]; got != want {
			t.Errorf("%s: got %q, want %q", k, got, want)
		}
	}
	for _, r := range results {
		want := r.Line >= 24 && r.Line <= 29 || r.Line == 35 // Unused, Sign's case body
		if notRun := r.Failed == "not covered"; notRun != want {
			t.Errorf("%s: not covered %v, want %v", r.Mutant, notRun, want)
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", log.String())
	}
	s := sums[0]
	if len(sums) != 1 || s.Total != len(results) || s.Killed+s.Survived+s.TimedOut+s.Invalid+s.Equivalent != s.Total {
		t.Errorf("summary: %+v", sums)
	}
	if want := 100 * float64(s.Killed) / float64(s.Killed+s.Survived+s.TimedOut); s.Score() != want {
		t.Errorf("score: got %v, want %v", s.Score(), want)
	}
}

// TestRunRefusesFailingBaseline: mutants are not run against tests that
// fail already.
func TestRunRefusesFailingBaseline(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/m\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "m.go"), []byte("package m\n\nfunc F() int { return 1 }\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "m_test.go"), []byte("package m\n\nimport \"testing\"\n\nfunc TestF(t *testing.T) { if F() != 2 { t.Fatal(\"no\") } }\n"), 0o644)
	_, _, err := Run(context.Background(), Config{Packages: []string{"./"}, Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "do not pass without mutants") {
		t.Fatalf("got %v, want the failing baseline reported", err)
	}
}
