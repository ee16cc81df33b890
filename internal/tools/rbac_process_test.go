package tools_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v4"

	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
)

// Issue 6 "Done means" against real processes: the Admin Node Manager is the
// built binary (nodemanager -d) in a temporary install directory, the client
// is net/http with only the domain CA trusted. RBAC is driven by the matrix
// of docs/rbac.md, parsed here, so that the page and the enforcement cannot
// drift apart.

// ---- a client of a real ANM ----

// nmClient talks HTTPS to one node manager, trusting only the domain CA.
type nmClient struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newNMClient(t *testing.T, port int, caFile string) *nmClient {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("%s: no certificate", caFile)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, MaxIdleConnsPerHost: 4}
	t.Cleanup(tr.CloseIdleConnections)
	return &nmClient{t: t, base: fmt.Sprintf("https://localhost:%d", port), c: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
}

func (a *anm) client() *nmClient { return newNMClient(a.t, a.port, a.ca) }

// reply is an answer, its body read.
type reply struct {
	code   int
	body   string
	header http.Header
	resp   *http.Response
}

// creds authenticate a request: HTTP Basic, or a session cookie with (or
// without) a CSRF token.
type creds struct {
	user, pass string
	cookie     string // session token
	csrf       string
}

func basic(user, pass string) creds { return creds{user: user, pass: pass} }

// session is a login's cookie and CSRF token.
type session struct {
	token, csrf string
}

func (s session) creds() creds { return creds{cookie: s.token, csrf: s.csrf} }

// do sends method path with body (JSON unless it starts with form:).
func (c *nmClient) do(cr creds, method, path, body string) reply {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(strings.TrimPrefix(body, "form:"))
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	switch {
	case strings.HasPrefix(body, "form:"):
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	case body != "":
		req.Header.Set("Content-Type", "application/json")
	}
	if cr.user != "" {
		req.SetBasicAuth(cr.user, cr.pass)
	}
	if cr.cookie != "" {
		req.AddCookie(&http.Cookie{Name: "gatehouse-session", Value: cr.cookie})
	}
	if cr.csrf != "" {
		req.Header.Set("csrf-token", cr.csrf)
	}
	resp, err := c.c.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	return reply{code: resp.StatusCode, body: string(b), header: resp.Header, resp: resp}
}

// must fails the test unless r has status code; it decodes the result
// envelope into v when v is not nil.
func (r reply) must(t *testing.T, code int, v any) reply {
	t.Helper()
	if r.code != code {
		t.Fatalf("got status %d, want %d: %s", r.code, code, r.body)
	}
	if v != nil {
		var env struct {
			Result json.RawMessage `json:"result"`
		}
		if err := json.Unmarshal([]byte(r.body), &env); err != nil || json.Unmarshal(env.Result, v) != nil {
			t.Fatalf("result of %s: want %T: %s", r.resp.Request.URL.Path, v, r.body)
		}
	}
	return r
}

// cookie is the session token r sets ("" when none; "-" when cleared).
func (r reply) cookie() (*http.Cookie, bool) {
	for _, c := range r.resp.Cookies() {
		if c.Name == "gatehouse-session" {
			return c, true
		}
	}
	return nil, false
}

// login logs user in through POST /api/rbac/login (form fields).
func (c *nmClient) login(user, pass string) session {
	c.t.Helper()
	r := c.do(creds{}, "POST", "/api/rbac/login", "form:"+url.Values{"username": {user}, "password": {pass}}.Encode())
	var res struct {
		User, CSRFToken string
		IdleTimeout     int
	}
	r.must(c.t, 200, &res)
	ck, ok := r.cookie()
	if !ok || ck.Value == "" || res.CSRFToken == "" || r.header.Get("csrf-token") != res.CSRFToken {
		c.t.Fatalf("login of %s: want a session cookie and the CSRF token in the result and the header: %v %s", user, r.header, r.body)
	}
	return session{token: ck.Value, csrf: res.CSRFToken}
}

// ---- install directories and node manager processes ----

const adminPass = "changeme-Secret1"

