package tools_test

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
)

// appsTTL is the instances' kps.cache.ttl in TestClientAppsEndToEnd, and
// appsMargin what a disabled key may take beyond it to be refused (the
// poll's period and a busy machine's delays).
const (
	appsTTL    = time.Second
	appsMargin = 1500 * time.Millisecond
)

// TestClientAppsEndToEnd is issue 17's first "done means": an application
// and a key made with the CLI against a real ANM, a group configuration
// with an apiKey policy deployed to a real instance, the API called
// without the key (401 with WWW-Authenticate) and with it (200: the back
// end sees the application, not the key), the key disabled with the CLI
// and refused within kps.cache.ttl and a margin, the audit log holding the
// changes and no key, GET /api/kps/{group}/apikeys without a hash; the key
// rotated, and no file of the install directory holding a key.
func TestClientAppsEndToEnd(t *testing.T) {
	a := startANM(t)
	h := a.h
	h.Env = append(h.Env, "XDG_CONFIG_HOME="+t.TempDir())
	apiURL := fmt.Sprintf("https://localhost:%d/api", a.port)
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("changeme-Secret1\n"), 0o600)
	// The back end answers with the request's fields and query.
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		json.NewEncoder(w).Encode(map[string]any{"path": r.URL.Path, "query": r.URL.RawQuery, "header": r.Header})
	}))
	t.Cleanup(be.Close)

	wantClient(t, "login", h.Run("", "client", "--url", apiURL, "--username", "admin", "--password-file", pw, "login"), 0, "logged in")
	wantClient(t, "group create", h.Run("", "client", "group", "create", "Apps Group"), 0, "created group group-2")
	tp, mp := gwtest.FreePort(t), gwtest.FreePort(t)
	wantClient(t, "instance create", h.Run("", "client", "instance", "create", "Apps Group", "Server", "--traffic-port", strconv.Itoa(tp), "--management-port", strconv.Itoa(mp)), 0, "created instance instance-1")
	wantClient(t, "start", h.Run("", "client", "start", "group-2", "instance-1"), 0, ": running")

	conf := filepath.Join(t.TempDir(), "group.yaml")
	os.WriteFile(conf, []byte(fmt.Sprintf(`kps:
  cache: {ttl: %s}
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
`, appsTTL, be.URL)), 0o644)
	wantClient(t, "deploy", h.Run("", "deploy", "-g", "Apps Group", conf), 0, "succeeded")

	// The application and its key, by the group's and the application's names.
	wantClient(t, "apps create of an API the group lacks", h.Run("", "client", "apps", "create", "-g", "Apps Group", "Shop", "--api", "billing"), 1,
		"refused (400)", `has no API "billing"`, "orders, stock")
	r := h.Run("", "client", "apps", "create", "-g", "Apps Group", "Shop", "--api", "orders", "--contact", "ops@example.com")
	wantClient(t, "apps create", r, 0, "created application ", "(Shop) in group-2, enabled true, APIs: orders")
	m := regexp.MustCompile(`created application ([0-9a-f-]{36}) `).FindStringSubmatch(r.Stdout)
	if m == nil {
		t.Fatalf("apps create: no id in %q", r.Stdout)
	}
	appID := m[1]
	wantClient(t, "apps create again", h.Run("", "client", "apps", "create", "-g", "group-2", "Shop"), 1, "conflict (409)", `"Shop" already`)
	r = h.Run("", "client", "keys", "create", "-g", "Apps Group", "--app", "Shop")
	wantClient(t, "keys create", r, 0, "created key gk_", "for application "+appID, "expires: never", "the only time the key is shown")
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if len(lines) != 3 || !regexp.MustCompile(`^gk_[a-z2-7]{12}_[a-z2-7]{26}$`).MatchString(lines[1]) {
		t.Fatalf("keys create: want the key alone on the second of three lines: %q", r.Stdout)
	}
	key := lines[1]
	keyID, secretPart := key[:15], key[15:]
	wantClient(t, "keys list", h.Run("", "client", "keys", "list", "-g", "group-2", "--app", appID), 0, keyID, "true", "never")
	wantClient(t, "apps show", h.Run("", "client", "apps", "show", "-g", "group-2", "Shop"), 0, "application "+appID+" (Shop)", "APIs:        orders", "ops@example.com", keyID)
	wantClient(t, "apps list", h.Run("", "client", "apps", "list", "-g", "group-2"), 0, appID, "Shop", "orders")
	wantClient(t, "keys list of nobody", h.Run("", "client", "keys", "list", "-g", "group-2", "--app", "Nobody"), 1, "not found (404)", `"Nobody"`, "apps list -g GROUP")
	for _, v := range []gwtest.Result{
		h.Run("", "client", "keys", "list", "-g", "group-2", "--app", appID),
		h.Run("", "client", "keys", "list", "-g", "group-2", "--app", appID, "--json"),
		h.Run("", "client", "apps", "show", "-g", "group-2", "Shop", "--json"),
	} {
		if strings.Contains(v.Stdout, secretPart) || strings.Contains(v.Stdout, "hash") {
			t.Errorf("a listing shows the key or a hash: %s", v.Stdout)
		}
	}

	// Through the real instance: without the key, with it (field and
	// query), another API, a key that is not one.
	call := func(path string, hdr http.Header) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d%s", tp, path), nil)
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	code, hdr, body := call("/orders/1", nil)
	if code != 401 || hdr.Get("WWW-Authenticate") != `APIKey realm="gatehouse", header="KeyId", query="api_key"` {
		t.Errorf("without a key: %d %v %s", code, hdr, body)
	}
	for what, c := range map[string]struct {
		path string
		hdr  http.Header
	}{"field": {"/orders/1", http.Header{"Keyid": {key}}}, "query": {"/orders/1?api_key=" + key + "&page=2", nil}} {
		code, _, body := call(c.path, c.hdr)
		if code != 200 || !strings.Contains(body, appID) || !strings.Contains(body, `"Shop"`) || strings.Contains(body, secretPart) || strings.Contains(body, keyID) {
			t.Errorf("with the key (%s): %d %s", what, code, body)
		}
	}
	if code, _, body := call("/stock/1", http.Header{"Keyid": {key}}); code != 403 {
		t.Errorf("an API the application may not use: %d %s", code, body)
	}
	if code, _, _ := call("/orders/1", http.Header{"Keyid": {keyID + "_" + strings.Repeat("a", 26)}}); code != 401 {
		t.Errorf("a wrong secret: %d", code)
	}

	// await polls path with key until it answers want, within the
	// cache's lifetime and the margin.
	await := func(what, path, key string, want int) {
		t.Helper()
		since := time.Now()
		for {
			code, _, _ := call(path, http.Header{"Keyid": {key}})
			if code == want {
				return
			}
			if time.Since(since) > appsTTL+appsMargin {
				t.Fatalf("%s: %s answers %d %v after the change, want %d", what, path, code, time.Since(since), want)
			}
			time.Sleep(25 * time.Millisecond)
		}
	}
	// The application changed with the CLI: another API, then disabled and
	// enabled again.
	wantClient(t, "apps update", h.Run("", "client", "apps", "update", "-g", "group-2", "Shop", "--api", "orders", "--api", "stock", "--description", "the shop"), 0,
		"changed application "+appID+" (Shop): enabled true, APIs: orders, stock (version 2)")
	await("another API", "/stock/1", key, 200)
	wantClient(t, "apps update --disable", h.Run("", "client", "apps", "update", "-g", "group-2", appID, "--disable"), 0, "enabled false")
	await("the application disabled", "/orders/1", key, 401)
	wantClient(t, "apps update --enable", h.Run("", "client", "apps", "update", "-g", "group-2", appID, "--enable"), 0, "enabled true")
	await("the application enabled", "/orders/1", key, 200)
	wantClient(t, "apps show after the changes", h.Run("", "client", "apps", "show", "-g", "group-2", "Shop"), 0, "version 4", "the shop", "orders, stock")

	// Disabled with the CLI: refused within the cache's lifetime.
	wantClient(t, "keys disable", h.Run("", "client", "keys", "disable", "-g", "Apps Group", "--app", "Shop", keyID), 0, "disabled key "+keyID, "kps.cache.ttl")
	disabled := time.Now()
	for {
		code, _, _ := call("/orders/1", http.Header{"Keyid": {key}})
		if code == 401 {
			break
		}
		if code != 200 || time.Since(disabled) > appsTTL+appsMargin {
			t.Fatalf("the disabled key still answered %d %v after the CLI returned; want 401 within kps.cache.ttl %v and %v", code, time.Since(disabled), appsTTL, appsMargin)
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Logf("the disabled key was refused %v after keys disable returned (kps.cache.ttl %v)", time.Since(disabled).Round(time.Millisecond), appsTTL)

	// Enabled again and rotated: the new key opens the API; the old one is
	// refused once its grace period (0s) is over.
	wantClient(t, "keys enable", h.Run("", "client", "keys", "enable", "-g", "group-2", "--app", "Shop", keyID), 0, "enabled key "+keyID)
	r = h.Run("", "client", "keys", "rotate", "-g", "group-2", "--app", "Shop", keyID, "--grace", "0s")
	wantClient(t, "keys rotate", r, 0, "in place of "+keyID, "the only time the key is shown")
	lines = strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if len(lines) != 3 {
		t.Fatalf("keys rotate: %q", r.Stdout)
	}
	newKey := lines[1]
	deadline := time.Now().Add(appsTTL + appsMargin + time.Second)
	for {
		newCode, _, _ := call("/orders/1", http.Header{"Keyid": {newKey}})
		oldCode, _, _ := call("/orders/1", http.Header{"Keyid": {key}})
		if newCode == 200 && oldCode == 401 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the rotation: the new key answers %d, the old one %d; want 200 and 401", newCode, oldCode)
		}
		time.Sleep(25 * time.Millisecond)
	}

	// The audit log has the changes, and no file of the install directory
	// (audit log, node manager and instance logs, the KPS) holds a key.
	audit := a.api("GET", "/api/audit?limit=1000", "")
	for _, action := range []string{`"create application"`, `"create api key"`, `"disable api key"`, `"enable api key"`, `"rotate api key"`} {
		if !strings.Contains(audit.body, action) {
			t.Errorf("the audit log has no %s: %s", action, audit.body)
		}
	}
	if !strings.Contains(audit.body, keyID) || !strings.Contains(audit.body, appID) || !strings.Contains(audit.body, `"verified":true`) {
		t.Errorf("the audit log does not name the key and the application, or does not verify: %s", audit.body)
	}
	for _, s := range []string{secretPart, newKey[15:]} {
		filepath.WalkDir(h.Dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), s) {
				t.Errorf("%s holds a key's secret part", p)
			}
			return nil
		})
	}

	// The KPS API shows the keys' table without hashes, and refuses to
	// write it.
	rows := a.api("GET", "/api/kps/group-2/apikeys", "")
	if rows.code != 200 || !strings.Contains(rows.body, keyID) || strings.Contains(rows.body, "hash") || strings.Contains(rows.body, secretPart) {
		t.Errorf("GET /api/kps/group-2/apikeys: %d %s", rows.code, rows.body)
	}
	if r := a.api("DELETE", "/api/kps/group-2/apikeys/"+keyID, ""); r.code != 400 || !strings.Contains(r.body, "/api/applications") {
		t.Errorf("DELETE of a key through /api/kps: %d %s", r.code, r.body)
	}

	// Deleting the application takes its keys.
	wantClient(t, "apps delete", h.Run("", "client", "apps", "delete", "-g", "group-2", "Shop"), 0, "deleted application "+appID+" and its 2 key(s)")
	wantClient(t, "apps list when empty", h.Run("", "client", "apps", "list", "-g", "group-2"), 0, "has no client application")
}

