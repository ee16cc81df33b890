package tools

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

var clientTool = Tool{
	Name: "client", Summary: "talk to the management API: login, topology, start/stop/status, users, audit",
	Run: runClient,
}

const clientHelp = `usage: gatehouse client [OPTIONS] VERB [ARGS...]

Talks to an Admin Node Manager's management API (docs/client.md).

verbs:
  login                          log in (POST /api/rbac/login) and keep the session
  logout                         end the session and remove the session file
  topology                       the domain: groups, instances and their states
  start|stop|status GROUP SERVICE  start, stop or ask the state of an instance
  users                          the management users and their roles
  audit [--limit N] [--user U] [--action A]  the domain audit log

options (before or after the verb):
  --url URL                      the API, default https://localhost:8090/api (or the logged-in one)
  --cacert FILE                  the domain CA (default $GATEHOUSE_HOME/groups/certs/domaincert.pem when present)
  --username U                   the user (login; other verbs use HTTP Basic with it instead of the session)
  --password-file F              read the password from F (first line); otherwise a prompt without echo,
                                 or one line of stdin when stdin is not a terminal
  --insecure-skip-tls-verify     do not verify the server's certificate (never stored)
  --json                         print the raw result as JSON
  --help                         this help

The session (cookie and CSRF token) is kept in $XDG_CONFIG_HOME/gatehouse/session.json
(default ~/.config/gatehouse/session.json), mode 0600.`

const defaultClientURL = "https://localhost:8090/api"

type clientOpts struct {
	url, cacert, username, passwordFile string
	insecure, json                      bool
	limit, user, action                 string
}

type clientSession struct {
	URL       string `json:"url"`
	CACert    string `json:"cacert,omitempty"`
	User      string `json:"user"`
	Cookie    string `json:"cookie"`
	CSRFToken string `json:"csrfToken"`
	Expires   string `json:"expires,omitempty"`
}

func runClient(ctx context.Context, env *Env, args []string) error {
	var o clientOpts
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--help" || a == "-h" || a == "help" {
			fmt.Fprintln(env.Stdout, clientHelp)
			return nil
		}
		if !strings.HasPrefix(a, "--") {
			pos = append(pos, a)
			continue
		}
		name, val, hasVal := strings.Cut(a[2:], "=")
		switch name {
		case "insecure-skip-tls-verify", "json":
			if hasVal {
				return usagef("client", "--%s takes no value", name)
			}
			if name == "json" {
				o.json = true
			} else {
				o.insecure = true
			}
			continue
		}
		var dst *string
		switch name {
		case "url":
			dst = &o.url
		case "cacert":
			dst = &o.cacert
		case "username":
			dst = &o.username
		case "password-file":
			dst = &o.passwordFile
		case "limit":
			dst = &o.limit
		case "user":
			dst = &o.user
		case "action":
			dst = &o.action
		default:
			return usagef("client", "unknown option %s", a)
		}
		if !hasVal {
			if i+1 >= len(args) {
				return usagef("client", "%s needs a value", a)
			}
			i++
			val = args[i]
		}
		*dst = val
	}
	if len(pos) == 0 {
		return usagef("client", "want a verb: login, logout, topology, start, stop, status, users, audit")
	}
	verb, rest := pos[0], pos[1:]
	nargs := map[string]int{"login": 0, "logout": 0, "topology": 0, "users": 0, "audit": 0, "start": 2, "stop": 2, "status": 2}
	n, ok := nargs[verb]
	if !ok {
		return usagef("client", "unknown verb %q; accepted: login, logout, topology, start, stop, status, users, audit", verb)
	}
	if len(rest) != n {
		if n == 0 {
			return usagef("client", "%s takes no arguments, got %q", verb, rest)
		}
		return usagef("client", "%s wants GROUP_ID SERVICE_ID", verb)
	}
	if verb != "audit" && (o.limit != "" || o.user != "" || o.action != "") {
		return usagef("client", "--limit, --user and --action are for audit only")
	}
	c, err := newAPIClient(env, &o, verb == "login")
	if err != nil {
		return err
	}
	switch verb {
	case "login":
		return c.login(ctx)
	case "logout":
		return c.logout(ctx)
	case "topology":
		return c.topology(ctx)
	case "start", "stop", "status":
		return c.manage(ctx, verb, rest[0], rest[1])
	case "users":
		return c.users(ctx)
	case "audit":
		return c.audit(ctx)
	}
	return nil
}

