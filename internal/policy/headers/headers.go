// Package headers is the headers policy: fields removed and set on the
// request before it is forwarded and on the response before it is sent
// (the back end's, and the gateway's own error answers). Removal comes
// first, then setting, which replaces every value the message had. The
// names it may touch are checked by groupconf: never the message's
// framing, its connection or the forwarding fields the gateway sets.
// docs/policies.md#headers.
package headers

import (
	"slices"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/h1"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
)

// Policy is one headers policy. It is immutable and safe for concurrent
// use.
type Policy struct {
	request, response edits
}

type edits struct {
	remove []string
	set    [][2]string // sorted by name: the same order at every request
}

func compile(e groupconf.HeaderEdits) edits {
	out := edits{remove: slices.Clone(e.Remove)}
	for name, v := range e.Set {
		out.set = append(out.set, [2]string{name, v})
	}
	slices.SortFunc(out.set, func(a, b [2]string) int {
		if a[0] < b[0] {
			return -1
		}
		if a[0] > b[0] {
			return 1
		}
		return 0
	})
	return out
}

func (e edits) apply(h *h1.Header) {
	for _, name := range e.remove {
		h.Del(name)
	}
	for _, f := range e.set {
		h.SetString(f[0], f[1])
	}
}

// New builds the policy of spec (validated by groupconf).
func New(spec groupconf.HeadersPolicy) *Policy {
	return &Policy{request: compile(spec.Request), response: compile(spec.Response)}
}

// Name is "headers".
func (p *Policy) Name() string { return "headers" }

// Apply edits the request.
func (p *Policy) Apply(ex *policy.Exchange) error {
	p.request.apply(&ex.R.Header)
	return nil
}

// EditResponse edits the response.
func (p *Policy) EditResponse(_ *policy.Exchange, _ int, h *h1.Header) {
	p.response.apply(h)
}
