package apps

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/fieldcrypt"
	"github.com/gatehouse-gw/gatehouse/internal/kps/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// GroupSecrets is where the instances of a group keep the secrets they must
// hold alike without a file copied between them (the TLS session-ticket
// keys: tlsticket): the group's PostgreSQL store, shared by every host, or
// the embedded store, shared by the instances of one host.
type GroupSecrets struct {
	kps.SharedSecrets
	// Keys seal what is kept with the group's passphrase (nil when the
	// group has none).
	Keys  *fieldcrypt.Keys
	store kps.Store
}

// Close closes the store.
func (g *GroupSecrets) Close() error { return g.store.Close() }

// OpenGroupSecrets opens the group's store as cfg says, for its secrets
// only (no table is defined but the passphrase's, when the group has one).
func OpenGroupSecrets(ctx context.Context, h home.Home, groupID string, cfg groupconf.KPS, log *slog.Logger) (*GroupSecrets, error) {
	kc, err := storeConfig(h, groupID, cfg, log)
	if err != nil {
		return nil, err
	}
	store, err := kps.Open(ctx, kc)
	if err != nil {
		return nil, fmt.Errorf("the key property store of %s: %w", groupID, err)
	}
	g := &GroupSecrets{store: store}
	switch s := store.(type) {
	case kps.SharedSecrets:
		g.SharedSecrets = s
	case *sqlite.Store:
		g.SharedSecrets = s.LocalSecrets()
	default:
		store.Close()
		return nil, fmt.Errorf("the key property store of %s (%s) keeps no shared secrets", groupID, cfg.Backend)
	}
	scope := secret.GroupScope(groupID)
	if !scope.Protected(h) {
		return g, nil
	}
	pass, ok := secret.Passphrase(h, scope)
	if !ok {
		store.Close()
		return nil, fmt.Errorf("the group's shared secrets are sealed with the passphrase of the %s, which this process was not given", scope)
	}
	defer pass.Wipe()
	if err := store.Define(ctx, fieldcrypt.MetaTable()); err != nil {
		store.Close()
		return nil, fmt.Errorf("the key property store of %s: %w", groupID, err)
	}
	if g.Keys, err = fieldcrypt.OpenKey(ctx, store, pass); err != nil {
		store.Close()
		return nil, fmt.Errorf("the key property store of %s: %w", groupID, err)
	}
	return g, nil
}