// sessionFile is where the session is kept.
func sessionFile() (string, error) {
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("cannot find where to keep the session: %w (set XDG_CONFIG_HOME)", err)
		}
		dir = filepath.Join(h, ".config")
	}
	return filepath.Join(dir, "gatehouse", "session.json"), nil
}

func loadSession() (*clientSession, string, error) {
	p, err := sessionFile()
	if err != nil {
		return nil, "", err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, p, nil
	}
	if err != nil {
		return nil, p, err
	}
	var s clientSession
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, p, fmt.Errorf("session file %s: %w (remove it and log in again)", p, err)
	}
	return &s, p, nil
}

func saveSession(p string, s *clientSession) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(s, "", "  ")
	return home.WriteFileAtomic(p, append(b, '\n'), 0o600)
}

type apiClient struct {
	env      *Env
	o        *clientOpts
	base     string
	http     *http.Client
	sess     *clientSession // nil: HTTP Basic with o.username
	sessPath string
	password secret.Value
}

func newAPIClient(env *Env, o *clientOpts, login bool) (*apiClient, error) {
	sess, sp, err := loadSession()
	if err != nil {
		return nil, err
	}
	c := &apiClient{env: env, o: o, sessPath: sp}
	c.base = o.url
	if c.base == "" && sess != nil {
		c.base = sess.URL
	}
	if c.base == "" {
		c.base = defaultClientURL
	}
	c.base = strings.TrimRight(c.base, "/")
	u, err := url.Parse(c.base)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, usagef("client", "--url %q is not an http(s) URL like %s", c.base, defaultClientURL)
	}
	if !login && o.username == "" {
		if sess == nil || sess.URL != c.base {
			return nil, fmt.Errorf("not logged in to %s: run gatehouse client login --url %s --username USER (or pass --username for HTTP Basic)", c.base, c.base)
		}
		c.sess = sess
	}
	cacert := o.cacert
	if cacert == "" && c.sess != nil {
		cacert = c.sess.CACert
	}
	if cacert == "" {
		if h, err := home.Resolve(); err == nil {
			if p := h.Path("groups", "certs", "domaincert.pem"); fileExists(p) {
				cacert = p
			}
		}
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.insecure {
		tc.InsecureSkipVerify = true
		fmt.Fprintf(env.Stderr, "client: warning: --insecure-skip-tls-verify: the server's certificate is not checked\n")
	} else if cacert != "" {
		pem, err := os.ReadFile(cacert)
		if err != nil {
			return nil, fmt.Errorf("--cacert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--cacert %s: no PEM certificate in it", cacert)
		}
		tc.RootCAs = pool
		if abs, err := filepath.Abs(cacert); err == nil {
			cacert = abs
		}
		o.cacert = cacert
	}
	tr := &http.Transport{TLSClientConfig: tc, Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true,
		DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext, TLSHandshakeTimeout: 10 * time.Second}
	c.http = &http.Client{Transport: tr, Timeout: 2 * time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if login || c.sess == nil {
		if o.username == "" {
			return nil, usagef("client", "login wants --username")
		}
		pw, err := readClientPassword(env, o)
		if err != nil {
			return nil, err
		}
		c.password = pw
	}
	return c, nil
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func readClientPassword(env *Env, o *clientOpts) (secret.Value, error) {
	if o.passwordFile != "" {
		b, err := os.ReadFile(o.passwordFile)
		if err != nil {
			return secret.Value{}, fmt.Errorf("--password-file: %w", err)
		}
		line, _, _ := bytes.Cut(b, []byte("\n"))
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			return secret.Value{}, fmt.Errorf("--password-file %s: empty first line", o.passwordFile)
		}
		return secret.New(line), nil
	}
	if f, ok := env.Stdin.(*os.File); ok && isTerminal(f) {
		fmt.Fprintf(env.Stderr, "Password for %s: ", o.username)
		pw, err := readPasswordNoEcho(f)
		fmt.Fprintln(env.Stderr)
		if err != nil {
			return secret.Value{}, fmt.Errorf("reading the password: %w", err)
		}
		return pw, nil
	}
	line, err := bufio.NewReader(env.Stdin).ReadString('\n')
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		if err != nil && err != io.EOF {
			return secret.Value{}, fmt.Errorf("reading the password from stdin: %w", err)
		}
		return secret.Value{}, errors.New("no password: give it on stdin (one line), at the prompt, or with --password-file")
	}
	return secret.FromString(line), nil
}
