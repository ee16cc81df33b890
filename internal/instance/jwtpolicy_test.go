package instance

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
)

// jwtIssuer is an external issuer over HTTP on loopback: its OpenID
// metadata and key set (one ES256 key), which can be taken down.
type jwtIssuer struct {
	srv   *httptest.Server
	key   *ecdsa.PrivateKey
	down  atomic.Bool
	fetch atomic.Int64
}

func newJWTIssuer(t testing.TB) *jwtIssuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	is := &jwtIssuer{key: key}
	is.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if is.down.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q}`, is.srv.URL, is.srv.URL+"/jwks")
		case "/jwks":
			is.fetch.Add(1)
			json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(is.srv.Close)
	return is
}

// token is an access token of the issuer for audience orders.
func (is *jwtIssuer) token(t testing.TB, scope string) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: is.key}, (&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := josejwt.Signed(sig).Claims(map[string]any{"iss": is.srv.URL, "aud": "orders", "sub": "user-7", "client_id": "shop-app",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "scope": scope}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func jwtYAML(backend, issuer, setHeader string) string {
	return fmt.Sprintf(`
backends:
  - name: be
    url: %s
apis:
  - name: orders
    pathPrefix: /orders
    backend: be
    policies:
      - jwt:
          issuer: %s
          audience: orders
          discovery: true
          allowHttp: true
          scopes: [orders:read]
          methodScopes: {POST: [orders:write]}
      - headers: {request: {set: {X-Via: "%s ${jwt.clientId}"}}}
  - name: open
    pathPrefix: /open
    backend: be
`, backend, issuer, setHeader)
}

// TestJWTPolicy: an API behind the jwt policy through a real instance and
// a real issuer (discovery, key set over HTTP): 401 without a token and
// with a bad one, 403 for a missing scope, 200 with the subject and client
// id at the back end in place of the client's, the Authorization field
// forwarded, the client id in the access log; a hot swap keeps the keys
// (no 503 even with the issuer down) and stops the old key source.
func TestJWTPolicy(t *testing.T) {
	be := policyBackend(t)
	is := newJWTIssuer(t)
	p := newPorts(t)
	ti := startInstance(t, quickstartYAML(p, jwtYAML(be.URL, is.srv.URL, "a")))
	tok := is.token(t, "orders:read")
	r := do(t, nil, "GET", ti.base+"/orders/1", nil)
	if r.status != 401 || r.header.Get("WWW-Authenticate") != `Bearer realm="gatehouse"` || strings.Contains(r.body, `"method"`) {
		t.Errorf("no token: %d %v %s", r.status, r.header, r.body)
	}
	r = do(t, nil, "GET", ti.base+"/orders/1", http.Header{"Authorization": {"Bearer " + tok[:len(tok)-4] + "AAAA"}})
	if r.status != 401 || r.header.Get("WWW-Authenticate") != `Bearer realm="gatehouse", error="invalid_token"` || strings.Contains(r.body, tok[:20]) {
		t.Errorf("bad signature: %d %v %s", r.status, r.header, r.body)
	}
	r = do(t, nil, "POST", ti.base+"/orders/1", http.Header{"Authorization": {"Bearer " + tok}})
	if r.status != 403 || r.header.Get("WWW-Authenticate") != `Bearer realm="gatehouse", error="insufficient_scope", scope="orders:read orders:write"` {
		t.Errorf("missing scope: %d %v %s", r.status, r.header, r.body)
	}
	r = do(t, nil, "GET", ti.base+"/orders/1", http.Header{"Authorization": {"bearer " + tok}, "X-Gatehouse-Subject": {"admin"}})
	if r.status != 200 {
		t.Fatalf("good token: %d %s", r.status, r.body)
	}
	var got struct{ Headers http.Header }
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		t.Fatal(err)
	}
	h := got.Headers
	if v := h.Values("X-Gatehouse-Subject"); len(v) != 1 || v[0] != "user-7" || h.Get("X-Gatehouse-Client-Id") != "shop-app" ||
		h.Get("Authorization") != "bearer "+tok || h.Get("X-Via") != "a shop-app" {
		t.Errorf("at the back end: %v", h)
	}
	if r := do(t, nil, "GET", ti.base+"/open/1", nil); r.status != 200 {
		t.Errorf("an API without the policy: %d", r.status)
	}
	ti.logs.access.sync()
	logData, _ := os.ReadFile(filepath.Join(ti.home.InstanceLogsDir(groupID, instanceID), "access.log"))
	if !strings.Contains(string(logData), `"application":"shop-app"`) || strings.Contains(string(logData), tok[40:]) {
		t.Errorf("access log:\n%s", logData)
	}
	// A hot swap with the issuer down: the new configuration takes the
	// keys over; the old key source stops.
	old := ti.rt.Load()
	is.down.Store(true)
	if err := ti.Swap(loadConfig(t, quickstartYAML(p, jwtYAML(be.URL, is.srv.URL, "b")))); err != nil {
		t.Fatal(err)
	}
	old.jwt.Wait() // returns once the old key source's loop stopped
	r = do(t, nil, "GET", ti.base+"/orders/1", http.Header{"Authorization": {"Bearer " + is.token(t, "orders:read orders:write")}})
	if r.status != 200 || !strings.Contains(r.body, `"b shop-app"`) {
		t.Errorf("after the swap, issuer down: %d %s", r.status, r.body)
	}
	if ti.rt.Load().jwt == old.jwt {
		t.Error("the swap kept the old key sources")
	}
}

// TestJWTPolicyIssuerDown: an instance whose issuer cannot be reached
// starts, answers 503 (not 401, not 500) and logs why.
func TestJWTPolicyIssuerDown(t *testing.T) {
	be := policyBackend(t)
	is := newJWTIssuer(t)
	is.down.Store(true)
	ti := startInstance(t, quickstartYAML(newPorts(t), jwtYAML(be.URL, is.srv.URL, "a")))
	r := do(t, nil, "GET", ti.base+"/orders/1", http.Header{"Authorization": {"Bearer " + is.token(t, "orders:read")}})
	if r.status != 503 || r.header.Get("Retry-After") != "1" || strings.Contains(r.body, "127.0.0.1") {
		t.Errorf("issuer down: %d %v %s", r.status, r.header, r.body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, _ := os.ReadFile(filepath.Join(ti.home.InstanceLogsDir(groupID, instanceID), "instance.log"))
		if strings.Contains(string(data), "answered 503 until") && strings.Contains(string(data), `"component":"jwt"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line for the keys that cannot be fetched:\n%s", data)
		}
		time.Sleep(50 * time.Millisecond) // polls a file another goroutine writes; not synchronisation of our own code
	}
}
