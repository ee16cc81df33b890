package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
)

// Names or ids: wherever the client names a group, an instance or a host
// (the GROUP, INSTANCE and HOST arguments, --host, deploy's -g), an id is
// taken as it is and anything else as a name, looked up in GET
// /api/topology. A name that several have is refused, listing their ids; a
// name nobody has lists what exists.

// clientTopology is the part of GET /api/topology the names are looked up in.
type clientTopology struct {
	Hosts  []clientNamed `json:"hosts"`
	Groups []struct {
		clientNamed
		Services []clientNamed `json:"services"`
	} `json:"groups"`
}

type clientNamed struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// idPatterns are the forms of the ids, by kind: an argument of that form
// is used as it is when the topology cannot be read (a user without
// topology.read may still give ids).
var idPatterns = map[string]*regexp.Regexp{
	"group":    regexp.MustCompile(`^group-[0-9]+$`),
	"instance": regexp.MustCompile(`^(instance|nodemanager)-[0-9]+$`),
	"host":     regexp.MustCompile(`^host-[0-9]+$`),
}

// topologyNames reads GET /api/topology; nil without an error when the
// user may not read it.
func (c *apiClient) topologyNames(ctx context.Context) (*clientTopology, error) {
	raw, _, err := c.do(ctx, http.MethodGet, "/topology", nil)
	if err != nil {
		if ae, ok := asAPIError(err); ok && ae.Status == http.StatusForbidden {
			return nil, nil
		}
		return nil, err
	}
	var t clientTopology
	if err := json.Unmarshal(raw, &t); err != nil {
		return nil, fmt.Errorf("topology answer: %w", err)
	}
	return &t, nil
}

// pickID is the id of arg among items: the item whose id it is, else the
// one whose name it is. where says where they were looked for ("" or
// ` in group "G"`).
func pickID(kind, arg, where string, items []clientNamed) (string, error) {
	var byName, all []string
	for _, it := range items {
		if it.ID == arg {
			return it.ID, nil
		}
		if it.Name == arg {
			byName = append(byName, it.ID)
		}
		all = append(all, fmt.Sprintf("%s (%s)", it.ID, it.Name))
	}
	switch len(byName) {
	case 1:
		return byName[0], nil
	case 0:
		if p := idPatterns[kind]; p != nil && p.MatchString(arg) {
			return arg, nil // an id the topology does not have: the server says so (404)
		}
		if len(all) == 0 {
			return "", fmt.Errorf("no %s with the id or name %q%s: there is none", kind, arg, where)
		}
		return "", fmt.Errorf("no %s with the id or name %q%s; the %ss are: %s", kind, arg, where, kind, strings.Join(all, ", "))
	default:
		return "", fmt.Errorf("the %s name %q is ambiguous%s: %s have it; give the id", kind, arg, where, strings.Join(byName, ", "))
	}
}

// resolveArgs turns the GROUP, INSTANCE and HOST arguments of verb, and
// --host, into ids.
func (c *apiClient) resolveArgs(ctx context.Context, verb *clientVerb, args []string) ([]string, error) {
	need := c.o.host != ""
	kinds := make([]string, len(verb.args)) // an optional "[GROUP]" is resolved when given
	for i, a := range verb.args {
		kinds[i] = strings.Trim(a, "[]")
		if i < len(args) {
			need = need || kinds[i] == "GROUP" || kinds[i] == "INSTANCE" || kinds[i] == "HOST"
		}
	}
	if !need {
		return args, nil
	}
	t, err := c.topologyNames(ctx)
	if err != nil {
		return nil, err
	}
	out := append([]string(nil), args...)
	group := -1 // the index of the group in t, once resolved
	for i, a := range kinds[:min(len(kinds), len(args))] {
		var id string
		var err error
		switch a {
		case "GROUP":
			if t == nil {
				id, err = idOnly("group", args[i])
				break
			}
			var gs []clientNamed
			for _, g := range t.Groups {
				gs = append(gs, g.clientNamed)
			}
			if id, err = pickID("group", args[i], "", gs); err == nil {
				for j := range t.Groups {
					if t.Groups[j].ID == id {
						group = j
					}
				}
			}
		case "INSTANCE":
			if t == nil || group < 0 {
				id, err = idOnly("instance", args[i])
				break
			}
			g := t.Groups[group]
			id, err = pickID("instance", args[i], fmt.Sprintf(" in group %s (%s)", g.ID, g.Name), g.Services)
		case "HOST":
			if t == nil {
				id, err = idOnly("host", args[i])
				break
			}
			id, err = pickID("host", args[i], "", t.Hosts)
		default:
			continue
		}
		if err != nil {
			return nil, err
		}
		out[i] = id
	}
	if c.o.host != "" {
		if t == nil {
			_, err = idOnly("host", c.o.host)
		} else {
			c.o.host, err = pickID("host", c.o.host, "", t.Hosts)
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// idOnly is arg when it is an id of kind: without the topology (a user
// who may not read it) names cannot be looked up.
func idOnly(kind, arg string) (string, error) {
	if idPatterns[kind].MatchString(arg) {
		return arg, nil
	}
	return "", fmt.Errorf("the %s %q is not an id, and this user may not read the topology to find it by name; give the %s id", kind, arg, kind)
}

// resolveGroup turns -g into a group id: a group id as it is, else the one
// group of that name. A user who may not read the topology can still give
// a group id.
func (c *apiClient) resolveGroup(ctx context.Context, arg string) (string, error) {
	t, err := c.topologyNames(ctx)
	if err != nil {
		return "", err
	}
	if t == nil {
		return idOnly("group", arg)
	}
	var gs []clientNamed
	for _, g := range t.Groups {
		gs = append(gs, g.clientNamed)
	}
	return pickID("group", arg, "", gs)
}

// hostID is the id of the host arg names (its name or id).
func (c *apiClient) hostID(ctx context.Context, arg string) (string, error) {
	t, err := c.topologyNames(ctx)
	if err != nil {
		return "", err
	}
	if t == nil {
		return idOnly("host", arg)
	}
	return pickID("host", arg, "", t.Hosts)
}
