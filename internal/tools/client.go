package tools

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/gatehouse-gw/gatehouse/internal/apiclient"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

var clientTool = Tool{
	Name: "client", Summary: "talk to the management API: login, topology, host/group/instance create, start/stop/status, users, audit, deployments, client applications and API keys",
	Linked: true,
	Run:    runClient,
}

const clientGlobalOptions = `options (before or after the verb):
  --url URL                      the API, default https://localhost:8090/api (or the logged-in one)
  --cacert FILE                  the domain CA (default $GATEHOUSE_HOME/groups/certs/domaincert.pem when present)
  --username U                   the user (login; other verbs use HTTP Basic with it instead of the session)
  --password-file F              read U's password from F (first line); otherwise a prompt without echo,
                                 or one line of stdin when stdin is not a terminal
  --insecure-skip-tls-verify     do not verify the server's certificate (never stored)
  --json                         print the API's result as JSON
  --help                         this help; VERB --help: the help of one verb`

const defaultClientURL = "https://localhost:8090/api"

// clientVerb is one verb of gatehouse client. Nouns with actions
// ("host create") are verbs of two words.
type clientVerb struct {
	name     string   // "topology", "host create"
	args     []string // positional arguments, all required
	opts     []string // the verb's own options (clientOptions), besides the global ones
	required []string // the options of opts that must be given (deploy's -g GROUP)
	api      string   // the API call, for the help
	summary  string
	help     string // more lines for VERB --help
	run      func(ctx context.Context, c *apiClient, args []string) error
}