// initDomain makes a domain in a new install directory (managedomain -i,
// the ANM on a free port) without starting its node manager.
func initDomain(t *testing.T) *anm {
	t.Helper()
	h := gwtest.NewHome(t)
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte(adminPass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := gwtest.FreePort(t)
	h.MustRun("", "managedomain", "-i", "--domain_name", "D", "--username", "admin", "--password_file", pw, "--port", strconv.Itoa(port))
	return &anm{t: t, h: h, port: port, ca: h.Path("groups", "certs", "domaincert.pem")}
}

// start starts the node manager of a (nodemanager -d) and stops it when
// the test ends.
func (a *anm) start() {
	a.t.Helper()
	a.t.Cleanup(func() { a.h.Run("", "nodemanager", "-k", "-q") })
	a.h.MustRun("", "nodemanager", "-d")
}

// copyDomain copies a's install directory (its node manager not started)
// to a new one whose node manager listens on another port: a second Admin
// Node Manager of the same domain, set up as docs/sessions.md describes.
func copyDomain(t *testing.T, a *anm) *anm {
	t.Helper()
	h := gwtest.NewHome(t)
	if out, err := exec.Command("cp", "-a", a.h.Dir+"/.", h.Dir).CombinedOutput(); err != nil {
		t.Fatalf("copying the install directory: %v: %s", err, out)
	}
	port := gwtest.FreePort(t)
	setNMConf(t, h, func(s string) string {
		return regexp.MustCompile(`(?m)^port: \d+$`).ReplaceAllString(s, "port: "+strconv.Itoa(port))
	})
	return &anm{t: t, h: h, port: port, ca: h.Path("groups", "certs", "domaincert.pem")}
}

// setNMConf rewrites system/conf/nodemanager.yaml of h with edit.
func setNMConf(t *testing.T, h *gwtest.Home, edit func(string) string) {
	t.Helper()
	f := h.Path("system", "conf", "nodemanager.yaml")
	data, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, []byte(edit(string(data))), 0o644); err != nil {
		t.Fatal(err)
	}
}

// ---- the matrix of docs/rbac.md ----

// allMethods are the methods the matrix test sends.
var allMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// matrixRow is one row of the table in docs/rbac.md: a permission, the
// methods and path patterns it covers, and the roles that hold it.
type matrixRow struct {
	area, perm string
	methods    []string
	patterns   []string
	roles      map[string]bool // full role name → ✔
}

// covers reports whether the row's rules match method and path (segment by
// segment: * is one segment, a final ** zero or more).
func (m matrixRow) covers(method, path string) bool {
	if !slices.Contains(m.methods, method) {
		return false
	}
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	for _, p := range m.patterns {
		ps := strings.Split(strings.TrimPrefix(p, "/"), "/")
		if matchSegs(ps, segs) {
			return true
		}
	}
	return false
}

func matchSegs(pat, segs []string) bool {
	for i, p := range pat {
		if p == "**" && i == len(pat)-1 {
			return true
		}
		if i >= len(segs) || p != "*" && p != segs[i] {
			return false
		}
	}
	return len(pat) == len(segs)
}

var (
	backticked = regexp.MustCompile("`([^`]*)`")
	permName   = regexp.MustCompile("\\(`([a-z.]+)`\\)")
)

// parseMatrix reads the role × API-area table under "## The matrix" of
// docs/rbac.md. The paths cell is one of: backticked "METHODS PATH" items
// (METHODS separated by /, none meaning any method; a bare name is a
// sibling of the item before; {a,b} alternatives), "any method on `P`" or
// "any other method on `P`" (every method but GET and HEAD). The page says
// that every read permission allows HEAD with GET, so GET brings HEAD.
func parseMatrix(t *testing.T) []matrixRow {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "docs", "rbac.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	full := map[string]string{"Administrator": "API Server Administrator", "Operator": "API Server Operator"}
	var roles []string
	var rows []matrixRow
	in := false
	sc := bufio.NewScanner(f)
	for line := 0; sc.Scan(); {
		line++
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "## ") {
			in = l == "## The matrix"
			continue
		}
		if !in || !strings.HasPrefix(l, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		switch {
		case roles == nil:
			for _, c := range cells[2:] {
				if n, ok := full[c]; ok {
					c = n
				}
				roles = append(roles, c)
			}
			continue
		case strings.Trim(cells[0], "-: ") == "":
			continue // the separator row
		}
		if len(cells) != 2+len(roles) {
			t.Fatalf("docs/rbac.md:%d: got %d cells, want %d: %s", line, len(cells), 2+len(roles), l)
		}
		pm := permName.FindStringSubmatch(cells[0])
		if pm == nil {
			t.Fatalf("docs/rbac.md:%d: no (`permission`) in %q", line, cells[0])
		}
		r := matrixRow{area: cells[0], perm: pm[1], roles: map[string]bool{}}
		for i, c := range cells[2:] {
			switch c {
			case "✔":
				r.roles[roles[i]] = true
			case "—":
			default:
				t.Fatalf("docs/rbac.md:%d: cell %q: want ✔ or —", line, c)
			}
		}
		r.methods, r.patterns = parsePaths(t, line, cells[1])
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rows) < 10 || len(roles) != 5 {
		t.Fatalf("docs/rbac.md: got %d rows and roles %q, want the matrix of the five roles", len(rows), roles)
	}
	return rows
}

