// Package metrics holds an instance's Prometheus metrics and serves them in
// the Prometheus text format (see docs/metrics.md for every metric).
//
// Each Metrics has its own registry: nothing is registered with the client
// library's global default registry, so two instances in one process (tests)
// do not collide.
//
// The request path never looks a series up by its label values: the
// instance resolves one *API per route when it builds a configuration (API),
// and observing a request (API.Observe) is then a few atomic adds. The
// per-(method, class) counters of an API are created on first use, so an API
// exposes only the series that happened. State that lives elsewhere (the
// phase, in-flight requests, the configuration's load time, the remote
// addresses) is read at scrape time from functions the instance provides.
//
// A Metrics is safe for concurrent use.
package metrics

import (
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every Gatehouse metric name.
const Namespace = "gatehouse"

// The api label values for requests that no configured API served.
const (
	APINone        = "none"        // no route matched (404, 405, 400 for a non-canonical path)
	APIHealthCheck = "healthcheck" // /healthcheck and /healthchecklb on the traffic listener
	APIRejected    = "rejected"    // refused by the HTTP engine before routing (malformed, too large, timeouts)
)

// DurationBuckets are the upper bounds, in seconds, of the request duration
// histogram: from half a millisecond (a proxy's own answers) to 30 seconds
// (slow back ends, long uploads).
var DurationBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// Options configure a Metrics. The functions are called at scrape time, from
// the scraping goroutine; each may be nil.
type Options struct {
	GroupID, InstanceID, GroupName, InstanceName string // gatehouse_instance_info
	Version                                      string // gatehouse_build_info; "" takes the main module's version

	InFlight       func() int64     // requests being served (gatehouse_requests_in_flight)
	Phase          func() int       // the instance's phase number (gatehouse_phase)
	PhaseNames     []string         // the name of each phase number, in order (gatehouse_phase_state)
	ConfigLoadedAt func() time.Time // when the current configuration was loaded
	ConfigAPIs     func() int       // how many APIs the current configuration has
}

// Metrics is one instance's metrics: the registry, the request metrics and
// the collectors that read state at scrape time.
type Metrics struct {
	reg     *prometheus.Registry
	handler http.Handler

	requests  *prometheus.CounterVec   // api, method, code_class
	duration  *prometheus.HistogramVec // api
	reqBytes  *prometheus.CounterVec   // api
	respBytes *prometheus.CounterVec   // api

	mu   sync.Mutex // guards apis
	apis map[string]*API

	addresses addressCollector
}

// New creates the metrics of one instance with a registry of its own,
// holding the request metrics, the instance's state gauges, build
// information, and the Go runtime and process collectors.
func New(opts Options) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "requests_total",
			Help: "Requests answered on the traffic listener, by API (route name), method and status class.",
		}, []string{"api", "method", "code_class"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "request_duration_seconds",
			Help:    "Time from the first byte of the request head to the end of the response, by API.",
			Buckets: DurationBuckets,
		}, []string{"api"}),
		reqBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "request_body_bytes_total",
			Help: "Request body bytes forwarded to back ends, by API.",
		}, []string{"api"}),
		respBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "response_body_bytes_total",
			Help: "Response body bytes written to clients, by API.",
		}, []string{"api"}),
		apis: map[string]*API{},
	}
	reg.MustRegister(m.requests, m.duration, m.reqBytes, m.respBytes)
	reg.MustRegister(&m.addresses)
	reg.MustRegister(newStateCollector(opts))
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: ""}),
	)
	// Text format only: in OpenMetrics the Go collector's
	// go_memstats_alloc_bytes (gauge) and go_memstats_alloc_bytes_total
	// (counter) are one family name twice, which strict parsers refuse
	// (client_golang issue 829). We use nothing OpenMetrics adds.
	m.handler = promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		Registry:      reg,
		ErrorHandling: promhttp.ContinueOnError,
	}))
	return m
}

// Registry returns the registry, for tests and for collectors added later.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ServeHTTP serves the metrics in the Prometheus text format (version
// 0.0.4, also to scrapers that would prefer OpenMetrics), gzipped when the
// scraper accepts it.
func (m *Metrics) ServeHTTP(w http.ResponseWriter, r *http.Request) { m.handler.ServeHTTP(w, r) }

