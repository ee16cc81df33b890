package tools_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// TestPassphraseEndToEnd is issue 20's first "done means". A QuickStart
// domain (its admin password, printed once, among the secrets; its group
// and instance serving the sample API) with an Admin Node Manager and two
// more groups: A with a KPS holding an API key
// and an OAuth server issuing JWT access tokens (client_credentials), B
// with a TLS traffic listener whose key is in groups/<B>/conf/secrets/.
// Every secret is recorded in clear (the keys' PEM, the session and
// hashing keys, the JWKs' d, the API key, the client secret, the admin
// password, the passphrases, the QuickStart group's secret files); the
// scan of the install directory is shown to find them (a control). Then
// passphrases are set on the three groups (the QuickStart instance stopped
// first), the node managers and the domain CA, all from files, and:
//   - the node manager starts with none given (passphraseExec), creates an
//     API key, rotates A's signing key and creates an instance of B (its
//     certificate signed with the sealed CA key), all sealed;
//   - instance A and the QuickStart instance start through it (passphrase
//     from the program; the sample API answers), A again
//     when the node manager restarts it after a SIGKILL; B from a file
//     descriptor with its certificate 10 days from its end (kept, as the CA
//     is sealed), then from a pseudo-terminal; C from a file;
//   - the API key, the token (an old one and a new one) and the TLS key
//     work after each start;
//   - a wrong passphrase is refused, saying so, and changes nothing;
//   - B's passphrase changed (refused while C runs), the instances start
//     with the new one; an instance the node manager creates afterwards too;
//   - managedomain --domain_csr works with the CA sealed;
//   - no secret in clear in any file of the install directory (logs,
//     traces, KPS backups, the KPS itself included; "PRIVATE KEY" nowhere
//     but in the gatehouse binary), nor in /proc/<pid>/cmdline or environ
//     of the running processes, nor of any process of the install
//     directory seen meanwhile (sampled every 2 ms: the tools, the
//     instances' launchers, passphraseExec; a control shows the sampling
//     finds a passphrase in arguments and environment).
func TestPassphraseEndToEnd(t *testing.T) {
	started := time.Now()
	// The domain: QuickStart's (its group and instance, serving the
	// sample API, and the admin user with a random password printed once).
	h := gwtest.NewHome(t)
	h.Env = append(h.Env, "XDG_CONFIG_HOME="+t.TempDir())
	hh := home.Home{Dir: h.Dir}
	anmPort, tpQ, mpQ, spQ := gwtest.FreePort(t), gwtest.FreePort(t), gwtest.FreePort(t), gwtest.FreePort(t)
	qs := h.MustRun("", "quickstart", "-d", "--traffic_port", strconv.Itoa(tpQ), "--management_port", strconv.Itoa(mpQ), "--sample_port", strconv.Itoa(spQ), "--port", strconv.Itoa(anmPort))
	qsm := regexp.MustCompile(`Admin user: admin +password: (\S+)`).FindStringSubmatch(qs.Stdout)
	if qsm == nil {
		t.Fatalf("quickstart printed no admin password: %s", qs)
	}
	adminPassword := qsm[1]
	// The QuickStart group's and instance's ids, from the logs' directory
	// it prints (groups/<group>/<instance>/logs).
	qsl := regexp.MustCompile(`logs in (\S+)/groups/([\w-]+)/([\w-]+)/logs\)`).FindStringSubmatch(qs.Stdout)
	if qsl == nil {
		t.Fatalf("quickstart printed no logs directory: %s", qs)
	}
	gQ, iQ := qsl[2], qsl[3]
	// QuickStart does not start the node manager (it says how to).
	t.Cleanup(func() { h.Run("", "nodemanager", "-k", "-q") })
	h.MustRun("", "nodemanager", "-d")
	apiURL := fmt.Sprintf("https://localhost:%d/api", anmPort)
	tmp := t.TempDir() // outside the install directory: the passphrase files and the program
	writeSecret := func(name, content string) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pw := writeSecret("pw", adminPassword)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprintln(w, "backend ok")
	}))
	t.Cleanup(be.Close)

	// Two groups, one instance each.
	wantClient(t, "login", h.Run("", "client", "--url", apiURL, "--username", "admin", "--password-file", pw, "login"), 0, "logged in")
	createdID := regexp.MustCompile(`created (?:group|instance) ([\w-]+) `)
	create := func(what string, args ...string) string {
		t.Helper()
		r := h.Run("", append([]string{"client"}, args...)...)
		wantClient(t, what, r, 0, "created ")
		m := createdID.FindStringSubmatch(r.Stdout)
		if m == nil {
			t.Fatalf("%s: no id in %s", what, r)
		}
		return m[1]
	}
	gA := create("group create A", "group", "create", "Group A")
	gB := create("group create B", "group", "create", "Group B")
	tpA, mpA, tpB, mpB := gwtest.FreePort(t), gwtest.FreePort(t), gwtest.FreePort(t), gwtest.FreePort(t)
	iA := create("instance create A", "instance", "create", "Group A", "Server A", "--traffic-port", strconv.Itoa(tpA), "--management-port", strconv.Itoa(mpA))
	iB := create("instance create B", "instance", "create", "Group B", "Server B", "--traffic-port", strconv.Itoa(tpB), "--management-port", strconv.Itoa(mpB))
	wantClient(t, "start A", h.Run("", "client", "start", gA, iA), 0, ": running")
	wantClient(t, "start B", h.Run("", "client", "start", gB, iB), 0, ": running")

	// Group A: an API behind an API key, another behind the group's own
	// OAuth server's JWT access tokens.
	issuer := fmt.Sprintf("http://127.0.0.1:%d", tpA)
	confA := filepath.Join(tmp, "groupA.yaml")
	os.WriteFile(confA, []byte(fmt.Sprintf(`kps:
  cache: {ttl: 1s, negativeTTL: 1s}
nodeManager:
  restartOnFailure: true
  restartBackoff: 0.2
oauth:
  enabled: true
  issuer: %s
  accessTokenFormat: jwt
  scopes: [orders:read]
backends:
  - name: be
    url: %s
apis:
  - name: keyed
    pathPrefix: /keyed
    backend: be
    policies:
      - apiKey: {}
  - name: orders
    pathPrefix: /orders
    backend: be
    policies:
      - oauth: {scopes: [orders:read], tokenCacheTtl: 100ms}
`, issuer, be.URL)), 0o644)
	wantClient(t, "deploy A", h.Run("", "deploy", "-g", "Group A", confA), 0, "succeeded")

	// Group B: TLS on its traffic listener, the key among the group's
	// secrets (groups/<B>/conf/secrets/).
	cf, kf, tlsPool := selfSigned(t, tmp)
	certPEM, _ := os.ReadFile(cf)
	tlsKeyPEM, _ := os.ReadFile(kf)
	os.Remove(kf) // the key's one place: the group's secrets
	secretsDir := filepath.Join(hh.GroupConfDir(gB), "secrets")
	os.MkdirAll(secretsDir, 0o700)
	tlsKeyFile := filepath.Join(secretsDir, "tls-key.pem")
	if err := os.WriteFile(tlsKeyFile, tlsKeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hh.GroupConfDir(gB), "tls-cert.pem"), certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	confB := filepath.Join(tmp, "groupB.yaml")
	os.WriteFile(confB, []byte(fmt.Sprintf(`traffic:
  tls:
    certFile: groups/%s/conf/tls-cert.pem
    keyFile: groups/%s/conf/secrets/tls-key.pem
backends:
  - name: be
    url: %s
apis:
  - name: plain
    pathPrefix: /plain
    backend: be
`, gB, gB, be.URL)), 0o644)
	wantClient(t, "deploy B", h.Run("", "deploy", "-g", "Group B", confB), 0, "succeeded")

	// The application, its API key and its OAuth client secret.
	r := h.Run("", "client", "apps", "create", "-g", "Group A", "Shop", "--api", "keyed", "--api", "orders", "--grant-type", "client_credentials", "--scope", "orders:read")
	wantClient(t, "apps create", r, 0, "created application ")
	m := regexp.MustCompile(`created application ([0-9a-f-]{36}) `).FindStringSubmatch(r.Stdout)
	if m == nil {
		t.Fatalf("apps create: no id in %s", r)
	}
	appID := m[1]
	secondLine := func(what string, r gwtest.Result) string {
		t.Helper()
		wantClient(t, what, r, 0, "the only time")
		ls := strings.Split(strings.TrimSpace(r.Stdout), "\n")
		if len(ls) != 3 {
			t.Fatalf("%s: %s", what, r)
		}
		return ls[1]
	}
	apiKey := secondLine("keys create", h.Run("", "client", "keys", "create", "-g", "Group A", "--app", "Shop"))
	clientSecret := secondLine("secrets create", h.Run("", "client", "secrets", "create", "-g", "Group A", "--app", "Shop"))

	// What the gateway must still do once the passphrases are set.
	httpc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	call := func(u string, hdr ...string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", u, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := httpc.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	token := func() (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", issuer+"/oauth/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}, "scope": {"orders:read"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(appID), url.QueryEscape(clientSecret))
		resp, err := httpc.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var tr struct {
			AccessToken string `json:"access_token"`
		}
		json.Unmarshal(b, &tr)
		if resp.StatusCode != 200 || strings.Count(tr.AccessToken, ".") != 2 {
			return resp.StatusCode, string(b)
		}
		return 200, tr.AccessToken
	}
	// await retries f (the instances see new applications within
	// kps.cache.ttl, and a started instance within its start).
	await := func(what string, within time.Duration, f func() (int, string)) string {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			code, body := f()
			if code == 200 {
				return body
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: got %d %s, want 200", what, code, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	keyed := func() (int, string) { return call(fmt.Sprintf("http://127.0.0.1:%d/keyed/1", tpA), "KeyId", apiKey) }
	tlsc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: tlsPool}}}
	overTLSAt := func(port int) (int, string) {
		resp, err := tlsc.Get(fmt.Sprintf("https://127.0.0.1:%d/plain/1", port))
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	overTLS := func() (int, string) { return overTLSAt(tpB) }
	checkServing := func(when string, tok string) string {
		t.Helper()
		await(when+": the API key", 5*time.Second, keyed)
		// The policies hold: without the key, without a token, refused.
		if code, _ := call(fmt.Sprintf("http://127.0.0.1:%d/keyed/1", tpA)); code != 401 {
			t.Errorf("%s: the keyed API without a key: %d, want 401", when, code)
		}
		if code, _ := call(issuer + "/orders/1"); code != 401 {
			t.Errorf("%s: the OAuth API without a token: %d, want 401", when, code)
		}
		newTok := await(when+": a token from the token endpoint", 5*time.Second, token)
		for _, tk := range []string{tok, newTok} {
			if tk == "" {
				continue
			}
			if code, body := call(issuer+"/orders/1", "Authorization", "Bearer "+tk); code != 200 {
				t.Errorf("%s: a JWT access token of the group's signing key: %d %s", when, code, body)
			}
		}
		await(when+": the TLS listener with the group's key", 10*time.Second, overTLS)
		return newTok
	}
	tok := checkServing("before the passphrases", "")
	// The QuickStart instance's sample API (its own sample back end).
	sampleEcho := func() (int, string) {
		code, body := call(fmt.Sprintf("http://127.0.0.1:%d/sample/echo?q=1", tpQ))
		var e struct{ Method, Path, Query string }
		if code == 200 && (json.Unmarshal([]byte(body), &e) != nil || e.Method != "GET" || e.Path != "/echo" || e.Query != "q=1") {
			return 0, "not the sample back end's echo: " + body
		}
		return code, body
	}
	await("before the passphrases: the QuickStart sample API", 5*time.Second, sampleEcho)

	// A backup of group A's KPS: part of what is scanned.
	wantClient(t, "kpsadmin backup", h.Run("", "kpsadmin", "backup", "-g", "Group A", "-n", "Server A"), 0, "written")

	// Every secret in clear, before the passphrases are set.
	var secrets []knownSecret
	var secretsMu sync.Mutex // secrets is added to while watchProcs reads it
	add := func(name string, v []byte, file bool) {
		if len(v) < 8 {
			t.Fatalf("secret %s: too short to search for (%d bytes)", name, len(v))
		}
		secretsMu.Lock()
		secrets = append(secrets, knownSecret{name, v, file})
		secretsMu.Unlock()
	}
	current := func() []knownSecret {
		secretsMu.Lock()
		defer secretsMu.Unlock()
		return slices.Clone(secrets)
	}
	addPEM := func(name, path string) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil || !strings.Contains(blk.Type, "PRIVATE KEY") {
			t.Fatalf("%s: %s holds no PEM private key", name, path)
		}
		add(name+" (PEM)", bytes.TrimSpace(b), true)
		// The first line of the base64 body (64 characters), and the key's
		// DER in base64 and hex: however it is laid out.
		body := strings.Split(string(b), "\n")[1]
		add(name+" (base64 line)", []byte(body), true)
		add(name+" (DER, hex)", []byte(hex.EncodeToString(blk.Bytes)), false)
	}
	addPEM("the domain CA's key", hh.Path("groups", "certs", "private", "domainkey.pem"))
	addPEM("the node manager's key", hh.Path("system", "conf", "certs", "private", "nodemanager-key.pem"))
	addPEM("instance A's key", filepath.Join(hh.InstanceDir(gA, iA), "conf", "certs", "private", "instance-key.pem"))
	addPEM("instance B's key", filepath.Join(hh.InstanceDir(gB, iB), "conf", "certs", "private", "instance-key.pem"))
	addPEM("group B's TLS key", tlsKeyFile)
	// The QuickStart group's secret files (secret.Scope.Files' patterns):
	// its instance's key at least.
	var qsFiles []string
	for _, pat := range []string{"*/conf/certs/private/instance-key.pem", "conf/kps/apikeys.key", "conf/oauth/keys/*.json", "conf/secrets/*"} {
		m, _ := filepath.Glob(filepath.Join(hh.GroupDir(gQ), filepath.FromSlash(pat)))
		qsFiles = append(qsFiles, m...)
	}
	if !slices.Contains(qsFiles, filepath.Join(hh.InstanceDir(gQ, iQ), "conf", "certs", "private", "instance-key.pem")) {
		t.Fatalf("the QuickStart instance has no key among its group's secret files: %v", qsFiles)
	}
	for _, p := range qsFiles {
		rel, _ := filepath.Rel(h.Dir, p)
		if b, _ := os.ReadFile(p); bytes.Contains(b, []byte("PRIVATE KEY")) {
			addPEM("the QuickStart group's "+rel, p)
		} else {
			add("the QuickStart group's "+rel, bytes.TrimSpace(b), true)
		}
	}
	sk, err := os.ReadFile(hh.Path("conf", "sessionKey"))
	if err != nil {
		t.Fatal(err)
	}
	add("the session key", bytes.TrimSpace(sk), true)
	if raw, err := hex.DecodeString(string(bytes.TrimSpace(sk))); err == nil {
		add("the session key (raw)", raw, false)
		add("the session key (base64)", []byte(base64.RawStdEncoding.EncodeToString(raw)), false)
	}
	hk, err := os.ReadFile(filepath.Join(hh.GroupConfDir(gA), "kps", "apikeys.key"))
	if err != nil {
		t.Fatal(err)
	}
	add("group A's API-key hashing key (raw)", hk, true)
	add("group A's API-key hashing key (hex)", []byte(hex.EncodeToString(hk)), false)
	add("group A's API-key hashing key (base64)", []byte(base64.RawStdEncoding.EncodeToString(hk)), false)
	add("group A's API-key hashing key (base64url)", []byte(base64.RawURLEncoding.EncodeToString(hk)), false)
	jwks, _ := filepath.Glob(filepath.Join(hh.GroupConfDir(gA), "oauth", "keys", "*.json"))
	if len(jwks) == 0 {
		t.Fatalf("group A has no OAuth signing key in %s", filepath.Join(hh.GroupConfDir(gA), "oauth", "keys"))
	}
	for _, p := range jwks {
		b, _ := os.ReadFile(p)
		var kf struct {
			JWK struct {
				D string `json:"d"`
			} `json:"jwk"`
		}
		if err := json.Unmarshal(b, &kf); err != nil || kf.JWK.D == "" {
			t.Fatalf("%s: no private d in %s (%v)", p, b, err)
		}
		add("OAuth signing key "+filepath.Base(p)+" (d)", []byte(kf.JWK.D), true)
		if raw, err := base64.RawURLEncoding.DecodeString(kf.JWK.D); err == nil {
			add("OAuth signing key "+filepath.Base(p)+" (d, hex)", []byte(hex.EncodeToString(raw)), false)
		}
	}
	add("the API key's secret part", []byte(apiKey[15:]), false)
	add("the OAuth client secret", []byte(strings.TrimPrefix(clientSecret, "gcs_")), false)
	add("the admin password", []byte(adminPassword), false)
	passA, passB, passNM, passCA := "group-A passphrase "+randHex(8), "group-B passphrase "+randHex(8), "node-manager passphrase "+randHex(8), "domain-CA passphrase "+randHex(8)
	passQ := "QuickStart-group passphrase " + randHex(8)
	for n, p := range map[string]string{"group A's passphrase": passA, "group B's passphrase": passB, "the node manager's passphrase": passNM, "the CA's passphrase": passCA, "the QuickStart group's passphrase": passQ} {
		add(n, []byte(p), false)
	}
	sort.SliceStable(secrets, func(i, j int) bool { return secrets[i].name < secrets[j].name })

	// scan returns, for each secret, the files of the install directory
	// that hold it, and the files holding a PEM private key's marker.
	scan := func() (found map[string][]string, markers []string) {
		found = map[string][]string{}
		err := filepath.WalkDir(h.Dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.Type().IsRegular() {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(h.Dir, p)
			for _, s := range secrets {
				if bytes.Contains(b, s.value) {
					found[s.name] = append(found[s.name], rel)
				}
			}
			// The one allowed holder of the marker: the gatehouse binary
			// copied into the install directory (posix/bin/), which has
			// the PEM block types as constants in its code and no key.
			// The secrets themselves are searched in it too (above).
			if bytes.Contains(b, []byte("PRIVATE KEY")) && rel != filepath.Join("posix", "bin", "gatehouse") {
				markers = append(markers, rel)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("scanning %s: %v", h.Dir, err)
		}
		return found, markers
	}
	// The control: in clear, the scan finds every secret file's content.
	found, markers := scan()
	for _, s := range secrets {
		if s.file && len(found[s.name]) == 0 {
			t.Errorf("control: before the passphrases, the scan does not find %s", s.name)
		}
	}
	if len(markers) < 6 {
		t.Errorf("control: before the passphrases, only %d files hold a PEM private key: %v", len(markers), markers)
	}
	for _, n := range []string{"the API key's secret part", "the OAuth client secret", "the admin password"} {
		if f := found[n]; len(f) > 0 {
			t.Errorf("before any passphrase, %s is in clear in %v", n, f)
		}
	}

	// Stop everything (the QuickStart instance as its output says), then
	// set the five passphrases from files.
	wantClient(t, "stop A", h.Run("", "client", "stop", gA, iA), 0, ": stopped")
	wantClient(t, "stop B", h.Run("", "client", "stop", gB, iB), 0, ": stopped")
	h.MustRun("", "startinstance", "-k", "-n", "QuickStart Server", "-g", "QuickStart Group")
	h.MustRun("", "nodemanager", "-k", "-q")
	// Instance B's certificate now expires in 10 days: an instance
	// starting renews one that close to its end on the host of the CA
	// (domain.InstanceCertRenewBefore). Once the CA's key is sealed, the
	// instance (which never holds the CA's passphrase) must still start.
	nearExpiry(t, hh, gB, iB, 10*24*time.Hour)
	fileA, fileB, fileNM, fileCA := writeSecret("passA", passA), writeSecret("passB", passB), writeSecret("passNM", passNM), writeSecret("passCA", passCA)
	fileQ := writeSecret("passQ", passQ)
	for _, c := range []struct {
		args []string
		file string
	}{{[]string{"-g", "Group A"}, fileA}, {[]string{"-g", gB}, fileB}, {[]string{"-g", "QuickStart Group"}, fileQ}, {[]string{"--node_manager"}, fileNM}, {[]string{"--domain"}, fileCA}} {
		r := h.Run("", append(append([]string{"managedomain", "--change_passphrase"}, c.args...), "--new_passphrase_file", c.file)...)
		wantClient(t, "change_passphrase "+strings.Join(c.args, " "), r, 0, "The passphrase of the", "is set")
	}
	for _, p := range append([]string{
		hh.Path("groups", "certs", "private", "domainkey.pem"),
		hh.Path("system", "conf", "certs", "private", "nodemanager-key.pem"),
		hh.Path("conf", "sessionKey"),
		filepath.Join(hh.InstanceDir(gA, iA), "conf", "certs", "private", "instance-key.pem"),
		filepath.Join(hh.InstanceDir(gB, iB), "conf", "certs", "private", "instance-key.pem"),
		filepath.Join(hh.GroupConfDir(gA), "kps", "apikeys.key"),
		tlsKeyFile,
		jwks[0],
	}, qsFiles...) {
		if b, _ := os.ReadFile(p); !bytes.HasPrefix(b, []byte("gh-sealed:1:")) {
			t.Errorf("%s is not sealed: %.40q", p, b)
		}
	}

	// From here on, every process of the install directory is watched, the
	// short-lived ones too (the tools, the passphraseExec program). The
	// watch is known to work: a process holding a passphrase in its
	// arguments and another in its environment is found.
	// (cat waits on its standard input, a pipe, before it would read the
	// "file" named by the passphrase.)
	ctlIn, ctlInW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	ctl := exec.Command("cat", "-", passA)
	ctl.Env = []string{"GATEHOUSE_HOME=" + h.Dir, "X=" + passB}
	ctl.Stdin = ctlIn
	if err := ctl.Start(); err != nil {
		t.Fatal(err)
	}
	ctlIn.Close()
	defer ctlInW.Close()
	stopCtl := make(chan struct{})
	ctlWatch := watchProcs(h.Dir, current, stopCtl)
	time.Sleep(100 * time.Millisecond)
	close(stopCtl)
	cw := <-ctlWatch
	ctl.Process.Kill()
	ctl.Wait()
	if c := strings.Join(cw.found, "\n"); !strings.Contains(c, "cmdline holds group A's passphrase") || !strings.Contains(c, "environ holds group B's passphrase") {
		t.Errorf("control: the watch of the processes does not find passphrases in a command line and an environment: %v", cw.found)
	}
	stopWatch := make(chan struct{})
	watch := watchProcs(h.Dir, current, stopWatch)
	var stopOnce sync.Once
	stopWatching := func() procWatch {
		stopOnce.Do(func() { close(stopWatch) })
		return <-watch
	}
	t.Cleanup(func() { stopOnce.Do(func() { close(stopWatch) }) })

	// The node manager, without a flag: its passphrase, the CA's and the
	// groups' from passphraseExec (a program that prints the one of the
	// scope it is given).
	prog := filepath.Join(tmp, "passphrase-exec")
	os.WriteFile(prog, []byte(fmt.Sprintf(`#!/bin/sh
case "$1 $2" in
"nodemanager ") cat %q ;;
"ca ") cat %q ;;
"group %s") cat %q ;;
"group %s") cat %q ;;
"group %s") cat %q ;;
*) echo "unknown scope $*" >&2; exit 1 ;;
esac
`, fileNM, fileCA, gA, fileA, gB, fileB, gQ, fileQ)), 0o700)
	nmConf, err := os.ReadFile(hh.NodeManagerConf())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hh.NodeManagerConf(), append(nmConf, []byte(fmt.Sprintf("passphraseExec: [%q]\n", prog))...), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := h.Run("", "nodemanager", "-d"); r.Code != 0 {
		t.Fatalf("nodemanager -d with passphraseExec: %s", r)
	}
	// The ANM reaches group A's sealed key store: a second API key.
	wantClient(t, "login after the passphrases", h.Run("", "client", "--url", apiURL, "--username", "admin", "--password-file", pw, "login"), 0, "logged in")
	apiKey2 := secondLine("keys create after the passphrases", h.Run("", "client", "keys", "create", "-g", "Group A", "--app", "Shop"))
	add("the second API key's secret part", []byte(apiKey2[15:]), false)
	// A new OAuth signing key for group A, written (sealed) by the Admin
	// Node Manager: instance A, started next, opens it.
	keysBefore, _ := filepath.Glob(filepath.Join(hh.GroupConfDir(gA), "oauth", "keys", "*.json"))
	wantClient(t, "signing-keys rotate after the passphrases", h.Run("", "client", "signing-keys", "rotate", "-g", "Group A"), 0)
	keysAfter, _ := filepath.Glob(filepath.Join(hh.GroupConfDir(gA), "oauth", "keys", "*.json"))
	newKid := ""
	for _, k := range keysAfter {
		if !slices.Contains(keysBefore, k) {
			newKid = strings.TrimSuffix(filepath.Base(k), ".json")
			if b, _ := os.ReadFile(k); !bytes.HasPrefix(b, []byte("gh-sealed:1:")) {
				t.Errorf("the signing key made after the passphrases is not sealed: %s", k)
			}
		}
	}
	if newKid == "" {
		t.Errorf("signing-keys rotate made no key file: %v then %v", keysBefore, keysAfter)
	}
	// A new instance of sealed group B: its certificate signed with the
	// sealed CA key, its key written sealed; started with the passphrase
	// from a file, it serves TLS with the group's sealed key.
	tpC, mpC := gwtest.FreePort(t), gwtest.FreePort(t)
	iC := create("instance create C after the passphrases", "instance", "create", "Group B", "Server C", "--traffic-port", strconv.Itoa(tpC), "--management-port", strconv.Itoa(mpC))
	keyC := filepath.Join(hh.InstanceDir(gB, iC), "conf", "certs", "private", "instance-key.pem")
	if b, err := os.ReadFile(keyC); err != nil || !bytes.HasPrefix(b, []byte("gh-sealed:1:")) {
		t.Errorf("the key of an instance created in a sealed group is not sealed (%v): %.40q", err, b)
	}
	if r := h.Run("", "startinstance", "-d", "-n", "Server C", "-g", "Group B", "--passphrase_file", fileB); r.Code != 0 {
		t.Errorf("startinstance -d --passphrase_file of a new instance of a sealed group: %s", r)
	} else {
		await("instance C: the TLS listener with the group's key", 10*time.Second, func() (int, string) { return overTLSAt(tpC) })
	}
	// Group A's instance, started by the node manager: its passphrase
	// from the program, through a pipe.
	wantClient(t, "start A through the node manager", h.Run("", "client", "start", gA, iA), 0, ": running")
	// The QuickStart instance too: its sample API answers.
	wantClient(t, "start the QuickStart instance through the node manager", h.Run("", "client", "start", gQ, iQ), 0, ": running")
	await("after the passphrases: the QuickStart sample API", 10*time.Second, sampleEcho)

	// Group B's instance from a file descriptor (a pipe, descriptor 3).
	startFD := func() {
		t.Helper()
		cmd := h.Command(t.Context(), "", "startinstance", "-d", "-n", "Server B", "-g", "Group B", "--passphrase_fd", "3")
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		pw.Write([]byte(passB + "\n"))
		pw.Close()
		cmd.ExtraFiles = []*os.File{pr}
		out, err := cmd.CombinedOutput()
		pr.Close()
		if err != nil {
			t.Fatalf("startinstance -d --passphrase_fd 3: %v\n%s", err, out)
		}
		boot, _ := os.ReadFile(filepath.Join(hh.InstanceTraceDir(gB, iB), "boot.log"))
		if !strings.Contains(string(out)+string(boot), "kept although it should be reissued") {
			t.Errorf("instance B's certificate, close to its end, kept without a note: %s\n%s", out, boot)
		}
	}
	startFD()
	tok2 := checkServing("after the passphrases (B from a descriptor)", tok)
	// The key the ANM sealed opened in instance A: published in its JWKS
	// (it signs once published for 20 s: docs/oauth.md).
	if code, body := call(issuer + "/oauth/jwks"); code != 200 || newKid == "" || !strings.Contains(body, `"kid":"`+newKid+`"`) {
		t.Errorf("instance A's JWKS after the rotation: %d %s, want the new key %s", code, body, newKid)
	}
	if code, body := call(fmt.Sprintf("http://127.0.0.1:%d/keyed/1", tpA), "KeyId", apiKey2); code != 200 {
		t.Errorf("the API key made after the passphrases: %d %s", code, body)
	}
	procs := pids(t, hh, []string{"nodemanager", iA, iB, iQ})
	scanProcs(t, procs, secrets)

	// Instance A killed: the node manager restarts it
	// (nodeManager.restartOnFailure), the passphrase again from the program.
	if err := syscall.Kill(procs[iA], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		st, _ := home.Probe(hh.RunFiles(iA))
		if st.Running && st.Record != nil && st.Record.PID != procs[iA] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance A, killed, was not restarted by the node manager within 20s")
		}
	}
	checkServing("after the node manager restarted A", tok2)

	// A wrong passphrase: refused, saying so, and nothing changed.
	h.MustRun("", "startinstance", "-k", "-n", "Server B", "-g", "Group B")
	before := treeDigests(t, h.Dir)
	wrong := writeSecret("wrong", "not the passphrase of B")
	r = h.Run("", "startinstance", "-d", "-n", "Server B", "-g", "Group B", "--passphrase_file", wrong)
	if r.Code == 0 || !strings.Contains(r.Stderr+r.Stdout, "wrong passphrase") {
		t.Errorf("startinstance with a wrong passphrase: want a failure saying \"wrong passphrase\": %s", r)
	}
	after := treeDigests(t, h.Dir)
	// What may change meanwhile: the audit log, which records the refused
	// start (docs/audit.md), and the logs of the processes that run on
	// (instances A's and C's access logs are written in the background;
	// the node manager's log; the running instances' traces). Nothing of instance B's or of the scopes'.
	mayChange := func(p string) bool {
		for _, d := range []string{"conf/audit/", "logs/", filepath.Join("groups", gA, iA, "logs") + "/", filepath.Join("groups", gB, iC, "logs") + "/", filepath.Join("groups", gQ, iQ, "logs") + "/",
			// and their traces: instance C logs there that B, its peer on
			// the group's cluster bus, left (docs/cluster.md)
			filepath.Join("groups", gA, iA, "trace") + "/", filepath.Join("groups", gB, iC, "trace") + "/", filepath.Join("groups", gQ, iQ, "trace") + "/"} {
			if strings.HasPrefix(p, d) {
				return true
			}
		}
		return false
	}
	for p, sum := range before {
		if after[p] != sum && !mayChange(p) {
			t.Errorf("a refused start changed %s", p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok && !mayChange(p) {
			t.Errorf("a refused start made %s", p)
		}
	}
	if st, _ := home.Probe(hh.RunFiles(iB)); st.Running {
		t.Errorf("instance B runs after a wrong passphrase")
	}

	// Group B's passphrase changed (old to new): refused while one of
	// its instances (C) runs, done once it is stopped, with the node
	// manager running on. The program then answers the new one.
	passB2 := "group-B second passphrase " + randHex(8)
	add("group B's second passphrase", []byte(passB2), false)
	fileB2 := writeSecret("passB2", passB2)
	change := func() gwtest.Result {
		return h.Run("", "managedomain", "--change_passphrase", "-g", "Group B", "--old_passphrase_file", fileB, "--new_passphrase_file", fileB2)
	}
	wantClient(t, "change_passphrase of a group whose instance runs", change(), 1, "is running", "nothing was changed")
	h.MustRun("", "startinstance", "-k", "-n", "Server C", "-g", "Group B")
	wantClient(t, "change_passphrase -g B, old to new", change(), 0, "The passphrase of the group "+gB+" is set")
	os.WriteFile(fileB, []byte(passB2+"\n"), 0o600) // what passphraseExec answers for B

	// Group B's instance from a pseudo-terminal (-P; the daemon child gets
	// it through a pipe), with the new passphrase; C from its file.
	startPTY(t, h, passB2, "startinstance", "-d", "-P", "-n", "Server B", "-g", "Group B")
	checkServing("after the passphrases (B from a terminal)", tok2)
	if r := h.Run("", "startinstance", "-d", "-n", "Server C", "-g", "Group B", "--passphrase_file", fileB2); r.Code != 0 {
		t.Errorf("instance C with group B's new passphrase: %s", r)
	} else {
		await("instance C after the change", 10*time.Second, func() (int, string) { return overTLSAt(tpC) })
	}
	// A secret the Admin Node Manager writes for group B after the
	// change (a new instance's key) opens with the new passphrase.
	tpD, mpD := gwtest.FreePort(t), gwtest.FreePort(t)
	iD := create("instance create D after the change", "instance", "create", "Group B", "Server D", "--traffic-port", strconv.Itoa(tpD), "--management-port", strconv.Itoa(mpD))
	running := []string{"nodemanager", iA, iB, iC, iQ}
	if r := h.Run("", "startinstance", "-d", "-n", "Server D", "-g", "Group B", "--passphrase_file", fileB2); r.Code != 0 {
		// The node manager unlocked group B with passphraseExec when it
		// started; managedomain --change_passphrase -g, another process,
		// replaced the keyring meanwhile: the node manager must notice
		// (secret: a remembered key whose keyring changed is dropped) and
		// ask passphraseExec again, not seal with the old data key.
		t.Errorf("instance D, created by the Admin Node Manager after group B's passphrase changed, does not start with the new passphrase: "+
			"the node manager sealed D's key with the group's old data key: %s", r)
	} else {
		await("instance D", 10*time.Second, func() (int, string) { return overTLSAt(tpD) })
		running = append(running, iD)
	}

	// The managedomain verbs that use the domain CA's key (here the one
	// that changes nothing: domain_csr) on the CA's host, the CA sealed:
	// refused without its passphrase (off a terminal), done with it.
	csr := filepath.Join(tmp, "domain.csr")
	wantClient(t, "managedomain --domain_csr without the CA's passphrase", h.Run("", "managedomain", "--domain_csr", "--csr_file", csr), 1, "Passphrase of the domain CA")
	wantClient(t, "managedomain --domain_csr with the CA's passphrase", h.Run("", "managedomain", "--domain_csr", "--csr_file", csr, "--ca_passphrase_file", fileCA), 0)
	if b, err := os.ReadFile(csr); err != nil || !strings.Contains(string(b), "CERTIFICATE REQUEST") {
		t.Errorf("the domain CA's request: %v %q", err, b)
	}

	// Another KPS backup, now that the group is sealed.
	wantClient(t, "kpsadmin backup after the passphrases", h.Run("", "kpsadmin", "backup", "-g", "Group A", "-n", "Server A"), 0, "written")

	// No secret in clear: every process seen since the passphrases were
	// set, every file of the install directory, and the command lines and
	// environments of the processes that run.
	w := stopWatching()
	for _, f := range w.found {
		t.Errorf("a process of the install directory: %s", f)
	}
	var seen []string
	for c := range w.seen {
		seen = append(seen, c)
	}
	sort.Strings(seen)
	if j := strings.Join(seen, "\n"); !strings.Contains(j, "nodemanager") || !strings.Contains(j, "startinstance") {
		t.Errorf("the watch of the processes saw neither a node manager nor startinstance: %v", seen)
	}
	t.Logf("%d processes of the install directory watched:\n%s", len(seen), strings.Join(seen, "\n"))
	found, markers = scan()
	for _, s := range secrets {
		if f := found[s.name]; len(f) > 0 {
			t.Errorf("%s is in clear in %v", s.name, f)
		}
	}
	if len(markers) > 0 {
		t.Errorf("files hold a PEM private key after the passphrases: %v", markers)
	}
	// Group A's key store holds the keys' ids and keyed hashes, never a
	// key (its -wal and -shm files were in the walk too).
	if db, err := os.ReadFile(filepath.Join(hh.GroupConfDir(gA), "kps", "kps.db")); err != nil {
		t.Errorf("group A's key store: %v", err)
	} else {
		for _, k := range []string{apiKey, apiKey2} {
			if bytes.Contains(db, []byte(k[15:])) {
				t.Errorf("group A's kps.db holds the API key %s…", k[:15])
			}
		}
	}
	procs = pids(t, hh, running)
	scanProcs(t, procs, secrets)
	t.Logf("%d secrets searched in %d processes and every file of %s; %v", len(secrets), len(procs), h.Dir, time.Since(started).Round(time.Millisecond))
}

// knownSecret is a secret searched for in clear.
type knownSecret struct {
	name  string
	value []byte
	file  bool // held by a secret file in clear before the passphrases: the control finds it
}

// nearExpiry re-signs the certificate of instance iid of group gid with
// the domain CA (its key still in clear), same key and names, expiring in
// d.
func nearExpiry(t *testing.T, h home.Home, gid, iid string, d time.Duration) {
	t.Helper()
	parse := func(path string) *pem.Block {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			t.Fatalf("%s: no PEM", path)
		}
		return blk
	}
	caCert, err := x509.ParseCertificate(parse(h.Path("groups", "certs", "domaincert.pem")).Bytes)
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := x509.ParsePKCS8PrivateKey(parse(h.Path("groups", "certs", "private", "domainkey.pem")).Bytes)
	if err != nil {
		t.Fatal(err)
	}
	certFile := filepath.Join(h.InstanceDir(gid, iid), "conf", "certs", "instance.pem")
	cur, err := x509.ParseCertificate(parse(certFile).Bytes)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := *cur
	tmpl.SerialNumber = new(big.Int).Add(cur.SerialNumber, big.NewInt(1))
	tmpl.NotAfter = time.Now().Add(d)
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, caCert, cur.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// pids are the processes of ids (node manager: "nodemanager") running in
// h, from their pid files; each must run.
func pids(t *testing.T, h home.Home, ids []string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, id := range ids {
		if id == "nodemanager" {
			m, _ := filepath.Glob(filepath.Join(h.RunDir(), "nodemanager-*.pid"))
			if len(m) != 1 {
				t.Fatalf("node manager pid files: %v", m)
			}
			id = strings.TrimSuffix(filepath.Base(m[0]), ".pid")
		}
		st, err := home.Probe(h.RunFiles(id))
		if err != nil || !st.Running || st.Record == nil {
			t.Fatalf("%s is not running (%v)", id, err)
		}
		out[id] = st.Record.PID
	}
	return out
}

// scanProcs checks that no secret is in the command line or environment of
// the processes, nor of their children.
func scanProcs(t *testing.T, procs map[string]int, secrets []knownSecret) {
	t.Helper()
	all := map[int]string{}
	for id, pid := range procs {
		all[pid] = id
		for _, c := range children(pid) {
			all[c] = id + "'s child"
		}
	}
	for pid, id := range all {
		found, err := procFindings(pid, secrets)
		if err != nil {
			t.Errorf("%s: %v", id, err)
		}
		for _, f := range found {
			t.Errorf("%s: %s", id, f)
		}
	}
}

// procFindings says which secrets /proc/<pid>/cmdline and environ hold
// (and the generic markers: a PEM private key, a "passphrase " as the
// test's passphrases all have).
func procFindings(pid int, secrets []knownSecret) ([]string, error) {
	var out []string
	for _, f := range []string{"cmdline", "environ"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, f))
		if err != nil {
			return out, err
		}
		if len(b) == 0 && f == "cmdline" {
			return out, fmt.Errorf("/proc/%d/cmdline is empty (a zombie?)", pid)
		}
		for _, s := range secrets {
			if bytes.Contains(b, s.value) {
				out = append(out, fmt.Sprintf("/proc/%d/%s holds %s", pid, f, s.name))
			}
		}
		if bytes.Contains(b, []byte("PRIVATE KEY")) || bytes.Contains(b, []byte("passphrase ")) {
			out = append(out, fmt.Sprintf("/proc/%d/%s: %q", pid, f, b))
		}
	}
	return out, nil
}

