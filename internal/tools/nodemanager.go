package tools

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/nodemanager"
	"github.com/gatehouse-gw/gatehouse/internal/portinfo"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
	"golang.org/x/sys/unix"
	"gopkg.in/natefinch/lumberjack.v2"
)

var nodemanagerTool = Tool{
	Name: "nodemanager", Summary: "run, stop and query this host's node manager", Linked: true,
	Run: runNodemanager,
}

const nodemanagerHelp = `usage: nodemanager [-d | -k | -s] [-q] [-P | --passphrase_file F | --passphrase_fd N]

Runs this host's node manager in the foreground (Ctrl-C stops it), or as a
daemon with -d; stops it with -k; tells whether it runs with -s. The node
manager starts, stops and watches the gateway instances of this host, and
restarts an instance that died when its group sets
nodeManager.restartOnFailure. Instances keep running when it stops.

  -d       run as a daemon: return once the node manager is ready (exit 0),
           or fail with the reason (exit 1), e.g. its port in use
  -k       stop the node manager and wait until its process has ended
           (SIGTERM; SIGKILL after its stop budget + 15 s)
  -s       status: exit 0 when running, 1 otherwise
  -q       quiet: no console log, no messages
  --help   this help

When the node manager's secrets have a passphrase (managedomain
--change_passphrase --node_manager), it is taken from:
` + passphraseFlagsHelp + `
  --ca_passphrase_file F, --ca_passphrase_fd N
                       the domain CA's passphrase, on the host that holds its
                       key (asked with -P too): to issue certificates
or, without these, from the passphraseExec program of
system/conf/nodemanager.yaml, or asked on the terminal. passphraseExec also
gives the passphrases of the domain CA and of the groups whose instances it
starts (docs/passphrase.md).

Signals: SIGTERM or SIGINT stop it gracefully; a second one, or SIGQUIT,
stops it at once.

Files (in the install directory, $GATEHOUSE_HOME):
  var/run/<nodemanager-id>.pid, .lock   the pid-and-lock files
  logs/nodemanager/nodemanager.log      its log (JSON, rotated)
  logs/nodemanager/boot.log             console output of -d starts

Exit codes: 0 success; 1 failure (the reason is printed); 2 wrong usage.`

// nmStopBudget is how long the node manager may take to stop after SIGTERM
// (its listener's shutdown); -k waits this + defaultStopGrace.
const nmStopBudget = 15 * time.Second

// nmStartTimeout bounds how long -d waits for the node manager to be ready.
const nmStartTimeout = 60 * time.Second

type nmOpts struct {
	daemon, kill, status, quiet, help bool
	pass                              passphraseSource
	caPass                            passphraseSource // --ca_passphrase_file, --ca_passphrase_fd
}

func parseNodemanager(args []string) (*nmOpts, error) {
	o := &nmOpts{pass: newPassphraseSource()}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if ok, err := o.pass.parse("nodemanager", args, &i); ok {
			if err != nil {
				return nil, err
			}
			continue
		}
		if a == "--ca_passphrase_file" || a == "--ca_passphrase_fd" {
			// The same options for the domain CA's passphrase.
			ca := []string{strings.Replace(a, "--ca_", "--", 1)}
			if i+1 < len(args) {
				ca = append(ca, args[i+1])
			}
			j := 0
			if _, err := o.caPass.parse("nodemanager", ca, &j); err != nil {
				return nil, usagef("nodemanager", "%s needs a value", a)
			}
			i += j
			continue
		}
		switch a {
		case "--help", "-help", "-?":
			o.help = true
		case "-d":
			o.daemon = true
		case "-k":
			o.kill = true
		case "-s":
			o.status = true
		case "-q":
			o.quiet = true
		default:
			return nil, usagef("nodemanager", "unknown argument %q; accepted: -d -k -s -q -P --passphrase_file --passphrase_fd --help", a)
		}
	}
	n := 0
	for _, b := range []bool{o.daemon, o.kill, o.status} {
		if b {
			n++
		}
	}
	if n > 1 {
		return nil, usagef("nodemanager", "-d, -k and -s exclude each other")
	}
	return o, nil
}

