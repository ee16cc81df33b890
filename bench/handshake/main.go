// Command handshake measures how many TLS handshakes per second a server
// completes, full or resumed, for bench/run's handshake phases
// (docs/performance.md).
//
// -workers goroutines each loop until -duration has passed: connect, TLS
// handshake (-tls 1.2 or 1.3; -curves, the key exchanges offered: X25519,
// then P-256, which TLS 1.2 servers want listed for a P-256 certificate;
// ALPN http/1.1), one "GET -path" with "Connection: close", read the whole
// answer, close. A connection started before the end is finished and
// counted.
//
//   - -mode full: no session cache; every handshake is a full one.
//   - -mode resume: each worker keeps a tls.ClientSessionCache, primed by one
//     full handshake (and GET) before the clock starts; a connection counts
//     only when the server resumed the session (ConnectionState().DidResume),
//     and the share of connections that resumed is reported.
//
// The client does not verify the server's certificate (the benchmark
// measures the server, and a verification would only load the client's
// CPU). It prints one line on standard output:
//
//	RESULT mode=resume tls=1.3 workers=16 duration_us=10001234 requests=51234 handshakes=51240 resumed=51234 share=0.9999 rate=5123.0 p50_us=2900 p99_us=6100 errors=0
//
// requests is the connections counted (full: all those that completed;
// resume: those that resumed), rate requests per second, handshakes every
// connection whose handshake completed, share resumed ÷ handshakes, p50_us and
// p99_us the whole connection's time (connect to close) of the counted ones,
// errors the connections that failed (connect, handshake, request, or an
// answer that is not 2xx). The first errors are described on standard error.
// Exit status 0, or 2 on a wrong invocation.
package main

