package tools

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/linuxsvc"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// managedomain has three faces over one table of verbs (mdVerbs):
//
//   - command mode: managedomain -c -n NAME -g GROUP ... (parseMDArgs);
//   - the numbered menu: managedomain --menu (managedomain_menu.go);
//   - the interactive interpreter: managedomain with no arguments
//     (managedomain_shell.go).
//
// Each verb names its flags, its vendor menu number and prompts, and one run
// function that all three faces call. docs/managedomain.md is the operator's
// page.
var managedomainTool = Tool{
	Name: "managedomain", Summary: "create and change the domain: hosts, groups, instances, services", Linked: true,
	Run: runManagedomain,
}

const mdName = "managedomain"

// mdParam is one flag of a verb.
type mdParam struct {
	Long  string // flag name without dashes: "traffic_port" is --traffic_port
	Short string // one letter: "n" is -n; "" for none
	Arg   string // value placeholder ("NAME"); "" for a flag without value
	Help  string
	// Required flags must be given (command mode, interpreter) or answered
	// (menu).
	Required bool
	// Prompt is the menu's question; "" keeps the flag out of the menu.
	Prompt string
	// Default is shown in brackets in the menu and used for an empty answer.
	Default func(s *mdSession, v mdValues) string
	// Choices lists what is registered, shown before the prompt.
	Choices func(s *mdSession, v mdValues) (what string, names []string)
	// Secret answers are read without echo and never printed.
	Secret bool
}

func (p mdParam) flag() string {
	if p.Short != "" {
		return "-" + p.Short + ", --" + p.Long
	}
	return "--" + p.Long
}

func (p mdParam) synopsis() string {
	s := "--" + p.Long
	if p.Short != "" {
		s = "-" + p.Short
	}
	if p.Arg != "" {
		s += " " + p.Arg
	}
	if !p.Required {
		s = "[" + s + "]"
	}
	return s
}

// mdVerb is one operation.
type mdVerb struct {
	Name     string // "create_instance": --create_instance, and the interpreter's verb
	Short    string // "c" is -c; "" for none
	Menu     int    // vendor menu number; 0 when not in the menu
	Title    string // one line, for the menu and help
	Help     string // more lines for help VERB
	Synopsis string // overrides the generated synopsis
	Params   []mdParam
	// Meta verbs (help, menu, version) take no part in the menu.
	Meta bool
	Run  func(ctx context.Context, s *mdSession, v mdValues) error
}

// onANM wraps the Run of a verb that changes the topology: on a host that
// joined a domain (its nodemanager.yaml names the Admin Node Manager) it is
// refused, naming the ANM, before anything is written. The topology of
// such a host is the ANM's copy, pushed to it; changing it here would split
// the domain (ids allocated twice, this host a version ahead of the ANM).
func onANM(run func(context.Context, *mdSession, mdValues) error) func(context.Context, *mdSession, mdValues) error {
	return func(ctx context.Context, s *mdSession, v mdValues) error {
		if c, err := domain.LoadNodeManagerConf(s.home); err == nil && c.ANMAddress != "" {
			anm := net.JoinHostPort(c.ANMAddress, strconv.Itoa(c.ANMPort))
			return fmt.Errorf("this host (%s) joined the domain of the Admin Node Manager at %s: topology changes are made there and pushed to every host; "+
				"run managedomain on that host, or use the management API from here (gatehouse client --url https://%s/api instance create GROUP NAME …, group, host …)", c.HostID, anm, anm)
		}
		return run(ctx, s, v)
	}
}

func (vb *mdVerb) flag() string {
	if vb.Short != "" {
		return "-" + vb.Short + ", --" + vb.Name
	}
	return "--" + vb.Name
}

func (vb *mdVerb) synopsis(dashes bool) string {
	head := vb.Name
	if dashes {
		head = strings.ReplaceAll(vb.flag(), ", ", " | ")
	}
	if vb.Synopsis != "" {
		return head + " " + vb.Synopsis
	}
	parts := []string{head}
	for _, p := range vb.Params {
		parts = append(parts, p.synopsis())
	}
	return strings.Join(parts, " ")
}

func (vb *mdVerb) param(long string) (mdParam, bool) {
	for _, p := range vb.Params {
		if p.Long == long {
			return p, true
		}
	}
	return mdParam{}, false
}

// mdValues are the flag values given to a verb, by long name. Flags without
// a value hold "true".
type mdValues map[string]string

func (v mdValues) has(k string) bool { _, ok := v[k]; return ok }

// port parses the port flag k; 0 when absent.
func (v mdValues) port(k string) (int, error) {
	s, ok := v[k]
	if !ok || s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 1 || n > 65535 {
		return 0, &UsageError{Tool: mdName, Msg: fmt.Sprintf("--%s %q is not a port (want 1 to 65535)", k, s)}
	}
	return n, nil
}

// mdSession is one run of managedomain.
type mdSession struct {
	env   *Env
	home  home.Home
	in    *bufio.Reader // shared by the menu, the interpreter and prompts
	actor topology.Actor
	// interactive is set in the menu and the interpreter: verbs prompt for
	// what is missing there only where it cannot be a usage error.
	interactive bool
}

