package instance

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apps"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/postgres/pgtest"
	"github.com/gatehouse-gw/gatehouse/internal/kps/sqlite"
)

// policyBackend is a back end that answers with CORS and other fields of
// its own, and echoes the request's fields as JSON.
func policyBackend(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "https://evil.example")
		w.Header().Set("Access-Control-Allow-Credentials", "true")
		w.Header().Set("Server", "backend/1.0")
		w.Header().Set("X-Debug", "internal")
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"method": r.Method, "headers": r.Header})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// policiesYAML: three APIs on one back end, one with cors and credentials,
// one with cors for any origin, one with headers; and an API whose back end
// is down, with both policies.
func policiesYAML(backend string, downPort int) string {
	return fmt.Sprintf(`
backends:
  - name: be
    url: %s
  - name: down
    url: http://127.0.0.1:%d
apis:
  - name: app
    pathPrefix: /app
    methods: [GET, POST]
    backend: be
    policies:
      - cors:
          origins: [https://app.example.com, http://localhost:3000]
          headers: [Content-Type, KeyId]
          exposeHeaders: [X-Request-Total]
          credentials: true
          maxAge: 10m
  - name: public
    pathPrefix: /public
    backend: be
    policies:
      - cors: {origins: ["*"]}
  - name: edited
    pathPrefix: /edited
    methods: [GET]
    backend: be
    policies:
      - headers:
          request:
            set: {X-Team: orders, X-Api-Version: "2"}
            remove: [X-Internal-Token]
          response:
            set: {X-Frame-Options: DENY}
            remove: [Server, X-Debug]
  - name: down
    pathPrefix: /down
    backend: down
    policies:
      - cors: {origins: [https://app.example.com]}
      - headers: {response: {set: {X-Gateway: gatehouse}}}
`, backend, downPort)
}

// TestCORSPolicy: preflights are answered by the gateway (allowed: 204
// with the Access-Control-Allow-* fields; an origin, method or field not
// allowed: 403), never forwarded; responses carry the policy's CORS
// fields in place of the back end's; an OPTIONS request that is not a
// preflight gets 405 on an API that does not take OPTIONS; the gateway's
// own errors carry them too.
func TestCORSPolicy(t *testing.T) {
	be := policyBackend(t)
	ti := startInstance(t, quickstartYAML(newPorts(t), policiesYAML(be.URL, newPorts(t).traffic)))
	pre := func(path, origin, method, fields string) response {
		h := http.Header{"Origin": {origin}, "Access-Control-Request-Method": {method}}
		if fields != "" {
			h.Set("Access-Control-Request-Headers", fields)
		}
		return do(t, nil, "OPTIONS", ti.base+path, h)
	}
	r := pre("/app/x", "https://app.example.com", "POST", "content-type, keyid")
	want := map[string]string{
		"Access-Control-Allow-Origin":      "https://app.example.com",
		"Access-Control-Allow-Credentials": "true",
		"Access-Control-Allow-Methods":     "GET, POST",
		"Access-Control-Allow-Headers":     "Content-Type, KeyId",
		"Access-Control-Max-Age":           "600",
	}
	if r.status != 204 || r.body != "" {
		t.Errorf("allowed preflight: got %d %q, want 204 and no body", r.status, r.body)
	}
	for k, v := range want {
		if got := r.header.Get(k); got != v {
			t.Errorf("allowed preflight: %s: got %q, want %q", k, got, v)
		}
	}
	if !strings.Contains(strings.Join(r.header.Values("Vary"), ","), "Origin") {
		t.Errorf("preflight Vary: %q", r.header.Values("Vary"))
	}
	for _, c := range []struct{ name, origin, method, fields string }{
		{"origin not listed", "https://evil.example", "POST", ""},
		{"origin with another port", "https://app.example.com:8443", "POST", ""},
		{"origin in another case", "https://APP.example.com", "POST", ""},
		{"method not allowed", "https://app.example.com", "DELETE", ""},
		{"field not allowed", "https://app.example.com", "POST", "content-type, authorization"},
	} {
		r := pre("/app/x", c.origin, c.method, c.fields)
		if r.status != 403 || r.header.Get("Access-Control-Allow-Origin") != "" || strings.Contains(r.body, `"method"`) {
			t.Errorf("%s: got %d ACAO %q body %s, want 403 without CORS fields, not forwarded", c.name, r.status, r.header.Get("Access-Control-Allow-Origin"), r.body)
		}
	}
	// An OPTIONS request that is not a preflight: the API does not take OPTIONS.
	r = do(t, nil, "OPTIONS", ti.base+"/app/x", nil)
	if r.status != 405 || r.header.Get("Allow") != "GET, POST" {
		t.Errorf("OPTIONS without preflight fields: got %d Allow %q, want 405 GET, POST", r.status, r.header.Get("Allow"))
	}
	// An API that takes any method forwards it.
	if r := do(t, nil, "OPTIONS", ti.base+"/public/x", nil); r.status != 200 || !strings.Contains(r.body, `"method":"OPTIONS"`) {
		t.Errorf("OPTIONS without preflight fields on an API taking any method: got %d %s", r.status, r.body)
	}
	// Actual requests: the policy's fields in place of the back end's.
	r = do(t, nil, "GET", ti.base+"/app/x", http.Header{"Origin": {"http://localhost:3000"}})
	if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != "http://localhost:3000" || r.header.Get("Access-Control-Allow-Credentials") != "true" ||
		r.header.Get("Access-Control-Expose-Headers") != "X-Request-Total" || len(r.header.Values("Access-Control-Allow-Origin")) != 1 {
		t.Errorf("GET from an allowed origin: %d %v", r.status, r.header)
	}
	r = do(t, nil, "GET", ti.base+"/app/x", http.Header{"Origin": {"https://evil.example"}})
	if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != "" || r.header.Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("GET from an origin not allowed keeps the back end's CORS fields: %v", r.header)
	}
	if !strings.Contains(strings.Join(r.header.Values("Vary"), ","), "Origin") {
		t.Errorf("Vary: Origin missing: %v", r.header)
	}
	r = do(t, nil, "GET", ti.base+"/public/x", http.Header{"Origin": {"https://anyone.example"}})
	if r.header.Get("Access-Control-Allow-Origin") != "*" || r.header.Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("any origin: %v", r.header)
	}
	// The gateway's own error (the back end is down): the fields are there.
	r = do(t, nil, "GET", ti.base+"/down/x", http.Header{"Origin": {"https://app.example.com"}})
	if r.status != 502 || r.header.Get("Access-Control-Allow-Origin") != "https://app.example.com" || r.header.Get("X-Gateway") != "gatehouse" {
		t.Errorf("502 from the gateway: %d %v", r.status, r.header)
	}
	// A 405 of the router (a method the API does not take) is not the API's.
	if r := do(t, nil, "DELETE", ti.base+"/app/x", http.Header{"Origin": {"https://app.example.com"}}); r.status != 405 {
		t.Errorf("DELETE: got %d", r.status)
	}
}

