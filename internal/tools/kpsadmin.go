package tools

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/apps"
	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// kpsadmin administers a group's Key Property Store on this host, as the
// vendor's tool does: it reads the instance's configuration from the
// install directory (the kps section, as startinstance loads it) and opens
// the store with apps.OpenGroupStore, as the instances do. It takes no
// credentials: it works on this host's files (the embedded store is a file
// under groups/<group-id>/conf/kps/), so the install directory's
// permissions are its access control. docs/kpsadmin.md is the operator's
// page.
//
// Two faces over one table of verbs (kpsVerbs): command mode (kpsadmin VERB
// [OPTIONS]) and the numbered menu (kpsadmin with no verb; kpsadmin_menu.go).
// The verbs' run functions are in kpsadmin_verbs.go.
var kpsadminTool = Tool{
	Name: "kpsadmin", Summary: "the Key Property Store of a group: details, rows, clear, backup, restore", Linked: true,
	Run: runKpsadmin,
}

const kpsName = "kpsadmin"

// kpsFlag is one option.
type kpsFlag struct {
	Long  string // "table" is --table
	Short string // "t" is -t; "" for none
	Arg   string // value placeholder; "" for a flag without value
	Help  string
}

// kpsFlags are every option, in help order. -g, -n and -v go with every verb.
var kpsFlags = []kpsFlag{
	{Long: "group", Short: "g", Arg: "GROUP", Help: "the group (name or id); optional when one group has instances on this host"},
	{Long: "instance", Short: "n", Arg: "INSTANCE", Help: "the instance (name or id) whose configuration and conf/kps/backup are used; optional when the group has one instance on this host"},
	{Long: "table", Short: "t", Arg: "TABLE", Help: "a table, by alias"},
	{Long: "collection", Short: "c", Arg: "COLLECTION", Help: "only the tables of this collection (details, backup)"},
	{Long: "uuid", Arg: "UUID", Help: "the backup to restore (as backup printed it)"},
	{Long: "limit", Arg: "N", Help: fmt.Sprintf("rows per page (default %d, at most %d)", kps.DefaultLimit, kps.MaxLimit)},
	{Long: "cursor", Arg: "CURSOR", Help: "the page after the one that printed this cursor"},
	{Long: "prompt", Short: "P", Help: "reencrypt: ask for the passphrases on the terminal, without echo (what it does without the two files)"},
	{Long: "passphrase_file", Arg: "F", Help: "reencrypt: the group's passphrase, from file F (mode 0600 or 0400); else asked on the terminal"},
	{Long: "old_passphrase_file", Arg: "F", Help: "reencrypt: the passphrase the encrypted fields are sealed with now, from file F; else asked"},
	{Long: "yes", Help: "clear without asking (needed when standard input is not a terminal)"},
	{Long: "force", Help: "restore: replace the rows of tables that have some; clear: also the Gatehouse tables (applications, apikeys)"},
	{Long: "verbose", Short: "v", Help: "say what is done, step by step"},
	{Long: "help", Short: "h", Help: "this help"},
}

// kpsCommon are the options every verb takes.
var kpsCommon = []string{"group", "instance", "verbose", "help"}

// kpsRefused are the vendor's options that Gatehouse does not take, and why.
var kpsRefused = map[string]string{
	"-u": "credentials", "--username": "credentials", "-p": "credentials", "--password": "credentials", "--password_file": "credentials",
	"--passphrase": "passphrase",
}

// kpsVerb is one operation.
type kpsVerb struct {
	Name  string
	Menu  int    // number in the menu
	Title string // one line, for the menu and help
	Help  string // more lines for help
	Flags []string
	// Required flags must be given in command mode; the menu asks for them.
	Required []string
	// Later says why the verb is not available yet ("" when it is).
	Later string
	// Audit is the domain audit log's action for a run ("" records nothing).
	Audit string
	Run   func(ctx context.Context, s *kpsSession) error
	// Ask prompts for the verb's options in the menu.
	Ask func(ctx context.Context, s *kpsSession) error
}

var kpsVerbs []*kpsVerb

