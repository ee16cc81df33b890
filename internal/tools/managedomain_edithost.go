package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/domain"
)

// Menu 2, "Edit a host" (docs/managedomain.md): the name, the node
// manager's port and metrics through the Admin Node Manager's API (PUT
// /api/topology/hosts/{hostID}, one audited topology change), and the
// Linux service of this host's node manager (local files, as
// --add_nm_service). Everything is checked before anything is done.
func mdEditHost(ctx context.Context, s *mdSession, v mdValues) error {
	port, err := v.port("nm_port")
	if err != nil {
		return err
	}
	body := map[string]any{}
	if nn := v["new_name"]; nn != "" {
		body["name"] = nn
	}
	if port != 0 {
		body["nodeManagerPort"] = port
	}
	switch m := strings.ToLower(strings.TrimSpace(v["metrics"])); m {
	case "":
	case "on", "true", "yes":
		body["metrics"] = true
	case "off", "false", "no":
		body["metrics"] = false
	default:
		return usagef(mdName, "--metrics %q: want on or off", v["metrics"])
	}
	svc := strings.ToLower(strings.TrimSpace(v["service"]))
	switch svc {
	case "", "add", "remove":
	default:
		return usagef(mdName, "--service %q: want add or remove", v["service"])
	}
	if len(body) == 0 && svc == "" {
		return usagef(mdName, "edit_host wants --new_name, --nm_port, --metrics or --service")
	}
	if svc != "" {
		if err := s.checkLocalHost(v["host"], svc); err != nil {
			return err
		}
	}
	if len(body) > 0 {
		if v["username"] == "" {
			return usagef(mdName, "edit_host needs --username U for --new_name, --nm_port and --metrics (they go through the Admin Node Manager's API)")
		}
		c, wipe, err := s.anmAPIClient(v, deployOpts{})
		if err != nil {
			return err
		}
		defer wipe()
		id, err := c.hostID(ctx, v["host"])
		if err != nil {
			return err
		}
		if err := c.hostEdit(ctx, id, body); err != nil {
			return err
		}
	}
	switch svc {
	case "add":
		return mdAddNMService(ctx, s, v)
	case "remove":
		return mdRemoveNMService(ctx, s, v)
	}
	return nil
}

// checkLocalHost refuses a service change for a host other than this one:
// a service is written into the /etc of the host it runs on.
func (s *mdSession) checkLocalHost(arg, svc string) error {
	local, err := domain.LocalHost(s.home)
	if err != nil {
		return err
	}
	t, err := s.topology()
	if err != nil {
		return err
	}
	id := ""
	var names []string
	for _, h := range t.Hosts {
		names = append(names, fmt.Sprintf("%q (%s)", h.Name, h.ID))
		if h.ID == arg || h.Name == arg {
			id = h.ID
		}
	}
	if id == "" {
		return fmt.Errorf("no host %q; registered: %s", arg, strings.Join(names, ", "))
	}
	if id != local {
		return fmt.Errorf("--service %s: host %q is not this host (%s): the service of a node manager is written into the /etc of its own host; "+
			"run managedomain --edit_host --host %s --service %s (or --%s_nm_service) on that host; nothing was changed", svc, arg, local, shellWord(arg), svc, svc)
	}
	return nil
}

// hostEditAnswer is the answer of PUT /api/topology/hosts/{hostID}.
type hostEditAnswer struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	NodeManager *struct {
		ID      string `json:"id"`
		Port    int    `json:"port"`
		Address string `json:"address"`
		Metrics bool   `json:"metrics"`
	} `json:"nodeManager"`
	ManagementAPI string `json:"managementAPI"`
}

// hostEdit sends the changes of body (name, nodeManagerPort, metrics) for
// host id and prints what they did.
func (c *apiClient) hostEdit(ctx context.Context, id string, body map[string]any) error {
	raw, v, done, err := c.change(ctx, apiRequest{Method: http.MethodPut, Path: "/topology/hosts/" + url.PathEscape(id), JSON: body, Version: c.o.version})
	if err != nil || done {
		return err
	}
	var a hostEditAnswer
	if err := json.Unmarshal(raw, &a); err != nil {
		return fmt.Errorf("host edit answer: %w", err)
	}
	out := c.env.Stdout
	if _, ok := body["name"]; ok {
		fmt.Fprintf(out, "renamed host %s to %s%s\n", a.ID, a.Name, versionNote(v))
	}
	if nm := a.NodeManager; nm != nil {
		if _, ok := body["nodeManagerPort"]; ok {
			fmt.Fprintf(out, "node manager %s of host %s now listens on port %d (the other node managers reach it at %s)%s\n", nm.ID, a.ID, nm.Port, nm.Address, versionNote(v))
		}
		if _, ok := body["metrics"]; ok {
			state := "off (GET /metrics answers 404)"
			if nm.Metrics {
				state = fmt.Sprintf("on: GET https://%s/metrics", nm.Address)
			}
			fmt.Fprintf(out, "metrics of node manager %s of host %s: %s%s\n", nm.ID, a.ID, state, versionNote(v))
		}
	}
	if a.ManagementAPI != "" {
		fmt.Fprintf(out, "The Admin Node Manager's management API has moved: it is now at %s (clients, scripts and bookmarks naming the old port must change; this host's nodemanager.yaml and the other hosts' anmPort follow)\n", a.ManagementAPI)
	}
	return nil
}
