package instance

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	goruntime "runtime"
	"testing"
	"time"

	"golang.org/x/oauth2/clientcredentials"

	"github.com/gatehouse-gw/gatehouse/internal/apps"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/sqlite"
)

// BenchmarkProxyOAuth: the request path through the oauth policy with an
// opaque token of the instance's own server, in the policy's cache of
// verified tokens ("cached") or checked against the store's cache every
// time ("verified", tokenCacheTtl 1ns). Compare with BenchmarkProxy:
//
//	go test ./internal/instance -run '^$' -bench 'Proxy$|ProxyOAuth' -benchmem -count 5
func BenchmarkProxyOAuth(b *testing.B) {
	for _, c := range []struct{ name, ttl string }{{"cached", "30s"}, {"verified", "1ns"}} {
		b.Run(c.name, func(b *testing.B) {
			addr, h := benchGatewayHome(b, fmt.Sprintf("      - oauth: {scopes: [read], tokenCacheTtl: %s}\noauth: {enabled: true, issuer: \"http://127.0.0.1\", scopes: [read]}\n", c.ttl))
			ctx := context.Background()
			id, sec := benchOAuthClient(b, h)
			var tok string
			for range 50 {
				t, err := (&clientcredentials.Config{ClientID: id, ClientSecret: sec, TokenURL: "http://" + addr + "/oauth/token", Scopes: []string{"read"}}).Token(ctx)
				if err == nil {
					tok = t.AccessToken
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if tok == "" {
				b.Fatal("no token")
			}
			benchWithField(b, addr, "Authorization: Bearer "+tok)
		})
	}
}

// BenchmarkTokenEndpoint: client_credentials grants over HTTP (each a
// stored opaque token), from 64 keep-alive connections at once as
// bench/run's wrk sends them. grants/s is what the gateway's engine and
// store achieve with the CPUs the benchmark is given (-cpu):
//
//	go test ./internal/instance -run '^$' -bench TokenEndpoint -cpu 1,2 -count 5
func BenchmarkTokenEndpoint(b *testing.B) {
	addr, h := benchGatewayHome(b, "      - oauth: {scopes: [read]}\noauth: {enabled: true, issuer: \"http://127.0.0.1\", scopes: [read]}\n")
	id, sec := benchOAuthClient(b, h)
	body := "grant_type=client_credentials&scope=read"
	req := []byte(fmt.Sprintf("POST /oauth/token HTTP/1.1\r\nHost: bench\r\nAuthorization: Basic %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s",
		base64.StdEncoding.EncodeToString([]byte(id+":"+sec)), len(body), body))
	var ready bool
	for range 50 {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		cl := &client{c: conn, br: bufio.NewReader(conn), req: req}
		err = cl.do()
		conn.Close()
		if err == nil {
			ready = true
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !ready {
		b.Fatal("the token endpoint never granted")
	}
	b.SetParallelism(64 / goruntime.GOMAXPROCS(0))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	b.RunParallel(func(pb *testing.PB) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer conn.Close()
		cl := &client{c: conn, br: bufio.NewReaderSize(conn, 16<<10), req: req}
		for pb.Next() {
			if err := cl.do(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "grants/s")
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

// benchOAuthClient makes a client_credentials client (scope read) in the
// group's store of the install directory h: its id and a secret.
func benchOAuthClient(b *testing.B, h home.Home) (id, secret string) {
	b.Helper()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, kps.SQLiteConfig{Path: sqlite.GroupPath(h, groupID)})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	hk, _ := apps.GroupHashKey(ctx, h, groupID, store)
	m, _ := apps.NewManager(ctx, store, hk)
	app, err := m.CreateApp(ctx, apps.App{Name: "bench", Enabled: true, OAuth: &apps.OAuthClient{GrantTypes: []string{"client_credentials"}, Scopes: []string{"read"}}})
	if err != nil {
		b.Fatal(err)
	}
	_, sec, err := m.CreateClientSecret(ctx, app.ID, time.Time{})
	if err != nil {
		b.Fatal(err)
	}
	return app.ID, sec.RevealString()
}
