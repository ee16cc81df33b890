// Package topology is the domain model: hosts, groups and services (node
// managers and gateway instances), with ids from counters that are never
// reused, and a versioned store in groups/topology.json.
//
// Every change goes through Store.Update, which knows who made it (an Actor),
// takes the topology lock, applies the change to a copy, validates it, bumps
// the version, writes the file atomically and reports the change to a
// Recorder (the audit log plugs in there).
package topology

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// SchemaVersion is the version of the topology file format written by this
// build. Files with a higher schema version are refused.
const SchemaVersion = 1

// Service types.
const (
	TypeGateway     = "gateway"
	TypeNodeManager = "nodemanager"
)

// NodeManagerGroupName is the group holding the node managers.
const NodeManagerGroupName = "Node Manager Group"

// TagAdminNM marks an Admin Node Manager service.
const TagAdminNM = "internal_admin_nm"

// TagMetrics ("true") on a node manager service: it serves Prometheus
// metrics of itself and its instances at GET /metrics on its management
// port (managedomain --edit_host --metrics on; docs/nodemanager.md).
// Absent: off.
const TagMetrics = "internal_metrics"

// Id kinds, the prefixes of ids.
const (
	KindHost        = "host"
	KindGroup       = "group"
	KindInstance    = "instance"
	KindNodeManager = "nodemanager"
)

// Topology is the domain. Its JSON shape follows the vendor's management API.
type Topology struct {
	SchemaVersion int            `json:"schemaVersion"`
	ID            string         `json:"id"`
	Version       int64          `json:"version"`
	Timestamp     int64          `json:"timestamp"` // ms since the epoch of the last change
	DomainName    string         `json:"domainName"`
	Counters      map[string]int `json:"counters"`
	Hosts         []Host         `json:"hosts"`
	Groups        []Group        `json:"groups"`
}

// Host is a machine (an install directory) in the domain.
type Host struct {
	ID   string            `json:"id"`
	Name string            `json:"name"`
	Tags map[string]string `json:"tags,omitempty"`
}

// Group is a set of services sharing one configuration.
type Group struct {
	ID       string            `json:"id"`
	Name     string            `json:"name"`
	Tags     map[string]string `json:"tags,omitempty"`
	Services []Service         `json:"services"`
}

