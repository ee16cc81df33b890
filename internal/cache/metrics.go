package cache

import "github.com/prometheus/client_golang/prometheus"

// Collector returns the Prometheus collector of the registry's current
// caches (docs/metrics.md): read at scrape time, nothing on the request
// path.
func (r *Registry) Collector() prometheus.Collector { return collector{r} }

type collector struct{ r *Registry }

func desc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc("gatehouse_cache_"+name, help, []string{"cache"}, nil)
}

var (
	descHits        = desc("hits_total", "Look-ups that found a live entry.")
	descMisses      = desc("misses_total", "Look-ups that found no entry, or an expired one.")
	descEvictions   = desc("evictions_total", "Entries removed to make room (maxEntries or maxBytes), in the cache's eviction order.")
	descExpirations = desc("expirations_total", "Entries removed because their time-to-live or time-to-idle passed.")
	descEntries     = desc("entries", "Entries held.")
	descBytes       = desc("bytes", "Bytes held: keys, values and a fixed overhead per entry.")
	descMaxBytes    = desc("max_bytes", "The cache's byte bound (maxBytes).")
	descReplFail    = desc("replication_failures_total", "Replication publishes that failed (a live peer did not acknowledge in time); the changes stayed local.")
	descReplDrop    = desc("replication_dropped_total", "Async events dropped because the send queue was full.")
	descRemote      = desc("remote_events_total", "Events from peers applied.")
	descBootstrap   = desc("bootstrapped_entries_total", "Entries taken from a peer's snapshot.")
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHits, descMisses, descEvictions, descExpirations, descEntries, descBytes, descMaxBytes, descReplFail, descReplDrop, descRemote, descBootstrap} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, cc := range c.r.Current().Caches() {
		st := cc.Stats()
		n := cc.cfg.Name
		ch <- prometheus.MustNewConstMetric(descHits, prometheus.CounterValue, float64(st.Hits), n)
		ch <- prometheus.MustNewConstMetric(descMisses, prometheus.CounterValue, float64(st.Misses), n)
		ch <- prometheus.MustNewConstMetric(descEvictions, prometheus.CounterValue, float64(st.Evictions), n)
		ch <- prometheus.MustNewConstMetric(descExpirations, prometheus.CounterValue, float64(st.Expirations), n)
		ch <- prometheus.MustNewConstMetric(descEntries, prometheus.GaugeValue, float64(st.Entries), n)
		ch <- prometheus.MustNewConstMetric(descBytes, prometheus.GaugeValue, float64(st.Bytes), n)
		ch <- prometheus.MustNewConstMetric(descMaxBytes, prometheus.GaugeValue, float64(cc.cfg.MaxBytes), n)
		ch <- prometheus.MustNewConstMetric(descReplFail, prometheus.CounterValue, float64(st.ReplicationFailures), n)
		ch <- prometheus.MustNewConstMetric(descReplDrop, prometheus.CounterValue, float64(st.ReplicationDropped), n)
		ch <- prometheus.MustNewConstMetric(descRemote, prometheus.CounterValue, float64(st.RemoteApplied), n)
		ch <- prometheus.MustNewConstMetric(descBootstrap, prometheus.CounterValue, float64(st.BootstrappedEntries), n)
	}
}
