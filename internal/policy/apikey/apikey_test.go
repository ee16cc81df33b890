package apikey

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/h1"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
)

// fakeChecker knows some keys; down makes it fail as a store that cannot
// answer.
type fakeChecker struct {
	apps  map[string]App
	down  bool
	calls int
}

func (f *fakeChecker) Check(_ context.Context, key string) (App, error) {
	f.calls++
	if f.down {
		return App{}, errors.New("kps get: connection refused")
	}
	a, ok := f.apps[key]
	if !ok {
		return App{}, fmt.Errorf("key %q: %w", key[:min(len(key), 8)], ErrInvalidKey)
	}
	return a, nil
}

func request(query string, fields ...string) *policy.Exchange {
	r := &h1.Request{Method: []byte("GET"), Path: []byte("/orders")}
	if query != "" {
		r.Query = []byte(query)
	}
	for i := 0; i+1 < len(fields); i += 2 {
		r.Header.AddString(fields[i], fields[i+1])
	}
	return &policy.Exchange{R: r}
}

func TestAPIKeyPolicy(t *testing.T) {
	ck := &fakeChecker{apps: map[string]App{
		"good-key":  {ID: "app-1", Name: "Shop", APIs: []string{"orders", "stock"}},
		"other-key": {ID: "app-2", Name: "Other", APIs: []string{"stock"}},
	}}
	p := New(groupconf.APIKeyPolicy{Query: "api_key"}, "orders", ck)
	if p.Name() != "apiKey" {
		t.Errorf("Name: %q", p.Name())
	}
	long := strings.Repeat("k", MaxKeyBytes+1)
	tests := []struct {
		name      string
		ex        *policy.Exchange
		status    int
		wantApp   string
		wantQuery string
		lookups   int
	}{
		{"in the field", request("", "KeyId", "good-key", "X-Gatehouse-Application-Id", "spoofed"), 0, "app-1", "", 1},
		{"field name without case", request("", "keyid", "good-key"), 0, "app-1", "", 1},
		{"in the query, others kept", request("a=1&api_key=good-key&b=2"), 0, "app-1", "a=1&b=2", 1},
		{"query escaped", request("api%5Fkey=good%2Dkey"), 0, "app-1", "", 1},
		{"field wins over query", request("api_key=other-key", "KeyId", "good-key"), 0, "app-1", "", 1},
		{"missing", request("a=1"), 401, "", "a=1", 0},
		{"another parameter name", request("apikey=good-key"), 401, "", "apikey=good-key", 0},
		{"repeated field", request("", "KeyId", "good-key", "KeyId", "good-key"), 401, "", "", 0},
		{"empty", request("", "KeyId", ""), 401, "", "", 0},
		{"too long", request("", "KeyId", long), 401, "", "", 0},
		{"unknown", request("", "KeyId", "bad-key"), 401, "", "", 1},
		{"another API's application", request("", "KeyId", "other-key"), 403, "app-2", "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ck.calls = 0
			err := p.Apply(tt.ex)
			var pe *policy.Error
			switch {
			case tt.status == 0 && err != nil:
				t.Fatalf("got %v, want the request through", err)
			case tt.status != 0 && (!errors.As(err, &pe) || pe.Status != tt.status):
				t.Fatalf("got %v, want %d", err, tt.status)
			}
			if tt.status == 401 {
				if len(pe.Fields) != 1 || pe.Fields[0][0] != "WWW-Authenticate" || pe.Fields[0][1] != `APIKey realm="gatehouse", header="KeyId", query="api_key"` {
					t.Errorf("401 fields: %v", pe.Fields)
				}
			}
			r := tt.ex.R
			if r.Header.Has("KeyId") {
				t.Error("the key field is still on the request")
			}
			if string(r.Query) != tt.wantQuery {
				t.Errorf("query: got %q, want %q", r.Query, tt.wantQuery)
			}
			if tt.ex.Application != tt.wantApp {
				t.Errorf("exchange application: got %q, want %q", tt.ex.Application, tt.wantApp)
			}
			if ck.calls != tt.lookups {
				t.Errorf("look-ups: got %d, want %d", ck.calls, tt.lookups)
			}
			if tt.status == 0 {
				if got := string(r.Header.Get("X-Gatehouse-Application-Id")); got != "app-1" {
					t.Errorf("application id field: %q", got)
				}
				if got := string(r.Header.Get("X-Gatehouse-Application-Name")); got != "Shop" {
					t.Errorf("application name field: %q", got)
				}
				n := 0
				r.Header.Each(func(name, _ []byte) bool {
					if strings.EqualFold(string(name), "X-Gatehouse-Application-Id") {
						n++
					}
					return true
				})
				if n != 1 {
					t.Errorf("%d application id fields, want 1", n)
				}
			}
		})
	}
	// A store that cannot answer: 503, never 401, never through.
	ck.down = true
	err := p.Apply(request("", "KeyId", "good-key"))
	var pe *policy.Error
	if !errors.As(err, &pe) || pe.Status != http.StatusServiceUnavailable || strings.Contains(pe.Message, "refused") || pe.Err == nil {
		t.Errorf("store down: got %v, want 503 with the cause kept for the log only", err)
	}
	// Without a query setting, the query is not looked at.
	q := New(groupconf.APIKeyPolicy{Header: "X-Api-Key", ApplicationIDHeader: "X-App", ApplicationNameHeader: "X-App-Name"}, "orders", &fakeChecker{apps: ck.apps})
	ex := request("api_key=good-key&KeyId=good-key")
	if err := q.Apply(ex); !errors.As(err, &pe) || pe.Status != 401 || pe.Fields[0][1] != `APIKey realm="gatehouse", header="X-Api-Key"` {
		t.Errorf("key in the query without a query setting: %v", err)
	}
	if string(ex.R.Query) != "api_key=good-key&KeyId=good-key" {
		t.Errorf("query changed without a query setting: %q", ex.R.Query)
	}
	ex = request("", "X-Api-Key", "good-key", "KeyId", "other")
	if err := q.Apply(ex); err != nil || string(ex.R.Header.Get("X-App")) != "app-1" || string(ex.R.Header.Get("X-App-Name")) != "Shop" || string(ex.R.Header.Get("KeyId")) != "other" {
		t.Errorf("configured fields: %v %v", err, ex.R.Header)
	}
}