func (s *mdSession) out(format string, args ...any) { fmt.Fprintf(s.env.Stdout, format, args...) }

// readLine reads one line from standard input without its line ending. At
// end of input it returns io.EOF (a last unterminated line is returned first).
func (s *mdSession) readLine() (string, error) {
	line, err := s.in.ReadString('\n')
	if err != nil && (err != io.EOF || line == "") {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func (s *mdSession) topology() (*topology.Topology, error) {
	return audit.StoreFor(s.home).Load()
}

func localActor() topology.Actor {
	name := ""
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	if name == "" {
		name = os.Getenv("USER")
	}
	if name == "" {
		name = "uid " + strconv.Itoa(os.Getuid())
	}
	return topology.Actor{User: name, Via: mdName, Remote: "local"}
}

// Shared parameters.
var (
	pName = mdParam{Long: "name", Short: "n", Arg: "NAME", Help: "the instance name", Required: true, Prompt: "Instance name",
		Choices: chooseInstance}
	pGroup = mdParam{Long: "group", Short: "g", Arg: "GROUP", Help: "the group name", Required: true, Prompt: "Group name",
		Choices: chooseGroup}
	pSystemdDir = mdParam{Long: "systemd_dir", Arg: "DIR", Help: "where the systemd unit goes (default " + linuxsvc.DefaultSystemdDir + ")",
		Prompt: "Directory for the systemd unit", Default: func(*mdSession, mdValues) string { return linuxsvc.DefaultSystemdDir }}
	pInitDDir = mdParam{Long: "initd_dir", Arg: "DIR", Help: "where the init.d script goes (default " + linuxsvc.DefaultInitDDir + ")",
		Prompt: "Directory for the init.d script", Default: func(*mdSession, mdValues) string { return linuxsvc.DefaultInitDDir }}
)

func chooseGroup(s *mdSession, _ mdValues) (string, []string) {
	t, err := s.topology()
	if err != nil {
		return "groups", nil
	}
	return "groups", t.GatewayGroupNames()
}

func chooseInstance(s *mdSession, v mdValues) (string, []string) {
	t, err := s.topology()
	if err != nil {
		return "instances", nil
	}
	g, err := t.FindGroup(v["group"])
	if err != nil {
		return "instances", nil
	}
	var names []string
	for _, svc := range g.Services {
		if svc.Type == topology.TypeGateway {
			names = append(names, svc.Name)
		}
	}
	return fmt.Sprintf("instances in group %q", g.Name), names
}

// freePortDefault offers the lowest port from base up that no instance of
// this install directory (nor the node manager, nor the answers given for
// the flags in avoid) uses.
func freePortDefault(base int, avoid ...string) func(*mdSession, mdValues) string {
	return func(s *mdSession, v mdValues) string {
		used, err := domain.PortsInUse(s.home)
		if err != nil {
			return strconv.Itoa(base)
		}
		var skip []int
		for _, k := range avoid {
			if p, err := v.port(k); err == nil && p != 0 {
				skip = append(skip, p)
			}
		}
		if p := domain.FreePort(used, base, skip...); p != 0 {
			return strconv.Itoa(p)
		}
		return strconv.Itoa(base)
	}
}

// mdVerbs is the one table the three faces share, in help order.
var mdVerbs []*mdVerb

func init() {
	mdVerbs = []*mdVerb{
		{
			Name: "initialize", Short: "i", Title: "create the domain on this host (the first Admin Node Manager host)",
			Help: "Creates the install directory's skeleton, the domain CA (groups/certs), the first admin user\n" +
				"(conf/adminUsers.json), this host as host-1 with the Admin Node Manager nodemanager-1 in the\n" +
				"\"Node Manager Group\", and copies this binary into posix/bin with a link per tool.\n" +
				"Without --password or --password_file it asks for the password (twice on a terminal;\n" +
				"otherwise one line of standard input). A second -i on the same directory is refused.\n" +
				"--domain_passphrase protects the domain CA's key with a passphrase from the start (asked twice on\n" +
				"the terminal; --domain_passphrase_file F reads it from a file only its owner can read).",
			Synopsis: "--domain_name NAME --username U [--password P | --password_file F] [--port N] [--host_name H] [--nm_address IP] [--domain_cert F --domain_key F] [--domain_passphrase | --domain_passphrase_file F]",
			Params: []mdParam{
				{Long: "domain_name", Arg: "NAME", Help: "the domain name", Required: true},
				{Long: "username", Arg: "U", Help: "the first admin user", Required: true},
				{Long: "password", Arg: "P", Help: "its password (at least 8 characters; visible to other users in ps: prefer --password_file)", Secret: true},
				{Long: "password_file", Arg: "F", Help: "read the password from the first line of file F"},
				{Long: "port", Arg: "N", Help: "this host's Admin Node Manager management port (default 8090)"},
				{Long: "host_name", Arg: "H", Help: "this host's name in the topology (default: the system host name)"},
				{Long: "nm_address", Arg: "IP", Help: "the IP the node manager listens on (default: every interface)"},
				{Long: "domain_cert", Arg: "F", Help: "use your own CA as the domain CA: its certificate (PEM; with --domain_key)"},
				{Long: "domain_key", Arg: "F", Help: "its private key (PEM, unencrypted: PKCS#8, or SEC 1 / PKCS#1)"},
				{Long: "domain_passphrase", Help: "protect the domain CA's key with a passphrase, asked on the terminal (docs/passphrase.md)"},
				{Long: "domain_passphrase_file", Arg: "F", Help: "the same, the passphrase read from file F (mode 0600 or 0400)"},
			},
			Run: mdInitialize,
		},
		{
			Name: "create_instance", Short: "c", Menu: 5, Title: "create a gateway instance (and its group when new)",
			Help: "Creates the instance on this host, and the group when no group has that name. Ports not\n" +
				"given are the lowest free ones of this host from 8080 (traffic) and 8085 (management) up, as\n" +
				"the menu offers; given ones must not clash with another instance of this host or its node manager.",
			Params: []mdParam{
				{Long: "name", Short: "n", Arg: "NAME", Help: "the instance name", Required: true, Prompt: "Name of the new instance"},
				{Long: "group", Short: "g", Arg: "GROUP", Help: "the group name (created when new)", Required: true, Prompt: "Group (an existing one, or a new name)", Choices: chooseGroup},
				{Long: "traffic_port", Arg: "N", Help: "the traffic port (default: the lowest free from 8080)", Prompt: "Traffic port", Default: freePortDefault(domain.DefaultTrafficPort)},
				{Long: "management_port", Arg: "M", Help: "the instance management port (default: the lowest free from 8085)", Prompt: "Management port", Default: freePortDefault(domain.DefaultManagementPort, "traffic_port")},
				{Long: "ca_passphrase_file", Arg: "F", Help: "when the domain CA has a passphrase: it, from file F (else asked)"},
				{Long: "group_passphrase_file", Arg: "F", Help: "when the group has a passphrase: it, from file F (else asked)"},
			},
			Run: onANM(mdCreateInstance),
		},
		{
			Name: "edit_instance", Menu: 6, Title: "edit a gateway instance: rename it, change its traffic or management port",
			Help: "Renames the instance (--new_name; directories are named by id, nothing moves) and/or sets its\n" +
				"ports in its instance.yaml (checked against the other instances of this host). A port change\n" +
				"takes effect when the instance restarts.",
			Params: []mdParam{pGroup, pName,
				{Long: "new_name", Arg: "NEW", Help: "the instance's new name", Prompt: "New name (empty: keep it)"},
				{Long: "traffic_port", Arg: "N", Help: "a new traffic port", Prompt: "Traffic port (empty: keep it)"},
				{Long: "management_port", Arg: "M", Help: "a new management port", Prompt: "Management port (empty: keep it)"}},
			Run: onANM(mdEditInstance),
		},
		{
			Name: "delete_instance", Menu: 7, Title: "delete a gateway instance",
			Help:   "Deletes the instance from the topology and its directory from this host. Refused while it runs.\nIts id is never reused.",
			Params: []mdParam{pGroup, pName},
			Run:    onANM(mdDeleteInstance),
		},
		{
			Name: "add_tag", Menu: 8, Title: "add a tag (name=value) to a gateway instance",
			Help:   "Sets the tag on the instance in the topology (an existing tag of that name takes the new value).\nNames of 1 to 64 letters, digits, '_', '.', '-'; Gatehouse's own (internal_…, address) cannot be set.",
			Params: []mdParam{pGroup, pName, {Long: "tag_name", Arg: "NAME", Help: "the tag's name", Required: true, Prompt: "Tag name"}, {Long: "tag_value", Arg: "VALUE", Help: "its value (may be empty)", Prompt: "Tag value"}},
			Run: onANM(func(ctx context.Context, s *mdSession, v mdValues) error {
				if err := domain.SetTag(ctx, s.home, s.actor, v["group"], v["name"], v["tag_name"], v["tag_value"], false); err != nil {
					return err
				}
				s.out("Tagged instance %q of group %q: %s=%q\n", v["name"], v["group"], v["tag_name"], v["tag_value"])
				return nil
			}),
		},
		{
			Name: "delete_tag", Menu: 9, Title: "delete a tag from a gateway instance",
			Params: []mdParam{pGroup, pName, {Long: "tag_name", Arg: "NAME", Help: "the tag's name", Required: true, Prompt: "Tag name"}},
			Run: onANM(func(ctx context.Context, s *mdSession, v mdValues) error {
				if err := domain.SetTag(ctx, s.home, s.actor, v["group"], v["name"], v["tag_name"], "", true); err != nil {
					return err
				}
				s.out("Deleted tag %q of instance %q of group %q\n", v["tag_name"], v["name"], v["group"])
				return nil
			}),
		},
		{
			Name: "add_service", Menu: 10, Title: "add a Linux service (systemd unit and init.d script) for a local instance",
			Help: "Writes gatehouse-<instance-id>.service into the systemd directory and gatehouse-<instance-id>\n" +
				"into the init.d directory. Both run startinstance -d/-k/-s. Then, as root:\n" +
				"systemctl daemon-reload && systemctl enable --now gatehouse-<instance-id>.service",
			Params: []mdParam{pGroup, pName, pSystemdDir, pInitDDir},
			Run:    mdAddService,
		},
		{
			Name: "remove_service", Menu: 10, Title: "remove the Linux service of a local instance",
			Help:   "Deletes the systemd unit and init.d script that add_service wrote (disable the service first).",
			Params: []mdParam{pGroup, pName, pSystemdDir, pInitDDir},
			Run:    mdRemoveService,
		},
		{
			Name: "add_nm_service", Menu: 10, Title: "add a Linux service (systemd unit and init.d script) for this host's node manager",
			Help: "Writes gatehouse-<nodemanager-id>.service and the init.d script gatehouse-<nodemanager-id>: both run\n" +
				"nodemanager -d/-k/-s, so the node manager (the Admin Node Manager on its host) comes back after a\n" +
				"reboot and restarts the instances that should run. Stopping it leaves the instances running.\n" +
				"Then, as root: systemctl daemon-reload && systemctl enable --now gatehouse-<nodemanager-id>.service",
			Params: []mdParam{pSystemdDir, pInitDDir},
			Run:    mdAddNMService,
		},
		{
			Name: "remove_nm_service", Menu: 10, Title: "remove the Linux service of this host's node manager",
			Help:   "Deletes the systemd unit and init.d script that add_nm_service wrote (disable the service first).",
			Params: []mdParam{pSystemdDir, pInitDDir},
			Run:    mdRemoveNMService,
		},
		{
			Name: "rename_group", Menu: 11, Title: "rename a group",
			Help: "Renames the group. Directories are named by id, so nothing moves on disk.",
			Params: []mdParam{pGroup,
				{Long: "new_name", Arg: "NEW", Help: "the new group name", Required: true, Prompt: "New group name"}},
			Run: onANM(mdRenameGroup),
		},
		{
			Name: "delete_group", Menu: 12, Title: "delete a group and its instances",
			Help:   "Deletes the group, its instances and its directory. Refused while any of its instances runs.",
			Params: []mdParam{pGroup},
			Run:    onANM(mdDeleteGroup),
		},
		{
			Name: "print_topology", Short: "p", Menu: 13, Title: "print the topology",
			Help:   "Prints the domain, its hosts, and its groups with their instances and ports.\nWith --json, prints the topology.json document.",
			Params: []mdParam{{Long: "json", Help: "print the topology.json document"}},
			Run:    mdPrintTopology,
		},
		{Name: "menu", Title: "the numbered menu (reads choices from standard input)", Meta: true, Run: func(ctx context.Context, s *mdSession, _ mdValues) error { return runMenu(ctx, s) }},
		{Name: "help", Short: "h", Title: "list every operation and flag", Meta: true, Run: func(_ context.Context, s *mdSession, _ mdValues) error {
			mdUsage(s.env.Stdout)
			return nil
		}},
		{Name: "version", Title: "print the version", Meta: true, Run: func(_ context.Context, s *mdSession, _ mdValues) error {
			s.out("managedomain (gatehouse) %s\n", Version)
			return nil
		}},
	}
}

func findVerb(name string) *mdVerb {
	for _, vb := range mdVerbs {
		if vb.Name == name {
			return vb
		}
	}
	return nil
}

func runManagedomain(ctx context.Context, env *Env, args []string) error {
	h, err := home.Resolve()
	if err != nil {
		return err
	}
	s := &mdSession{env: env, home: h, in: bufio.NewReader(env.Stdin), actor: localActor()}
	if len(args) == 0 {
		return runShell(ctx, s)
	}
	vb, vals, err := parseMDArgs(args, nil)
	if err != nil {
		return err
	}
	return vb.Run(ctx, s, vals)
}

// mdFlagSpec is what the parser knows of a flag across all verbs.
type mdFlagSpec struct {
	verb  *mdVerb // set for an operation flag
	long  string  // parameter long name
	value bool    // takes a value
}

func mdFlags() map[string]mdFlagSpec {
	m := map[string]mdFlagSpec{}
	for _, vb := range mdVerbs {
		m["--"+vb.Name] = mdFlagSpec{verb: vb}
		if vb.Short != "" {
			m["-"+vb.Short] = mdFlagSpec{verb: vb}
		}
		for _, p := range vb.Params {
			spec := mdFlagSpec{long: p.Long, value: p.Arg != ""}
			m["--"+p.Long] = spec
			if p.Short != "" {
				m["-"+p.Short] = spec
			}
		}
	}
	return m
}

func acceptedFlags() string {
	var ops, params []string
	seen := map[string]bool{}
	for _, vb := range mdVerbs {
		ops = append(ops, strings.Split(vb.flag(), ", ")...)
		for _, p := range vb.Params {
			if !seen[p.Long] {
				seen[p.Long] = true
				params = append(params, strings.Split(p.flag(), ", ")...)
			}
		}
	}
	return "operations " + strings.Join(ops, " ") + "; flags " + strings.Join(params, " ")
}

func verbFlags(vb *mdVerb) string {
	if len(vb.Params) == 0 {
		return "no flags"
	}
	var fs []string
	for _, p := range vb.Params {
		fs = append(fs, p.flag())
	}
	return strings.Join(fs, ", ")
}

// parseMDArgs parses command-mode arguments. With preset (the interpreter's
// verb), args hold only that verb's flags. Long flags take "--flag value" or
// "--flag=value"; short ones "-n value".
func parseMDArgs(args []string, preset *mdVerb) (*mdVerb, mdValues, error) {
	specs := mdFlags()
	vb := preset
	vals := mdValues{}
	given := map[string]string{} // long name → flag as typed
	wantHelp := false            // -h wins over anything else
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" || a == "--" {
			return nil, nil, usagef(mdName, "unexpected argument %q; flags start with - or --", a)
		}
		name, val, hasVal := a, "", false
		if k, v, ok := strings.Cut(a, "="); ok {
			name, val, hasVal = k, v, true
		}
		spec, ok := specs[name]
		if !ok || (preset != nil && spec.verb != nil) {
			if preset != nil {
				return nil, nil, usagef(mdName, "unknown flag %q for %s; accepted: %s", name, preset.Name, verbFlags(preset))
			}
			return nil, nil, usagef(mdName, "unknown flag %q; accepted: %s", name, acceptedFlags())
		}
		if spec.verb != nil {
			if hasVal {
				return nil, nil, usagef(mdName, "%s takes no value", name)
			}
			if spec.verb.Name == "help" {
				wantHelp = true
				continue
			}
			if vb != nil && vb != spec.verb {
				return nil, nil, usagef(mdName, "give one operation at a time (both --%s and --%s given)", vb.Name, spec.verb.Name)
			}
			vb = spec.verb
			continue
		}
		if _, dup := given[spec.long]; dup {
			return nil, nil, usagef(mdName, "%s given twice", name)
		}
		given[spec.long] = name
		switch {
		case !spec.value && hasVal:
			return nil, nil, usagef(mdName, "%s takes no value", name)
		case !spec.value:
			val = "true"
		case !hasVal:
			if i+1 >= len(args) {
				return nil, nil, usagef(mdName, "%s needs a value", name)
			}
			i++
			val = args[i]
		}
		vals[spec.long] = val
	}
	if wantHelp {
		return findVerb("help"), mdValues{}, nil
	}
	if vb == nil {
		return nil, nil, usagef(mdName, "no operation given; give one of: %s", opList())
	}
	for long, typed := range given {
		if _, ok := vb.param(long); !ok {
			return nil, nil, usagef(mdName, "%s is not accepted with %s; it accepts: %s", typed, vb.Name, verbFlags(vb))
		}
	}
	var missing []string
	for _, p := range vb.Params {
		if p.Required && !vals.has(p.Long) {
			missing = append(missing, strings.Split(p.flag(), ", ")[0]+" "+p.Arg)
		}
	}
	if len(missing) > 0 {
		return nil, nil, usagef(mdName, "%s needs %s (missing)", vb.Name, strings.Join(missing, ", "))
	}
	return vb, vals, nil
}