// TestHeadersPolicy: request fields removed and set before forwarding,
// response fields removed and set before answering (the back end's
// answer), in place of every value the message had.
func TestHeadersPolicy(t *testing.T) {
	be := policyBackend(t)
	ti := startInstance(t, quickstartYAML(newPorts(t), policiesYAML(be.URL, newPorts(t).traffic)))
	r := do(t, nil, "GET", ti.base+"/edited/x", http.Header{"X-Team": {"spoofed", "twice"}, "X-Internal-Token": {"secret"}, "X-Kept": {"yes"}})
	if r.status != 200 {
		t.Fatalf("GET: %d %s", r.status, r.body)
	}
	var got struct{ Headers http.Header }
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		t.Fatal(err)
	}
	if v := got.Headers.Values("X-Team"); len(v) != 1 || v[0] != "orders" {
		t.Errorf("X-Team at the back end: %q, want [orders]", v)
	}
	if got.Headers.Get("X-Api-Version") != "2" || got.Headers.Get("X-Internal-Token") != "" || got.Headers.Get("X-Kept") != "yes" {
		t.Errorf("request fields at the back end: %v", got.Headers)
	}
	if r.header.Get("Server") != "" || r.header.Get("X-Debug") != "" || r.header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("response fields: %v", r.header)
	}
	if r.header.Get("X-Correlationid") == "" {
		t.Errorf("the correlation id is gone: %v", r.header)
	}
	// Another API keeps the back end's fields.
	if r := do(t, nil, "GET", ti.base+"/app/x", nil); r.header.Get("Server") != "backend/1.0" || r.header.Get("X-Frame-Options") != "" {
		t.Errorf("an API without the policy: %v", r.header)
	}
}

