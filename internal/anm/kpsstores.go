package anm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/apps"
	"github.com/gatehouse-gw/gatehouse/internal/deploy"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// How the Admin Node Manager reaches a group's Key Property Store
// (docs/applications.md, "Where the ANM finds a group's store"): with
// apps.OpenGroupStore and the kps settings of the group's current
// configuration on the ANM's host, the way the group's instances open it.
// The current configuration is the one a gateway instance of the group on
// this host loads (its deployed archive, or the group's group.yaml when
// nothing is deployed); without such an instance, the group's newest
// stored archive, else its group.yaml. An embedded (sqlite) store is a
// file on the hosts of the instances: the ANM manages it only when every
// instance of the group is on its own host (409 otherwise).

// groupKPS is a group and what its current configuration says of its KPS.
type groupKPS struct {
	group  *topology.Group
	kps    groupconf.KPS
	apis   []string // the names of the configuration's APIs
	source string   // where the settings were read, for messages
	// local: the group has an instance on the ANM's host, which shares
	// the ANM's hashing key file (the ANM may create it).
	local bool
}

// groupKPSOf finds the group arg names (id or name) and its KPS settings.
func (a *API) groupKPSOf(arg string) (groupKPS, error) {
	t, err := a.store.Load()
	if err != nil {
		return groupKPS{}, err
	}
	g, err := t.FindGroup(arg)
	if err != nil {
		return groupKPS{}, err
	}
	if hasNodeManager(g) {
		return groupKPS{}, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("group %s (%q) is the node managers' group: it has no key property store; give a gateway group", g.ID, g.Name)}
	}
	var local, remote []string
	for _, s := range g.Services {
		if s.Type != topology.TypeGateway {
			// mutate:equivalent delete-stmt a gateway group (the node managers' one was refused above) has only gateway services
			continue
		}
		if s.HostID == a.conf.HostID {
			local = append(local, s.ID)
		} else {
			remote = append(remote, fmt.Sprintf("%s on %s", s.ID, s.HostID))
		}
	}
	cfg, source, err := a.groupConfig(g.ID, local)
	if err != nil {
		return groupKPS{}, err
	}
	out := groupKPS{group: g, kps: cfg.KPS, source: source, local: len(local) > 0}
	for _, api := range cfg.APIs {
		out.apis = append(out.apis, api.Name)
	}
	if b := cfg.KPS.Backend; b == "" || b == kps.DefaultBackend {
		switch {
		case len(local) == 0:
			return groupKPS{}, &apihttp.Error{Code: http.StatusConflict, Msg: fmt.Sprintf("group %s (%q) keeps its key property store in the embedded store (kps.backend sqlite, %s), a file on the hosts of its instances, and it has no instance on the Admin Node Manager's host (%s): the ANM manages an embedded store only there. Create an instance of the group on this host, or use kps.backend postgres (docs/applications.md)", g.ID, g.Name, source, a.conf.HostID)}
		case len(remote) > 0:
			return groupKPS{}, &apihttp.Error{Code: http.StatusConflict, Msg: fmt.Sprintf("group %s (%q) keeps its key property store in the embedded store (kps.backend sqlite, %s), one file per host, and has instances on other hosts (%s): a change made here would reach only the instances of the Admin Node Manager's host. Use kps.backend postgres for a group on several hosts (docs/applications.md)", g.ID, g.Name, source, strings.Join(remote, ", "))}
		}
	}
	return out, nil
}