func opList() string {
	var ops []string
	for _, vb := range mdVerbs {
		ops = append(ops, strings.Split(vb.flag(), ", ")[0])
	}
	return strings.Join(ops, ", ")
}

func mdUsage(w io.Writer) {
	fmt.Fprintf(w, `managedomain: create and change the domain.

usage:
  managedomain                      the interactive interpreter (verbs below without dashes; help; quit)
  managedomain --menu               the numbered menu (answers from standard input; end of input quits)
  managedomain OPERATION [FLAGS]    command mode

operations:
`)
	for _, vb := range mdVerbs {
		fmt.Fprintf(w, "  %s\n      %s", vb.synopsis(true), vb.Title)
		if vb.Menu != 0 {
			fmt.Fprintf(w, " (menu %d)", vb.Menu)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "\nflags:\n")
	seen := map[string]bool{}
	for _, vb := range mdVerbs {
		for _, p := range vb.Params {
			if seen[p.Long] {
				continue
			}
			seen[p.Long] = true
			f := p.flag()
			if p.Arg != "" {
				f += " " + p.Arg
			}
			fmt.Fprintf(w, "  %-28s %s\n", f, p.Help)
		}
	}
	fmt.Fprintf(w, `
Long flags take "--flag value" or "--flag=value". The install directory is $GATEHOUSE_HOME
(or the directory above posix/bin, or %s).
exit status: 0 done, 1 the operation failed, 2 wrong usage.
`, home.DefaultDir)
}

func verbHelp(w io.Writer, vb *mdVerb) {
	fmt.Fprintf(w, "%s\n    %s", vb.synopsis(false), vb.Title)
	if vb.Menu != 0 {
		fmt.Fprintf(w, " (menu %d)", vb.Menu)
	}
	fmt.Fprintln(w)
	if vb.Help != "" {
		for _, l := range strings.Split(vb.Help, "\n") {
			fmt.Fprintf(w, "    %s\n", l)
		}
	}
	for _, p := range vb.Params {
		f := p.flag()
		if p.Arg != "" {
			f += " " + p.Arg
		}
		fmt.Fprintf(w, "    %-28s %s\n", f, p.Help)
	}
}

// --- run functions -------------------------------------------------------

func mdInitialize(ctx context.Context, s *mdSession, v mdValues) (err error) {
	port, err := v.port("port")
	if err != nil {
		return err
	}
	if v.has("password") && v.has("password_file") {
		return usagef(mdName, "give --password or --password_file, not both")
	}
	if err := s.home.CheckDomain(); err == nil {
		return fmt.Errorf("a domain %w in %s (groups/topology.json); use another install directory (%s) or remove this one first", topology.ErrExists, s.home.Dir, home.EnvHome)
	}
	ca, err := operatorCA(v)
	if err != nil {
		return err
	}
	var pw secret.Value
	switch {
	case v.has("password"):
		pw = secret.FromString(v["password"])
	case v.has("password_file"):
		data, err := os.ReadFile(v["password_file"])
		if err != nil {
			return fmt.Errorf("reading the password file: %w", err)
		}
		line, _, _ := strings.Cut(string(data), "\n")
		pw = secret.FromString(strings.TrimRight(line, "\r"))
		secret.New(data).Wipe()
	default:
		if pw, err = s.askNewPassword(fmt.Sprintf("Password for admin user %q", v["username"])); err != nil {
			return err
		}
	}
	defer pw.Wipe()
	if v.has("domain_passphrase") || v.has("domain_passphrase_file") {
		// The keyring first: the CA's key is sealed as it is first written,
		// never on disk in clear.
		p, err := s.passphrase(v, "domain_passphrase_file", "Passphrase of the domain CA", true)
		if err != nil {
			return err
		}
		err = secret.ChangePassphrase(s.home, secret.ScopeCA, secret.Value{}, p, secret.DefaultKDF)
		p.Wipe()
		if err != nil {
			return err
		}
		defer func() {
			if err != nil {
				os.Remove(secret.ScopeCA.KeyringFile(s.home))
			}
		}()
	}
	exe := s.env.Exe
	if exe != "" {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
	}
	t, err := domain.Init(ctx, s.home, domain.InitOptions{
		DomainName: v["domain_name"], HostName: v["host_name"], Username: v["username"], Password: pw,
		Port: port, Address: v["nm_address"], Actor: s.actor, Exe: exe, ToolNames: LinkedNames(), CA: ca,
	})
	if err != nil {
		return err
	}
	nm, _ := t.AdminNodeManager()
	s.out("Created domain %q in %s.\n", t.DomainName, s.home.Dir)
	s.out("  host %q (%s), Admin Node Manager %s on port %d (https)\n", t.Hosts[0].Name, t.Hosts[0].ID, nm.ID, nm.ManagementPort)
	s.out("  admin user %q\n", v["username"])
	if ca, err := pki.LoadCA(s.home); err == nil {
		s.out("  domain CA %s (%s)\n  SHA-256 fingerprint %s\n", pki.CertFile(s.home), ca.Cert.Subject.CommonName, ca.Fingerprint())
	}
	s.out("Next: managedomain -c -n NAME -g GROUP creates a gateway instance.\n")
	return nil
}

func mdEditInstance(ctx context.Context, s *mdSession, v mdValues) error {
	tp, mp, err := v.instancePorts()
	if err != nil {
		return err
	}
	if v["new_name"] == "" && tp == 0 && mp == 0 {
		return usagef("managedomain", "edit_instance wants --new_name, --traffic_port or --management_port")
	}
	name := v["name"]
	if tp != 0 || mp != 0 {
		if err := domain.SetInstancePorts(ctx, s.home, s.actor, v["group"], name, tp, mp, 0); err != nil {
			return err
		}
		s.out("Set the ports of instance %q: %s (they take effect when it restarts)\n", name, portsNote(tp, mp))
	}
	if nn := v["new_name"]; nn != "" {
		if err := domain.RenameInstance(ctx, s.home, s.actor, v["group"], name, nn); err != nil {
			return err
		}
		s.out("Renamed instance %q to %q\n", name, nn)
	}
	return nil
}

// instancePorts are --traffic_port and --management_port (0 when not
// given).
func (v mdValues) instancePorts() (traffic, management int, err error) {
	if traffic, err = v.port("traffic_port"); err != nil {
		return 0, 0, err
	}
	management, err = v.port("management_port")
	return traffic, management, err
}

func portsNote(tp, mp int) string {
	var parts []string
	if tp != 0 {
		parts = append(parts, fmt.Sprintf("traffic %d", tp))
	}
	if mp != 0 {
		parts = append(parts, fmt.Sprintf("management %d", mp))
	}
	return strings.Join(parts, ", ")
}

func mdCreateInstance(ctx context.Context, s *mdSession, v mdValues) error {
	tp, mp, err := v.instancePorts()
	if err != nil {
		return err
	}
	// The instance's key is sealed with its group's passphrase and signed
	// with the CA's key: both scopes open first when they have one.
	if err := s.unlock(v, secret.ScopeCA, "ca_passphrase_file"); err != nil {
		return err
	}
	if t, err := s.topology(); err == nil {
		if g, err := t.FindGroup(v["group"]); err == nil {
			if err := s.unlock(v, secret.GroupScope(g.ID), "group_passphrase_file"); err != nil {
				return err
			}
		}
	}
	c, err := domain.CreateInstance(ctx, s.home, s.actor, domain.InstanceSpec{Group: v["group"], Name: v["name"], TrafficPort: tp, ManagementPort: mp})
	if err != nil {
		return err
	}
	t, _ := s.topology()
	newGroup := ""
	if c.NewGroup {
		newGroup = ", a new group"
	}
	group := v["group"] // a name, or an id: the group's name when the topology says
	var ref topology.InstanceRef
	if t != nil {
		if ref, err = t.FindInstanceID(c.InstanceID); err == nil {
			group = ref.Group.Name
		}
	}
	s.out("Created instance %q (%s) in group %q (%s%s).\n", v["name"], c.InstanceID, group, c.GroupID, newGroup)
	if ref.Service != nil {
		s.out("  traffic port %d, management port %d\n", ref.Service.TrafficPort, ref.Service.ManagementPort)
	}
	s.out("  directory %s\n", s.home.InstanceDir(c.GroupID, c.InstanceID))
	s.out("Start it with: startinstance -n %s -g %s -d\n", shellWord(v["name"]), shellWord(group))
	return nil
}

// shellWord quotes s for a POSIX shell when it needs it.
func shellWord(s string) string {
	if s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:@", r))
	}) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func mdDeleteInstance(ctx context.Context, s *mdSession, v mdValues) error {
	if err := domain.DeleteInstance(ctx, s.home, s.actor, v["group"], v["name"]); err != nil {
		return err
	}
	s.out("Deleted instance %q from group %q.\n", v["name"], v["group"])
	return nil
}

