package instance

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/gatehouse-gw/gatehouse/internal/h1"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
	"github.com/gatehouse-gw/gatehouse/internal/proxy"
	"github.com/gatehouse-gw/gatehouse/internal/route"
)

// trafficHandler serves the traffic listener, HTTP/1.1 and (through
// h2bridge) HTTP/2 alike: health checks, then routing, the body limit, the
// policy chain and forwarding, and one access-log line per request.
type trafficHandler struct{ i *Instance }

// exchange is the per-request scratch memory, pooled.
type exchange struct {
	id      []byte
	scratch proxy.Scratch
	ex      policy.Exchange
	chain   policy.Chain // the matched API's
	edit    func(int, *h1.Header)
	entry   accessEntry
	client  clientScratch
}

var exchangePool = sync.Pool{New: func() any {
	x := &exchange{id: make([]byte, 0, 32)}
	x.edit = x.editResponse // one method value per pooled exchange, not per request
	return x
}}

// editResponse lets the matched API's policies edit the response head.
func (x *exchange) editResponse(status int, h *h1.Header) { x.chain.EditResponse(&x.ex, status, h) }

// b2s views b as a string without copying; the string must not outlive b.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

var (
	correlationName = []byte(HeaderCorrelationID)
	pathHealth      = []byte("/healthcheck")
	pathHealthLB    = []byte("/healthchecklb")
)

func (h trafficHandler) ServeH1(w h1.ResponseWriter, r *h1.Request) {
	i := h.i
	start := r.ReceivedAt
	if start.IsZero() {
		start = time.Now()
	}
	i.inFlight.Add(1)
	x := exchangePool.Get().(*exchange)
	rt := i.rt.Load()
	client := rt.clients.resolve(r, &x.client, i.log) // who the client is: once per request
	// The client's Connection list names fields meant for this hop only:
	// remove them now, after reading who the client is and before the
	// gateway adds its own (X-CorrelationID here, X-Forwarded-* in the
	// proxy), which that list must never remove.
	r.Header.RemoveConnectionNamed()
	x.id = i.ids.acceptBytes(r.Header.Get(HeaderCorrelationID), start, x.id[:0])
	// The engine may write the response head after this handler returned,
	// when x is back in the pool: the id the headers point to is copied into
	// the response header's own arena, which lives as long as the exchange.
	wh := w.Header()
	wh.Del(HeaderCorrelationID)
	wh.AddCopy(correlationName, x.id)
	r.Header.Set(HeaderCorrelationID, wh.Get(HeaderCorrelationID))
	var matched *route.Route
	var fwdErr error
	var fwd h1.Result
	defer func() {
		end := time.Now() // one clock read for the metrics and the access log
		i.observe(rt, matched, r, w, fwd.BytesOut, end.Sub(start))
		i.inFlight.Add(-1)
		if w.Status() == 0 {
			// Nothing was answered (the client went away): make sure no
			// header still points into the pooled exchange.
			w.Header().Del(HeaderCorrelationID)
		}
		if rt.cfg.AccessLog.Enabled {
			e := &x.entry
			*e = accessEntry{start: start, end: end, id: x.id, r: r, status: w.Status(), bytes: w.Written(), route: matched, err: fwdErr, client: client.addr, app: x.ex.Application}
			i.logs.access.log(e)
		}
		x.ex = policy.Exchange{Vars: x.ex.Vars[:0]} // the variables' memory is kept with the pooled exchange
		x.chain, x.scratch.Edit = nil, nil
		exchangePool.Put(x)
	}()
	if i.testHookRequest != nil {
		i.testHookRequest(r)
	}

	switch {
	case bytes.Equal(r.Path, pathHealth):
		healthCheck(w, r, true)
		return
	case bytes.Equal(r.Path, pathHealthLB):
		healthCheck(w, r, i.Phase() == PhaseServing && i.inService.Load())
		return
	case rt.oauth.serves(r.Path):
		rt.oauth.serve(w, r)
		return
	}

	rt2, err := rt.table.Match(b2s(r.Method), b2s(r.Host), b2s(r.Path), &x.ex.Params)
	if err != nil {
		var me *route.MethodError
		switch {
		case errors.Is(err, route.ErrBadPath):
			proxy.WriteError(w, http.StatusBadRequest, "the request path is not in canonical form (no '.', '..' or empty segments, no encoded '.', '/' or '\\')")
		case errors.As(err, &me):
			w.Header().SetString("Allow", strings.Join(me.Allow, ", "))
			proxy.WriteError(w, http.StatusMethodNotAllowed, "method "+string(r.Method)+" is not allowed here")
		default:
			proxy.WriteError(w, http.StatusNotFound, "no API matches this path")
		}
		return
	}
	matched = rt2
	if limit := rt2.MaxBodyBytes; limit > 0 {
		if r.ContentLength > limit {
			proxy.WriteError(w, http.StatusRequestEntityTooLarge, "the request body is larger than this API accepts")
			return
		}
		r.MaxBodyBytes = limit
	}
	if chain := rt.chains[rt2.Index]; len(chain) > 0 {
		x.chain = chain
		x.ex = policy.Exchange{W: w, R: r, Route: rt2, CorrelationID: b2s(x.id), ClientAddr: client.addr, Params: x.ex.Params, Vars: x.ex.Vars[:0], Edit: x.edit}
		if err := chain.Apply(&x.ex); err != nil {
			var pe *policy.Error
			switch {
			case errors.Is(err, policy.ErrHandled):
			case errors.As(err, &pe):
				if pe.Err != nil {
					i.log.Info("request rejected", "policy", pe.Policy, "status", pe.Status, "correlationId", string(x.id), "error", pe.Err.Error())
				}
				for _, f := range pe.Fields {
					w.Header().SetString(f[0], f[1])
				}
				chain.EditResponse(&x.ex, pe.Status, w.Header())
				proxy.WriteError(w, pe.Status, pe.Message)
			default:
				i.log.Error("policy failed", "correlationId", string(x.id), "api", rt2.Name, "error", err.Error())
				chain.EditResponse(&x.ex, http.StatusInternalServerError, w.Header())
				proxy.WriteError(w, http.StatusInternalServerError, "internal error")
			}
			return
		}
		x.scratch.Edit = x.edit
	}
	x.scratch.Forwarded = client.fwd
	fw := w
	if x.chain != nil {
		fw = x.ex.W // a policy may have wrapped it (responseCache records the response)
	}
	fwd, fwdErr = rt.forwarders[rt2.Index].Forward(context.Background(), fw, r, &x.scratch)
	if x.chain != nil {
		x.chain.Finish(&x.ex, fwdErr)
	}
}

var (
	healthOK   = []byte("<status>ok</status>")
	healthDown = []byte("<status>unavailable</status>")
)

// healthCheck answers /healthcheck and /healthchecklb.
func healthCheck(w h1.ResponseWriter, r *h1.Request, ok bool) {
	m := b2s(r.Method)
	if m != http.MethodGet && m != http.MethodHead {
		w.Header().SetString("Allow", "GET, HEAD")
		proxy.WriteError(w, http.StatusMethodNotAllowed, "method "+m+" is not allowed here")
		return
	}
	body, status, length := healthOK, http.StatusOK, "19"
	if !ok {
		body, status, length = healthDown, http.StatusServiceUnavailable, "28"
	}
	hd := w.Header()
	hd.SetString("Content-Type", "text/xml")
	hd.SetString("Cache-Control", "no-store")
	hd.SetString("Content-Length", length)
	w.WriteHeader(status)
	if m != http.MethodHead {
		_, _ = w.Write(body)
	}
}
