package tools

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/gatehouse-gw/gatehouse/internal/backup"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/nodeapi"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// The domain's backup, gathered on the Admin Node Manager's host: this
// host's part written here, every other host's fetched through its node
// manager (GET /nm/backup) — backup --domain; and one other host's part on
// its own — backup --host ID.

// domainBackupOptions are backup --domain's and --host's.
type domainBackupOptions struct {
	out             string // a file, or "-"
	withLogs        bool
	skipUnreachable bool
	host            string // --host: one host (id or name)
}

// anmContext checks that this is the Admin Node Manager's host and returns
// its topology, its node manager settings and a node-to-node client.
func anmContext(h home.Home) (*topology.Topology, domain.NodeManagerConf, *nodeapi.NodeClient, error) {
	nm, err := domain.LoadNodeManagerConf(h)
	if err != nil {
		return nil, nm, nil, err
	}
	t, err := topology.NewStore(h, nil).Load()
	if err != nil {
		return nil, nm, nil, err
	}
	anm, err := t.AdminNodeManager()
	if err != nil {
		return nil, nm, nil, err
	}
	if anm.HostID != nm.HostID {
		return nil, nm, nil, fmt.Errorf("--domain and --host gather the hosts' backups through their node managers with the Admin Node Manager's certificate: run it on the Admin Node Manager's host (%s), not on %s", anm.HostID, nm.HostID)
	}
	c, err := nodeapi.NewNodeClient(h)
	if err != nil {
		return nil, nm, nil, err
	}
	return t, nm, c, nil
}

// hostSources are the parts of a domain backup: this host's written here,
// the others' fetched (nodeapi.DomainSources).
func hostSources(env *Env, h home.Home, t *topology.Topology, nm domain.NodeManagerConf, c *nodeapi.NodeClient, withLogs bool) ([]backup.Source, error) {
	return nodeapi.DomainSources(h, t, nm.HostID, Version, c, withLogs, func(w string) { fmt.Fprintf(env.Stderr, "backup: warning: %s\n", w) })
}

// findHost is the topology host whose id or name is arg.
func findHost(t *topology.Topology, arg string) (topology.Host, error) {
	var names []string
	for _, h := range t.Hosts {
		if h.ID == arg || h.Name == arg {
			return h, nil
		}
		names = append(names, fmt.Sprintf("%s (%s)", h.ID, h.Name))
	}
	return topology.Host{}, fmt.Errorf("no host %q in the domain; its hosts: %v", arg, names)
}

// backupDomain writes the domain's backup (or, with o.host, one host's).
func backupDomain(ctx context.Context, env *Env, h home.Home, o domainBackupOptions, so startOptions, noVerify bool) error {
	unlockForExports(ctx, env, h, so.groupPassFile)
	t, nm, c, err := anmContext(h)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer c.Close()
	sources, err := hostSources(env, h, t, nm, c, o.withLogs)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if o.host != "" {
		host, err := findHost(t, o.host)
		if err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		for _, s := range sources {
			if s.HostID == host.ID {
				sources = []backup.Source{s}
			}
		}
	}
	write := func(w io.Writer) (string, error) {
		if o.host != "" {
			// One host's part: its own archive, as backup on that host
			// makes it.
			if err := sources[0].Fetch(ctx, w); err != nil {
				return "", fmt.Errorf("host %s: %w", sources[0].HostID, err)
			}
			return fmt.Sprintf("the backup of host %s", sources[0].HostID), nil
		}
		do := backup.DomainOptions{Gatehouse: Version, TopologyVersion: t.Version,
			Progress: func(id string, size int64, err error) {
				if err != nil {
					fmt.Fprintf(env.Stderr, "backup: host %s: %v\n", id, err)
					return
				}
				fmt.Fprintf(env.Stderr, "backup: host %s: %s\n", id, humanBytes(size))
			}}
		if o.skipUnreachable {
			do.Skip = func(err error) bool {
				var pe *nodeapi.PeerError
				return errors.As(err, &pe)
			}
		}
		dm, err := backup.WriteDomain(ctx, w, sources, do)
		if err != nil {
			return "", err
		}
		s := fmt.Sprintf("the domain's backup: %d hosts", len(dm.Hosts))
		for _, g := range dm.Gaps {
			fmt.Fprintf(env.Stderr, "backup: WARNING: host %s (%s) is NOT in this backup: %s\n", g.HostID, g.HostName, g.Error)
			s += fmt.Sprintf(", host %s missing (unreachable)", g.HostID)
		}
		return s, nil
	}
	if o.out == "-" {
		what, err := write(env.Stdout)
		if err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		fmt.Fprintf(env.Stderr, "Wrote %s to standard output (not verified: read it back with gatehouse backup verify -).\n", what)
		return nil
	}
	abs, err := filepath.Abs(o.out)
	if err != nil {
		return err
	}
	var what string
	err = backup.WriteAtomic(abs, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 256<<10)
		var err error
		if what, err = write(bw); err != nil {
			return err
		}
		return bw.Flush()
	})
	if err != nil {
		return fmt.Errorf("backup: %w (nothing was written to %s)", err, abs)
	}
	fmt.Fprintf(env.Stdout, "Wrote %s to %s.\n", what, abs)
	if noVerify {
		return nil
	}
	so.fallbackToSums = true
	if err := verifyAny(ctx, env, abs, so); err != nil {
		return fmt.Errorf("the backup %s was written, but did not verify: %w", abs, err)
	}
	return nil
}

