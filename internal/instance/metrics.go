package instance

import (
	"bytes"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-gw/gatehouse/internal/h1"
	"github.com/gatehouse-gw/gatehouse/internal/metrics"
	"github.com/gatehouse-gw/gatehouse/internal/route"
)

// initMetrics creates the instance's metrics; the phase, in-flight count
// and configuration are read from the instance at scrape time.
func (i *Instance) initMetrics() {
	o := i.opts
	i.metrics = metrics.New(metrics.Options{
		GroupID: o.GroupID, InstanceID: o.InstanceID, GroupName: o.GroupName, InstanceName: o.InstanceName,
		InFlight:   i.inFlight.Load,
		Phase:      func() int { return int(i.Phase()) },
		PhaseNames: phaseNames[:],
		ConfigLoadedAt: func() time.Time {
			if rt := i.rt.Load(); rt != nil {
				return rt.loadedAt
			}
			return time.Time{}
		},
		ConfigAPIs: func() int {
			if rt := i.rt.Load(); rt != nil {
				return len(rt.cfg.APIs)
			}
			return 0
		},
	})
	i.metrics.Registry().MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: metrics.Namespace, Name: "in_service",
		Help: "1 while the instance is in the load balancer's rotation (/healthchecklb answers 200 while serving), 0 once taken out (POST /deployment/lb).",
	}, func() float64 {
		if i.inService.Load() {
			return 1
		}
		return 0
	}))
	i.apiHealth = i.metrics.API(metrics.APIHealthCheck)
	i.apiNone = i.metrics.API(metrics.APINone)
	i.apiRejected = i.metrics.API(metrics.APIRejected)
}

// Metrics returns the instance's metrics (served on the management listener
// at /metrics), for wiring further sources such as the remote addresses.
func (i *Instance) Metrics() *metrics.Metrics { return i.metrics }

// resolveMetrics gives rt one pre-resolved *metrics.API per route, indexed
// by route.Route.Index, so that observing a request looks nothing up. Call
// it on a runtime before it is published.
func (i *Instance) resolveMetrics(rt *runtime) {
	routes := rt.table.Routes()
	rt.apiMetrics = make([]*metrics.API, len(rt.forwarders))
	for _, r := range routes {
		if r.Index >= len(rt.apiMetrics) {
			grown := make([]*metrics.API, r.Index+1)
			copy(grown, rt.apiMetrics)
			rt.apiMetrics = grown
		}
		rt.apiMetrics[r.Index] = i.metrics.API(r.Name)
	}
}

// observe counts one finished traffic request: under its API when a route
// matched, under "healthcheck" for the traffic listener's health checks,
// else under "none". reqBytes is the request body forwarded to the back end.
func (i *Instance) observe(rt *runtime, matched *route.Route, r *h1.Request, w h1.ResponseWriter, reqBytes int64, took time.Duration) {
	var a *metrics.API
	switch {
	case matched != nil && matched.Index < len(rt.apiMetrics) && rt.apiMetrics[matched.Index] != nil:
		a = rt.apiMetrics[matched.Index]
	case matched != nil:
		a = i.metrics.API(matched.Name) // not resolved (cannot happen): slow but right
	case bytes.Equal(r.Path, pathHealth) || bytes.Equal(r.Path, pathHealthLB):
		a = i.apiHealth
	default:
		a = i.apiNone
	}
	a.Observe(r.Method, w.Status(), reqBytes, w.Written(), took)
}

// onReject counts a request the HTTP engine refused before the handler, and
// logs it when the access log is on; it is the h1 server's OnReject.
func (i *Instance) onReject(status int, reason string, remote netip.AddrPort) {
	i.apiRejected.Rejected(status)
	if i.rt.Load().cfg.AccessLog.Enabled {
		i.logs.access.logRejected(status, reason, remote)
	}
}
