// Package kpsexport makes the exports of a host's backup
// (backup.Options.Exports): the key property store of each group that
// keeps it in PostgreSQL (kps.backend postgres) and has an instance on the
// host, read in one transaction (kps.Exporter: every table, every row, the
// shared secrets such as the API-key hashing key, as stored — sealed when
// the group has a passphrase) into a kpsbackup file at the place of that
// instance's kpsadmin backups:
//
//	groups/<group-id>/<instance-id>/conf/kps/backup/<uuid>.jsonl
//
// so that a restored install finds it where `kpsadmin restore --uuid`
// looks, and `gatehouse restore --kps-postgres` loads it. A group's
// embedded store is a file: the backup copies it as a snapshot instead.
package kpsexport

import (
	"context"
	"fmt"
	"io"
	"path"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apps"
	"github.com/gatehouse-gw/gatehouse/internal/backup"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/kpsbackup"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// Kind is backup.Entry.Export of these exports.
const Kind = "postgres"

// Exports are the exports of host hostID's backup of h: for each group
// with an instance on the host (the first such instance reads it) whose
// configuration names kps.backend postgres, and that only accepts (every
// group when only is nil). A group whose configuration does not load is
// skipped with a warning (a backup is most needed when something is
// broken; its instances do not start either): where its store is cannot
// be known.
func Exports(h home.Home, t *topology.Topology, hostID, version string, only func(groupID string) bool) (out []backup.Export, warnings []string, err error) {
	seen := map[string]bool{}
	for _, r := range t.Instances(hostID) {
		g, s := r.Group, r.Service
		if seen[g.ID] || (only != nil && !only(g.ID)) {
			continue
		}
		seen[g.ID] = true
		cfg, err := groupconf.LoadInstance(h, g.ID, s.ID, nil, nil)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("group %q (%s): its configuration does not load, so its key property store is not exported if it is in PostgreSQL (an embedded store is in the backup as a file): %v", g.Name, g.ID, err))
			continue
		}
		if cfg.KPS.Backend != "postgres" {
			continue
		}
		id := kps.NewUUID()
		m := kpsbackup.Manifest{UUID: id, Gatehouse: version, GroupID: g.ID, GroupName: g.Name, InstanceID: s.ID, InstanceName: s.Name, Backend: Kind}
		kc, err := apps.GroupStoreConfig(h, g.ID, cfg.KPS, nil)
		if err != nil {
			return nil, warnings, fmt.Errorf("group %q (%s): %w", g.Name, g.ID, err)
		}
		out = append(out, backup.Export{
			Path:  path.Join("groups", g.ID, s.ID, "conf", "kps", "backup", id+kpsbackup.Ext),
			Kind:  Kind,
			Write: func(ctx context.Context, w io.Writer) (time.Time, error) { return write(ctx, kc, m, w) },
		})
	}
	return out, warnings, nil
}

// FirstHost reports whether hostID holds the first instance (topology
// order) of group groupID: a domain backup exports each group's shared
// store once, from that host's part.
func FirstHost(t *topology.Topology, hostID string) func(groupID string) bool {
	first := map[string]string{}
	for _, r := range t.Instances("") {
		if _, ok := first[r.Group.ID]; !ok {
			first[r.Group.ID] = r.Service.HostID
		}
	}
	return func(groupID string) bool { return first[groupID] == hostID }
}

// write exports the store kc names into w as a kpsbackup file.
func write(ctx context.Context, kc kps.Config, m kpsbackup.Manifest, w io.Writer) (time.Time, error) {
	st, err := kps.Open(ctx, kc)
	if err != nil {
		return time.Time{}, fmt.Errorf("the key property store of group %q: %w", m.GroupName, err)
	}
	defer st.Close()
	ex, ok := st.(kps.Exporter)
	if !ok {
		return time.Time{}, fmt.Errorf("the key property store of group %q (%s) cannot be exported", m.GroupName, kc.Backend) // mutate:equivalent * the postgres backend is an Exporter
	}
	bw := kpsbackup.NewWriter(w)
	at, err := ex.Export(ctx, bw)
	if err != nil {
		return time.Time{}, fmt.Errorf("exporting the key property store of group %q: %w", m.GroupName, err)
	}
	m.Created = at.Truncate(time.Second)
	if _, err := bw.Close(m); err != nil {
		return time.Time{}, err
	}
	return at, nil
}

// WithExports returns o with the exports of its host's backup of h
// (o.Host, o.Gatehouse): every group's with an instance there, or with
// firstOnly those whose first instance is there (a part of a domain
// backup). Without a topology (a host not in a domain yet) there are none.
// The warnings are Exports'.
func WithExports(h home.Home, o backup.Options, firstOnly bool) (backup.Options, []string, error) {
	t, err := topology.NewStore(h, nil).Load()
	if err != nil {
		return o, nil, nil // mutate:equivalent * no topology, no instances: nothing to export
	}
	var only func(string) bool
	if firstOnly {
		only = FirstHost(t, o.Host)
	}
	ex, warnings, err := Exports(h, t, o.Host, o.Gatehouse, only)
	o.Exports = ex
	return o, warnings, err
}
