package upgrade

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// fake records the steps and checks the dance: an instance is restarted
// only while out of its pool, and put back only once healthy.
type fake struct {
	t        *testing.T
	log      []string
	out      map[string]bool // instance id → out of the pool
	binary   map[string]int  // host id → 0 old, 1 new
	runs     map[string]int  // instance id → the binary it runs
	failOn   string          // a step's log line that fails (once, unless failAlways)
	failAll  bool
	failed   bool
	healthy  map[string]bool
	nm       map[string]int // host id → the binary its node manager runs
	oldNM    bool           // node managers that cannot restart themselves
	noBackup bool           // no backup to take the configuration from
}

func newFake(t *testing.T) *fake {
	return &fake{t: t, out: map[string]bool{}, binary: map[string]int{}, runs: map[string]int{}, healthy: map[string]bool{}, nm: map[string]int{}}
}

func (f *fake) RestoreConfig(ctx context.Context, h Host) error {
	if f.noBackup {
		f.log = append(f.log, "config "+h.ID+" (none)")
		return fmt.Errorf("%w (--no-backup)", ErrNoBackup)
	}
	return f.do("config " + h.ID)
}

func (f *fake) RestartNodeManager(ctx context.Context, h Host) error {
	if f.oldNM {
		f.log = append(f.log, "nm "+h.ID+" (old)")
		return fmt.Errorf("%w (404)", ErrCannotRestart)
	}
	for _, in := range h.Instances {
		if f.out[in.ID] && f.failOn == "" { // a failed restart leaves its instance out
			f.t.Errorf("node manager of %s restarted while %s is out of its pool", h.ID, in.ID)
		}
	}
	if err := f.do("nm " + h.ID); err != nil {
		return err
	}
	f.nm[h.ID] = f.binary[h.ID]
	return nil
}

func (f *fake) do(line string) error {
	f.log = append(f.log, line)
	if line == f.failOn && (f.failAll || !f.failed) {
		f.failed = true
		return errors.New("boom")
	}
	return nil
}

func (f *fake) InstallBinary(ctx context.Context, h Host) error {
	if err := f.do("install " + h.ID); err != nil {
		return err
	}
	f.binary[h.ID] = 1
	return nil
}

func (f *fake) RestoreBinary(ctx context.Context, h Host) error {
	if err := f.do("restore " + h.ID); err != nil {
		return err
	}
	f.binary[h.ID] = 0
	return nil
}

func (f *fake) SetInService(ctx context.Context, in Instance, on bool) error {
	if on && !f.healthy[in.ID] {
		f.t.Errorf("%s put back in its pool while not healthy", in.ID)
	}
	if err := f.do(fmt.Sprintf("inservice %s %v", in.ID, on)); err != nil {
		return err
	}
	f.out[in.ID] = !on
	return nil
}

func (f *fake) Restart(ctx context.Context, in Instance) error {
	if !f.out[in.ID] {
		f.t.Errorf("%s restarted while in its pool", in.ID)
	}
	f.healthy[in.ID] = false
	if err := f.do("restart " + in.ID); err != nil {
		return err
	}
	f.runs[in.ID] = f.binary[in.HostID]
	return nil
}

func (f *fake) Healthy(ctx context.Context, in Instance) error {
	if err := f.do("healthy " + in.ID); err != nil {
		return err
	}
	f.healthy[in.ID] = true
	return nil
}

func domain() []Host {
	return []Host{
		{ID: "host-1", Name: "a", Instances: []Instance{{ID: "i1", HostID: "host-1"}, {ID: "i2", HostID: "host-1"}}},
		{ID: "host-2", Name: "b", Instances: []Instance{{ID: "i3", HostID: "host-2"}}},
	}
}

func TestRun(t *testing.T) {
	f := newFake(t)
	for _, h := range domain() {
		for _, in := range h.Instances {
			f.healthy[in.ID] = true
		}
	}
	var progress []string
	rep, err := Run(t.Context(), domain(), f, Options{Progress: func(s string) { progress = append(progress, s) }})
	if err != nil {
		t.Fatal(err)
	}
	want := "install host-1,inservice i1 false,restart i1,healthy i1,inservice i1 true,inservice i2 false,restart i2,healthy i2,inservice i2 true,nm host-1," +
		"install host-2,inservice i3 false,restart i3,healthy i3,inservice i3 true,nm host-2"
	if got := strings.Join(f.log, ","); got != want {
		t.Errorf("steps:\n got %s\nwant %s", got, want)
	}
	for _, id := range []string{"i1", "i2", "i3"} {
		if f.runs[id] != 1 {
			t.Errorf("%s does not run the new binary", id)
		}
	}
	if f.nm["host-1"] != 1 || f.nm["host-2"] != 1 {
		t.Errorf("node managers' binaries: %v, want the new one on both", f.nm)
	}
	if rep.RolledBack || strings.Join(rep.Upgraded, ",") != "host-1,host-2" || len(rep.Steps) != 16 || len(progress) != 16 || len(rep.Notes) != 0 {
		t.Errorf("report: %+v, %d progress lines", rep, len(progress))
	}
}

