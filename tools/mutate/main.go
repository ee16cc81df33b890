// Command mutate is the repository's mutation tester (scripts/mutate runs
// it): for each package given, it changes the code one small mutant at a
// time and runs the package's tests against each. See docs/testing.md and
// internal/mutate.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/mutate"
)

const usage = `usage: scripts/mutate [flags] PACKAGE...

Mutation testing: for each package (./internal/h1, one package per
argument), every mutant of its non-test files is made in turn (through go
test -overlay: the source tree is never written) and the package's tests
are run against it.

  killed      a test failed: the tests pin this behaviour down
  survived    every test passed: no test notices this change
  timeout     the tests did not finish: a test without a deadline
  invalid     the mutant does not compile (not counted)
  equivalent  marked "// mutate:equivalent OP reason" in the source (not run, not counted)

score = killed / (killed + survived + timeout)

Operators: %s.

Flags:
`

func main() {
	fs := flag.NewFlagSet("mutate", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), usage, strings.Join(mutate.Operators, ", "))
		fs.PrintDefaults()
	}
	var cfg mutate.Config
	var ops, files, testFlags, jsonOut string
	fs.IntVar(&cfg.Sample, "sample", 0, "run at most this many mutants per package, chosen at random with -seed (0: all)")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "seed for -sample")
	fs.IntVar(&cfg.Jobs, "j", 2, "mutants tested at once")
	fs.DurationVar(&cfg.Timeout, "timeout", 0, "per mutant (default: 3 × the package's test time + 20s)")
	fs.StringVar(&ops, "ops", "", "comma-separated operators to use (default: all)")
	fs.StringVar(&files, "files", "", "comma-separated parts of file names to mutate (default: every non-test file)")
	fs.StringVar(&testFlags, "testflags", "", "extra go test flags, space-separated (e.g. \"-short\")")
	fs.BoolVar(&cfg.List, "list", false, "list the mutants (and the equivalent ones) without running anything")
	fs.StringVar(&jsonOut, "json", "", "write every result as JSON to this file")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			return
		}
		os.Exit(2)
	}
	cfg.Packages = fs.Args()
	if len(cfg.Packages) == 0 {
		fs.Usage()
		os.Exit(2)
	}
	split := func(s string) []string {
		if s == "" {
			return nil
		}
		return strings.Split(s, ",")
	}
	cfg.Ops, cfg.Files, cfg.TestFlags = split(ops), split(files), strings.Fields(testFlags)
	for _, op := range cfg.Ops {
		if !contains(mutate.Operators, op) {
			fmt.Fprintf(os.Stderr, "mutate: unknown operator %q (operators: %s)\n", op, strings.Join(mutate.Operators, ", "))
			os.Exit(2)
		}
	}
	cfg.Log = os.Stdout
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	start := time.Now()
	results, sums, err := mutate.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mutate:", err)
		os.Exit(1)
	}
	if jsonOut != "" {
		b, _ := json.MarshalIndent(results, "", "  ")
		if err := os.WriteFile(jsonOut, b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "mutate:", err)
			os.Exit(1)
		}
	}
	if cfg.List {
		for _, r := range results {
			eq := ""
			if r.Equiv {
				eq = "  [equivalent: " + r.Reason + "]"
			}
			fmt.Printf("%s%s\n", r.Mutant, eq)
		}
		return
	}
	fmt.Println()
	for _, r := range results {
		if r.Status == mutate.Equivalent {
			fmt.Printf("equivalent %s — %s\n", r.Mutant, r.Reason)
		}
	}
	fmt.Printf("\n| package | mutants | killed | survived | timeout | invalid | equivalent | score |\n|---|---|---|---|---|---|---|---|\n")
	for _, s := range sums {
		fmt.Printf("| %s | %d | %d | %d | %d | %d | %d | %.1f %% |\n", s.Package, s.Total, s.Killed, s.Survived, s.TimedOut, s.Invalid, s.Equivalent, s.Score())
	}
	fmt.Printf("\n(%s)\n", time.Since(start).Round(time.Second))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
