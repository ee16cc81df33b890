package tools

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apps"
	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/backup"
	"github.com/gatehouse-gw/gatehouse/internal/backup/kpsexport"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// gatehouse dr drill: a disaster-recovery rehearsal with a measured
// recovery time and recovery point (docs/backup.md#dr-drill).

var drTool = Tool{
	Name: "dr", Summary: "disaster recovery: dr drill rehearses a restore and measures its recovery time and point",
	Run: runDR,
}

const drHelp = `usage: gatehouse dr drill [--domain | --from FILE] [--report FILE] [VERIFY OPTIONS]

Rehearses a disaster recovery of this host, beside the live domain, and
measures it: takes a backup (or uses --from FILE), restores it into a
scratch directory on free loopback ports, starts the restored node manager
and every instance of this host, runs a smoke test — each instance's
/healthcheck, each API of each group (answered without a 5xx), an API key
where an apiKey policy is configured, an OAuth client_credentials grant
where the group's authorization server is on — then stops it all and
removes the copy. It prints:

  recovery time (RTO)   from the start of the restore to the first
                        successful smoke request, and to the last
  recovery point (RPO)  the backup's age when the restore began, and the
                        time before which every KPS write is in it

and writes them, with every smoke request, to a JSON report
(conf/drills/drill-<UTC time>.json unless --report), which the audit log
entry "dr drill" names.

  --domain                    on the Admin Node Manager's host: the whole
                              domain (backup --domain), every host's part
                              restored and started side by side on loopback
                              ports that reach each other
  --from FILE                 drill with this backup (one host's, or a
                              domain backup: every host) instead of a new one
  --report FILE               where to write the report
  --passphrase_file F         the node manager's passphrase, if any
  --group_passphrase_file F   the groups' passphrase, if any
  --scratch DIR               make the scratch directory in DIR ($TMPDIR)
  --keep-scratch              leave the scratch directory (stopped)

Exit codes: 0 every smoke request passed; 1 a step or a smoke request
failed (the report says which); 2 wrong usage.`

// drillReport is the JSON report of a drill.
type drillReport struct {
	Started  time.Time `json:"started"`
	Host     string    `json:"host"`
	Backup   string    `json:"backup"`
	Passed   bool      `json:"passed"`
	Error    string    `json:"error,omitempty"`
	Recovery struct {
		// Seconds from the start of the restore.
		FirstSmokeOK float64 `json:"firstSmokeOkSeconds"`
		AllSmokeOK   float64 `json:"allSmokeOkSeconds,omitempty"`
		Restore      float64 `json:"restoreSeconds"`
	} `json:"recoveryTime"`
	Point struct {
		BackupCreated time.Time `json:"backupCreated"`
		BackupAge     float64   `json:"backupAgeSeconds"`
		KPSWrites     time.Time `json:"kpsWritesBefore"`
	} `json:"recoveryPoint"`
	Hosts     int          `json:"hosts"`
	Instances int          `json:"instances"`
	Notes     []string     `json:"notes,omitempty"`
	KPSRows   int64        `json:"kpsRows"`
	Smoke     []smokeCheck `json:"smoke"`
}

// smokeCheck is one request of the smoke test.
type smokeCheck struct {
	What   string  `json:"what"`
	URL    string  `json:"url"`
	Status int     `json:"status,omitempty"`
	OK     bool    `json:"ok"`
	Error  string  `json:"error,omitempty"`
	At     float64 `json:"atSeconds"` // from the start of the restore
}

