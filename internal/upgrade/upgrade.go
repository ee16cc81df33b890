// Package upgrade replaces the gatehouse binary of a domain, host by host,
// and restarts each host's instances one at a time with the zero-downtime
// dance (out of the load balancer, restart on the new binary, healthy,
// back in), so that a load balancer in front of a group never sends to an
// instance that is restarting (docs/backup.md#upgrades). A step that fails
// stops the upgrade and puts the old binary back everywhere it went,
// restarting again the instances that run the new one.
//
// What an upgrade does to the domain is an Ops: the tool's goes through
// the node managers; the tests' are fakes.
package upgrade

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Instance is one gateway instance.
type Instance struct {
	GroupID, GroupName string
	ID, Name           string
	HostID             string
}

func (in Instance) String() string {
	return fmt.Sprintf("instance %q (%s) of group %q", in.Name, in.ID, in.GroupName)
}

// Host is one host and its instances, in the order they are restarted.
type Host struct {
	ID, Name  string
	Instances []Instance
}

// Ops are the steps of an upgrade.
type Ops interface {
	// InstallBinary puts the new binary on host (the old one kept).
	InstallBinary(ctx context.Context, h Host) error
	// RestoreBinary puts the binary InstallBinary replaced back.
	RestoreBinary(ctx context.Context, h Host) error
	// SetInService takes in out of its load balancer's pool, or puts it
	// back.
	SetInService(ctx context.Context, in Instance, on bool) error
	// Restart stops in (gracefully) and starts it on the host's binary.
	Restart(ctx context.Context, in Instance) error
	// Healthy waits until in answers its health check.
	Healthy(ctx context.Context, in Instance) error
	// RestartNodeManager restarts host's node manager on the host's binary
	// (its instances keep running) and checks that it runs the binary
	// expected there. An error wrapping ErrCannotRestart (a node manager
	// older than the feature) is noted, not a failure.
	RestartNodeManager(ctx context.Context, h Host) error
	// RestoreConfig puts host's configuration back to the backup taken
	// before the upgrade (after its binary, before its instances restart).
	// An error wrapping ErrNoBackup is noted, not a failure.
	RestoreConfig(ctx context.Context, h Host) error
}

// ErrNoBackup is wrapped by RestoreConfig's error when there is no backup
// of the host to take its configuration from (an upgrade with
// --no-backup, a host missing from the backup).
var ErrNoBackup = errors.New("no backup to take the configuration from")

// ErrCannotRestart is wrapped by RestartNodeManager's error when the node
// manager cannot restart itself: the operator restarts it (nodemanager -k,
// nodemanager -d); the report says so.
var ErrCannotRestart = errors.New("the node manager cannot restart itself")

// Options of Run and Rollback.
type Options struct {
	// DelayBefore is the wait after taking an instance out of the load
	// balancer, before restarting it (the load balancer's health checks
	// must see it out); DelayAfter the wait after putting it back in,
	// before the next one (they must see it in).
	DelayBefore, DelayAfter time.Duration
	// Progress, when not nil, is told each step.
	Progress func(step string)
}

// Step is one thing done, as the report lists it.
type Step struct {
	What  string    `json:"what"`
	At    time.Time `json:"at"`
	Error string    `json:"error,omitempty"`
}

// Report is what Run or Rollback did.
type Report struct {
	Steps []Step `json:"steps"`
	// Upgraded are the hosts that run the new binary at the end.
	Upgraded []string `json:"upgraded"`
	// RolledBack is true when a failure put the old binary back.
	RolledBack bool `json:"rolledBack,omitempty"`
	// Notes are what the operator must still do (a node manager to
	// restart by hand).
	Notes []string `json:"notes,omitempty"`
}

// restoreConfig puts h's configuration back as a step; ErrNoBackup
// becomes a note.
func (r *run) restoreConfig(ctx context.Context, h Host) error {
	err := r.ops.RestoreConfig(ctx, h)
	if errors.Is(err, ErrNoBackup) {
		r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("host %s (%s): configuration not put back: %v", h.ID, h.Name, err))
		_ = r.step(fmt.Sprintf("host %s (%s): configuration not put back (%v)", h.ID, h.Name, err), nil)
		return nil
	}
	return r.step(fmt.Sprintf("host %s (%s): configuration of the backup put back", h.ID, h.Name), err)
}

// restartNM restarts h's node manager as a step; ErrCannotRestart becomes
// a note.
func (r *run) restartNM(ctx context.Context, h Host, what string) error {
	err := r.ops.RestartNodeManager(ctx, h)
	if errors.Is(err, ErrCannotRestart) {
		note := fmt.Sprintf("host %s (%s): %v: restart it with nodemanager -k, then nodemanager -d (its instances keep running)", h.ID, h.Name, err)
		r.rep.Notes = append(r.rep.Notes, note)
		_ = r.step(fmt.Sprintf("host %s (%s): node manager not restarted (%v)", h.ID, h.Name, err), nil)
		return nil
	}
	return r.step(fmt.Sprintf("host %s (%s): %s", h.ID, h.Name, what), err)
}

type run struct {
	ops Ops
	o   Options
	rep *Report
}