import (
	"bufio"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// options are the command line's settings.
type options struct {
	addr     string
	path     string
	sni      string
	mode     string // full or resume
	version  uint16
	verName  string
	curves   []tls.CurveID
	headers  []string
	workers  int
	duration time.Duration
	timeout  time.Duration
}

// curveNames are the key exchanges -curves accepts.
var curveNames = map[string]tls.CurveID{
	"x25519":         tls.X25519,
	"p256":           tls.CurveP256,
	"p384":           tls.CurveP384,
	"x25519mlkem768": tls.X25519MLKEM768,
}

// headerList is a repeatable -H flag.
type headerList []string

func (h *headerList) String() string { return strings.Join(*h, ", ") }
func (h *headerList) Set(v string) error {
	name, _, ok := strings.Cut(v, ":")
	if !ok || strings.TrimSpace(name) == "" || strings.ContainsAny(v, "\r\n") {
		return fmt.Errorf("%q: want \"Name: value\"", v)
	}
	*h = append(*h, v)
	return nil
}

// parseArgs reads the command line.
func parseArgs(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("handshake", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var hdrs headerList
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8443", "server `host:port`")
	fs.StringVar(&o.path, "path", "/", "path of the one GET per connection")
	fs.StringVar(&o.sni, "sni", "localhost", "TLS server name sent (also the host field)")
	fs.StringVar(&o.mode, "mode", "full", "full (no session cache) or resume (resumed handshakes only)")
	fs.StringVar(&o.verName, "tls", "1.3", "TLS version: 1.2 or 1.3")
	curves := fs.String("curves", "x25519,p256", "key exchanges offered, in order, comma-separated: x25519, p256, p384, x25519mlkem768 (TLS 1.2 servers such as OpenSSL also want the certificate's curve, P-256, listed)")
	fs.Var(&hdrs, "H", "request field `Name: value` (repeatable)")
	fs.IntVar(&o.workers, "workers", 16, "connections in progress at once")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long to start new connections")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "longest time for one connection")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	o.headers = hdrs
	switch o.verName {
	case "1.2":
		o.version = tls.VersionTLS12
	case "1.3":
		o.version = tls.VersionTLS13
	default:
		return o, fmt.Errorf("-tls %s: want 1.2 or 1.3", o.verName)
	}
	if o.mode != "full" && o.mode != "resume" {
		return o, fmt.Errorf("-mode %s: want full or resume", o.mode)
	}
	for _, c := range strings.Split(*curves, ",") {
		id, ok := curveNames[strings.ToLower(strings.TrimSpace(c))]
		if !ok {
			return o, fmt.Errorf("-curves: unknown key exchange %q", c)
		}
		o.curves = append(o.curves, id)
	}
	if o.workers < 1 || o.workers > 10000 {
		return o, fmt.Errorf("-workers %d: want 1 to 10000", o.workers)
	}
	if o.duration <= 0 || o.timeout <= 0 {
		return o, errors.New("-duration and -timeout must be positive")
	}
	if !strings.HasPrefix(o.path, "/") {
		return o, fmt.Errorf("-path %s: want an absolute path", o.path)
	}
	return o, nil
}

// tlsConfig is the client configuration of one worker: with a session cache
// of its own in resume mode.
func (o options) tlsConfig() *tls.Config {
	c := &tls.Config{
		ServerName:         o.sni,
		InsecureSkipVerify: true, // the server is measured, not the client's verification
		MinVersion:         o.version,
		MaxVersion:         o.version,
		CurvePreferences:   o.curves,
		NextProtos:         []string{"http/1.1"},
	}
	if o.mode == "resume" {
		c.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	}
	return c
}

// request is the bytes of the GET sent on every connection.
func (o options) request() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\n", o.path, o.sni)
	for _, h := range o.headers {
		b.WriteString(h)
		b.WriteString("\r\n")
	}
	b.WriteString("Connection: close\r\n\r\n")
	return []byte(b.String())
}

// tally is what the workers counted.
type tally struct {
	handshakes int      // connections whose handshake completed
	resumed    int      // of those, resumed by the server
	errors     int      // connections that failed
	firstErrs  []string // the first few failures, described
	latencies  []uint32 // µs, of the counted connections
}

func (t *tally) add(u *tally) {
	t.handshakes += u.handshakes
	t.resumed += u.resumed
	t.errors += u.errors
	for _, e := range u.firstErrs {
		if len(t.firstErrs) < 5 {
			t.firstErrs = append(t.firstErrs, e)
		}
	}
	t.latencies = append(t.latencies, u.latencies...)
}

func (t *tally) fail(err error) {
	t.errors++
	if len(t.firstErrs) < 5 {
		t.firstErrs = append(t.firstErrs, err.Error())
	}
}

// connect runs one connection: connect, handshake, GET, read, close. It
// reports whether the handshake completed, whether it resumed, and the
// first failure.
func connect(o options, cfg *tls.Config, req []byte, br *bufio.Reader) (handshaken, resumed bool, err error) {
	d := net.Dialer{Timeout: o.timeout}
	raw, err := d.Dial("tcp", o.addr)
	if err != nil {
		return false, false, fmt.Errorf("connect: %w", err)
	}
	c := tls.Client(raw, cfg)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(o.timeout))
	if err := c.Handshake(); err != nil {
		return false, false, fmt.Errorf("handshake: %w", err)
	}
	resumed = c.ConnectionState().DidResume
	if _, err := c.Write(req); err != nil {
		return true, resumed, fmt.Errorf("writing the request: %w", err)
	}
	br.Reset(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return true, resumed, fmt.Errorf("reading the answer: %w", err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return true, resumed, fmt.Errorf("reading the answer's body: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return true, resumed, fmt.Errorf("answer %s", resp.Status)
	}
	return true, resumed, nil
}

// run starts the workers and waits for them all.
func run(o options) (*tally, time.Duration) {
	req := o.request()
	// The priming (resume mode) happens before the clock: each worker's
	// end is set once every worker has primed.
	var ready, done sync.WaitGroup
	start := make(chan time.Time)
	results := make([]*tally, o.workers)
	for i := range o.workers {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			pre := &tally{}
			cfg := o.tlsConfig()
			br := bufio.NewReaderSize(nil, 4096)
			if o.mode == "resume" {
				if _, _, err := connect(o, cfg, req, br); err != nil {
					pre.fail(fmt.Errorf("priming the session cache: %w", err))
				}
			}
			ready.Done()
			t0 := <-start
			t := loop(o, cfg, req, br, t0.Add(o.duration))
			t.add(pre)
			results[i] = t
		}()
	}
	ready.Wait()
	t0 := time.Now()
	for range o.workers {
		start <- t0
	}
	done.Wait()
	elapsed := time.Since(t0)
	total := &tally{}
	for _, r := range results {
		total.add(r)
	}
	return total, elapsed
}

// loop is a worker's timed part: connections until end.
func loop(o options, cfg *tls.Config, req []byte, br *bufio.Reader, end time.Time) *tally {
	t := &tally{}
	for time.Now().Before(end) {
		start := time.Now()
		hs, resumed, err := connect(o, cfg, req, br)
		us := time.Since(start).Microseconds()
		if hs {
			t.handshakes++
			if resumed {
				t.resumed++
			}
		}
		if err != nil {
			t.fail(err)
			continue
		}
		if o.mode == "full" || resumed {
			t.latencies = append(t.latencies, uint32(min(us, 1<<32-1)))
		}
	}
	return t
}

// percentile is the p-th percentile (0 < p <= 100) of sorted values, by the
// nearest-rank method; 0 for none.
func percentile(sorted []uint32, p float64) uint32 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted)) + 0.999999999)
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

// resultLine is the RESULT line of a run.
func resultLine(o options, t *tally, elapsed time.Duration) string {
	slices.Sort(t.latencies)
	counted := len(t.latencies)
	share := 0.0
	if t.handshakes > 0 {
		share = float64(t.resumed) / float64(t.handshakes)
	}
	rate := 0.0
	if elapsed > 0 {
		rate = float64(counted) / elapsed.Seconds()
	}
	return fmt.Sprintf("RESULT mode=%s tls=%s workers=%d duration_us=%d requests=%d handshakes=%d resumed=%d share=%.4f rate=%.1f p50_us=%d p99_us=%d errors=%d",
		o.mode, o.verName, o.workers, elapsed.Microseconds(), counted, t.handshakes, t.resumed, share, rate,
		percentile(t.latencies, 50), percentile(t.latencies, 99), t.errors)
}

func main() {
	o, err := parseArgs(os.Args[1:], os.Stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "handshake:", err)
		}
		os.Exit(2)
	}
	t, elapsed := run(o)
	for _, e := range t.firstErrs {
		fmt.Fprintln(os.Stderr, "handshake: error:", e)
	}
	fmt.Println(resultLine(o, t, elapsed))
}
