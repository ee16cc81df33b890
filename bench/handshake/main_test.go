package main

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseArgs(t *testing.T) {
	o, err := parseArgs(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.mode != "full" || o.version != tls.VersionTLS13 || o.workers != 16 || o.duration != 10*time.Second ||
		len(o.curves) != 2 || o.curves[0] != tls.X25519 || o.curves[1] != tls.CurveP256 {
		t.Errorf("defaults: %+v", o)
	}
	o, err = parseArgs([]string{"-mode", "resume", "-tls", "1.2", "-curves", "p256, X25519", "-H", "KeyId: abc", "-H", "X-A:b"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.mode != "resume" || o.version != tls.VersionTLS12 || len(o.curves) != 2 || o.curves[0] != tls.CurveP256 || len(o.headers) != 2 {
		t.Errorf("parsed: %+v", o)
	}
	if got := string(o.request()); got != "GET / HTTP/1.1\r\nHost: localhost\r\nKeyId: abc\r\nX-A:b\r\nConnection: close\r\n\r\n" {
		t.Errorf("request %q", got)
	}
	for _, bad := range [][]string{
		{"-tls", "1.1"}, {"-mode", "half"}, {"-curves", "p521"}, {"-curves", ""}, {"-workers", "0"},
		{"-duration", "0s"}, {"-H", "no colon"}, {"-H", ": empty name"}, {"-path", "api"}, {"extra"},
	} {
		if _, err := parseArgs(bad, io.Discard); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestPercentile(t *testing.T) {
	if percentile(nil, 50) != 0 {
		t.Error("empty")
	}
	v := make([]uint32, 100)
	for i := range v {
		v[i] = uint32(i + 1)
	}
	for _, c := range []struct {
		p    float64
		want uint32
	}{{50, 50}, {99, 99}, {100, 100}, {1, 1}, {0.1, 1}} {
		if got := percentile(v, c.p); got != c.want {
			t.Errorf("p%v = %d, want %d", c.p, got, c.want)
		}
	}
	if got := percentile([]uint32{7}, 99); got != 7 {
		t.Errorf("one value: %d", got)
	}
}

// fields parses a RESULT line.
func fields(t *testing.T, line string) map[string]string {
	t.Helper()
	if !strings.HasPrefix(line, "RESULT ") {
		t.Fatalf("not a RESULT line: %q", line)
	}
	m := map[string]string{}
	for _, kv := range strings.Fields(line)[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			t.Fatalf("field %q in %q", kv, line)
		}
		m[k] = v
	}
	return m
}

func num(t *testing.T, m map[string]string, k string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(m[k], 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", k, m[k], err)
	}
	return v
}

func TestResultLine(t *testing.T) {
	o := options{mode: "resume", verName: "1.2", workers: 3}
	tl := &tally{handshakes: 4, resumed: 3, errors: 1, latencies: []uint32{300, 100, 200}}
	m := fields(t, resultLine(o, tl, 2*time.Second))
	want := map[string]string{"mode": "resume", "tls": "1.2", "workers": "3", "duration_us": "2000000", "requests": "3",
		"handshakes": "4", "resumed": "3", "share": "0.7500", "rate": "1.5", "p50_us": "200", "p99_us": "300", "errors": "1"}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s=%q, want %q", k, m[k], v)
		}
	}
	if len(m) != len(want) {
		t.Errorf("fields %v", m)
	}
	m = fields(t, resultLine(options{mode: "full", verName: "1.3"}, &tally{}, 0))
	if m["share"] != "0.0000" || m["rate"] != "0.0" || m["p99_us"] != "0" {
		t.Errorf("nothing counted: %v", m)
	}
}

// server starts a TLS server answering 200, or status.
func server(t *testing.T, status int, tickets bool) string {
	t.Helper()
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Connection") != "close" && !r.Close {
			t.Errorf("request without Connection: close")
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte("ok"))
	}))
	s.TLS = &tls.Config{SessionTicketsDisabled: !tickets}
	s.StartTLS()
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "https://")
}

// TestRun: full handshakes never resume; in resume mode only resumed ones
// count, and a server that does not resume gives none (share 0); non-2xx
// answers are errors.
func TestRun(t *testing.T) {
	ok := server(t, 200, true)
	noTickets := server(t, 200, false)
	failing := server(t, 503, true)
	for _, c := range []struct {
		name, addr, mode, ver string
		resumes, errs         bool
	}{
		{"full 1.3", ok, "full", "1.3", false, false},
		{"full 1.2", ok, "full", "1.2", false, false},
		{"resume 1.3", ok, "resume", "1.3", true, false},
		{"resume 1.2", ok, "resume", "1.2", true, false},
		{"no tickets 1.3", noTickets, "resume", "1.3", false, false},
		{"no tickets 1.2", noTickets, "resume", "1.2", false, false},
		{"503", failing, "full", "1.3", false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			o, err := parseArgs([]string{"-addr", c.addr, "-mode", c.mode, "-tls", c.ver, "-workers", "2", "-duration", "150ms", "-path", "/api/x"}, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			tl, elapsed := run(o)
			if elapsed < 150*time.Millisecond {
				t.Errorf("elapsed %v", elapsed)
			}
			m := fields(t, resultLine(o, tl, elapsed))
			hs, res, n, errs := num(t, m, "handshakes"), num(t, m, "resumed"), num(t, m, "requests"), num(t, m, "errors")
			if hs < 2 {
				t.Fatalf("too few handshakes: %v", m)
			}
			switch {
			case c.errs:
				if errs != hs || n != 0 || len(tl.firstErrs) == 0 || !strings.Contains(tl.firstErrs[0], "503") {
					t.Errorf("503 answers: %v %q", m, tl.firstErrs)
				}
			case errs != 0:
				t.Errorf("errors: %v %q", m, tl.firstErrs)
			case c.mode == "full":
				if res != 0 || n != hs || num(t, m, "share") != 0 || num(t, m, "p99_us") == 0 {
					t.Errorf("full: %v", m)
				}
			case c.resumes:
				// Every timed handshake resumes: the cache was primed before.
				if res != hs || n != res || m["share"] != "1.0000" || num(t, m, "rate") <= 0 {
					t.Errorf("resume: %v", m)
				}
			default:
				if res != 0 || n != 0 || m["share"] != "0.0000" || m["p50_us"] != "0" {
					t.Errorf("no resumption: %v", m)
				}
			}
		})
	}
}