func TestRunFailsAndRollsBack(t *testing.T) {
	for _, fail := range []string{"restart i3", "healthy i3", "install host-2", "inservice i2 false", "nm host-2", "nm host-1"} {
		t.Run(fail, func(t *testing.T) {
			f := newFake(t)
			for _, h := range domain() {
				for _, in := range h.Instances {
					f.healthy[in.ID] = true
				}
			}
			f.failOn = fail
			rep, err := Run(t.Context(), domain(), f, Options{})
			if err == nil || !strings.Contains(err.Error(), "the old binary is back on every host it reached") || !strings.Contains(err.Error(), "boom") {
				t.Fatalf("err: %v", err)
			}
			if !rep.RolledBack || len(rep.Upgraded) != 0 {
				t.Errorf("report: %+v", rep)
			}
			for h, b := range f.binary {
				if b != 0 {
					t.Errorf("%s keeps the new binary", h)
				}
			}
			for id, b := range f.runs {
				if b != 0 {
					t.Errorf("%s still runs the new binary", id)
				}
			}
			for h, b := range f.nm {
				if b != 0 {
					t.Errorf("the node manager of %s still runs the new binary", h)
				}
			}
			for id, out := range f.out {
				if out {
					t.Errorf("%s left out of its pool", id)
				}
			}
			if strings.Contains(strings.Join(f.log, ","), "restore host-2") != (fail != "install host-2" && fail != "inservice i2 false" && fail != "nm host-1") {
				t.Errorf("host-2's binary restored or not as it should: %v", f.log)
			}
		})
	}
}

func TestRollbackFailsToo(t *testing.T) {
	f := newFake(t)
	f.healthy["i1"], f.healthy["i2"], f.healthy["i3"] = true, true, true
	f.failOn, f.failAll = "restart i2", true
	// The rollback's restart of i2 fails as well: both errors are told.
	_, err := Run(t.Context(), domain(), f, Options{})
	if err == nil || !strings.Contains(err.Error(), "and so did its rollback") {
		t.Fatalf("err: %v", err)
	}
}

func TestRollback(t *testing.T) {
	f := newFake(t)
	f.healthy["i1"], f.healthy["i2"], f.healthy["i3"] = true, true, true
	f.failOn = "restore host-1"
	rep, err := Rollback(t.Context(), domain(), f, Options{})
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("err: %v", err)
	}
	// host-1 failed; host-2 was still rolled back.
	if got := strings.Join(f.log, ","); got != "restore host-1,restore host-2,config host-2,inservice i3 false,restart i3,healthy i3,inservice i3 true,nm host-2" {
		t.Errorf("steps: %s", got)
	}
	if len(rep.Steps) != 8 {
		t.Errorf("report: %+v", rep)
	}
}

