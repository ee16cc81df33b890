package mutate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Statuses of a run mutant.
const (
	Killed     = "killed"     // a test failed
	Survived   = "survived"   // every test passed
	TimedOut   = "timeout"    // the tests did not finish in time (a test without a deadline)
	Invalid    = "invalid"    // the mutant does not compile: not counted
	Equivalent = "equivalent" // marked in the source: not run, not counted
)

// Config is one run.
type Config struct {
	Packages  []string      // package paths or patterns naming single packages (./internal/h1)
	Sample    int           // run at most this many mutants per package, chosen with Seed; 0 = all
	Seed      uint64        // for Sample
	Jobs      int           // mutants tested at once (default 2)
	Timeout   time.Duration // per mutant; 0 = 3 × the package's own test time + 20 s
	TestFlags []string      // extra go test flags (-short, -run X)
	Ops       []string      // only these operators (default all)
	Files     []string      // only files whose name contains one of these
	List      bool          // list the mutants, run nothing
	Dir       string        // the module's directory (default: the current one)
	Log       io.Writer     // one line per mutant as it finishes
}

// Result is one mutant's outcome.
type Result struct {
	Mutant
	Package string        `json:"package"`
	Status  string        `json:"status"`
	Elapsed time.Duration `json:"elapsed"`
	Failed  string        `json:"failed,omitempty"` // the first failing test, when killed
}

// Summary counts a package's results.
type Summary struct {
	Package                                                string
	Killed, Survived, TimedOut, Invalid, Equivalent, Total int
}

// Score is killed / (killed + survived + timed out), in percent.
func (s Summary) Score() float64 {
	n := s.Killed + s.Survived + s.TimedOut
	if n == 0 {
		return 100
	}
	return 100 * float64(s.Killed) / float64(n)
}

type pkgInfo struct {
	Dir        string
	ImportPath string
	GoFiles    []string
}

// Run runs cfg and returns every result (equivalent mutants included) and a
// summary per package.
func Run(ctx context.Context, cfg Config) ([]Result, []Summary, error) {
	if cfg.Jobs <= 0 {
		cfg.Jobs = 2
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	var all []Result
	var sums []Summary
	for _, p := range cfg.Packages {
		res, sum, err := runPackage(ctx, cfg, p)
		if err != nil {
			return all, sums, err
		}
		all = append(all, res...)
		sums = append(sums, sum)
	}
	return all, sums, nil
}

func listPackage(ctx context.Context, dir, pattern string) (pkgInfo, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-json", pattern)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return pkgInfo{}, fmt.Errorf("go list %s: %s", pattern, bytes.TrimSpace(ee.Stderr))
		}
		return pkgInfo{}, fmt.Errorf("go list %s: %w", pattern, err)
	}
	var pi pkgInfo
	dec := json.NewDecoder(bytes.NewReader(out))
	if err := dec.Decode(&pi); err != nil {
		return pkgInfo{}, fmt.Errorf("go list %s: %w", pattern, err)
	}
	if dec.More() {
		return pkgInfo{}, fmt.Errorf("%s names several packages: give one at a time", pattern)
	}
	return pi, nil
}