func runDR(ctx context.Context, env *Env, args []string) error {
	// Ctrl-C or SIGTERM (a node manager stopping a scheduled backup) ends
	// it cleanly: a partial file removed, an upgrade undone.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) > 0 && (args[0] == "--help" || args[0] == "-h") {
		fmt.Fprintln(env.Stdout, drHelp)
		return nil
	}
	if len(args) == 0 || args[0] != "drill" {
		return usagef("dr", "want the verb drill (gatehouse dr drill --help)")
	}
	var from, reportFile string
	var so startOptions
	var wholeDomain bool
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--help" || a == "-h" {
			fmt.Fprintln(env.Stdout, drHelp)
			return nil
		}
		if a == "--keep-scratch" {
			so.keep = true
			continue
		}
		if a == "--domain" {
			wholeDomain = true
			continue
		}
		dst := map[string]*string{"--from": &from, "--report": &reportFile, "--passphrase_file": &so.nmPassFile, "--group_passphrase_file": &so.groupPassFile, "--scratch": &so.scratch}[a]
		if dst == nil {
			return usagef("dr", "unknown argument %q; accepted: --domain, --from FILE, --report FILE, --passphrase_file F, --group_passphrase_file F, --scratch DIR, --keep-scratch", a)
		}
		if i+1 >= len(args) || args[i+1] == "" {
			return usagef("dr", "%s needs a value", a)
		}
		i++
		abs, err := filepath.Abs(args[i])
		if err != nil {
			return err
		}
		*dst = abs
	}
	h, err := home.Resolve()
	if err != nil {
		return err
	}
	if err := h.CheckDomain(); err != nil {
		return err
	}
	nm, err := domain.LoadNodeManagerConf(h)
	if err != nil {
		return err
	}
	rep := &drillReport{Started: time.Now().UTC(), Host: nm.HostID}
	if wholeDomain && from != "" {
		return usagef("dr", "--domain takes the domain's backup; --from names one: give one of them")
	}
	if wholeDomain {
		t, anmNM, c, err := anmContext(h)
		if err != nil {
			return fmt.Errorf("dr drill: %w", err)
		}
		defer c.Close()
		sources, err := hostSources(env, h, t, anmNM, c, false)
		if err != nil {
			return err
		}
		dir, err := os.MkdirTemp(so.scratch, "gatehouse-drill-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		from = filepath.Join(dir, "domain.backup")
		t0 := time.Now()
		err = backup.WriteAtomic(from, func(w io.Writer) error {
			_, err := backup.WriteDomain(ctx, w, sources, backup.DomainOptions{Gatehouse: Version, TopologyVersion: t.Version})
			return err
		})
		if err != nil {
			return fmt.Errorf("dr drill: the domain's backup: %w", err)
		}
		fmt.Fprintf(env.Stdout, "Backed up the domain's %d hosts in %.1f s.\n", len(sources), time.Since(t0).Seconds())
		rep.Backup = "(the domain's, taken by the drill)"
	} else if from == "" {
		dir, err := os.MkdirTemp(so.scratch, "gatehouse-drill-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		from = filepath.Join(dir, "drill.backup")
		o := backup.Options{Gatehouse: Version, Host: nm.HostID}
		if t, err := topology.NewStore(h, nil).Load(); err == nil {
			o.TopologyVersion = t.Version
		}
		o, warnings, err := kpsexport.WithExports(h, o, false)
		for _, w := range warnings {
			fmt.Fprintf(env.Stderr, "dr drill: warning: %s\n", w)
		}
		if err != nil {
			return fmt.Errorf("dr drill: the backup: %w", err)
		}
		t0 := time.Now()
		m, err := backup.WriteFile(ctx, h, from, o)
		if err != nil {
			return fmt.Errorf("dr drill: the backup: %w", err)
		}
		fmt.Fprintf(env.Stdout, "Backed up %d entries in %.1f s.\n", len(m.Entries), time.Since(t0).Seconds())
		rep.Backup = "(taken by the drill)"
	} else {
		rep.Backup = from
	}
	drillErr := drill(ctx, env, from, so, rep)
	rep.Passed = drillErr == nil
	if drillErr != nil {
		rep.Error = drillErr.Error()
	}
	if reportFile == "" {
		reportFile = h.Path("conf", "drills", "drill-"+rep.Started.Format("20060102T150405Z")+".json")
	}
	data, _ := json.MarshalIndent(rep, "", "  ")
	if err := os.MkdirAll(filepath.Dir(reportFile), 0o750); err != nil {
		return err
	}
	if err := home.WriteFileAtomic(reportFile, append(data, '\n'), 0o640); err != nil {
		return fmt.Errorf("dr drill: writing the report: %w", err)
	}
	detail := fmt.Sprintf("report %s; recovery time %.1f s (first smoke request), %.1f s (all); backup %.0f s old, KPS writes before %s",
		reportFile, rep.Recovery.FirstSmokeOK, rep.Recovery.AllSmokeOK, rep.Point.BackupAge, rep.Point.KPSWrites.Format(time.RFC3339))
	e := audit.Entry{User: osUser(), Via: "dr", Remote: "local", Action: "dr drill", Detail: detail, Error: rep.Error}
	if _, aerr := audit.Open(h).Record(ctx, e); aerr != nil {
		fmt.Fprintf(env.Stderr, "dr: warning: the audit log: %v\n", aerr)
	}
	fmt.Fprintf(env.Stdout, "Report: %s\n", reportFile)
	if drillErr != nil {
		return fmt.Errorf("dr drill failed: %w", drillErr)
	}
	return nil
}

// drill restores file into scratch copies (one per host part: a domain
// backup's every host, started side by side on loopback ports that reach
// each other), starts them, runs the smoke test and fills rep; the copies
// are stopped and removed before it returns.
func drill(ctx context.Context, env *Env, file string, so startOptions, rep *drillReport) (err error) {
	t0 := time.Now()
	since := func() float64 { return time.Since(t0).Seconds() }
	parts, cleanup, err := drillParts(ctx, env, file, so.scratch)
	defer cleanup()
	if err != nil {
		return err
	}
	pm, nmAt := newPortMap(), ""
	if len(parts) > 1 {
		nmAt = "127.0.0.1"
	}
	var copies []*scratchCopy
	defer func() {
		for i := len(copies) - 1; i >= 0; i-- {
			if serr := copies[i].stop(ctx); serr != nil && err == nil {
				err = serr
			}
			copies[i].remove()
		}
	}()
	for _, part := range parts {
		c, err := restoreScratch(ctx, env, part, so, pm, nmAt)
		if err != nil {
			if c != nil {
				c.remove()
			}
			return err
		}
		copies = append(copies, c)
		m := c.manifest
		if rep.Point.BackupCreated.IsZero() || m.Created.Before(rep.Point.BackupCreated) {
			rep.Point.BackupCreated = m.Created
		}
		if rp := m.RecoveryPoint(); rep.Point.KPSWrites.IsZero() || rp.Before(rep.Point.KPSWrites) {
			rep.Point.KPSWrites = rp
		}
		fmt.Fprintf(env.Stdout, "Restored host %s: %d entries (backup made %s).\n", m.Host, len(m.Entries), m.Created.Format("2006-01-02 15:04:05Z"))
	}
	rep.Recovery.Restore = since()
	rep.Hosts = len(copies)
	rep.Point.BackupAge = t0.Sub(rep.Point.BackupCreated).Seconds()
	fmt.Fprintf(env.Stdout, "Restored %d host(s) in %.1f s.\n", len(copies), rep.Recovery.Restore)
	// The smoke test's credentials are made in the copies' stores before
	// their instances open them.
	creds := make([]*drillCreds, len(copies))
	for i, c := range copies {
		if creds[i], err = drillCredentials(ctx, c, so, rep); err != nil {
			return err
		}
	}
	// The node managers, the Admin Node Manager's first.
	slices.SortStableFunc(copies, func(a, b *scratchCopy) int { return boolInt(a.nm.ANMAddress != "") - boolInt(b.nm.ANMAddress != "") })
	for _, c := range copies {
		if _, err := c.startNodeManager(ctx); err != nil {
			return err
		}
	}
	smoke := func(s smokeCheck) {
		s.At = since()
		if s.OK && rep.Recovery.FirstSmokeOK == 0 {
			rep.Recovery.FirstSmokeOK = s.At
		}
		rep.Smoke = append(rep.Smoke, s)
		mark := "ok  "
		if !s.OK {
			mark = "FAIL"
		}
		detail := ""
		if s.Status != 0 {
			detail = fmt.Sprintf(" → %d", s.Status)
		}
		if s.Error != "" {
			detail += ": " + s.Error
		}
		fmt.Fprintf(env.Stdout, "  %s %s%s (%.1f s)\n", mark, s.What, detail, s.At)
	}
	for _, c := range copies {
		for _, r := range c.topo.Instances(c.nm.HostID) {
			url := fmt.Sprintf("%s://127.0.0.1:%d/healthcheck", orHTTP(r.Service.Scheme), r.Service.TrafficPort)
			what := fmt.Sprintf("instance %q of group %q: /healthcheck", r.Service.Name, r.Group.Name)
			if err := c.startInstance(ctx, r); err != nil {
				smoke(smokeCheck{What: what, URL: url, Error: err.Error()})
				return err
			}
			smoke(smokeCheck{What: what, URL: url, Status: 200, OK: true})
			rep.Instances++
		}
	}
	for ci, c := range copies {
		if err := drillAPIs(ctx, c, creds[ci], rep, smoke); err != nil {
			return err
		}
	}
	failed := 0
	for _, s := range rep.Smoke {
		if !s.OK {
			failed++
		}
	}
	rep.Recovery.AllSmokeOK = since()
	fmt.Fprintf(env.Stdout, "Recovery time: %.1f s to the first successful smoke request, %.1f s to the last (restore %.1f s; %d host(s), %d instances, %d KPS rows).\n",
		rep.Recovery.FirstSmokeOK, rep.Recovery.AllSmokeOK, rep.Recovery.Restore, rep.Hosts, rep.Instances, rep.KPSRows)
	fmt.Fprintf(env.Stdout, "Recovery point: the backup was %s old; every KPS write before %s is in it.\n",
		time.Duration(rep.Point.BackupAge*float64(time.Second)).Round(time.Second), rep.Point.KPSWrites.Format("2006-01-02 15:04:05.000Z"))
	if failed > 0 {
		rep.Recovery.AllSmokeOK = 0
		return fmt.Errorf("%d of %d smoke requests failed", failed, len(rep.Smoke))
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// drillParts is the backups to restore: file itself for one host's, each
// host's part (in temporary files) for a domain backup.
func drillParts(ctx context.Context, env *Env, file, dir string) (parts []string, cleanup func(), err error) {
	var tmps []string
	cleanup = func() {
		for _, f := range tmps {
			os.Remove(f)
		}
	}
	in, err := openInput(env, file)
	if err != nil {
		return nil, cleanup, err
	}
	head := make([]byte, 512)
	n, _ := io.ReadFull(in, head)
	in.Close()
	if !backup.IsDomain(head[:n]) {
		return []string{file}, cleanup, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, cleanup, err
	}
	dm, err := backup.VerifyDomain(ctx, bufio.NewReader(f))
	f.Close()
	if err != nil {
		return nil, cleanup, fmt.Errorf("%s: %w", file, err)
	}
	if len(dm.Gaps) > 0 {
		return nil, cleanup, fmt.Errorf("%s lacks host %s (%s): a drill needs every host", file, dm.Gaps[0].HostID, dm.Gaps[0].Error)
	}
	for _, p := range dm.Hosts {
		part, err := extractHostPart(ctx, env, file, p.HostID, dir)
		if err != nil {
			return nil, cleanup, err
		}
		tmps = append(tmps, part)
		parts = append(parts, part)
	}
	return parts, cleanup, nil
}

// drillAPIs runs the smoke test of each group of c's host, through its
// first instance there.
func drillAPIs(ctx context.Context, c *scratchCopy, creds *drillCreds, rep *drillReport, smoke func(smokeCheck)) error {
	seen := map[string]bool{}
	for _, r := range c.topo.Instances(c.nm.HostID) {
		if seen[r.Group.ID] {
			continue
		}
		seen[r.Group.ID] = true
		cfg, err := groupconf.LoadInstance(c.h, r.Group.ID, r.Service.ID, nil, nil)
		if err != nil {
			return fmt.Errorf("group %q's configuration: %w", r.Group.Name, err)
		}
		base := fmt.Sprintf("%s://127.0.0.1:%d", orHTTP(r.Service.Scheme), r.Service.TrafficPort)
		for _, api := range cfg.APIs {
			p := api.PathPrefix
			if p == "" && api.Path != "" && !strings.Contains(api.Path, "{") {
				p = api.Path
			}
			if p == "" {
				continue // a regular expression: no path to ask for
			}
			hdr := http.Header{}
			what := fmt.Sprintf("group %q: API %q", r.Group.Name, api.Name)
			keyed := false
			for _, pol := range api.Policies {
				if pol.APIKey != nil && creds.keys[r.Group.ID] != "" {
					name := pol.APIKey.Header
					if name == "" {
						name = groupconf.DefaultAPIKeyHeader
					}
					hdr.Set(name, creds.keys[r.Group.ID])
					keyed = true
				}
			}
			status, err := drillGet(ctx, base+p, hdr)
			s := smokeCheck{What: what, URL: base + p, Status: status}
			switch {
			case err != nil:
				s.Error = err.Error()
			case status >= 500:
				s.Error = "the gateway or the back end failed"
			case keyed && (status == 401 || status == 403):
				s.What += " with the drill's API key"
				s.Error = "the API key of the restored store was refused"
			default:
				if keyed {
					s.What += " with the drill's API key"
				}
				s.OK = true
			}
			smoke(s)
		}
		if cfg.OAuth.Enabled && creds.clients[r.Group.ID] != "" {
			tokenURL := base + cfg.OAuth.PathPrefix + "/token"
			s := smokeCheck{What: fmt.Sprintf("group %q: OAuth client_credentials grant", r.Group.Name), URL: tokenURL}
			s.Status, s.Error = drillGrant(ctx, tokenURL, creds.clients[r.Group.ID], creds.secrets[r.Group.ID])
			s.OK = s.Error == ""
			smoke(s)
		}
		if rows, _, err := countRows(ctx, c.h, r.Group.ID); err == nil {
			rep.KPSRows += rows
		}
	}
	return nil
}

// drillCreds are the credentials the smoke test uses, made in the copy's
// stores: an API key per group with an apiKey policy, an OAuth client per
// group whose authorization server is on.
type drillCreds struct {
	keys, clients, secrets map[string]string // by group id
}

func drillCredentials(ctx context.Context, c *scratchCopy, so startOptions, rep *drillReport) (*drillCreds, error) {
	cr := &drillCreds{keys: map[string]string{}, clients: map[string]string{}, secrets: map[string]string{}}
	seen := map[string]bool{}
	for _, r := range c.topo.Instances(c.nm.HostID) {
		if seen[r.Group.ID] {
			continue
		}
		seen[r.Group.ID] = true
		cfg, err := groupconf.LoadInstance(c.h, r.Group.ID, r.Service.ID, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("group %q's configuration: %w", r.Group.Name, err)
		}
		var keyed []string
		for _, api := range cfg.APIs {
			for _, p := range api.Policies {
				if p.APIKey != nil {
					keyed = append(keyed, api.Name)
				}
			}
		}
		if len(keyed) == 0 && !cfg.OAuth.Enabled {
			continue
		}
		if cfg.KPS.Backend == "postgres" {
			// The copy's configuration names the live PostgreSQL: the
			// drill writes nothing there.
			rep.Notes = append(rep.Notes, fmt.Sprintf("group %q keeps its KPS in PostgreSQL: no API key or OAuth client was made for the smoke test", r.Group.Name))
			continue
		}
		scope := secret.GroupScope(r.Group.ID)
		if scope.Protected(c.h) {
			pass, err := unlockScope(c.env, c.h, scope, passphraseSource{file: so.groupPassFile})
			pass.Wipe()
			if err != nil {
				return nil, fmt.Errorf("group %q: %w", r.Group.Name, err)
			}
		}
		st, err := apps.OpenGroupStore(ctx, c.h, r.Group.ID, cfg.KPS, nil)
		if err != nil {
			return nil, err
		}
		err = func() error {
			defer st.Close()
			hk, err := apps.GroupHashKey(ctx, c.h, r.Group.ID, st)
			if err != nil {
				return err
			}
			mgr, err := apps.NewManager(ctx, st, hk)
			if err != nil {
				return err
			}
			app := apps.App{Name: "dr-drill-" + time.Now().UTC().Format("20060102T150405"), Enabled: true, APIs: keyed,
				Description: "made by gatehouse dr drill in a scratch copy"}
			if cfg.OAuth.Enabled {
				app.OAuth = &apps.OAuthClient{GrantTypes: []string{"client_credentials"}}
			}
			app, err = mgr.CreateApp(ctx, app)
			if err != nil {
				return err
			}
			if len(keyed) > 0 {
				_, key, err := mgr.CreateKey(ctx, app.ID, time.Time{})
				if err != nil {
					return err
				}
				cr.keys[r.Group.ID] = key.RevealString()
			}
			if cfg.OAuth.Enabled {
				_, sec, err := mgr.CreateClientSecret(ctx, app.ID, time.Time{})
				if err != nil {
					return err
				}
				cr.clients[r.Group.ID], cr.secrets[r.Group.ID] = app.ID, sec.RevealString()
			}
			return nil
		}()
		if err != nil {
			return nil, fmt.Errorf("the drill's credentials in group %q's store: %w", r.Group.Name, err)
		}
	}
	return cr, nil
}

func drillGet(ctx context.Context, u string, hdr http.Header) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	req.Header = hdr
	resp, err := copyClient.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return resp.StatusCode, nil
}

// drillGrant asks for a token with client_credentials; it returns the
// status and, when no access token came, why.
func drillGrant(ctx context.Context, tokenURL, id, sec string) (int, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(sec))
	resp, err := copyClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
	}
	json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&tok)
	if resp.StatusCode != http.StatusOK || tok.AccessToken == "" {
		return resp.StatusCode, fmt.Sprintf("no access token (%s)", tok.Error)
	}
	return resp.StatusCode, ""
}
