// Package sample is the sample back-end service that an instance serves on a
// listener of its own (sample.enabled), so that QuickStart has something to
// forward to. The gateway reaches it through the ordinary forwarding path, at
// /sample/... with the QuickStart configuration.
//
//	/echo, /echo/...    the request as JSON: method, path, query, headers, body, remoteAddr
//	                    (a body above 1 MiB is refused with 413)
//	/delay/{ms}         answers {"delayedMs":ms} after ms milliseconds (0-60000); the wait
//	                    ends early, without an answer, when the client goes away
//	/status/{code}      answers with that status (100-599; 1xx refused with 400) and a JSON body
//	/upload             reads the whole body, whatever its size, without keeping it, and
//	                    answers {"bytes":n,"sha256":"..."}
//	/sse?n=N&ms=M       a text/event-stream of N events (default 5, at most 1000), one every
//	                    M milliseconds (default 100, at most 10000)
//	/ws                 a WebSocket echo: every message comes back as sent
//
// Anything else is 404. Every answer is JSON. The Handler is safe for
// concurrent use and holds no state.
package sample

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// MaxBody is the largest request body /echo reads.
const MaxBody = 1 << 20

// MaxDelay is the longest /delay/{ms} accepted.
const MaxDelay = 60 * time.Second

// Handler serves the sample API.
type Handler struct {
	log *slog.Logger
}

// New returns the sample handler. logger may be nil (no logging).
func New(logger *slog.Logger) *Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{log: logger}
}

// Echo is the body of an /echo answer.
type Echo struct {
	Method     string              `json:"method"`
	Path       string              `json:"path"`
	Query      string              `json:"query"`
	Headers    map[string][]string `json:"headers"`
	Body       string              `json:"body"`
	RemoteAddr string              `json:"remoteAddr"`
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == "/echo" || strings.HasPrefix(p, "/echo/"):
		h.echo(w, r)
	case strings.HasPrefix(p, "/delay/"):
		h.delay(w, r, strings.TrimPrefix(p, "/delay/"))
	case strings.HasPrefix(p, "/status/"):
		h.status(w, strings.TrimPrefix(p, "/status/"))
	case p == "/upload":
		h.upload(w, r)
	case p == "/sse":
		h.sse(w, r)
	case p == "/ws":
		h.websocket(w, r)
	default:
		writeJSON(w, http.StatusNotFound, errorBody(http.StatusNotFound, "no such sample resource; try /echo, /delay/{ms}, /status/{code}, /upload, /sse or /ws"))
	}
}

func (h *Handler) echo(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeJSON(w, http.StatusRequestEntityTooLarge, errorBody(http.StatusRequestEntityTooLarge, "request body above 1 MiB"))
			return
		}
		h.log.Debug("reading echo body", "error", err)
		writeJSON(w, http.StatusBadRequest, errorBody(http.StatusBadRequest, "could not read the request body"))
		return
	}
	writeJSON(w, http.StatusOK, Echo{
		Method:     r.Method,
		Path:       r.URL.Path,
		Query:      r.URL.RawQuery,
		Headers:    r.Header,
		Body:       string(body),
		RemoteAddr: r.RemoteAddr,
	})
}

func (h *Handler) delay(w http.ResponseWriter, r *http.Request, arg string) {
	ms, err := strconv.Atoi(arg)
	if err != nil || ms < 0 || time.Duration(ms)*time.Millisecond > MaxDelay {
		writeJSON(w, http.StatusBadRequest, errorBody(http.StatusBadRequest, "delay must be a number of milliseconds from 0 to 60000"))
		return
	}
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		writeJSON(w, http.StatusOK, map[string]int{"delayedMs": ms})
	case <-r.Context().Done():
		h.log.Debug("delay abandoned by the client", "delayMs", ms)
	}
}

func (h *Handler) status(w http.ResponseWriter, arg string) {
	code, err := strconv.Atoi(arg)
	switch {
	case err != nil || code < 100 || code > 599:
		writeJSON(w, http.StatusBadRequest, errorBody(http.StatusBadRequest, "status must be a number from 200 to 599"))
	case code < 200:
		writeJSON(w, http.StatusBadRequest, errorBody(http.StatusBadRequest, "informational (1xx) statuses cannot be requested; use 200 to 599"))
	default:
		writeJSON(w, code, map[string]any{"status": code, "text": http.StatusText(code)})
	}
}

type errorItem struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func errorBody(code int, msg string) any {
	return map[string][]errorItem{"errors": {{Code: code, Message: msg}}}
}

// writeJSON answers status with v as JSON. Statuses that carry no body (204,
// 304) get none.
func writeJSON(w http.ResponseWriter, status int, v any) {
	if status == http.StatusNoContent || status == http.StatusNotModified {
		w.WriteHeader(status)
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"errors":[{"code":500,"message":"internal error"}]}`)
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
