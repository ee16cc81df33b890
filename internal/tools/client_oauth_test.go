package tools_test

import (
	"encoding/json"
	"fmt"
	"github.com/gatehouse-gw/gatehouse/internal/apps"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
)

// TestClientOAuthEndToEnd: an OAuth client made with the CLI against a
// real ANM, its secret (printed once) used at the token endpoint of a real
// instance, the token calling an API behind the oauth policy, listed
// (without the token) and revoked with the CLI and then refused; the
// group's OAuth users managed with passwords from a file and from stdin;
// the audit log without a secret or a password.
func TestClientOAuthEndToEnd(t *testing.T) {
	a := startANM(t)
	h := a.h
	h.Env = append(h.Env, "XDG_CONFIG_HOME="+t.TempDir())
	apiURL := fmt.Sprintf("https://localhost:%d/api", a.port)
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("changeme-Secret1\n"), 0o600)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprintln(w, "ok")
	}))
	t.Cleanup(be.Close)

	wantClient(t, "login", h.Run("", "client", "--url", apiURL, "--username", "admin", "--password-file", pw, "login"), 0, "logged in")
	wantClient(t, "group create", h.Run("", "client", "group", "create", "OAuth Group"), 0, "created group group-2")
	tp, mp := gwtest.FreePort(t), gwtest.FreePort(t)
	wantClient(t, "instance create", h.Run("", "client", "instance", "create", "OAuth Group", "Server", "--traffic-port", strconv.Itoa(tp), "--management-port", strconv.Itoa(mp)), 0, "created instance instance-1")
	wantClient(t, "start", h.Run("", "client", "start", "group-2", "instance-1"), 0, ": running")
	issuer := fmt.Sprintf("http://127.0.0.1:%d", tp)
	conf := filepath.Join(t.TempDir(), "group.yaml")
	os.WriteFile(conf, []byte(fmt.Sprintf(`kps:
  cache: {ttl: %s, negativeTTL: %s}
oauth:
  enabled: true
  issuer: %s
  scopes: [orders:read, orders:write]
backends:
  - name: be
    url: %s
apis:
  - name: orders
    pathPrefix: /orders
    backend: be
    policies:
      - oauth: {scopes: [orders:read], tokenCacheTtl: 100ms}
`, appsTTL, appsTTL, issuer, be.URL)), 0o644)
	wantClient(t, "deploy", h.Run("", "deploy", "-g", "OAuth Group", conf), 0, "succeeded")

	// The client, by the CLI's options; a wrong one refused naming why.
	wantClient(t, "apps create with a bad redirect URI", h.Run("", "client", "apps", "create", "-g", "OAuth Group", "Web",
		"--grant-type", "authorization_code", "--redirect-uri", "http://web.example.com/cb"), 1, "refused (400)", "https, or http to a loopback address")
	r := h.Run("", "client", "apps", "create", "-g", "OAuth Group", "Svc", "--grant-type", "client_credentials", "--scope", "orders:read")
	wantClient(t, "apps create", r, 0, "created application ", "OAuth client_id ", "confidential client; grants client_credentials; scopes orders:read")
	m := regexp.MustCompile(`created application ([0-9a-f-]{36}) `).FindStringSubmatch(r.Stdout)
	if m == nil {
		t.Fatalf("apps create: no id in %q", r.Stdout)
	}
	appID := m[1]
	wantClient(t, "apps update", h.Run("", "client", "apps", "update", "-g", "group-2", "Svc", "--scope", "orders:read", "--scope", "orders:write", "--auth-method", "client_secret_basic"), 0,
		"OAuth: confidential client; grants client_credentials; scopes orders:read orders:write", "auth method client_secret_basic")
	wantClient(t, "apps update --public", h.Run("", "client", "apps", "update", "-g", "group-2", "Svc", "--public"), 1, "refused (400)", "public client")
	wantClient(t, "apps show", h.Run("", "client", "apps", "show", "-g", "group-2", "Svc"), 0, "OAuth:       confidential client")

	// A secret, printed once.
	r = h.Run("", "client", "secrets", "create", "-g", "OAuth Group", "--app", "Svc")
	wantClient(t, "secrets create", r, 0, "created client secret ", "client_id "+appID, "expires: never", "the only time the secret is shown")
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "gcs_") {
		t.Fatalf("secrets create: want the secret alone on the second of three lines: %q", r.Stdout)
	}
	sec := lines[1]
	secID := regexp.MustCompile(`created client secret (\S+) `).FindStringSubmatch(r.Stdout)[1]
	r = h.Run("", "client", "secrets", "list", "-g", "group-2", "--app", "Svc")
	wantClient(t, "secrets list", r, 0, secID, "never")
	if strings.Contains(r.Stdout, sec[4:]) {
		t.Errorf("secrets list shows the secret: %s", r.Stdout)
	}
	wantClient(t, "secrets create of a public client", h.Run("", "client", "secrets", "create", "-g", "group-2", "--app", "Nobody"), 1, "not found (404)", `"Nobody"`)

	// A token from the instance, with the secret the CLI printed.
	token := func(secret string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", issuer+"/oauth/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}, "scope": {"orders:read"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(appID), url.QueryEscape(secret))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// The instance sees the new application within kps.cache.ttl.
	var code int
	var body string
	for deadline := time.Now().Add(appsTTL + appsMargin); ; {
		if code, body = token(sec); code == 200 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code != 200 {
		t.Fatalf("client_credentials with the secret of secrets create: %d %s", code, body)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	json.Unmarshal([]byte(body), &tr)
	call := func() int {
		t.Helper()
		req, _ := http.NewRequest("GET", issuer+"/orders/1", nil)
		req.Header.Set("Authorization", "Bearer "+tr.AccessToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := call(); c != 200 {
		t.Fatalf("the API with the token: %d", c)
	}
	r = h.Run("", "client", "tokens", "list", "-g", "group-2", "--app", "Svc")
	wantClient(t, "tokens list", r, 0, "KIND", "access", "orders:read")
	rj := h.Run("", "client", "tokens", "list", "-g", "group-2", "--app", "Svc", "--json")
	wantClient(t, "tokens list --json", rj, 0, `"kind": "access"`)
	if strings.Contains(r.Stdout+rj.Stdout, tr.AccessToken[4:]) || strings.Contains(rj.Stdout, "hash") {
		t.Errorf("tokens list shows a token or a hash: %s %s", r.Stdout, rj.Stdout)
	}
	wantClient(t, "tokens revoke --family", h.Run("", "client", "tokens", "revoke", "-g", "group-2", "--app", "Svc", "--family", "nope"), 1, "not found (404)", `no grant (token family) "nope"`)
	wantClient(t, "tokens revoke", h.Run("", "client", "tokens", "revoke", "-g", "group-2", "--app", "Svc"), 0, "0 grant(s), 0 code(s) not redeemed, 1 token(s) without a grant")
	// Refused within the policy's token cache (100ms) and kps.cache.ttl.
	c := call()
	for deadline := time.Now().Add(appsTTL + appsMargin); c != 401 && time.Now().Before(deadline); c = call() {
		time.Sleep(100 * time.Millisecond)
	}
	if c != 401 {
		t.Errorf("the revoked token: got %d, want 401", c)
	}
	wantClient(t, "tokens list after", h.Run("", "client", "tokens", "list", "-g", "group-2", "--app", "Svc"), 0, "has no stored token")
	wantClient(t, "secrets delete", h.Run("", "client", "secrets", "delete", "-g", "group-2", "--app", "Svc", secID), 0, "deleted client secret "+secID)
	// The instance reuses a client's secrets for apps.RegistryTTL (1 s).
	code, body = token(sec)
	for deadline := time.Now().Add(apps.RegistryTTL + appsMargin); code != 401 && time.Now().Before(deadline); code, body = token(sec) {
		time.Sleep(100 * time.Millisecond)
	}
	if code != 401 {
		t.Errorf("a deleted secret at the token endpoint: %d %s", code, body)
	}

	// The group's OAuth users: passwords from a file and from stdin.
	upw := filepath.Join(t.TempDir(), "alice-pw")
	os.WriteFile(upw, []byte("alice-Password-1\n"), 0o600)
	wantClient(t, "oauth-users create", h.Run("", "client", "oauth-users", "create", "-g", "OAuth Group", "alice", "--name", "Alice A.", "--new-password-file", upw), 0, "created OAuth user alice")
	wantClient(t, "oauth-users create from stdin", h.Run("bob-Password-22\n", "client", "oauth-users", "create", "-g", "group-2", "bob"), 0, "created OAuth user bob")
	wantClient(t, "oauth-users create weak", h.Run("short\n", "client", "oauth-users", "create", "-g", "group-2", "carol"), 1, "refused (400)", "password")
	wantClient(t, "oauth-users create again", h.Run("", "client", "oauth-users", "create", "-g", "group-2", "alice", "--new-password-file", upw), 1, "conflict (409)", `"alice" already`)
	r = h.Run("", "client", "oauth-users", "list", "-g", "group-2")
	wantClient(t, "oauth-users list", r, 0, "alice", "Alice A.", "bob", "true")
	if strings.Contains(r.Stdout, "pbkdf2") || strings.Contains(r.Stdout, "Password") {
		t.Errorf("oauth-users list: %s", r.Stdout)
	}
	wantClient(t, "oauth-users passwd", h.Run("bob-Password-33\n", "client", "oauth-users", "passwd", "-g", "group-2", "bob"), 0, "set the password of OAuth user bob")
	wantClient(t, "oauth-users disable", h.Run("", "client", "oauth-users", "disable", "-g", "group-2", "bob"), 0, "disabled OAuth user bob")
	wantClient(t, "oauth-users show", h.Run("", "client", "oauth-users", "show", "-g", "group-2", "bob"), 0, "bob", "false")
	wantClient(t, "oauth-users enable", h.Run("", "client", "oauth-users", "enable", "-g", "group-2", "bob"), 0, "enabled OAuth user bob")
	wantClient(t, "oauth-users delete", h.Run("", "client", "oauth-users", "delete", "-g", "group-2", "bob"), 0, "deleted OAuth user bob")
	wantClient(t, "oauth-users show gone", h.Run("", "client", "oauth-users", "show", "-g", "group-2", "bob"), 1, "not found (404)", `no OAuth user "bob"`)

	// Opaque tokens: no signing key to rotate.
	wantClient(t, "signing-keys rotate", h.Run("", "client", "signing-keys", "rotate", "-g", "group-2"), 1, "conflict (409)", "issues no JWT access tokens")

	r = h.Run("", "client", "audit")
	wantClient(t, "audit", r, 0, "create client secret", "revoke oauth tokens", "create oauth user", "set oauth user password", "delete client secret")
	audit, _ := os.ReadFile(h.Path("conf", "audit", "audit.log"))
	for _, s := range []string{sec[4:], "alice-Password-1", "bob-Password-22", "bob-Password-33", tr.AccessToken[4:]} {
		if strings.Contains(r.Stdout, s) || strings.Contains(string(audit), s) {
			t.Errorf("the audit log holds a secret, a password or a token (%.8s…)", s)
		}
	}
}

// TestClientOAuthUsage: the OAuth verbs' wrong invocations exit 2 and send
// nothing; each has its --help.
func TestClientOAuthUsage(t *testing.T) {
	h := gwtest.NewHome(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"secrets", "create", "-g", "g"}, "secrets create wants --app APP"},
		{[]string{"secrets", "delete", "-g", "g", "--app", "a"}, "secrets delete wants SECRET"},
		{[]string{"secrets", "create", "-g", "g", "--app", "a", "--expires", "soon"}, `--expires "soon"`},
		{[]string{"tokens", "revoke", "-g", "g", "--app", "a", "--family", ""}, "--family wants"},
		{[]string{"tokens", "list", "--app", "a"}, "tokens list wants -g GROUP"},
		{[]string{"oauth-users", "create", "-g", "g"}, "oauth-users create wants USERNAME"},
		{[]string{"oauth-users", "passwd", "-g", "g", "u", "--name", "x"}, "--name is not an option of oauth-users passwd"},
		{[]string{"oauth-users", "frobnicate"}, "oauth-users takes: list, show, create, passwd, enable, disable, delete"},
		{[]string{"signing-keys", "rotate"}, "signing-keys rotate wants -g GROUP"},
		{[]string{"apps", "create", "-g", "g", "W", "--grant-type", "password"}, `--grant-type "password"`},
		{[]string{"apps", "create", "-g", "g", "W", "--auth-method", "tls"}, `--auth-method "tls"`},
		{[]string{"apps", "create", "-g", "g", "W", "--no-oauth"}, "--no-oauth is not an option of apps create"},
		{[]string{"apps", "update", "-g", "g", "W", "--public", "--confidential"}, "--public or --confidential"},
		{[]string{"apps", "update", "-g", "g", "W", "--no-oauth", "--scope", "s"}, "give it alone"},
	} {
		r := h.Run("", append([]string{"client", "--url", "https://127.0.0.1:1/api", "--username", "u"}, c.args...)...)
		if r.Code != 2 || !strings.Contains(r.Stderr, c.want) {
			t.Errorf("client %v: got exit %d %q, want 2 and %q", c.args, r.Code, r.Stderr, c.want)
		}
	}
	for _, c := range []struct {
		verb []string
		want []string
	}{
		{[]string{"secrets", "create"}, []string{"/api/applications/{groupID}/{appID}/secrets", "--expires WHEN", "printed this once"}},
		{[]string{"secrets", "list"}, []string{"never values"}},
		{[]string{"secrets", "delete"}, []string{"SECRET"}},
		{[]string{"tokens", "list"}, []string{"JWT access tokens are not stored"}},
		{[]string{"tokens", "revoke"}, []string{"--family ID"}},
		{[]string{"oauth-users", "create"}, []string{"--new-password-file F", "without echo"}},
		{[]string{"oauth-users", "passwd"}, []string{"--new-password-file F"}},
		{[]string{"oauth-users", "list"}, []string{"-g, --group GROUP"}},
		{[]string{"oauth-users", "show"}, []string{"USERNAME"}},
		{[]string{"oauth-users", "enable"}, []string{"USERNAME"}},
		{[]string{"oauth-users", "disable"}, []string{"USERNAME"}},
		{[]string{"oauth-users", "delete"}, []string{"USERNAME"}},
		{[]string{"signing-keys", "rotate"}, []string{"signing-keys/rotate", "within 10 seconds"}},
		{[]string{"apps", "create"}, []string{"--grant-type G", "--redirect-uri URI", "--scope S", "--public", "--auth-method M", "--jwks-file F"}},
		{[]string{"apps", "update"}, []string{"--no-oauth", "--confidential"}},
	} {
		wantClient(t, strings.Join(c.verb, " ")+" --help", h.Run("", append(append([]string{"client"}, c.verb...), "--help")...), 0, c.want...)
	}
}
