package sample

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/coder/websocket"
)

// upload reads the body to its end in small pieces and reports its size and
// digest: a test can push gigabytes through the gateway and check them.
func (h *Handler) upload(w http.ResponseWriter, r *http.Request) {
	sum := sha256.New()
	n, err := io.CopyBuffer(sum, r.Body, make([]byte, 32<<10))
	if err != nil {
		h.log.Debug("reading upload", "error", err, "bytes", n)
		writeJSON(w, http.StatusBadRequest, errorBody(http.StatusBadRequest, "could not read the request body"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"bytes": n, "sha256": hex.EncodeToString(sum.Sum(nil))})
}

func intParam(r *http.Request, name string, def, max int) (int, bool) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > max {
		return 0, false
	}
	return n, true
}

// sse streams n events, one every ms milliseconds, each flushed at once.
func (h *Handler) sse(w http.ResponseWriter, r *http.Request) {
	n, ok1 := intParam(r, "n", 5, 1000)
	ms, ok2 := intParam(r, "ms", 100, 10000)
	if !ok1 || !ok2 {
		writeJSON(w, http.StatusBadRequest, errorBody(http.StatusBadRequest, "n must be 0-1000 and ms 0-10000"))
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	for i := 1; i <= n; i++ {
		if i > 1 && ms > 0 {
			t := time.NewTimer(time.Duration(ms) * time.Millisecond)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		if _, err := fmt.Fprintf(w, "id: %d\ndata: event %d at %s\n\n", i, i, time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// websocket echoes every message until the peer closes.
func (h *Handler) websocket(w http.ResponseWriter, r *http.Request) {
	// The sample is a demo back end: any Origin may use it.
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		h.log.Debug("websocket accept", "error", err)
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	ctx := r.Context()
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			return
		}
		if err := c.Write(ctx, typ, msg); err != nil {
			return
		}
	}
}
