package instance

import (
	"errors"
	"fmt"
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
	return nil
}

// archiveOf is the archive number and checksum of cfg's deployment, for
// logs; 0 and "" when undeployed.
func archiveOf(cfg *groupconf.Config) (int, string) {
	if d := cfg.Deployment; d != nil {
		return d.Archive, d.Checksum
	}
	return 0, ""
}

// SetInService takes the instance out of the load balancer (false:
// /healthchecklb answers 503 while everything else is still served) or puts
// it back (true). It is independent of the phase: once shutdown begins,
// /healthchecklb answers 503 whatever this says. A new process starts in
// service.
func (i *Instance) SetInService(on bool) {
	if i.inService.Swap(on) != on {
		i.log.Info("load balancer state changed", "inService", on)
	}
}

// InService reports whether the instance is in service (SetInService).
func (i *Instance) InService() bool { return i.inService.Load() }
