package nodeapi

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/backup"
	"github.com/gatehouse-gw/gatehouse/internal/backup/kpsexport"
	"github.com/gatehouse-gw/gatehouse/internal/backup/schedule"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// GET /nm/backup?withLogs=true: this host's backup (the archive of
// gatehouse backup), streamed to the Admin Node Manager, which gathers the
// domain's (gatehouse backup --domain). Only the ANM's certificate: the
// archive holds this host's keys. One at a time (409). A failure after the
// first bytes cuts the answer.
func (s *Server) getBackup(w http.ResponseWriter, r *http.Request) {
	withLogs := r.URL.Query().Get("withLogs") == "true"
	select {
	case s.backups <- struct{}{}:
		defer func() { <-s.backups }()
	default:
		apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusConflict, Msg: fmt.Sprintf("host %s is writing a backup already", s.conf.HostID)})
		return
	}
	o := backup.Options{Gatehouse: s.version, Host: s.conf.HostID, WithLogs: withLogs}
	if t, err := s.store.Load(); err == nil {
		o.TopologyVersion = t.Version
	}
	// kps=first: a part of a domain backup, which exports each group's
	// shared store once, from the host of its first instance.
	o, warnings, err := kpsexport.WithExports(s.h, o, r.URL.Query().Get("kps") == "first")
	for _, w := range warnings {
		s.log.Warn("backup for the Admin Node Manager", "warning", w)
	}
	if err != nil {
		apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusInternalServerError, Msg: fmt.Sprintf("the backup of host %s: %v", s.conf.HostID, err)})
		return
	}
	w.Header().Set("Content-Type", "application/gzip")
	cw := &countingWriter{w: w}
	if _, err := backup.Write(r.Context(), s.h, cw, o); err != nil {
		s.log.Error("backup for the Admin Node Manager failed", "error", err.Error())
		if cw.n == 0 {
			apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusInternalServerError, Msg: fmt.Sprintf("the backup of host %s failed: %v", s.conf.HostID, err)})
			return
		}
		panic(http.ErrAbortHandler)
	}
	s.log.Info("backup sent to the Admin Node Manager", "bytes", cw.n)
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// FetchBackup streams host p's backup (GET /nm/backup) into w. A transport
// failure is a *PeerError (the host is unreachable); an error answer a
// *RemoteError; an answer cut short an error of its own.
func (c *NodeClient) FetchBackup(ctx context.Context, p Peer, withLogs bool, w io.Writer) error {
	path := "/nm/backup?kps=first"
	if withLogs {
		path += "&withLogs=true"
	}
	req, err := http.NewRequestWithContext(withPeer(ctx, p), http.MethodGet, "https://"+p.Addr+path, nil)
	if err != nil {
		return &PeerError{Peer: p, Err: err}
	}
	// No overall timeout (the client's is for short calls): the context
	// bounds it; the connection and TLS handshake keep theirs.
	hc := *c.hc
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return &PeerError{Peer: p, Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, maxNMAnswer))
		return remoteError(p, resp.StatusCode, data)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("the backup of host %s was cut: %w", p.hostLabel(), err)
	}
	return nil
}

// BackupStatus is a host's scheduled backups (nodemanager.yaml backup:, as
// the node manager read it when it started) and what they did.
type BackupStatus struct {
	Schedule  string         `json:"schedule"`
	Directory string         `json:"directory"`
	Keep      int            `json:"keep"`
	State     schedule.State `json:"state"`
	// Error says why the state could not be read.
	Error string `json:"error,omitempty"`
	// Failing: the last run failed (no success since).
	Failing bool `json:"failing"`
}

// LocalBackupStatus is the scheduled backups of this host (nil when it has
// no schedule).
func LocalBackupStatus(h home.Home, conf domain.NodeManagerConf) *BackupStatus {
	if conf.Backup.Schedule == "" {
		return nil
	}
	b := &BackupStatus{Schedule: conf.Backup.Schedule, Directory: conf.Backup.Dir(h), Keep: conf.Backup.KeepOrDefault()}
	st, err := schedule.ReadState(h)
	if err != nil {
		b.Error = err.Error()
		return b
	}
	b.State = st
	b.Failing = !st.LastFailure.IsZero() && st.LastFailure.After(st.LastSuccess)
	return b
}

// DomainSources are the parts of a domain backup (backup.WriteDomain), one
// per host of t in topology order: host localHost's written by this
// process, the others' fetched from their node managers with c (GET
// /nm/backup?kps=first). Each group's PostgreSQL store is exported once,
// in the part of its first instance's host; warn is told what an export
// had to leave out.
func DomainSources(h home.Home, t *topology.Topology, localHost, version string, c *NodeClient, withLogs bool, warn func(string)) ([]backup.Source, error) {
	var out []backup.Source
	for _, host := range t.Hosts {
		src := backup.Source{HostID: host.ID, HostName: host.Name}
		if host.ID == localHost {
			o := backup.Options{Gatehouse: version, Host: localHost, TopologyVersion: t.Version, WithLogs: withLogs}
			src.Fetch = func(ctx context.Context, w io.Writer) error {
				o, warnings, err := kpsexport.WithExports(h, o, true)
				for _, m := range warnings {
					warn(m)
				}
				if err != nil {
					return err
				}
				_, err = backup.Write(ctx, h, w, o)
				return err
			}
		} else {
			peer, err := PeerOfHost(t, host.ID)
			if err != nil {
				return nil, err
			}
			src.Fetch = func(ctx context.Context, w io.Writer) error { return c.FetchBackup(ctx, peer, withLogs, w) }
		}
		out = append(out, src)
	}
	return out, nil
}

// ClearScopes names the scopes of the install directory h whose secret
// files exist and are not sealed by a passphrase (the domain CA's, the
// node managers', each group's of t): an archive of this host holds them
// in clear.
func ClearScopes(h home.Home, t *topology.Topology) []string {
	scopes := []secret.Scope{secret.ScopeCA, secret.ScopeNodeManagers}
	if t != nil {
		for gi := range t.Groups {
			if g := &t.Groups[gi]; !g.IsNodeManagerGroup() {
				scopes = append(scopes, secret.GroupScope(g.ID))
			}
		}
	}
	var out []string
	for _, s := range scopes {
		files, err := s.Files(h)
		if err != nil || (len(files) > 0 && !s.Protected(h)) {
			out = append(out, string(s))
		}
	}
	return out
}
