package instance

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apps"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/sqlite"
)

// BenchmarkProxyAPIKey: the request path through the apiKey policy with a
// valid key (a verified key after the first request), against the same
// API without a policy sent the same request ("nopolicy"). cpu-µs/op is
// the whole process's CPU per request (gateway, client and back end):
// steadier than ns/op on a shared machine.
//
//	go test ./internal/instance -run '^$' -bench 'ProxyAPIKey' -benchmem -count 5
func BenchmarkProxyAPIKey(b *testing.B) {
	for _, c := range []struct {
		name   string
		policy bool
	}{{"nopolicy", false}, {"apikey", true}} {
		b.Run(c.name, func(b *testing.B) {
			var addr string
			if c.policy {
				addr = benchAPIKeyGateway(b)
			} else {
				addr = benchGateway(b)
			}
			benchWithField(b, addr, "KeyId: "+benchKey)
		})
	}
}

// benchKey is the key the apikey case is called with (set by
// benchAPIKeyGateway; the nopolicy case sends it too).
var benchKey = "gk_aaaaaaaaaaaa_aaaaaaaaaaaaaaaaaaaaaaaaaa"

func benchAPIKeyGateway(b *testing.B) string {
	addr, h := benchGatewayHome(b, "      - apiKey: {}\n")
	ctx := context.Background()
	store, err := sqlite.Open(ctx, kps.SQLiteConfig{Path: sqlite.GroupPath(h, groupID)})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	hk, _ := apps.GroupHashKey(ctx, h, groupID, store)
	m, _ := apps.NewManager(ctx, store, hk)
	app, err := m.CreateApp(ctx, apps.App{Name: "bench", Enabled: true, APIs: []string{"api"}})
	if err != nil {
		b.Fatal(err)
	}
	_, key, err := m.CreateKey(ctx, app.ID, time.Time{})
	if err != nil {
		b.Fatal(err)
	}
	benchKey = key.RevealString()
	return addr
}
