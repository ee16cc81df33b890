package metrics

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape serves m's handler once (text format) and parses the answer with
// the Prometheus text parser.
func scrape(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	m.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: got status %d, want 200: %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parsing the scrape: %v", err)
	}
	return fams
}

// find returns the metric of family name whose labels include want, or nil.
func find(fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	f := fams[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		return m
	}
	return nil
}

// value is the counter, gauge or untyped value of a series; -1 when absent.
func value(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	m := find(fams, name, labels)
	switch {
	case m == nil:
		return -1
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return -1
}

func TestClassOf(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   string
	}{
		{0, "none"}, {99, "none"}, {100, "1xx"}, {101, "1xx"}, {200, "2xx"}, {204, "2xx"}, {304, "3xx"},
		{404, "4xx"}, {418, "4xx"}, {499, "4xx"}, {500, "5xx"}, {502, "5xx"}, {599, "5xx"}, {600, "none"}, {-1, "none"},
	} {
		if got := ClassOf(tc.status); got != tc.want {
			t.Errorf("ClassOf(%d): got %q, want %q", tc.status, got, tc.want)
		}
	}
}

func TestMethodIndex(t *testing.T) {
	for _, tc := range []struct{ method, want string }{
		{"GET", "GET"}, {"HEAD", "HEAD"}, {"POST", "POST"}, {"PUT", "PUT"}, {"DELETE", "DELETE"},
		{"CONNECT", "CONNECT"}, {"OPTIONS", "OPTIONS"}, {"TRACE", "TRACE"}, {"PATCH", "PATCH"},
		{"get", "OTHER"}, {"PROPFIND", "OTHER"}, {"", "OTHER"}, {"GETX", "OTHER"},
	} {
		if got := methodNames[methodIndex([]byte(tc.method))]; got != tc.want {
			t.Errorf("method %q: got %q, want %q", tc.method, got, tc.want)
		}
	}
}

func TestObserveCounts(t *testing.T) {
	m := New(Options{})
	orders, users := m.API("orders"), m.API("users")
	reqs := []struct {
		api      *API
		method   string
		status   int
		in, out  int64
		duration time.Duration
	}{
		{orders, "GET", 200, 0, 100, time.Millisecond},
		{orders, "GET", 200, 0, 50, time.Millisecond},
		{orders, "GET", 204, 0, 0, time.Millisecond},
		{orders, "POST", 201, 300, 20, time.Millisecond},
		{orders, "POST", 502, 300, 80, time.Millisecond},
		{orders, "BREW", 418, 0, 10, time.Millisecond},
		{orders, "GET", 0, 0, 0, time.Millisecond},
		{users, "DELETE", 404, 0, 30, time.Millisecond},
		{m.API(""), "GET", 404, 0, 40, time.Millisecond},
	}
	for _, r := range reqs {
		r.api.Observe([]byte(r.method), r.status, r.in, r.out, r.duration)
	}
	m.API(APIRejected).Rejected(431)
	m.API(APIRejected).Rejected(408)

	fams := scrape(t, m)
	for _, tc := range []struct {
		api, method, class string
		want               float64
	}{
		{"orders", "GET", "2xx", 3},
		{"orders", "POST", "2xx", 1},
		{"orders", "POST", "5xx", 1},
		{"orders", "OTHER", "4xx", 1},
		{"orders", "GET", "none", 1},
		{"users", "DELETE", "4xx", 1},
		{"none", "GET", "4xx", 1},
		{"rejected", "OTHER", "4xx", 2},
		{"orders", "GET", "5xx", -1}, // never seen: no series
	} {
		got := value(fams, "gatehouse_requests_total", map[string]string{"api": tc.api, "method": tc.method, "code_class": tc.class})
		if got != tc.want {
			t.Errorf("requests{api=%s,method=%s,class=%s}: got %v, want %v", tc.api, tc.method, tc.class, got, tc.want)
		}
	}
	for _, tc := range []struct {
		name, api string
		want      float64
	}{
		{"gatehouse_request_body_bytes_total", "orders", 600},
		{"gatehouse_response_body_bytes_total", "orders", 260},
		{"gatehouse_response_body_bytes_total", "users", 30},
		{"gatehouse_response_body_bytes_total", "none", 40},
		{"gatehouse_request_body_bytes_total", "users", 0},
	} {
		if got := value(fams, tc.name, map[string]string{"api": tc.api}); got != tc.want {
			t.Errorf("%s{api=%s}: got %v, want %v", tc.name, tc.api, got, tc.want)
		}
	}
	if h := find(fams, "gatehouse_request_duration_seconds", map[string]string{"api": "orders"}); h == nil || h.Histogram.GetSampleCount() != 7 {
		t.Errorf("duration{api=orders}: got %v, want 7 observations", h)
	}
	if h := find(fams, "gatehouse_request_duration_seconds", map[string]string{"api": "rejected"}); h == nil || h.Histogram.GetSampleCount() != 0 {
		t.Errorf("duration{api=rejected}: got %v, want 0 observations", h)
	}
}

