package tools

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/backup"
	"github.com/gatehouse-gw/gatehouse/internal/backup/kpsexport"
	"github.com/gatehouse-gw/gatehouse/internal/backup/schedule"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/nodeapi"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// gatehouse backup / backup verify / restore: internal/backup on this
// host's install directory (docs/backup.md).

var backupTool = Tool{
	Name: "backup", Summary: "back up this host's install directory (one verified archive), or verify one", Linked: true,
	Run: runBackup,
}

var restoreTool = Tool{
	Name: "restore", Summary: "restore a backup into an empty install directory", Linked: true,
	Run: runRestore,
}

const backupHelp = `usage: gatehouse backup -o FILE|- [--skip-unreachable] [--with-logs] [--no-verify] [VERIFY OPTIONS]
       gatehouse backup --host ID -o FILE|- [--with-logs] [--no-verify]
       gatehouse backup --this-host -o FILE|- [--with-logs] [--no-verify] [VERIFY OPTIONS]
       gatehouse backup verify FILE|- [--checksums-only] [VERIFY OPTIONS]
       gatehouse backup status

On the Admin Node Manager's host of a domain of several hosts, backup
writes the whole domain: every host's backup, fetched through its node
manager, in one file (a host that cannot be reached fails it, naming the
host, unless --skip-unreachable). On any other host, or in a domain of one
host, it writes this host's.

A host's backup is one archive (tar.gz) of its install directory ($GATEHOUSE_HOME):
conf (without conf/opsdb.d), groups, ext and system/conf, each group's embedded
Key Property Store as a consistent snapshot taken while instances write, and a
manifest of every entry (size, mode, owner, SHA-256) as its last entry.
Secrets are archived as they are on disk: sealed when a passphrase is set.
The file is written under a temporary name and renamed once complete; a
failure (a full disk) removes it and leaves a previous backup as it was.
Then it is verified as backup verify does (--no-verify skips that); when
the domain has passphrases and they are not given, only the checksums are
verified, and it says so.

  -o FILE       where to write it; - for standard output (for restic, rclone,
                tape: then nothing is verified afterwards)
  --domain      the whole domain (the default on the Admin Node Manager's
                host of several hosts; there, in a domain of one host, a
                domain backup with its one part)
  --skip-unreachable
                a domain backup: a host that cannot be reached is left out
                and the gap recorded in the backup's manifest
  --host ID     on the Admin Node Manager's host: one host's backup (its id
                or name), fetched through its node manager
  --this-host   this host's backup only
  --with-logs   also logs/ and each instance's logs/ and trace/
  --no-verify   do not read the file back

backup verify FILE reads a backup and checks every entry against the
manifest (sizes, SHA-256, modes, nothing missing or added), then restores
it into a scratch directory, moves every port of the copy to a free
loopback port (the live domain's hosts are out of its reach), starts its
node manager and one instance of each group of the backed-up host, checks
that each answers /healthcheck and that each group's embedded key property
store opens, stops them and removes the copy. Exit 0 only then; 1 naming
the first damaged entry, or what did not start.

  --checksums-only            check the entries only; start nothing
  --passphrase_file F         the node manager's passphrase, when the
                              backup's node manager secrets have one
  --group_passphrase_file F   the groups' passphrase, when they have one (to
                              start the copy; for backup, also to read a
                              PostgreSQL store's sealed password file)
  --scratch DIR               make the scratch directory in DIR ($TMPDIR)
  --keep-scratch              leave the scratch directory (for a look)

Exit codes: 0 done; 1 failed (the reason is printed); 2 wrong usage.
backup status shows this host's scheduled backups (backup: in
system/conf/nodemanager.yaml, run by the node manager): the schedule, the
next run, the last success and failure, the counts.

A domain backup is verified part by part (every checksum), then the part of
the host verify runs on (or the first) is started as above; restore one
host's part of it with gatehouse restore FILE --host ID.

Through the management API: gatehouse client backup -o FILE (POST
/api/backup). Not yet: PostgreSQL stores (back them up with pg_dump)
(docs/backup.md).`

