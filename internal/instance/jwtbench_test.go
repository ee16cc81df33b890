package instance

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
)

// BenchmarkProxyJWT is BenchmarkProxy with the API behind a jwt policy
// (ES256, keys from a real issuer over HTTP, fetched once), every request
// carrying the same valid token: tokenCacheTtl 30s (the default: a token
// seen again skips the signature check) and 1ns (verified every time).
// Compare with BenchmarkProxy of the same run:
//
//	go test ./internal/instance -run '^$' -bench 'Proxy$|ProxyJWT' -benchmem -count 5
func BenchmarkProxyJWT(b *testing.B) {
	for _, c := range []struct{ name, ttl string }{{"cached", "30s"}, {"verified", "1ns"}} {
		b.Run(c.name, func(b *testing.B) {
			is := newJWTIssuer(b)
			addr := benchGateway(b, fmt.Sprintf("      - jwt: {issuer: %q, audience: orders, jwksUrl: %q, allowHttp: true, scopes: [orders:read], tokenCacheTtl: %s}\n",
				is.srv.URL, is.srv.URL+"/jwks", c.ttl))
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			req := strings.Replace(string(benchRequest), "\r\n\r\n", "\r\nAuthorization: Bearer "+is.token(b, "orders:read")+"\r\n\r\n", 1)
			cl := &client{c: conn, br: bufio.NewReaderSize(conn, 16<<10), req: []byte(req)}
			for i := 0; i < 100; i++ { // warm the pools, fetch the keys
				if err := cl.do(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := cl.do(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
