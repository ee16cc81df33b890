package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// The client's changes: hosts, groups and instances of the topology
// (with --version sent as If-Match), and management users. Each prints one
// line saying what it did (the API's result with --json).

// change sends a change and prints the result with --json; otherwise it
// returns the result and the topology version it wrote (0 for user
// changes) for the verb to print.
func (c *apiClient) change(ctx context.Context, ar apiRequest) (json.RawMessage, int64, bool, error) {
	raw, resp, err := c.send(ctx, ar)
	if err != nil {
		return nil, 0, false, err
	}
	if c.o.json {
		return raw, 0, true, c.printJSON(raw)
	}
	return raw, versionOf(resp), false, nil
}

func versionNote(v int64) string {
	if v == 0 {
		return ""
	}
	return fmt.Sprintf(" (topology version %d)", v)
}

func (c *apiClient) hostCreate(ctx context.Context, name string) error {
	raw, v, done, err := c.change(ctx, apiRequest{Method: http.MethodPost, Path: "/topology/hosts", JSON: map[string]string{"name": name}, Version: c.o.version})
	if err != nil || done {
		return err
	}
	var h struct{ ID, Name string }
	if err := json.Unmarshal(raw, &h); err != nil {
		return fmt.Errorf("host create answer: %w", err)
	}
	fmt.Fprintf(c.env.Stdout, "created host %s (%s)%s\n", h.ID, h.Name, versionNote(v))
	return nil
}

func (c *apiClient) hostRename(ctx context.Context, id, name string) error {
	raw, v, done, err := c.change(ctx, apiRequest{Method: http.MethodPut, Path: "/topology/hosts/" + url.PathEscape(id), JSON: map[string]string{"name": name}, Version: c.o.version})
	if err != nil || done {
		return err
	}
	var h struct{ ID, Name string }
	if err := json.Unmarshal(raw, &h); err != nil {
		return fmt.Errorf("host rename answer: %w", err)
	}
	fmt.Fprintf(c.env.Stdout, "renamed host %s to %s%s\n", h.ID, h.Name, versionNote(v))
	return nil
}

func (c *apiClient) groupCreate(ctx context.Context, name string) error {
	raw, v, done, err := c.change(ctx, apiRequest{Method: http.MethodPost, Path: "/topology/groups", JSON: map[string]string{"name": name}, Version: c.o.version})
	if err != nil || done {
		return err
	}
	var g struct{ ID, Name string }
	if err := json.Unmarshal(raw, &g); err != nil {
		return fmt.Errorf("group create answer: %w", err)
	}
	fmt.Fprintf(c.env.Stdout, "created group %s (%s)%s\n", g.ID, g.Name, versionNote(v))
	return nil
}

// instanceBody is the body of POST /api/topology/services/{groupID}.
type instanceBody struct {
	Name           string `json:"name"`
	HostID         string `json:"hostID,omitempty"`
	TrafficPort    int    `json:"trafficPort,omitempty"`
	ManagementPort int    `json:"managementPort,omitempty"`
}

func (c *apiClient) instanceCreate(ctx context.Context, group, name string) error {
	body := instanceBody{Name: name, HostID: c.o.host, TrafficPort: c.o.trafficPort, ManagementPort: c.o.managementPort}
	raw, v, done, err := c.change(ctx, apiRequest{Method: http.MethodPost, Path: "/topology/services/" + url.PathEscape(group), JSON: body, Version: c.o.version})
	if err != nil || done {
		return err
	}
	var s clientService
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("instance create answer: %w", err)
	}
	fmt.Fprintf(c.env.Stdout, "created instance %s (%s) in %s on %s, traffic port %d, management port %d: %s%s\n",
		s.ID, s.Name, group, s.HostID, s.TrafficPort, s.ManagementPort, s.Status, versionNote(v))
	return nil
}

// topologyDelete deletes a host, group or instance (what) at path.
func (c *apiClient) topologyDelete(ctx context.Context, what, path, id string) error {
	_, v, done, err := c.change(ctx, apiRequest{Method: http.MethodDelete, Path: path, Version: c.o.version})
	if err != nil || done {
		return err
	}
	fmt.Fprintf(c.env.Stdout, "deleted %s %s%s\n", what, id, versionNote(v))
	return nil
}

// userChange is the body of POST /api/rbac/users and PUT
// /api/rbac/users/{name}. Password is the clear text the API wants (over
// TLS); it is never printed.
type userChange struct {
	Name     string   `json:"name,omitempty"`
	Password *string  `json:"password,omitempty"`
	Roles    []string `json:"roles,omitempty"`
}

type userResult struct {
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
}

func (c *apiClient) userCreate(ctx context.Context, name string) error {
	pw, err := readNewPassword(c.env, c.o, name)
	if err != nil {
		return err
	}
	defer pw.Wipe()
	p := pw.RevealString()
	raw, _, done, err := c.change(ctx, apiRequest{Method: http.MethodPost, Path: "/rbac/users", JSON: userChange{Name: name, Password: &p, Roles: c.o.roles}})
	if err != nil || done {
		return err
	}
	var u userResult
	if err := json.Unmarshal(raw, &u); err != nil {
		return fmt.Errorf("user create answer: %w", err)
	}
	fmt.Fprintf(c.env.Stdout, "created user %s with the roles: %s\n", u.Name, strings.Join(u.Roles, ", "))
	return nil
}

func (c *apiClient) userUpdate(ctx context.Context, name string) error {
	body := userChange{Roles: c.o.roles}
	if c.o.newPasswordFile != "" || c.o.newPassword {
		pw, err := readNewPassword(c.env, c.o, name)
		if err != nil {
			return err
		}
		defer pw.Wipe()
		p := pw.RevealString()
		body.Password = &p
	}
	raw, _, done, err := c.change(ctx, apiRequest{Method: http.MethodPut, Path: "/rbac/users/" + url.PathEscape(name), JSON: body})
	if err != nil || done {
		return err
	}
	var u userResult
	if err := json.Unmarshal(raw, &u); err != nil {
		return fmt.Errorf("user update answer: %w", err)
	}
	what := "roles: " + strings.Join(u.Roles, ", ")
	if body.Password != nil {
		what += "; password changed"
	}
	fmt.Fprintf(c.env.Stdout, "changed user %s (%s)\n", u.Name, what)
	return nil
}

func (c *apiClient) userDelete(ctx context.Context, name string) error {
	_, _, done, err := c.change(ctx, apiRequest{Method: http.MethodDelete, Path: "/rbac/users/" + url.PathEscape(name)})
	if err != nil || done {
		return err
	}
	fmt.Fprintf(c.env.Stdout, "deleted user %s\n", name)
	return nil
}