const restoreHelp = `usage: gatehouse restore FILE|- [--force] [--host ID] [--map-host OLD=NEW]... [--map-address OLD=NEW]...
                         [--kps-postgres [GROUP=]URL]... [--kps-postgres-password-file FILE]

Restores a backup (gatehouse backup) into the install directory
($GATEHOUSE_HOME), which must be empty or missing. Everything is written
into a directory beside it first and checked against the manifest; only a
whole, unaltered backup is moved into place, in one rename: a damaged
archive, or a restore cut short, leaves the target as it was.

  --force       replace a target that is not empty: the directory there is
                kept beside it, renamed <dir>.replaced-<time>
  --host ID     FILE is a domain backup (backup --domain): restore the part
                of host ID (its id or name); every part is checked first
  --map-host OLD=NEW
                a disaster-recovery site whose hosts have other names: the
                topology's host OLD is renamed NEW (repeat for each host)
  --map-address OLD=NEW
                and other addresses: where the install directory names IP
                OLD (the node manager's listening and Admin Node Manager
                addresses, the instances' listening addresses), NEW
  --kps-postgres [GROUP=]URL
                load the backup's export of group GROUP's PostgreSQL key
                property store (its rows and its API-key hashing key) into
                the database postgres://USER@HOST[:PORT]/DATABASE
                [?sslmode=…&sslrootcert=…&schema=…]; GROUP (id or name) may
                be left out when the backup holds one such export. Tables
                that hold rows are refused unless --force (which replaces
                them). Without it the export is restored as a file that
                kpsadmin restore --uuid loads.
  --kps-postgres-password-file FILE
                the database password (first line of FILE; or PGPASSWORD)

Paths and modes are kept; owners too when run as root. Then copy the
binary into posix/bin (managedomain -i does it on a new host; or cp) and
start the node manager with its passphrase when it has one.

Exit codes: 0 done; 1 failed (the reason is printed); 2 wrong usage.`

