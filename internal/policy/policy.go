// Package policy is the seam between routing and forwarding: a chain of
// policies applied, in order, to every request that matched an API. Each
// API has its own chain (apis[].policies, built by internal/policy/build
// once per configuration); each policy type is a package under
// internal/policy (apikey, jwt, lookup, cors, headers, responsecache,
// cachekv), except rateLimit, which lives beside the caches
// (internal/cache/ratelimit). docs/policies.md.
//
// A policy either lets the exchange go on (Apply returns nil), ends it with a
// client-safe *Error that the instance turns into a status and a JSON error
// body, or answers the request itself and returns ErrHandled. Any other error
// is an internal failure: the instance logs it and answers 500 without
// echoing it.
package policy

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/gatehouse-gw/gatehouse/internal/h1"
	"github.com/gatehouse-gw/gatehouse/internal/route"
)

// Exchange is one request on its way through the gateway. It is used by one
// goroutine at a time; policies may modify the request (headers, URL) before
// it is forwarded.
//
// The request's byte slices point into the connection's buffer and are valid
// only while the exchange lasts: a policy that keeps a value copies it.
type Exchange struct {
	W             h1.ResponseWriter
	R             *h1.Request
	Route         *route.Route // the matched route
	CorrelationID string       // the request's X-CorrelationID, already validated or generated (valid during the exchange)
	ClientAddr    netip.Addr   // the client's IP address (from the connection, not from headers)
	Params        route.Params // values of the matched route's {name} segments (valid during the exchange)
	// Application is the id of the client application that an apiKey
	// policy identified ("" when none): for the access log and later
	// policies.
	Application string
	// Vars are the values earlier policies give later ones (the ${name}
	// of a headers value): application.id after an apiKey policy,
	// AS.PROPERTY after a lookup. Set with SetVar, read with Var.
	Vars []Var
	// Edit, set by the instance, runs the chain's response edits
	// (EditResponse): a policy that answers the request itself with a
	// response of the back end's (a cached one) calls it before
	// WriteHeader, so that the answer is edited as a forwarded one is.
	// Nil: no edits.
	Edit func(status int, h *h1.Header)
}

// Var is a named value of an exchange.
type Var struct{ Name, Value string }

// SetVar sets the variable name.
func (ex *Exchange) SetVar(name, value string) {
	for i := range ex.Vars {
		if ex.Vars[i].Name == name {
			ex.Vars[i].Value = value
			return
		}
	}
	ex.Vars = append(ex.Vars, Var{name, value})
}

// Var returns the variable name and whether it is set.
func (ex *Exchange) Var(name string) (string, bool) {
	for _, v := range ex.Vars {
		if v.Name == name {
			return v.Value, true
		}
	}
	return "", false
}

// Policy is one step of the chain. Implementations must be safe for
// concurrent use: one Policy value serves every request.
type Policy interface {
	Name() string
	Apply(ex *Exchange) error
}

// ErrHandled, returned by a policy, means that it has written the response
// itself (for example a cached answer): the chain stops, nothing is forwarded.
var ErrHandled = errors.New("policy answered the request")

// Error ends an exchange with an HTTP status and a message that is safe to
// show to the client. Err, when set, is the cause, for the logs only.
type Error struct {
	Status  int    // HTTP status, 4xx or 5xx
	Message string // client-safe message
	Policy  string // name of the policy that rejected (set by Chain.Apply when empty)
	Err     error  // cause, never sent to the client
	// Fields are response fields to send with the error (Allow,
	// WWW-Authenticate): name, value pairs.
	Fields [][2]string
}

// Reject returns an *Error with a status and a client-safe message.
func Reject(status int, message string) *Error {
	return &Error{Status: status, Message: message}
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%d %s", e.Status, e.Message)
	if e.Policy != "" {
		s = "policy " + e.Policy + ": " + s
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// ResponseEditor is a policy that also edits the response head before it
// is sent: the back end's, or the gateway's own error answer. EditResponse
// runs on the goroutine of the exchange, after Apply let it through (or
// after any policy of the chain refused it), with the request still valid.
type ResponseEditor interface {
	EditResponse(ex *Exchange, status int, h *h1.Header)
}

// ResponseObserver is a policy that sees the response head before any
// ResponseEditor changes it: the back end's fields as it sent them (hop by
// hop fields removed), or the gateway's own error answer. It must not
// change h.
type ResponseObserver interface {
	ObserveResponse(ex *Exchange, status int, h *h1.Header)
}

// Finisher is a policy told that the exchange it let through was
// forwarded: err is nil when the whole response reached the client (the
// instance calls Chain.Finish after forwarding, on the exchange's
// goroutine, with the request still valid). An exchange that a policy
// refused or answered is never finished.
type Finisher interface {
	Finish(ex *Exchange, err error)
}

// EditResponse runs the chain's ResponseObservers, then its
// ResponseEditors, in order.
func (c Chain) EditResponse(ex *Exchange, status int, h *h1.Header) {
	for _, p := range c {
		if ro, ok := p.(ResponseObserver); ok {
			ro.ObserveResponse(ex, status, h)
		}
	}
	for _, p := range c {
		if re, ok := p.(ResponseEditor); ok {
			re.EditResponse(ex, status, h)
		}
	}
}

// Finish runs the chain's Finishers in order.
func (c Chain) Finish(ex *Exchange, err error) {
	for _, p := range c {
		if f, ok := p.(Finisher); ok {
			f.Finish(ex, err)
		}
	}
}

// Chain is an ordered list of policies. The zero value is the empty chain.
// A Chain is immutable once built: it belongs to one runtime configuration.
type Chain []Policy

// Apply runs each policy in order and stops at the first error, which it
// returns: a *Error (its Policy field filled in), ErrHandled, or another error
// wrapped with the policy's name.
func (c Chain) Apply(ex *Exchange) error {
	for _, p := range c {
		err := p.Apply(ex)
		if err == nil {
			continue
		}
		var pe *Error
		switch {
		case errors.Is(err, ErrHandled):
			return err
		case errors.As(err, &pe):
			if pe.Policy == "" {
				pe.Policy = p.Name()
			}
			return pe
		default:
			return fmt.Errorf("policy %s: %w", p.Name(), err)
		}
	}
	return nil
}
