// Package headers is the headers policy: fields removed and set on the
// request before it is forwarded and on the response before it is sent
// (the back end's, and the gateway's own error answers). Removal comes
// first, then setting, which replaces every value the message had. A value
// may hold ${name} variables that earlier policies give (application.id,
// a lookup's AS.PROPERTY); "$$" is a "$". The
// names it may touch are checked by groupconf: never the message's
// framing, its connection or the forwarding fields the gateway sets.
// docs/policies.md#headers.
package headers

import (
	"slices"
	"strings"

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
	set    []field // sorted by name: the same order at every request
}

// field is one field to set: a literal value, or a template of literal
// text and variables given by earlier policies.
type field struct {
	name  string
	lit   string
	parts []groupconf.TemplatePart // nil: lit
}

func compile(e groupconf.HeaderEdits) edits {
	out := edits{remove: slices.Clone(e.Remove)}
	for name, v := range e.Set {
		f := field{name: name, lit: v}
		if parts, err := groupconf.ParseTemplate(v); err == nil && slices.ContainsFunc(parts, func(p groupconf.TemplatePart) bool { return p.Var != "" }) {
			f.parts = parts
		} else if err == nil && len(parts) == 1 {
			f.lit = parts[0].Lit // "$$" written once
		}
		out.set = append(out.set, f)
	}
	slices.SortFunc(out.set, func(a, b field) int { return strings.Compare(a.name, b.name) })
	return out
}

// value is the field's value for ex; ok is false when a variable is not
// set or holds what a field may not (a line break, a control character):
// the field is then removed, never set to something a client put in a
// store row.
func (f field) value(ex *policy.Exchange) (string, bool) {
	if f.parts == nil {
		return f.lit, true
	}
	var b strings.Builder
	for _, p := range f.parts {
		if p.Var == "" {
			b.WriteString(p.Lit)
			continue
		}
		v, ok := ex.Var(p.Var)
		if !ok || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) {
			return "", false
		}
		b.WriteString(v)
	}
	v := strings.TrimSpace(b.String())
	return v, len(v) <= 8<<10
}

func (e edits) apply(ex *policy.Exchange, h *h1.Header) {
	for _, name := range e.remove {
		h.Del(name)
	}
	for _, f := range e.set {
		v, ok := f.value(ex)
		if !ok {
			h.Del(f.name)
			continue
		}
		h.SetString(f.name, v)
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
	p.request.apply(ex, &ex.R.Header)
	return nil
}

// EditResponse edits the response.
func (p *Policy) EditResponse(ex *policy.Exchange, _ int, h *h1.Header) {
	p.response.apply(ex, h)
}
