package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/cluster"
)

// gatehouse client cluster [GROUP]: each group's cluster bus as its
// instances see it (GET /cluster of each running instance, through the
// router; docs/cluster.md).

func init() {
	clientVerbs = append(clientVerbs, clientVerb{name: "cluster", args: []string{"[GROUP]"},
		api:     "GET /api/topology; GET /api/router/service/{serviceID}/cluster",
		summary: "each group's cluster bus: every running instance's state, its peers up, messages and reconnects",
		help: "GROUP                          one group (its id or name); without it, every group\n" +
			"Exit 1 when a running instance's bus is down, or sees fewer peers up than its\n" +
			"group has other running instances.",
		run: func(ctx context.Context, c *apiClient, a []string) error {
			group := ""
			if len(a) == 1 {
				group = a[0]
			}
			return c.cluster(ctx, group)
		}})
}

func (c *apiClient) cluster(ctx context.Context, group string) error {
	raw, _, err := c.do(ctx, http.MethodGet, "/topology", nil)
	if err != nil {
		return err
	}
	var t struct {
		Groups []struct {
			ID       string          `json:"id"`
			Name     string          `json:"name"`
			Services []clientService `json:"services"`
		} `json:"groups"`
	}
	if err := json.Unmarshal(raw, &t); err != nil {
		return fmt.Errorf("topology answer: %w", err)
	}
	type row struct {
		group, name, id string
		st              *cluster.Status
		err             string
	}
	var rows []row
	var bad []string
	found := group == ""
	all := map[string]any{}
	for _, g := range t.Groups {
		if group != "" && g.ID != group && g.Name != group {
			continue
		}
		found = true
		running := 0
		for _, s := range g.Services {
			if s.Type == "gateway" && s.Status == "running" {
				running++
			}
		}
		for _, s := range g.Services {
			if s.Type != "gateway" {
				continue
			}
			r := row{group: g.Name, name: s.Name, id: s.ID}
			if s.Status != "running" {
				r.err = s.Status
				rows = append(rows, r)
				continue
			}
			body, _, err := c.sendRaw(ctx, apiRequest{Method: http.MethodGet, Path: "/router/service/" + url.PathEscape(s.ID) + "/cluster", Accept: "application/json"})
			if err != nil {
				r.err = err.Error()
				bad = append(bad, fmt.Sprintf("%s (%s): %v", s.Name, s.ID, err))
				rows = append(rows, r)
				continue
			}
			var st cluster.Status
			if err := json.Unmarshal(body, &st); err != nil {
				r.err = "not a cluster status: " + err.Error()
				rows = append(rows, r)
				continue
			}
			all[s.ID] = json.RawMessage(body)
			r.st = &st
			up := 0
			for _, p := range st.Peers {
				if p.State == "up" {
					up++
				}
			}
			switch {
			case st.State == cluster.StateOff: // a group of one, or cluster.enabled false: nothing to see
			case running > 1 && st.State != cluster.StateUp:
				bad = append(bad, fmt.Sprintf("%s (%s): bus %s %s", s.Name, s.ID, st.State, st.Error))
			case up < running-1:
				bad = append(bad, fmt.Sprintf("%s (%s): %d of %d peers up", s.Name, s.ID, up, running-1))
			}
			rows = append(rows, r)
		}
	}
	if !found {
		return fmt.Errorf("no group %q in the domain", group)
	}
	if c.o.json {
		b, _ := json.Marshal(all)
		if err := c.printJSON(b); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(c.env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "GROUP\tINSTANCE\tBUS\tSINCE\tPEERS UP\tMSGS IN/OUT\tRECONNECTS")
		for _, r := range rows {
			if r.st == nil {
				fmt.Fprintf(tw, "%s\t%s (%s)\t-\t\t\t\t%s\n", r.group, r.name, r.id, r.err)
				continue
			}
			var up []string
			for _, p := range r.st.Peers {
				if p.State == "up" {
					up = append(up, p.ID)
				}
			}
			since := ""
			if !r.st.Since.IsZero() {
				since = r.st.Since.Local().Format(time.DateTime)
			}
			fmt.Fprintf(tw, "%s\t%s (%s)\t%s\t%s\t%d/%d %s\t%d/%d\t%d\n", r.group, r.name, r.id, r.st.State, since,
				len(up), len(r.st.Peers), strings.Join(up, ","), r.st.MessagesIn, r.st.MessagesOut, r.st.Reconnects)
		}
		tw.Flush()
	}
	if len(bad) > 0 {
		return &ExitError{Code: 1, Err: fmt.Errorf("%s", strings.Join(bad, "; "))}
	}
	return nil
}