func init() {
	// In the reference's order (reference.md, "Command-line tools").
	kpsVerbs = []*kpsVerb{
		{Name: "clear", Menu: 1, Title: "remove every row of a table (its definition stays)",
			Help:  "Asks to type the alias on a terminal unless --yes; refused when standard input is not a\nterminal and --yes is missing. The Gatehouse tables (applications, apikeys) also need --force.",
			Flags: []string{"table", "yes", "force"}, Required: []string{"table"}, Run: kpsClear, Ask: kpsAskClear, Audit: "clear kps table"},
		{Name: "backup", Menu: 2, Title: "write the tables' definitions and rows to a checksummed file",
			Help:  "Writes <instance dir>/conf/kps/backup/<UUID>.jsonl (0600) and prints the UUID; all\ntables, or only -t TABLE, or only the tables of -c COLLECTION.",
			Flags: []string{"table", "collection"}, Run: kpsBackup, Ask: kpsAskBackup, Audit: "back up kps"},
		{Name: "restore", Menu: 3, Title: "load a backup's rows into the store",
			Help:  "Verifies the whole file first (nothing is written from a corrupt or truncated backup);\nfills only empty tables unless --force, which replaces their rows. All tables of the\nbackup, or only -t TABLE.",
			Flags: []string{"uuid", "table", "force"}, Required: []string{"uuid"}, Run: kpsRestore, Ask: kpsAskRestore, Audit: "restore kps"},
		{Name: "reencrypt", Menu: 4, Title: "re-encrypt the encrypted fields with the group's passphrase",
			Help: "After the group's passphrase was set or changed (managedomain --change_passphrase), the\n" +
				"encrypted properties of its custom tables are sealed under the old one and the instances refuse to\n" +
				"start. This moves them to the group's passphrase now (or to clear when it has none), restartable\n" +
				"when cut short. Refused while an instance of the group runs on this host.",
			Flags: []string{"prompt", "passphrase_file", "old_passphrase_file"}, Run: kpsReencrypt, Audit: "reencrypt kps"},
		{Name: "details", Menu: 5, Title: "the store: backend, location, tables with their definitions and row counts, backups",
			Flags: []string{"table", "collection"}, Run: kpsDetails},
		{Name: "list_rows", Menu: 6, Title: "the rows of a table, one JSON object a line, a page at a time",
			Help:  "Prints {\"version\":N,\"values\":{...}} per row on standard output; when more rows\nfollow, the command for the next page goes to standard error.",
			Flags: []string{"table", "limit", "cursor"}, Required: []string{"table"}, Run: kpsListRows, Ask: kpsAskListRows},
	}
}

func kpsFindVerb(name string) *kpsVerb {
	for _, vb := range kpsVerbs {
		if vb.Name == name {
			return vb
		}
	}
	return nil
}

func kpsVerbNames() []string {
	var names []string
	for _, vb := range kpsVerbs {
		names = append(names, vb.Name)
	}
	return names
}

func (vb *kpsVerb) accepts(long string) bool {
	return slices.Contains(kpsCommon, long) || slices.Contains(vb.Flags, long)
}

func kpsFlagByLong(long string) kpsFlag {
	for _, f := range kpsFlags {
		if f.Long == long {
			return f
		}
	}
	panic("kpsadmin: no flag " + long)
}

func (f kpsFlag) names() string {
	if f.Short != "" {
		return "-" + f.Short + ", --" + f.Long
	}
	return "--" + f.Long
}

func (vb *kpsVerb) synopsis() string {
	parts := []string{"kpsadmin", vb.Name, "[-g GROUP] [-n INSTANCE]"}
	for _, long := range vb.Flags {
		f := kpsFlagByLong(long)
		s := "--" + f.Long
		if f.Short != "" {
			s = "-" + f.Short
		}
		if f.Arg != "" {
			s += " " + f.Arg
		}
		if !slices.Contains(vb.Required, long) {
			s = "[" + s + "]"
		}
		parts = append(parts, s)
	}
	return strings.Join(append(parts, "[-v]"), " ")
}

func kpsUsage(w io.Writer) {
	fmt.Fprintf(w, `kpsadmin: the Key Property Store of a group on this host.

usage:
  kpsadmin [-g GROUP] [-n INSTANCE]         the numbered menu (answers from standard input)
  kpsadmin VERB [OPTIONS]                   command mode

verbs (menu number):
`)
	for _, vb := range kpsVerbs {
		fmt.Fprintf(w, "  %d) %s\n      %s", vb.Menu, vb.synopsis(), vb.Title)
		if vb.Later != "" {
			fmt.Fprintf(w, " (not available yet: %s)", vb.Later)
		}
		fmt.Fprintln(w)
		for _, l := range strings.Split(vb.Help, "\n") {
			if l != "" {
				fmt.Fprintf(w, "      %s\n", l)
			}
		}
	}
	fmt.Fprintf(w, "\noptions:\n")
	for _, f := range kpsFlags {
		n := f.names()
		if f.Arg != "" {
			n += " " + f.Arg
		}
		fmt.Fprintf(w, "  %-26s %s\n", n, f.Help)
	}
	fmt.Fprintf(w, `
kpsadmin works on this host's install directory ($GATEHOUSE_HOME, or the directory above
posix/bin, or %s): it reads the instance's configuration (the kps section) and opens the
group's store as the instances do. It takes no credentials (-u, -p, --password_file): the
install directory's permissions are its access control; run it as the user that runs the
instances. docs/kpsadmin.md has the backup format and examples.
exit status: 0 done, 1 the operation failed, 2 wrong usage.
`, home.DefaultDir)
}