// mutantsOf finds the mutants of a package's files (tests excluded).
func mutantsOf(cfg Config, pi pkgInfo) ([]Mutant, error) {
	var ms []Mutant
	for _, name := range pi.GoFiles {
		if len(cfg.Files) > 0 && !containsAny(name, cfg.Files) {
			continue
		}
		path := filepath.Join(pi.Dir, name)
		src, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		if bytes.Contains(src, []byte("// Code generated")) {
			continue
		}
		found, err := Find(path, src)
		if err != nil {
			return nil, err
		}
		for i := range found {
			found[i].src = src // read once: the run applies every mutant to this
		}
		for _, m := range found {
			if len(cfg.Ops) == 0 || contains(cfg.Ops, m.Op) {
				ms = append(ms, m)
			}
		}
	}
	return ms, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func containsAny(s string, subs []string) bool {
	for _, x := range subs {
		if strings.Contains(s, x) {
			return true
		}
	}
	return false
}

func runPackage(ctx context.Context, cfg Config, pattern string) ([]Result, Summary, error) {
	sum := Summary{Package: pattern}
	pi, err := listPackage(ctx, cfg.Dir, pattern)
	if err != nil {
		return nil, sum, err
	}
	sum.Package = pi.ImportPath
	ms, err := mutantsOf(cfg, pi)
	if err != nil {
		return nil, sum, err
	}
	var results []Result
	var run []Mutant
	for _, m := range ms {
		if m.Equiv {
			results = append(results, Result{Mutant: m, Package: pi.ImportPath, Status: Equivalent})
			continue
		}
		run = append(run, m)
	}
	if cfg.Sample > 0 && cfg.Sample < len(run) {
		r := rand.New(rand.NewPCG(cfg.Seed, 0x6d757461))
		r.Shuffle(len(run), func(i, j int) { run[i], run[j] = run[j], run[i] })
		run = run[:cfg.Sample]
		sort.SliceStable(run, func(i, j int) bool {
			if run[i].File != run[j].File {
				return run[i].File < run[j].File
			}
			return run[i].Line < run[j].Line
		})
	}
	if cfg.List {
		for _, m := range run {
			results = append(results, Result{Mutant: m, Package: pi.ImportPath})
		}
		sum.Total = len(results)
		return results, sum, nil
	}
	tmp, err := os.MkdirTemp("", "mutate-")
	if err != nil {
		return nil, sum, err
	}
	defer os.RemoveAll(tmp)
	// The package's own tests must pass first; they also set the timeout,
	// and their coverage tells which mutants no test even runs.
	start := time.Now()
	profile := filepath.Join(tmp, "cover.out")
	if st, out := testOnce(ctx, cfg, pi, "", 10*time.Minute, "-coverprofile", profile); st != Survived {
		return nil, sum, fmt.Errorf("%s: the tests do not pass without mutants (%s):\n%s", pi.ImportPath, st, tail(out, 40))
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 3*time.Since(start) + 20*time.Second
	}
	cov, err := readCoverage(profile, pi)
	if err != nil {
		return nil, sum, err
	}

	out := make([]Result, len(run))
	var wg sync.WaitGroup
	var logMu sync.Mutex
	next := make(chan int)
	for w := 0; w < cfg.Jobs; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if cov.unrun(run[i]) {
					// Inside code that no test executes: it survives
					// without a run.
					out[i] = Result{Mutant: run[i], Package: pi.ImportPath, Status: Survived, Failed: "not covered"}
				} else {
					out[i] = runMutant(ctx, cfg, pi, run[i], tmp, i, timeout)
				}
				logMu.Lock()
				fmt.Fprintf(cfg.Log, "%-8s %s%s\n", out[i].Status, rel(cfg.Dir, run[i]), failedSuffix(out[i]))
				logMu.Unlock()
			}
		}()
	}
	for i := range run {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, sum, err
	}
	results = append(results, out...)
	for _, r := range results {
		switch r.Status {
		case Killed:
			sum.Killed++
		case Survived:
			sum.Survived++
		case TimedOut:
			sum.TimedOut++
		case Invalid:
			sum.Invalid++
		case Equivalent:
			sum.Equivalent++
		}
	}
	sum.Total = len(results)
	return results, sum, nil
}

func failedSuffix(r Result) string {
	if r.Failed == "" {
		return ""
	}
	if r.Status == Survived {
		return "  [" + r.Failed + "]"
	}
	return "  (" + r.Failed + ")"
}

func rel(dir string, m Mutant) string {
	if dir == "" {
		dir, _ = os.Getwd()
	}
	if p, err := filepath.Rel(dir, m.File); err == nil {
		m.File = p
	}
	return m.String()
}

func runMutant(ctx context.Context, cfg Config, pi pkgInfo, m Mutant, tmp string, i int, timeout time.Duration) Result {
	res := Result{Mutant: m, Package: pi.ImportPath}
	// The source as it was when the mutants were found: an edit during the
	// run must not shift the mutants' offsets.
	src := m.src
	if src == nil {
		res.Status, res.Failed = Invalid, "no source"
		return res
	}
	mut := filepath.Join(tmp, fmt.Sprintf("m%d.go", i))
	ov := filepath.Join(tmp, fmt.Sprintf("m%d.json", i))
	overlay, _ := json.Marshal(map[string]map[string]string{"Replace": {m.File: mut}})
	if err := os.WriteFile(mut, m.Apply(src), 0o644); err != nil {
		res.Status, res.Failed = Invalid, err.Error()
		return res
	}
	if err := os.WriteFile(ov, overlay, 0o644); err != nil {
		res.Status, res.Failed = Invalid, err.Error()
		return res
	}
	defer os.Remove(mut)
	defer os.Remove(ov)
	start := time.Now()
	st, out := testOnce(ctx, cfg, pi, ov, timeout, "-failfast") // the first failure decides
	res.Elapsed = time.Since(start)
	res.Status = st
	if st == Killed {
		res.Failed = firstFailure(out)
	}
	return res
}

