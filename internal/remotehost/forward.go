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

// Blame says what a failed exchange tells about the address it went to.
type Blame uint8

const (
	// BlameNone: the client's side failed (its body was bad, too large,
	// too slow or cut off; it went away; a limit on what it sends). The
	// address is not touched and the request is not retried.
	BlameNone Blame = iota
	// BlameNoted: recorded as the address's last error, but the address
	// stays in rotation (busy, or a limit of ours on the response).
	BlameNoted
	// BlameAddress: the address failed (refused, reset, timed out,
	// answered badly) and is skipped for failedAddressSkip.
	BlameAddress
)

// Verdict is Judge's answer.
type Verdict struct {
	Blame       Blame
	ObserveTime bool // the time taken counts as a response-time sample
}

// Judge classifies a failed exchange: the one table of how an exchange can
// end and whom it blames (docs/remotehosts.md, "How an exchange can end").
// Only a fault of the back end's side takes an address out of rotation;
// a fault of the client's side never does, even when it surfaces as a
// failed read from the back end (h1 reports those as ErrClient).
func Judge(fe *h1.ForwardError) Verdict {
	switch fe.Kind {
	case h1.ErrClient:
		return Verdict{Blame: BlameNone}
	case h1.ErrNoConnAvailable:
		// Busy, not broken: the next address may have room.
		return Verdict{Blame: BlameNoted}
	case h1.ErrUpstreamProtocol:
		if errors.Is(fe, h1.ErrMaxReceived) {
			// A limit of ours, not a broken address.
			return Verdict{Blame: BlameNoted}
		}
		return Verdict{Blame: BlameAddress}
	case h1.ErrTimeout:
		return Verdict{Blame: BlameAddress, ObserveTime: true}
	}
	return Verdict{Blame: BlameAddress}
}

// noteFallback logs the transitions into and out of the fallback (every
// address skipped after failures, requests sent to them anyway): one line
// each, not one per request.
func (h *Host) noteFallback(on bool) {
	if h.inFallback.Load() == on || !h.inFallback.CompareAndSwap(!on, on) {
		return
	}
	if on {
		h.reg.log.Warn("every address of the remote host is skipped after failures; sending to them anyway, least recently failed first",
			"remoteHost", h.Name, "backend", h.Backend)
	} else {
		h.reg.log.Info("an address of the remote host is in rotation again; fallback ended", "remoteHost", h.Name, "backend", h.Backend)
	}
}

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
		ad, fallback := h.pick(g, tried, now)
		if ad == nil {
			if last == nil {
				return h1.Result{}, ErrNoAddress
			}
			return h1.Result{}, last
		}
		h.noteFallback(fallback)
		tried |= 1 << uint(ad.idx)
		n++
		st := ad.st
		if fallback {
			st.fallback.Add(1)
		}
		st.inFlight.Add(1)
		st.requests.Add(1)
		start := mono()
		res, err := a.Try(ctx, ad.up, w)
		now = mono()
		st.inFlight.Add(-1)
		if err == nil {
			st.observe(now, now-start, h.halfLife)
			if fallback {
				// It answered: back in rotation before its skip ends.
				st.failedUntil.Store(0) // mutate:equivalent const until 1 ns after the clock's base (package init) is as past as 0
				h.noteFallback(false)
			}
			return res, nil
		}
		var fe *h1.ForwardError
		if !errors.As(err, &fe) {
			// mutate:equivalent delete-stmt unreachable: Attempt.Try's errors are *h1.ForwardError (h1.Forward's contract); a guard against a change there
			fe = &h1.ForwardError{Kind: h1.ErrConnect, Err: err}
		}
		v := Judge(fe)
		if v.ObserveTime {
			st.observe(now, now-start, h.halfLife)
		}
		switch v.Blame {
		case BlameNone:
			// The client's side (its body, a limit, or it went away).
			return res, err
		case BlameNoted:
			st.recordErr(err)
		case BlameAddress:
			st.failN(now, h.skip, h.threshold, err)
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