func mdRenameGroup(ctx context.Context, s *mdSession, v mdValues) error {
	if err := domain.RenameGroup(ctx, s.home, s.actor, v["group"], v["new_name"]); err != nil {
		return err
	}
	s.out("Renamed group %q to %q.\n", v["group"], v["new_name"])
	return nil
}

func mdDeleteGroup(ctx context.Context, s *mdSession, v mdValues) error {
	if err := domain.DeleteGroup(ctx, s.home, s.actor, v["group"]); err != nil {
		return err
	}
	s.out("Deleted group %q and its instances.\n", v["group"])
	return nil
}

// localInstance finds the instance and checks that it lives on this host.
func (s *mdSession) localInstance(group, name string) (topology.InstanceRef, error) {
	t, err := s.topology()
	if err != nil {
		return topology.InstanceRef{}, err
	}
	ref, err := t.FindInstance(group, name)
	if err != nil {
		return ref, err
	}
	hostID, err := domain.LocalHost(s.home)
	if err != nil {
		return ref, err
	}
	if ref.Service.HostID != hostID {
		return ref, fmt.Errorf("instance %q in group %q is on host %s, not on this host (%s)", name, group, ref.Service.HostID, hostID)
	}
	return ref, nil
}

func serviceDirs(v mdValues) linuxsvc.Dirs {
	return linuxsvc.Dirs{Systemd: v["systemd_dir"], InitD: v["initd_dir"]}
}

