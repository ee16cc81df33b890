package tools

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/instance"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
	"golang.org/x/sys/unix"
)

var startinstanceTool = Tool{
	Name: "startinstance", Summary: "start, stop and query gateway instances", Linked: true,
	Run: runStartinstance,
}

const startinstanceUsage = `usage:"startinstance [[-n instance-name -g group-name [instance-args]] | [directory-location [instance-args]]]"`

const startinstanceHelp = startinstanceUsage + `

Starts a gateway instance in the foreground, or as a daemon with -d; stops it
with -k; tells whether it runs with -s. With no arguments it lists the
instances registered on this host, or starts the only one.

  -n NAME        instance name (with -g)
  -g GROUP       group name (with -n)
  -h DIR         the instance directory (groups/<group-id>/<instance-id>);
                 a directory may also be given without -h
  -d             run as a daemon: return once the instance reports itself
                 ready (exit 0), or fail with the reason (exit 1) if it does
                 not within startup.timeout (60 s by default)
  -k             stop the instance and wait until its process has ended
                 (SIGTERM; SIGKILL once its stop budget - zero-downtime delay
                 + drain timeout + 15 s - has passed)
  -s             status: exit 0 when running, 1 otherwise
  -q             quiet (same as -Dquiet): no console log, no messages
  -v             change to the instance directory on start
  -b FILE        boot trace: where the daemon's console output goes
                 (default <instance dir>/trace/boot.log)
  -D KEY[=VAL]   set a configuration property for this run, e.g.
                 -DzeroDowntime.shutdown.delay=2 (also -D KEY=VAL); a key
                 without a value is set to true
  -e             end of options: what follows is a directory
  -P             ask for the group's passphrase on the terminal (no echo)
  --passphrase_file FILE
                 read the group's passphrase from FILE (mode 0600 or 0400,
                 owned by the user running startinstance; systemd's
                 LoadCredential= makes one)
  --passphrase_fd N
                 read it from inherited file descriptor N (a pipe)
                 Without any, a group with a passphrase asks on the terminal
                 when there is one, and refuses to start otherwise.
  --help         this help

Signals: SIGTERM or SIGINT start a graceful shutdown (zero-downtime when
zeroDowntime.shutdown.enabled); a second one, or SIGQUIT, stops at once.
SIGHUP reloads the configuration (as POST /deployment/reload on the
management listener does): the same files and -D properties as at start;
a configuration that does not load, or a listener that cannot be bound,
changes nothing (instance.log says why).

Exit codes: 0 success; 1 failure (the reason is printed); 2 wrong usage.
Files: var/run/<instance-id>.pid and .lock in the install directory
($GATEHOUSE_HOME).`

type siOpts struct {
	name, group, dir string
	boot             string
	daemon, kill     bool
	status, quiet    bool
	chdir            bool
	props            map[string]string
	propOrder        []string
	help             bool
	pass             passphraseSource
}