func parsePaths(t *testing.T, line int, cell string) (methods, patterns []string) {
	t.Helper()
	items := backticked.FindAllStringSubmatch(cell, -1)
	if len(items) == 0 {
		t.Fatalf("docs/rbac.md:%d: no `path` in %q", line, cell)
	}
	switch {
	case strings.HasPrefix(cell, "any other method on "):
		methods = slices.DeleteFunc(slices.Clone(allMethods), func(m string) bool { return m == "GET" || m == "HEAD" })
	case strings.HasPrefix(cell, "any method on "):
		methods = allMethods
	}
	dir := ""
	for _, it := range items {
		item := it[1]
		if m, p, ok := strings.Cut(item, " "); ok {
			if methods != nil && !slices.Equal(methods, allMethods) {
				t.Fatalf("docs/rbac.md:%d: methods twice in %q", line, cell)
			}
			for _, x := range strings.Split(m, "/") {
				if !slices.Contains(allMethods, x) {
					t.Fatalf("docs/rbac.md:%d: unknown method %q", line, x)
				}
				methods = append(methods, x)
				if x == "GET" {
					methods = append(methods, "HEAD")
				}
			}
			item = p
		}
		if !strings.HasPrefix(item, "/") {
			item = dir + item // a sibling of the item before
		}
		dir = item[:strings.LastIndexByte(item, '/')+1]
		patterns = append(patterns, expandBraces(item)...)
	}
	if methods == nil {
		methods = allMethods
	}
	slices.Sort(methods)
	return slices.Compact(methods), patterns
}

// expandBraces turns /a/{b,c}/d into /a/b/d and /a/c/d.
func expandBraces(p string) []string {
	i, j := strings.IndexByte(p, '{'), strings.IndexByte(p, '}')
	if i < 0 || j < i {
		return []string{p}
	}
	var out []string
	for _, alt := range strings.Split(p[i+1:j], ",") {
		out = append(out, expandBraces(p[:i]+alt+p[j+1:])...)
	}
	return out
}

// probe is one request of the matrix test.
type probe struct{ method, path string }

// probesOf are requests on a row's patterns: * becomes an id that does
// not exist, a final ** nothing, one and two such segments.
func probesOf(r matrixRow) []probe {
	var out []probe
	for _, p := range r.patterns {
		segs := strings.Split(p, "/")
		var paths []string
		if segs[len(segs)-1] == "**" {
			base := strings.Join(segs[:len(segs)-1], "/")
			paths = []string{base, base + "/none-9", base + "/none-9/none-9"}
		} else {
			paths = []string{p}
		}
		for _, path := range paths {
			path = strings.ReplaceAll(path, "*", "none-9")
			for _, m := range r.methods {
				out = append(out, probe{m, path})
			}
		}
	}
	return out
}

// openAPIProbes are the operations of api/openapi.yaml under /api that
// need credentials, their path parameters filled with ids that do not
// exist (each value of an enum).
func openAPIProbes(t *testing.T) []probe {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "api", "openapi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("api/openapi.yaml: %v", err)
	}
	var out []probe
	param := regexp.MustCompile(`\{[^}]+\}`)
	for path, item := range doc.Paths {
		if !strings.HasPrefix(path, "/api/") {
			continue
		}
		enums := map[string][]string{}
		if ps, ok := item["parameters"].([]any); ok {
			for _, p := range ps {
				pm, _ := p.(map[string]any)
				sch, _ := pm["schema"].(map[string]any)
				if e, ok := sch["enum"].([]any); ok {
					for _, v := range e {
						enums[fmt.Sprint(pm["name"])] = append(enums[fmt.Sprint(pm["name"])], fmt.Sprint(v))
					}
				}
			}
		}
		paths := []string{path}
		for _, name := range param.FindAllString(path, -1) {
			vals := enums[strings.Trim(name, "{}")]
			if vals == nil {
				vals = []string{"none-9"}
			}
			var next []string
			for _, p := range paths {
				for _, v := range vals {
					next = append(next, strings.Replace(p, name, v, 1))
				}
			}
			paths = next
		}
		for m, op := range item {
			method := strings.ToUpper(m)
			if !slices.Contains(allMethods, method) {
				continue
			}
			if o, ok := op.(map[string]any); ok {
				if s, ok := o["security"].([]any); ok && len(s) == 0 {
					continue // open: no credentials, no roles
				}
			}
			for _, p := range paths {
				out = append(out, probe{method, p})
			}
		}
	}
	return out
}

