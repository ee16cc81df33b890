package anm

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/backup"
	"github.com/gatehouse-gw/gatehouse/internal/backup/kpsexport"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/nodeapi"
	"github.com/gatehouse-gw/gatehouse/internal/rbac"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// ClearSecretsPath is the path whose POST the ACL must allow for a backup
// through the API to hold secrets that no passphrase seals (only "all",
// the administrator's, by default): such an archive holds the domain CA's
// key and the session key, that is, every role.
const ClearSecretsPath = "/api/backup/clear-secrets"

// backupArea is POST /api/backup: a backup of the Admin Node Manager's
// install directory, streamed (docs/backup.md).
func (a *API) backupArea() area {
	return area{name: "backup", routes: []route{
		{pattern: "/api/backup", ops: map[string]op{http.MethodPost: change(a.postBackup, "createBackup", recorded("backup, with its size or its error"), "backup.create")}},
		{pattern: "/api/backup/status", ops: map[string]op{http.MethodGet: read(a.getBackupStatus, "getBackupStatus", "backup.status")}},
	}}
}

// POST /api/backup?withLogs=true: the archive of gatehouse backup, written
// as it is made (application/gzip). One at a time (409 while one is
// written). A caller whose roles do not allow ClearSecretsPath gets 403
// when a scope's secret files are in clear (no passphrase).
func (a *API) postBackup(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	flags := map[string]bool{}
	for _, name := range []string{"withLogs", "thisHost", "skipUnreachable"} {
		switch v := q.Get(name); v {
		case "", "false":
		case "true":
			flags[name] = true
		default:
			a.fail(w, r, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("%s %q: want true or false", name, v)})
			return
		}
	}
	withLogs := flags["withLogs"]
	t, ok := a.load(w, r)
	if !ok {
		return
	}
	// The whole domain when it has other hosts with node managers (as
	// gatehouse backup on this host), unless thisHost.
	peers := nodeapi.Peers(t, a.conf.HostID)
	wholeDomain := len(peers) > 0 && !flags["thisHost"]
	if flags["skipUnreachable"] && !wholeDomain {
		a.fail(w, r, &apihttp.Error{Code: http.StatusBadRequest, Msg: "skipUnreachable is for a backup of the whole domain (several hosts, without thisHost)"})
		return
	}
	act := actor(r)
	clear := a.clearScopes()
	if wholeDomain {
		clear = append(clear, a.remoteClearScopes(r.Context(), peers)...)
	}
	if len(clear) > 0 && !a.allows(r, ClearSecretsPath) {
		msg := fmt.Sprintf("the secrets of these scopes are not sealed with a passphrase: %s; an archive of them would hold the keys of every role; only a user whose roles allow POST %s (the administrator) may take it through the API. Set passphrases (docs/passphrase.md) or ask an administrator", strings.Join(clear, ", "), ClearSecretsPath)
		a.record(r.Context(), act, "backup", nil, "refused", msg)
		a.fail(w, r, &apihttp.Error{Code: http.StatusForbidden, Msg: msg})
		return
	}
	select {
	case a.backups <- struct{}{}:
		defer func() { <-a.backups }()
	default:
		a.fail(w, r, &apihttp.Error{Code: http.StatusConflict, Msg: "a backup is being written already; try again when it is done"})
		return
	}
	if wholeDomain {
		a.backupDomain(w, r, t, withLogs, flags["skipUnreachable"])
		return
	}
	o := backup.Options{Gatehouse: a.version, Host: a.conf.HostID, WithLogs: withLogs, TopologyVersion: t.Version}
	o, warnings, err := kpsexport.WithExports(a.h, o, false)
	for _, w := range warnings {
		a.log.Warn("backup through the API", "warning", w)
	}
	if err != nil {
		a.record(r.Context(), act, "backup", nil, "", err.Error())
		a.fail(w, r, &apihttp.Error{Code: http.StatusInternalServerError, Msg: "the backup failed: " + err.Error()})
		return
	}
	name := fmt.Sprintf("gatehouse-%s-%s.backup", a.conf.HostID, time.Now().UTC().Format("20060102T150405Z"))
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("Cache-Control", "no-store")
	cw := &countingWriter{w: w}
	m, err := backup.Write(r.Context(), a.h, cw, o)
	if err != nil {
		a.record(r.Context(), act, "backup", nil, fmt.Sprintf("%d bytes sent", cw.n), err.Error())
		a.log.Error("backup through the API failed", "user", act.User, "error", err.Error())
		if cw.n == 0 {
			a.fail(w, r, &apihttp.Error{Code: http.StatusInternalServerError, Msg: "the backup failed; the node manager log has the cause", Err: err})
			return
		}
		// The status is sent: cut the answer, so that the client sees an
		// error rather than an archive without its manifest.
		panic(http.ErrAbortHandler)
	}
	a.record(r.Context(), act, "backup", nil, fmt.Sprintf("%d entries, %d bytes, topology version %d", len(m.Entries), cw.n, o.TopologyVersion), "")
}

// clearScopes names the scopes of this host whose secret files exist and
// are not sealed by a passphrase (nodeapi.ClearScopes).
func (a *API) clearScopes() []string {
	t, _ := a.store.Load()
	return nodeapi.ClearScopes(a.h, t)
}

