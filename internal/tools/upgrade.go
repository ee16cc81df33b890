package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/backup"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/nodeapi"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
	"github.com/gatehouse-gw/gatehouse/internal/upgrade"
)

// gatehouse upgrade: a rolling upgrade of the domain's binary with a way
// back (docs/backup.md#upgrades).

var upgradeTool = Tool{
	Name: "upgrade", Summary: "replace the domain's gatehouse binary host by host, instances restarted one at a time without downtime; --rollback",
	Run: runUpgrade,
}

const upgradeHelp = `usage: gatehouse upgrade --binary NEW (--backup-dir DIR | --no-backup) [--delay_before D] [--delay_after D]
       gatehouse upgrade --rollback [--backup FILE | --binary-only] [--delay_before D] [--delay_after D]

Run on the Admin Node Manager's host, with the new binary (./gatehouse-new
upgrade --binary ./gatehouse-new …). First a backup of the whole domain
(backup --domain, its checksums verified) into DIR. Then host by host:
the new binary is sent to the host's node manager, checked (SHA-256, and
run once) and put in place as posix/bin/gatehouse, the old one kept as
posix/bin/gatehouse.previous; then each of the host's instances in turn is
taken out of its load balancer (its /healthchecklb answers 503), given
--delay_before to be seen out, restarted on the new binary, checked
(/healthcheck), put back in, and given --delay_after to be seen in.

Then the host's node manager restarts itself on the new binary (its
instances keep running) and is checked to run it.

A step that fails stops the upgrade: every host it reached gets the old
binary back, and its configuration as the backup has it; its restarted
instances and its node manager are restarted again on it, with the same
care. --rollback does that on purpose, for every host: the previous binary
back, the configuration of the backup the last upgrade took (or of
--backup FILE, a domain backup; --binary-only keeps the configuration as
it is), every instance and node manager restarted on it. Configuration is
the node managers' settings, the ACL, the groups' configurations and
installed archives, the instances' settings; never data or keys (key
property stores, certificates, secrets, users, audit log, topology).

  --binary NEW          the new gatehouse binary
  --backup-dir DIR      where the domain's backup goes (outside the install
                        directory); --no-backup skips it
  --delay_before D      after taking an instance out (default 10s: let the
                        load balancer's checks see it)
  --delay_after D       after putting it back (default 10s)

A node manager too old to restart itself is left running its binary: the
report says so (restart it: nodemanager -k, then nodemanager -d). The
report goes to conf/upgrades/ and the audit log names it.

Exit codes: 0 upgraded (or rolled back); 1 failed (the report says which
step; the old binary is back); 2 wrong usage.`