// Service is a node manager or a gateway instance.
type Service struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`
	Type           string            `json:"type"`
	HostID         string            `json:"hostID"`
	ManagementPort int               `json:"managementPort"`
	TrafficPort    int               `json:"trafficPort,omitempty"`
	Scheme         string            `json:"scheme"`
	Enabled        bool              `json:"enabled"`
	Tags           map[string]string `json:"tags,omitempty"`
}

// Errors returned by lookups and changes.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrInvalid  = errors.New("invalid")
	ErrConflict = errors.New("topology changed")
)

// NotFoundError names what was looked for and what exists.
type NotFoundError struct {
	Kind      string   // "group", "instance", "host", "service"
	Name      string   // what was asked for
	Scope     string   // e.g. `in group "QuickStart Group"`
	Available []string // names that exist
}

func (e *NotFoundError) Error() string {
	msg := fmt.Sprintf("no %s %q", e.Kind, e.Name)
	if e.Scope != "" {
		msg += " " + e.Scope
	}
	if len(e.Available) == 0 {
		return msg + " (there are none)"
	}
	q := make([]string, len(e.Available))
	for i, a := range e.Available {
		q[i] = strconv.Quote(a)
	}
	return msg + "; registered: " + strings.Join(q, ", ")
}

func (e *NotFoundError) Unwrap() error { return ErrNotFound }

// NextID allocates the next id of kind ("host-3"). Counters only grow, so an
// id is never reused, even after a delete.
func (t *Topology) NextID(kind string) string {
	if t.Counters == nil {
		t.Counters = map[string]int{}
	}
	t.Counters[kind]++
	return kind + "-" + strconv.Itoa(t.Counters[kind])
}

// Clone returns a deep copy.
func (t *Topology) Clone() *Topology {
	c := *t
	c.Counters = make(map[string]int, len(t.Counters))
	for k, v := range t.Counters {
		c.Counters[k] = v
	}
	c.Hosts = make([]Host, len(t.Hosts))
	for i, h := range t.Hosts {
		h.Tags = cloneTags(h.Tags)
		c.Hosts[i] = h
	}
	c.Groups = make([]Group, len(t.Groups))
	for i, g := range t.Groups {
		g.Tags = cloneTags(g.Tags)
		svcs := make([]Service, len(g.Services))
		for j, s := range g.Services {
			s.Tags = cloneTags(s.Tags)
			svcs[j] = s
		}
		g.Services = svcs
		c.Groups[i] = g
	}
	return &c
}

func cloneTags(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// Host returns the host with id.
func (t *Topology) Host(id string) (*Host, error) {
	for i := range t.Hosts {
		if t.Hosts[i].ID == id {
			return &t.Hosts[i], nil
		}
	}
	return nil, &NotFoundError{Kind: "host", Name: id, Available: t.hostIDs()}
}

// HostNameFree is nil when no host but exceptID is called name, else an
// error wrapping ErrExists that names the host.
func (t *Topology) HostNameFree(name, exceptID string) error {
	for _, h := range t.Hosts {
		if h.Name == name && h.ID != exceptID {
			return fmt.Errorf("host name %q (%s) %w", name, h.ID, ErrExists)
		}
	}
	return nil
}

func (t *Topology) hostIDs() []string {
	var ids []string
	for _, h := range t.Hosts {
		ids = append(ids, h.ID)
	}
	return ids
}

// Group returns the group with id.
func (t *Topology) Group(id string) (*Group, error) {
	for i := range t.Groups {
		if t.Groups[i].ID == id {
			return &t.Groups[i], nil
		}
	}
	var ids []string
	for _, g := range t.Groups {
		ids = append(ids, g.ID)
	}
	return nil, &NotFoundError{Kind: "group", Name: id, Available: ids}
}

// GroupByName returns the group called name (names are unique). The Node
// Manager Group is found too.
func (t *Topology) GroupByName(name string) (*Group, error) {
	for i := range t.Groups {
		if t.Groups[i].Name == name {
			return &t.Groups[i], nil
		}
	}
	return nil, &NotFoundError{Kind: "group", Name: name, Available: t.GatewayGroupNames()}
}

// GatewayGroupNames lists the names of the groups other than the Node Manager
// Group.
func (t *Topology) GatewayGroupNames() []string {
	var names []string
	for _, g := range t.Groups {
		if !g.IsNodeManagerGroup() {
			names = append(names, g.Name)
		}
	}
	return names
}

// IsNodeManagerGroup reports whether g holds node managers.
func (g *Group) IsNodeManagerGroup() bool {
	for _, s := range g.Services {
		if s.Type == TypeNodeManager {
			return true
		}
	}
	return g.Name == NodeManagerGroupName
}

// Service returns the service with id.
func (g *Group) Service(id string) (*Service, error) {
	for i := range g.Services {
		if g.Services[i].ID == id {
			return &g.Services[i], nil
		}
	}
	return nil, &NotFoundError{Kind: "service", Name: id, Scope: fmt.Sprintf("in group %q", g.Name), Available: g.serviceIDs()}
}

func (g *Group) serviceIDs() []string {
	var ids []string
	for _, s := range g.Services {
		ids = append(ids, s.ID)
	}
	return ids
}

// FindGroup returns the group that arg names: its name, or its id (the
// tools take either, #15). A value that is the name of one group and the id
// of another is refused as ambiguous.
func (t *Topology) FindGroup(arg string) (*Group, error) {
	byName, nameErr := t.GroupByName(arg)
	byID, idErr := t.Group(arg)
	switch {
	case nameErr == nil && idErr == nil && byName.ID != byID.ID:
		return nil, fmt.Errorf("%q is the name of group %s and the id of group %q: give the other's name or id: %w", arg, byName.ID, byID.Name, ErrInvalid)
	case nameErr == nil:
		return byName, nil
	case idErr == nil:
		return byID, nil
	}
	return nil, nameErr
}

// FindInstance returns the gateway instance of g that arg names: its name,
// or its id; ambiguous as FindGroup.
func (g *Group) FindInstance(arg string) (*Service, error) {
	byName, nameErr := g.InstanceByName(arg)
	var byID *Service
	for i := range g.Services {
		if s := &g.Services[i]; s.Type == TypeGateway && s.ID == arg {
			byID = s
		}
	}
	switch {
	case nameErr == nil && byID != nil && byName.ID != byID.ID:
		return nil, fmt.Errorf("%q is the name of instance %s and the id of instance %q in group %q: give the other's name or id: %w", arg, byName.ID, byID.Name, g.Name, ErrInvalid)
	case nameErr == nil:
		return byName, nil
	case byID != nil:
		return byID, nil
	}
	return nil, nameErr
}

// InstanceByName returns the gateway instance called name in g.
func (g *Group) InstanceByName(name string) (*Service, error) {
	var names []string
	for i := range g.Services {
		s := &g.Services[i]
		if s.Type != TypeGateway {
			continue
		}
		if s.Name == name {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return nil, &NotFoundError{Kind: "instance", Name: name, Scope: fmt.Sprintf("in group %q", g.Name), Available: names}
}

// InstanceRef is a gateway instance with its group.
type InstanceRef struct {
	Group   *Group
	Service *Service
}

// Instances lists the gateway instances of the domain, on hostID only when
// hostID is not empty, in topology order.
func (t *Topology) Instances(hostID string) []InstanceRef {
	var out []InstanceRef
	for gi := range t.Groups {
		g := &t.Groups[gi]
		for si := range g.Services {
			s := &g.Services[si]
			if s.Type == TypeGateway && (hostID == "" || s.HostID == hostID) {
				out = append(out, InstanceRef{Group: g, Service: s})
			}
		}
	}
	return out
}

// FindInstance returns the instance called name in the group called group.
func (t *Topology) FindInstance(group, name string) (InstanceRef, error) {
	g, err := t.FindGroup(group)
	if err != nil {
		return InstanceRef{}, err
	}
	s, err := g.FindInstance(name)
	if err != nil {
		return InstanceRef{}, err
	}
	return InstanceRef{Group: g, Service: s}, nil
}

// FindInstanceID returns the instance with id.
func (t *Topology) FindInstanceID(id string) (InstanceRef, error) {
	var ids []string
	for _, r := range t.Instances("") {
		if r.Service.ID == id {
			return r, nil
		}
		ids = append(ids, r.Service.ID)
	}
	return InstanceRef{}, &NotFoundError{Kind: "instance", Name: id, Available: ids}
}

// AdminNodeManager returns the first Admin Node Manager service.
func (t *Topology) AdminNodeManager() (*Service, error) {
	for gi := range t.Groups {
		for si := range t.Groups[gi].Services {
			s := &t.Groups[gi].Services[si]
			if s.Type == TypeNodeManager && s.Tags[TagAdminNM] == "true" {
				return s, nil
			}
		}
	}
	return nil, &NotFoundError{Kind: "service", Name: "admin node manager"}
}

// AddGroup creates a gateway group called name.
func (t *Topology) AddGroup(name string) (*Group, error) {
	if err := ValidateName("group", name); err != nil {
		return nil, err
	}
	if _, err := t.GroupByName(name); err == nil {
		return nil, fmt.Errorf("group %q %w", name, ErrExists)
	}
	t.Groups = append(t.Groups, Group{ID: t.NextID(KindGroup), Name: name, Services: []Service{}})
	return &t.Groups[len(t.Groups)-1], nil
}

// AddService adds s to the group with groupID, allocating its id from the
// counter of its type.
func (t *Topology) AddService(groupID string, s Service) (*Service, error) {
	g, err := t.Group(groupID)
	if err != nil {
		return nil, err
	}
	if err := ValidateName("service", s.Name); err != nil {
		return nil, err
	}
	if _, err := t.Host(s.HostID); err != nil {
		return nil, err
	}
	for _, o := range g.Services {
		if o.Name == s.Name {
			return nil, fmt.Errorf("%s %q in group %q %w", s.Type, s.Name, g.Name, ErrExists)
		}
	}
	switch s.Type {
	case TypeGateway:
		s.ID = t.NextID(KindInstance)
	case TypeNodeManager:
		s.ID = t.NextID(KindNodeManager)
	default:
		return nil, fmt.Errorf("service type %q: %w (want %q or %q)", s.Type, ErrInvalid, TypeGateway, TypeNodeManager)
	}
	g.Services = append(g.Services, s)
	return &g.Services[len(g.Services)-1], nil
}

// RemoveService deletes the service with id from the group with groupID.
func (t *Topology) RemoveService(groupID, id string) error {
	g, err := t.Group(groupID)
	if err != nil {
		return err
	}
	if _, err := g.Service(id); err != nil {
		return err
	}
	g.Services = slices.DeleteFunc(g.Services, func(s Service) bool { return s.ID == id })
	return nil
}

// RenameGroup renames the group with id. Directories are named by id, so
// nothing moves on disk.
func (t *Topology) RenameGroup(id, newName string) error {
	if err := ValidateName("group", newName); err != nil {
		return err
	}
	g, err := t.Group(id)
	if err != nil {
		return err
	}
	if g.IsNodeManagerGroup() {
		return fmt.Errorf("the %q cannot be renamed: %w", g.Name, ErrInvalid)
	}
	if o, err := t.GroupByName(newName); err == nil && o.ID != id {
		return fmt.Errorf("group %q %w", newName, ErrExists)
	}
	g.Name = newName
	return nil
}

// RenameInstance gives gateway instance id of group groupID another name,
// unique in its group.
func (t *Topology) RenameInstance(groupID, id, newName string) error {
	if err := ValidateName("instance", newName); err != nil {
		return err
	}
	g, err := t.Group(groupID)
	if err != nil {
		return err
	}
	s, err := g.FindInstance(id)
	if err != nil {
		return err
	}
	if o, err := g.InstanceByName(newName); err == nil && o.ID != s.ID {
		return fmt.Errorf("instance %q in group %q %w", newName, g.Name, ErrExists)
	}
	s.Name = newName
	return nil
}

// RemoveGroup deletes the group with id and its services.
func (t *Topology) RemoveGroup(id string) error {
	g, err := t.Group(id)
	if err != nil {
		return err
	}
	if g.IsNodeManagerGroup() {
		return fmt.Errorf("the %q cannot be deleted: %w", g.Name, ErrInvalid)
	}
	t.Groups = slices.DeleteFunc(t.Groups, func(g Group) bool { return g.ID == id })
	return nil
}

// ValidateName checks a host, group or service name: 1 to 128 characters of
// printable UTF-8, no leading or trailing space, no quote or path separator.
func ValidateName(kind, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%s name is empty: %w", kind, ErrInvalid)
	case !utf8.ValidString(name):
		return fmt.Errorf("%s name is not valid UTF-8: %w", kind, ErrInvalid)
	case utf8.RuneCountInString(name) > 128:
		return fmt.Errorf("%s name %q is longer than 128 characters: %w", kind, name, ErrInvalid)
	case strings.TrimSpace(name) != name:
		return fmt.Errorf("%s name %q has leading or trailing space: %w", kind, name, ErrInvalid)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) || r == '"' || r == '/' || r == '\\' || r == '`' || r == '$' {
			return fmt.Errorf("%s name %q contains %q, which is not allowed (no control characters, quotes, slashes, backquotes or $): %w", kind, name, r, ErrInvalid)
		}
	}
	return nil
}