func runBackup(ctx context.Context, env *Env, args []string) error {
	// Ctrl-C or SIGTERM (a node manager stopping a scheduled backup) ends
	// it cleanly: a partial file removed, an upgrade undone.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	var out string
	var withLogs, noVerify, verify bool
	var file string
	var so startOptions
	var dom domainBackupOptions
	var wholeDomain, thisHost bool
	for i := 0; i < len(args); i++ {
		a := args[i]
		value := func() (string, error) {
			if i+1 >= len(args) || args[i+1] == "" {
				return "", usagef("backup", "%s needs a value", a)
			}
			i++
			return args[i], nil
		}
		var err error
		switch {
		case a == "--help" || a == "-h":
			fmt.Fprintln(env.Stdout, backupHelp)
			return nil
		case a == "-o" || a == "--output":
			if i+1 >= len(args) {
				return usagef("backup", "%s needs a file (or - for standard output)", a)
			}
			i++
			out = args[i]
		case a == "--with-logs":
			withLogs = true
		case a == "--no-verify":
			noVerify = true
		case a == "--domain":
			wholeDomain = true
		case a == "--this-host":
			thisHost = true
		case a == "--skip-unreachable":
			dom.skipUnreachable = true
		case a == "--host":
			dom.host, err = value()
		case a == "--checksums-only":
			so.checksumsOnly = true
		case a == "--keep-scratch":
			so.keep = true
		case a == "--scratch":
			so.scratch, err = value()
		case a == "--passphrase_file":
			so.nmPassFile, err = value()
		case a == "--group_passphrase_file":
			so.groupPassFile, err = value()
		case a == "verify" && i == 0:
			verify = true
		case a == "status" && i == 0:
			if len(args) > 1 {
				return usagef("backup", "backup status takes no arguments")
			}
			return backupStatus(env)
		case verify && file == "" && (a == "-" || !strings.HasPrefix(a, "-")):
			file = a
		default:
			return usagef("backup", "unknown argument %q; accepted: -o FILE, --with-logs, --no-verify, --domain, --host ID, --this-host, --skip-unreachable, verify FILE, status, --checksums-only, --passphrase_file F, --group_passphrase_file F, --scratch DIR, --keep-scratch", a)
		}
		if err != nil {
			return err
		}
	}
	for _, f := range []*string{&so.nmPassFile, &so.groupPassFile, &so.scratch} {
		if *f != "" {
			abs, err := filepath.Abs(*f)
			if err != nil {
				return err
			}
			*f = abs
		}
	}
	if verify {
		if file == "" {
			return usagef("backup", "backup verify needs the file to verify")
		}
		if out != "" || withLogs || noVerify || wholeDomain || thisHost || dom.host != "" || dom.skipUnreachable {
			return usagef("backup", "backup verify takes the file and the verify options only")
		}
		return verifyAny(ctx, env, file, so)
	}
	if out == "" {
		return usagef("backup", "-o FILE is needed (- for standard output)")
	}
	if so.checksumsOnly {
		return usagef("backup", "--checksums-only goes with backup verify")
	}
	if wholeDomain && dom.host != "" {
		return usagef("backup", "--domain and --host exclude each other")
	}
	if dom.skipUnreachable && (thisHost || dom.host != "") {
		return usagef("backup", "--skip-unreachable is for a domain backup, not one host's")
	}
	h, err := home.Resolve()
	if err != nil {
		return err
	}
	if err := h.CheckDomain(); err != nil {
		return err
	}
	if thisHost && (wholeDomain || dom.host != "") {
		return usagef("backup", "--this-host excludes --domain and --host")
	}
	if !wholeDomain && !thisHost && dom.host == "" {
		if n := domainHostsHere(h); n > 1 {
			wholeDomain = true
			fmt.Fprintf(env.Stderr, "backup: the Admin Node Manager's host of a domain of %d hosts: backing up the whole domain (--this-host for this host's alone)\n", n)
		}
	}
	if dom.skipUnreachable && !wholeDomain {
		return usagef("backup", "--skip-unreachable is for a domain backup (on the Admin Node Manager's host of several hosts, or --domain)")
	}
	if wholeDomain || dom.host != "" {
		dom.out, dom.withLogs = out, withLogs
		if out != "-" {
			if abs, err := filepath.Abs(out); err == nil && strings.HasPrefix(abs, h.Dir+string(filepath.Separator)) {
				return fmt.Errorf("backup: %s is inside the install directory %s: write it elsewhere", abs, h.Dir)
			}
		}
		return backupDomain(ctx, env, h, dom, so, noVerify)
	}
	o := backup.Options{Gatehouse: Version, WithLogs: withLogs}
	prog := newProgress(env.Stderr, "backup")
	o.Progress = prog.update
	if c, err := domain.LoadNodeManagerConf(h); err == nil {
		o.Host = c.HostID
	}
	if t, err := topology.NewStore(h, nil).Load(); err == nil {
		o.TopologyVersion = t.Version
	}
	unlockForExports(ctx, env, h, so.groupPassFile)
	o, warnings, err := kpsexport.WithExports(h, o, false)
	for _, w := range warnings {
		fmt.Fprintf(env.Stderr, "backup: warning: %s\n", w)
	}
	if err != nil {
		if le := (*secret.LockedError)(nil); errors.As(err, &le) {
			err = fmt.Errorf("%w; for a backup: --group_passphrase_file F, or passphraseExec in %s", err, h.NodeManagerConf())
		}
		return fmt.Errorf("backup: %w", err)
	}
	if out == "-" {
		m, err := backup.Write(ctx, h, env.Stdout, o)
		prog.done()
		if err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		fmt.Fprintf(env.Stderr, "Backed up %d entries of %s to standard output (not verified: read it back with gatehouse backup verify -).\n", len(m.Entries), h.Dir)
		return nil
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	if strings.HasPrefix(abs, h.Dir+string(filepath.Separator)) {
		return fmt.Errorf("backup: %s is inside the install directory %s: write it elsewhere", abs, h.Dir)
	}
	m, err := backup.WriteFile(ctx, h, abs, o)
	prog.done()
	if err != nil {
		return fmt.Errorf("backup: %w (nothing was written to %s)", err, abs)
	}
	var bytes int64
	for _, e := range m.Entries {
		bytes += e.Size
	}
	fmt.Fprintf(env.Stdout, "Backed up %d entries (%d bytes) of %s to %s.\n", len(m.Entries), bytes, h.Dir, abs)
	if noVerify {
		return nil
	}
	so.fallbackToSums = true
	if err := verifyStarted(ctx, env, abs, so); err != nil {
		return fmt.Errorf("the backup %s was written, but did not verify: %w", abs, err)
	}
	return nil
}

// openInput opens file, or standard input for "-".
func openInput(env *Env, file string) (io.ReadCloser, error) {
	if file == "-" {
		return io.NopCloser(env.Stdin), nil
	}
	return os.Open(file)
}

func verifyBackup(ctx context.Context, env *Env, file string) error {
	in, err := openInput(env, file)
	if err != nil {
		return err
	}
	defer in.Close()
	m, err := backup.Verify(ctx, in)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	fmt.Fprintf(env.Stdout, "Verified %s: %d entries, every checksum right (Gatehouse %s, host %s, made %s).\n", file, len(m.Entries), m.Gatehouse, m.Host, m.Created.Format("2006-01-02 15:04:05Z"))
	return nil
}

func runRestore(ctx context.Context, env *Env, args []string) error {
	// Ctrl-C or SIGTERM (a node manager stopping a scheduled backup) ends
	// it cleanly: a partial file removed, an upgrade undone.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	var file, hostArg, pwFile string
	var force bool
	var kpsTargets []kpsTarget
	mp := backup.Map{Hosts: map[string]string{}, Addresses: map[string]string{}}
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--help" || a == "-h":
			fmt.Fprintln(env.Stdout, restoreHelp)
			return nil
		case a == "--force":
			force = true
		case a == "--host":
			if i+1 >= len(args) || args[i+1] == "" {
				return usagef("restore", "--host needs a host id or name")
			}
			i++
			hostArg = args[i]
		case a == "--kps-postgres":
			if i+1 >= len(args) || args[i+1] == "" {
				return usagef("restore", "--kps-postgres needs [GROUP=]postgres://USER@HOST[:PORT]/DATABASE")
			}
			i++
			t := kpsTarget{url: args[i]}
			if g, rest, ok := strings.Cut(args[i], "="); ok && !strings.Contains(g, ":") {
				t.group, t.url = g, rest
			}
			c, err := parsePostgresURL(t.url)
			if err != nil {
				return usagef("restore", "--kps-postgres %v", err)
			}
			t.cfg = c
			kpsTargets = append(kpsTargets, t)
		case a == "--kps-postgres-password-file":
			if i+1 >= len(args) || args[i+1] == "" {
				return usagef("restore", "--kps-postgres-password-file needs a file")
			}
			i++
			pwFile = args[i]
		case a == "--map-host" || a == "--map-address":
			if i+1 >= len(args) {
				return usagef("restore", "%s needs OLD=NEW", a)
			}
			i++
			old, nu, ok := strings.Cut(args[i], "=")
			if !ok || old == "" || nu == "" {
				return usagef("restore", "%s %q: want OLD=NEW", a, args[i])
			}
			if a == "--map-host" {
				mp.Hosts[old] = nu
				continue
			}
			for _, ip := range []string{old, nu} {
				if _, err := netip.ParseAddr(ip); err != nil {
					return usagef("restore", "--map-address %q: %q is not an IP address", args[i], ip)
				}
			}
			mp.Addresses[old] = nu
		case file == "" && (a == "-" || !strings.HasPrefix(a, "-")):
			file = a
		default:
			return usagef("restore", "unknown argument %q; accepted: FILE, --force, --host ID, --map-host OLD=NEW, --map-address OLD=NEW, --kps-postgres [GROUP=]URL, --kps-postgres-password-file FILE", a)
		}
	}
	if file == "" {
		return usagef("restore", "the backup file is needed (- for standard input)")
	}
	if len(kpsTargets) > 1 {
		for _, t := range kpsTargets {
			if t.group == "" {
				return usagef("restore", "--kps-postgres %s: with several --kps-postgres, each names its group: GROUP=URL", t.url)
			}
		}
	}
	var pgPassword secret.Value
	if pwFile != "" {
		data, err := os.ReadFile(pwFile)
		if err != nil {
			return fmt.Errorf("restore: --kps-postgres-password-file: %w", err)
		}
		line, _, _ := strings.Cut(string(data), "\n")
		pgPassword = secret.FromString(strings.TrimRight(line, "\r"))
		clear(data)
	} else if v := os.Getenv("PGPASSWORD"); v != "" {
		pgPassword = secret.FromString(v)
	}
	defer pgPassword.Wipe()
	h, err := home.Resolve()
	if err != nil {
		return err
	}
	in, err := openInput(env, file)
	if err != nil {
		return err
	}
	defer in.Close()
	br := bufio.NewReaderSize(in, 64<<10)
	head, _ := br.Peek(512)
	var src io.Reader = br
	if backup.IsDomain(head) {
		if hostArg == "" {
			return usagef("restore", "%s is a domain backup: say which host's part to restore with --host ID (its id or name)", file)
		}
		part, err := domainPart(ctx, env, file, br, hostArg, filepath.Dir(h.Dir))
		if err != nil {
			return fmt.Errorf("restore: %w; nothing was written to %s", err, h.Dir)
		}
		defer os.Remove(part)
		pf, err := os.Open(part)
		if err != nil {
			return err
		}
		defer pf.Close()
		src = pf
	} else if hostArg != "" {
		return usagef("restore", "--host picks a host's part of a domain backup; %s is one host's backup", file)
	}
	m, replaced, err := backup.Restore(ctx, src, h.Dir, backup.RestoreOptions{Force: force, Chown: os.Geteuid() == 0})
	if err != nil {
		if errors.Is(err, backup.ErrDamaged) {
			return fmt.Errorf("%s: %w; nothing was written to %s", file, err, h.Dir)
		}
		return fmt.Errorf("restore: %w", err)
	}
	fmt.Fprintf(env.Stdout, "Restored %d entries into %s (backup of host %s, made %s).\n", len(m.Entries), h.Dir, m.Host, m.Created.Format("2006-01-02 15:04:05Z"))
	if replaced != "" {
		fmt.Fprintf(env.Stdout, "The directory that was there is kept as %s.\n", replaced)
	}
	if len(mp.Hosts)+len(mp.Addresses) > 0 {
		changes, err := backup.Remap(ctx, h, mp)
		if err != nil {
			return fmt.Errorf("restored into %s, but the mapping failed: %w; restore again with --force and the right --map-host/--map-address", h.Dir, err)
		}
		for _, c := range changes {
			fmt.Fprintf(env.Stdout, "  mapped %s\n", c)
		}
		if len(mp.Hosts) > 0 {
			fmt.Fprintf(env.Stdout, "Host names changed: issue the node managers' certificates for the new names (managedomain --regen_certs) before starting them.\n")
		}
	}
	if err := loadKPSExports(ctx, env.Stdout, h, m, kpsTargets, pgPassword, force); err != nil {
		return fmt.Errorf("restored into %s, but %w", h.Dir, err)
	}
	fmt.Fprintf(env.Stdout, "Next: copy the gatehouse binary to %s, then start the node manager (nodemanager -d).\n", h.BinDir())
	return nil
}