// testOnce runs the package's tests (with an overlay when ov is set) and
// classifies the outcome.
func testOnce(ctx context.Context, cfg Config, pi pkgInfo, ov string, timeout time.Duration, extra ...string) (string, string) {
	args := []string{"test", "-count=1", "-vet=off", "-timeout", timeout.String()}
	args = append(args, extra...)
	if ov != "" {
		args = append(args, "-overlay", ov)
	}
	args = append(args, cfg.TestFlags...)
	args = append(args, pi.ImportPath)
	tctx, cancel := context.WithTimeout(ctx, timeout+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(tctx, "go", args...)
	cmd.Dir = cfg.Dir
	cmd.WaitDelay = 5 * time.Second
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	out := buf.String()
	switch {
	case err == nil:
		return Survived, out
	case tctx.Err() != nil && ctx.Err() == nil, strings.Contains(out, "panic: test timed out after"):
		return TimedOut, out
	case strings.Contains(out, "[build failed]"), strings.Contains(out, "[setup failed]"):
		return Invalid, out
	}
	return Killed, out
}

// firstFailure is the name of the first failing test in go test's output.
func firstFailure(out string) string {
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if name, ok := strings.CutPrefix(l, "--- FAIL: "); ok {
			if i := strings.IndexByte(name, ' '); i > 0 {
				name = name[:i]
			}
			return name
		}
		if strings.HasPrefix(l, "panic: ") {
			return "panic"
		}
	}
	return ""
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// coverage is the baseline run's coverage: for each file (absolute path),
// its blocks and whether a test executed them.
type coverage map[string][]coverBlock

type coverBlock struct {
	startLine, startCol, endLine, endCol int
	count                                int
}

// readCoverage reads a go test -coverprofile file of the package pi.
func readCoverage(path string, pi pkgInfo) (coverage, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading coverage: %w", err)
	}
	cov := coverage{}
	for _, line := range strings.Split(string(data), "\n") {
		if line == "" || strings.HasPrefix(line, "mode:") {
			continue
		}
		var file string
		var b coverBlock
		var stmts int
		i := strings.LastIndex(line, ":")
		if i < 0 {
			continue
		}
		file = line[:i]
		if _, err := fmt.Sscanf(line[i+1:], "%d.%d,%d.%d %d %d", &b.startLine, &b.startCol, &b.endLine, &b.endCol, &stmts, &b.count); err != nil {
			return nil, fmt.Errorf("coverage line %q: %w", line, err)
		}
		if rest, ok := strings.CutPrefix(file, pi.ImportPath+"/"); ok && !strings.Contains(rest, "/") {
			abs := filepath.Join(pi.Dir, rest)
			cov[abs] = append(cov[abs], b)
		}
	}
	return cov, nil
}

// unrun reports whether m lies in a block that no test executed. Mutants
// outside every block (package-level declarations, and the expressions of
// case clauses, which the cover tool counts in no block) are run.
//
// The position compared is the first edit's, line and column: a block of
// the profile may start in the middle of a line (a case clause's body starts
// after its colon), and the expression before it on that line is not in it.
func (c coverage) unrun(m Mutant) bool {
	line, col := m.Line, 0
	if len(m.Edits) > 0 && m.src != nil && m.Edits[0].Start <= len(m.src) {
		line, col = position(m.src, m.Edits[0].Start)
	}
	seen := false
	for _, b := range c[m.File] {
		if !b.contains(line, col) {
			continue
		}
		if b.count > 0 {
			return false
		}
		seen = true
	}
	return seen
}

// contains reports whether the position line:col (col 0: anywhere on the
// line) lies in b.
func (b coverBlock) contains(line, col int) bool {
	if line < b.startLine || line > b.endLine {
		return false
	}
	if col == 0 {
		return true
	}
	if line == b.startLine && col < b.startCol {
		return false
	}
	if line == b.endLine && col >= b.endCol {
		return false
	}
	return true
}

// position is the 1-based line and byte column of offset off in src, as
// the cover tool counts them.
func position(src []byte, off int) (line, col int) {
	line = 1 + bytes.Count(src[:off], []byte("\n"))
	col = off - bytes.LastIndexByte(src[:off], '\n')
	return line, col
}
