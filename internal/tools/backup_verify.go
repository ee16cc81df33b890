package tools

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apps"
	"github.com/gatehouse-gw/gatehouse/internal/backup"
	"github.com/gatehouse-gw/gatehouse/internal/backup/kpsexport"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/kps/kpsbackup"
	"github.com/gatehouse-gw/gatehouse/internal/kps/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// startOptions are the options of a verification that starts the restored
// domain (backup verify without --checksums-only, backup after writing, dr
// drill).
type startOptions struct {
	scratch        string // parent directory of the scratch install directory; "" is $TMPDIR
	keep           bool   // leave the scratch directory (and nothing running)
	nmPassFile     string // the node manager's passphrase, when its secrets have one
	groupPassFile  string // the groups' passphrase, when they have one
	checksumsOnly  bool
	fallbackToSums bool // without the passphrases it needs, verify the checksums only (backup after writing)
}

// scratchCopy is a backup restored into a scratch install directory, moved
// to free loopback ports, that can be started and stopped.
type scratchCopy struct {
	env      *Env
	o        startOptions
	root     string // the scratch directory (removed by remove)
	h        home.Home
	manifest *backup.Manifest
	nm       domain.NodeManagerConf // as restored (before the ports moved)
	topo     *topology.Topology     // after the ports moved
	stops    [][]string             // what to run to stop what was started, in start order
}

// errNeedsPassphrase is returned by restoreScratch when the copy cannot be
// started without passphrases that were not given.
type errNeedsPassphrase struct{ what []string }

func (e *errNeedsPassphrase) Error() string {
	return "the restored domain has passphrases; to start it, give " + strings.Join(e.what, " and ")
}

// restoreScratch restores file into a scratch install directory, moves
// every port of it to a free loopback port (and every other host's out of
// reach: nothing of the copy can take the live domain's ports or reach its
// hosts) and installs the running binary into it.
func restoreScratch(ctx context.Context, env *Env, file string, o startOptions, pm *portMap, nmAt string) (c *scratchCopy, err error) {
	parent := o.scratch
	if parent == "" {
		parent = os.TempDir()
	}
	root, err := os.MkdirTemp(parent, "gatehouse-verify-")
	if err != nil {
		return nil, fmt.Errorf("a scratch directory: %w", err)
	}
	sc := &scratchCopy{env: env, o: o, root: root, h: home.Home{Dir: filepath.Join(root, "apigateway")}}
	c = sc
	defer func() {
		if err != nil {
			sc.remove()
		}
	}()
	in, err := openInput(env, file)
	if err != nil {
		return nil, err
	}
	c.manifest, _, err = backup.Restore(ctx, in, c.h.Dir, backup.RestoreOptions{})
	in.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if c.nm, err = domain.LoadNodeManagerConf(c.h); err != nil {
		return nil, fmt.Errorf("the restored node manager settings: %w", err)
	}
	t, err := topology.NewStore(c.h, nil).Load()
	if err != nil {
		return nil, fmt.Errorf("the restored topology: %w", err)
	}
	var need []string
	if secret.ScopeNodeManagers.Protected(c.h) && o.nmPassFile == "" {
		need = append(need, "the node manager's (--passphrase_file F)")
	}
	for _, r := range t.Instances(c.nm.HostID) {
		if secret.GroupScope(r.Group.ID).Protected(c.h) && o.groupPassFile == "" {
			need = append(need, fmt.Sprintf("group %q's (--group_passphrase_file F)", r.Group.Name))
			break
		}
	}
	if len(need) > 0 {
		return c, &errNeedsPassphrase{need}
	}
	if _, err := backup.Remap(ctx, c.h, backup.Map{Port: pm.port, Loopback: true, Isolated: true, NodeManagersAt: nmAt}); err != nil {
		return nil, fmt.Errorf("moving the copy to free ports: %w", err)
	}
	if pm.err != nil {
		return nil, fmt.Errorf("free ports: %w", pm.err)
	}
	if c.topo, err = topology.NewStore(c.h, nil).Load(); err != nil {
		return nil, fmt.Errorf("the restored topology: %w", err)
	}
	if err := domain.InstallBinary(c.h, env.Exe, LinkedNames()); err != nil {
		return nil, fmt.Errorf("installing the binary into the copy: %w", err)
	}
	return c, nil
}

