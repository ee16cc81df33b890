package ratelimit

import (
	"math"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector returns the service's metrics, read at scrape time
// (docs/metrics.md, docs/rate-limits.md):
//
//	gatehouse_ratelimit_decisions_total{api,policy,decision}  allowed or limited, decided here
//	gatehouse_ratelimit_overshoot_requests_total{api,policy}  requests the group let through beyond the limit, as measured after each window
//	gatehouse_ratelimit_overshoot_max_ratio{api,policy}       the largest of those, over the limit, of one key in one window
//	gatehouse_ratelimit_keys{api,policy}                      keys counted now
//	gatehouse_ratelimit_overflow_requests_total{api,policy}   requests counted on the shared counter of keys beyond maxKeys
//	gatehouse_ratelimit_exact_requests_total{api,policy,how}  exact mode: owner (asked of another instance) or alone (owner unreachable)
//	gatehouse_ratelimit_partitioned                           1 while this instance sees fewer instances than the group has
//	gatehouse_ratelimit_instances{view}                       live (seen here, itself included) and group (the group's size)
//	gatehouse_ratelimit_sync_messages_total{direction}        batches of claims published (out) and received (in)
//	gatehouse_ratelimit_sync_errors_total                     batches that could not be published or decoded
func (s *Service) Collector() prometheus.Collector { return collector{s} }

var (
	limLabels     = []string{"api", "policy"}
	descDecisions = prometheus.NewDesc("gatehouse_ratelimit_decisions_total", "Rate-limit decisions taken on this instance.", append(limLabels, "decision"), nil)
	descOverReqs  = prometheus.NewDesc("gatehouse_ratelimit_overshoot_requests_total", "Requests the group let through beyond a key's limit, as measured here after each window.", limLabels, nil)
	descOverMax   = prometheus.NewDesc("gatehouse_ratelimit_overshoot_max_ratio", "The largest overshoot of one key in one window, as a fraction of the limit.", limLabels, nil)
	descKeys      = prometheus.NewDesc("gatehouse_ratelimit_keys", "Keys the limiter counts now on this instance.", limLabels, nil)
	descOverflow  = prometheus.NewDesc("gatehouse_ratelimit_overflow_requests_total", "Requests counted on the shared counter of the keys beyond maxKeys.", limLabels, nil)
	descExact     = prometheus.NewDesc("gatehouse_ratelimit_exact_requests_total", "Exact-mode decisions asked of the key's owner on another instance (owner) or taken alone because it did not answer (alone).", append(limLabels, "how"), nil)
	descPart      = prometheus.NewDesc("gatehouse_ratelimit_partitioned", "1 while this instance sees fewer instances of the group than the group has: each limit is enforced at its share (limit x live / group).", nil, nil)
	descInst      = prometheus.NewDesc("gatehouse_ratelimit_instances", "Instances as the rate limits see them: live (connected, this one included) and group (the group's size).", []string{"view"}, nil)
	descSync      = prometheus.NewDesc("gatehouse_ratelimit_sync_messages_total", "Batches of rate-limit claims published to (out) and received from (in) the group's other instances.", []string{"direction"}, nil)
	descSyncErr   = prometheus.NewDesc("gatehouse_ratelimit_sync_errors_total", "Batches of claims that could not be published or decoded.", nil, nil)
)

type collector struct{ s *Service }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDecisions, descOverReqs, descOverMax, descKeys, descOverflow, descExact, descPart, descInst, descSync, descSyncErr} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	for _, l := range s.limiterList() {
		api, pol := l.spec.API, l.spec.Name
		ch <- prometheus.MustNewConstMetric(descDecisions, prometheus.CounterValue, float64(l.allowed.Load()), api, pol, "allowed")
		ch <- prometheus.MustNewConstMetric(descDecisions, prometheus.CounterValue, float64(l.limited.Load()), api, pol, "limited")
		ch <- prometheus.MustNewConstMetric(descOverReqs, prometheus.CounterValue, float64(l.overshootReqs.Load()), api, pol)
		ch <- prometheus.MustNewConstMetric(descOverMax, prometheus.GaugeValue, math.Float64frombits(l.overshootMax.Load()), api, pol)
		ch <- prometheus.MustNewConstMetric(descKeys, prometheus.GaugeValue, float64(l.nkeys.Load()), api, pol)
		ch <- prometheus.MustNewConstMetric(descOverflow, prometheus.CounterValue, float64(l.overflowed.Load()), api, pol)
		if l.spec.Exact {
			ch <- prometheus.MustNewConstMetric(descExact, prometheus.CounterValue, float64(l.exactRemote.Load()), api, pol, "owner")
			ch <- prometheus.MustNewConstMetric(descExact, prometheus.CounterValue, float64(l.exactFallback.Load()), api, pol, "alone")
		}
	}
	m := s.members.Load()
	part := 0.0
	if m.partitioned() {
		part = 1
	}
	ch <- prometheus.MustNewConstMetric(descPart, prometheus.GaugeValue, part)
	ch <- prometheus.MustNewConstMetric(descInst, prometheus.GaugeValue, float64(len(m.live)), "live")
	ch <- prometheus.MustNewConstMetric(descInst, prometheus.GaugeValue, float64(m.size), "group")
	ch <- prometheus.MustNewConstMetric(descSync, prometheus.CounterValue, float64(s.syncOut.Load()), "out")
	ch <- prometheus.MustNewConstMetric(descSync, prometheus.CounterValue, float64(s.syncIn.Load()), "in")
	ch <- prometheus.MustNewConstMetric(descSyncErr, prometheus.CounterValue, float64(s.syncErrors.Load()))
}

// Stats are a limiter's counters (tests, benchmarks).
type Stats struct {
	Allowed, Limited, OvershootRequests, ExactRemote, ExactAlone, Keys int64
	OvershootMaxRatio                                                  float64
}

// Stats returns the limiter's counters.
func (l *Limiter) Stats() Stats {
	return Stats{Allowed: l.allowed.Load(), Limited: l.limited.Load(), OvershootRequests: l.overshootReqs.Load(),
		ExactRemote: l.exactRemote.Load(), ExactAlone: l.exactFallback.Load(), Keys: l.nkeys.Load(),
		OvershootMaxRatio: math.Float64frombits(l.overshootMax.Load())}
}

// Partitioned reports whether this instance sees fewer instances than the
// group has, and how many of each.
func (s *Service) Partitioned() (partitioned bool, live, size int) {
	m := s.members.Load()
	return m.partitioned(), len(m.live), m.size
}

// LimiterIDs are the ids of the limiters the service holds (tests).
func (s *Service) LimiterIDs() []string {
	var out []string
	for _, l := range s.limiterList() {
		out = append(out, l.ID())
	}
	return out
}
