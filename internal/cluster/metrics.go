package cluster

import "github.com/prometheus/client_golang/prometheus"

// Collector returns the bus's metrics, read at scrape time, for the
// instance's registry (docs/metrics.md, docs/cluster.md):
//
//	gatehouse_cluster_state{state}           1 for the bus's state, 0 for the others
//	gatehouse_cluster_peers                  peers wanted or seen
//	gatehouse_cluster_peers_up               peers connected
//	gatehouse_cluster_route_reconnects_total routes that came back after they were lost
//	gatehouse_cluster_messages_in_total      messages delivered to this instance's handlers
//	gatehouse_cluster_messages_out_total     messages published by this instance
func (b *Bus) Collector() prometheus.Collector { return busCollector{b} }

var (
	descState      = prometheus.NewDesc("gatehouse_cluster_state", "The cluster bus's state: 1 for the current one (off, down, isolated, up), 0 for the others.", []string{"state"}, nil)
	descPeers      = prometheus.NewDesc("gatehouse_cluster_peers", "Peers of the cluster bus: wanted (topology, manual list) or connected.", nil, nil)
	descPeersUp    = prometheus.NewDesc("gatehouse_cluster_peers_up", "Peers whose route is connected.", nil, nil)
	descReconnects = prometheus.NewDesc("gatehouse_cluster_route_reconnects_total", "Routes to peers that came back after they were lost.", nil, nil)
	descMsgsIn     = prometheus.NewDesc("gatehouse_cluster_messages_in_total", "Messages from peers delivered to this instance's handlers (answers to its requests included).", nil, nil)
	descMsgsOut    = prometheus.NewDesc("gatehouse_cluster_messages_out_total", "Messages this instance published on the bus (requests included).", nil, nil)
)

type busCollector struct{ b *Bus }

func (c busCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descState, descPeers, descPeersUp, descReconnects, descMsgsIn, descMsgsOut} {
		ch <- d
	}
}

func (c busCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.b.Status()
	for i, name := range stateNames {
		v := 0.0
		if State(i) == st.State {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, v, name)
	}
	up := 0
	for _, p := range st.Peers {
		if p.State == "up" {
			up++
		}
	}
	ch <- prometheus.MustNewConstMetric(descPeers, prometheus.GaugeValue, float64(len(st.Peers)))
	ch <- prometheus.MustNewConstMetric(descPeersUp, prometheus.GaugeValue, float64(up))
	ch <- prometheus.MustNewConstMetric(descReconnects, prometheus.CounterValue, float64(st.Reconnects))
	ch <- prometheus.MustNewConstMetric(descMsgsIn, prometheus.CounterValue, float64(st.MessagesIn))
	ch <- prometheus.MustNewConstMetric(descMsgsOut, prometheus.CounterValue, float64(st.MessagesOut))
}