// groupConfig is the group's current configuration as this host knows it
// (see above) and where it was read.
func (a *API) groupConfig(gid string, local []string) (*groupconf.Config, string, error) {
	var errs []error
	for _, iid := range local {
		cfg, err := groupconf.LoadInstance(a.h, gid, iid, nil, nil)
		if err == nil {
			src := "the group.yaml of " + iid
			if cfg.Deployment != nil {
				src = fmt.Sprintf("archive %d, deployed to %s", cfg.Deployment.Archive, iid)
			}
			return cfg, src, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", iid, err))
	}
	if len(errs) > 0 {
		err := errors.Join(errs...)
		return nil, "", &apihttp.Error{Code: http.StatusInternalServerError, Msg: "the configuration of the group's instances on this host cannot be read: " + err.Error(), Err: err}
	}
	metas, err := a.archives.List(gid)
	if err != nil {
		return nil, "", err
	}
	if len(metas) > 0 {
		id := metas[len(metas)-1].ID
		_, arch, err := a.archives.Get(gid, id)
		var cfg *groupconf.Config
		if err == nil {
			cfg, err = deploy.Load(arch)
		}
		if err != nil {
			return nil, "", &apihttp.Error{Code: http.StatusInternalServerError, Msg: fmt.Sprintf("archive %d of %s cannot be read: %v", id, gid, err), Err: err}
		}
		return cfg, fmt.Sprintf("archive %d", id), nil
	}
	l, err := groupconf.FileLayer(a.h.GroupConfFile(gid))
	var p *groupconf.Parsed
	if err == nil {
		p, err = groupconf.Parse(l)
	}
	var cfg *groupconf.Config
	if err == nil {
		cfg, err = p.LoadGroup()
	}
	if err != nil {
		return nil, "", &apihttp.Error{Code: http.StatusInternalServerError, Msg: fmt.Sprintf("%s cannot be read: %v", a.h.Rel(a.h.GroupConfFile(gid)), err), Err: err}
	}
	return cfg, "group.yaml", nil
}

// kpsStores are the group stores the ANM opened, by group id, each kept
// while its group's kps settings stay the same. A store whose settings
// changed is closed once the last request using it is done; Close closes
// them all. Safe for concurrent use.
type kpsStores struct {
	h   home.Home
	log *slog.Logger

	mu     sync.Mutex
	open   map[string]*groupStore
	closed bool
}

// groupStore is one open store, with the applications' Manager on it.
type groupStore struct {
	conf  groupconf.KPS // where the store is (the cache settings are the instances')
	store kps.Store
	apps  *apps.Manager
	users int  // requests using it
	stale bool // replaced or closing: closed when users reaches 0
}

func newKPSStores(h home.Home, log *slog.Logger) *kpsStores {
	return &kpsStores{h: h, log: log, open: map[string]*groupStore{}}
}

// get returns the store of group gid at conf, opening it when needed, and
// the function to call when the request is done with it.
func (s *kpsStores) get(ctx context.Context, gid string, conf groupconf.KPS) (*groupStore, func(), error) {
	conf.Cache = groupconf.KPSCache{}
	s.mu.Lock()
	if gs, err := s.useLocked(gid, conf); gs != nil || err != nil {
		s.mu.Unlock()
		return gs, s.releaser(gs), err
	}
	s.mu.Unlock()
	// Opened without the lock: a PostgreSQL server may take seconds.
	gs, err := s.openStore(ctx, gid, conf)
	if err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, err := s.useLocked(gid, conf); cur != nil || err != nil {
		gs.store.Close() // another request opened it meanwhile, or the ANM is stopping
		return cur, s.releaser(cur), err
	}
	if old := s.open[gid]; old != nil {
		s.retireLocked(old)
	}
	gs.users = 1
	s.open[gid] = gs
	return gs, s.releaser(gs), nil
}

// useLocked returns the open store of gid when its settings are conf.
func (s *kpsStores) useLocked(gid string, conf groupconf.KPS) (*groupStore, error) {
	if s.closed {
		return nil, &apihttp.Error{Code: http.StatusServiceUnavailable, Msg: "the Admin Node Manager is stopping"}
	}
	if gs := s.open[gid]; gs != nil && gs.conf.Equal(conf) {
		gs.users++
		return gs, nil
	}
	return nil, nil
}

func (s *kpsStores) openStore(ctx context.Context, gid string, conf groupconf.KPS) (*groupStore, error) {
	log := s.log.With("component", "kps", "group", gid)
	store, err := apps.OpenGroupStoreMode(ctx, s.h, gid, conf, log, apps.SealWrites)
	if err != nil {
		return nil, &apihttp.Error{Code: http.StatusServiceUnavailable, Msg: "the key property store cannot be opened: " + err.Error(), Err: err}
	}
	hk, err := apps.GroupHashKey(ctx, s.h, gid, store)
	if err != nil {
		store.Close()
		return nil, &apihttp.Error{Code: http.StatusInternalServerError, Msg: "the group's API key hashing key: " + err.Error(), Err: err}
	}
	m, err := apps.NewManager(ctx, store, hk)
	if err != nil {
		store.Close()
		return nil, kpsError(err)
	}
	log.Info("key property store opened", "backend", conf.Backend)
	return &groupStore{conf: conf, store: store, apps: m}, nil
}

func (s *kpsStores) releaser(gs *groupStore) func() {
	if gs == nil {
		return nil
	}
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		gs.users--
		if gs.stale && gs.users == 0 {
			gs.store.Close()
		}
	}
}

// retireLocked takes gs out of use: closed now, or by its last user.
func (s *kpsStores) retireLocked(gs *groupStore) {
	gs.stale = true
	if gs.users == 0 {
		gs.store.Close()
	}
}

// Close closes every store (those in use when their request ends) and
// refuses to open more.
func (s *kpsStores) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for gid, gs := range s.open {
		s.retireLocked(gs)
		delete(s.open, gid)
	}
}

// kpsError maps the KPS's errors to the API's statuses: not found 404, a
// key taken or a stale version 409, an invalid request 400, a store that
// cannot answer 503 (its cause only in the log).
func kpsError(err error) error {
	var ae *apihttp.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ae):
		return err
	case errors.Is(err, kps.ErrNotFound):
		return &apihttp.Error{Code: http.StatusNotFound, Msg: err.Error(), Err: err}
	case errors.Is(err, kps.ErrExists):
		return &apihttp.Error{Code: http.StatusConflict, Msg: err.Error(), Err: err}
	case errors.Is(err, kps.ErrConflict):
		return &apihttp.Error{Code: http.StatusConflict, Msg: err.Error() + "; read it again and send its version (If-Match or version)", Err: err}
	case errors.Is(err, kps.ErrInvalid):
		return &apihttp.Error{Code: http.StatusBadRequest, Msg: err.Error(), Err: err}
	case errors.Is(err, kps.ErrUnavailable):
		return &apihttp.Error{Code: http.StatusServiceUnavailable, Msg: "the group's key property store cannot answer (the node manager log has the cause); retry later", Err: err}
	}
	return err
}

// withGroupStore resolves the request's {groupID}, opens its store and
// calls f with it. Its error is f's, mapped by kpsError, or why the
// store could not be reached.
func (a *API) withGroupStore(r *http.Request, f func(g groupKPS, gs *groupStore) error) error {
	g, err := a.groupKPSOf(r.PathValue("groupID"))
	if err != nil {
		return err
	}
	// A group without an instance here has a store that hosts share
	// (an embedded one was refused by groupKPSOf): its hashing key is in
	// the store (apps.GroupHashKey), the same for the ANM and every host.
	gs, release, err := a.kpsStores.get(r.Context(), g.group.ID, g.kps)
	if err != nil {
		return err
	}
	defer release()
	return kpsError(f(g, gs))
}

// Close releases what the management API holds open: the group stores.
// The node manager calls it once it stopped serving.
func (a *API) Close() { a.kpsStores.Close() }