// TestRBACMatrixProcess: every role against every API area on a real ANM.
// One user per role is created through POST /api/rbac/users; the requests
// are every row of the matrix in docs/rbac.md (its methods on its paths,
// ids that do not exist) and every operation of api/openapi.yaml. A
// request is expected to be allowed for a role when a row covering it has
// ✔ for the role (the roles' permissions add up): then anything but 401,
// 403 and 500 (404 for the "later" areas without routes yet); otherwise
// 403 naming what is missing.
func TestRBACMatrixProcess(t *testing.T) {
	rows := parseMatrix(t)
	a := startANM(t)
	c := a.client()
	admin := basic("admin", adminPass)

	var roles []string
	for role := range rows[0].roles {
		roles = append(roles, role)
	}
	for _, r := range rows {
		for role := range r.roles {
			if !slices.Contains(roles, role) {
				roles = append(roles, role)
			}
		}
	}
	sort.Strings(roles)
	users := map[string]creds{}
	for i, role := range roles {
		name := fmt.Sprintf("role%d", i)
		body := fmt.Sprintf(`{"name":%q,"password":"pw-%s-secret","roles":[%q]}`, name, name, role)
		c.do(admin, "POST", "/api/rbac/users", body).must(t, 201, nil)
		users[role] = basic(name, "pw-"+name+"-secret")
	}

	// Every row is probed on its own paths; the documented operations on
	// theirs. Each area's paths must be covered by its own row.
	seen := map[probe]bool{}
	var probes []probe
	for _, r := range rows {
		ps := probesOf(r)
		if len(ps) == 0 {
			t.Fatalf("row %s: no requests", r.area)
		}
		for _, p := range ps {
			if !r.covers(p.method, p.path) {
				t.Fatalf("row %s: its own request %v is not covered (parser)", r.area, p)
			}
			if !seen[p] {
				seen[p] = true
				probes = append(probes, p)
			}
		}
	}
	for _, p := range openAPIProbes(t) {
		if !seen[p] {
			seen[p] = true
			probes = append(probes, p)
		}
	}
	t.Logf("%d rows, %d roles, %d requests per role", len(rows), len(roles), len(probes))

	for _, role := range roles {
		t.Run(role, func(t *testing.T) {
			var allowedN, refusedN int
			for _, p := range probes {
				want := false
				var by []string
				for _, r := range rows {
					if r.covers(p.method, p.path) && r.roles[role] {
						want = true
						by = append(by, r.perm)
					}
				}
				body := ""
				if p.method == "POST" || p.method == "PUT" || p.method == "PATCH" {
					body = "{}"
				}
				got := c.do(users[role], p.method, p.path, body)
				if want && p.method == "POST" && p.path == "/api/backup" && got.code == 403 && strings.Contains(got.body, "not sealed with a passphrase") && !strings.Contains(got.body, "may not") {
					// The ACL let it through; the backup's own rule (keys
					// in clear need the administrator) refused it.
					got.code = 200
				}
				switch {
				case want && (got.code == 401 || got.code == 403 || got.code == 500):
					t.Errorf("%s %s: got %d, want allowed (by %s): %s", p.method, p.path, got.code, strings.Join(by, ", "), clip(got.body))
				case !want && got.code != 403:
					t.Errorf("%s %s: got %d, want 403 (no row of docs/rbac.md covering it has ✔ for %s): %s", p.method, p.path, got.code, role, clip(got.body))
				case !want && p.method != "HEAD" && !strings.Contains(got.body, "may not "+p.method):
					t.Errorf("%s %s: 403 body %s, want it to say what is refused", p.method, p.path, got.body)
				case want:
					allowedN++
				default:
					refusedN++
				}
			}
			t.Logf("%s: %d allowed, %d refused with 403", role, allowedN, refusedN)
		})
	}
}

