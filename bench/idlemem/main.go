// Command idlemem measures what an idle HTTP/1.1 keep-alive connection costs
// the internal/h1 server, out of process: it serves h1 in this process and
// runs bench/idleconns (built beforehand, -idleconns) as a separate process
// to open -n connections, each having carried one request, then prints the
// server's memory before and with them, broken down:
//
//	rss      VmRSS of this process (/proc/self/status)
//	stack    runtime StackInuse (goroutine stacks)
//	heap     runtime HeapInuse (heap spans in use)
//	free     HeapIdle - HeapReleased (free heap pages still resident)
//	other    the runtime's own structures: MSpanInuse, MCacheInuse, BuckHashSys,
//	         GCSys, OtherSys (netpoll descriptors live here)
//
// "after" is read -settle after idleconns is ready (as bench/run does,
// 2 s), "after GC" once more after runtime.GC and debug.FreeOSMemory (what
// the connections keep once the garbage of their requests is gone).
//
// With -upstream the handler forwards each request to that address with
// h1.Forward (stacks during a request are then those of the proxy path);
// otherwise it answers a small JSON body itself.
//
//	go build -o /tmp/idleconns ./bench/idleconns
//	go run ./bench/idlemem -idleconns /tmp/idleconns -n 10000
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/h1"
)

type sample struct {
	rss, stack, heap, free, other uint64
	mspan, gc, os                 uint64 // parts of other: MSpanInuse, GCSys, OtherSys
	goroutines                    int
}

func read() sample {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return sample{
		rss:        vmRSS(),
		stack:      ms.StackInuse,
		heap:       ms.HeapInuse,
		free:       ms.HeapIdle - ms.HeapReleased,
		other:      ms.MSpanInuse + ms.MCacheInuse + ms.BuckHashSys + ms.GCSys + ms.OtherSys,
		mspan:      ms.MSpanInuse,
		gc:         ms.GCSys,
		os:         ms.OtherSys,
		goroutines: runtime.NumGoroutine(),
	}
}

func vmRSS() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func main() {
	bin := flag.String("idleconns", "/tmp/idleconns", "the bench/idleconns binary")
	n := flag.Int("n", 10000, "idle connections")
	settle := flag.Duration("settle", 2*time.Second, "wait after the connections are open before reading memory")
	upstream := flag.String("upstream", "", "forward requests to this host:port (default: answer directly)")
	flag.Parse()

	var handler h1.Handler = h1.HandlerFunc(func(w h1.ResponseWriter, r *h1.Request) {
		w.Header().Add("X-CorrelationID", r.Header.Get("X-CorrelationID"))
		w.Header().AddString("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true}`))
	})
	if *upstream != "" {
		u := &h1.Upstream{Addr: *upstream, MaxIdle: 64}
		handler = h1.HandlerFunc(func(w h1.ResponseWriter, r *h1.Request) {
			out := h1.Outgoing{Method: r.Method, Path: r.Path, Query: r.Query, Host: r.Host, Header: &r.Header,
				Body: r.Body, ContentLength: r.ContentLength}
			if _, err := h1.Forward(context.Background(), u, w, &out); err != nil {
				w.WriteHeader(502)
			}
		})
	}
	s := &h1.Server{Handler: handler, IdleTimeout: 10 * time.Minute}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go s.Serve(ln)

	runtime.GC()
	debug.FreeOSMemory()
	before := read()

	cmd := exec.Command(*bin, "-addr", ln.Addr().String(), "-n", strconv.Itoa(*n))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out := bufio.NewScanner(stdout)
	if !out.Scan() || !strings.HasPrefix(out.Text(), "READY") {
		fmt.Fprintln(os.Stderr, "idleconns did not get ready:", out.Text())
		os.Exit(1)
	}
	time.Sleep(*settle)
	after := read()
	runtime.GC()
	debug.FreeOSMemory()
	afterGC := read()
	open := s.ActiveConns()
	fmt.Fprintln(stdin, "done")
	out.Scan()
	cmd.Wait()

	per := func(a, b uint64) float64 { return float64(int64(a)-int64(b)) / float64(*n) }
	fmt.Printf("%d idle connections (%d open at the server), GOGC=%s GODEBUG=%s\n", *n, open, os.Getenv("GOGC"), os.Getenv("GODEBUG"))
	fmt.Printf("%-10s %10s %10s %10s %10s %10s %10s   other: %s\n", "bytes/conn", "rss", "stack", "heap", "free", "other", "goroutines", "mspan gc othersys")
	for _, r := range []struct {
		name string
		s    sample
	}{{"after", after}, {"after GC", afterGC}} {
		fmt.Printf("%-10s %10.0f %10.0f %10.0f %10.0f %10.0f %10d   %.0f %.0f %.0f\n", r.name, per(r.s.rss, before.rss), per(r.s.stack, before.stack),
			per(r.s.heap, before.heap), per(r.s.free, before.free), per(r.s.other, before.other), r.s.goroutines-before.goroutines,
			per(r.s.mspan, before.mspan), per(r.s.gc, before.gc), per(r.s.os, before.os))
	}
}