func parseStartinstance(args []string) (*siOpts, error) {
	o := &siOpts{props: map[string]string{}, pass: newPassphraseSource()}
	need := func(i *int, flag string) (string, error) {
		if *i+1 >= len(args) {
			return "", usagef("startinstance", "%s needs a value", flag)
		}
		*i++
		return args[*i], nil
	}
	setProp := func(kv string) error {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			v = "true"
		}
		if k == "" {
			return usagef("startinstance", "-D needs a property name, as in -Dname=value")
		}
		if k == "quiet" {
			o.quiet = v != "false"
			return nil
		}
		if _, dup := o.props[k]; !dup {
			o.propOrder = append(o.propOrder, k)
		}
		o.props[k] = v
		return nil
	}
	var positional []string
	var err error
	for i := 0; i < len(args); i++ {
		a := args[i]
		if ok, err := o.pass.parse("startinstance", args, &i); ok {
			if err != nil {
				return nil, err
			}
			continue
		}
		switch {
		case a == "--help" || a == "-help" || a == "-?":
			o.help = true
		case a == "-n":
			if o.name, err = need(&i, a); err != nil {
				return nil, err
			}
		case a == "-g":
			if o.group, err = need(&i, a); err != nil {
				return nil, err
			}
		case a == "-h":
			if o.dir, err = need(&i, a); err != nil {
				return nil, err
			}
		case a == "-b":
			if o.boot, err = need(&i, a); err != nil {
				return nil, err
			}
		case a == "-d":
			o.daemon = true
		case a == "-k":
			o.kill = true
		case a == "-s":
			o.status = true
		case a == "-q":
			o.quiet = true
		case a == "-v":
			o.chdir = true
		case a == "-D":
			kv, err := need(&i, a)
			if err != nil {
				return nil, err
			}
			if err := setProp(kv); err != nil {
				return nil, err
			}
		case strings.HasPrefix(a, "-D"):
			if err := setProp(a[2:]); err != nil {
				return nil, err
			}
		case a == "-e":
			positional = append(positional, args[i+1:]...)
			i = len(args)
		case strings.HasPrefix(a, "-") && a != "-":
			return nil, usagef("startinstance", "unknown option %q; accepted: -n -g -h -d -k -s -q -v -b -D -e -P --passphrase_file --passphrase_fd --help", a)
		default:
			positional = append(positional, a)
		}
	}
	if len(positional) > 1 {
		return nil, usagef("startinstance", "one instance directory at most, got %q", positional)
	}
	if len(positional) == 1 {
		if o.dir != "" {
			return nil, usagef("startinstance", "give the instance directory once (-h %s or %s)", o.dir, positional[0])
		}
		o.dir = positional[0]
	}
	if (o.name == "") != (o.group == "") {
		return nil, usagef("startinstance", "-n and -g go together: give the instance name and its group")
	}
	if o.name != "" && o.dir != "" {
		return nil, usagef("startinstance", "give either -n/-g or a directory, not both")
	}
	n := 0
	for _, b := range []bool{o.daemon, o.kill, o.status} {
		if b {
			n++
		}
	}
	if n > 1 {
		return nil, usagef("startinstance", "-d, -k and -s exclude each other")
	}
	return o, nil
}

// target is a resolved local instance.
type target struct {
	h     home.Home
	ref   topology.InstanceRef
	gid   string
	iid   string
	gname string
	iname string
}

func (t target) label() string { return fmt.Sprintf("instance %q in group %q", t.iname, t.gname) }
func (t target) dir() string   { return t.h.InstanceDir(t.gid, t.iid) }
func (t target) cmdline() string {
	return fmt.Sprintf("startinstance -n %q -g %q", t.iname, t.gname)
}