// TestClientAppsUsage: the apps and keys verbs' wrong invocations exit 2
// and send nothing.
func TestClientAppsUsage(t *testing.T) {
	h := gwtest.NewHome(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"apps", "list"}, "apps list wants -g GROUP"},
		{[]string{"keys", "create", "-g", "g"}, "keys create wants --app APP"},
		{[]string{"apps", "update", "-g", "g", "Shop"}, "wants something to change"},
		{[]string{"apps", "update", "-g", "g", "Shop", "--enable", "--disable"}, "not both"},
		{[]string{"apps", "create", "-g", "g", "Shop", "--api", "a", "--no-apis"}, "is not an option of apps create"},
		{[]string{"apps", "update", "-g", "g", "Shop", "--api", "a", "--no-apis"}, "--api NAME or --no-apis"},
		{[]string{"keys", "create", "-g", "g", "--app", "a", "--expires", "soon"}, `--expires "soon"`},
		{[]string{"keys", "create", "-g", "g", "--app", "a", "--expires", "-1h"}, "positive duration"},
		{[]string{"keys", "rotate", "-g", "g", "--app", "a", "gk_x", "--grace", "-1s"}, `--grace "-1s"`},
		{[]string{"keys", "disable", "-g", "g", "--app", "a"}, "keys disable wants KEY"},
		{[]string{"keys", "list", "-g", "g", "--app", ""}, "--app wants"},
		{[]string{"keys", "frobnicate"}, "keys takes: list, create, disable, enable, rotate, delete"},
	} {
		r := h.Run("", append([]string{"client", "--url", "https://127.0.0.1:1/api", "--username", "u"}, c.args...)...)
		if r.Code != 2 || !strings.Contains(r.Stderr, c.want) {
			t.Errorf("client %v: got exit %d %q, want 2 and %q", c.args, r.Code, r.Stderr, c.want)
		}
	}
}