// kpsOpts are the parsed arguments.
type kpsOpts struct {
	verb  *kpsVerb
	vals  map[string]string // by long name; flags without value hold "true"
	typed map[string]string // long name → as typed
}

func (o *kpsOpts) has(long string) bool { _, ok := o.vals[long]; return ok }

// parseKpsadmin parses kpsadmin's arguments: one verb (anywhere), options
// as "-t T", "--table T" or "--table=T".
func parseKpsadmin(args []string) (*kpsOpts, error) {
	o := &kpsOpts{vals: map[string]string{}, typed: map[string]string{}}
	byName := map[string]kpsFlag{}
	for _, f := range kpsFlags {
		byName["--"+f.Long] = f
		if f.Short != "" {
			byName["-"+f.Short] = f
		}
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			vb := kpsFindVerb(a)
			if vb == nil {
				msg := fmt.Sprintf("unknown verb %q; verbs: %s", a, strings.Join(kpsVerbNames(), ", "))
				if s := didYouMean(a, kpsVerbNames()); s != "" {
					msg = fmt.Sprintf("unknown verb %q (did you mean %q?); verbs: %s", a, s, strings.Join(kpsVerbNames(), ", "))
				}
				return nil, usagef(kpsName, "%s", msg)
			}
			if o.verb != nil {
				return nil, usagef(kpsName, "one verb at a time (%s and %s given)", o.verb.Name, vb.Name)
			}
			o.verb = vb
			continue
		}
		name, val, hasVal := a, "", false
		if k, v, ok := strings.Cut(a, "="); ok && strings.HasPrefix(a, "--") {
			name, val, hasVal = k, v, true
		}
		if why, ok := kpsRefused[name]; ok {
			if why == "passphrase" {
				return nil, usagef(kpsName, "%s: a passphrase is never taken on the command line: reencrypt asks for it on the terminal, or reads --passphrase_file F / --old_passphrase_file F (docs/kpsadmin.md)", name)
			}
			return nil, usagef(kpsName, "%s: kpsadmin takes no credentials: it works on this host's files, whose permissions are its access control (docs/kpsadmin.md)", name)
		}
		f, ok := byName[name]
		if !ok {
			return nil, usagef(kpsName, "unknown option %q; options: %s", name, kpsFlagList())
		}
		if _, dup := o.vals[f.Long]; dup {
			return nil, usagef(kpsName, "%s given twice", name)
		}
		switch {
		case f.Arg == "" && hasVal:
			return nil, usagef(kpsName, "%s takes no value", name)
		case f.Arg == "":
			val = "true"
		case !hasVal:
			if i+1 >= len(args) {
				return nil, usagef(kpsName, "%s needs a value (%s)", name, f.Arg)
			}
			i++
			val = args[i]
		}
		o.vals[f.Long], o.typed[f.Long] = val, name
	}
	if o.has("help") {
		return o, nil
	}
	if o.verb == nil {
		for long, typed := range o.typed {
			if !slices.Contains(kpsCommon, long) {
				return nil, usagef(kpsName, "%s needs a verb (%s); without one, kpsadmin shows its menu, which takes -g, -n and -v only", typed, strings.Join(kpsVerbNames(), ", "))
			}
		}
		return o, nil
	}
	for long, typed := range o.typed {
		if !o.verb.accepts(long) {
			return nil, usagef(kpsName, "%s does not take %s; it takes: %s", o.verb.Name, typed, kpsVerbFlags(o.verb))
		}
	}
	if o.verb.Later != "" {
		return nil, usagef(kpsName, "%s is not available yet: %s", o.verb.Name, o.verb.Later)
	}
	for _, long := range o.verb.Required {
		if !o.has(long) {
			f := kpsFlagByLong(long)
			return nil, usagef(kpsName, "%s needs %s %s", o.verb.Name, strings.Split(f.names(), ", ")[0], f.Arg)
		}
	}
	if o.has("prompt") && (o.has("passphrase_file") || o.has("old_passphrase_file")) {
		return nil, usagef(kpsName, "-P and the passphrase files exclude each other")
	}
	if v, ok := o.vals["limit"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > kps.MaxLimit {
			return nil, usagef(kpsName, "--limit %q: want a number from 1 to %d", v, kps.MaxLimit)
		}
	}
	return o, nil
}