// portMap gives each port of a backup a free loopback port, the same one
// each time it is asked (the copies of a domain's hosts agree on them).
type portMap struct {
	m   map[int]int
	err error
}

func newPortMap() *portMap { return &portMap{m: map[int]int{}} }

func (p *portMap) port(old int) int {
	if n, ok := p.m[old]; ok {
		return n
	}
	n, err := freeLoopbackPort()
	if err != nil && p.err == nil {
		p.err = err
	}
	p.m[old] = n
	return n
}

// run runs the copy's binary with args, in the copy.
func (c *scratchCopy) run(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(c.h.BinDir(), "gatehouse"), args...)
	cmd.Env = append(withoutHome(os.Environ()), "GATEHOUSE_HOME="+c.h.Dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args[:2], " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// startNodeManager starts the copy's node manager.
func (c *scratchCopy) startNodeManager(ctx context.Context) (port int, err error) {
	args := []string{"nodemanager", "-d", "-q"}
	if c.o.nmPassFile != "" {
		args = append(args, "--passphrase_file", c.o.nmPassFile)
	}
	if err := c.run(ctx, args...); err != nil {
		return 0, fmt.Errorf("the restored node manager did not start: %w", err)
	}
	c.stops = append(c.stops, []string{"nodemanager", "-k", "-q"})
	nm, err := domain.LoadNodeManagerConf(c.h)
	return nm.Port, err
}

// startInstance starts instance r of the copy and waits for its
// /healthcheck.
func (c *scratchCopy) startInstance(ctx context.Context, r topology.InstanceRef) error {
	args := []string{"startinstance", "-d", "-q", "-n", r.Service.Name, "-g", r.Group.Name}
	if secret.GroupScope(r.Group.ID).Protected(c.h) {
		args = append(args, "--passphrase_file", c.o.groupPassFile)
	}
	if err := c.run(ctx, args...); err != nil {
		return fmt.Errorf("instance %q of group %q did not start: %w", r.Service.Name, r.Group.Name, err)
	}
	c.stops = append(c.stops, []string{"startinstance", "-k", "-q", "-n", r.Service.Name, "-g", r.Group.Name})
	if err := healthy(ctx, r.Service.Scheme, r.Service.TrafficPort); err != nil {
		return fmt.Errorf("instance %q of group %q: %w", r.Service.Name, r.Group.Name, err)
	}
	return nil
}

// stop stops what was started, the last first; nothing of the copy
// outlives it.
func (c *scratchCopy) stop(ctx context.Context) error {
	var first error
	for i := len(c.stops) - 1; i >= 0; i-- {
		if err := c.run(ctx, c.stops[i]...); err != nil && first == nil {
			first = fmt.Errorf("stopping the copy: %w", err)
		}
	}
	c.stops = nil
	return first
}

// remove removes the scratch directory, unless it is to be kept.
func (c *scratchCopy) remove() {
	if !c.o.keep {
		os.RemoveAll(c.root)
	}
}

// verifyStarted restores file into a scratch copy, starts its node manager
// and one instance of each group of this host, checks that each answers
// /healthcheck and that each group's embedded store opens, then stops
// them and removes the copy.
func verifyStarted(ctx context.Context, env *Env, file string, o startOptions) (err error) {
	c, err := restoreScratch(ctx, env, file, o, newPortMap(), "")
	var np *errNeedsPassphrase
	switch {
	case c != nil && err != nil:
		defer c.remove()
		if o.fallbackToSums && asNeeds(err, &np) {
			fmt.Fprintf(env.Stderr, "backup: NOT started in a scratch directory: %s to gatehouse backup verify.\n", np)
			fmt.Fprintf(env.Stdout, "Verified %s: every checksum right (the copy was not started).\n", file)
			return nil
		}
		return fmt.Errorf("verify: %w, or --checksums-only", err)
	case err != nil:
		return fmt.Errorf("verify: %w", err)
	}
	defer c.remove()
	m := c.manifest
	fmt.Fprintf(env.Stdout, "Checksums right: %d entries (Gatehouse %s, host %s, made %s); restored into %s.\n", len(m.Entries), m.Gatehouse, m.Host, m.Created.Format("2006-01-02 15:04:05Z"), c.h.Dir)
	defer func() {
		if serr := c.stop(ctx); serr != nil && err == nil {
			err = fmt.Errorf("verify: %w", serr)
		}
	}()
	port, err := c.startNodeManager(ctx)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	fmt.Fprintf(env.Stdout, "Node manager %s started on 127.0.0.1:%d.\n", c.nm.NodeManagerID, port)
	seen := map[string]bool{}
	for _, r := range c.topo.Instances(c.nm.HostID) {
		if seen[r.Group.ID] {
			continue // one per group
		}
		seen[r.Group.ID] = true
		if err := c.startInstance(ctx, r); err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		fmt.Fprintf(env.Stdout, "Instance %q of group %q started on 127.0.0.1:%d and answered /healthcheck.\n", r.Service.Name, r.Group.Name, r.Service.TrafficPort)
	}
	// Each group's embedded store opens, and its rows are counted.
	for _, g := range c.topo.Groups {
		if _, err := os.Stat(sqlite.GroupPath(c.h, g.ID)); err != nil {
			continue
		}
		rows, tables, err := countRows(ctx, c.h, g.ID)
		if err != nil {
			return fmt.Errorf("verify: the key property store of group %q: %w", g.Name, err)
		}
		fmt.Fprintf(env.Stdout, "Key property store of group %q opened: %d rows in %d tables.\n", g.Name, rows, tables)
	}
	// Each PostgreSQL export reads back whole (its own checksum, every row
	// fitting its table).
	for _, e := range c.manifest.Entries {
		if e.Export != kpsexport.Kind {
			continue
		}
		f, err := os.Open(filepath.Join(c.h.Dir, filepath.FromSlash(e.Path)))
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		b, err := kpsbackup.Parse(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("verify: the PostgreSQL key property store export %s: %w", e.Path, err)
		}
		var rows int64
		for _, t := range b.Manifest.Tables {
			rows += t.Rows
		}
		fmt.Fprintf(env.Stdout, "PostgreSQL key property store export of group %q read: %d rows in %d tables, %d shared secrets (as of %s).\n",
			b.Manifest.GroupName, rows, len(b.Manifest.Tables), len(b.Secrets), e.Snapshot.Format("2006-01-02 15:04:05Z"))
	}
	what := "removed"
	if o.keep {
		what = "kept in " + c.h.Dir
	}
	fmt.Fprintf(env.Stdout, "Verified %s: every checksum right, and the restored copy started and answered (stopped; %s).\n", file, what)
	return nil
}

func asNeeds(err error, np **errNeedsPassphrase) bool {
	e, ok := err.(*errNeedsPassphrase)
	if ok {
		*np = e
	}
	return ok
}

// healthy waits (10 s at most) for /healthcheck to answer 200.
func healthy(ctx context.Context, scheme string, port int) error {
	_, err := awaitOK(ctx, fmt.Sprintf("%s://127.0.0.1:%d/healthcheck", orHTTP(scheme), port), 10*time.Second)
	return err
}

func orHTTP(scheme string) string {
	if scheme == "" {
		return "http"
	}
	return scheme
}

// copyClient talks to a scratch copy: its own certificate, on a loopback
// address it was not issued for (what is checked is that it serves).
var copyClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
	TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // see above
}}