// clientVerbs is every verb, in the order the help lists them. Verbs that
// change the topology take --version N (sent as If-Match); user changes
// have no version in the API.
var clientVerbs = []clientVerb{
	{name: "login", api: "POST /api/rbac/login", summary: "log in and keep the session (needs --username)",
		run: func(ctx context.Context, c *apiClient, _ []string) error { return c.login(ctx) }},
	{name: "logout", api: "POST /api/rbac/logout", summary: "end the session and remove the session file",
		run: func(ctx context.Context, c *apiClient, _ []string) error { return c.logout(ctx) }},
	{name: "topology", api: "GET /api/topology", summary: "the domain: hosts, groups, instances, ports and states",
		run: func(ctx context.Context, c *apiClient, _ []string) error { return c.topology(ctx) }},
	{name: "host create", args: []string{"NAME"}, opts: []string{"version"}, api: "POST /api/topology/hosts",
		summary: "register a host in the topology by name (a host with a node manager joins with managedomain -a on it)",
		run:     func(ctx context.Context, c *apiClient, a []string) error { return c.hostCreate(ctx, a[0]) }},
	{name: "host rename", args: []string{"HOST", "NAME"}, opts: []string{"version"}, api: "PUT /api/topology/hosts/{hostID}",
		summary: "give a host another name",
		run:     func(ctx context.Context, c *apiClient, a []string) error { return c.hostRename(ctx, a[0], a[1]) }},
	{name: "host delete", args: []string{"HOST"}, opts: []string{"version"}, api: "DELETE /api/topology/hosts/{hostID}",
		summary: "remove a host without services (never the ANM's own host)",
		run: func(ctx context.Context, c *apiClient, a []string) error {
			return c.topologyDelete(ctx, "host", "/topology/hosts/"+url.PathEscape(a[0]), a[0])
		}},
	{name: "group create", args: []string{"NAME"}, opts: []string{"version"}, api: "POST /api/topology/groups",
		summary: "create a group",
		run:     func(ctx context.Context, c *apiClient, a []string) error { return c.groupCreate(ctx, a[0]) }},
	{name: "group delete", args: []string{"GROUP"}, opts: []string{"version"}, api: "DELETE /api/topology/groups/{groupID}",
		summary: "delete a group (refused while one of its instances runs)",
		run: func(ctx context.Context, c *apiClient, a []string) error {
			return c.topologyDelete(ctx, "group", "/topology/groups/"+url.PathEscape(a[0]), a[0])
		}},
	{name: "instance create", args: []string{"GROUP", "NAME"}, opts: []string{"host", "traffic-port", "management-port", "version"},
		api: "POST /api/topology/services/{groupID}", summary: "create a gateway instance in a group",
		help: "--host HOST                    the host (id or name) (default: the Admin Node Manager's host; another host's node\n" +
			"                               manager creates it there)\n" +
			"--traffic-port N               the traffic port (default: the host's lowest free from 8080)\n" +
			"--management-port N            the instance's management port (default: the lowest free from 8085)",
		run: func(ctx context.Context, c *apiClient, a []string) error { return c.instanceCreate(ctx, a[0], a[1]) }},
	{name: "instance delete", args: []string{"GROUP", "INSTANCE"}, opts: []string{"version"}, api: "DELETE /api/topology/services/{groupID}/{serviceID}",
		summary: "delete a gateway instance (refused while it runs)",
		run: func(ctx context.Context, c *apiClient, a []string) error {
			return c.topologyDelete(ctx, "instance", "/topology/services/"+url.PathEscape(a[0])+"/"+url.PathEscape(a[1]), a[1])
		}},
	{name: "start", args: []string{"GROUP", "INSTANCE"}, api: "POST /api/management/start/{groupID}/{serviceID}",
		summary: "start an instance (returns when it is running or failed)",
		run:     func(ctx context.Context, c *apiClient, a []string) error { return c.manage(ctx, "start", a[0], a[1]) }},
	{name: "stop", args: []string{"GROUP", "INSTANCE"}, api: "POST /api/management/stop/{groupID}/{serviceID}",
		summary: "stop an instance",
		run:     func(ctx context.Context, c *apiClient, a []string) error { return c.manage(ctx, "stop", a[0], a[1]) }},
	{name: "status", args: []string{"[GROUP]", "[INSTANCE]"}, api: "POST /api/management/status/{groupID}/{serviceID}; GET /api/backup/status",
		summary: "the state of an instance; without arguments, every host's scheduled backups",
		help: "GROUP INSTANCE                 the instance's process state, health and load-balancer state\n" +
			"(none)                         each host's scheduled backups: schedule, next run, last success and\n" +
			"                               failure; exit 1 when a host's last run failed or its node manager\n" +
			"                               does not answer",
		run: func(ctx context.Context, c *apiClient, a []string) error {
			switch len(a) {
			case 0:
				return c.backupStatus(ctx)
			case 1:
				return usagef("client", "status wants GROUP and INSTANCE, or no argument (every host's scheduled backups)")
			}
			return c.manage(ctx, "status", a[0], a[1])
		}},
	{name: "users", api: "GET /api/rbac/users", summary: "the management users and their roles",
		run: func(ctx context.Context, c *apiClient, _ []string) error { return c.users(ctx) }},
	{name: "user create", args: []string{"NAME"}, opts: []string{"role", "new-password-file"}, api: "POST /api/rbac/users",
		summary: "create a management user with one or more roles",
		help: "--role ROLE                    a role of conf/acl.json, e.g. \"API Server Operator\"; repeat for several (required)\n" +
			"--new-password-file F          the new user's password is the first line of F; otherwise a prompt\n" +
			"                               (twice, without echo), or the next line of stdin",
		run: func(ctx context.Context, c *apiClient, a []string) error { return c.userCreate(ctx, a[0]) }},
	{name: "user update", args: []string{"NAME"}, opts: []string{"role", "new-password-file", "new-password"}, api: "PUT /api/rbac/users/{name}",
		summary: "replace a user's roles, set a new password, or both",
		help: "--role ROLE                    the user's roles become exactly the ones given (repeat for several)\n" +
			"--new-password-file F          a new password from the first line of F\n" +
			"--new-password                 a new password from a prompt (twice, without echo) or the next line of stdin",
		run: func(ctx context.Context, c *apiClient, a []string) error { return c.userUpdate(ctx, a[0]) }},
	{name: "user delete", args: []string{"NAME"}, api: "DELETE /api/rbac/users/{name}",
		summary: "delete a management user (never the last administrator)",
		run:     func(ctx context.Context, c *apiClient, a []string) error { return c.userDelete(ctx, a[0]) }},
	{name: "audit", opts: []string{"limit", "user", "action"}, api: "GET /api/audit",
		summary: "the domain audit log, newest first, and whether its hash chain verifies",
		help: "--limit N                      at most N entries\n" +
			"--user U                       entries of user U\n" +
			"--action A                     entries whose action contains A (e.g. instance, user, group)",
		run: func(ctx context.Context, c *apiClient, _ []string) error { return c.audit(ctx) }},
}

