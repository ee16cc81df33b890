package nodeapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
)

// SHA256Header carries the SHA-256 (hex) of a binary sent to a node
// manager (PUT /nm/binary).
const SHA256Header = "X-Gatehouse-SHA256"

// PUT /nm/binary: the Admin Node Manager's upgrade (gatehouse upgrade)
// installs a new gatehouse binary on this host: checked against its
// SHA-256 and run once ("version") before it replaces posix/bin/gatehouse;
// the one it replaces is kept as posix/bin/gatehouse.previous.
func (s *Server) putBinary(w http.ResponseWriter, r *http.Request) {
	want := r.Header.Get(SHA256Header)
	if len(want) != 64 {
		apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusBadRequest, Msg: "the binary's SHA-256 is needed in the " + SHA256Header + " header (64 hex digits)"})
		return
	}
	// The listener's read timeout is for short calls: a binary of tens of
	// megabytes over a slow link gets ten minutes.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(10 * time.Minute))
	info, err := domain.ReplaceBinary(r.Context(), s.h, http.MaxBytesReader(w, r.Body, domain.MaxBinaryBytes+1), want)
	if err != nil {
		apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("host %s: %v", s.conf.HostID, err)})
		return
	}
	s.log.Info("gatehouse binary replaced", "sha256", info.SHA256, "version", info.Version, "previous", info.Previous)
	apihttp.WriteResult(w, http.StatusOK, info)
}

// POST /nm/binary/previous: the binary an upgrade replaced is put back.
func (s *Server) postPreviousBinary(w http.ResponseWriter, r *http.Request) {
	info, err := domain.RestorePreviousBinary(r.Context(), s.h)
	if errors.Is(err, domain.ErrNoPreviousBinary) {
		apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusConflict, Msg: fmt.Sprintf("host %s: %v", s.conf.HostID, err)})
		return
	}
	if err != nil {
		apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusInternalServerError, Msg: fmt.Sprintf("host %s: %v", s.conf.HostID, err)})
		return
	}
	s.log.Info("gatehouse binary put back", "sha256", info.SHA256, "version", info.Version)
	apihttp.WriteResult(w, http.StatusOK, info)
}

// PushBinary sends the binary at path to p's node manager (PUT /nm/binary).
func (c *NodeClient) PushBinary(ctx context.Context, p Peer, path, sha string) (domain.BinaryInfo, error) {
	var info domain.BinaryInfo
	f, err := os.Open(path)
	if err != nil {
		return info, err
	}
	defer f.Close()
	req, err := http.NewRequestWithContext(withPeer(ctx, p), http.MethodPut, "https://"+p.Addr+"/nm/binary", f)
	if err != nil {
		return info, &PeerError{Peer: p, Err: err}
	}
	req.Header.Set(SHA256Header, sha)
	req.Header.Set("Content-Type", "application/octet-stream")
	hc := *c.hc
	hc.Timeout = 0 // the context bounds it
	resp, err := hc.Do(req)
	if err != nil {
		return info, &PeerError{Peer: p, Err: err}
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxNMAnswer))
	if resp.StatusCode != http.StatusOK {
		return info, remoteError(p, resp.StatusCode, data)
	}
	var env struct {
		Result domain.BinaryInfo `json:"result"`
	}
	if err := json.Unmarshal(data, &env); err != nil {
		return info, &PeerError{Peer: p, Err: fmt.Errorf("not a node manager answer: %w", err)}
	}
	return env.Result, nil
}

// RestorePreviousBinary puts p's previous binary back (POST
// /nm/binary/previous).
func (c *NodeClient) RestorePreviousBinary(ctx context.Context, p Peer) (domain.BinaryInfo, error) {
	var info domain.BinaryInfo
	err := c.call(ctx, p, http.MethodPost, "/nm/binary/previous", nil, &info)
	return info, err
}
