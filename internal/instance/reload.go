package instance

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
)

// Deployment is the archive an instance's configuration was deployed from,
// as GET /status reports it.
type Deployment struct {
	Archive    int       `json:"archive"`
	Checksum   string    `json:"checksum"`
	DeployedAt time.Time `json:"deployedAt"`
	DeployedBy string    `json:"deployedBy"`
	Comment    string    `json:"comment,omitempty"`
}

// deploymentOf returns the deployment cfg came from; nil when it was not
// deployed (the files of the install directory as they are).
func deploymentOf(cfg *groupconf.Config) *Deployment {
	d := cfg.Deployment
	if d == nil {
		return nil
	}
	return &Deployment{Archive: d.Archive, Checksum: d.Checksum, DeployedAt: d.DeployedAt, DeployedBy: d.DeployedBy, Comment: d.Comment}
}

// Reload loads the configuration again through Options.Load (the same
// files and -D properties as at start) and swaps it in (see Swap). Reloads
// are serialized. Every reload is logged with the archive, the checksum and
// how long it took. Errors wrap ErrConfig (the configuration does not load or
// validate: nothing changed), ErrListen (a new listener cannot be bound:
// nothing changed) or ErrStopping.
func (i *Instance) Reload() error {
	i.reloadMu.Lock()
	defer i.reloadMu.Unlock()
	start := time.Now()
	if i.opts.Load == nil {
		return withKind(ErrConfig, errors.New("reloading configuration: this instance has no configuration source (Options.Load)"))
	}
	cfg, err := i.opts.Load()
	if err == nil && cfg == nil {
		err = errors.New("no configuration")
	}
	var changed []string
	if err != nil {
		err = withKind(ErrConfig, fmt.Errorf("reloading configuration: %w", err))
	} else {
		changed, err = i.swap(cfg)
	}
	ms := time.Since(start).Milliseconds()
	if err != nil {
		rt := i.rt.Load()
		a, _ := archiveOf(rt.cfg)
		i.log.Error("configuration reload refused; nothing changed", "error", err.Error(), "durationMs", ms,
			"runningChecksum", rt.cfg.Checksum(), "runningArchive", a)
		return err
	}
	a, sum := archiveOf(cfg)
	i.log.Info("configuration reloaded", "archive", a, "archiveChecksum", sum, "checksum", cfg.Checksum(),
		"durationMs", ms, "listenersChanged", changed)
	warnGroupFile(i.log, cfg)
	return nil
}

// warnGroupFile says that the group's conf/group.yaml differs from the
// deployed archive this instance runs: an edit there is not what a reload
// (SIGHUP) loads; it runs once deployed.
func warnGroupFile(log *slog.Logger, cfg *groupconf.Config) {
	if f := cfg.GroupFileNotDeployed; f != "" {
		a, _ := archiveOf(cfg)
		log.Warn("the group's group.yaml differs from the deployed archive this instance runs: edits to it are not loaded by a reload; deploy them (gatehouse deploy -g GROUP "+f+")",
			"file", f, "archive", a)
	}
}

// archiveOf is the archive number and checksum of cfg's deployment, for
// logs; 0 and "" when undeployed.
func archiveOf(cfg *groupconf.Config) (int, string) {
	if d := cfg.Deployment; d != nil {
		return d.Archive, d.Checksum
	}
	return 0, ""
}

// MaxLease bounds an out-of-service lease (POST /deployment/lb
// {"inService": false, "leaseSeconds": N}).
const MaxLease = time.Hour

// lbLease is the out-of-service lease: an instance taken out of the load
// balancer with a lease goes back in by itself when the lease runs out
// without being renewed, so that an instance never stays out because the
// process that took it out (an Admin Node Manager in the middle of a
// rollout) died.
type lbLease struct {
	mu    sync.Mutex
	gen   uint64      // advanced by every SetInService: an old timer does nothing
	timer *time.Timer // nil without a lease
	until time.Time   // when the lease runs out (zero without one)
}

// SetInServiceFor takes the instance out of the load balancer for at most
// lease (renewed by calling it again), or puts it back (on true, lease 0).
// A lease of 0 with on false takes it out until told otherwise.
func (i *Instance) SetInServiceFor(on bool, lease time.Duration) {
	l := &i.lease
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gen++
	if l.timer != nil {
		l.timer.Stop()
		l.timer, l.until = nil, time.Time{}
	}
	if !on && lease > 0 {
		gen := l.gen
		l.until = time.Now().Add(lease)
		l.timer = time.AfterFunc(lease, func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.gen != gen {
				return // renewed or ended meanwhile
			}
			l.timer, l.until = nil, time.Time{}
			if !i.inService.Swap(true) {
				i.log.Warn("out-of-service lease ran out without being renewed: back in the load balancer", "lease", lease.String())
			}
		})
	}
	if i.inService.Swap(on) != on {
		i.log.Info("load balancer state changed", "inService", on, "lease", lease.String())
	}
}

// OutOfServiceUntil is when the current out-of-service lease runs out
// (zero when in service, or out without a lease).
func (i *Instance) OutOfServiceUntil() time.Time {
	i.lease.mu.Lock()
	defer i.lease.mu.Unlock()
	return i.lease.until
}

// SetInService takes the instance out of the load balancer (false:
// /healthchecklb answers 503 while everything else is still served) or puts
// it back (true). It is independent of the phase: once shutdown begins,
// /healthchecklb answers 503 whatever this says. A new process starts in
// service.
func (i *Instance) SetInService(on bool) { i.SetInServiceFor(on, 0) }

// InService reports whether the instance is in service (SetInService).
func (i *Instance) InService() bool { return i.inService.Load() }