func runUpgrade(ctx context.Context, env *Env, args []string) error {
	// Ctrl-C or SIGTERM (a node manager stopping a scheduled backup) ends
	// it cleanly: a partial file removed, an upgrade undone.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	var bin, backupDir, backupFile string
	var noBackup, rollback, binaryOnly bool
	before, after := 10*time.Second, 10*time.Second
	for i := 0; i < len(args); i++ {
		a := args[i]
		value := func() (string, error) {
			if i+1 >= len(args) || args[i+1] == "" {
				return "", usagef("upgrade", "%s needs a value", a)
			}
			i++
			return args[i], nil
		}
		var err error
		var v string
		switch a {
		case "--help", "-h":
			fmt.Fprintln(env.Stdout, upgradeHelp)
			return nil
		case "--binary":
			bin, err = value()
		case "--backup-dir":
			backupDir, err = value()
		case "--no-backup":
			noBackup = true
		case "--rollback":
			rollback = true
		case "--backup":
			backupFile, err = value()
		case "--binary-only":
			binaryOnly = true
		case "--delay_before", "--delay_after":
			if v, err = value(); err == nil {
				d, perr := time.ParseDuration(v)
				if perr != nil || d < 0 {
					return usagef("upgrade", "%s %q: want a duration such as 10s", a, v)
				}
				if a == "--delay_before" {
					before = d
				} else {
					after = d
				}
			}
		default:
			return usagef("upgrade", "unknown argument %q; accepted: --binary NEW, --backup-dir DIR, --no-backup, --rollback, --backup FILE, --binary-only, --delay_before D, --delay_after D", a)
		}
		if err != nil {
			return err
		}
	}
	switch {
	case rollback && (bin != "" || backupDir != "" || noBackup):
		return usagef("upgrade", "--rollback takes only --backup FILE or --binary-only and the delays")
	case !rollback && (backupFile != "" || binaryOnly):
		return usagef("upgrade", "--backup and --binary-only are for --rollback")
	case backupFile != "" && binaryOnly:
		return usagef("upgrade", "--backup and --binary-only exclude each other")
	case !rollback && bin == "":
		return usagef("upgrade", "--binary NEW is needed (or --rollback)")
	case !rollback && backupDir == "" && !noBackup:
		return usagef("upgrade", "say where the domain's backup goes first (--backup-dir DIR), or --no-backup")
	case backupDir != "" && noBackup:
		return usagef("upgrade", "--backup-dir and --no-backup exclude each other")
	}
	h, err := home.Resolve()
	if err != nil {
		return err
	}
	if err := h.CheckDomain(); err != nil {
		return err
	}
	t, nm, c, err := anmContext(h)
	if err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	defer c.Close()
	started := time.Now().UTC()
	rec := upgradeRecord{Started: started, Rollback: rollback}
	var sha string
	if !rollback {
		if bin, err = filepath.Abs(bin); err != nil {
			return err
		}
		if rec.Version, err = domain.BinaryVersion(ctx, bin); err != nil {
			return fmt.Errorf("upgrade: %w", err)
		}
		if sha, err = domain.FileSHA256(bin); err != nil {
			return fmt.Errorf("upgrade: %w", err)
		}
		rec.SHA256 = sha
		fmt.Fprintf(env.Stdout, "Upgrading to %s (SHA-256 %s).\n", rec.Version, sha)
		if !noBackup {
			if rec.Backup, err = upgradeBackup(ctx, env, h, t, nm, c, backupDir, started); err != nil {
				return fmt.Errorf("upgrade: the backup first: %w; nothing was changed", err)
			}
		}
	}
	// The configuration to put back on a rollback: the backup's.
	if rollback && !binaryOnly && backupFile == "" {
		if backupFile, err = lastUpgradeBackup(h); err != nil {
			return fmt.Errorf("upgrade: %w", err)
		}
		if backupFile == "" {
			fmt.Fprintln(env.Stdout, "No upgrade backup recorded in conf/upgrades (an upgrade with --no-backup?): the configuration stays as it is (--backup FILE names one).")
		}
	}
	if !rollback {
		backupFile = rec.Backup
	}
	if rollback && backupFile != "" && !binaryOnly {
		// Read (and checked) before anything changes.
		if _, err := backupConfig(ctx, backupFile, filepath.Dir(h.Dir)); err != nil {
			return fmt.Errorf("upgrade: the configuration in %s: %w; nothing was changed", backupFile, err)
		}
		rec.Backup = backupFile
		fmt.Fprintf(env.Stdout, "The configuration goes back to that of %s.\n", backupFile)
	}
	if binaryOnly {
		backupFile = ""
	}
	hosts := upgradeHosts(t)
	net := nodeapi.NewNet(h, nm.HostID, topology.NewStore(h, nil), slog.New(slog.DiscardHandler))
	defer net.Close()
	ops := &nmOps{t: t, c: c, net: net, bin: bin, sha: sha, local: nm, backupFile: backupFile, scratch: filepath.Dir(h.Dir), out: env.Stdout}
	o := upgrade.Options{DelayBefore: before, DelayAfter: after, Progress: func(s string) {
		fmt.Fprintf(env.Stdout, "  %s %s\n", time.Now().Format("15:04:05"), s)
	}}
	var rep *upgrade.Report
	if rollback {
		rep, err = upgrade.Rollback(ctx, hosts, ops, o)
	} else {
		rep, err = upgrade.Run(ctx, hosts, ops, o)
	}
	rec.Report = rep
	if err != nil {
		rec.Error = err.Error()
	}
	file, werr := writeUpgradeRecord(h, rec)
	action, detail := "upgrade", fmt.Sprintf("to %s (SHA-256 %s); report %s", rec.Version, sha, file)
	if rollback {
		action, detail = "upgrade rollback", "report "+file
	}
	if _, aerr := audit.Open(h).Record(ctx, audit.Entry{User: osUser(), Via: "upgrade", Remote: "local", Action: action, Detail: detail, Error: rec.Error}); aerr != nil {
		fmt.Fprintf(env.Stderr, "upgrade: warning: the audit log: %v\n", aerr)
	}
	if werr != nil {
		fmt.Fprintf(env.Stderr, "upgrade: warning: the report: %v\n", werr)
	} else {
		fmt.Fprintf(env.Stdout, "Report: %s\n", file)
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(env.Stdout, "Still to do: %s\n", n)
	}
	if err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	if rollback {
		fmt.Fprintln(env.Stdout, "Rolled back: every host, its node manager and its instances run the previous binary.")
	} else {
		fmt.Fprintf(env.Stdout, "Upgraded %d hosts: each node manager and instance runs the new binary.\n", len(rep.Upgraded))
	}
	return nil
}