// TestPoliciesSwap: a hot swap replaces the chains whole: an API that
// loses its headers policy stops editing at once.
func TestPoliciesSwap(t *testing.T) {
	be := policyBackend(t)
	p := newPorts(t)
	down := newPorts(t).traffic
	ti := startInstance(t, quickstartYAML(p, policiesYAML(be.URL, down)))
	if r := do(t, nil, "GET", ti.base+"/edited/x", nil); r.header.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("before the swap: %v", r.header)
	}
	plain := strings.Replace(policiesYAML(be.URL, down), "            set: {X-Frame-Options: DENY}\n", "            set: {X-Frame-Options: SAMEORIGIN}\n", 1)
	if err := ti.Swap(loadConfig(t, quickstartYAML(p, plain))); err != nil {
		t.Fatal(err)
	}
	if r := do(t, nil, "GET", ti.base+"/edited/x", nil); r.header.Get("X-Frame-Options") != "SAMEORIGIN" {
		t.Errorf("after the swap: %v", r.header)
	}
}

// TestAPIKeyPolicy: an API protected by an API key through a real
// instance and its embedded KPS: the application and key made with the
// apps Manager on the same store (as the management API does), requests
// without, with a wrong and with the right key, the application's fields
// at the back end and not the key, a key disabled seen within the cache's
// lifetime, and a KPS file that is not a database refusing the start.
func TestAPIKeyPolicy(t *testing.T) {
	be := policyBackend(t)
	p := newPorts(t)
	yaml := quickstartYAML(p, fmt.Sprintf(`
kps: {cache: {ttl: 300ms, negativeTTL: 300ms}}
backends:
  - name: be
    url: %s
apis:
  - name: orders
    pathPrefix: /orders
    backend: be
    policies:
      - apiKey: {query: api_key}
  - name: stock
    pathPrefix: /stock
    backend: be
    policies:
      - apiKey: {}
`, be.URL))
	ti := startInstance(t, yaml)
	ctx := context.Background()
	store, err := sqlite.Open(ctx, kps.SQLiteConfig{Path: sqlite.GroupPath(ti.home, groupID)})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	hk, err := apps.LoadOrCreateHashKey(ti.home, groupID)
	if err != nil {
		t.Fatal(err)
	}
	m, err := apps.NewManager(ctx, store, hk)
	if err != nil {
		t.Fatal(err)
	}
	app, err := m.CreateApp(ctx, apps.App{Name: "Shop", Enabled: true, APIs: []string{"orders"}})
	if err != nil {
		t.Fatal(err)
	}
	k, key, err := m.CreateKey(ctx, app.ID, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	r := do(t, nil, "GET", ti.base+"/orders/1", nil)
	if r.status != 401 || r.header.Get("WWW-Authenticate") != `APIKey realm="gatehouse", header="KeyId", query="api_key"` || strings.Contains(r.body, `"method"`) {
		t.Errorf("no key: %d %v %s", r.status, r.header, r.body)
	}
	_, other := apps.NewKey()
	if r := do(t, nil, "GET", ti.base+"/orders/1", http.Header{"Keyid": {other.RevealString()}}); r.status != 401 {
		t.Errorf("unknown key: %d %s", r.status, r.body)
	}
	for name, req := range map[string]func() response{
		"field": func() response {
			return do(t, nil, "GET", ti.base+"/orders/1", http.Header{"Keyid": {key.RevealString()}, "X-Gatehouse-Application-Id": {"spoofed"}})
		},
		"query": func() response {
			return do(t, nil, "GET", ti.base+"/orders/1?api_key="+key.RevealString()+"&page=2", nil)
		},
	} {
		r := req()
		if r.status != 200 {
			t.Fatalf("%s: %d %s", name, r.status, r.body)
		}
		if strings.Contains(r.body, key.RevealString()) || strings.Contains(r.body, "spoofed") || !strings.Contains(r.body, app.ID) || !strings.Contains(r.body, `"Shop"`) {
			t.Errorf("%s: the back end saw: %s", name, r.body)
		}
	}
	if r := do(t, nil, "GET", ti.base+"/stock/1", http.Header{"Keyid": {key.RevealString()}}); r.status != 403 {
		t.Errorf("an API the application may not use: %d %s", r.status, r.body)
	}
	// The access log names the application, never the key.
	ti.logs.access.sync()
	logData, _ := os.ReadFile(filepath.Join(ti.home.InstanceLogsDir(groupID, instanceID), "access.log"))
	if !strings.Contains(string(logData), `"application":"`+app.ID+`"`) || strings.Contains(string(logData), key.RevealString()[len(k.ID):]) {
		t.Errorf("access log:\n%s", logData)
	}
	// Disabled: 401 within the cache's lifetime (300 ms here).
	if _, err := m.SetKey(ctx, k.ID, false, time.Time{}); err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	for {
		r := do(t, nil, "GET", ti.base+"/orders/1", http.Header{"Keyid": {key.RevealString()}})
		if r.status == 401 {
			break
		}
		if time.Since(changed) > 5*time.Second {
			t.Fatalf("the disabled key still opens the API after %v: %d", time.Since(changed), r.status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A KPS file that is not a database: the instance does not start.
	ti.Close()
	if err := os.WriteFile(sqlite.GroupPath(ti.home, groupID), []byte(strings.Repeat("not a database ", 500)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		os.Remove(sqlite.GroupPath(ti.home, groupID) + suffix)
	}
	_, err = New(Options{Home: ti.home, GroupID: groupID, InstanceID: instanceID, Config: loadConfig(t, yaml), Quiet: true})
	if err == nil || !strings.Contains(err.Error(), "kps.db") {
		t.Errorf("start with a corrupt KPS file: %v, want an error naming the file", err)
	}
}

// TestLookupPolicy: rows of a custom table found by a path segment, a
// field (by the secondary key) and an integer key, their properties in
// request fields through variables; a required lookup without a row
// refused with its status; a row value with a line break never set as a
// field.
func TestLookupPolicy(t *testing.T) {
	be := policyBackend(t)
	p := newPorts(t)
	ti := startInstance(t, quickstartYAML(p, fmt.Sprintf(`
kps:
  cache: {ttl: 200ms, negativeTTL: 200ms}
  tables:
    - collection: Customers
      name: Customer tiers
      alias: customers
      properties: [{name: id, type: string}, {name: email, type: string}, {name: tier, type: string}, {name: tags, type: list}]
      primaryKey: id
      secondaryKey: email
    - {collection: Customers, name: Plans, alias: plans, primaryKey: n, properties: [{name: n, type: long}, {name: label, type: string}]}
backends:
  - name: be
    url: %s
apis:
  - name: by-path
    path: /c/{customer}
    backend: be
    policies:
      - lookup: {table: customers, key: "param:customer", as: cust, required: true}
      - headers: {request: {set: {X-Tier: "${cust.tier}", X-Tags: "[${cust.tags}]"}}, response: {set: {X-Served-Tier: "${cust.tier}"}}}
  - name: by-email
    pathPrefix: /e
    backend: be
    policies:
      - lookup: {table: customers, key: "header:X-Email", by: secondary, as: cust, notFoundStatus: 404}
      - headers: {request: {set: {X-Tier: "${cust.tier}"}}}
  - name: by-plan
    pathPrefix: /p
    backend: be
    policies:
      - lookup: {table: plans, key: "query:plan", as: plan, required: true, notFoundStatus: 404}
      - headers: {request: {set: {X-Plan: "${plan.label}"}}}
`, be.URL)))
	ctx := context.Background()
	store, err := sqlite.Open(ctx, kps.SQLiteConfig{Path: sqlite.GroupPath(ti.home, groupID)})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for _, row := range []map[string]any{
		{"id": "c1", "email": "a@example.com", "tier": "gold", "tags": []string{"eu", "vip"}},
		{"id": "c2", "email": "b@example.com", "tier": "silver\r\nX-Evil: injected"},
	} {
		if _, err := store.Insert(ctx, "customers", row); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := store.Insert(ctx, "plans", map[string]any{"n": int64(7), "label": "Pro"}); err != nil {
		t.Fatal(err)
	}
	seen := func(r response) http.Header {
		t.Helper()
		var got struct{ Headers http.Header }
		if err := json.Unmarshal([]byte(r.body), &got); err != nil {
			t.Fatalf("%d %s", r.status, r.body)
		}
		return got.Headers
	}
	r := do(t, nil, "GET", ti.base+"/c/c1", http.Header{"X-Tier": {"spoofed"}})
	if h := seen(r); r.status != 200 || h.Get("X-Tier") != "gold" || len(h.Values("X-Tier")) != 1 || h.Get("X-Tags") != "[eu, vip]" || r.header.Get("X-Served-Tier") != "gold" {
		t.Errorf("by path: %d %v %v", r.status, h, r.header)
	}
	if r := do(t, nil, "GET", ti.base+"/c/nobody", nil); r.status != 403 || strings.Contains(r.body, `"headers"`) {
		t.Errorf("required, no row: %d %s", r.status, r.body)
	}
	r = do(t, nil, "GET", ti.base+"/c/c2", http.Header{"X-Tier": {"spoofed"}})
	if h := seen(r); r.status != 200 || h.Get("X-Tier") != "" || h.Get("X-Evil") != "" || r.header.Get("X-Evil") != "" || r.header.Get("X-Served-Tier") != "" {
		t.Errorf("a value with a line break: %d %v %v", r.status, h, r.header)
	}
	r = do(t, nil, "GET", ti.base+"/e/x", http.Header{"X-Email": {"a@example.com"}})
	if h := seen(r); h.Get("X-Tier") != "gold" {
		t.Errorf("by the secondary key: %v", h)
	}
	r = do(t, nil, "GET", ti.base+"/e/x", http.Header{"X-Email": {"nobody@example.com"}, "X-Tier": {"spoofed"}})
	if h := seen(r); r.status != 200 || h.Get("X-Tier") != "" {
		t.Errorf("not required, no row: the field must be removed, not kept: %d %v", r.status, h)
	}
	if r := do(t, nil, "GET", ti.base+"/p/x?plan=7", nil); r.status != 200 || seen(r).Get("X-Plan") != "Pro" {
		t.Errorf("an integer key: %d %s", r.status, r.body)
	}
	for _, q := range []string{"plan=8", "plan=seven", "other=7", ""} {
		if r := do(t, nil, "GET", ti.base+"/p/x?"+q, nil); r.status != 404 {
			t.Errorf("plan %q: %d, want 404", q, r.status)
		}
	}
}

// TestAPIKeyPostgres: the apiKey policy on a group whose KPS is a real
// PostgreSQL (TLS verified, a password from a file). When the database
// goes down the API answers 503 (never 401, never through) once the
// cache's lifetime is over, and it answers 200 again by itself when the
// database is back, without a restart or a reload.
func TestAPIKeyPostgres(t *testing.T) {
	srv := pgtest.Start(t)
	pc := srv.NewDatabase(t)
	be := policyBackend(t)
	p := newPorts(t)
	pwFile := filepath.Join(t.TempDir(), "kps-password")
	if err := os.WriteFile(pwFile, []byte(pc.Password.RevealString()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := quickstartYAML(p, fmt.Sprintf(`
kps:
  backend: postgres
  postgres: {host: 127.0.0.1, port: %d, database: %s, user: %s, passwordFile: %s, sslMode: verify-full, sslRootCert: %s}
  cache: {ttl: 300ms, negativeTTL: 300ms}
backends:
  - name: be
    url: %s
apis:
  - name: orders
    pathPrefix: /orders
    backend: be
    policies:
      - apiKey: {}
`, pc.Port, pc.Database, pc.User, pwFile, pc.SSLRootCert, be.URL))
	inst := startInstance(t, yaml)
	ti := inst.home
	ctx := context.Background()
	store, err := kps.Open(ctx, kps.Config{Backend: "postgres", Postgres: pc})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	hk, err := apps.GroupHashKey(ctx, ti, groupID, store)
	if err != nil {
		t.Fatal(err)
	}
	// The hashing key is the database's: another host, without the file
	// and with another file, gets the same one (nothing to copy).
	other := home.Home{Dir: t.TempDir()}
	if k, err := apps.GroupHashKey(ctx, other, groupID, store); err != nil || !k.Equal(hk) {
		t.Errorf("another host: %v, a different hashing key", err)
	}
	os.MkdirAll(filepath.Dir(apps.HashKeyFile(other, groupID)), 0o700)
	os.WriteFile(apps.HashKeyFile(other, groupID), []byte(strings.Repeat("x", apps.HashKeyBytes)), 0o600)
	if k, err := apps.GroupHashKey(ctx, other, groupID, store); err != nil || !k.Equal(hk) {
		t.Errorf("a host with another file: %v, a different hashing key", err)
	}
	m, err := apps.NewManager(ctx, store, hk)
	if err != nil {
		t.Fatal(err)
	}
	app, _ := m.CreateApp(ctx, apps.App{Name: "Shop", Enabled: true, APIs: []string{"orders"}})
	_, key, err := m.CreateKey(ctx, app.ID, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	get := func() response {
		return do(t, nil, "GET", inst.base+"/orders/1", http.Header{"Keyid": {key.RevealString()}})
	}
	if r := get(); r.status != 200 {
		t.Fatalf("with the key: %d %s", r.status, r.body)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond) // past the cache's lifetime
	for i := 0; i < 3; i++ {
		start := time.Now()
		r := get()
		if r.status != 503 || r.header.Get("Retry-After") != "1" || strings.Contains(r.body, "127.0.0.1") {
			t.Fatalf("database down: %d %v %s, want 503", r.status, r.header, r.body)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("database down: the answer took %v", d)
		}
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := get()
		if r.status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("database back: still %d %s", r.status, r.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	logData, _ := os.ReadFile(filepath.Join(ti.InstanceLogsDir(groupID, instanceID), "instance.log"))
	if !strings.Contains(string(logData), `"policy":"apiKey","status":503`) {
		t.Errorf("no log line for the 503:\n%s", logData)
	}
}