// clientNouns are the first words of the verbs of two words.
var clientNouns = map[string]bool{"host": true, "group": true, "instance": true, "user": true}

func (v *clientVerb) usage() string {
	s := "gatehouse client [OPTIONS] " + v.name
	for _, o := range v.required {
		s += " " + optSpelling(o) + " " + clientOptionArg[o]
	}
	for _, a := range v.args {
		s += " " + a
	}
	for _, o := range v.opts {
		spelled := optSpelling(o)
		if slices.Contains(v.required, o) {
			continue
		}
		switch clientOptions[o] {
		case optBool:
			s += " [--" + o + "]"
		case optRepeat:
			s += " [--" + o + " " + clientOptionArg[o] + "]..."
		default:
			s += " [" + spelled + " " + clientOptionArg[o] + "]"
		}
	}
	return s
}

func (v *clientVerb) fullHelp() string {
	var b strings.Builder
	fmt.Fprintf(&b, "usage: %s\n\n%s (%s).\n", v.usage(), v.summary, v.api)
	help := v.help
	if slices.Contains(v.opts, "version") {
		help = strings.TrimPrefix(help+"\n", "\n") + "--version N                    change only if the topology is still at version N (sent as If-Match;\n" +
			"                               a 409 says it changed: gatehouse client topology shows the version)"
	}
	if help != "" {
		fmt.Fprintf(&b, "\n%s options:\n  %s\n", v.name, strings.ReplaceAll(help, "\n", "\n  "))
	}
	fmt.Fprintf(&b, "\n%s", clientGlobalOptions)
	return b.String()
}

func clientHelp() string {
	var b strings.Builder
	b.WriteString("usage: gatehouse client [OPTIONS] VERB [ARGS...]\n\nTalks to an Admin Node Manager's management API (docs/client.md).\n\nverbs:\n")
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for i := range clientVerbs {
		v := &clientVerbs[i]
		fmt.Fprintf(tw, "  %s\t%s\n", strings.TrimSpace(v.name+" "+strings.Join(v.args, " ")), v.summary)
	}
	tw.Flush()
	b.WriteString("\n" + clientGlobalOptions + "\n\ngatehouse client VERB --help shows a verb's own options.\n" +
		"The session (cookie and CSRF token) is kept in $XDG_CONFIG_HOME/gatehouse/session.json\n(default ~/.config/gatehouse/session.json), mode 0600.")
	return b.String()
}

type optKind int

const (
	optString optKind = iota
	optBool
	optRepeat
)

// clientOptions is every option of the client; those not in
// clientGlobal belong to the verbs that list them.
var clientOptions = map[string]optKind{
	"url": optString, "cacert": optString, "username": optString, "password-file": optString,
	"insecure-skip-tls-verify": optBool, "json": optBool,
	"limit": optString, "user": optString, "action": optString,
	"version": optString, "host": optString, "traffic-port": optString, "management-port": optString,
	"role": optRepeat, "new-password-file": optString, "new-password": optBool,
}

var clientOptionArg = map[string]string{
	"limit": "N", "user": "U", "action": "A", "version": "N", "host": "HOST_ID", "traffic-port": "N",
	"management-port": "N", "role": "ROLE", "new-password-file": "F",
}

// clientShort are the one-letter spellings of options (the deployment
// verbs' -g GROUP and -o FILE, as the vendor's tools spell them).
var clientShort = map[string]string{"-g": "group", "-o": "output"}

// optSpelling is how the help spells option o: its short form when it has one.
func optSpelling(o string) string {
	for short, long := range clientShort {
		if long == o {
			return short
		}
	}
	return "--" + o
}

var clientGlobal = map[string]bool{"url": true, "cacert": true, "username": true, "password-file": true, "insecure-skip-tls-verify": true, "json": true}