// Validate checks the whole topology: ids unique and well-formed, references
// resolve, names unique where they must be, counters ahead of every id.
func (t *Topology) Validate() error {
	if t.SchemaVersion < 1 || t.SchemaVersion > SchemaVersion {
		return fmt.Errorf("topology schema version %d is not supported by this build (supports up to %d): %w", t.SchemaVersion, SchemaVersion, ErrInvalid)
	}
	seen := map[string]bool{}
	checkID := func(kind, id string) error {
		n, ok := strings.CutPrefix(id, kind+"-")
		num, err := strconv.Atoi(n)
		if !ok || err != nil || num < 1 {
			return fmt.Errorf("id %q is not a %s id: %w", id, kind, ErrInvalid)
		}
		if num > t.Counters[kind] {
			return fmt.Errorf("id %q is above the %s counter %d: %w", id, kind, t.Counters[kind], ErrInvalid)
		}
		if seen[id] {
			return fmt.Errorf("id %q appears twice: %w", id, ErrInvalid)
		}
		seen[id] = true
		return nil
	}
	hosts := map[string]bool{}
	for _, h := range t.Hosts {
		if err := checkID(KindHost, h.ID); err != nil {
			return err
		}
		hosts[h.ID] = true
	}
	names := map[string]bool{}
	for _, g := range t.Groups {
		if err := checkID(KindGroup, g.ID); err != nil {
			return err
		}
		if names[g.Name] {
			return fmt.Errorf("group name %q appears twice: %w", g.Name, ErrInvalid)
		}
		names[g.Name] = true
		snames := map[string]bool{}
		for _, s := range g.Services {
			kind := KindInstance
			if s.Type == TypeNodeManager {
				kind = KindNodeManager
			} else if s.Type != TypeGateway {
				return fmt.Errorf("service %q has type %q: %w", s.ID, s.Type, ErrInvalid)
			}
			if err := checkID(kind, s.ID); err != nil {
				return err
			}
			if !hosts[s.HostID] {
				return fmt.Errorf("service %q names unknown host %q: %w", s.ID, s.HostID, ErrInvalid)
			}
			if snames[s.Name] {
				return fmt.Errorf("service name %q appears twice in group %q: %w", s.Name, g.Name, ErrInvalid)
			}
			snames[s.Name] = true
		}
	}
	return nil
}