// verifyAny verifies a backup file of either kind: one host's, or the
// domain's (every part's checksums, then the part of this host — or of
// the Admin Node Manager's host when this one has none — started as
// verify does).
func verifyAny(ctx context.Context, env *Env, file string, so startOptions) error {
	in, err := openInput(env, file)
	if err != nil {
		return err
	}
	br := bufio.NewReaderSize(in, 64<<10)
	head, _ := br.Peek(512)
	if !backup.IsDomain(head) {
		in.Close()
		if file == "-" {
			// What was peeked is in br: verify from it.
			env2 := *env
			env2.Stdin = br
			env = &env2
		}
		if so.checksumsOnly {
			return verifyBackup(ctx, env, file)
		}
		return verifyStarted(ctx, env, file, so)
	}
	defer in.Close()
	// The part to start: spooled while the whole archive is checked.
	tmp, err := os.CreateTemp(so.scratch, "gatehouse-part-*.backup")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	want := ""
	if h, err := home.Resolve(); err == nil {
		if nm, err := domain.LoadNodeManagerConf(h); err == nil {
			want = nm.HostID
		}
	}
	var partOf string
	dm, err := backup.ReadDomain(ctx, br, func(id string, r io.Reader) error {
		if partOf == "" && (id == want || want == "") || id == want {
			if _, err := tmp.Seek(0, io.SeekStart); err != nil {
				return err
			}
			if err := tmp.Truncate(0); err != nil {
				return err
			}
			partOf = id
			_, err := backup.Verify(ctx, io.TeeReader(r, tmp))
			return err
		}
		_, err := backup.Verify(ctx, r)
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	fmt.Fprintf(env.Stdout, "Domain backup %s: %d hosts, every checksum right (made %s, topology version %d).\n", file, len(dm.Hosts), dm.Created.Format("2006-01-02 15:04:05Z"), dm.TopologyVersion)
	for _, g := range dm.Gaps {
		fmt.Fprintf(env.Stdout, "  host %s (%s) is NOT in it: %s\n", g.HostID, g.HostName, g.Error)
	}
	if so.checksumsOnly || partOf == "" {
		return nil
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "Starting the part of host %s in a scratch copy:\n", partOf)
	return verifyStarted(ctx, env, tmp.Name(), so)
}

// extractHostPart copies the part of host (an id or a name) of the domain
// backup file into a temporary file and returns its name; the caller
// removes it.
func extractHostPart(ctx context.Context, env *Env, file, host, dir string) (string, error) {
	in, err := openInput(env, file)
	if err != nil {
		return "", err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(dir, "gatehouse-part-*.backup")
	if err != nil {
		return "", err
	}
	defer tmp.Close()
	var want string
	// A first pass checks every part and reads the manifest (it comes
	// last: a host named by its name is known only then); the second
	// copies the part.
	dm, err := backup.VerifyDomain(ctx, bufio.NewReaderSize(in, 64<<10))
	if err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("%s: %w", file, err)
	}
	var names []string
	for _, p := range dm.Hosts {
		if p.HostID == host || p.HostName == host {
			want = p.HostID
		}
		names = append(names, fmt.Sprintf("%s (%s)", p.HostID, p.HostName))
	}
	if want == "" {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("the domain backup %s has no part for host %q; it has: %v", file, host, names)
	}
	in2, err := openInput(env, file)
	if err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	defer in2.Close()
	if _, err := backup.ExtractPart(ctx, bufio.NewReaderSize(in2, 64<<10), want, tmp); err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("%s: %w", file, err)
	}
	if err := tmp.Sync(); err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	return tmp.Name(), nil
}