type clientOpts struct {
	url, cacert, username, passwordFile string
	insecure, json                      bool
	limit, user, action                 string
	version                             int64 // --version: If-Match on topology changes; 0: none
	host                                string
	trafficPort, managementPort         int
	roles                               []string
	newPasswordFile                     string
	newPassword                         bool
	stdin                               *bufio.Reader // the one reader of the lines of stdin (passwords)
	// password is --username's password when the caller already has it
	// (managedomain --deploy); zero: newAPIClient reads it.
	password   secret.Value
	deployOpts // the deployment verbs' options (client_deploy.go)
	appsOpts   // the apps and keys verbs' options (client_apps.go)
}

// clientSession is the session kept in the session file.
type clientSession = apiclient.Session

// findClientVerb returns the verb that pos starts with and the rest of
// pos, or a usage error naming what is accepted.
func findClientVerb(pos []string) (*clientVerb, []string, error) {
	if len(pos) == 0 {
		return nil, nil, usagef("client", "want a verb: %s", verbList(""))
	}
	name, n := pos[0], 1
	if clientNouns[pos[0]] {
		if len(pos) < 2 {
			return nil, nil, usagef("client", "%s wants one of: %s", pos[0], verbList(pos[0]))
		}
		name, n = pos[0]+" "+pos[1], 2
	}
	for i := range clientVerbs {
		if clientVerbs[i].name == name {
			return &clientVerbs[i], pos[n:], nil
		}
	}
	if clientNouns[pos[0]] {
		return nil, nil, usagef("client", "unknown verb %q; %s takes: %s", name, pos[0], verbList(pos[0]))
	}
	return nil, nil, usagef("client", "unknown verb %q; accepted: %s", name, verbList(""))
}

// verbList names the verbs, or the actions of noun.
func verbList(noun string) string {
	var out []string
	for _, v := range clientVerbs {
		first, rest, two := strings.Cut(v.name, " ")
		switch {
		case noun != "" && two && first == noun:
			out = append(out, rest)
		case noun == "" && !two:
			out = append(out, v.name)
		case noun == "" && two && !slices.Contains(out, first+" …"):
			out = append(out, first+" …")
		}
	}
	return strings.Join(out, ", ")
}

// parseClientArgs splits args into options and positional arguments.
// help is true when --help, -h or help was given; the parsing stops there.
func parseClientArgs(args []string) (vals map[string][]string, pos []string, help bool, err error) {
	vals = map[string][]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--help" || a == "-h" || (a == "help" && len(pos) == 0) {
			// The verb may follow: gatehouse client help host create.
			for _, r := range args[i+1:] {
				if !strings.HasPrefix(r, "-") {
					pos = append(pos, r)
				}
			}
			return vals, pos, true, nil
		}
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if long, ok := clientShort[a]; ok {
			a = "--" + long
		}
		if !strings.HasPrefix(a, "--") || a == "-" {
			pos = append(pos, a)
			continue
		}
		name, val, hasVal := strings.Cut(a[2:], "=")
		kind, ok := clientOptions[name]
		if !ok {
			return nil, nil, false, usagef("client", "unknown option %s", a)
		}
		if kind == optBool {
			if hasVal {
				return nil, nil, false, usagef("client", "--%s takes no value", name)
			}
			vals[name] = append(vals[name], "")
			continue
		}
		if !hasVal {
			if i+1 >= len(args) {
				return nil, nil, false, usagef("client", "%s needs a value", a)
			}
			i++
			val = args[i]
		}
		if kind == optString && len(vals[name]) > 0 {
			return nil, nil, false, usagef("client", "--%s is given twice", name)
		}
		vals[name] = append(vals[name], val)
	}
	return vals, pos, false, nil
}

func runClient(ctx context.Context, env *Env, args []string) error {
	vals, pos, help, err := parseClientArgs(args)
	if err != nil {
		return err
	}
	if help {
		if v, _, err := findClientVerb(pos); err == nil {
			fmt.Fprintln(env.Stdout, v.fullHelp())
		} else {
			fmt.Fprintln(env.Stdout, clientHelp())
		}
		return nil
	}
	verb, rest, err := findClientVerb(pos)
	if err != nil {
		return err
	}
	required := 0 // arguments in brackets ("[FILE]") are optional, at the end
	for _, a := range verb.args {
		if !strings.HasPrefix(a, "[") {
			required++
		}
	}
	if len(rest) < required || len(rest) > len(verb.args) {
		if len(verb.args) == 0 {
			return usagef("client", "%s takes no arguments, got %q", verb.name, rest)
		}
		return usagef("client", "%s wants %s, got %d argument(s); usage: %s", verb.name, strings.Join(verb.args, " "), len(rest), verb.usage())
	}
	o, err := clientOptsFrom(verb, vals)
	if err != nil {
		return err
	}
	c, err := newAPIClient(env, o, verb.name == "login")
	if err != nil {
		return err
	}
	if rest, err = c.resolveArgs(ctx, verb, rest); err != nil {
		return err
	}
	return verb.run(ctx, c, rest)
}

