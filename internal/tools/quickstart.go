package tools

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

var quickstartTool = Tool{
	Name: "quickstart", Summary: "create a QuickStart domain with a running instance and a sample API",
	Linked: true,
	Run:    runQuickstart,
}

const quickstartHelp = `usage: gatehouse quickstart [--traffic_port N] [--management_port M] [--sample_port S] [--port P] [-d]

Creates a QuickStart domain in the install directory ($GATEHOUSE_HOME) if there
is none: group "QuickStart Group" with instance "QuickStart Server", an admin
user "admin" whose random password is printed once (only its hash is stored),
and a sample API at /sample/ (echo, delay, status) served by the instance's own
sample back end. Then it starts the instance and prints what to try.

Running it again reuses the domain; port flags update the instance settings.

  --traffic_port N      API traffic port (default 8080)
  --management_port M   the instance's management port (default 8085)
  --sample_port S       the sample back end's port (default 8081)
  --port P              the Admin Node Manager's port, when the domain is
                        created (default 8090; as managedomain -i --port)
  -d                    return once the instance is ready (daemon); without
                        it, runs in the foreground until Ctrl-C
  --help                this help`

const (
	qsDomain   = "QuickStart Domain"
	qsGroup    = "QuickStart Group"
	qsInstance = "QuickStart Server"
	qsUser     = "admin"
)

// quickstartGroupConfig is the QuickStart group's configuration.
const quickstartGroupConfig = `# QuickStart Group configuration (see docs/configuration.md for every key).
zeroDowntime:
  shutdown:
    enabled: true
    delay: 2
backends:
  - name: sample
    sample: true   # this instance's own sample back end (sample.port)
    timeout: 70
apis:
  - name: sample
    pathPrefix: /sample
    stripPrefix: true
    backend: sample
`

