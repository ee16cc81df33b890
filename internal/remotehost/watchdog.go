package remotehost

import (
	"bufio"
	"context"
	"errors"
	"net"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/h1"
)

// wdSpec is what a watchdog needs; cmp is comparable so that a changed
// configuration restarts the watchdog.
type wdSpec struct {
	cmp struct {
		w          groupconf.Watchdog
		addr       string
		hostHeader string
		http10     bool
		sni        string
		verify     bool
		caFile     string
	}
	st   *addrState
	host *Host
}

func (h *Host) wdSpec(a *Address) wdSpec {
	var s wdSpec
	s.cmp.w = h.Settings.Watchdog
	s.cmp.addr = a.up.Addr
	s.cmp.hostHeader = string(h.HostHeader)
	s.cmp.http10 = h.Settings.HTTP10
	s.cmp.sni, s.cmp.verify, s.cmp.caFile = h.Settings.SNI, h.Settings.VerifyServerCertificate, h.Settings.CAFile
	s.st, s.host = a.st, h
	return s
}

// watchdog is the goroutine checking one address.
type watchdog struct {
	spec   wdSpec
	st     *addrState
	cancel context.CancelFunc
	done   chan struct{}
}

func (w *watchdog) stop() {
	w.cancel()
	<-w.done
}

func (r *Registry) startWatchdog(spec wdSpec) *watchdog {
	ctx, cancel := context.WithCancel(context.Background())
	wd := &watchdog{spec: spec, st: spec.st, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(wd.done)
		r.runWatchdog(ctx, spec)
	}()
	return wd
}

// runWatchdog checks the address every interval until ctx ends: the first
// check at once, then one per interval.
func (r *Registry) runWatchdog(ctx context.Context, spec wdSpec) {
	cfg := spec.cmp.w
	h := spec.host
	up := &h1.Upstream{
		Addr: spec.cmp.addr, TLS: h.tlsConf, DialTimeout: cfg.Timeout.D(), ActiveTimeout: cfg.Timeout.D(),
		TransactionTimeout: cfg.Timeout.D(), HTTP10: h.Settings.HTTP10,
	}
	st := spec.st
	st.wdPasses.Store(0)
	st.wdFails.Store(0)
	log := r.log.With("remoteHost", h.Name, "address", spec.cmp.addr)
	t := time.NewTicker(cfg.Interval.D())
	defer t.Stop()
	for {
		err := check(ctx, up, cfg, h.HostHeader)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			st.wdFails.Store(0)
			if p := st.wdPasses.Add(1); st.watchdogDown.Load() && int(p) >= cfg.HealthyThreshold {
				st.watchdogDown.Store(false)
				st.failedUntil.Store(0) // mutate:equivalent const until 1 ns after the clock's base (package init) is as past as 0
				log.Info("watchdog: address back in rotation", "passes", p)
			}
		} else {
			st.wdPasses.Store(0)
			st.lastErr.Store(&lastError{msg: "watchdog: " + err.Error(), at: time.Now()})
			if f := st.wdFails.Add(1); !st.watchdogDown.Load() && int(f) >= cfg.UnhealthyThreshold {
				st.watchdogDown.Store(true)
				log.Warn("watchdog: address out of rotation", "failures", f, "error", err.Error())
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

var errWatchdogStatus = errors.New("status outside 2xx-4xx")

// check sends one watchdog request; 2xx to 4xx is alive.
func check(ctx context.Context, up *h1.Upstream, cfg groupconf.Watchdog, host []byte) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout.D())
	defer cancel()
	var w discard
	out := &h1.Outgoing{Method: []byte(cfg.Method), Path: []byte(cfg.Path), Host: host}
	res, err := h1.Forward(ctx, up, &w, out)
	if err != nil {
		return err
	}
	if res.Status < 200 || res.Status > 499 {
		return errWatchdogStatus
	}
	return nil
}

// discard is a ResponseWriter that keeps only the status.
type discard struct {
	h      h1.Header
	status int
	n      int64
}

func (d *discard) Header() *h1.Header          { return &d.h }
func (d *discard) WriteHeader(status int)      { d.status = status }
func (d *discard) Write(p []byte) (int, error) { d.n += int64(len(p)); return len(p), nil }
func (d *discard) Flush() error                { return nil }
func (d *discard) Hijack() (net.Conn, *bufio.Reader, error) {
	return nil, nil, errors.New("watchdog: no upgrade")
}
func (d *discard) Written() int64 { return d.n }
func (d *discard) Status() int    { return d.status }
