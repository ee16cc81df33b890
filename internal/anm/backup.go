package anm

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/backup"
	"github.com/gatehouse-gw/gatehouse/internal/backup/kpsexport"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/nodeapi"
	"github.com/gatehouse-gw/gatehouse/internal/rbac"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
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
	withLogs := false
	switch v := r.URL.Query().Get("withLogs"); v {
	case "", "false":
	case "true":
		withLogs = true
	default:
		a.fail(w, r, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("withLogs %q: want true or false", v)})
		return
	}
	act := actor(r)
	if clear := a.clearScopes(); len(clear) > 0 && !a.allows(r, ClearSecretsPath) {
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
	o := backup.Options{Gatehouse: a.version, Host: a.conf.HostID, WithLogs: withLogs}
	if t, err := a.store.Load(); err == nil {
		o.TopologyVersion = t.Version
	}
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
// are not sealed by a passphrase.
func (a *API) clearScopes() []string {
	scopes := []secret.Scope{secret.ScopeCA, secret.ScopeNodeManagers}
	if t, err := a.store.Load(); err == nil {
		for gi := range t.Groups {
			if g := &t.Groups[gi]; !g.IsNodeManagerGroup() {
				scopes = append(scopes, secret.GroupScope(g.ID))
			}
		}
	}
	var out []string
	for _, s := range scopes {
		files, err := s.Files(a.h)
		if err != nil || (len(files) > 0 && !s.Protected(a.h)) {
			out = append(out, string(s))
		}
	}
	return out
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
