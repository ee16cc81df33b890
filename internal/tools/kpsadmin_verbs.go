package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apps"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/fieldcrypt"
	"github.com/gatehouse-gw/gatehouse/internal/kps/kpsbackup"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// The run functions of kpsadmin's verbs (kpsadmin.go has the table).

// backupDir is the instance's conf/kps/backup.
func (s *kpsSession) backupDir() string {
	return filepath.Join(s.t.dir(), "conf", "kps", "backup")
}

// cmd is a kpsadmin command line for the resolved group and instance.
func (s *kpsSession) cmd(verb string, rest ...string) string {
	parts := append([]string{"kpsadmin", verb, "-g", shellWord(s.t.gname), "-n", shellWord(s.t.iname)}, rest...)
	return strings.Join(parts, " ")
}

// --- details -------------------------------------------------------------

func kpsDetails(ctx context.Context, s *kpsSession) error {
	st, err := s.open(ctx, false)
	if err != nil {
		return err
	}
	tables, err := s.selected(ctx, st)
	if err != nil {
		return err
	}
	src := s.h.GroupConfFile(s.t.gid)
	if s.cfg.Deployment != nil {
		src = fmt.Sprintf("deployment archive %d", s.cfg.Deployment.Archive)
	}
	s.out("Key Property Store of group %q (%s)\n", s.t.gname, s.t.gid)
	s.out("  configuration: %s (as instance %q, %s, loads it)\n", src, s.t.iname, s.t.iid)
	s.out("  backend:  %s\n", s.backend())
	s.out("  location: %s\n", s.location())
	s.out("  tables:   %d\n", len(tables))
	for _, t := range tables {
		n, err := st.Count(ctx, t.Alias)
		if err != nil {
			return err
		}
		s.out("\nTable %s: %q in collection %q, %d rows\n", t.Alias, t.Name, t.Collection, n)
		var props []string
		for _, p := range t.Properties {
			d := p.Name + " " + string(p.Type)
			if p.Generated {
				d += " (generated)"
			}
			props = append(props, d)
		}
		s.out("  properties:    %s\n", strings.Join(props, ", "))
		s.out("  primary key:   %s\n", t.PrimaryKey)
		s.out("  secondary key: %s\n", orNone(t.SecondaryKey))
		s.out("  indexes:       %s\n", orNone(strings.Join(t.Indexes, ", ")))
	}
	backups, err := s.backups()
	if err != nil {
		return err
	}
	s.out("\nBackups of instance %q (%s): %d\n", s.t.iname, s.backupDir(), len(backups))
	for _, b := range backups {
		s.out("  %s  %s  %d bytes\n", b.uuid, b.mod.UTC().Format(time.RFC3339), b.size)
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

type backupFile struct {
	uuid string
	mod  time.Time
	size int64
}

// backups lists the instance's backup files, newest first.
func (s *kpsSession) backups() ([]backupFile, error) {
	ents, err := os.ReadDir(s.backupDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []backupFile
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), kpsbackup.Ext)
		if !ok || !kpsbackup.ValidUUID(id) || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, backupFile{uuid: id, mod: info.ModTime(), size: info.Size()})
	}
	slices.SortFunc(out, func(a, b backupFile) int { return b.mod.Compare(a.mod) })
	return out, nil
}

// --- list_rows -----------------------------------------------------------

// listRow is how list_rows prints a row.
type listRow struct {
	Version int64          `json:"version"`
	Values  map[string]any `json:"values"`
}

func kpsListRows(ctx context.Context, s *kpsSession) error {
	for {
		next, err := s.listPage(ctx)
		if err != nil || next == "" || !s.menu {
			return err
		}
		more, err := s.yes("More rows follow. Show the next page?")
		if err != nil || !more {
			return err
		}
		s.o.vals["cursor"] = next
	}
}

