package instance

import (
	"context"
	"fmt"
	"testing"
	"time"

	"golang.org/x/oauth2/clientcredentials"

	"github.com/gatehouse-gw/gatehouse/internal/apps"
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
			_, sec, _ := m.CreateClientSecret(ctx, app.ID, time.Time{})
			var tok string
			for range 50 {
				t, err := (&clientcredentials.Config{ClientID: app.ID, ClientSecret: sec.RevealString(), TokenURL: "http://" + addr + "/oauth/token", Scopes: []string{"read"}}).Token(ctx)
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