func kpsFlagList() string {
	var fs []string
	for _, f := range kpsFlags {
		fs = append(fs, strings.Split(f.names(), ", ")...)
	}
	return strings.Join(fs, " ")
}

func kpsVerbFlags(vb *kpsVerb) string {
	var fs []string
	for _, long := range append(slices.Clone(vb.Flags), kpsCommon...) {
		fs = append(fs, strings.Split(kpsFlagByLong(long).names(), ", ")[0])
	}
	return strings.Join(fs, " ")
}

// didYouMean returns the name closest to s when it is close enough (the
// configuration's rule: groupconf.Suggest).
func didYouMean(s string, names []string) string { return groupconf.Suggest(s, names) }

// kpsSession is one run of kpsadmin.
type kpsSession struct {
	env     *Env
	h       home.Home
	in      *bufio.Reader
	o       *kpsOpts
	menu    bool
	topo    *topology.Topology
	hostID  string
	t       target // the resolved instance
	cfg     *groupconf.Config
	store   kps.Store
	verbose bool
	// summary is what the verb did, for the audit log.
	summary string
}

func (s *kpsSession) out(format string, args ...any) { fmt.Fprintf(s.env.Stdout, format, args...) }

// note prints a -v line on standard error.
func (s *kpsSession) note(format string, args ...any) {
	if s.verbose {
		fmt.Fprintf(s.env.Stderr, "kpsadmin: "+format+"\n", args...)
	}
}