// upgradeRecord is the report of an upgrade, in conf/upgrades/.
type upgradeRecord struct {
	Started  time.Time       `json:"started"`
	Rollback bool            `json:"rollback,omitempty"`
	Version  string          `json:"version,omitempty"`
	SHA256   string          `json:"sha256,omitempty"`
	Backup   string          `json:"backup,omitempty"`
	Error    string          `json:"error,omitempty"`
	Report   *upgrade.Report `json:"report"`
}

func writeUpgradeRecord(h home.Home, rec upgradeRecord) (string, error) {
	file := h.Path("conf", "upgrades", "upgrade-"+rec.Started.Format("20060102T150405Z")+".json")
	if err := os.MkdirAll(filepath.Dir(file), 0o750); err != nil {
		return file, err
	}
	data, _ := json.MarshalIndent(rec, "", "  ")
	return file, home.WriteFileAtomic(file, append(data, '\n'), 0o640)
}

// upgradeBackup writes the domain's backup into dir and checks it.
func upgradeBackup(ctx context.Context, env *Env, h home.Home, t *topology.Topology, nm domain.NodeManagerConf, c *nodeapi.NodeClient, dir string, at time.Time) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if abs == h.Dir || strings.HasPrefix(abs, h.Dir+string(filepath.Separator)) {
		return "", fmt.Errorf("--backup-dir %s is inside the install directory", abs)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return "", err
	}
	sources, err := hostSources(env, h, t, nm, c, false)
	if err != nil {
		return "", err
	}
	file := filepath.Join(abs, "gatehouse-domain-"+at.Format("20060102T150405Z")+"-before-upgrade.backup")
	err = backup.WriteAtomic(file, func(w io.Writer) error {
		_, err := backup.WriteDomain(ctx, w, sources, backup.DomainOptions{Gatehouse: Version, TopologyVersion: t.Version})
		return err
	})
	if err != nil {
		return "", err
	}
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	dm, err := backup.VerifyDomain(ctx, f)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(env.Stdout, "Backed up the domain (%d hosts, every checksum right) to %s.\n", len(dm.Hosts), file)
	return file, nil
}

// upgradeHosts are the domain's hosts with their instances, in topology
// order.
func upgradeHosts(t *topology.Topology) []upgrade.Host {
	var hosts []upgrade.Host
	for _, h := range t.Hosts {
		uh := upgrade.Host{ID: h.ID, Name: h.Name}
		for _, r := range t.Instances(h.ID) {
			uh.Instances = append(uh.Instances, upgrade.Instance{GroupID: r.Group.ID, GroupName: r.Group.Name, ID: r.Service.ID, Name: r.Service.Name, HostID: h.ID})
		}
		hosts = append(hosts, uh)
	}
	return hosts
}

// nmOps are the upgrade's steps through the node managers (this host's
// own included).
type nmOps struct {
	t        *topology.Topology
	c        *nodeapi.NodeClient
	net      *nodeapi.Net
	bin, sha string
	local    domain.NodeManagerConf // this host's node manager
	expect   map[string]string      // host id → SHA-256 of the binary installed there last
	// backupFile is the domain backup whose configuration a rollback
	// puts back ("": none); config is read from it when first needed.
	backupFile, scratch string
	config              map[string]map[string]backup.ConfigFile
	out                 io.Writer
}

func (o *nmOps) RestoreConfig(ctx context.Context, h upgrade.Host) error {
	if o.backupFile == "" {
		return fmt.Errorf("%w (the upgrade took none, or --binary-only)", upgrade.ErrNoBackup)
	}
	if o.config == nil {
		c, err := backupConfig(ctx, o.backupFile, o.scratch)
		if err != nil {
			return fmt.Errorf("the configuration in %s: %w", o.backupFile, err)
		}
		o.config = c
	}
	want, ok := o.config[h.ID]
	if !ok {
		return fmt.Errorf("%w: the backup has no part for host %s", upgrade.ErrNoBackup, h.ID)
	}
	p, err := o.peer(h.ID)
	if err != nil {
		return err
	}
	cur, err := o.c.ConfigOf(ctx, p)
	if err != nil {
		return err
	}
	change := backup.DiffConfig(want, cur)
	if change.Empty() {
		fmt.Fprintf(o.out, "    host %s: its configuration is the backup's already\n", h.ID)
		return nil
	}
	done, err := o.c.PutConfig(ctx, p, change)
	for _, d := range done {
		fmt.Fprintf(o.out, "    host %s: %s\n", h.ID, d)
	}
	return err
}

// lastUpgradeBackup is the backup the newest upgrade (not a rollback)
// recorded in conf/upgrades, or "".
func lastUpgradeBackup(h home.Home) (string, error) {
	files, err := filepath.Glob(h.Path("conf", "upgrades", "upgrade-*.json"))
	if err != nil {
		return "", err
	}
	slices.Sort(files)
	for i := len(files) - 1; i >= 0; i-- {
		data, err := os.ReadFile(files[i])
		if err != nil {
			return "", err
		}
		var rec upgradeRecord
		if err := json.Unmarshal(data, &rec); err != nil {
			return "", fmt.Errorf("%s: %w", files[i], err)
		}
		if !rec.Rollback {
			return rec.Backup, nil
		}
	}
	return "", nil
}

