package instance

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apps"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/policy/build"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// kpsOpenTimeout bounds opening the group's KPS when a configuration is
// loaded.
const kpsOpenTimeout = 15 * time.Second

// groupStore is the group's Key Property Store as this instance opened it:
// opened by the first configuration that needs it (an apiKey policy), and
// shared by the next runtimes while the kps settings stay the same.
type groupStore struct {
	conf    groupconf.KPS
	store   kps.Store
	cache   *kps.Cache
	checker *apps.Checker
	hashKey secret.Value // the group's hashing key (apps.GroupHashKey)
	home    home.Home    // the install directory (the signing keys are its secret files)
	keysDir string       // the group's OAuth signing keys (groups/<group-id>/conf/oauth/keys)
	log     *slog.Logger
}

func (g *groupStore) deps() build.Deps {
	if g == nil {
		return build.Deps{}
	}
	return build.Deps{APIKeys: g.checker, KPS: g.cache, Tables: g.conf.KPSTables()}
}

func (g *groupStore) close() {
	if g != nil {
		g.store.Close()
	}
}

// needsKPS reports whether cfg has a policy that reads the KPS.
func needsKPS(cfg *groupconf.Config) bool {
	if cfg.OAuth.Enabled {
		return true
	}
	for _, a := range cfg.APIs {
		for _, p := range a.Policies {
			if p.APIKey != nil || p.Lookup != nil || p.OAuth != nil {
				return true
			}
		}
	}
	return false
}

// groupStoreFor returns the store cfg needs: cur when its settings are the
// same, nil when cfg needs none, or a newly opened one (fresh is true:
// the caller closes it if the configuration is not taken). A store that
// cannot be opened (a corrupt file, a database that refuses) is an error
// naming it: the instance does not serve without its keys.
func (i *Instance) groupStoreFor(cfg *groupconf.Config, cur *groupStore) (gs *groupStore, fresh bool, err error) {
	if !needsKPS(cfg) {
		return nil, false, nil
	}
	if cur != nil && cur.conf.Equal(cfg.KPS) {
		return cur, false, nil
	}
	h, gid := i.opts.Home, i.opts.GroupID
	ctx, cancel := context.WithTimeout(context.Background(), kpsOpenTimeout)
	defer cancel()
	store, err := apps.OpenGroupStore(ctx, h, gid, cfg.KPS, i.logs.instance.With("component", "kps"))
	if err != nil {
		return nil, false, err
	}
	hk, err := apps.GroupHashKey(ctx, h, gid, store)
	if err != nil {
		store.Close()
		return nil, false, fmt.Errorf("the group's API key hashing key: %w", err)
	}
	c := cfg.KPS.Cache
	cache := kps.NewCache(store, kps.CacheOptions{TTL: c.TTL.D(), NegativeTTL: c.NegativeTTL.D(), MaxBytes: c.MaxBytes})
	i.log.Info("key property store opened", "backend", cfg.KPS.Backend, "cacheTTL", c.TTL.D().String())
	return &groupStore{conf: cfg.KPS, store: store, cache: cache, checker: apps.NewChecker(cache, hk), hashKey: hk,
		home: h, keysDir: filepath.Join(h.GroupConfDir(gid), "oauth", "keys"), log: i.logs.instance.With("component", "oauth")}, true, nil
}