// awaitOK asks GET url until it answers 200 (within limit) and returns
// when it did.
func awaitOK(ctx context.Context, url string, limit time.Duration) (time.Time, error) {
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := copyClient.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Now(), nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return time.Time{}, fmt.Errorf("%s did not answer 200 within %s: %w", url, limit, last)
}

// countRows opens group gid's embedded store as it is stored and counts
// its rows.
func countRows(ctx context.Context, h home.Home, gid string) (rows int64, tables int, err error) {
	cfg := groupconf.Defaults().KPS
	st, err := apps.OpenGroupStoreMode(ctx, h, gid, cfg, nil, apps.Raw)
	if err != nil {
		return 0, 0, err
	}
	defer st.Close()
	defs, err := st.Tables(ctx)
	if err != nil {
		return 0, 0, err
	}
	for _, d := range defs {
		n, err := st.Count(ctx, d.Alias)
		if err != nil {
			return 0, 0, err
		}
		rows += n
	}
	return rows, len(defs), nil
}

// freeLoopbackPort returns a TCP port free on 127.0.0.1 now.
func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func withoutHome(env []string) []string {
	out := env[:0:0]
	for _, e := range env {
		if !strings.HasPrefix(e, "GATEHOUSE_HOME=") {
			out = append(out, e)
		}
	}
	return out
}
