package instance

import (
	"fmt"
	"syscall"
	"testing"
	"time"
)

// processCPU is the process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkProxyJWT is BenchmarkProxy with the API behind a jwt policy
// (ES256, keys from a real issuer over HTTP, fetched once), every request
// carrying the same valid token: tokenCacheTtl 30s (the default: a token
// seen again skips the signature check) and 1ns (verified every time); and
// "nopolicy", the same API without the policy sent the same request (the
// token's bytes are read and forwarded all the same).
// Compare with BenchmarkProxy of the same run:
//
//	go test ./internal/instance -run '^$' -bench 'Proxy$|ProxyJWT' -benchmem -count 5
func BenchmarkProxyJWT(b *testing.B) {
	for _, c := range []struct{ name, ttl string }{{"nopolicy", ""}, {"cached", "30s"}, {"verified", "1ns"}} {
		b.Run(c.name, func(b *testing.B) {
			is := newJWTIssuer(b)
			var addr string
			if c.ttl == "" {
				addr = benchGateway(b)
			} else {
				addr = benchGateway(b, fmt.Sprintf("      - jwt: {issuer: %q, audience: orders, jwksUrl: %q, allowHttp: true, scopes: [orders:read], tokenCacheTtl: %s}\n",
					is.srv.URL, is.srv.URL+"/jwks", c.ttl))
			}
			benchWithField(b, addr, "Authorization: Bearer "+is.token(b, "orders:read"))
		})
	}
}
