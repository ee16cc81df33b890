package remotehost

import (
	"context"
	"errors"
	"fmt"

	"github.com/gatehouse-gw/gatehouse/internal/h1"
)

// AddressError is a forwarding failure at one address.
type AddressError struct {
	RemoteHost string
	Address    string // ip:port
	Tried      int    // addresses tried for the request
	Err        error  // a *h1.ForwardError
}

func (e *AddressError) Error() string {
	return fmt.Sprintf("remote host %s, address %s (%d tried): %v", e.RemoteHost, e.Address, e.Tried, e.Err)
}

func (e *AddressError) Unwrap() error { return e.Err }

// idempotent reports whether a request with this method may be sent twice.
func idempotent(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "OPTIONS", "PUT", "DELETE":
		return true
	}
	return false
}

// retryable says whether a failed try may go on to the next address: never
// after response bytes arrived or when the body cannot be sent again; after
// request bytes were sent only for idempotent methods, and not after a
// timeout (the back end may still be working on it).
func retryable(kind h1.ErrKind, res h1.Result, replayable, idem bool) bool {
	switch {
	case kind == h1.ErrClient, res.Received, !replayable:
		return false
	case !res.Sent:
		return true
	}
	return idem && kind != h1.ErrTimeout
}

// Forward sends out to h's addresses (selection, failover, retries; see
// docs/remotehosts.md) and streams the answer to w. a is the caller's
// scratch memory for the request (Begin and End are done here). Errors are
// ErrNoAddress (503), an *AddressError wrapping the *h1.ForwardError of
// the last address tried, or an *h1.ForwardError from reading the client's
// body.
func (h *Host) Forward(ctx context.Context, w h1.ResponseWriter, out *h1.Outgoing, a *h1.Attempt) (h1.Result, error) {
	now := mono()
	g, err := h.resolve(ctx, now)
	if err != nil {
		return h1.Result{}, &AddressError{RemoteHost: h.Name, Address: h.host, Err: &h1.ForwardError{Kind: h1.ErrConnect, Err: err}}
	}
	if err := a.Begin(out); err != nil {
		return h1.Result{}, err
	}
	defer a.End()
	var (
		tried uint64
		n     int
		last  error
	)
	for {
		ad := h.pick(g, tried, now)
		if ad == nil {
			if last == nil {
				return h1.Result{}, ErrNoAddress
			}
			return h1.Result{}, last
		}
		tried |= 1 << uint(ad.idx)
		n++
		st := ad.st
		st.inFlight.Add(1)
		st.requests.Add(1)
		start := mono()
		res, err := a.Try(ctx, ad.up, w)
		now = mono()
		st.inFlight.Add(-1)
		if err == nil {
			st.observe(now, now-start, h.halfLife)
			return res, nil
		}
		var fe *h1.ForwardError
		if !errors.As(err, &fe) {
			fe = &h1.ForwardError{Kind: h1.ErrConnect, Err: err}
		}
		switch fe.Kind {
		case h1.ErrClient:
			// The client's side (its body, a limit, or it went away).
			return res, err
		case h1.ErrNoConnAvailable:
			// Busy, not broken: not blamed, the next address may have room.
			st.recordErr(err)
		case h1.ErrUpstreamProtocol:
			if errors.Is(err, h1.ErrMaxReceived) {
				// A limit of ours, not a broken address.
				st.recordErr(err)
				break
			}
			st.fail(now, h.skip, err)
		case h1.ErrTimeout:
			st.observe(now, now-start, h.halfLife)
			st.fail(now, h.skip, err)
		default:
			st.fail(now, h.skip, err)
		}
		ae := &AddressError{RemoteHost: h.Name, Address: ad.up.Addr, Tried: n, Err: fe}
		if fe.Responded || !retryable(fe.Kind, res, a.Replayable(), idempotent(out.Method)) {
			return res, ae
		}
		if ctx.Err() != nil {
			return res, ae
		}
		h.reg.log.Warn("address failed; trying the next", "remoteHost", h.Name, "backend", h.Backend, "address", ad.up.Addr, "error", err.Error())
		last = ae
	}
}