// clip shortens a body for a test message.
func clip(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// ---- sessions ----

// TestSessionCSRFAndSlowDownProcess: a session against a real ANM: the
// cookie's attributes, CSRF refused without and with a wrong token and
// accepted with it, HTTP Basic without one, logout; then the failed-login
// slow-down (429 and Retry-After, the password not checked meanwhile,
// another user unaffected, the wait over after Retry-After).
func TestSessionCSRFAndSlowDownProcess(t *testing.T) {
	a := startANM(t)
	c := a.client()
	admin := basic("admin", adminPass)

	r := c.do(creds{}, "POST", "/api/rbac/login", "form:username=admin&password="+adminPass)
	r.must(t, 200, nil)
	ck, _ := r.cookie()
	if ck == nil || !ck.HttpOnly || !ck.Secure || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/api" {
		t.Errorf("session cookie: got %+v, want HttpOnly, Secure, SameSite=Strict, Path=/api", ck)
	}
	s := c.login("admin", adminPass)
	var cur struct{ User, Auth string }
	c.do(s.creds(), "GET", "/api/rbac/currentuser", "").must(t, 200, &cur)
	if cur.User != "admin" || cur.Auth != "session" {
		t.Errorf("currentuser: got %+v, want admin by session", cur)
	}

	// CSRF: no token, a wrong one (another session's), then the right one.
	other := c.login("admin", adminPass)
	newUser := `{"name":"csrf1","password":"csrf1-secret-pw","roles":["Deployer"]}`
	for _, cr := range []creds{{cookie: s.token}, {cookie: s.token, csrf: other.csrf}, {cookie: s.token, csrf: "x"}} {
		r := c.do(cr, "POST", "/api/rbac/users", newUser)
		if r.code != 403 || !strings.Contains(r.body, "csrf-token") {
			t.Errorf("POST with csrf %q: got %d %s, want 403 naming csrf-token", cr.csrf, r.code, r.body)
		}
	}
	var list []struct{ Name string }
	c.do(s.creds(), "GET", "/api/rbac/users", "").must(t, 200, &list) // GET needs no token
	if len(list) != 1 {
		t.Fatalf("after the refused POSTs: got users %+v, want admin only", list)
	}
	c.do(s.creds(), "POST", "/api/rbac/users", newUser).must(t, 201, nil)
	c.do(s.creds(), "DELETE", "/api/rbac/users/csrf1", "").must(t, 200, nil)
	c.do(admin, "POST", "/api/rbac/users", newUser).must(t, 201, nil) // HTTP Basic: no token needed
	c.do(creds{cookie: s.token}, "POST", "/api/rbac/logout", "").must(t, 403, nil)

	// Logout ends the session here.
	r = c.do(s.creds(), "POST", "/api/rbac/logout", "").must(t, 200, nil)
	if ck, ok := r.cookie(); !ok || ck.MaxAge >= 0 {
		t.Errorf("logout: got cookie %+v, want it cleared", ck)
	}
	if r := c.do(s.creds(), "GET", "/api/rbac/currentuser", ""); r.code != 401 {
		t.Errorf("after logout: got %d, want 401", r.code)
	}
	c.do(other.creds(), "GET", "/api/rbac/currentuser", "").must(t, 200, nil)

	// The slow-down, for a user whose password was never checked (so the
	// remembered-credentials cache does not let it through).
	c.do(admin, "POST", "/api/rbac/users", `{"name":"slow","password":"slow-right-pw","roles":["Deployer"]}`).must(t, 201, nil)
	wrong := "form:username=slow&password=wrong-password"
	var codes []int
	var throttled reply
	for i := 0; i < 8 && throttled.resp == nil; i++ {
		r := c.do(creds{}, "POST", "/api/rbac/login", wrong)
		codes = append(codes, r.code)
		if r.code == 429 {
			throttled = r
		}
	}
	if throttled.resp == nil || !slices.Equal(codes[:3], []int{401, 401, 401}) || len(codes) > 6 {
		t.Fatalf("wrong passwords: got statuses %v, want 3 free failures (401) and then 429", codes)
	}
	ra, err := strconv.Atoi(throttled.header.Get("Retry-After"))
	if err != nil || ra < 1 || ra > 60 {
		t.Fatalf("429: got Retry-After %q, want 1 to 60 seconds", throttled.header.Get("Retry-After"))
	}
	// While slowed down the right password is not checked either, through
	// the login or HTTP Basic; another user is not slowed down.
	if r := c.do(creds{}, "POST", "/api/rbac/login", "form:username=slow&password=slow-right-pw"); r.code != 429 || r.header.Get("Retry-After") == "" {
		t.Errorf("right password while slowed down: got %d, want 429 with Retry-After", r.code)
	}
	if r := c.do(basic("slow", "slow-right-pw"), "GET", "/api/rbac/currentuser", ""); r.code != 429 {
		t.Errorf("HTTP Basic while slowed down: got %d, want 429", r.code)
	}
	c.do(basic("csrf1", "csrf1-secret-pw"), "GET", "/api/rbac/currentuser", "").must(t, 200, nil)
	// After Retry-After the right password logs in and clears the count.
	deadline := time.Now().Add(time.Duration(ra+5) * time.Second)
	for {
		r := c.do(creds{}, "POST", "/api/rbac/login", "form:username=slow&password=slow-right-pw")
		if r.code == 200 {
			break
		}
		if r.code != 429 || time.Now().After(deadline) {
			t.Fatalf("right password after Retry-After %d s: got %d %s", ra, r.code, r.body)
		}
		time.Sleep(250 * time.Millisecond) // the wait being tested
	}
	if r := c.do(creds{}, "POST", "/api/rbac/login", wrong); r.code != 401 {
		t.Errorf("a wrong password after a good login: got %d, want 401 (counts cleared)", r.code)
	}
}

