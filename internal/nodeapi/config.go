package nodeapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/backup"
)

// maxConfigBody bounds PUT /nm/config: a host's configuration files with
// their content (base64 in JSON).
const maxConfigBody = 256 << 20

// GET /nm/config: this host's configuration files (backup.IsConfig) and
// their SHA-256 and mode, for gatehouse upgrade --rollback to compare with
// the backup taken before the upgrade. ANM's certificate only.
func (s *Server) getConfig(w http.ResponseWriter, r *http.Request) {
	files, err := backup.Config(s.h)
	if err != nil {
		apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusInternalServerError, Msg: fmt.Sprintf("host %s: reading its configuration: %v", s.conf.HostID, err)})
		return
	}
	apihttp.WriteResult(w, http.StatusOK, files)
}

// PUT /nm/config: gatehouse upgrade --rollback puts this host's
// configuration back to the backup's (backup.ConfigChange: files with
// content and mode, paths to remove). Only configuration paths; each
// file's content must match its SHA-256; nothing is written unless every
// one is right. ANM's certificate only — it may already deploy
// configuration and binaries here.
func (s *Server) putConfig(w http.ResponseWriter, r *http.Request) {
	var c backup.ConfigChange
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxConfigBody))
	if err := dec.Decode(&c); err != nil {
		apihttp.WriteError(w, r, s.log, apihttp.BodyError(err, dec, "a configuration change"))
		return
	}
	done, err := backup.ApplyConfig(s.h, c)
	for _, d := range done {
		s.log.Info("configuration put back from a backup", "change", d)
	}
	if err != nil {
		apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("host %s: %v", s.conf.HostID, err)})
		return
	}
	if done == nil {
		done = []string{}
	}
	apihttp.WriteResult(w, http.StatusOK, map[string]any{"done": done})
}

// ConfigOf is p's configuration files with their checksums (GET /nm/config).
func (c *NodeClient) ConfigOf(ctx context.Context, p Peer) (map[string]backup.ConfigFile, error) {
	var out map[string]backup.ConfigFile
	err := c.call(ctx, p, http.MethodGet, "/nm/config", nil, &out)
	return out, err
}

// PutConfig makes change ch on p (PUT /nm/config) and returns what was done.
func (c *NodeClient) PutConfig(ctx context.Context, p Peer, ch backup.ConfigChange) ([]string, error) {
	var out struct {
		Done []string `json:"done"`
	}
	err := c.call(ctx, p, http.MethodPut, "/nm/config", ch, &out)
	return out.Done, err
}
