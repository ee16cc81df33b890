// Package lookup is the lookup policy: it finds a row of a custom table of
// the group's Key Property Store by a key taken from the request (a field,
// a query parameter, a path segment) or from the client application, and
// gives its properties to the later policies as ${as.property}
// (docs/policies.md#lookup). Rows come through the instance's cache
// (kps.cache.ttl). A store that cannot answer is 503 (fail closed).
package lookup

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/policy"
)

// Rows is what the policy reads rows from (a *kps.Cache).
type Rows interface {
	Get(ctx context.Context, table string, key any) (kps.Row, error)
	GetBySecondary(ctx context.Context, table string, key any) (kps.Row, error)
}

// Policy is one lookup policy. It is immutable and safe for concurrent
// use.
type Policy struct {
	spec      groupconf.LookupPolicy
	key       groupconf.LookupKey
	keyType   kps.Type
	secondary bool
	status    int
	rows      Rows
}

// New makes the policy of spec (validated by groupconf) reading table
// (its definition) through rows.
func New(spec groupconf.LookupPolicy, table kps.Table, rows Rows) (*Policy, error) {
	key, err := groupconf.ParseLookupKey(spec.Key)
	if err != nil {
		return nil, err
	}
	p := &Policy{spec: spec, key: key, secondary: spec.By == "secondary", status: spec.NotFoundStatus, rows: rows}
	if p.status == 0 {
		p.status = http.StatusForbidden
	}
	keyProp := table.PrimaryKey
	if p.secondary {
		keyProp = table.SecondaryKey
	}
	prop, ok := table.Property(keyProp)
	if !ok {
		return nil, errors.New("lookup: table " + table.Alias + " has no key property " + keyProp)
	}
	p.keyType = prop.Type
	return p, nil
}

// Name is "lookup".
func (p *Policy) Name() string { return "lookup" }

// keyValue is the request's key, and whether it has one.
func (p *Policy) keyValue(ex *policy.Exchange) (string, bool) {
	switch p.key.From {
	case "application":
		return ex.Application, ex.Application != ""
	case "header":
		v := ex.R.Header.Get(p.key.Name)
		return string(v), v != nil
	case "param":
		v, ok := ex.Params.Get(p.key.Name)
		return v, ok
	default: // query
		for _, part := range strings.Split(string(ex.R.Query), "&") {
			k, v, _ := strings.Cut(part, "=")
			if uk, err := url.QueryUnescape(k); err == nil && uk == p.key.Name {
				uv, err := url.QueryUnescape(v)
				return uv, err == nil
			}
		}
		return "", false
	}
}

// Apply finds the row.
func (p *Policy) Apply(ex *policy.Exchange) error {
	raw, ok := p.keyValue(ex)
	var key any = raw
	if ok && p.keyType != kps.String {
		n, err := strconv.ParseInt(raw, 10, 64)
		ok = err == nil
		key = n
	}
	if !ok || raw == "" {
		return p.notFound("no key for the lookup")
	}
	var row kps.Row
	var err error
	if p.secondary {
		row, err = p.rows.GetBySecondary(context.Background(), p.spec.Table, key)
	} else {
		row, err = p.rows.Get(context.Background(), p.spec.Table, key)
	}
	switch {
	case errors.Is(err, kps.ErrNotFound), errors.Is(err, kps.ErrInvalid):
		return p.notFound("no row for the key")
	case err != nil:
		return &policy.Error{Status: http.StatusServiceUnavailable, Message: "a look-up cannot be made now; try again later", Err: err, Fields: [][2]string{{"Retry-After", "1"}}}
	}
	names := make([]string, 0, len(row.Values))
	for n := range row.Values {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		ex.SetVar(p.spec.As+"."+n, Format(row.Values[n]))
	}
	return nil
}

func (p *Policy) notFound(why string) error {
	if !p.spec.Required {
		return nil
	}
	msg := "access denied"
	if p.status == http.StatusNotFound {
		msg = "not found"
	}
	return &policy.Error{Status: p.status, Message: msg, Err: errors.New(why)}
}

// Format is a property's value as a variable's text: lists joined with
// ", ", maps as k=v pairs sorted by key and joined with ", ".
func Format(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case int32:
		return strconv.FormatInt(int64(x), 10)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case []string:
		return strings.Join(x, ", ")
	case map[string]string:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, k+"="+x[k])
		}
		return strings.Join(parts, ", ")
	}
	return ""
}