// watchProcs samples, every few milliseconds until stop is closed, every
// process whose environment names install directory dir (GATEHOUSE_HOME:
// the tools, the instances, the node manager and what it runs, the
// passphraseExec program included), short-lived ones too, and reports what
// procFindings found and how many processes it saw.
func watchProcs(dir string, secrets func() []knownSecret, stop <-chan struct{}) <-chan procWatch {
	res := make(chan procWatch, 1)
	go func() {
		w := procWatch{seen: map[string]bool{}}
		mark := []byte("GATEHOUSE_HOME=" + dir + "\x00")
		for {
			ents, _ := os.ReadDir("/proc")
			for _, e := range ents {
				pid, err := strconv.Atoi(e.Name())
				if err != nil || pid == os.Getpid() {
					continue
				}
				env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
				if err != nil || !bytes.Contains(env, mark) {
					continue
				}
				cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				w.seen[fmt.Sprintf("%d %s", pid, bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}))] = true
				found, _ := procFindings(pid, secrets())
				w.found = append(w.found, found...)
			}
			select {
			case <-stop:
				res <- w
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	return res
}

type procWatch struct {
	seen  map[string]bool // "pid command line"
	found []string
}

// children lists the descendants of pid (from /proc/*/stat).
func children(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 {
			pp, _ := strconv.Atoi(f[1])
			parent[p] = pp
		}
	}
	var out []int
	var walk func(int)
	walk = func(q int) {
		for c, pp := range parent {
			if pp == q {
				out = append(out, c)
				walk(c)
			}
		}
	}
	walk(pid)
	return out
}

