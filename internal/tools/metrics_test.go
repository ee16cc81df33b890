package tools_test

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
)

// metricsGroup has the sample API, a GET-only API and an API whose back end
// listens nowhere (502).
const metricsGroup = `backends:
  - name: sample
    sample: true
  - name: dead
    url: http://127.0.0.1:%d
apis:
  - name: sample
    pathPrefix: /sample
    stripPrefix: true
    backend: sample
  - name: readonly
    pathPrefix: /ro
    stripPrefix: true
    methods: [GET]
    backend: sample
  - name: dead
    pathPrefix: /dead
    backend: dead
`

// scrapeMetrics reads /metrics from the management listener (mutual TLS,
// a client certificate of h's domain CA) in the text format and parses it
// with the Prometheus text parser.
func scrapeMetrics(t *testing.T, h *gwtest.Home, mgmtPort int) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := h.MgmtClient().Get(gwtest.MgmtURL(mgmtPort, "/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: got %d, want 200", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("GET /metrics: got Content-Type %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// sample is one series' value: a counter's or gauge's value, a histogram's
// count; 0 when the series does not exist.
func sample(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return 0
}

func TestMetricsEndpoint(t *testing.T) {
	h := gwtest.NewHome(t)
	p := newInstance(t, h, "G", "S", false)
	closed := gwtest.FreePort(t) // nothing listens there
	if err := os.WriteFile(h.Path("groups", "group-2", "conf", "group.yaml"), fmt.Appendf(nil, metricsGroup, closed), 0o644); err != nil {
		t.Fatal(err)
	}
	h.MustRun("", "startinstance", "-d", "-q", "-n", "S", "-g", "G")
	t.Cleanup(func() { h.Run("", "startinstance", "-k", "-q", "-n", "S", "-g", "G") })

	before := scrapeMetrics(t, h, p.mgmt)

	// Traffic of several APIs, methods and statuses; the response body
	// bytes each API wrote are summed as the client read them.
	respBytes := map[string]int{}
	const postBody = "hello metrics"
	c := &http.Client{Timeout: 20 * time.Second}
	for _, tc := range []struct {
		api, method, path, body string
		want                    int
	}{
		{"sample", "GET", "/sample/echo", "", 200},
		{"sample", "GET", "/sample/echo/a", "", 200},
		{"sample", "GET", "/sample/echo/b", "", 200},
		{"sample", "POST", "/sample/echo", postBody, 200},
		{"sample", "GET", "/sample/status/418", "", 418},
		{"readonly", "GET", "/ro/echo", "", 200},
		{"none", "DELETE", "/ro/echo", "", 405},
		{"none", "GET", "/nothing/here", "", 404},
		{"dead", "GET", "/dead/x", "", 502},
		{"healthcheck", "GET", "/healthcheck", "", 200},
	} {
		req, _ := http.NewRequest(tc.method, p.url(tc.path), strings.NewReader(tc.body))
		if tc.body == "" {
			req.Body = nil
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Fatalf("%s %s: got %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
		}
		respBytes[tc.api] += len(b)
	}
	// One request the HTTP engine refuses before routing (400).
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p.traffic))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(conn, "NOT A REQUEST\r\n\r\n")
	st, _ := bufio.NewReader(conn).ReadString('\n')
	conn.Close()
	if !strings.HasPrefix(st, "HTTP/1.1 400 ") {
		t.Fatalf("malformed request: got %q, want a 400", st)
	}

	// A request is counted as its handler returns, which may be just after
	// the client read the last byte: poll until every one is counted.
	const sent = 11
	var after map[string]*dto.MetricFamily
	total := func(fams map[string]*dto.MetricFamily) float64 {
		var n float64
		for _, m := range fams["gatehouse_requests_total"].GetMetric() {
			n += m.Counter.GetValue()
		}
		return n
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		after = scrapeMetrics(t, h, p.mgmt)
		if total(after)-total(before) >= sent && sample(after, "gatehouse_requests_in_flight") == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("requests counted: got %v, want %d", total(after)-total(before), sent)
		}
		time.Sleep(10 * time.Millisecond)
	}
	delta := func(name string, labels ...string) float64 {
		return sample(after, name, labels...) - sample(before, name, labels...)
	}

	for _, tc := range []struct {
		api, method, class string
		want               float64
	}{
		{"sample", "GET", "2xx", 3},
		{"sample", "POST", "2xx", 1},
		{"sample", "GET", "4xx", 1},
		{"readonly", "GET", "2xx", 1},
		{"none", "DELETE", "4xx", 1},
		{"none", "GET", "4xx", 1},
		{"dead", "GET", "5xx", 1},
		{"healthcheck", "GET", "2xx", 1},
		{"rejected", "OTHER", "4xx", 1},
		{"sample", "GET", "5xx", 0},
	} {
		got := delta("gatehouse_requests_total", "api", tc.api, "method", tc.method, "code_class", tc.class)
		if got != tc.want {
			t.Errorf("requests_total{api=%q,method=%q,code_class=%q}: got %v, want %v", tc.api, tc.method, tc.class, got, tc.want)
		}
	}
	if got := total(after) - total(before); got != sent {
		t.Errorf("requests_total, all series: got %v, want %d", got, sent)
	}

	for _, tc := range []struct {
		api  string
		want float64
	}{{"sample", 5}, {"readonly", 1}, {"none", 2}, {"dead", 1}, {"healthcheck", 1}, {"rejected", 0}} {
		if got := delta("gatehouse_request_duration_seconds", "api", tc.api); got != tc.want {
			t.Errorf("request_duration_seconds{api=%q} count: got %v, want %v", tc.api, got, tc.want)
		}
	}
	// The histogram's buckets are cumulative and end with every observation.
	for _, m := range after["gatehouse_request_duration_seconds"].GetMetric() {
		hist := m.GetHistogram()
		var prev uint64
		for _, b := range hist.GetBucket() {
			if b.GetCumulativeCount() < prev {
				t.Errorf("%v: buckets not cumulative at le=%v", m.GetLabel(), b.GetUpperBound())
			}
			prev = b.GetCumulativeCount()
		}
		if prev != hist.GetSampleCount() {
			t.Errorf("%v: last bucket %d, want the count %d", m.GetLabel(), prev, hist.GetSampleCount())
		}
	}

	if got := delta("gatehouse_request_body_bytes_total", "api", "sample"); got != float64(len(postBody)) {
		t.Errorf("request_body_bytes_total{api=sample}: got %v, want %d", got, len(postBody))
	}
	for _, api := range []string{"sample", "readonly", "none", "dead", "healthcheck"} {
		if got := delta("gatehouse_response_body_bytes_total", "api", api); got != float64(respBytes[api]) || got == 0 {
			t.Errorf("response_body_bytes_total{api=%q}: got %v, want %d (non-zero)", api, got, respBytes[api])
		}
	}

	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"gatehouse_requests_in_flight", nil, 0},
		{"gatehouse_phase", nil, 1},
		{"gatehouse_phase_state", []string{"phase", "serving"}, 1},
		{"gatehouse_phase_state", []string{"phase", "draining"}, 0},
		{"gatehouse_config_apis", nil, 3},
		{"gatehouse_instance_info", []string{"group_id", "group-2", "instance_id", "instance-1", "group_name", "G", "instance_name", "S"}, 1},
	} {
		if got := sample(after, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v: got %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	if got := sample(after, "gatehouse_config_last_load_timestamp_seconds"); got < float64(time.Now().Add(-time.Hour).Unix()) {
		t.Errorf("config_last_load_timestamp_seconds: got %v, want about now", got)
	}
	for _, name := range []string{"gatehouse_build_info", "go_goroutines", "process_resident_memory_bytes"} {
		if after[name] == nil {
			t.Errorf("%s: missing", name)
		}
	}
	// Per-address state of the remote hosts, read from the instance's
	// remote-host registry at scrape time: the sample back end's address is
	// up and has served the sample requests above.
	if f := after["gatehouse_remote_address_up"]; f == nil || len(f.Metric) == 0 {
		t.Errorf("gatehouse_remote_address_up: missing")
	} else {
		up, served := 0.0, 0.0
		for _, m := range f.Metric {
			up += m.GetGauge().GetValue()
		}
		for _, m := range after["gatehouse_remote_address_requests_total"].GetMetric() {
			served += m.GetCounter().GetValue()
		}
		if up < 1 || served < 1 {
			t.Errorf("remote addresses: got %v up and %v requests, want at least 1 each", up, served)
		}
	}

	// A scraper that prefers OpenMetrics, as Prometheus does, gets the text
	// format, gzipped: decode it as Prometheus would, by its Content-Type.
	req, _ := http.NewRequest("GET", gwtest.MgmtURL(p.mgmt, "/metrics"), nil)
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0;q=0.6,text/plain;version=0.0.4;q=0.3,*/*;q=0.2")
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := h.MgmtClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if got := resp.Header.Get("Content-Encoding"); got != "gzip" {
		t.Errorf("Content-Encoding: got %q, want gzip", got)
	}
	format := expfmt.ResponseFormat(resp.Header)
	if format.FormatType() != expfmt.TypeTextPlain {
		t.Fatalf("Content-Type: got %q, want the text format", resp.Header.Get("Content-Type"))
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	dec := expfmt.NewDecoder(zr, format)
	found := map[string]bool{}
	for {
		var f dto.MetricFamily
		if err := dec.Decode(&f); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding the scrape: %v", err)
		}
		found[f.GetName()] = true
	}
	for _, name := range []string{"gatehouse_requests_total", "gatehouse_request_duration_seconds", "gatehouse_phase_state"} {
		if !found[name] {
			t.Errorf("family %s missing", name)
		}
	}

	// Only GET and HEAD.
	resp2, err := h.MgmtClient().Post(gwtest.MgmtURL(p.mgmt, "/metrics"), "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != 405 || resp2.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /metrics: got %d Allow %q, want 405 Allow \"GET, HEAD\"", resp2.StatusCode, resp2.Header.Get("Allow"))
	}
}
