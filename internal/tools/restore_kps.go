package tools

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/backup"
	"github.com/gatehouse-gw/gatehouse/internal/backup/kpsexport"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/kpsbackup"
	"github.com/gatehouse-gw/gatehouse/internal/nodemanager"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// kpsTarget is a --kps-postgres [GROUP=]URL of restore.
type kpsTarget struct {
	group string // id or name; empty: the archive's only PostgreSQL export
	url   string // as given, for messages (it holds no password)
	cfg   kps.PostgresConfig
}

// parsePostgresURL reads postgres://USER@HOST[:PORT]/DATABASE[?sslmode=…&sslrootcert=…&schema=…&host=/socket/dir].
// A password in it is refused: a command line is seen by every user of
// the host (ps); it comes from --kps-postgres-password-file or PGPASSWORD.
func parsePostgresURL(s string) (kps.PostgresConfig, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return kps.PostgresConfig{}, fmt.Errorf("%q: want postgres://USER@HOST[:PORT]/DATABASE[?sslmode=…&sslrootcert=…&schema=…]", s)
	}
	if _, set := u.User.Password(); set {
		return kps.PostgresConfig{}, fmt.Errorf("%q holds a password: every user of this host would see it; give it with --kps-postgres-password-file FILE or the PGPASSWORD environment variable", redactURL(u))
	}
	c := kps.PostgresConfig{Host: u.Hostname(), User: u.User.Username(), Database: strings.TrimPrefix(u.Path, "/")}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return kps.PostgresConfig{}, fmt.Errorf("%q: port %q is not a TCP port", s, p)
		}
		c.Port = n
	}
	for k, v := range u.Query() {
		switch k {
		case "sslmode":
			c.SSLMode = v[0]
		case "sslrootcert":
			c.SSLRootCert = v[0]
		case "schema":
			c.Schema = v[0]
		case "host":
			c.Host = v[0]
		default:
			return kps.PostgresConfig{}, fmt.Errorf("%q: unknown parameter %q (known: sslmode, sslrootcert, schema, host)", s, k)
		}
	}
	if c.Host == "" || c.User == "" || c.Database == "" || strings.Contains(c.Database, "/") {
		return kps.PostgresConfig{}, fmt.Errorf("%q: give the user, host and database: postgres://USER@HOST[:PORT]/DATABASE", s)
	}
	return c, nil
}

func redactURL(u *url.URL) string {
	c := *u
	if c.User != nil {
		c.User = url.UserPassword(c.User.Username(), "xxxxx")
	}
	return c.String()
}