func runStartinstance(ctx context.Context, env *Env, args []string) error {
	o, err := parseStartinstance(args)
	if err != nil {
		return err
	}
	if o.help {
		fmt.Fprintln(env.Stdout, startinstanceHelp)
		return nil
	}
	h, err := home.Resolve()
	if err != nil {
		return err
	}
	topo, err := topology.NewStore(h, nil).Load()
	if err != nil {
		return err
	}
	hostID, err := domain.LocalHost(h)
	if err != nil {
		return err
	}
	var t target
	switch {
	case o.name != "":
		ref, err := topo.FindInstance(o.group, o.name)
		if err != nil {
			return withListing(err, topo, hostID)
		}
		t = newTarget(h, ref)
	case o.dir != "":
		t, err = targetFromDir(h, topo, o.dir)
		if err != nil {
			return withListing(err, topo, hostID)
		}
	default:
		local := topo.Instances(hostID)
		if len(local) != 1 {
			return listInstances(env, topo, hostID)
		}
		t = newTarget(h, local[0])
	}
	if t.ref.Service.HostID != hostID {
		return fmt.Errorf("%s runs on host %s, not on this host (%s)", t.label(), t.ref.Service.HostID, hostID)
	}
	switch {
	case o.status:
		return instanceStatus(env, t, o.quiet)
	case o.kill:
		err := stopInstance(ctx, env, t, o.quiet)
		auditInstance(env, t, "stop instance", "startinstance -k", err)
		return err
	}
	// The group's passphrase, when it has one, opens its secrets before
	// anything reads them; a wrong one stops here.
	pass, err := unlockScope(env, h, secret.GroupScope(t.gid), o.pass)
	if err != nil {
		auditInstance(env, t, "start instance", "startinstance", err)
		return fmt.Errorf("%s does not start: %w", t.label(), err)
	}
	defer pass.Wipe()
	cfg, err := o.loadConfig(t)
	if err != nil {
		return fmt.Errorf("%s does not start: %w", t.label(), err)
	}
	if o.daemon {
		err := startDaemon(ctx, env, t, o, cfg, pass)
		auditInstance(env, t, "start instance", "startinstance -d", err)
		return err
	}
	// A daemon child (run by startinstance -d, which records the start)
	// records nothing itself.
	child := os.Getenv(readyFDEnv) != ""
	ready := false
	err = runForeground(ctx, env, t, o, cfg, func() {
		ready = true
		if !child {
			auditInstance(env, t, "start instance", "startinstance", nil)
		}
	})
	if !ready && !child {
		auditInstance(env, t, "start instance", "startinstance", err)
	}
	return err
}