// API returns the request metrics of the API named name (the same *API for
// the same name, across configurations, so that counters keep counting when
// a configuration is swapped). Call it when building a configuration, not per
// request: it takes a lock.
func (m *Metrics) API(name string) *API {
	if name == "" {
		name = APINone
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if a := m.apis[name]; a != nil {
		return a
	}
	a := &API{
		name:      name,
		requests:  m.requests,
		duration:  m.duration.WithLabelValues(name),
		reqBytes:  m.reqBytes.WithLabelValues(name),
		respBytes: m.respBytes.WithLabelValues(name),
	}
	m.apis[name] = a
	return a
}

// Method indexes: the standard methods, then everything else.
const (
	methodGET = iota
	methodHEAD
	methodPOST
	methodPUT
	methodDELETE
	methodCONNECT
	methodOPTIONS
	methodTRACE
	methodPATCH
	methodOther
	numMethods
)

var methodNames = [numMethods]string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "OTHER"}

// methodIndex maps a request method to its label; the switch on string(b)
// does not allocate.
func methodIndex(b []byte) int {
	switch string(b) {
	case "GET":
		return methodGET
	case "HEAD":
		return methodHEAD
	case "POST":
		return methodPOST
	case "PUT":
		return methodPUT
	case "DELETE":
		return methodDELETE
	case "CONNECT":
		return methodCONNECT
	case "OPTIONS":
		return methodOPTIONS
	case "TRACE":
		return methodTRACE
	case "PATCH":
		return methodPATCH
	}
	return methodOther
}

// Status classes; classNone is a request that got no response (the client
// went away, or the connection was cut before a status was sent).
const (
	classNone = iota
	class1xx
	class2xx
	class3xx
	class4xx
	class5xx
	numClasses
)

var classNames = [numClasses]string{"none", "1xx", "2xx", "3xx", "4xx", "5xx"}

// ClassOf returns the code_class label of a status: "1xx" … "5xx", or
// "none" for 0 (no response) and anything outside 100–599.
func ClassOf(status int) string { return classNames[classIndex(status)] }

func classIndex(status int) int {
	if status < 100 || status > 599 {
		return classNone
	}
	return status / 100
}

// API is the pre-resolved request metrics of one API: observing a request
// is a few atomic operations and allocates nothing (once each (method,
// class) pair has been seen).
type API struct {
	name      string
	requests  *prometheus.CounterVec
	duration  prometheus.Observer
	reqBytes  prometheus.Counter
	respBytes prometheus.Counter
	counters  [numMethods * numClasses]atomic.Pointer[counterRef]
}

type counterRef struct{ c prometheus.Counter }

// Name returns the api label value.
func (a *API) Name() string { return a.name }

// counter returns the requests counter of a (method, class) pair, creating
// the series on first use.
func (a *API) counter(method, class int) prometheus.Counter {
	slot := &a.counters[method*numClasses+class]
	if ref := slot.Load(); ref != nil {
		return ref.c
	}
	// First use: WithLabelValues returns the same child to racing callers,
	// so whichever pointer wins holds the one series.
	ref := &counterRef{a.requests.WithLabelValues(a.name, methodNames[method], classNames[class])}
	slot.CompareAndSwap(nil, ref)
	return slot.Load().c
}

// Observe counts one finished request: its method, status (0 when nothing
// was answered), request body bytes forwarded, response body bytes written
// and duration. It is safe for concurrent use.
func (a *API) Observe(method []byte, status int, reqBytes, respBytes int64, d time.Duration) {
	a.counter(methodIndex(method), classIndex(status)).Inc()
	a.duration.Observe(d.Seconds())
	if reqBytes > 0 {
		a.reqBytes.Add(float64(reqBytes))
	}
	if respBytes > 0 {
		a.respBytes.Add(float64(respBytes))
	}
}

// Rejected counts a request the HTTP engine refused before it reached the
// handler: the method is not known then (method "OTHER"), and neither
// duration nor bytes are observed.
func (a *API) Rejected(status int) {
	a.counter(methodOther, classIndex(status)).Inc()
}

// mainVersion is the main module's version from the build information.
func mainVersion() (version, revision string) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown", ""
	}
	version = bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			revision = s.Value
		}
	}
	return version, revision
}