// TestSessionExpiryProcess: session lifetimes from system/conf/
// nodemanager.yaml on a real ANM: a value out of bounds stops it from
// starting; with idleTimeout 3s and absoluteTimeout 8s a session used
// every 300 ms lives past the idle time (renewed cookies), a token no
// longer used stops working after the idle time, and a session in use ends
// at the absolute time.
func TestSessionExpiryProcess(t *testing.T) {
	a := initDomain(t)
	orig, _ := os.ReadFile(a.h.Path("system", "conf", "nodemanager.yaml"))
	setNMConf(t, a.h, func(s string) string { return s + "sessions:\n  idleTimeout: 500ms\n" })
	if r := a.h.Run("", "nodemanager", "-d"); r.Code == 0 || !strings.Contains(r.Stdout+r.Stderr, "sessions.idleTimeout 500ms") {
		a.h.Run("", "nodemanager", "-k", "-q")
		t.Fatalf("idleTimeout 500ms: got %s, want a refusal naming sessions.idleTimeout", r)
	}
	setNMConf(t, a.h, func(string) string {
		return string(orig) + "sessions:\n  idleTimeout: 3s\n  absoluteTimeout: 8s\n"
	})
	a.start()
	c := a.client()

	r := c.do(creds{}, "POST", "/api/rbac/login", "form:username=admin&password="+adminPass)
	var res struct{ IdleTimeout int }
	r.must(t, 200, &res)
	if res.IdleTimeout != 3 {
		t.Errorf("login: got idleTimeout %d, want 3", res.IdleTimeout)
	}
	login := time.Now()
	ck, _ := r.cookie()
	used := ck.Value // kept in use, renewed from every answer
	var idle string  // frozen after 5 s
	var idleSince, idleEnd, absEnd time.Time
	renewals := 0
	for time.Since(login) < 14*time.Second && (idleEnd.IsZero() || absEnd.IsZero()) {
		now := time.Now()
		if absEnd.IsZero() {
			r := c.do(creds{cookie: used}, "GET", "/api/rbac/currentuser", "")
			switch {
			case r.code == 200:
				if ck, ok := r.cookie(); ok && ck.Value != used {
					used, renewals = ck.Value, renewals+1
				}
			case r.code == 401 && now.Sub(login) > 5*time.Second:
				absEnd = now
			default:
				t.Fatalf("session in use at %v after login: got %d %s", now.Sub(login), r.code, r.body)
			}
		}
		if idle == "" && now.Sub(login) > 5*time.Second {
			idle, idleSince = used, now
		}
		if idle != "" && idleEnd.IsZero() {
			// Using the frozen token would renew it only in the answer,
			// which is thrown away: the token itself keeps its idle end.
			if r := c.do(creds{cookie: idle}, "GET", "/api/rbac/currentuser", ""); r.code == 401 {
				idleEnd = now
			}
		}
		time.Sleep(300 * time.Millisecond) // the session's use, as a client would
	}
	if renewals == 0 {
		t.Errorf("no renewed cookie in %v of use with idleTimeout 3s", time.Since(login))
	}
	if idleEnd.IsZero() {
		t.Errorf("a token not renewed still works %v later, want it refused after the 3 s idle time", time.Since(idleSince))
	} else if d := idleEnd.Sub(idleSince); d > 3500*time.Millisecond {
		t.Errorf("the idle token was refused %v after its last renewal, want at most 3 s (and a little)", d)
	}
	if absEnd.IsZero() {
		t.Errorf("a session in use still works %v after login, want it ended at the 8 s absolute time", time.Since(login))
	} else if d := absEnd.Sub(login); d < 6500*time.Millisecond || d > 9*time.Second {
		t.Errorf("the session in use ended %v after login, want about 8 s (7 to 8 s: whole seconds)", d)
	}
}