// treeDigests maps each regular file under dir (relative) to its content's
// digest and mode.
func treeDigests(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		fi, _ := d.Info()
		rel, _ := filepath.Rel(dir, p)
		out[rel] = fmt.Sprintf("%x %v", sha256.Sum256(b), fi.Mode())
		return nil
	})
	return out
}

// startPTY runs gatehouse args with a pseudo-terminal as its standard
// input, output and error, types passphrase once it asks for it, and fails
// the test unless it exits 0; the terminal must not show the passphrase.
func startPTY(t *testing.T, h *gwtest.Home, passphrase string, args ...string) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	defer m.Close()
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	cmd := h.Command(t.Context(), "", args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s, s, s
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	var mu sync.Mutex
	var shown bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		typed := false
		for {
			k, err := m.Read(buf)
			mu.Lock()
			shown.Write(buf[:k])
			ask := !typed && strings.Contains(shown.String(), "Passphrase of the")
			mu.Unlock()
			if ask {
				typed = true
				// Typed once the terminal no longer echoes (the master
				// reads the terminal's settings).
				for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
					if tio, err := unix.IoctlGetTermios(int(m.Fd()), unix.TCGETS); err == nil && tio.Lflag&unix.ECHO == 0 {
						break
					}
				}
				m.Write([]byte(passphrase + "\r"))
			}
			if err != nil {
				return
			}
		}
	}()
	werr := cmd.Wait()
	m.SetReadDeadline(time.Now().Add(2 * time.Second))
	select {
	case <-done:
	case <-time.After(3 * time.Second):
	}
	mu.Lock()
	out := shown.String()
	mu.Unlock()
	if werr != nil {
		t.Fatalf("%v under a pseudo-terminal: %v\n%s", args, werr, out)
	}
	if !strings.Contains(out, "Passphrase of the") {
		t.Errorf("%v: no prompt on the terminal: %q", args, out)
	}
	if strings.Contains(out, passphrase) {
		t.Errorf("%v: the terminal shows the passphrase", args)
	}
}