// loadConfig loads the configuration of t with the -D properties of o: at
// start, and again for each reload (POST /deployment/reload, SIGHUP).
func (o *siOpts) loadConfig(t target) (*groupconf.Config, error) {
	cfg, err := groupconf.LoadInstance(t.h, t.gid, t.iid, o.props, o.propOrder)
	if err != nil {
		return nil, err
	}
	// Files the configuration names must be the group's own (or allowed
	// by this host's node manager settings): never the domain's keys.
	var allowed []string
	if nc, err := domain.LoadNodeManagerConf(t.h); err == nil {
		allowed = nc.AllowedConfigDirs
	}
	if err := (groupconf.FilePolicy{Home: t.h, GroupID: t.gid, Allowed: allowed}).Check(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// auditInstance records a start or stop made with this tool in the domain
// audit log. A log that cannot be written is reported, not fatal: the
// instance's state matters more than the record of it.
func auditInstance(env *Env, t target, action, detail string, err error) {
	e := audit.Entry{
		User: osUser(), Via: "startinstance", Remote: "local",
		Action: action, Detail: detail + " " + t.label(), Targets: []string{t.gid, t.iid},
		Outcome: audit.OutcomeOK,
	}
	if err != nil {
		e.Outcome, e.Error = audit.OutcomeError, err.Error()
	}
	if _, aerr := audit.Open(t.h).Record(context.Background(), e); aerr != nil {
		fmt.Fprintf(env.Stderr, "startinstance: warning: the audit log could not be written: %v\n", aerr)
	}
}

func newTarget(h home.Home, ref topology.InstanceRef) target {
	return target{h: h, ref: ref, gid: ref.Group.ID, iid: ref.Service.ID, gname: ref.Group.Name, iname: ref.Service.Name}
}

// targetFromDir resolves groups/<gid>/<iid> (absolute or relative).
func targetFromDir(h home.Home, topo *topology.Topology, dir string) (target, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return target{}, err
	}
	rel, err := filepath.Rel(h.GroupsDir(), abs)
	parts := strings.Split(filepath.ToSlash(rel), "/")
	if err != nil || len(parts) != 2 || strings.HasPrefix(rel, "..") {
		return target{}, fmt.Errorf("%s is not an instance directory of this install directory (want %s/<group-id>/<instance-id>)", dir, h.GroupsDir())
	}
	ref, err := topo.FindInstanceID(parts[1])
	if err != nil {
		return target{}, err
	}
	if ref.Group.ID != parts[0] {
		return target{}, fmt.Errorf("%s: instance %s belongs to group %s, not %s", dir, parts[1], ref.Group.ID, parts[0])
	}
	return newTarget(h, ref), nil
}

func withListing(err error, topo *topology.Topology, hostID string) error {
	var b strings.Builder
	b.WriteString(err.Error())
	local := topo.Instances(hostID)
	if len(local) > 0 {
		b.WriteString("\nInstances registered on this host:")
		for _, r := range local {
			fmt.Fprintf(&b, "\n  startinstance -n %q -g %q", r.Service.Name, r.Group.Name)
		}
	}
	return errors.New(b.String())
}

func listInstances(env *Env, topo *topology.Topology, hostID string) error {
	local := topo.Instances(hostID)
	fmt.Fprintln(env.Stdout, startinstanceUsage)
	fmt.Fprintln(env.Stdout)
	if len(local) == 0 {
		fmt.Fprintln(env.Stdout, "No API Gateway instances are registered on this machine. Create one with:")
		fmt.Fprintln(env.Stdout)
		fmt.Fprintln(env.Stdout, `managedomain -c -n "server1" -g "group1"`)
		return &ExitError{Code: 1}
	}
	fmt.Fprintln(env.Stdout, "The API Gateway instances listed below are available to run on this machine as follows:")
	fmt.Fprintln(env.Stdout)
	for _, r := range local {
		fmt.Fprintf(env.Stdout, "startinstance -n %q -g %q\n", r.Service.Name, r.Group.Name)
	}
	return nil
}

func instanceStatus(env *Env, t target, quiet bool) error {
	st, err := home.Probe(t.h.RunFiles(t.iid))
	if err != nil {
		return err
	}
	if st.StalePID != 0 && !quiet {
		fmt.Fprintf(env.Stderr, "startinstance: removed a stale pid file (pid %d is not %s)\n", st.StalePID, t.label())
	}
	if !st.Running {
		if !quiet {
			fmt.Fprintf(env.Stdout, "%s is not running\n", t.label())
		}
		return &ExitError{Code: 1}
	}
	if !quiet {
		if st.Record != nil {
			fmt.Fprintf(env.Stdout, "%s is running (pid %d)\n", t.label(), st.Record.PID)
		} else {
			fmt.Fprintf(env.Stdout, "%s is running\n", t.label())
		}
	}
	return nil
}

// defaultStopGrace is added to the instance's own stop budget before -k
// resorts to SIGKILL.
const defaultStopGrace = 15 * time.Second

// stopBudget is how long an instance may take to stop after SIGTERM.
func stopBudget(cfg *groupconf.Config) time.Duration {
	d := cfg.ZeroDowntime.Shutdown.DrainTimeout.D()
	if cfg.ZeroDowntime.Shutdown.Enabled {
		d += cfg.ZeroDowntime.Shutdown.Delay.D()
	}
	return d
}

func stopInstance(ctx context.Context, env *Env, t target, quiet bool) error {
	rf := t.h.RunFiles(t.iid)
	// Asked to stop: it should stay stopped, also for a node manager that
	// starts later (home.Desired).
	if err := home.WriteDesired(rf, home.DesiredStopped, requester("startinstance -k")); err != nil {
		return err
	}
	st, err := home.Probe(rf)
	if err != nil {
		return err
	}
	if st.StalePID != 0 && !quiet {
		fmt.Fprintf(env.Stderr, "startinstance: removed a stale pid file (pid %d is not %s)\n", st.StalePID, t.label())
	}
	if !st.Running {
		if !quiet {
			fmt.Fprintf(env.Stdout, "%s is not running\n", t.label())
		}
		return nil
	}
	if st.Record == nil {
		return fmt.Errorf("%s holds its lock but its process record cannot be verified (%s); not signalling", t.label(), rf.Lock)
	}
	rec := *st.Record
	budget := rec.StopBudget
	if budget <= 0 {
		budget = 60 * time.Second
	}
	budget += defaultStopGrace
	if err := rec.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stopping %s: %w", t.label(), err)
	}
	if !quiet {
		fmt.Fprintf(env.Stdout, "Stopping %s (pid %d)...\n", t.label(), rec.PID)
	}
	wctx, cancel := context.WithTimeout(ctx, budget)
	err = home.WaitStopped(wctx, rf)
	cancel()
	if err == nil {
		if !quiet {
			fmt.Fprintf(env.Stdout, "%s stopped\n", t.label())
		}
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	fmt.Fprintf(env.Stderr, "startinstance: %s did not stop within %v; sending SIGKILL\n", t.label(), budget)
	if err := rec.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("killing %s: %w", t.label(), err)
	}
	kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := home.WaitStopped(kctx, rf); err != nil {
		return fmt.Errorf("%s (pid %d) still holds its lock after SIGKILL: %w", t.label(), rec.PID, err)
	}
	// Killed on purpose: a node manager must not take it for a crash.
	if err := home.WriteStopMark(rf, rec, "killed by startinstance -k after its stop budget"); err != nil {
		return err
	}
	if !quiet {
		fmt.Fprintf(env.Stdout, "%s killed\n", t.label())
	}
	return nil
}

