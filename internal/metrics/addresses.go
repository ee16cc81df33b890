package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// AddressState is what the metrics need to know about one address of a
// remote host, read at scrape time.
type AddressState struct {
	RemoteHost         string  // the remote host's name
	Address            string  // host:port as configured
	Up                 bool    // in rotation
	InFlight           int64   // requests being sent to it now
	AvgResponseSeconds float64 // the decaying average response time
	Requests           uint64  // requests sent to it, since the instance started
	Failures           uint64  // of those, the ones that failed (connect, timeout, …)
	Fallback           uint64  // requests sent while it was skipped, because every address was
	Unsolicited        uint64  // connections closed for bytes the back end sent beyond a response
}

// SetAddressSource sets the function the address metrics are read from at
// each scrape. f appends the current state of every address to dst and
// returns it (dst is reused between scrapes). It may be called while
// scrapes run; nil removes the source.
func (m *Metrics) SetAddressSource(f func(dst []AddressState) []AddressState) {
	m.addresses.mu.Lock()
	m.addresses.source = f
	m.addresses.mu.Unlock()
}

var (
	addrLabels   = []string{"remote_host", "address"}
	descAddrUp   = prometheus.NewDesc(Namespace+"_remote_address_up", "1 when the address is in rotation, 0 when it is down.", addrLabels, nil)
	descAddrIn   = prometheus.NewDesc(Namespace+"_remote_address_in_flight", "Requests being sent to the address.", addrLabels, nil)
	descAddrTime = prometheus.NewDesc(Namespace+"_remote_address_response_time_seconds", "The address's decaying average response time.", addrLabels, nil)
	descAddrReq  = prometheus.NewDesc(Namespace+"_remote_address_requests_total", "Requests sent to the address.", addrLabels, nil)
	descAddrFail = prometheus.NewDesc(Namespace+"_remote_address_failures_total", "Requests to the address that failed (could not connect, timed out, broke off).", addrLabels, nil)
	descAddrFb   = prometheus.NewDesc(Namespace+"_remote_address_fallback_requests_total", "Requests sent to the address while it was skipped after failures, because every address of its remote host was.", addrLabels, nil)
	descAddrUns  = prometheus.NewDesc(Namespace+"_remote_address_unsolicited_closes_total", "Connections to the address closed instead of reused because the back end sent bytes beyond the end of a response.", addrLabels, nil)
)

// addressCollector emits the per-address metrics from the source.
type addressCollector struct {
	mu     sync.Mutex // guards source and buf; held for a whole Collect
	source func([]AddressState) []AddressState
	buf    []AddressState
}

func (c *addressCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descAddrUp
	ch <- descAddrIn
	ch <- descAddrTime
	ch <- descAddrReq
	ch <- descAddrFail
	ch <- descAddrFb
	ch <- descAddrUns
}

func (c *addressCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.source == nil {
		return
	}
	c.buf = c.source(c.buf[:0])
	for i := range c.buf {
		a := &c.buf[i]
		up := 0.0
		if a.Up {
			up = 1
		}
		emit(ch, descAddrUp, prometheus.GaugeValue, up, a)
		emit(ch, descAddrIn, prometheus.GaugeValue, float64(a.InFlight), a)
		emit(ch, descAddrTime, prometheus.GaugeValue, a.AvgResponseSeconds, a)
		emit(ch, descAddrReq, prometheus.CounterValue, float64(a.Requests), a)
		emit(ch, descAddrFail, prometheus.CounterValue, float64(a.Failures), a)
		emit(ch, descAddrFb, prometheus.CounterValue, float64(a.Fallback), a)
		emit(ch, descAddrUns, prometheus.CounterValue, float64(a.Unsolicited), a)
	}
	clear(c.buf) // drop the strings until the next scrape
}

// emit sends one address metric; an address whose labels are not valid
// UTF-8 is skipped rather than failing the scrape.
func emit(ch chan<- prometheus.Metric, d *prometheus.Desc, t prometheus.ValueType, v float64, a *AddressState) {
	if m, err := prometheus.NewConstMetric(d, t, v, a.RemoteHost, a.Address); err == nil {
		ch <- m
	}
}