// stopTimeout is how long systemd lets "startinstance -k" take: the
// zero-downtime delay (when on) plus the drain timeout, plus a margin.
func stopTimeout(h home.Home, ref topology.InstanceRef) time.Duration {
	const margin = 30 * time.Second
	cfg, err := groupconf.LoadInstance(h, ref.Group.ID, ref.Service.ID, nil, nil)
	if err != nil {
		d := groupconf.Defaults().ZeroDowntime.Shutdown
		return d.Delay.D() + d.DrainTimeout.D() + margin
	}
	sd := cfg.ZeroDowntime.Shutdown
	t := sd.DrainTimeout.D() + margin
	if sd.Enabled {
		t += sd.Delay.D()
	}
	return t
}

func mdAddService(ctx context.Context, s *mdSession, v mdValues) error {
	ref, err := s.localInstance(v["group"], v["name"])
	if err != nil {
		return err
	}
	svc := linuxsvc.Service{
		Home: s.home.Dir, GroupID: ref.Group.ID, InstanceID: ref.Service.ID,
		GroupName: ref.Group.Name, InstanceName: ref.Service.Name, StopTimeout: stopTimeout(s.home, ref),
	}
	paths, err := linuxsvc.Install(svc, serviceDirs(v))
	if err != nil {
		return err
	}
	s.out("Wrote the services of instance %q (%s) in group %q:\n", ref.Service.Name, ref.Service.ID, ref.Group.Name)
	for _, p := range paths {
		s.out("  %s\n", p)
	}
	s.out("To use the systemd unit (as root): systemctl daemon-reload && systemctl enable --now %s\n", linuxsvc.UnitName(ref.Service.ID))
	s.out("Or the init.d script: update-rc.d %s defaults (Debian) or chkconfig --add %s (Red Hat)\n", linuxsvc.InitScriptName(ref.Service.ID), linuxsvc.InitScriptName(ref.Service.ID))
	return nil
}