// backupConfig reads the configuration of every host's part of the domain
// backup at file (every checksum checked), by host id.
func backupConfig(ctx context.Context, file, scratch string) (map[string]map[string]backup.ConfigFile, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]map[string]backup.ConfigFile{}
	_, err = backup.ReadDomain(ctx, f, func(hostID string, r io.Reader) error {
		files, _, err := backup.ConfigOfBackup(ctx, r, scratch)
		if err != nil {
			return fmt.Errorf("host %s: %w", hostID, err)
		}
		out[hostID] = files
		return nil
	})
	return out, err
}

// peer is hostID's node manager; this host's own at the address it listens
// on (its host name in the topology need not resolve here).
func (o *nmOps) peer(hostID string) (nodeapi.Peer, error) {
	if hostID == o.local.HostID {
		addr := o.local.Address
		if ip := net.ParseIP(addr); addr == "" || ip != nil && ip.IsUnspecified() {
			addr = "127.0.0.1"
		}
		return nodeapi.Peer{HostID: hostID, NodeManagerID: o.local.NodeManagerID, Addr: net.JoinHostPort(addr, strconv.Itoa(o.local.Port))}, nil
	}
	return nodeapi.PeerOfHost(o.t, hostID)
}

func (o *nmOps) InstallBinary(ctx context.Context, h upgrade.Host) error {
	p, err := o.peer(h.ID)
	if err != nil {
		return err
	}
	_, err = o.c.PushBinary(ctx, p, o.bin, o.sha)
	if err == nil {
		o.expected()[h.ID] = o.sha
	}
	return err
}

func (o *nmOps) expected() map[string]string {
	if o.expect == nil {
		o.expect = map[string]string{}
	}
	return o.expect
}

// nmRestartLimit bounds a node manager's restart (its shutdown, and the
// new one's start and first answer).
const nmRestartLimit = 90 * time.Second

func (o *nmOps) RestartNodeManager(ctx context.Context, h upgrade.Host) error {
	p, err := o.peer(h.ID)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, nmRestartLimit)
	defer cancel()
	st, err := o.c.RestartNodeManager(ctx, p)
	var re *nodeapi.RemoteError
	if errors.As(err, &re) && (re.Code == http.StatusNotFound || re.Code == http.StatusServiceUnavailable) {
		return fmt.Errorf("%w (%s)", upgrade.ErrCannotRestart, re.Msg)
	}
	if err != nil {
		return err
	}
	if want := o.expected()[h.ID]; want != "" && st.Binary != want {
		return fmt.Errorf("its node manager came back on binary %.12s…, not %.12s… (the binary installed did not start it: see logs/nodemanager/nodemanager.log on host %s)", st.Binary, want, h.ID)
	}
	return nil
}

func (o *nmOps) RestoreBinary(ctx context.Context, h upgrade.Host) error {
	p, err := o.peer(h.ID)
	if err != nil {
		return err
	}
	info, err := o.c.RestorePreviousBinary(ctx, p)
	if err == nil {
		o.expected()[h.ID] = info.SHA256
	}
	return err
}

// upgradeLease bounds how long an instance stays out of its pool if the
// upgrade dies with it out.
const upgradeLease = 5 * time.Minute

func (o *nmOps) SetInService(ctx context.Context, in upgrade.Instance, on bool) error {
	p, err := o.peer(in.HostID)
	if err != nil {
		return err
	}
	return o.net.InstanceCall(ctx, p, in.ID, "inservice", nodeapi.InServiceRequest(on, upgradeLease), nil)
}

func (o *nmOps) Restart(ctx context.Context, in upgrade.Instance) error {
	p, err := o.peer(in.HostID)
	if err != nil {
		return err
	}
	if err := o.net.InstanceCall(ctx, p, in.ID, "stop", nil, nil); err != nil {
		return err
	}
	return o.net.InstanceCall(ctx, p, in.ID, "start", nil, nil)
}

func (o *nmOps) Healthy(ctx context.Context, in upgrade.Instance) error {
	r, err := o.t.FindInstanceID(in.ID)
	if err != nil {
		return err
	}
	p, err := o.peer(in.HostID)
	if err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(p.Addr)
	_, err = awaitOK(ctx, fmt.Sprintf("%s://%s/healthcheck", orHTTP(r.Service.Scheme), net.JoinHostPort(host, strconv.Itoa(r.Service.TrafficPort))), 30*time.Second)
	return err
}