// TestSessionTwoANMsProcess: two Admin Node Manager processes of one
// domain (the second from a copy of the first's install directory, another
// port): a session of the first works on the second, CSRF included; an ANM
// of another domain (another session key) refuses it. A logout on the
// first ends the session there; the second, with its own revocation list,
// still accepts it (the trade-off of docs/sessions.md).
func TestSessionTwoANMsProcess(t *testing.T) {
	first := initDomain(t)
	second := copyDomain(t, first)
	first.start()
	second.start()
	other := startANM(t) // another domain: its own conf/sessionKey
	c1, c2, c3 := first.client(), second.client(), other.client()

	s := c1.login("admin", adminPass)
	var cur struct{ User, Auth string }
	c2.do(s.creds(), "GET", "/api/rbac/currentuser", "").must(t, 200, &cur)
	if cur.User != "admin" || cur.Auth != "session" {
		t.Errorf("second ANM: got %+v, want admin by session", cur)
	}
	if r := c2.do(creds{cookie: s.token}, "POST", "/api/rbac/users", `{"name":"u2","password":"u2-secret-pw","roles":["Deployer"]}`); r.code != 403 {
		t.Errorf("second ANM without CSRF: got %d, want 403", r.code)
	}
	c2.do(s.creds(), "POST", "/api/rbac/users", `{"name":"u2","password":"u2-secret-pw","roles":["Deployer"]}`).must(t, 201, nil)
	if r := c3.do(s.creds(), "GET", "/api/rbac/currentuser", ""); r.code != 401 {
		t.Errorf("ANM of another domain: got %d %s, want 401", r.code, r.body)
	}

	c1.do(s.creds(), "POST", "/api/rbac/logout", "").must(t, 200, nil)
	if r := c1.do(s.creds(), "GET", "/api/rbac/currentuser", ""); r.code != 401 {
		t.Errorf("first ANM after logout: got %d, want 401", r.code)
	}
	c2.do(s.creds(), "GET", "/api/rbac/currentuser", "").must(t, 200, nil)
}

// ---- audit ----