func TestCutParam(t *testing.T) {
	for _, c := range []struct{ q, rest, value string }{
		{"k=v", "", "v"},
		{"a=1&k=v&b=2&k=w", "a=1&b=2", "v"},
		{"k", "", ""},
		{"a=%zz&k=v", "a=%zz", "v"},
		{"kk=v&k=%41", "kk=v", "A"},
		{"a=1", "a=1", ""},
		{"a&k=v&b", "a&b", "v"},
	} {
		rest, v, _ := cutParam([]byte(c.q), "k")
		if string(rest) != c.rest || v != c.value {
			t.Errorf("cutParam(%q): got %q %q, want %q %q", c.q, rest, v, c.rest, c.value)
		}
	}
	if _, _, found := cutParam([]byte("a=1"), "k"); found {
		t.Error("found a parameter that is not there")
	}
}

// TestAPIKeyEdges: the limits stated at their edges and what each refusal
// says.
func TestAPIKeyEdges(t *testing.T) {
	atMax := strings.Repeat("k", 256) // the documented limit (docs/policies.md), not MaxKeyBytes: a changed constant must fail
	ck := &fakeChecker{apps: map[string]App{"good-key": {ID: "app-1", Name: "Shop", APIs: []string{"orders"}}, atMax: {ID: "app-3", Name: "Long", APIs: []string{"orders"}}}}
	p := New(groupconf.APIKeyPolicy{Query: "k"}, "orders", ck)
	msg := func(err error) string {
		var pe *policy.Error
		if !errors.As(err, &pe) {
			return ""
		}
		return fmt.Sprintf("%d %s", pe.Status, pe.Message)
	}
	// A key of MaxKeyBytes is looked up; one byte more is refused without.
	ck.calls = 0
	if ex := request("", "KeyId", atMax); p.Apply(ex) != nil || ex.Application != "app-3" || ck.calls != 1 {
		t.Errorf("a key of %d bytes: application %q, %d look-ups", MaxKeyBytes, ex.Application, ck.calls)
	}
	ck.calls = 0
	if err := p.Apply(request("", "KeyId", atMax+"k")); msg(err) != "401 invalid API key" || ck.calls != 0 {
		t.Errorf("a key of %d bytes: %v after %d look-ups", MaxKeyBytes+1, err, ck.calls)
	}
	for name, c := range map[string]struct {
		ex   *policy.Exchange
		want string
	}{
		"none":            {request(""), "401 an API key is required"},
		"two fields":      {request("", "KeyId", "good-key", "KeyId", "good-key"), "401 give one API key"},
		"one-byte query":  {request("k"), "401 invalid API key"},
		"an empty value":  {request("k="), "401 invalid API key"},
		"field and query": {request("k=x", "KeyId", "good-key", "KeyId", "y"), "401 give one API key"},
	} {
		if got := msg(p.Apply(c.ex)); got != c.want {
			t.Errorf("%s: got %q, want %q", name, got, c.want)
		}
		if len(c.ex.R.Query) != 0 {
			t.Errorf("%s: the key parameter was left in the query %q", name, c.ex.R.Query)
		}
	}
	// No query: the request's query stays absent (not made empty: an
	// empty one would be forwarded as a lone "?").
	ex := request("", "KeyId", "good-key")
	if err := p.Apply(ex); err != nil || ex.R.Query != nil {
		t.Errorf("no query: %v, query %q (nil: %v)", err, ex.R.Query, ex.R.Query == nil)
	}
	// Without a query setting, a parameter with an empty name is not a key.
	q := New(groupconf.APIKeyPolicy{}, "orders", ck)
	ex = request("=good-key")
	if err := q.Apply(ex); msg(err) != "401 an API key is required" || string(ex.R.Query) != "=good-key" {
		t.Errorf("an empty-named parameter without a query setting: %v, query %q", err, ex.R.Query)
	}
}