func startDaemon(ctx context.Context, env *Env, t target, o *siOpts, cfg *groupconf.Config, pass secret.Value) error {
	if st, err := home.Probe(t.h.RunFiles(t.iid)); err == nil && st.Running {
		if st.Record != nil {
			return fmt.Errorf("%s is already running (pid %d)", t.label(), st.Record.PID)
		}
		return fmt.Errorf("%s is already running", t.label())
	}
	boot := o.boot
	if boot == "" {
		boot = filepath.Join(t.h.InstanceTraceDir(t.gid, t.iid), "boot.log")
	}
	args := []string{"startinstance", "-h", t.dir()}
	if o.quiet {
		args = append(args, "-q")
	}
	if o.chdir {
		args = append(args, "-v")
	}
	for _, k := range o.propOrder {
		args = append(args, "-D"+k+"="+o.props[k])
	}
	var files []*os.File
	if !pass.IsZero() {
		// The child reads it from a pipe (descriptor 4): never on disk,
		// never in its arguments or environment.
		passFile, err := passphrasePipe(pass)
		if err != nil {
			return err
		}
		defer passFile.Close()
		files = append(files, passFile)
		args = append(args, "--passphrase_fd", "4")
	}
	return spawnDaemon(ctx, env, daemonSpec{
		Label: t.label(), Exe: env.Exe, Args: args, Home: t.h, Passphrases: files,
		Boot: boot, Header: "startinstance -d " + t.label(),
		Timeout: cfg.Startup.Timeout.D(), TimeoutHint: "startup.timeout", Quiet: o.quiet,
	})
}