func (r *run) step(what string, err error) error {
	s := Step{What: what, At: time.Now().UTC()}
	if err != nil {
		s.Error = err.Error()
	}
	r.rep.Steps = append(r.rep.Steps, s)
	if r.o.Progress != nil {
		if err != nil {
			r.o.Progress(what + ": FAILED: " + err.Error())
		} else {
			r.o.Progress(what)
		}
	}
	return err
}

func sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil || d <= 0 { // mutate:equivalent boundary,const a wait of 0 or 1 ns through the timer ends the same
		return err
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// restart is the dance for one instance: out, wait, restart, healthy, in,
// wait. An instance left out of the pool by a failure is put back in
// before the error returns (its old process, or none, serves as before).
func (r *run) restart(ctx context.Context, in Instance) error {
	if err := r.step(fmt.Sprintf("%s: out of the load balancer", in), r.ops.SetInService(ctx, in, false)); err != nil {
		return err
	}
	back := func() {
		_ = r.step(fmt.Sprintf("%s: back in the load balancer", in), r.ops.SetInService(ctx, in, true))
	}
	if err := sleep(ctx, r.o.DelayBefore); err != nil {
		back()
		return err
	}
	if err := r.step(fmt.Sprintf("%s: restarted", in), r.ops.Restart(ctx, in)); err != nil {
		return err
	}
	if err := r.step(fmt.Sprintf("%s: healthy", in), r.ops.Healthy(ctx, in)); err != nil {
		return err
	}
	// A restarted instance starts in its pool; this says so to the node
	// manager as well (and ends the lease of the out-of-service).
	back()
	return sleep(ctx, r.o.DelayAfter)
}

// Run upgrades hosts in order: on each, the new binary, then each of its
// instances in turn. A failure stops it: every host it installed the
// binary on gets the old one back and the instances restarted on the new
// one are restarted again; the error names the step, and says whether
// the rollback itself failed.
func Run(ctx context.Context, hosts []Host, ops Ops, o Options) (*Report, error) {
	rep := &Report{Upgraded: []string{}}
	r := &run{ops: ops, o: o, rep: rep}
	var touched []Host   // binary installed
	var moved []Instance // restarted on the new binary
	for _, h := range hosts {
		if err := r.step(fmt.Sprintf("host %s (%s): new binary installed", h.ID, h.Name), ops.InstallBinary(ctx, h)); err != nil {
			return rep, r.undo(ctx, touched, moved, err)
		}
		touched = append(touched, h)
		for _, in := range h.Instances {
			if err := r.restart(ctx, in); err != nil {
				// The instance that failed runs neither binary for sure:
				// it is restarted on the old one too.
				return rep, r.undo(ctx, touched, append(moved, in), err)
			}
			moved = append(moved, in)
		}
		// The node manager last: its instances already run the new
		// binary, and they keep running while it restarts.
		if err := r.restartNM(ctx, h, "node manager restarted on the new binary"); err != nil {
			return rep, r.undo(ctx, touched, moved, err)
		}
		rep.Upgraded = append(rep.Upgraded, h.ID)
	}
	return rep, nil
}

// undo puts the old binary back on touched and restarts moved on it.
func (r *run) undo(ctx context.Context, touched []Host, moved []Instance, cause error) error {
	r.rep.RolledBack = true
	r.rep.Upgraded = []string{}
	// A cancelled upgrade is still undone: the rollback has a context of
	// its own (bounded by its steps).
	rctx := context.WithoutCancel(ctx)
	var errs []error
	for _, h := range touched {
		if err := r.step(fmt.Sprintf("host %s (%s): old binary put back", h.ID, h.Name), r.ops.RestoreBinary(rctx, h)); err != nil {
			errs = append(errs, err)
		}
		if err := r.restoreConfig(rctx, h); err != nil {
			errs = append(errs, err)
		}
	}
	for _, in := range moved {
		if err := r.restart(rctx, in); err != nil {
			errs = append(errs, err)
		}
	}
	// Every node manager of a touched host is restarted on the old binary
	// (the one whose restart failed runs one of the two for sure).
	for _, h := range touched {
		if err := r.restartNM(rctx, h, "node manager restarted on the old binary"); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("the upgrade failed (%w), and so did its rollback: %v; the report lists every step", cause, errors.Join(errs...))
	}
	return fmt.Errorf("the upgrade failed, and the old binary is back on every host it reached: %w", cause)
}

// Rollback puts the previous binary back on every host and restarts its
// instances on it, with the same dance. It goes on after a failure (an
// operator rolling back wants as much back as can be) and returns every
// error.
func Rollback(ctx context.Context, hosts []Host, ops Ops, o Options) (*Report, error) {
	rep := &Report{Upgraded: []string{}}
	r := &run{ops: ops, o: o, rep: rep}
	var errs []error
	for _, h := range hosts {
		if err := r.step(fmt.Sprintf("host %s (%s): previous binary put back", h.ID, h.Name), ops.RestoreBinary(ctx, h)); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := r.restoreConfig(ctx, h); err != nil {
			errs = append(errs, err)
		}
		for _, in := range h.Instances {
			if err := r.restart(ctx, in); err != nil {
				errs = append(errs, err)
			}
		}
		if err := r.restartNM(ctx, h, "node manager restarted on the previous binary"); err != nil {
			errs = append(errs, err)
		}
	}
	return rep, errors.Join(errs...)
}