// backupStatus prints this host's scheduled backups.
func backupStatus(env *Env) error {
	h, err := home.Resolve()
	if err != nil {
		return err
	}
	c, err := domain.LoadNodeManagerConf(h)
	if err != nil {
		return err
	}
	if c.Backup.Schedule == "" {
		fmt.Fprintf(env.Stdout, "No scheduled backups on host %s (set backup.schedule and backup.directory in %s; docs/backup.md).\n", c.HostID, h.NodeManagerConf())
		return nil
	}
	st, err := schedule.ReadState(h)
	if err != nil {
		return err
	}
	at := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.Local().Format("2006-01-02 15:04:05 MST")
	}
	fmt.Fprintf(env.Stdout, "Scheduled backups of host %s: %q into %s, the newest %d kept.\n", c.HostID, c.Backup.Schedule, c.Backup.Dir(h), c.Backup.KeepOrDefault())
	fmt.Fprintf(env.Stdout, "  next run:      %s\n", at(st.Next))
	fmt.Fprintf(env.Stdout, "  last success:  %s %s\n", at(st.LastSuccess), st.LastFile)
	fmt.Fprintf(env.Stdout, "  last failure:  %s %s\n", at(st.LastFailure), st.LastError)
	fmt.Fprintf(env.Stdout, "  runs:          %d succeeded, %d failed\n", st.Succeeded, st.Failed)
	if !st.LastFailure.IsZero() && st.LastFailure.After(st.LastSuccess) {
		return &ExitError{Code: 1, Err: fmt.Errorf("the last scheduled backup failed: %s", st.LastError)}
	}
	return nil
}

// domainPart is the part of host (id or name) of the domain backup being
// read from br (file names it; standard input is spooled first), in a
// temporary file in dir that the caller removes.
func domainPart(ctx context.Context, env *Env, file string, br *bufio.Reader, host, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if file == "-" {
		spool, err := os.CreateTemp(dir, "gatehouse-domain-*.backup")
		if err != nil {
			return "", err
		}
		defer os.Remove(spool.Name())
		defer spool.Close()
		if _, err := io.Copy(spool, br); err != nil {
			return "", err
		}
		file = spool.Name()
	}
	return extractHostPart(ctx, env, file, host, dir)
}

// domainHostsHere is the number of hosts with a node manager in the
// domain when this is the Admin Node Manager's host (0 otherwise, or when
// the topology cannot be read: then the backup is this host's, and says
// so if it matters).
func domainHostsHere(h home.Home) int {
	nm, err := domain.LoadNodeManagerConf(h)
	if err != nil {
		return 0
	}
	t, err := topology.NewStore(h, nil).Load()
	if err != nil {
		return 0
	}
	anm, err := t.AdminNodeManager()
	if err != nil || anm.HostID != nm.HostID {
		return 0
	}
	return 1 + len(nodeapi.Peers(t, nm.HostID))
}