func TestDelaysAndCancel(t *testing.T) {
	f := newFake(t)
	f.healthy["i1"], f.healthy["i2"], f.healthy["i3"] = true, true, true
	start := time.Now()
	if _, err := Run(t.Context(), domain()[1:], f, Options{DelayBefore: 100 * time.Millisecond, DelayAfter: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("one instance with 100 ms before and after took %s", d)
	}
	// Cancelled while waiting before a restart: the instance goes back in,
	// and the binary back.
	f = newFake(t)
	f.healthy["i3"] = true
	ctx, cancel := context.WithCancel(t.Context())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	rep, err := Run(ctx, domain()[1:], f, Options{DelayBefore: time.Second, DelayAfter: time.Second})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	if f.out["i3"] || f.binary["host-2"] != 0 {
		t.Errorf("after a cancel: out %v, binary %d (log %v)", f.out["i3"], f.binary["host-2"], f.log)
	}
	// Put back in at once when cut while out, then the undo's dance.
	want := "install host-2,inservice i3 false,inservice i3 true,restore host-2,config host-2,inservice i3 false,restart i3,healthy i3,inservice i3 true,nm host-2"
	if got := strings.Join(f.log, ","); got != want {
		t.Errorf("steps after a cancel:\n got %s\nwant %s", got, want)
	}
	if last := rep.Steps[len(rep.Steps)-1]; last.Error != "" {
		t.Errorf("the undo's last step: %+v", last)
	}
	// Cancelled before it began, with no delays: it stops at the first
	// wait, not after restarting.
	f = newFake(t)
	f.healthy["i3"] = true
	ctx, cancel = context.WithCancel(t.Context())
	cancel()
	if _, err := Run(ctx, domain()[1:], f, Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled before: %v", err)
	}
	if strings.Count(strings.Join(f.log, ","), "restart i3") != 1 {
		t.Errorf("cancelled before: restarted more than by the undo: %v", f.log)
	}
}

func TestStepsRecorded(t *testing.T) {
	f := newFake(t)
	f.healthy["i1"], f.healthy["i2"], f.healthy["i3"] = true, true, true
	f.failOn = "healthy i2"
	var progress []string
	rep, err := Run(t.Context(), domain(), f, Options{Progress: func(s string) { progress = append(progress, s) }})
	if err == nil {
		t.Fatal("no error")
	}
	var failed []Step
	for _, s := range rep.Steps {
		if s.Error != "" {
			failed = append(failed, s)
		}
		if s.At.IsZero() {
			t.Errorf("a step without its time: %+v", s)
		}
	}
	if len(failed) != 1 || failed[0].Error != "boom" || !strings.Contains(failed[0].What, "healthy") {
		t.Errorf("failed steps: %+v", failed)
	}
	if !slices.ContainsFunc(progress, func(s string) bool { return strings.HasSuffix(s, "healthy: FAILED: boom") }) {
		t.Errorf("progress does not say the failure: %v", progress)
	}
}

func TestUndoFailures(t *testing.T) {
	// The undo cannot put the binary back: both errors told.
	f := newFake(t)
	f.healthy["i1"], f.healthy["i2"], f.healthy["i3"] = true, true, true
	f.failOn, f.failAll = "install host-2", false
	restoreFails := &failingRestore{fake: f}
	_, err := Run(t.Context(), domain(), restoreFails, Options{})
	if err == nil || !strings.Contains(err.Error(), "and so did its rollback") || !strings.Contains(err.Error(), "cannot restore") {
		t.Errorf("the undo's restore failing: %v", err)
	}
	// Rollback: an instance that does not come back is an error, and the
	// others are still done.
	f = newFake(t)
	f.healthy["i1"], f.healthy["i2"], f.healthy["i3"] = true, true, true
	f.failOn, f.failAll = "restart i1", true
	_, err = Rollback(t.Context(), domain(), f, Options{})
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("rollback with an instance failing: %v", err)
	}
	if !strings.Contains(strings.Join(f.log, ","), "restart i3") {
		t.Errorf("rollback stopped at the first failure: %v", f.log)
	}
}

type failingRestore struct{ *fake }

func (f *failingRestore) RestoreBinary(ctx context.Context, h Host) error {
	f.log = append(f.log, "restore "+h.ID)
	return errors.New("cannot restore")
}

// A node manager that cannot restart itself (older than the feature) is a
// note in the report, not a failure: the upgrade goes on.
func TestOldNodeManager(t *testing.T) {
	f := newFake(t)
	f.healthy["i1"], f.healthy["i2"], f.healthy["i3"] = true, true, true
	f.oldNM = true
	rep, err := Run(t.Context(), domain(), f, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Notes) != 2 || !strings.Contains(rep.Notes[0], "host host-1 (a)") || !strings.Contains(rep.Notes[0], "nodemanager -k, then nodemanager -d") {
		t.Errorf("notes: %q", rep.Notes)
	}
	if strings.Join(rep.Upgraded, ",") != "host-1,host-2" {
		t.Errorf("upgraded: %v", rep.Upgraded)
	}
	for _, s := range rep.Steps {
		if s.Error != "" {
			t.Errorf("a failed step: %+v", s)
		}
	}
}

// Without a backup, the configuration is not put back: a note, not a
// failure; the binary still is.
func TestRollbackWithoutBackup(t *testing.T) {
	f := newFake(t)
	f.healthy["i1"], f.healthy["i2"], f.healthy["i3"] = true, true, true
	f.noBackup = true
	rep, err := Rollback(t.Context(), domain(), f, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Notes) != 2 || !strings.Contains(rep.Notes[1], "host host-2 (b): configuration not put back") {
		t.Errorf("notes: %q", rep.Notes)
	}
	if !strings.Contains(strings.Join(f.log, ","), "restore host-2,config host-2 (none),inservice i3 false") {
		t.Errorf("steps: %v", f.log)
	}
}

// A configuration that cannot be put back is a failure of the rollback.
func TestRollbackConfigFails(t *testing.T) {
	f := newFake(t)
	f.healthy["i1"], f.healthy["i2"], f.healthy["i3"] = true, true, true
	f.failOn = "config host-1"
	_, err := Rollback(t.Context(), domain(), f, Options{})
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("err: %v", err)
	}
	if !strings.Contains(strings.Join(f.log, ","), "nm host-2") {
		t.Errorf("the rollback stopped at the failure: %v", f.log)
	}
}