// TestAuditUsersAndLoginsProcess: logins (session and failed HTTP Basic),
// logouts, user creation, changes and deletion through the API (refused
// ones too) and a password change by managedomain --change_credentials are
// in GET /api/audit with who, via, where from, targets and outcome, never
// a password; then one entry edited and one deleted in conf/audit/audit.log
// are each found by gatehouse audit verify and by the API.
func TestAuditUsersAndLoginsProcess(t *testing.T) {
	a := startANM(t)
	c := a.client()
	admin := basic("admin", adminPass)
	start := len(auditOf(t, c, "limit=10000").Entries)

	s := c.login("admin", adminPass)
	c.do(s.creds(), "POST", "/api/rbac/logout", "").must(t, 200, nil)
	c.do(creds{}, "POST", "/api/rbac/login", "form:username=admin&password=wrong-pw-1").must(t, 401, nil)
	c.do(basic("admin", "wrong-pw-2"), "GET", "/api/topology", "").must(t, 401, nil)
	c.do(admin, "POST", "/api/rbac/users", `{"name":"ops1","password":"ops1-first-pw","roles":["API Server Operator"]}`).must(t, 201, nil)
	c.do(admin, "POST", "/api/rbac/users", `{"name":"ops1","password":"ops1-other-pw","roles":["Deployer"]}`).must(t, 409, nil)
	c.do(admin, "PUT", "/api/rbac/users/ops1", `{"roles":["Deployer","KPS Administrator"]}`).must(t, 200, nil)
	c.do(admin, "PUT", "/api/rbac/users/ops1", `{"password":"ops1-second-pw"}`).must(t, 200, nil)
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte("ops1-third-pw\n"), 0o600)
	a.h.MustRun("", "managedomain", "--change_credentials", "--username", "ops1", "--password_file", pwFile)
	c.do(basic("ops1", "ops1-third-pw"), "GET", "/api/rbac/currentuser", "").must(t, 200, nil)
	c.do(admin, "DELETE", "/api/rbac/users/ops1", "").must(t, 200, nil)
	c.do(admin, "DELETE", "/api/rbac/users/admin", "").must(t, 409, nil)

	got := auditOf(t, c, "limit=10000")
	if !got.Verified {
		t.Fatalf("audit log not verified: %+v", got)
	}
	entries := got.Entries[:len(got.Entries)-start]
	slices.Reverse(entries) // oldest first
	want := []struct{ user, via, action, outcome, detail, errPart string }{
		{"admin", "api", "login", "ok", "session ", ""},
		{"admin", "api", "logout", "ok", "session ", ""},
		{"admin", "api", "login", "error", "session login", "wrong user name or password"},
		{"admin", "api", "login", "error", "HTTP Basic, GET /api/topology", "wrong user name or password"},
		{"admin", "api", "create user", "ok", `user "ops1" with roles: API Server Operator`, ""},
		{"admin", "api", "create user", "error", `user "ops1" with roles: Deployer`, "exists"},
		{"admin", "api", "change user", "ok", `user "ops1": roles: Deployer, KPS Administrator (were: API Server Operator)`, ""},
		{"admin", "api", "change user", "ok", `user "ops1": new password`, ""},
		{"*", "managedomain", "change user", "ok", `user "ops1": new password`, ""},
		{"admin", "api", "delete user", "ok", `user "ops1" with roles: Deployer, KPS Administrator`, ""},
		{"admin", "api", "delete user", "error", `user "admin" with roles: API Server Administrator`, "last administrator"},
	}
	if len(entries) != len(want) {
		t.Fatalf("got %d new entries, want %d:\n%+v", len(entries), len(want), entries)
	}
	for i, w := range want {
		e := entries[i]
		if (w.user != "*" && e.User != w.user) || e.Via != w.via || e.Action != w.action || e.Outcome != w.outcome ||
			!strings.HasPrefix(e.Detail, w.detail) || !strings.Contains(e.Error, w.errPart) || (w.errPart == "") != (e.Error == "") {
			t.Errorf("entry %d: got %+v, want %+v", i, e, w)
		}
		if w.via == "api" && (e.Remote == "" || e.Remote == "local") || w.via != "api" && e.Remote != "local" {
			t.Errorf("entry %d: got remote %q", i, e.Remote)
		}
		if strings.Contains(e.Action, "user") && !slices.Contains(e.Targets, strings.Split(e.Detail, `"`)[1]) {
			t.Errorf("entry %d: got targets %v, want the user", i, e.Targets)
		}
	}
	if n := len(auditOf(t, c, "action=user").Entries); n != 7 {
		t.Errorf("GET /api/audit?action=user: got %d entries, want 7", n)
	}
	logFile := a.h.Path("conf", "audit", "audit.log")
	data, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, pw := range []string{adminPass, "wrong-pw-1", "wrong-pw-2", "ops1-first-pw", "ops1-other-pw", "ops1-second-pw", "ops1-third-pw", "pbkdf2"} {
		if strings.Contains(string(data), pw) {
			t.Errorf("the audit log holds %q", pw)
		}
	}

	// Tampering: one entry edited, then (the file restored) one deleted.
	lines := strings.SplitAfter(string(data), "\n")
	n := start + 5 // the refused "create user"
	if !strings.Contains(lines[n], `"seq":`+strconv.Itoa(n+1)+",") || !strings.Contains(lines[n], `"outcome":"error"`) {
		t.Fatalf("line %d: got %s", n+1, lines[n])
	}
	for _, tc := range []struct {
		name, content string
		firstBad      int
	}{
		{"edited", strings.Join(slices.Concat(lines[:n], []string{strings.Replace(lines[n], `"user":"admin"`, `"user":"ops1"`, 1)}, lines[n+1:]), ""), n + 1},
		{"deleted", strings.Join(slices.Concat(lines[:n], lines[n+1:]), ""), n + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(logFile, []byte(tc.content), 0o640); err != nil {
				t.Fatal(err)
			}
			defer os.WriteFile(logFile, data, 0o640)
			if r := a.h.Run("", "audit", "verify"); r.Code != 1 || !strings.Contains(r.Stderr, fmt.Sprintf("entry %d is bad", tc.firstBad)) {
				t.Errorf("audit verify: got %s, want exit 1 naming entry %d", r, tc.firstBad)
			}
			if got := auditOf(t, c, "limit=1"); got.Verified || got.FirstBad != int64(tc.firstBad) {
				t.Errorf("GET /api/audit: got verified %v, firstBad %d, want false and %d", got.Verified, got.FirstBad, tc.firstBad)
			}
		})
	}
	if r := a.h.Run("", "audit", "verify"); r.Code != 0 {
		t.Errorf("restored log: got %s, want verified", r)
	}
}

func auditOf(t *testing.T, c *nmClient, query string) auditAnswer {
	t.Helper()
	var got auditAnswer
	c.do(basic("admin", adminPass), "GET", "/api/audit?"+query, "").must(t, 200, &got)
	return got
}