// nodemanagerLogDir is where the node manager logs: outside var/run and
// outside what backups name (conf, groups, ext, system/conf).
func nodemanagerLogDir(h home.Home) string { return h.Path("logs", "nodemanager") }

func runNodemanager(ctx context.Context, env *Env, args []string) error {
	o, err := parseNodemanager(args)
	if err != nil {
		return err
	}
	if o.help {
		fmt.Fprintln(env.Stdout, nodemanagerHelp)
		return nil
	}
	h, err := home.Resolve()
	if err != nil {
		return err
	}
	conf, err := domain.LoadNodeManagerConf(h)
	if err != nil {
		return err
	}
	if conf.NodeManagerID == "" {
		return fmt.Errorf("%s names no nodeManagerID", h.NodeManagerConf())
	}
	rf := h.RunFiles(conf.NodeManagerID)
	label := fmt.Sprintf("the node manager of this host (%s)", conf.NodeManagerID)
	switch {
	case o.status:
		return nodemanagerStatus(env, rf, label, o.quiet)
	case o.kill:
		return nodemanagerStop(ctx, env, rf, label, o.quiet)
	}
	// Its own secrets' passphrase first: a wrong one stops here.
	pass, err := nodemanagerPassphrase(ctx, env, h, conf, secret.ScopeNodeManagers, o.pass, o.pass.prompt)
	if err != nil {
		return fmt.Errorf("%s does not start: %w", label, err)
	}
	defer pass.Wipe()
	// The domain CA's, on the host that holds its key: to issue the node
	// manager's certificate and sign those of joining hosts.
	caPass, err := nodemanagerPassphrase(ctx, env, h, conf, secret.ScopeCA, o.caPass, o.pass.prompt)
	if err != nil {
		return fmt.Errorf("%s does not start: %w", label, err)
	}
	defer caPass.Wipe()
	if o.daemon {
		return nodemanagerDaemon(ctx, env, h, rf, label, o.quiet, pass, caPass)
	}
	return nodemanagerForeground(ctx, env, h, conf, rf, label, o.quiet, pass, caPass)
}

// nodemanagerPassphrase unlocks scope s when it has a passphrase: from
// src; else from passphraseExec; else asked on the terminal (the CA's only
// with -P: a node manager without it still runs, and what needs the CA's
// key says so).
func nodemanagerPassphrase(ctx context.Context, env *Env, h home.Home, conf domain.NodeManagerConf, s secret.Scope, src passphraseSource, prompt bool) (secret.Value, error) {
	if !s.Protected(h) {
		return unlockScope(env, h, s, src)
	}
	if !src.given() && len(conf.PassphraseExec) > 0 {
		return nodemanager.ExecPassphrase(ctx, h, conf, s)
	}
	if s == secret.ScopeCA && !src.given() {
		if !prompt {
			return secret.Value{}, nil
		}
		src.prompt = true
	}
	return unlockScope(env, h, s, src)
}

func nodemanagerStatus(env *Env, rf home.RunFiles, label string, quiet bool) error {
	st, err := home.Probe(rf)
	if err != nil {
		return err
	}
	if st.StalePID != 0 && !quiet {
		fmt.Fprintf(env.Stderr, "nodemanager: removed a stale pid file (pid %d is not %s)\n", st.StalePID, label)
	}
	if !st.Running {
		if !quiet {
			fmt.Fprintf(env.Stdout, "%s is not running\n", label)
		}
		return &ExitError{Code: 1}
	}
	if !quiet {
		if st.Record != nil {
			fmt.Fprintf(env.Stdout, "%s is running (pid %d)\n", label, st.Record.PID)
		} else {
			fmt.Fprintf(env.Stdout, "%s is running\n", label)
		}
	}
	return nil
}