func TestHistogramBuckets(t *testing.T) {
	m := New(Options{})
	a := m.API("api")
	for _, d := range []time.Duration{
		300 * time.Microsecond, // ≤ 0.5 ms
		500 * time.Microsecond, // ≤ 0.5 ms (bounds are inclusive)
		7 * time.Millisecond,   // ≤ 10 ms
		2 * time.Second,        // ≤ 2.5 s
		40 * time.Second,       // +Inf
	} {
		a.Observe([]byte("GET"), 200, 0, 0, d)
	}
	fams := scrape(t, m)
	h := find(fams, "gatehouse_request_duration_seconds", map[string]string{"api": "api"})
	if h == nil {
		t.Fatal("no histogram for api")
	}
	if got := h.Histogram.GetSampleCount(); got != 5 {
		t.Errorf("count: got %d, want 5", got)
	}
	if got, want := h.Histogram.GetSampleSum(), 0.0003+0.0005+0.007+2+40; got < want-1e-9 || got > want+1e-9 {
		t.Errorf("sum: got %v, want %v", got, want)
	}
	want := map[float64]uint64{0.0005: 2, 0.001: 2, 0.005: 2, 0.01: 3, 1: 3, 2.5: 4, 10: 4, 30: 4}
	var bounds []float64
	for _, b := range h.Histogram.Bucket {
		bounds = append(bounds, b.GetUpperBound())
		if w, ok := want[b.GetUpperBound()]; ok && b.GetCumulativeCount() != w {
			t.Errorf("bucket le=%v: got %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), w)
		}
	}
	// The parser adds the +Inf bucket.
	if len(bounds) < len(DurationBuckets) || fmt.Sprint(bounds[:len(DurationBuckets)]) != fmt.Sprint(DurationBuckets) {
		t.Errorf("bucket bounds: got %v, want %v", bounds, DurationBuckets)
	}
}

func TestAPISharedAcrossCalls(t *testing.T) {
	m := New(Options{})
	a, b := m.API("x"), m.API("x")
	if a != b {
		t.Fatalf("got two *API for one name, want one")
	}
	if m.API("") != m.API(APINone) {
		t.Errorf(`got different *API for "" and %q, want one`, APINone)
	}
	// Racing first uses of one (method, class) pair count into one series.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { a.Observe([]byte("GET"), 200, 0, 0, 0) })
	}
	wg.Wait()
	if got := value(scrape(t, m), "gatehouse_requests_total", map[string]string{"api": "x", "method": "GET", "code_class": "2xx"}); got != 8 {
		t.Errorf("got %v, want 8", got)
	}
}