// allows reports whether the caller's roles allow POST path.
func (a *API) allows(r *http.Request, path string) bool {
	acl := a.acl
	if acl == nil {
		acl = rbac.DefaultACL()
	}
	roles, _, err := rbac.Roles(a.h, apihttp.UserOf(r.Context()))
	return err == nil && acl.Allowed(roles, http.MethodPost, path)
}

type countingWriter struct {
	w http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// HostBackups is one host of GET /api/backup/status.
type HostBackups struct {
	HostID   string `json:"hostID"`
	HostName string `json:"hostName"`
	// NodeManager is "running" or "unreachable" (its backups unknown).
	NodeManager string `json:"nodeManager"`
	// Backups: null when the host has no schedule (or is unreachable).
	Backups *nodeapi.BackupStatus `json:"backups"`
	Error   string                `json:"error,omitempty"`
}

// GET /api/backup/status: every host's scheduled backups (its node
// manager's GET /nm/status, asked concurrently and briefly).
func (a *API) getBackupStatus(w http.ResponseWriter, r *http.Request) {
	t, ok := a.load(w, r)
	if !ok {
		return
	}
	out := make([]HostBackups, len(t.Hosts))
	ctx, cancel := context.WithTimeout(r.Context(), nodeapi.StatusTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for i, h := range t.Hosts {
		out[i] = HostBackups{HostID: h.ID, HostName: h.Name, NodeManager: "running"}
		if h.ID == a.conf.HostID {
			nc, err := domain.LoadNodeManagerConf(a.h)
			if err != nil {
				out[i].Error = err.Error()
				continue
			}
			out[i].Backups = nodeapi.LocalBackupStatus(a.h, nc)
			continue
		}
		p, err := nodeapi.PeerOfHost(t, h.ID)
		if err != nil {
			out[i].NodeManager, out[i].Error = "none", "no node manager on this host"
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var st nodeapi.Status
			if err := a.net.Call(ctx, p, http.MethodGet, "/nm/status", nil, &st); err != nil {
				out[i].NodeManager, out[i].Error = "unreachable", err.Error()
				return
			}
			out[i].Backups = st.Backups
		}()
	}
	wg.Wait()
	apihttp.WriteResult(w, http.StatusOK, map[string]any{"hosts": out})
}

// remoteClearScopes are the other hosts' scopes whose secrets are in clear,
// as each node manager reports them (GET /nm/status); a host that does not
// answer is counted as in clear (its archive's content is unknown).
func (a *API) remoteClearScopes(ctx context.Context, peers []nodeapi.Peer) []string {
	ctx, cancel := context.WithTimeout(ctx, nodeapi.StatusTimeout)
	defer cancel()
	var mu sync.Mutex
	var out []string
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var st nodeapi.Status
			err := a.net.Call(ctx, p, http.MethodGet, "/nm/status", nil, &st)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				out = append(out, fmt.Sprintf("host %s (unknown: its node manager does not answer)", p.HostID))
				return
			}
			for _, s := range st.ClearSecrets {
				out = append(out, fmt.Sprintf("%s on host %s", s, p.HostID))
			}
		}()
	}
	wg.Wait()
	slices.Sort(out)
	return out
}

// backupDomain streams the domain's backup (backup.WriteDomain: every
// host's part, this one's written here, the others' fetched from their
// node managers), as gatehouse backup --domain writes it.
func (a *API) backupDomain(w http.ResponseWriter, r *http.Request, t *topology.Topology, withLogs, skipUnreachable bool) {
	act := actor(r)
	c, err := a.net.Client()
	if err != nil {
		a.fail(w, r, &apihttp.Error{Code: http.StatusInternalServerError, Msg: "the backup failed: " + err.Error(), Err: err})
		return
	}
	sources, err := nodeapi.DomainSources(a.h, t, a.conf.HostID, a.version, c, withLogs, func(m string) { a.log.Warn("backup through the API", "warning", m) })
	if err != nil {
		a.fail(w, r, &apihttp.Error{Code: http.StatusInternalServerError, Msg: "the backup failed: " + err.Error(), Err: err})
		return
	}
	do := backup.DomainOptions{Gatehouse: a.version, TopologyVersion: t.Version}
	if skipUnreachable {
		do.Skip = func(err error) bool {
			var pe *nodeapi.PeerError
			return errors.As(err, &pe)
		}
	}
	name := fmt.Sprintf("gatehouse-domain-%s.backup", time.Now().UTC().Format("20060102T150405Z"))
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("Cache-Control", "no-store")
	cw := &countingWriter{w: w}
	dm, err := backup.WriteDomain(r.Context(), cw, sources, do)
	if err != nil {
		a.record(r.Context(), act, "backup", nil, fmt.Sprintf("the domain's; %d bytes sent", cw.n), err.Error())
		a.log.Error("domain backup through the API failed", "user", act.User, "error", err.Error())
		if cw.n == 0 {
			a.fail(w, r, &apihttp.Error{Code: http.StatusBadGateway, Msg: "the domain's backup failed: " + err.Error(), Err: err})
			return
		}
		panic(http.ErrAbortHandler)
	}
	detail := fmt.Sprintf("the domain's: %d hosts, %d bytes, topology version %d", len(dm.Hosts), cw.n, t.Version)
	for _, g := range dm.Gaps {
		detail += fmt.Sprintf("; host %s missing (%s)", g.HostID, g.Error)
	}
	a.record(r.Context(), act, "backup", nil, detail, "")
}
