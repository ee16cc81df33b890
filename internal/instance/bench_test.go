package instance

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/h1"
	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// benchGateway starts an instance in front of a minimal h1 back end (which
// allocates nothing), with routing, correlation ids and the access log on,
// and returns the traffic address. policies, when not empty, are YAML lines
// added under the API (its policies: list).
func benchGateway(b *testing.B, policies ...string) string {
	b.Helper()
	addr, _ := benchGatewayHome(b, policies...)
	return addr
}

// benchGatewayHome is benchGateway that also gives the install directory.
func benchGatewayHome(b *testing.B, policies ...string) (string, home.Home) {
	b.Helper()
	backendBody := bytes.Repeat([]byte("x"), 100)
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	be := &h1.Server{Handler: h1.HandlerFunc(func(w h1.ResponseWriter, r *h1.Request) {
		w.Header().SetString("Content-Type", "text/plain")
		w.Header().SetString("Content-Length", "100")
		w.WriteHeader(200)
		w.Write(backendBody)
	})}
	go be.Serve(bln)
	b.Cleanup(func() { be.Close() })

	ports := make([]int, 2)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	yaml := fmt.Sprintf(`
traffic: {address: 127.0.0.1, port: %d}
management: {address: 127.0.0.1, port: %d}
log: {level: warn}
backends:
  - name: be
    url: http://%s
apis:
  - name: api
    pathPrefix: /api
    backend: be
`, ports[0], ports[1], bln.Addr())
	if len(policies) > 0 {
		yaml += "    policies:\n" + strings.Join(policies, "")
	}
	cfg, err := groupconf.Load(groupconf.Layer{Name: "bench.yaml", YAML: []byte(yaml)})
	if err != nil {
		b.Fatal(err)
	}
	h, _ := home.At(b.TempDir())
	os.MkdirAll(filepath.Join(h.InstanceDir(groupID, instanceID), "logs"), 0o755)
	inst, err := New(Options{Home: h, GroupID: groupID, InstanceID: instanceID, Config: cfg, Quiet: true})
	if err != nil {
		b.Fatal(err)
	}
	if err := inst.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { inst.Close() })
	return fmt.Sprintf("127.0.0.1:%d", ports[0]), h
}

// client is a keep-alive HTTP/1.1 client that allocates nothing per request.
type client struct {
	c   net.Conn
	br  *bufio.Reader
	req []byte // nil: benchRequest
}

var benchRequest = []byte("GET /api/items/42?x=1 HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")

func (c *client) do() error {
	req := c.req
	if req == nil {
		req = benchRequest
	}
	if _, err := c.c.Write(req); err != nil {
		return err
	}
	length := -1
	status := 0
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if status == 0 {
			if len(line) < 12 {
				return fmt.Errorf("bad status line %q", line)
			}
			status, _ = strconv.Atoi(string(line[9:12]))
			continue
		}
		if len(line) <= 2 {
			break
		}
		if len(line) > 16 && bytes.EqualFold(line[:15], []byte("Content-Length:")) {
			length, _ = strconv.Atoi(string(bytes.TrimSpace(line[15:])))
		}
	}
	if status != 200 || length < 0 {
		return fmt.Errorf("status %d, length %d", status, length)
	}
	_, err := c.br.Discard(length)
	return err
}

// BenchmarkProxy measures one proxied request through the whole request path
// (h1 server, correlation id, routing, forwarding over a pooled keep-alive
// connection, access log). allocs/op counts the whole process: the client
// and the back end allocate nothing, so it is the gateway's.
func BenchmarkProxy(b *testing.B) { benchSeq(b, benchGateway(b)) }

// benchSeq times requests to addr over one keep-alive connection, after
// 100 that warm the pools (and fill a cache).
func benchSeq(b *testing.B, addr string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	cl := &client{c: c, br: bufio.NewReaderSize(c, 16<<10)}
	for range 100 {
		if err := cl.do(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := cl.do(); err != nil {
			b.Fatal(err)
		}
	}
}

// benchParallel times requests to addr over 8 × GOMAXPROCS keep-alive
// connections at once.
func benchParallel(b *testing.B, addr string) {
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		cl := &client{c: c, br: bufio.NewReaderSize(c, 16<<10)}
		for pb.Next() {
			if err := cl.do(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkProxyParallel is BenchmarkProxy over several connections.
func BenchmarkProxyParallel(b *testing.B) { benchParallel(b, benchGateway(b)) }

// BenchmarkDirect is the back end alone, for comparison with BenchmarkProxy.
func BenchmarkDirect(b *testing.B) {
	backendBody := bytes.Repeat([]byte("x"), 100)
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	be := &h1.Server{Handler: h1.HandlerFunc(func(w h1.ResponseWriter, r *h1.Request) {
		w.Header().SetString("Content-Length", "100")
		w.WriteHeader(200)
		w.Write(backendBody)
	})}
	go be.Serve(bln)
	defer be.Close()
	c, err := net.Dial("tcp", bln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	cl := &client{c: c, br: bufio.NewReaderSize(c, 16<<10)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := cl.do(); err != nil {
			b.Fatal(err)
		}
	}
}

// benchWithField sends the benchmark request with one more header line
// (field, "Name: value") over one keep-alive connection to addr: 100
// requests to warm up, then b.N timed, reporting the whole process's CPU
// per request (steadier than ns/op on a shared machine).
func benchWithField(b *testing.B, addr, field string) {
	b.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	req := strings.Replace(string(benchRequest), "\r\n\r\n", "\r\n"+field+"\r\n\r\n", 1)
	cl := &client{c: conn, br: bufio.NewReaderSize(conn, 16<<10), req: []byte(req)}
	for range 100 {
		if err := cl.do(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for i := 0; i < b.N; i++ {
		if err := cl.do(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}