// nmService is the service of this host's node manager.
func (s *mdSession) nmService() (linuxsvc.Service, error) {
	c, err := domain.LoadNodeManagerConf(s.home)
	if err != nil {
		return linuxsvc.Service{}, err
	}
	svc := linuxsvc.Service{Home: s.home.Dir, InstanceID: c.NodeManagerID, InstanceName: c.HostID, NodeManager: true, StopTimeout: time.Minute}
	if t, err := s.topology(); err == nil {
		if h, err := t.Host(c.HostID); err == nil {
			svc.InstanceName = h.Name
		}
		if a, err := t.AdminNodeManager(); err == nil && a.ID == c.NodeManagerID {
			svc.Admin = true
		}
	}
	return svc, nil
}

func mdAddNMService(ctx context.Context, s *mdSession, v mdValues) error {
	svc, err := s.nmService()
	if err != nil {
		return err
	}
	paths, err := linuxsvc.Install(svc, serviceDirs(v))
	if err != nil {
		return err
	}
	s.out("Wrote the services of this host's node manager %s:\n", svc.InstanceID)
	for _, p := range paths {
		s.out("  %s\n", p)
	}
	s.out("To use the systemd unit (as root): systemctl daemon-reload && systemctl enable --now %s\n", linuxsvc.UnitName(svc.InstanceID))
	s.out("Or the init.d script: update-rc.d %s defaults (Debian) or chkconfig --add %s (Red Hat)\n", linuxsvc.InitScriptName(svc.InstanceID), linuxsvc.InitScriptName(svc.InstanceID))
	return nil
}