// clientOptsFrom checks that every option given belongs to verb and turns
// the values into clientOpts.
func clientOptsFrom(verb *clientVerb, vals map[string][]string) (*clientOpts, error) {
	names := make([]string, 0, len(vals))
	for name := range vals {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if clientGlobal[name] || slices.Contains(verb.opts, name) {
			continue
		}
		var by []string
		for _, v := range clientVerbs {
			if slices.Contains(v.opts, name) {
				by = append(by, v.name)
			}
		}
		return nil, usagef("client", "--%s is not an option of %s; it is for: %s", name, verb.name, strings.Join(by, ", "))
	}
	for _, name := range verb.required {
		if vals[name] == nil {
			return nil, usagef("client", "%s wants %s %s; usage: %s", verb.name, optSpelling(name), clientOptionArg[name], verb.usage())
		}
	}
	one := func(name string) string {
		if v := vals[name]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	o := &clientOpts{
		url: one("url"), cacert: one("cacert"), username: one("username"), passwordFile: one("password-file"),
		insecure: vals["insecure-skip-tls-verify"] != nil, json: vals["json"] != nil,
		limit: one("limit"), user: one("user"), action: one("action"),
		host: one("host"), roles: vals["role"], newPasswordFile: one("new-password-file"), newPassword: vals["new-password"] != nil,
	}
	if s := one("version"); s != "" {
		v, err := strconv.ParseInt(strings.Trim(s, `"`), 10, 64)
		if err != nil || v < 1 {
			return nil, usagef("client", "--version %q: want the topology version, a positive integer (gatehouse client topology shows it)", s)
		}
		o.version = v
	}
	for _, p := range []struct {
		name string
		dst  *int
	}{{"traffic-port", &o.trafficPort}, {"management-port", &o.managementPort}} {
		if s := one(p.name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > 65535 {
				return nil, usagef("client", "--%s %q: want a port, 1 to 65535", p.name, s)
			}
			*p.dst = n
		}
	}
	if o.limit != "" {
		if n, err := strconv.Atoi(o.limit); err != nil || n < 1 {
			return nil, usagef("client", "--limit %q: want a positive integer", o.limit)
		}
	}
	if err := deployOptsFrom(verb, o, vals); err != nil {
		return nil, err
	}
	if err := appsOptsFrom(verb, o, vals); err != nil {
		return nil, err
	}
	if o.passwordFile != "" && o.username == "" {
		hint := ""
		if slices.Contains(verb.opts, "new-password-file") {
			hint = "; the password of the user being changed is --new-password-file"
		}
		return nil, usagef("client", "--password-file is the password of --username, and no --username is given%s", hint)
	}
	switch verb.name {
	case "user create":
		if len(o.roles) == 0 {
			return nil, usagef("client", "user create wants at least one --role ROLE (e.g. --role \"API Server Operator\")")
		}
	case "user update":
		if len(o.roles) == 0 && o.newPasswordFile == "" && !o.newPassword {
			return nil, usagef("client", "user update wants --role ROLE (repeatable), --new-password-file F or --new-password")
		}
		if o.newPasswordFile != "" && o.newPassword {
			return nil, usagef("client", "give --new-password-file or --new-password, not both")
		}
	}
	return o, nil
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
	api      *apiclient.Client // Session nil: HTTP Basic with o.username
	sessPath string
}

func newAPIClient(env *Env, o *clientOpts, login bool) (*apiClient, error) {
	sess, sp, err := loadSession()
	if err != nil {
		return nil, err
	}
	c := &apiClient{env: env, o: o, sessPath: sp, api: &apiclient.Client{Username: o.username}}
	base := o.url
	if base == "" && sess != nil {
		base = sess.URL
	}
	if base == "" {
		base = defaultClientURL
	}
	base = strings.TrimRight(base, "/")
	c.api.Base = base
	u, err := url.Parse(base)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, usagef("client", "--url %q is not an http(s) URL like %s", base, defaultClientURL)
	}
	if !login && o.username == "" {
		if sess == nil || sess.URL != base {
			return nil, fmt.Errorf("not logged in to %s: run gatehouse client login --url %s --username USER (or pass --username for HTTP Basic)", base, base)
		}
		c.api.Session = sess
		c.api.SessionRenewed = func(s *apiclient.Session) { _ = saveSession(c.sessPath, s) }
	}
	cacert := o.cacert
	if cacert == "" && c.api.Session != nil {
		cacert = c.api.Session.CACert
	}
	if cacert == "" {
		if h, err := home.Resolve(); err == nil {
			if p := h.Path("groups", "certs", "domaincert.pem"); fileExists(p) {
				cacert = p
			}
		}
	}
	if o.insecure {
		fmt.Fprintf(env.Stderr, "client: warning: --insecure-skip-tls-verify: the server's certificate is not checked\n")
	}
	tc, abs, err := apiclient.TLSConfig(cacert, o.insecure)
	if err != nil {
		return nil, fmt.Errorf("--cacert: %w", err)
	}
	if !o.insecure && abs != "" {
		o.cacert = abs
	}
	c.api.HTTP = apiclient.NewHTTPClient(tc)
	if login || c.api.Session == nil {
		if o.username == "" {
			return nil, usagef("client", "login wants --username")
		}
		pw := o.password
		if pw.IsZero() {
			if pw, err = readClientPassword(env, o); err != nil {
				return nil, err
			}
		}
		c.api.Password = pw
	}
	return c, nil
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func readClientPassword(env *Env, o *clientOpts) (secret.Value, error) {
	return readPassword(env, o, o.passwordFile, "--password-file", "Password for "+o.username+": ", false)
}

// readNewPassword is the password of a user being created or changed:
// from --new-password-file, else a prompt twice without echo, else the
// next line of stdin.
func readNewPassword(env *Env, o *clientOpts, user string) (secret.Value, error) {
	return readPassword(env, o, o.newPasswordFile, "--new-password-file", "New password for "+user+": ", true)
}

// readPassword reads a password from file (the first line), else from the
// terminal without echo (twice when confirm), else as the next line of
// stdin. Lines of stdin are read through one reader, so that the caller's
// password and a new user's can both come from it, one line each.
func readPassword(env *Env, o *clientOpts, file, fileOpt, prompt string, confirm bool) (secret.Value, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return secret.Value{}, fmt.Errorf("%s: %w", fileOpt, err)
		}
		line, _, _ := bytes.Cut(b, []byte("\n"))
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			return secret.Value{}, fmt.Errorf("%s %s: empty first line", fileOpt, file)
		}
		return secret.New(line), nil
	}
	if f, ok := env.Stdin.(*os.File); ok && isTerminal(f) {
		fmt.Fprint(env.Stderr, prompt)
		pw, err := readPasswordNoEcho(f)
		fmt.Fprintln(env.Stderr)
		if err != nil {
			return secret.Value{}, fmt.Errorf("reading the password: %w", err)
		}
		if confirm {
			fmt.Fprint(env.Stderr, "Again: ")
			again, err := readPasswordNoEcho(f)
			fmt.Fprintln(env.Stderr)
			if err != nil {
				return secret.Value{}, fmt.Errorf("reading the password: %w", err)
			}
			if !pw.Equal(again) {
				return secret.Value{}, errors.New("the two passwords differ; nothing was changed")
			}
		}
		return pw, nil
	}
	if o.stdin == nil {
		o.stdin = bufio.NewReader(env.Stdin)
	}
	line, err := o.stdin.ReadString('\n')
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		if err != nil && err != io.EOF {
			return secret.Value{}, fmt.Errorf("reading the password from stdin: %w", err)
		}
		return secret.Value{}, fmt.Errorf("no password: give it on stdin (one line), at the prompt, or with %s", fileOpt)
	}
	return secret.FromString(line), nil
}
