// Command lb measures outbound load balancing: ten back-end addresses on
// 127.0.0.2 to 127.0.0.11 (one made slow), a Gatehouse instance (in
// process, the same code as the binary) balancing over them by response
// time, and, in the same run, the same gateway with a single address. It
// prints the share of requests the slow address still gets and the
// throughput of both. See docs/remotehosts.md.
//
//	go run ./bench/lb [-d 10s] [-c 32] [-slow 20ms]
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/instance"
)

func main() {
	dur := flag.Duration("d", 10*time.Second, "duration of each measurement")
	conns := flag.Int("c", 32, "concurrent keep-alive client connections")
	slow := flag.Duration("slow", 20*time.Millisecond, "delay added by the slow address")
	flag.Parse()

	counts := make([]atomic.Int64, 10)
	var addrs strings.Builder
	for i := range 10 {
		ip := fmt.Sprintf("127.0.0.%d", i+2)
		ln, err := net.Listen("tcp", ip+":0")
		if err != nil {
			log.Fatalf("listening on %s: %v", ip, err)
		}
		delay := time.Duration(0)
		if i == 9 {
			delay = *slow
		}
		n := &counts[i]
		go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			if delay > 0 {
				time.Sleep(delay)
			}
			w.Header().Set("Content-Length", "2")
			w.Write([]byte("ok"))
		}))
		fmt.Fprintf(&addrs, "      - {address: %s, port: %d}\n", ip, ln.Addr().(*net.TCPAddr).Port)
	}
	single := strings.SplitAfter(addrs.String(), "\n")[0]
	traffic, mgmt := freePort(), freePort()
	yaml := fmt.Sprintf(`traffic: {address: 127.0.0.1, port: %d}
management: {address: 127.0.0.1, port: %d}
log: {level: warn}
accessLog: {enabled: false}
backends:
  - {name: many, url: "http://many.test:80"}
  - {name: one, url: "http://one.test:80"}
remoteHosts:
  - host: many.test
    loadBalancing: responseTime
    addresses:
%s  - host: one.test
    addresses:
%sapis:
  - {name: many, pathPrefix: /many, backend: many}
  - {name: one, pathPrefix: /one, backend: one}
`, traffic, mgmt, addrs.String(), single)
	cfg, err := groupconf.Load(groupconf.Layer{Name: "lb.yaml", YAML: []byte(yaml)})
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "gatehouse-lb")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	h, _ := home.At(dir)
	os.MkdirAll(filepath.Join(h.InstanceDir("group-1", "instance-1"), "logs"), 0o755)
	inst, err := instance.New(instance.Options{Home: h, GroupID: "group-1", InstanceID: "instance-1", Config: cfg, Quiet: true})
	if err != nil {
		log.Fatal(err)
	}
	if err := inst.Start(); err != nil {
		log.Fatal(err)
	}
	defer inst.Close()
	gw := fmt.Sprintf("127.0.0.1:%d", traffic)

	fmt.Printf("10 addresses, responseTime, 127.0.0.11 slowed by %v; %d connections, %v each\n", *slow, *conns, *dur)
	load(gw, "/one", *conns, 2*time.Second) // warm-up
	load(gw, "/many", *conns, 2*time.Second)
	for i := range counts {
		counts[i].Store(0)
	}
	manyRPS := load(gw, "/many", *conns, *dur)
	var total int64
	for i := range counts {
		total += counts[i].Load()
	}
	slowN := counts[9].Load()
	fmt.Printf("weighted, 10 addresses: %8.0f req/s; slow address got %d of %d requests (%.2f%%; an even share is 10%%)\n",
		manyRPS, slowN, total, 100*float64(slowN)/float64(max(total, 1)))
	for i := range 9 {
		fmt.Printf("  127.0.0.%d: %d\n", i+2, counts[i].Load())
	}
	oneRPS := load(gw, "/one", *conns, *dur)
	fmt.Printf("single address:         %8.0f req/s (same gateway, same run)\n", oneRPS)
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// load runs conns keep-alive clients sending GET path for d and returns
// the completed requests per second.
func load(addr, path string, conns int, d time.Duration) float64 {
	var done atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: bench\r\n\r\n")
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				log.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			for time.Now().Before(stop) {
				if _, err := c.Write(req); err != nil {
					log.Fatal(err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					log.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					log.Fatalf("%s: status %d", path, resp.StatusCode)
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(done.Load()) / d.Seconds()
}