// TestApplicationsDocExample runs the worked example of docs/applications.md
// as written: the install directory a temporary one, the admin password the
// one quickstart printed, and the key keys create printed in place of the
// one shown. It uses the documented default ports (8080, 8081, 8085, 8090).
func TestApplicationsDocExample(t *testing.T) {
	root := repoRoot(t)
	r := newDocRunner(t, t.TempDir())
	blocks := docBlocks(t, filepath.Join(root, "docs", "applications.md"), "## A worked example")
	t.Cleanup(func() {
		r.run("nodemanager -k -q", "")
		r.run(`startinstance -k -n "QuickStart Server" -g "QuickStart Group"`, "")
	})
	const docKey, docID = "gk_qv3fjnx2mpt5_mrctyexgi3xwyzrhrhfwk6oyl5", "gk_qv3fjnx2mpt5"
	var password, key string
	lines := blocks[0]
	ran := 0
	for i := 0; i < len(lines); i++ {
		raw := lines[i]
		l := r.line(raw)
		if strings.Contains(raw, "<<'EOF'") { // a here-document: the lines up to EOF, as they are
			for i++; i < len(lines) && lines[i] != "EOF"; i++ {
				l += "\n" + lines[i]
			}
			l += "\nEOF"
		}
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if key != "" {
			l = strings.ReplaceAll(strings.ReplaceAll(l, docKey, key), docID, key[:15])
		}
		out, err := r.run(l, password+"\n")
		t.Logf("$ %s\n%s", l, out)
		ran++
		if err != nil {
			t.Fatalf("%s: %v\n%s", raw, err, out)
		}
		switch {
		case strings.Contains(l, "quickstart -d"):
			m := regexp.MustCompile(`password: (\S+)`).FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("quickstart printed no password: %s", out)
			}
			password = m[1]
		case strings.Contains(l, "keys create"):
			ls := strings.Split(strings.TrimSpace(out), "\n")
			if len(ls) != 3 || len(ls[1]) != len(docKey) {
				t.Fatalf("keys create: %s", out)
			}
			key = ls[1]
		case strings.HasPrefix(l, "curl -i http"):
			if !strings.Contains(out, "401 Unauthorized") || !strings.Contains(out, `WWW-Authenticate: APIKey realm="gatehouse", header="KeyId"`) {
				t.Errorf("%s: want 401 with WWW-Authenticate: %s", l, out)
			}
		case strings.HasPrefix(l, "curl -H"):
			if !strings.Contains(out, `"X-Gatehouse-Application-Name":["My App"]`) || strings.Contains(out, key[15:]) {
				t.Errorf("%s: want the application and not the key at the back end: %s", l, out)
			}
		case strings.HasPrefix(l, "curl -i -H"):
			// The documented bound: within kps.cache.ttl (1 s here).
			for deadline := time.Now().Add(appsTTL + appsMargin); !strings.Contains(out, "401 Unauthorized") && time.Now().Before(deadline); {
				time.Sleep(100 * time.Millisecond)
				out, _ = r.run(l, "")
			}
			if !strings.Contains(out, "401 Unauthorized") {
				t.Errorf("%s: the disabled key still opens the API: %s", l, out)
			}
		case strings.Contains(l, "client audit"):
			if !strings.Contains(out, "create api key") || !strings.Contains(out, "disable api key") || strings.Contains(out, key[15:]) {
				t.Errorf("%s: %s", l, out)
			}
		}
	}
	if ran < 12 || key == "" {
		t.Errorf("only %d commands of the example ran (key %q)", ran, key)
	}
}
