package h2

import (
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"testing"

	"golang.org/x/net/http2"

	"github.com/gatehouse-gw/gatehouse/internal/h1"
	"github.com/gatehouse-gw/gatehouse/internal/h2bridge"
)

var benchBody = []byte("Gatehouse benchmark back end: a fixed body of one hundred bytes, answered by nginx with return 200.")

func benchHandler(w h1.ResponseWriter, r *h1.Request) {
	w.Header().SetString("Content-Type", "text/plain")
	w.Header().SetString("X-Correlation-Id", "0123456789abcdef")
	w.Write(benchBody)
}

// BenchmarkEngines compares, in the same run, this engine with Go's
// HTTP/2 server and h2bridge (the other traffic.http2Engine), serving the
// same handler over TLS to x/net/http2's client on one connection with
// concurrent streams. The client's cost is in both numbers; run with
// -cpuprofile and look at the server's share. bench/h2/run measures real
// processes with h2load.
func BenchmarkEngines(b *testing.B) {
	b.Run("engine=gatehouse", func(b *testing.B) {
		addr := startServer(b, &Server{Handler: h1.HandlerFunc(benchHandler)})
		benchClient(b, "https://"+addr+"/api/bench")
	})
	// Go's server tuned through x/net's ConfigureServer: what settings
	// alone give (docs/h2.md, "Cheap wins on Go's server").
	for _, tune := range []struct {
		name string
		conf *http2.Server
	}{
		{"go-xnet-default", &http2.Server{}},
		{"go-xnet-random-scheduler", &http2.Server{NewWriteScheduler: func() http2.WriteScheduler { return http2.NewRandomWriteScheduler() }}},
		{"go-xnet-big-frames", &http2.Server{MaxReadFrameSize: 1 << 20, MaxConcurrentStreams: 1000, MaxUploadBufferPerConnection: 8 << 20, MaxUploadBufferPerStream: 1 << 20}},
	} {
		b.Run("engine="+tune.name, func(b *testing.B) {
			srv := httptest.NewUnstartedServer(h2bridge.Handler(h1.HandlerFunc(benchHandler)))
			srv.Config.ErrorLog = log.New(io.Discard, "", 0)
			if err := http2.ConfigureServer(srv.Config, tune.conf); err != nil {
				b.Fatal(err)
			}
			srv.TLS = &tls.Config{NextProtos: []string{"h2"}}
			srv.StartTLS()
			b.Cleanup(srv.Close)
			benchClient(b, srv.URL+"/api/bench")
		})
	}
	b.Run("engine=go", func(b *testing.B) {
		srv := httptest.NewUnstartedServer(h2bridge.Handler(h1.HandlerFunc(benchHandler)))
		srv.EnableHTTP2 = true
		srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		srv.StartTLS()
		b.Cleanup(srv.Close)
		benchClient(b, srv.URL+"/api/bench")
	})
}

func benchClient(b *testing.B, url string) {
	tr := &http2.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	b.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr}
	get := func() {
		resp, err := c.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("got %d", resp.StatusCode)
		}
	}
	get()
	b.ReportAllocs()
	b.SetParallelism(10)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			get()
		}
	})
}