func nodemanagerStop(ctx context.Context, env *Env, rf home.RunFiles, label string, quiet bool) error {
	st, err := home.Probe(rf)
	if err != nil {
		return err
	}
	if !st.Running {
		if !quiet {
			fmt.Fprintf(env.Stdout, "%s is not running\n", label)
		}
		return nil
	}
	if st.Record == nil {
		return fmt.Errorf("%s holds its lock but its process record cannot be verified (%s); not signalling", label, rf.Lock)
	}
	rec := *st.Record
	budget := rec.StopBudget
	if budget <= 0 {
		budget = nmStopBudget
	}
	budget += defaultStopGrace
	if err := rec.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stopping %s: %w", label, err)
	}
	if !quiet {
		fmt.Fprintf(env.Stdout, "Stopping %s (pid %d)...\n", label, rec.PID)
	}
	wctx, cancel := context.WithTimeout(ctx, budget)
	err = home.WaitStopped(wctx, rf)
	cancel()
	if err == nil {
		if !quiet {
			fmt.Fprintf(env.Stdout, "%s stopped\n", label)
		}
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	fmt.Fprintf(env.Stderr, "nodemanager: %s did not stop within %v; sending SIGKILL\n", label, budget)
	if err := rec.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("killing %s: %w", label, err)
	}
	kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := home.WaitStopped(kctx, rf); err != nil {
		return fmt.Errorf("%s (pid %d) still holds its lock after SIGKILL: %w", label, rec.PID, err)
	}
	if !quiet {
		fmt.Fprintf(env.Stdout, "%s killed\n", label)
	}
	return nil
}

// nodemanagerDaemon runs the node manager as a new session with the
// readiness pipe of startinstance -d (GATEHOUSE_READY_FD=3) and returns once
// it reports READY, or its reason.
func nodemanagerDaemon(ctx context.Context, env *Env, h home.Home, rf home.RunFiles, label string, quiet bool, pass, caPass secret.Value) error {
	if st, err := home.Probe(rf); err == nil && st.Running {
		if st.Record != nil {
			return fmt.Errorf("%s is already running (pid %d)", label, st.Record.PID)
		}
		return fmt.Errorf("%s is already running", label)
	}
	args := []string{"nodemanager"}
	if quiet {
		args = append(args, "-q")
	}
	// The passphrases reach the child through pipes (descriptors 4 and
	// on): never on disk, in its arguments or environment.
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, p := range []struct {
		v    secret.Value
		flag string
	}{{pass, "--passphrase_fd"}, {caPass, "--ca_passphrase_fd"}} {
		if p.v.IsZero() {
			continue
		}
		f, err := passphrasePipe(p.v)
		if err != nil {
			return err
		}
		files = append(files, f)
		args = append(args, p.flag, strconv.Itoa(3+len(files)))
	}
	return spawnDaemon(ctx, env, daemonSpec{
		Label: label, Exe: env.Exe, Args: args, Home: h, Passphrases: files,
		Boot: filepath.Join(nodemanagerLogDir(h), "boot.log"), Header: "nodemanager -d",
		Timeout: nmStartTimeout, Quiet: quiet,
	})
}

