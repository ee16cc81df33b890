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
	"github.com/gatehouse-gw/gatehouse/internal/kps/fieldcrypt"
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
	return OpenGroupStoreMode(ctx, h, groupID, cfg, log, Plain)
}

// Mode is how OpenGroupStoreMode presents the encrypted properties of the
// custom tables (kps/fieldcrypt) when the group has a passphrase.
type Mode int

const (
	// Plain: sealed when written, opened when read (the instances).
	Plain Mode = iota
	// SealWrites: sealed when written, read as stored (the management API).
	SealWrites
	// Raw: as stored, both ways (kpsadmin: backups keep them sealed).
	Raw
)

// OpenGroupStoreMode is OpenGroupStore with the encrypted properties
// presented as mode says. Plain and SealWrites need the group's passphrase
// in this process when it has one (secret.Unlock) and refuse a store whose
// encrypted fields it does not open (fieldcrypt.ErrWrongPassphrase: after a
// passphrase change, kpsadmin reencrypt).
func OpenGroupStoreMode(ctx context.Context, h home.Home, groupID string, cfg groupconf.KPS, log *slog.Logger, mode Mode) (kps.Store, error) {
	kc, err := storeConfig(h, groupID, cfg, log)
	if err != nil {
		return nil, err
	}
	store, err := kps.Open(ctx, kc)
	if err != nil {
		return nil, fmt.Errorf("the key property store of %s: %w", groupID, err)
	}
	custom := cfg.KPSTables()
	defs := append(Tables(), custom...)
	if fieldcrypt.Needs(custom) {
		defs = append(defs, fieldcrypt.MetaTable())
	}
	if err := store.Define(ctx, defs...); err != nil {
		store.Close()
		return nil, fmt.Errorf("the key property store of %s: %w", groupID, err)
	}
	if mode == Raw || !fieldcrypt.Needs(custom) {
		return store, nil
	}
	scope := secret.GroupScope(groupID)
	pass, ok := secret.Passphrase(h, scope)
	if !ok && scope.Protected(h) {
		store.Close()
		return nil, fmt.Errorf("the key property store of %s has encrypted properties and the %s has a passphrase, which this process was not given", groupID, scope)
	}
	defer pass.Wipe()
	keys, err := fieldcrypt.Open(ctx, store, custom, pass)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("the key property store of %s: %w", groupID, err)
	}
	if mode == SealWrites {
		return fieldcrypt.WrapWrites(store, keys, custom), nil
	}
	return fieldcrypt.Wrap(store, keys, custom), nil
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

// GroupStoreConfig is how the group's store is opened with cfg (a backup
// opens it without defining anything: backup/kpsexport).
func GroupStoreConfig(h home.Home, groupID string, cfg groupconf.KPS, log *slog.Logger) (kps.Config, error) {
	return storeConfig(h, groupID, cfg, log)
}

// storeConfig is how the group's store is opened with cfg.
func storeConfig(h home.Home, groupID string, cfg groupconf.KPS, log *slog.Logger) (kps.Config, error) {
	files := groupconf.FilePolicy{Home: h, GroupID: groupID}
	kc := kps.Config{Backend: cfg.Backend, SQLite: kps.SQLiteConfig{Path: sqlite.GroupPath(h, groupID)}, Logger: log}
	if cfg.Backend == "postgres" {
		p := cfg.Postgres
		kc.Postgres = kps.PostgresConfig{Host: p.Host, Port: p.Port, Database: p.Database, User: p.User, SSLMode: p.SSLMode, SSLRootCert: files.Abs(p.SSLRootCert), Schema: p.Schema}
		if p.PasswordFile != "" {
			pw, err := readPasswordFile(h, files.Abs(p.PasswordFile))
			if err != nil {
				return kps.Config{}, fmt.Errorf("kps.postgres.passwordFile: %w", err)
			}
			kc.Postgres.Password = pw
		}
	}
	return kc, nil
}
