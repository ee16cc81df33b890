package instance

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/net/http2"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/h1"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
)

// BenchmarkProxyH2 is BenchmarkProxyParallel over TLS and HTTP/2, once per
// traffic.http2Engine: the whole request path (engine, routing, forwarding
// to an in-process back end) with x/net's client, ten streams at a time
// on one connection. For a profile of the server side:
// go test ./internal/instance -run XX -bench ProxyH2 -cpu 1 -cpuprofile cpu.prof
func BenchmarkProxyH2(b *testing.B) {
	for _, engine := range []string{"gatehouse", "go"} {
		b.Run("engine="+engine, func(b *testing.B) {
			addr := benchGatewayTLS(b, engine)
			tr := &http2.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
			b.Cleanup(tr.CloseIdleConnections)
			c := &http.Client{Transport: tr}
			get := func() {
				resp, err := c.Get("https://" + addr + "/api/items/42?x=1")
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
					b.Fatalf("got %s %d", resp.Proto, resp.StatusCode)
				}
			}
			for i := 0; i < 100; i++ {
				get()
			}
			b.ReportAllocs()
			b.SetParallelism(10)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					get()
				}
			})
		})
	}
}

// benchGatewayTLS starts an instance with TLS and HTTP/2 served by engine
// in front of an in-process back end, and returns its traffic address.
func benchGatewayTLS(b *testing.B, engine string) string {
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
	ca, err := pki.NewCA("D")
	if err != nil {
		b.Fatal(err)
	}
	kp, err := ca.IssueKeyPair("localhost", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, false)
	if err != nil {
		b.Fatal(err)
	}
	h, _ := home.At(b.TempDir())
	certFile, keyFile := filepath.Join(h.Dir, "cert.pem"), filepath.Join(h.Dir, "private", "key.pem")
	if err := kp.Save(h, certFile, keyFile); err != nil {
		b.Fatal(err)
	}
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
traffic: {address: 127.0.0.1, port: %d, tls: {certFile: %s, keyFile: %s}, http2: true, http2Engine: %s}
management: {address: 127.0.0.1, port: %d}
log: {level: warn}
backends:
  - name: be
    url: http://%s
apis:
  - name: api
    pathPrefix: /api
    backend: be
`, ports[0], certFile, keyFile, engine, ports[1], bln.Addr())
	cfg, err := groupconf.Load(groupconf.Layer{Name: "bench.yaml", YAML: []byte(yaml)})
	if err != nil {
		b.Fatal(err)
	}
	os.MkdirAll(filepath.Join(h.InstanceDir(groupID, instanceID), "logs"), 0o755)
	inst, err := New(Options{Home: h, GroupID: groupID, InstanceID: instanceID, Config: cfg, Quiet: true})
	if err != nil {
		b.Fatal(err)
	}
	if err := inst.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { inst.Close() })
	return fmt.Sprintf("127.0.0.1:%d", ports[0])
}