// nodemanagerForeground runs the node manager in this process until a
// signal stops it.
func nodemanagerForeground(ctx context.Context, env *Env, h home.Home, conf domain.NodeManagerConf, rf home.RunFiles, label string, quiet bool, pass, caPass secret.Value) (err error) {
	ready := readyNotifier()
	defer func() { ready.report(err) }()

	claim, err := home.ClaimRunFiles(rf)
	if err != nil {
		if errors.Is(err, home.ErrRunning) {
			return fmt.Errorf("%s is already running: %w", label, err)
		}
		return err
	}
	defer claim.Release()
	if err := claim.SetStopBudget(nmStopBudget); err != nil {
		return err
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT)
	defer signal.Stop(sigs)

	logDir := nodemanagerLogDir(h)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", logDir, err)
	}
	logFile := &lumberjack.Logger{Filename: filepath.Join(logDir, "nodemanager.log"), MaxSize: 50, MaxBackups: 10, MaxAge: 30}
	defer logFile.Close()
	var handler slog.Handler = slog.NewJSONHandler(logFile, nil)
	if !quiet {
		handler = slog.NewMultiHandler(handler, slog.NewTextHandler(env.Stderr, nil))
	}
	log := slog.New(handler)

	nm, err := nodemanager.New(nodemanager.Options{Home: h, Logger: log, Exe: env.Exe, Console: consoleUnless(quiet, env.Stdout), Version: Version})
	if err != nil {
		return err
	}
	if err := nm.Start(); err != nil {
		if errors.Is(err, unix.EADDRINUSE) || strings.Contains(err.Error(), "address already in use") {
			if pid, cmd, ok := portinfo.Holder(conf.Port); ok {
				err = fmt.Errorf("%w (port %d is held by pid %d, %s)", err, conf.Port, pid, cmd)
			}
		}
		log.Error("node manager does not start", "error", err.Error())
		return fmt.Errorf("%s does not start: %w", label, err)
	}
	ready.report(nil)
	if !quiet {
		fmt.Fprintf(env.Stdout, "Node manager %s started (pid %d), listening on %s\n", conf.NodeManagerID, os.Getpid(), nm.Addr())
	}
	stopCtx, stopNow := context.WithCancel(context.Background())
	defer stopNow()
	shutdownStarted := false
	cancelled := ctx.Done()
	waitDone := make(chan error, 1)
	go func() { waitDone <- nm.Wait() }()
	restarting := false
	for {
		select {
		case err := <-waitDone:
			if restarting {
				claim.Release()
				return nodemanagerRestart(ctx, env, h, rf, log, label, pass, caPass)
			}
			return err
		case <-nm.RestartRequested():
			if shutdownStarted {
				continue
			}
			// An upgrade: stop serving (the instances keep running), then
			// start the install directory's binary in our place.
			shutdownStarted, restarting = true, true
			log.Info("restarting on the install directory's binary", "binary", h.Path("posix", "bin", "gatehouse"))
			sctx, cancel := context.WithTimeout(stopCtx, nmStopBudget)
			go func() { defer cancel(); nm.Shutdown(sctx) }()
		case <-cancelled:
			cancelled = nil
			stopNow()
			if !shutdownStarted {
				shutdownStarted = true
				go nm.Shutdown(stopCtx)
			}
		case s := <-sigs:
			switch {
			case s == syscall.SIGQUIT || shutdownStarted:
				stopNow()
				if !shutdownStarted {
					shutdownStarted = true
					go nm.Shutdown(stopCtx)
				}
			default:
				shutdownStarted = true
				log.Info("stop requested", "signal", unix.SignalName(s.(syscall.Signal)))
				sctx, cancel := context.WithTimeout(stopCtx, nmStopBudget)
				go func() { defer cancel(); nm.Shutdown(sctx) }()
			}
		}
	}
}

func consoleUnless(quiet bool, w io.Writer) io.Writer {
	if quiet {
		return nil
	}
	return w
}

// nodemanagerRestart starts the node manager again once this process has
// stopped serving (an upgrade's POST /nm/nodemanager/restart): the install
// directory's posix/bin/gatehouse as a daemon, with this process's
// passphrases through pipes; if it does not start, this process's own
// program (/proc/self/exe reaches it even after the upgrade renamed the new
// binary over its path), so that the host is never left without its node
// manager.
func nodemanagerRestart(ctx context.Context, env *Env, h home.Home, rf home.RunFiles, log *slog.Logger, label string, pass, caPass secret.Value) error {
	newBin := h.Path("posix", "bin", "gatehouse")
	if _, err := os.Stat(newBin); err != nil {
		newBin = "/proc/self/exe"
	}
	denv := *env
	denv.Exe = newBin
	err := nodemanagerDaemon(ctx, &denv, h, rf, label, true, pass, caPass)
	if err == nil {
		log.Info("node manager restarted on the new binary", "binary", newBin)
		return nil
	}
	log.Error("the new binary did not start the node manager; starting this one again", "binary", newBin, "error", err.Error())
	denv.Exe = "/proc/self/exe"
	if err2 := nodemanagerDaemon(ctx, &denv, h, rf, label, true, pass, caPass); err2 != nil {
		log.Error("the node manager could not be started again", "error", err2.Error())
		return fmt.Errorf("%s: the restart failed (%v) and so did starting the old program again: %w", label, err, err2)
	}
	return fmt.Errorf("%s: the new binary did not start (%w); the old program runs again", label, err)
}