// listPage prints one page and returns the next page's cursor ("" at the end).
func (s *kpsSession) listPage(ctx context.Context) (string, error) {
	st, err := s.open(ctx, false)
	if err != nil {
		return "", err
	}
	alias := s.o.vals["table"]
	if _, err := s.table(ctx, st, alias); err != nil {
		return "", err
	}
	limit := kps.DefaultLimit
	if v, ok := s.o.vals["limit"]; ok {
		limit, _ = strconv.Atoi(v) // checked by parseKpsadmin
	}
	res, err := st.List(ctx, alias, kps.Page{Limit: limit, Cursor: s.o.vals["cursor"]})
	if errors.Is(err, kps.ErrInvalid) {
		return "", fmt.Errorf("--cursor %q is not one that list_rows printed for table %q", s.o.vals["cursor"], alias)
	}
	if err != nil {
		return "", err
	}
	if s.verbose {
		if n, err := st.Count(ctx, alias); err == nil {
			s.note("table %q: %d rows in all; this page: %d", alias, n, len(res.Rows))
		}
	}
	for _, r := range res.Rows {
		b, err := json.Marshal(listRow{Version: r.Version, Values: r.Values})
		if err != nil {
			return "", err
		}
		s.out("%s\n", b)
	}
	if res.Next != "" && !s.menu {
		fmt.Fprintf(s.env.Stderr, "kpsadmin: more rows follow: %s\n", s.cmd("list_rows", "-t", shellWord(alias), "--limit", strconv.Itoa(limit), "--cursor", res.Next))
	}
	return res.Next, nil
}

// --- clear ---------------------------------------------------------------

var errNotConfirmed = errors.New("not confirmed: nothing was cleared")

func kpsClear(ctx context.Context, s *kpsSession) error {
	st, err := s.open(ctx, false)
	if err != nil {
		return err
	}
	alias := s.o.vals["table"]
	t, err := s.table(ctx, st, alias)
	if err != nil {
		return err
	}
	if builtin(alias) && !s.o.has("force") {
		return usagef(kpsName, "table %q (%q) is one of Gatehouse's own: clearing it stops every client application's API keys at once; "+
			"back it up first (%s) and give --force", alias, t.Name, s.cmd("backup", "-t", alias))
	}
	n, err := st.Count(ctx, alias)
	if err != nil {
		return err
	}
	if !s.o.has("yes") {
		if !s.stdinTerminal() {
			return usagef(kpsName, "clear asks for confirmation on a terminal; standard input is not one: give --yes to clear table %q (%d rows) without asking", alias, n)
		}
		s.out("Clear the %d rows of table %q (%q in collection %q)? Type the alias to confirm: ", n, alias, t.Name, t.Collection)
		line, err := s.readLine()
		if err != nil && err != io.EOF {
			return err
		}
		if strings.TrimSpace(line) != alias {
			return &ExitError{Code: 1, Err: errNotConfirmed}
		}
	}
	if err := st.Clear(ctx, alias); err != nil {
		return err
	}
	s.out("Table %q cleared: %d rows removed.\n", alias, n)
	s.summary = fmt.Sprintf("%d rows removed", n)
	return nil
}

// --- backup --------------------------------------------------------------

func kpsBackup(ctx context.Context, s *kpsSession) (err error) {
	st, err := s.open(ctx, false)
	if err != nil {
		return err
	}
	tables, err := s.selected(ctx, st)
	if err != nil {
		return err
	}
	dir := s.backupDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	id := kps.NewUUID()
	path := filepath.Join(dir, id+kpsbackup.Ext)
	f, err := os.CreateTemp(dir, "."+id+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	w := kpsbackup.NewWriter(f)
	for _, t := range tables {
		if err := w.Table(t); err != nil {
			return fmt.Errorf("table %q: %w", t.Alias, err)
		}
		rows := 0
		for page := (kps.Page{Limit: kps.MaxLimit}); ; {
			res, err := st.List(ctx, t.Alias, page)
			if err != nil {
				return err
			}
			for _, r := range res.Rows {
				if err := w.Row(r); err != nil {
					return fmt.Errorf("table %q: %w", t.Alias, err)
				}
			}
			rows += len(res.Rows)
			if res.Next == "" {
				break
			}
			page.Cursor = res.Next
		}
		s.note("table %q: %d rows", t.Alias, rows)
	}
	m, err := w.Close(kpsbackup.Manifest{
		UUID: id, Gatehouse: Version, Created: time.Now().UTC().Truncate(time.Second),
		GroupID: s.t.gid, GroupName: s.t.gname, InstanceID: s.t.iid, InstanceName: s.t.iname, Backend: s.backend(),
	})
	if err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", tmp, err)
	}
	// Read back before it gets its name: a backup that restore would
	// refuse is never offered.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if _, err := kpsbackup.Parse(f); err != nil {
		return fmt.Errorf("the backup written does not read back (%s): %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if err := home.SyncDir(dir); err != nil {
		return err
	}
	total := int64(0)
	for _, tc := range m.Tables {
		total += tc.Rows
	}
	s.out("Backup %s written: %d tables, %d rows\n", id, len(m.Tables), total)
	s.summary = fmt.Sprintf("backup %s: %d tables, %d rows", id, len(m.Tables), total)
	s.out("  %s\n", path)
	s.out("Restore it with: %s\n", s.cmd("restore", "--uuid", id))
	return nil
}