func mdRemoveNMService(ctx context.Context, s *mdSession, v mdValues) error {
	c, err := domain.LoadNodeManagerConf(s.home)
	if err != nil {
		return err
	}
	removed, err := linuxsvc.Remove(c.NodeManagerID, serviceDirs(v))
	if err != nil {
		return err
	}
	if len(removed) == 0 {
		s.out("This host's node manager %s had no service files there; nothing removed.\n", c.NodeManagerID)
		return nil
	}
	s.out("Removed the services of this host's node manager %s:\n", c.NodeManagerID)
	for _, p := range removed {
		s.out("  %s\n", p)
	}
	s.out("Run systemctl daemon-reload (as root) if the unit was enabled.\n")
	return nil
}

func mdRemoveService(ctx context.Context, s *mdSession, v mdValues) error {
	ref, err := s.localInstance(v["group"], v["name"])
	if err != nil {
		return err
	}
	removed, err := linuxsvc.Remove(ref.Service.ID, serviceDirs(v))
	if err != nil {
		return err
	}
	if len(removed) == 0 {
		s.out("Instance %q (%s) in group %q had no service files there; nothing removed.\n", ref.Service.Name, ref.Service.ID, ref.Group.Name)
		return nil
	}
	s.out("Removed the services of instance %q (%s) in group %q:\n", ref.Service.Name, ref.Service.ID, ref.Group.Name)
	for _, p := range removed {
		s.out("  %s\n", p)
	}
	s.out("Run systemctl daemon-reload (as root) if the unit was enabled.\n")
	return nil
}