func (s *kpsSession) readLine() (string, error) {
	line, err := s.in.ReadString('\n')
	if err != nil && (err != io.EOF || line == "") {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func (s *kpsSession) close() {
	if s.store != nil {
		s.store.Close() // mutate:equivalent delete-stmt the process (or the test's session) ends here: nothing observes the open file
		s.store = nil
	}
}

func runKpsadmin(ctx context.Context, env *Env, args []string) error {
	o, err := parseKpsadmin(args)
	if err != nil {
		return err
	}
	if o.has("help") {
		kpsUsage(env.Stdout)
		return nil
	}
	h, err := home.Resolve()
	if err != nil {
		return err
	}
	s := &kpsSession{env: env, h: h, in: bufio.NewReader(env.Stdin), o: o, verbose: o.has("verbose")}
	defer s.close()
	if err := s.loadTopology(); err != nil {
		return err
	}
	if o.verb == nil {
		s.menu = true
		return runKpsMenu(ctx, s)
	}
	if err := s.resolve(o.verb.Name == "backup" || o.verb.Name == "restore"); err != nil {
		return err
	}
	return s.run(ctx, o.verb)
}

// run runs vb and records it in the domain audit log when it changes
// something (clear, restore) or writes a file of the store's data (backup).
// Wrong usage and a clear not confirmed record nothing. A log that cannot
// be written is reported, not fatal: the store's state matters more.
func (s *kpsSession) run(ctx context.Context, vb *kpsVerb) error {
	s.summary = ""
	err := vb.Run(ctx, s)
	var ue *UsageError
	if vb.Audit == "" || errors.As(err, &ue) || errors.Is(err, errNotConfirmed) || err == errInputEnded {
		return err
	}
	e := audit.Entry{User: osUser(), Via: kpsName, Remote: "local", Action: vb.Audit, Targets: []string{s.t.gid, s.t.iid}, Outcome: audit.OutcomeOK}
	var args []string
	for _, f := range kpsFlags {
		if v, ok := s.o.vals[f.Long]; ok && f.Long != "group" && f.Long != "instance" && f.Long != "verbose" {
			if f.Arg == "" {
				args = append(args, "--"+f.Long)
			} else {
				args = append(args, "--"+f.Long, shellWord(v))
			}
		}
	}
	e.Detail = strings.TrimSpace(s.cmd(vb.Name, args...) + "; " + s.summary)
	if err != nil {
		e.Outcome, e.Error = audit.OutcomeError, err.Error()
	}
	if _, aerr := audit.Open(s.h).Record(context.Background(), e); aerr != nil {
		fmt.Fprintf(s.env.Stderr, "kpsadmin: warning: the audit log could not be written: %v\n", aerr)
	}
	return err
}

func (s *kpsSession) loadTopology() error {
	topo, err := topology.NewStore(s.h, nil).Load()
	if err != nil {
		return err
	}
	hostID, err := domain.LocalHost(s.h)
	if err != nil {
		return err
	}
	s.topo, s.hostID = topo, hostID
	return nil
}

// localGroups are the groups with an instance on this host, in topology order.
func (s *kpsSession) localGroups() []*topology.Group {
	var out []*topology.Group
	for _, r := range s.topo.Instances(s.hostID) {
		if !slices.Contains(out, r.Group) {
			out = append(out, r.Group)
		}
	}
	return out
}

func (s *kpsSession) localInstances(g *topology.Group) []topology.InstanceRef {
	var out []topology.InstanceRef
	for _, r := range s.topo.Instances(s.hostID) {
		if r.Group.ID == g.ID {
			out = append(out, r)
		}
	}
	return out
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}

func groupNames(gs []*topology.Group) []string {
	var names []string
	for _, g := range gs {
		names = append(names, g.Name)
	}
	return names
}

func instanceNames(rs []topology.InstanceRef) []string {
	var names []string
	for _, r := range rs {
		names = append(names, r.Service.Name)
	}
	return names
}

// resolve finds the group and instance of -g and -n (or the only ones on
// this host) and loads the instance's configuration. needInstance: the
// verb uses the instance's directory (backup, restore), so a group with
// several instances here needs -n; the other verbs take the first.
func (s *kpsSession) resolve(needInstance bool) error {
	groups := s.localGroups()
	var g *topology.Group
	if arg, ok := s.o.vals["group"]; ok {
		found, err := s.topo.FindGroup(arg)
		if err != nil {
			return kpsNotFound(err, arg, groupNames(groups), "groups with instances on this host")
		}
		g = found
	} else {
		switch len(groups) {
		case 0:
			return fmt.Errorf("no gateway instance is registered on this host (%s): a group's store is administered on a host that runs one of its instances (managedomain -c creates one)", s.hostID)
		case 1:
			g = groups[0]
		default:
			return usagef(kpsName, "give the group with -g: this host has instances of %s", quoteAll(groupNames(groups)))
		}
	}
	local := s.localInstances(g)
	if len(local) == 0 {
		return fmt.Errorf("group %q has no instance on this host (%s): run kpsadmin on a host of the group (its store and backups are read through an instance's configuration and directory)", g.Name, s.hostID)
	}
	var ref topology.InstanceRef
	if arg, ok := s.o.vals["instance"]; ok {
		svc, err := g.FindInstance(arg)
		if err != nil {
			return kpsNotFound(err, arg, instanceNames(local), fmt.Sprintf("instances of group %q on this host", g.Name))
		}
		if svc.HostID != s.hostID {
			return fmt.Errorf("instance %q of group %q runs on host %s, not on this host (%s): its backups are there; instances here: %s", svc.Name, g.Name, svc.HostID, s.hostID, quoteAll(instanceNames(local)))
		}
		ref = topology.InstanceRef{Group: g, Service: svc}
	} else {
		if len(local) > 1 && needInstance {
			return usagef(kpsName, "give the instance with -n: group %q has %d instances on this host (%s), each with its own conf/kps/backup", g.Name, len(local), quoteAll(instanceNames(local)))
		}
		ref = local[0]
	}
	s.t = newTarget(s.h, ref)
	s.note("group %q (%s), instance %q (%s)", s.t.gname, s.t.gid, s.t.iname, s.t.iid)
	cfg, err := groupconf.LoadInstance(s.h, s.t.gid, s.t.iid, nil, nil)
	if err != nil {
		return fmt.Errorf("the configuration of %s does not load: %w", s.t.label(), err)
	}
	s.cfg = cfg
	if cfg.Deployment != nil {
		s.note("configuration: deployment archive %d of the group", cfg.Deployment.Archive)
	} else {
		s.note("configuration: %s", s.h.GroupConfFile(s.t.gid))
	}
	return nil
}

// kpsNotFound says what was not found, a close name, and what exists.
func kpsNotFound(err error, arg string, names []string, what string) error {
	msg := err.Error()
	var nf *topology.NotFoundError
	if errors.As(err, &nf) {
		msg = fmt.Sprintf("no %s %q", nf.Kind, nf.Name)
		if nf.Scope != "" {
			msg += " " + nf.Scope
		}
	}
	if s := didYouMean(arg, names); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	if len(names) > 0 {
		msg += "; " + what + ": " + quoteAll(names)
	} else {
		msg += "; there are no " + what
	}
	return errors.New(msg)
}

// backend is the configured backend's name.
func (s *kpsSession) backend() string {
	if s.cfg.KPS.Backend == "" {
		return kps.DefaultBackend
	}
	return s.cfg.KPS.Backend
}

// location says where the store is: the file, or the database.
func (s *kpsSession) location() string {
	if s.backend() == sqlite.Name {
		return sqlite.GroupPath(s.h, s.t.gid)
	}
	p := s.cfg.KPS.Postgres
	port := p.Port
	if port == 0 {
		port = 5432
	}
	schema := p.Schema
	if schema == "" {
		schema = "public"
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s (schema %s)", p.User, p.Host, port, p.Database, schema)
}

// open opens the group's store. create: a missing embedded store may be
// created (restore); the other verbs say that there is none yet, so that
// running kpsadmin (perhaps as another user) does not make the file.
func (s *kpsSession) open(ctx context.Context, create bool) (kps.Store, error) {
	if s.store != nil {
		return s.store, nil // mutate:equivalent delete-stmt opening the same store again gives the same answers (one more open file)
	}
	if s.backend() == sqlite.Name && !create {
		path := sqlite.GroupPath(s.h, s.t.gid)
		if _, err := os.Stat(path); err != nil {
			if os.IsNotExist(err) {
				return nil, fmt.Errorf("group %q has no key property store yet (%s does not exist): its instances create it when they first use it; kpsadmin restore creates it too", s.t.gname, path)
			}
			return nil, fmt.Errorf("the key property store %s: %w", path, err)
		}
	}
	s.note("opening the %s store: %s", s.backend(), s.location())
	log := slog.New(slog.DiscardHandler)
	if s.verbose {
		log = slog.New(slog.NewTextHandler(s.env.Stderr, nil))
	}
	st, err := apps.OpenGroupStoreMode(ctx, s.h, s.t.gid, s.cfg.KPS, log, apps.Raw)
	if err != nil {
		return nil, fmt.Errorf("%w (store: %s)", err, s.location())
	}
	s.store = st
	return st, nil
}

// table returns the definition of alias, or an error listing the tables.
func (s *kpsSession) table(ctx context.Context, st kps.Store, alias string) (kps.Table, error) {
	tables, err := st.Tables(ctx)
	if err != nil {
		return kps.Table{}, err
	}
	var aliases []string
	for _, t := range tables {
		if t.Alias == alias {
			return t, nil
		}
		aliases = append(aliases, t.Alias)
	}
	return kps.Table{}, kpsNotFound(fmt.Errorf("no table %q in the store of group %q", alias, s.t.gname), alias, aliases, "tables")
}

// selected filters tables by -t and -c.
func (s *kpsSession) selected(ctx context.Context, st kps.Store) ([]kps.Table, error) {
	if alias, ok := s.o.vals["table"]; ok {
		t, err := s.table(ctx, st, alias)
		if err != nil {
			return nil, err
		}
		if c, ok := s.o.vals["collection"]; ok && t.Collection != c {
			return nil, fmt.Errorf("table %q is in collection %q, not %q", alias, t.Collection, c)
		}
		return []kps.Table{t}, nil
	}
	tables, err := st.Tables(ctx)
	if err != nil {
		return nil, err
	}
	c, ok := s.o.vals["collection"]
	if !ok {
		return tables, nil
	}
	var out []kps.Table
	var colls []string
	for _, t := range tables {
		if t.Collection == c {
			out = append(out, t)
		}
		if !slices.Contains(colls, t.Collection) {
			colls = append(colls, t.Collection)
		}
	}
	if len(out) == 0 {
		return nil, kpsNotFound(fmt.Errorf("no collection %q in the store of group %q", c, s.t.gname), c, colls, "collections")
	}
	return out, nil
}

// builtin reports whether alias is one of Gatehouse's own tables.
func builtin(alias string) bool {
	for _, t := range apps.Tables() {
		if t.Alias == alias {
			return true
		}
	}
	return false
}

// stdinTerminal reports whether standard input is a terminal.
func (s *kpsSession) stdinTerminal() bool {
	f, ok := s.env.Stdin.(*os.File)
	return ok && isTerminal(f)
}