func TestState(t *testing.T) {
	loaded := time.Unix(1700000000, 500_000_000)
	phase := 2
	m := New(Options{
		GroupID: "group-2", InstanceID: "instance-1", GroupName: "G", InstanceName: "S", Version: "1.2.3",
		InFlight:       func() int64 { return 7 },
		Phase:          func() int { return phase },
		PhaseNames:     []string{"starting", "serving", "draining", "closing", "stopped"},
		ConfigLoadedAt: func() time.Time { return loaded },
		ConfigAPIs:     func() int { return 3 },
	})
	fams := scrape(t, m)
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"gatehouse_requests_in_flight", nil, 7},
		{"gatehouse_phase", nil, 2},
		{"gatehouse_phase_state", map[string]string{"phase": "draining"}, 1},
		{"gatehouse_phase_state", map[string]string{"phase": "serving"}, 0},
		{"gatehouse_phase_state", map[string]string{"phase": "stopped"}, 0},
		{"gatehouse_config_last_load_timestamp_seconds", nil, 1700000000.5},
		{"gatehouse_config_apis", nil, 3},
		{"gatehouse_build_info", map[string]string{"version": "1.2.3"}, 1},
		{"gatehouse_instance_info", map[string]string{"group_id": "group-2", "instance_id": "instance-1", "group_name": "G", "instance_name": "S"}, 1},
	} {
		if got := value(fams, tc.name, tc.labels); got != tc.want {
			t.Errorf("%s%v: got %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	if n := len(fams["gatehouse_phase_state"].GetMetric()); n != 5 {
		t.Errorf("phase_state series: got %d, want 5", n)
	}
	for _, name := range []string{"go_goroutines", "process_open_fds", "promhttp_metric_handler_requests_total"} {
		if fams[name] == nil {
			t.Errorf("%s: missing", name)
		}
	}
}

func TestAddressCollector(t *testing.T) {
	m := New(Options{})
	if got := scrape(t, m)["gatehouse_remote_address_up"]; got != nil {
		t.Errorf("without a source: got %v, want no address metrics", got)
	}
	var calls int
	m.SetAddressSource(func(dst []AddressState) []AddressState {
		calls++
		return append(dst,
			AddressState{RemoteHost: "orders", Address: "127.0.0.2:8080", Up: true, InFlight: 3, AvgResponseSeconds: 0.012, Requests: 100, Failures: 2, Fallback: 4, Unsolicited: 5},
			AddressState{RemoteHost: "orders", Address: "127.0.0.3:8080", Up: false, AvgResponseSeconds: 1.5, Requests: 10, Failures: 10},
			AddressState{RemoteHost: "users", Address: "[::1]:9000", Up: true, Requests: 1},
		)
	})
	fams := scrape(t, m)
	for _, tc := range []struct {
		name, host, addr string
		want             float64
	}{
		{"gatehouse_remote_address_up", "orders", "127.0.0.2:8080", 1},
		{"gatehouse_remote_address_up", "orders", "127.0.0.3:8080", 0},
		{"gatehouse_remote_address_up", "users", "[::1]:9000", 1},
		{"gatehouse_remote_address_in_flight", "orders", "127.0.0.2:8080", 3},
		{"gatehouse_remote_address_response_time_seconds", "orders", "127.0.0.2:8080", 0.012},
		{"gatehouse_remote_address_response_time_seconds", "orders", "127.0.0.3:8080", 1.5},
		{"gatehouse_remote_address_requests_total", "orders", "127.0.0.2:8080", 100},
		{"gatehouse_remote_address_failures_total", "orders", "127.0.0.2:8080", 2},
		{"gatehouse_remote_address_failures_total", "orders", "127.0.0.3:8080", 10},
		{"gatehouse_remote_address_requests_total", "users", "[::1]:9000", 1},
		{"gatehouse_remote_address_fallback_requests_total", "orders", "127.0.0.2:8080", 4},
		{"gatehouse_remote_address_unsolicited_closes_total", "orders", "127.0.0.2:8080", 5},
		{"gatehouse_remote_address_unsolicited_closes_total", "orders", "127.0.0.3:8080", 0},
	} {
		if got := value(fams, tc.name, map[string]string{"remote_host": tc.host, "address": tc.addr}); got != tc.want {
			t.Errorf("%s{%s,%s}: got %v, want %v", tc.name, tc.host, tc.addr, got, tc.want)
		}
	}
	for name, typ := range map[string]dto.MetricType{
		"gatehouse_remote_address_up":                       dto.MetricType_GAUGE,
		"gatehouse_remote_address_requests_total":           dto.MetricType_COUNTER,
		"gatehouse_remote_address_failures_total":           dto.MetricType_COUNTER,
		"gatehouse_remote_address_fallback_requests_total":  dto.MetricType_COUNTER,
		"gatehouse_remote_address_unsolicited_closes_total": dto.MetricType_COUNTER,
	} {
		if got := fams[name].GetType(); got != typ {
			t.Errorf("%s type: got %v, want %v", name, got, typ)
		}
	}
	// The source is read at every scrape.
	scrape(t, m)
	if calls != 2 {
		t.Errorf("source calls: got %d, want 2", calls)
	}
	m.SetAddressSource(nil)
	if got := scrape(t, m)["gatehouse_remote_address_up"]; got != nil {
		t.Errorf("after removing the source: got %v, want no address metrics", got)
	}
}

func TestTextFormatOnly(t *testing.T) {
	m := New(Options{})
	m.API("a").Observe([]byte("GET"), 200, 0, 1, time.Millisecond)
	for _, tc := range []struct{ accept, wantType string }{
		{"", "text/plain; version=0.0.4"},
		// What Prometheus sends: OpenMetrics preferred, text accepted.
		{"application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2", "text/plain; version=0.0.4"},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		if tc.accept != "" {
			req.Header.Set("Accept", tc.accept)
		}
		m.ServeHTTP(rec, req)
		if got := rec.Header().Get("Content-Type"); !strings.HasPrefix(got, tc.wantType) {
			t.Errorf("Accept %q: got Content-Type %q, want %q", tc.accept, got, tc.wantType)
		}
		if !strings.Contains(rec.Body.String(), `gatehouse_requests_total{api="a",code_class="2xx",method="GET"} 1`) {
			t.Errorf("Accept %q: the requests counter is missing:\n%s", tc.accept, rec.Body)
		}
	}
}

func TestObserveAllocs(t *testing.T) {
	m := New(Options{})
	a := m.API("api")
	methods := [][]byte{[]byte("GET"), []byte("POST"), []byte("PROPFIND")}
	statuses := []int{200, 404, 502, 0}
	allocs := testing.AllocsPerRun(100, func() {
		for _, meth := range methods {
			for _, s := range statuses {
				a.Observe(meth, s, 10, 100, 3*time.Millisecond)
			}
		}
	})
	if allocs != 0 {
		t.Errorf("Observe: got %v allocs per run, want 0", allocs)
	}
	r := m.API(APIRejected)
	if allocs := testing.AllocsPerRun(100, func() { r.Rejected(400) }); allocs != 0 {
		t.Errorf("Rejected: got %v allocs per run, want 0", allocs)
	}
}

func TestFamiliesDocumented(t *testing.T) {
	// Every gatehouse_ family has HELP text and one of the expected types.
	m := New(Options{Phase: func() int { return 0 }, PhaseNames: []string{"starting"}, InFlight: func() int64 { return 0 },
		ConfigLoadedAt: time.Now, ConfigAPIs: func() int { return 0 }})
	m.API("a").Observe([]byte("GET"), 200, 1, 1, 0)
	m.SetAddressSource(func(dst []AddressState) []AddressState {
		return append(dst, AddressState{RemoteHost: "h", Address: "a:1"})
	})
	fams := scrape(t, m)
	var names []string
	for name, f := range fams {
		if !strings.HasPrefix(name, Namespace+"_") {
			continue
		}
		names = append(names, name)
		if f.GetHelp() == "" {
			t.Errorf("%s: no help text", name)
		}
	}
	sort.Strings(names)
	if len(names) != 18 {
		t.Errorf("gatehouse families: got %d %v, want 18", len(names), names)
	}
	// And docs/metrics.md describes each.
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("docs/metrics.md does not describe %s", name)
		}
	}
}

func BenchmarkObserve(b *testing.B) {
	m := New(Options{})
	a := m.API("api")
	get := []byte("GET")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			a.Observe(get, 200, 0, 100, time.Millisecond)
		}
	})
}
