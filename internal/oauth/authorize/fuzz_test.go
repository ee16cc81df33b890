package authorize

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// FuzzAuthorize: whatever the query, the endpoint answers without panicking,
// and it redirects only to a registered redirect URI.
func FuzzAuthorize(f *testing.F) {
	for _, s := range []string{
		"", "client_id=shop", good(), good("scope", "x"), "client_id=shop&redirect_uri=" + cb + "&response_type=code",
		"client_id=shop&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb%2F", "client_id=shop&client_id=shop", "%", "client_id=%zz",
		"client_id=query&response_type=code&code_challenge=" + challenge + "&code_challenge_method=S256&state=%00",
		"client_id=shop&redirect_uri=" + cb + "&state=", "client_id=shop&redirect_uri=" + cb + "&code_challenge_method=S256&code_challenge=",
	} {
		f.Add(s)
	}
	clients := &fakeClients{byID: map[string]Client{
		"shop":  {ID: "shop", Enabled: true, RedirectURIs: []string{cb}, Scopes: []string{"a"}, AllowsCode: true},
		"query": {ID: "query", Enabled: true, RedirectURIs: []string{"https://app.example.com/cb?tenant=7"}, AllowsCode: true},
	}}
	a, err := New(Config{Key: secret.FromString(strings.Repeat("k", 32)), Clients: clients, Users: noUsers{}, Codes: &fakeCodes{}, Now: func() time.Time { return time.Unix(1e9, 0) }})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, q string) {
		r := a.Handle(context.Background(), &Request{Method: "GET", RawQuery: q, Header: http.Header{}})
		if r.Status == http.StatusSeeOther {
			loc := r.Header.Get("Location")
			if !strings.HasPrefix(loc, cb+"?") && !strings.HasPrefix(loc, "https://app.example.com/cb?tenant=7") {
				t.Fatalf("query %q redirected to %q", q, loc)
			}
		}
		if r.Status == 0 || r.Header.Get("Content-Security-Policy") == "" {
			t.Fatalf("query %q: status %d, headers %v", q, r.Status, r.Header)
		}
	})
}

type noUsers struct{}

func (noUsers) Authenticate(context.Context, string, secret.Value) (User, error) {
	return User{}, ErrBadLogin
}
