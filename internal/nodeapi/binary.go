package nodeapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
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

// POST /nm/nodemanager/restart: the Admin Node Manager's upgrade asks this
// node manager to restart on the install directory's binary (after PUT
// /nm/binary and its instances' restarts). 202 at once; the node manager
// stops its listener and starts the new program, which answers GET
// /nm/status with its own pid and binary (the caller waits for them). The
// instances keep running throughout, as across nodemanager -k and -d; if
// the new program does not start, the old one is started again.
func (s *Server) postRestart(w http.ResponseWriter, r *http.Request) {
	if s.restart == nil {
		apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusServiceUnavailable, Msg: fmt.Sprintf("host %s: this node manager cannot restart itself (it does not run under the nodemanager tool)", s.conf.HostID)})
		return
	}
	if err := s.restart(); err != nil {
		apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusConflict, Msg: fmt.Sprintf("host %s: %v", s.conf.HostID, err)})
		return
	}
	s.log.Info("restart requested by the Admin Node Manager", "pid", os.Getpid())
	apihttp.WriteResult(w, http.StatusAccepted, map[string]any{"pid": os.Getpid(), "binary": runningBinary()})
}

var (
	binaryOnce sync.Once
	binarySum  string
)

// runningBinary is the SHA-256 of the program this process runs (read once;
// /proc/self/exe reaches it even after an upgrade renamed another file over
// its path).
func runningBinary() string {
	binaryOnce.Do(func() {
		f, err := os.Open("/proc/self/exe")
		if err != nil {
			return
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err == nil {
			binarySum = hex.EncodeToString(h.Sum(nil))
		}
	})
	return binarySum
}

// RestartNodeManager asks p's node manager to restart on its host's
// binary and waits (within ctx) until it answers GET /nm/status from
// another process. It returns that status: the caller checks its binary.
func (c *NodeClient) RestartNodeManager(ctx context.Context, p Peer) (Status, error) {
	var before struct {
		PID int `json:"pid"`
	}
	if err := c.call(ctx, p, http.MethodPost, "/nm/nodemanager/restart", nil, &before); err != nil {
		return Status{}, err
	}
	var last error
	for {
		select {
		case <-ctx.Done():
			return Status{}, fmt.Errorf("the node manager of host %s did not come back after its restart: %w (last: %v)", p.hostLabel(), ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
		var st Status
		sctx, cancel := context.WithTimeout(ctx, StatusTimeout)
		last = c.call(sctx, p, http.MethodGet, "/nm/status", nil, &st)
		cancel()
		if last == nil && st.PID != before.PID {
			return st, nil
		}
	}
}