// --- restore -------------------------------------------------------------

func kpsRestore(ctx context.Context, s *kpsSession) error {
	id := s.o.vals["uuid"]
	if !kpsbackup.ValidUUID(id) {
		return usagef(kpsName, "--uuid %q is not a backup's UUID (as backup printed it: 8-4-4-4-12 lowercase hex digits)", id)
	}
	path := filepath.Join(s.backupDir(), id+kpsbackup.Ext)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		backups, _ := s.backups()
		var ids []string
		for _, b := range backups {
			ids = append(ids, b.uuid)
		}
		if len(ids) == 0 {
			return fmt.Errorf("no backup %s: %s holds no backups of instance %q", id, s.backupDir(), s.t.iname)
		}
		return fmt.Errorf("no backup %s in %s; the backups there (newest first): %s", id, s.backupDir(), strings.Join(ids, ", "))
	}
	if err != nil {
		return err
	}
	b, err := kpsbackup.Parse(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("backup %s is refused, nothing was written: %s: %w", id, path, err)
	}
	if b.Manifest.UUID != id {
		return fmt.Errorf("backup %s is refused, nothing was written: %s: its manifest names backup %s", id, path, b.Manifest.UUID)
	}
	s.note("backup %s verified: taken %s by Gatehouse %s from group %q (%s), instance %q, %s store",
		id, b.Manifest.Created.Format(time.RFC3339), b.Manifest.Gatehouse, b.Manifest.GroupName, b.Manifest.GroupID, b.Manifest.InstanceName, b.Manifest.Backend)
	if b.Manifest.GroupID != s.t.gid {
		fmt.Fprintf(s.env.Stderr, "kpsadmin: note: backup %s was taken from group %q (%s); restoring into group %q (%s)\n", id, b.Manifest.GroupName, b.Manifest.GroupID, s.t.gname, s.t.gid)
	}
	ro := kpsbackup.RestoreOptions{Force: s.o.has("force"), Note: s.note}
	if alias, ok := s.o.vals["table"]; ok {
		if _, found := b.Table(alias); !found {
			var aliases []string
			for _, t := range b.Tables {
				aliases = append(aliases, t.Def.Alias)
			}
			return kpsNotFound(fmt.Errorf("backup %s holds no table %q", id, alias), alias, aliases, "tables in the backup")
		}
		ro.Tables = []string{alias}
	}
	st, err := s.open(ctx, true)
	if err != nil {
		return err
	}
	res, err := kpsbackup.Restore(ctx, st, b, ro)
	var misfit *kpsbackup.MisfitError
	var notEmpty *kpsbackup.NotEmptyError
	switch {
	case errors.As(err, &misfit):
		return fmt.Errorf("backup %s is refused, nothing was written: %w", id, err)
	case errors.As(err, &notEmpty):
		return fmt.Errorf("not restored, nothing was written: %w; "+
			"--force replaces their rows (back them up first to keep them: %s)", err, s.cmd("backup"))
	case err != nil && res != nil && res.Atomic:
		return fmt.Errorf("restore failed, nothing was written: %w", err)
	case err != nil && res != nil && len(res.Tables) > 0:
		return fmt.Errorf("restore failed part way (the %s backend has no transactional load): %w", s.backend(), err)
	case err != nil:
		return err
	}
	s.out("Backup %s restored into group %q:\n", id, s.t.gname)
	var sum []string
	for _, tc := range res.Tables {
		line := fmt.Sprintf("table %q: %d rows", tc.Alias, tc.Rows)
		if n := res.Before[tc.Alias]; n > 0 {
			line += fmt.Sprintf(" (replacing %d)", n)
		}
		s.out("  %s\n", line)
		sum = append(sum, line)
	}
	if len(res.Secrets) > 0 {
		line := fmt.Sprintf("shared secrets %s (the store's replaced: the restored API keys verify with the hashing key they were made with)", strings.Join(res.Secrets, ", "))
		s.out("  %s\n", line)
		sum = append(sum, line)
	}
	s.summary = strings.Join(sum, ", ")
	if !res.Atomic {
		s.out("  (table by table: the %s backend has no transactional load; versions start again at 1)\n", s.backend())
	}
	return nil
}