func tailFile(path string, from int64, lines int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	f.Seek(from, io.SeekStart)
	data, _ := io.ReadAll(io.LimitReader(f, 1<<20))
	ls := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// runForeground runs the instance in this process until it is stopped.
// onReady, if not nil, is called once the instance serves.
func runForeground(ctx context.Context, env *Env, t target, o *siOpts, cfg *groupconf.Config, onReady func()) (err error) {
	ready := readyNotifier()
	defer func() { ready.report(err) }()

	claim, err := home.ClaimRunFiles(t.h.RunFiles(t.iid))
	if err != nil {
		if errors.Is(err, home.ErrRunning) {
			return fmt.Errorf("%s is already running: %w", t.label(), err)
		}
		return err
	}
	defer claim.Release()
	rf := t.h.RunFiles(t.iid)
	if err := home.ClearStopMark(rf); err != nil {
		return err
	}
	// It runs: it should run, also for a node manager that starts after a
	// crash of both (home.Desired).
	if err := home.WriteDesired(rf, home.DesiredRunning, requester("startinstance")); err != nil {
		return err
	}
	budget := stopBudget(cfg)
	var claimMu sync.Mutex // claim.Rec: reloads raise its stop budget
	if err := claim.SetStopBudget(budget); err != nil {
		return err
	}
	if o.chdir {
		if err := os.Chdir(t.dir()); err != nil {
			return fmt.Errorf("-v: %w", err)
		}
	}
	// Signals are caught before the listeners open, so a stop request that
	// arrives during start-up is not lost.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	mgmtTLS, err := ensureInstanceCert(env, t, cfg, o.quiet)
	if err != nil {
		return fmt.Errorf("%s does not start: %w", t.label(), err)
	}
	// POSTs to the management listener are taken from this host's node
	// manager only.
	ownNM := ""
	if nc, err := domain.LoadNodeManagerConf(t.h); err == nil && nc.NodeManagerID != "" {
		ownNM = pki.NodeManagerCommonName(nc.NodeManagerID, nc.HostID)
	}
	inst, err := instance.New(instance.Options{
		Home: t.h, GroupID: t.gid, InstanceID: t.iid, GroupName: t.gname, InstanceName: t.iname,
		Config: cfg, Quiet: o.quiet, Console: env.Stderr, ManagementTLS: mgmtTLS, NodeManager: ownNM,
		Load: func() (*groupconf.Config, error) { // called by one reload at a time
			c, err := o.loadConfig(t)
			// startinstance -k waits the stop budget before SIGKILL: never
			// less than the longest the configurations ask for.
			if err == nil {
				claimMu.Lock()
				if b := stopBudget(c); b > budget && claim.SetStopBudget(b) == nil {
					budget = b
				}
				claimMu.Unlock()
			}
			return c, err
		},
	})
	if err != nil {
		return fmt.Errorf("%s: %w", t.label(), err)
	}
	if err := inst.Start(); err != nil {
		return fmt.Errorf("%s does not start: %w", t.label(), err)
	}
	ready.report(nil)
	if onReady != nil {
		onReady()
	}
	stopCtx, stopNow := context.WithCancel(context.Background())
	defer stopNow()
	shutdownStarted := false
	cancelled := ctx.Done()
	waitDone := make(chan error, 1)
	go func() { waitDone <- inst.Wait() }()
	// stopHow is set when the stop was asked for; the stop mark then tells a
	// supervisor that the instance did not fail (home.StopMark).
	stopHow := ""
	for {
		select {
		case err := <-waitDone:
			if stopHow != "" {
				claimMu.Lock()
				rec := claim.Rec
				claimMu.Unlock()
				if merr := home.WriteStopMark(rf, rec, stopHow); merr != nil && err == nil {
					err = merr
				}
			}
			return err
		case <-cancelled:
			cancelled = nil
			stopHow = "cancelled"
			stopNow()
			inst.Close()
		case s := <-sigs:
			if s == syscall.SIGHUP {
				// Reload logs its outcome (instance.log, and the console
				// unless quiet); a refused one changes nothing.
				go func() { _ = inst.Reload() }()
				continue
			}
			if stopHow == "" {
				stopHow = unix.SignalName(s.(syscall.Signal))
			}
			switch {
			case s == syscall.SIGQUIT || shutdownStarted:
				stopNow()
				inst.Close()
			default:
				shutdownStarted = true
				go inst.Shutdown(stopCtx)
			}
		}
	}
}

// requester is who asked for what startinstance does (home.Desired.By).
func requester(what string) string {
	if by := os.Getenv(home.EnvBy); by != "" {
		return what + " by " + by
	}
	u := os.Getenv("USER")
	if u == "" {
		u = strconv.Itoa(os.Getuid())
	}
	return what + " by user " + u
}
