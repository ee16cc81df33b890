package apps

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	_ "github.com/gatehouse-gw/gatehouse/internal/kps/postgres" // the PostgreSQL backend (registers itself)
	"github.com/gatehouse-gw/gatehouse/internal/kps/sqlite"     // the embedded backend (registers itself)
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// OpenGroupStore opens the Key Property Store of group groupID of h as its
// configuration's kps section says (the embedded store's file is
// sqlite.GroupPath), and defines the applications' tables and the
// configuration's custom tables (kps.tables) in it. The
// instances, the Admin Node Manager and kpsadmin open a group's store
// with it, so that they all find the same one; both backends are linked in.
func OpenGroupStore(ctx context.Context, h home.Home, groupID string, cfg groupconf.KPS, log *slog.Logger) (kps.Store, error) {
	files := groupconf.FilePolicy{Home: h, GroupID: groupID}
	kc := kps.Config{Backend: cfg.Backend, SQLite: kps.SQLiteConfig{Path: sqlite.GroupPath(h, groupID)}, Logger: log}
	if cfg.Backend == "postgres" {
		p := cfg.Postgres
		kc.Postgres = kps.PostgresConfig{Host: p.Host, Port: p.Port, Database: p.Database, User: p.User, SSLMode: p.SSLMode, SSLRootCert: files.Abs(p.SSLRootCert), Schema: p.Schema}
		if p.PasswordFile != "" {
			pw, err := readPasswordFile(h, files.Abs(p.PasswordFile))
			if err != nil {
				return nil, fmt.Errorf("kps.postgres.passwordFile: %w", err)
			}
			kc.Postgres.Password = pw
		}
	}
	store, err := kps.Open(ctx, kc)
	if err != nil {
		return nil, fmt.Errorf("the key property store of %s: %w", groupID, err)
	}
	if err := store.Define(ctx, append(Tables(), cfg.KPSTables()...)...); err != nil {
		store.Close()
		return nil, fmt.Errorf("the key property store of %s: %w", groupID, err)
	}
	return store, nil
}

// readPasswordFile reads the first line of a password file: opened with
// the group's passphrase when it is sealed (a file under
// groups/<group-id>/conf/secrets/ of a group that has one).
func readPasswordFile(h home.Home, path string) (secret.Value, error) {
	data, err := secret.ReadFile(h, filepath.Clean(path))
	if err != nil {
		return secret.Value{}, err
	}
	defer secret.New(data).Wipe()
	line, _, _ := strings.Cut(string(data), "\n")
	return secret.FromString(strings.TrimRight(line, "\r")), nil
}