// describePostgres names a database without its password.
func describePostgres(c kps.PostgresConfig) string {
	port := c.Port
	if port == 0 {
		port = 5432
	}
	schema := c.Schema
	if schema == "" {
		schema = "public"
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s (schema %s)", c.User, c.Host, port, c.Database, schema)
}

// loadKPSExports loads the PostgreSQL exports restored into h (the
// entries of m marked kpsexport.Kind) into the databases targets name,
// and says where the others are. force replaces rows of non-empty tables.
func loadKPSExports(ctx context.Context, out io.Writer, h home.Home, m *backup.Manifest, targets []kpsTarget, password secret.Value, force bool) error {
	type export struct {
		path string
		b    *kpsbackup.Backup
	}
	var exports []export
	for _, e := range m.Entries {
		if e.Export != kpsexport.Kind {
			continue
		}
		p := filepath.Join(h.Dir, filepath.FromSlash(e.Path))
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		b, err := kpsbackup.Parse(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("the key property store export %s: %w", p, err)
		}
		exports = append(exports, export{p, b})
	}
	used := make([]bool, len(targets))
	for _, ex := range exports {
		mf := ex.b.Manifest
		ti := -1
		for i, t := range targets {
			if t.group == mf.GroupID || t.group == mf.GroupName || (t.group == "" && len(exports) == 1) {
				ti = i
			}
		}
		rows := int64(0)
		for _, t := range mf.Tables {
			rows += t.Rows
		}
		if ti < 0 {
			fmt.Fprintf(out, "Group %q keeps its key property store in PostgreSQL: its export (%d rows, %d tables, taken %s) is restored as %s, not loaded. Load it with restore --kps-postgres %s=URL, or with kpsadmin restore -g %s -n %s --uuid %s once the group's configuration names the database.\n",
				mf.GroupName, rows, len(mf.Tables), mf.Created.Format("2006-01-02 15:04:05Z"), ex.path, shellWord(mf.GroupName), shellWord(mf.GroupName), shellWord(mf.InstanceName), mf.UUID)
			continue
		}
		used[ti] = true
		cfg := targets[ti].cfg
		cfg.Password = password
		st, err := kps.Open(ctx, kps.Config{Backend: "postgres", Postgres: cfg})
		if err != nil {
			return fmt.Errorf("group %q: %s: %w", mf.GroupName, targets[ti].url, err)
		}
		res, err := kpsbackup.Restore(ctx, st, ex.b, kpsbackup.RestoreOptions{Force: force})
		st.Close()
		if err != nil {
			hint := ""
			if _, ok := err.(*kpsbackup.NotEmptyError); ok {
				hint = " (--force replaces them)"
			}
			return fmt.Errorf("group %q: loading its key property store into %s: %w%s; nothing of it was loaded (the files are restored; the export is %s)", mf.GroupName, describePostgres(cfg), err, hint, ex.path)
		}
		var total int64
		for _, t := range res.Tables {
			total += t.Rows
		}
		fmt.Fprintf(out, "Group %q: its key property store (%d rows in %d tables, shared secrets %s) loaded into %s.\n",
			mf.GroupName, total, len(res.Tables), strings.Join(res.Secrets, ", "), describePostgres(cfg))
		if gc, err := groupconf.LoadInstance(h, mf.GroupID, mf.InstanceID, nil, nil); err == nil {
			p := gc.KPS.Postgres
			named := kps.PostgresConfig{Host: p.Host, Port: p.Port, Database: p.Database, User: p.User, Schema: p.Schema}
			if describePostgres(named) != describePostgres(cfg) {
				fmt.Fprintf(out, "  Note: the group's configuration names %s (kps.postgres): deploy a configuration naming %s, or make that name reach it, before starting its instances.\n", describePostgres(named), describePostgres(cfg))
			}
		}
	}
	for i, t := range targets {
		if !used[i] {
			var have []string
			for _, ex := range exports {
				have = append(have, fmt.Sprintf("%q (%s)", ex.b.Manifest.GroupName, ex.b.Manifest.GroupID))
			}
			if len(have) == 0 {
				return fmt.Errorf("--kps-postgres %s: the backup holds no PostgreSQL export (its groups keep their stores in files, restored with them)", t.url)
			}
			return fmt.Errorf("--kps-postgres %s: the backup holds no PostgreSQL export of group %q; it holds those of %s", t.url, t.group, strings.Join(have, ", "))
		}
	}
	return nil
}

// unlockForExports opens, in this process, the passphrase-sealed secrets
// of the groups of this host whose key property store is PostgreSQL (their
// kps.postgres.passwordFile): with --group_passphrase_file when given,
// else the node manager's passphraseExec, as the node manager does for
// the instances it starts. A group that cannot be unlocked is left: its
// export then fails, and the error says what to give.
func unlockForExports(ctx context.Context, env *Env, h home.Home, groupPassFile string) {
	nm, err := domain.LoadNodeManagerConf(h)
	if err != nil {
		return
	}
	t, err := topology.NewStore(h, nil).Load()
	if err != nil {
		return
	}
	seen := map[string]bool{}
	for _, r := range t.Instances(nm.HostID) {
		if seen[r.Group.ID] {
			continue
		}
		seen[r.Group.ID] = true
		s := secret.GroupScope(r.Group.ID)
		if !s.Protected(h) {
			continue
		}
		if secret.Unlocked(h, s) {
			continue
		}
		cfg, err := groupconf.LoadInstance(h, r.Group.ID, r.Service.ID, nil, nil)
		if err != nil || cfg.KPS.Backend != "postgres" {
			continue
		}
		var p secret.Value
		switch {
		case groupPassFile != "":
			p, err = unlockScope(env, h, s, passphraseSource{file: groupPassFile})
		case len(nm.PassphraseExec) > 0:
			p, err = nodemanager.ExecPassphrase(ctx, h, nm, s)
		default:
			continue
		}
		p.Wipe()
		if err != nil {
			fmt.Fprintf(env.Stderr, "backup: group %q: %v\n", r.Group.Name, err)
		}
	}
}
