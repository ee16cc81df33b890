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
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/kps/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// startOptions are the options of a verification that starts the restored
// domain (backup verify without --checksums-only, and backup after writing).
type startOptions struct {
	scratch        string // parent directory of the scratch install directory; "" is $TMPDIR
	keep           bool   // leave the scratch directory (and nothing running)
	nmPassFile     string // the node manager's passphrase, when its secrets have one
	groupPassFile  string // the groups' passphrase, when they have one
	checksumsOnly  bool
	fallbackToSums bool // without the passphrases it needs, verify the checksums only (backup after writing)
}

// verifyStarted restores file into a scratch install directory, moves every
// port of it to a free loopback port (and every other host's out of reach),
// starts its node manager and one instance of each group of this host, and
// checks that each answers /healthcheck and that each group's embedded store
// opens. Everything it started is stopped, and the directory removed,
// before it returns.
func verifyStarted(ctx context.Context, env *Env, file string, o startOptions) (err error) {
	parent := o.scratch
	if parent == "" {
		parent = os.TempDir()
	}
	scratch, err := os.MkdirTemp(parent, "gatehouse-verify-")
	if err != nil {
		return fmt.Errorf("verify: a scratch directory: %w", err)
	}
	if !o.keep {
		defer os.RemoveAll(scratch)
	}
	target := filepath.Join(scratch, "apigateway")
	in, err := openInput(env, file)
	if err != nil {
		return err
	}
	m, _, err := backup.Restore(ctx, in, target, backup.RestoreOptions{})
	in.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	fmt.Fprintf(env.Stdout, "Checksums right: %d entries (Gatehouse %s, host %s, made %s); restored into %s.\n", len(m.Entries), m.Gatehouse, m.Host, m.Created.Format("2006-01-02 15:04:05Z"), target)
	h := home.Home{Dir: target}

	nm, err := domain.LoadNodeManagerConf(h)
	if err != nil {
		return fmt.Errorf("verify: the restored node manager settings: %w", err)
	}
	t, err := topology.NewStore(h, nil).Load()
	if err != nil {
		return fmt.Errorf("verify: the restored topology: %w", err)
	}
	// Passphrases: what has one needs it to start.
	var need []string
	if secret.ScopeNodeManagers.Protected(h) && o.nmPassFile == "" {
		need = append(need, "the node manager's (--passphrase_file F)")
	}
	type started struct {
		group, groupID string
		svc            topology.Service
	}
	var instances []started
	for _, g := range t.Groups {
		for _, s := range g.Services {
			if s.Type == topology.TypeGateway && s.HostID == nm.HostID {
				instances = append(instances, started{g.Name, g.ID, s})
				if secret.GroupScope(g.ID).Protected(h) && o.groupPassFile == "" {
					need = append(need, fmt.Sprintf("group %q's (--group_passphrase_file F)", g.Name))
				}
				break
			}
		}
	}
	if len(need) > 0 {
		msg := "the restored domain has passphrases; to start it, give " + strings.Join(need, " and ")
		if o.fallbackToSums {
			fmt.Fprintf(env.Stderr, "backup: NOT started in a scratch directory: %s to gatehouse backup verify.\n", msg)
			fmt.Fprintf(env.Stdout, "Verified %s: every checksum right (the copy was not started).\n", file)
			return nil
		}
		return fmt.Errorf("verify: %s, or --checksums-only", msg)
	}

	// Every port to a free loopback one: nothing of the copy can reach
	// the live domain's hosts, nor take their ports.
	ports := map[int]int{}
	var portErr error
	free := func(old int) int {
		if p, ok := ports[old]; ok {
			return p
		}
		p, err := freeLoopbackPort()
		if err != nil && portErr == nil {
			portErr = err
		}
		ports[old] = p
		return p
	}
	if _, err := backup.Remap(ctx, h, backup.Map{Port: free, Loopback: true}); err != nil {
		return fmt.Errorf("verify: moving the copy to free ports: %w", err)
	}
	if portErr != nil {
		return fmt.Errorf("verify: free ports: %w", portErr)
	}
	if t, err = topology.NewStore(h, nil).Load(); err != nil {
		return fmt.Errorf("verify: the restored topology: %w", err)
	}
	if err := domain.InstallBinary(h, env.Exe, LinkedNames()); err != nil {
		return fmt.Errorf("verify: installing the binary into the copy: %w", err)
	}

	run := func(args ...string) error {
		cmd := exec.CommandContext(ctx, filepath.Join(h.BinDir(), "gatehouse"), args...)
		cmd.Env = append(withoutHome(os.Environ()), "GATEHOUSE_HOME="+target)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %w: %s", strings.Join(args[:2], " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	// Stop what was started, whatever happens; without -k, nothing of
	// the copy outlives the verification.
	var stops [][]string
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			if serr := run(stops[i]...); serr != nil && err == nil {
				err = fmt.Errorf("verify: stopping the copy: %w", serr)
			}
		}
	}()
	nmArgs := []string{"nodemanager", "-d", "-q"}
	if o.nmPassFile != "" {
		nmArgs = append(nmArgs, "--passphrase_file", o.nmPassFile)
	}
	if err := run(nmArgs...); err != nil {
		return fmt.Errorf("verify: the restored node manager did not start: %w", err)
	}
	stops = append(stops, []string{"nodemanager", "-k", "-q"})
	nmPort := 0
	if nmc, err := domain.LoadNodeManagerConf(h); err == nil {
		nmPort = nmc.Port
	}
	fmt.Fprintf(env.Stdout, "Node manager %s started on 127.0.0.1:%d.\n", nm.NodeManagerID, nmPort)
	for _, in := range instances {
		ref, err := t.FindInstanceID(in.svc.ID)
		if err != nil {
			return fmt.Errorf("verify: the restored topology: %w", err)
		}
		s := ref.Service
		args := []string{"startinstance", "-d", "-q", "-n", in.svc.Name, "-g", in.group}
		if secret.GroupScope(in.groupID).Protected(h) {
			args = append(args, "--passphrase_file", o.groupPassFile)
		}
		if err := run(args...); err != nil {
			return fmt.Errorf("verify: instance %q of group %q did not start: %w", in.svc.Name, in.group, err)
		}
		stops = append(stops, []string{"startinstance", "-k", "-q", "-n", in.svc.Name, "-g", in.group})
		if err := healthy(ctx, s.Scheme, s.TrafficPort); err != nil {
			return fmt.Errorf("verify: instance %q of group %q: %w", in.svc.Name, in.group, err)
		}
		fmt.Fprintf(env.Stdout, "Instance %q of group %q started on 127.0.0.1:%d and answered /healthcheck.\n", in.svc.Name, in.group, s.TrafficPort)
	}
	// Each group's embedded store opens, and its rows are counted.
	for _, g := range t.Groups {
		if _, err := os.Stat(sqlite.GroupPath(h, g.ID)); err != nil {
			continue
		}
		rows, tables, err := countRows(ctx, h, g.ID)
		if err != nil {
			return fmt.Errorf("verify: the key property store of group %q: %w", g.Name, err)
		}
		fmt.Fprintf(env.Stdout, "Key property store of group %q opened: %d rows in %d tables.\n", g.Name, rows, tables)
	}
	what := "removed"
	if o.keep {
		what = "kept in " + target
	}
	fmt.Fprintf(env.Stdout, "Verified %s: every checksum right, and the restored copy started and answered (stopped; %s).\n", file, what)
	return nil
}

// healthy waits (10 s at most) for /healthcheck to answer 200.
func healthy(ctx context.Context, scheme string, port int) error {
	if scheme == "" {
		scheme = "http"
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		// The copy's own certificate, on a loopback address it was not
		// issued for: what is checked is that it serves.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // see above
	}}
	url := fmt.Sprintf("%s://127.0.0.1:%d/healthcheck", scheme, port)
	deadline := time.Now().Add(10 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := c.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("/healthcheck did not answer 200 within 10 s: %w", last)
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