func runQuickstart(ctx context.Context, env *Env, args []string) error {
	var traffic, mgmt, sample, nmPortFlag int
	daemon := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := strings.Cut(a, "=")
		port := func(p *int) error {
			if !hasVal {
				if i+1 >= len(args) {
					return usagef("quickstart", "%s needs a port number", name)
				}
				i++
				val = args[i]
			}
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || n > 65535 {
				return usagef("quickstart", "%s %q is not a TCP port (1-65535)", name, val)
			}
			*p = n
			return nil
		}
		var err error
		switch name {
		case "-h", "--help", "-help":
			fmt.Fprintln(env.Stdout, quickstartHelp)
			return nil
		case "--traffic_port":
			err = port(&traffic)
		case "--management_port":
			err = port(&mgmt)
		case "--sample_port":
			err = port(&sample)
		case "--port":
			err = port(&nmPortFlag)
		case "-d":
			daemon = true
		default:
			err = usagef("quickstart", "unknown option %q; accepted: --traffic_port N, --management_port M, --sample_port S, --port P, -d, --help", a)
		}
		if err != nil {
			return err
		}
	}
	h, err := home.Resolve()
	if err != nil {
		return err
	}
	actor := topology.Actor{User: osUser(), Via: "quickstart", Remote: "local"}
	store := audit.StoreFor(h)
	if !store.Exists() {
		pw, err := randomPassword()
		if err != nil {
			return err
		}
		if _, err := domain.Init(ctx, h, domain.InitOptions{
			DomainName: qsDomain, Username: qsUser, Password: pw, Actor: actor, Port: nmPortFlag,
			Exe: env.Exe, ToolNames: LinkedNames(),
		}); err != nil {
			return fmt.Errorf("creating the QuickStart domain in %s: %w", h.Dir, err)
		}
		fmt.Fprintf(env.Stdout, "Created the QuickStart domain in %s\n", h.Dir)
		fmt.Fprintf(env.Stdout, "Admin user: %s  password: %s\n", qsUser, pw.RevealString())
		fmt.Fprintf(env.Stdout, "  (printed once: only a hash is stored, in %s)\n", h.AdminUsersFile())
	} else if nmPortFlag != 0 {
		return usagef("quickstart", "--port sets the Admin Node Manager's port when the domain is created; this domain exists (change it with managedomain)")
	} else if env.Exe != "" {
		// Keep posix/bin current with the binary being run.
		if err := domain.InstallBinary(h, env.Exe, LinkedNames()); err != nil {
			return err
		}
	}
	topo, err := store.Load()
	if err != nil {
		return err
	}
	ref, err := topo.FindInstance(qsGroup, qsInstance)
	var nf *topology.NotFoundError
	switch {
	case errors.As(err, &nf):
		spec := domain.InstanceSpec{Group: qsGroup, Name: qsInstance, TrafficPort: traffic, ManagementPort: mgmt, Sample: true, SamplePort: sample}
		if _, gerr := topo.GroupByName(qsGroup); gerr != nil {
			spec.GroupConfig = []byte(quickstartGroupConfig)
		}
		if _, err := domain.CreateInstance(ctx, h, actor, spec); err != nil {
			return err
		}
		if topo, err = store.Load(); err != nil {
			return err
		}
		if ref, err = topo.FindInstance(qsGroup, qsInstance); err != nil {
			return err
		}
	case err != nil:
		return err
	default:
		if st, perr := home.Probe(h.RunFiles(ref.Service.ID)); perr == nil && st.Running {
			return fmt.Errorf("%q is already running; stop it first with: startinstance -k -n %q -g %q", qsInstance, qsInstance, qsGroup)
		}
		if traffic != 0 || mgmt != 0 || sample != 0 {
			if err := domain.SetInstancePorts(ctx, h, actor, qsGroup, qsInstance, traffic, mgmt, sample); err != nil {
				return err
			}
		}
	}
	t := newTarget(h, ref)
	cfg, err := groupconf.LoadInstance(h, t.gid, t.iid, nil, nil)
	if err != nil {
		return fmt.Errorf("%s does not start: %w", t.label(), err)
	}
	tryIt := func() {
		base := fmt.Sprintf("http://127.0.0.1:%d", cfg.Traffic.Port)
		fmt.Fprintf(env.Stdout, `
QuickStart is ready: %s is serving on port %d.
Try:
  curl %s/healthcheck
  curl %s/sample/echo
  curl -X POST -d 'hello' %s/sample/echo
  curl %s/sample/delay/500
  curl -i %s/sample/status/418
The management listener (also /metrics, /remotehosts) takes mutual TLS with domain certificates;
on this host the instance's own certificate will do as the client's:
  curl --cacert %s --cert %s --key %s https://127.0.0.1:%d/status
or through the Admin Node Manager (start it with: %s -d):
  curl --cacert %s -u %s https://localhost:%d/api/router/service/%s/status
Install directory: %s (logs in %s)
Put the tools on your PATH (gatehouse, and each tool by its name: managedomain, client, deploy, ...):
  export PATH=%s:$PATH
`, t.label(), cfg.Traffic.Port, base, base, base, base, base,
			pki.CertFile(h), pki.InstanceCertFile(h, t.gid, t.iid), pki.InstanceKeyFile(h, t.gid, t.iid), cfg.Management.Port,
			h.Path("posix", "bin", "nodemanager"), pki.CertFile(h), qsUser, nmPort(h), t.iid,
			h.Dir, h.InstanceLogsDir(t.gid, t.iid), h.BinDir())
		if daemon {
			fmt.Fprintf(env.Stdout, "Stop it with: %s -k -n %q -g %q\n", h.Path("posix", "bin", "startinstance"), qsInstance, qsGroup)
		} else {
			fmt.Fprintln(env.Stdout, "Press Ctrl-C to stop it.")
		}
	}
	o := &siOpts{props: map[string]string{}}
	if daemon {
		exe := h.Path("posix", "bin", "gatehouse")
		if _, err := os.Stat(exe); err != nil {
			exe = env.Exe
		}
		denv := *env
		denv.Exe = exe
		if err := startDaemon(ctx, &denv, t, o, cfg, secret.Value{}); err != nil {
			return err
		}
		tryIt()
		return nil
	}
	return runForeground(ctx, env, t, o, cfg, tryIt)
}

func osUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return strconv.Itoa(os.Getuid())
}

// randomPassword returns a random password: 26 base32 characters, 128 bits
// (crypto/rand.Text).
func randomPassword() (secret.Value, error) {
	return secret.FromString(rand.Text()), nil
}
