package halab

import (
	"flag"
	"fmt"
	"strings"
	"testing"
	"text/tabwriter"
	"time"
)

var (
	soak = flag.Duration("soak", 0, "repeat the HA lab's scenarios for this long (e.g. 30m) and print cumulative counts; 0: one round")
	only = flag.String("scenarios", "", "run only these scenarios of the HA lab, by number (e.g. 4 or 1,3); empty: all")
)

// selected says whether scenario sc runs (-scenarios).
func selected(sc scenario) bool {
	if *only == "" {
		return true
	}
	num, _, _ := strings.Cut(sc.name, " ")
	for _, n := range strings.Split(*only, ",") {
		if strings.TrimSpace(n) == num {
			return true
		}
	}
	return false
}

// scenario is one row of the lab's table.
type scenario struct {
	name    string
	promise string
	run     func(l *lab, round int, o *outcome)
}

// scenarios in the order they run. The ANM killed in the middle of a
// rollout runs last: on code that does not resume the rollout it leaves
// the group inconsistent, and the lab repairs it before the next round.
var scenarios = []scenario{
	{"1 rolling restart (startinstance -k, -d)", "0 failed, 0 LB retries", (*lab).rollingRestart},
	{"2 zero-downtime deploy + rollback", "0 failed, 0 LB retries", (*lab).deployAndRollback},
	{"3 kill -9 instance", "failed <= in flight (5); back, restarted", (*lab).killInstance},
	{"5 aborted large uploads", "0 failed of others, 0 LB retries, nothing stored", (*lab).abortedUploads},
	{"6 kill -9 node manager + instance", "failed <= in flight (5); back <= 15s after nm restart", (*lab).killNodeManagerAndInstance},
	{"4 kill -9 ANM mid-rollout", "0 failed; consistent, all inService <= 90s", (*lab).killANMMidRollout},
}

// outcome is what one run of a scenario counted and found wrong.
type outcome struct {
	requests, failures, sockErrs, lbRetries int64
	notes                                   []string
	problems                                []string
	elapsed                                 time.Duration
}

func (o *outcome) note(format string, args ...any) {
	o.notes = append(o.notes, fmt.Sprintf(format, args...))
}

// fail records a broken promise (or a step that could not be done).
func (o *outcome) fail(format string, args ...any) {
	o.problems = append(o.problems, fmt.Sprintf(format, args...))
}

// count adds what the load l saw, and HAProxy's retries since before.
func (o *outcome) count(ld *load, lb *haproxy, retriesBefore int64) {
	o.requests += ld.requests.Load()
	o.failures += ld.failures.Load()
	o.sockErrs += ld.sockErrs.Load()
	o.lbRetries += lb.retried() - retriesBefore
}

// total is a scenario's cumulative counts over the rounds.
type total struct {
	rounds, passed                          int
	requests, failures, sockErrs, lbRetries int64
	worst                                   int64 // most failed + socket errors in one round
	elapsed                                 time.Duration
}

func TestLab(t *testing.T) {
	if testing.Short() {
		t.Skip("the HA lab runs real processes for about two minutes; not in -short")
	}
	l := newLab(t)
	totals := make([]total, len(scenarios))
	start := time.Now()
	for round := 1; ; round++ {
		rows := make([]*outcome, len(scenarios))
		for i, sc := range scenarios {
			if !selected(sc) {
				continue
			}
			o := &outcome{}
			began := time.Now()
			sc.run(l, round, o)
			o.elapsed = time.Since(began)
			rows[i] = o
			for _, p := range o.problems {
				t.Errorf("round %d, scenario %q (promised: %s): %s", round, sc.name, sc.promise, p)
			}
			if len(o.problems) > 0 {
				if err := l.repair(); err != nil {
					t.Fatalf("round %d: the lab could not be repaired after %q: %v", round, sc.name, err)
				}
			}
			tt := &totals[i]
			tt.rounds++
			if len(o.problems) == 0 {
				tt.passed++
			}
			tt.requests += o.requests
			tt.failures += o.failures
			tt.sockErrs += o.sockErrs
			tt.lbRetries += o.lbRetries
			tt.worst = max(tt.worst, o.failures+o.sockErrs)
			tt.elapsed += o.elapsed
		}
		t.Logf("round %d (%s since the start):\n%s", round, time.Since(start).Round(time.Second), roundTable(rows))
		if *soak == 0 || time.Since(start) >= *soak {
			break
		}
	}
	if *soak > 0 {
		t.Logf("soak of %s, cumulative:\n%s", time.Since(start).Round(time.Second), totalsTable(totals))
	}
}

// roundTable is the table of one round.
func roundTable(rows []*outcome) string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "scenario\trequests\tfailed\tsocket errors\tLB retries\tpromised\tresult\ttime\tnotes")
	for i, o := range rows {
		if o == nil { // not selected
			continue
		}
		res := "pass"
		if len(o.problems) > 0 {
			res = "FAIL"
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", scenarios[i].name, o.requests, o.failures, o.sockErrs, o.lbRetries,
			scenarios[i].promise, res, o.elapsed.Round(100*time.Millisecond), strings.Join(o.notes, "; "))
	}
	w.Flush()
	return b.String()
}

// totalsTable is the soak's cumulative table.
func totalsTable(totals []total) string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "scenario\trounds\tpassed\trequests\tfailed\tsocket errors\tworst round\tLB retries\tpromised\ttime")
	for i, tt := range totals {
		if tt.rounds == 0 {
			continue
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", scenarios[i].name, tt.rounds, tt.passed, tt.requests, tt.failures,
			tt.sockErrs, tt.worst, tt.lbRetries, scenarios[i].promise, tt.elapsed.Round(time.Second))
	}
	w.Flush()
	return b.String()
}