// askNewPassword asks twice on a terminal (without echo), or reads one line
// from standard input otherwise.
func (s *mdSession) askNewPassword(prompt string) (secret.Value, error) {
	if f, ok := s.env.Stdin.(*os.File); ok && isTerminal(f) {
		fmt.Fprintf(s.env.Stderr, "%s: ", prompt)
		a, err := readPasswordNoEcho(f)
		fmt.Fprintln(s.env.Stderr)
		if err != nil {
			return secret.Value{}, fmt.Errorf("reading the password: %w", err)
		}
		fmt.Fprintf(s.env.Stderr, "Again: ")
		b, err := readPasswordNoEcho(f)
		fmt.Fprintln(s.env.Stderr)
		if err != nil {
			return secret.Value{}, fmt.Errorf("reading the password: %w", err)
		}
		defer b.Wipe()
		if !a.Equal(b) {
			a.Wipe()
			return secret.Value{}, errors.New("the two passwords differ")
		}
		return a, nil
	}
	fmt.Fprintf(s.env.Stderr, "%s (one line of standard input): ", prompt)
	line, err := s.readLine()
	fmt.Fprintln(s.env.Stderr)
	if err == io.EOF {
		return secret.Value{}, errors.New("no password given (end of input); use --password_file F or type it when asked")
	}
	if err != nil {
		return secret.Value{}, fmt.Errorf("reading the password: %w", err)
	}
	return secret.FromString(line), nil
}