// kpsReencrypt moves the encrypted properties of the group's custom tables
// to the group's passphrase (fieldcrypt.Reencrypt).
func kpsReencrypt(ctx context.Context, s *kpsSession) error {
	custom := s.cfg.KPS.KPSTables()
	shared := s.backend() == "postgres" // its copy of the API-key hashing key (kps.SharedSecrets)
	if !fieldcrypt.Needs(custom) && !shared {
		s.out("No table of group %q has encrypted properties and its store keeps no shared secret: nothing to re-encrypt.\n", s.t.gname)
		s.summary = "nothing to re-encrypt"
		return nil
	}
	g, err := s.topo.Group(s.t.gid)
	if err != nil {
		return err
	}
	for _, ref := range s.localInstances(g) {
		if st, err := home.Probe(s.h.RunFiles(ref.Service.ID)); err == nil && st.Running {
			return fmt.Errorf("instance %q of group %q is running: stop the group's instances on this host first (they hold the old key); nothing was changed", ref.Service.Name, s.t.gname)
		}
	}
	scope := secret.GroupScope(s.t.gid)
	var newPass secret.Value
	if scope.Protected(s.h) {
		p, err := s.askPassphrase("passphrase_file", fmt.Sprintf("Passphrase of the %s", scope))
		if err != nil {
			return err
		}
		if err := secret.Unlock(s.h, scope, p); err != nil {
			p.Wipe()
			if errors.Is(err, secret.ErrWrongPassphrase) {
				time.Sleep(time.Second)
				return fmt.Errorf("wrong passphrase for the %s: nothing was changed", scope)
			}
			return err
		}
		newPass = p
		defer newPass.Wipe()
	}
	st, err := s.open(ctx, false)
	if err != nil {
		return err
	}
	if err := st.Define(ctx, fieldcrypt.MetaTable()); err != nil {
		return err
	}
	var names []string
	if shared {
		names = []string{apps.HashKeySecret}
	}
	var old secret.Value
	needOld, err := fieldcrypt.NeedsOld(ctx, st, newPass)
	if err != nil {
		return err
	}
	if needOld {
		if old, err = s.askPassphrase("old_passphrase_file", "Passphrase the encrypted fields are sealed with now (the group's previous one)"); err != nil {
			return err
		}
		defer old.Wipe()
	}
	if err := fieldcrypt.Reencrypt(ctx, st, custom, names, old, newPass, func(line string) { s.note("%s", line) }); err != nil {
		if errors.Is(err, fieldcrypt.ErrWrongPassphrase) {
			time.Sleep(time.Second)
		}
		return err
	}
	to := "the group's passphrase"
	if newPass.IsZero() {
		to = "clear (the group has no passphrase)"
	}
	s.out("The encrypted properties and shared secrets of group %q are sealed with %s.\n", s.t.gname, to)
	s.summary = "encrypted properties moved to " + to
	return nil
}

// askPassphrase reads a passphrase from the file of option flag, or asks on
// the terminal.
func (s *kpsSession) askPassphrase(flag, prompt string) (secret.Value, error) {
	if v, ok := s.o.vals[flag]; ok {
		return secret.FromFile(v)
	}
	f, ok := s.env.Stdin.(*os.File)
	if !ok || !s.stdinTerminal() {
		return secret.Value{}, fmt.Errorf("%s: standard input is not a terminal; give --%s F", prompt, flag)
	}
	return secret.FromTerminal(f, s.env.Stderr, prompt+": ", false)
}
