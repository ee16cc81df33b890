package oauth

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/url"
	"testing"
)

// The targets: >= 4,000 client_credentials grants/s and >= 8,000
// introspections/s on this machine. These benchmarks call Handle (what
// the gateway's engine calls, without the HTTP transport) from
// GOMAXPROCS goroutines against the embedded SQLite store in a
// temporary directory; grants/s = 1e9 / (ns/op).
//
//	go test -run '^$' -bench . -count 5 ./internal/oauth

func benchRequest(path, user, pass string, form url.Values) *Request {
	return &Request{Method: "POST", Path: path, Body: []byte(form.Encode()), Header: http.Header{
		"Content-Type":  {"application/x-www-form-urlencoded"},
		"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))},
	}}
}

func BenchmarkClientCredentials(b *testing.B) {
	for _, format := range []string{FormatOpaque, FormatJWT} {
		b.Run(format, func(b *testing.B) {
			var opts []envOpt
			if format == FormatJWT {
				opts = append(opts, jwtFormat)
			}
			e := newEnv(b, opts...)
			req := benchRequest("/oauth/token", "svc", svcSecret, url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}})
			ctx := context.Background()
			b.ReportAllocs()
			b.SetParallelism(32) // 64 clients at once on 2 cores, as over HTTP: concurrent grants share the store's commits
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, _ := e.srv.Handle(ctx, req)
					if resp.Status != 200 {
						b.Errorf("status %d: %s", resp.Status, resp.Body)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "grants/s")
		})
	}
}

// BenchmarkIntrospection: opaque tokens (a store read for the token, a
// registry look-up for the caller); JWTs as the server does it (a token
// seen before is served from the verified-JWT cache) and with the cache
// off (an ECDSA P-256 verification per call).
func BenchmarkIntrospection(b *testing.B) {
	for _, format := range []string{FormatOpaque, FormatJWT, "jwt-uncached"} {
		b.Run(format, func(b *testing.B) {
			var opts []envOpt
			if format != FormatOpaque {
				opts = append(opts, jwtFormat)
			}
			e := newEnv(b, opts...)
			e.srv.noCache = format == "jwt-uncached"
			ctx := context.Background()
			// 1,000 live tokens; each introspection asks about one of them.
			reqs := make([]*Request, 1000)
			grant := benchRequest("/oauth/token", "svc", svcSecret, url.Values{"grant_type": {"client_credentials"}})
			for i := range reqs {
				resp, _ := e.srv.Handle(ctx, grant)
				if resp.Status != 200 {
					b.Fatalf("grant: %d %s", resp.Status, resp.Body)
				}
				tok := string(resp.Body[len(`{"access_token":"`):])
				tok = tok[:len(tok)-len(tok)+indexQuote(tok)]
				reqs[i] = benchRequest("/oauth/introspect", "rs", rsSecret, url.Values{"token": {tok}})
			}
			if r, _ := e.srv.Handle(ctx, reqs[0]); string(r.Body[:14]) != `{"active":true` {
				b.Fatalf("introspection: %s", r.Body)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					resp, _ := e.srv.Handle(ctx, reqs[i%len(reqs)])
					if resp.Status != 200 {
						b.Errorf("status %d: %s", resp.Status, resp.Body)
						return
					}
					i++
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "introspections/s")
		})
	}
}

func indexQuote(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			return i
		}
	}
	return len(s)
}
