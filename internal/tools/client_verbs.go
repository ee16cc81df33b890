package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/anm"
)

func (c *apiClient) printJSON(raw json.RawMessage) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		buf.Reset()
		buf.Write(raw)
	}
	buf.WriteByte('\n')
	_, err := c.env.Stdout.Write(buf.Bytes())
	return err
}

func (c *apiClient) login(ctx context.Context) error {
	s, raw, err := c.api.Login(ctx)
	if err != nil {
		return c.explain(err)
	}
	s.CACert = c.o.cacert
	if err := saveSession(c.sessPath, s); err != nil {
		return fmt.Errorf("saving the session: %w", err)
	}
	if c.o.json {
		return c.printJSON(raw)
	}
	fmt.Fprintf(c.env.Stdout, "logged in to %s as %s (session until %s, kept in %s)\n", c.api.Base, s.User, s.Expires, c.sessPath)
	return nil
}

func (c *apiClient) logout(ctx context.Context) error {
	if c.api.Session == nil {
		return fmt.Errorf("not logged in (no session in %s)", c.sessPath)
	}
	_, _, err := c.do(ctx, http.MethodPost, "/rbac/logout", url.Values{})
	if rmErr := os.Remove(c.sessPath); rmErr != nil && !os.IsNotExist(rmErr) {
		return rmErr
	}
	if err != nil {
		if ae, ok := asAPIError(err); ok && ae.Status == http.StatusUnauthorized {
			fmt.Fprintf(c.env.Stdout, "the session had already ended; removed %s\n", c.sessPath)
			return nil
		}
		return err
	}
	fmt.Fprintf(c.env.Stdout, "logged out of %s\n", c.api.Base)
	return nil
}

func asAPIError(err error) (*apiError, bool) {
	for err != nil {
		if ae, ok := err.(*apiError); ok {
			return ae, true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return nil, false
		}
		err = u.Unwrap()
	}
	return nil, false
}

type clientService struct {
	ID             string `json:"id"`
	Name           string `json:"name"`
	Type           string `json:"type"`
	HostID         string `json:"hostID"`
	TrafficPort    int    `json:"trafficPort"`
	ManagementPort int    `json:"managementPort"`
	Status         string `json:"status"`
}

func (c *apiClient) topology(ctx context.Context) error {
	raw, _, err := c.do(ctx, http.MethodGet, "/topology", nil)
	if err != nil {
		return err
	}
	if c.o.json {
		return c.printJSON(raw)
	}
	var t struct {
		ID      string `json:"id"`
		Version int64  `json:"version"`
		Hosts   []struct {
			ID, Name string
		} `json:"hosts"`
		Groups []struct {
			ID         string          `json:"id"`
			Name       string          `json:"name"`
			Services   []clientService `json:"services"`
			Deployment *struct {
				Archive    int  `json:"archive"`
				Consistent bool `json:"consistent"`
			} `json:"deployment"` // gateway groups only
		} `json:"groups"`
	}
	if err := json.Unmarshal(raw, &t); err != nil {
		return fmt.Errorf("topology answer: %w", err)
	}
	hosts := map[string]string{}
	for _, h := range t.Hosts {
		hosts[h.ID] = h.Name
	}
	fmt.Fprintf(c.env.Stdout, "domain %s (topology version %d)\n", t.ID, t.Version)
	tw := tabwriter.NewWriter(c.env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tSERVICE\tNAME\tHOST\tPORTS\tSTATUS\tDEPLOYMENT")
	for _, g := range t.Groups {
		// The group's deployment state (docs/deployment.md): on every row
		// of the group, so that a grep for the group shows it.
		dep := ""
		switch d := g.Deployment; {
		case d == nil:
		case !d.Consistent:
			dep = "INCONSISTENT (gatehouse deployments -g " + g.ID + ")"
		case d.Archive == 0:
			dep = "consistent, group.yaml"
		default:
			dep = fmt.Sprintf("consistent, archive %d", d.Archive)
		}
		if len(g.Services) == 0 {
			fmt.Fprintf(tw, "%s (%s)\t-\t\t\t\t\t%s\n", g.ID, g.Name, dep)
		}
		for _, s := range g.Services {
			host := hosts[s.HostID]
			if host == "" {
				host = s.HostID
			}
			ports := fmt.Sprintf("%d", s.ManagementPort)
			if s.TrafficPort != 0 {
				ports = fmt.Sprintf("%d/%d", s.TrafficPort, s.ManagementPort)
			}
			fmt.Fprintf(tw, "%s (%s)\t%s\t%s\t%s\t%s\t%s\t%s\n", g.ID, g.Name, s.ID, s.Name, host, ports, s.Status, dep)
		}
	}
	return tw.Flush()
}

func (c *apiClient) manage(ctx context.Context, verb, group, service string) error {
	raw, _, err := c.do(ctx, http.MethodPost, "/management/"+verb+"/"+url.PathEscape(group)+"/"+url.PathEscape(service), url.Values{})
	if err != nil {
		return err
	}
	if c.o.json {
		return c.printJSON(raw)
	}
	var s map[string]any
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("%s answer: %w", verb, err)
	}
	fmt.Fprintf(c.env.Stdout, "%v (%v) in %v (%v): %v\n", s["id"], s["name"], s["groupID"], s["groupName"], s["status"])
	// lastExit says why an instance stopped or failed ("killed by signal 9
	// (SIGKILL)", "exit status 1"); inService whether its load balancer
	// sends it traffic.
	for _, k := range []string{"pid", "phase", "health", "startedAt", "restarts", "lastExit", "archive", "deployedArchive", "inService", "outOfServiceUntil", "configChecksum", "error", "message"} {
		if v, ok := s[k]; ok && v != nil && v != "" {
			if f, ok := v.(float64); ok {
				v = fmt.Sprintf("%.0f", f)
			}
			fmt.Fprintf(c.env.Stdout, "  %-15s %v\n", k+":", v)
		}
	}
	return nil
}

func (c *apiClient) users(ctx context.Context) error {
	raw, _, err := c.do(ctx, http.MethodGet, "/rbac/users", nil)
	if err != nil {
		return err
	}
	if c.o.json {
		return c.printJSON(raw)
	}
	var us []struct {
		Name  string   `json:"name"`
		Roles []string `json:"roles"`
	}
	if err := json.Unmarshal(raw, &us); err != nil {
		return fmt.Errorf("users answer: %w", err)
	}
	tw := tabwriter.NewWriter(c.env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tROLES")
	for _, u := range us {
		fmt.Fprintf(tw, "%s\t%s\n", u.Name, strings.Join(u.Roles, ", "))
	}
	return tw.Flush()
}

func (c *apiClient) audit(ctx context.Context) error {
	q := url.Values{}
	for k, v := range map[string]string{"limit": c.o.limit, "user": c.o.user, "action": c.o.action} {
		if v != "" {
			q.Set(k, v)
		}
	}
	path := "/audit"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	raw, _, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	if c.o.json {
		return c.printJSON(raw)
	}
	var r struct {
		Entries []struct {
			Seq     int64    `json:"seq"`
			Time    string   `json:"time"`
			User    string   `json:"user"`
			Via     string   `json:"via"`
			Action  string   `json:"action"`
			Detail  string   `json:"detail"`
			Targets []string `json:"targets"`
			Outcome string   `json:"outcome"`
			Error   string   `json:"error"`
		} `json:"entries"`
		Verified bool `json:"verified"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return fmt.Errorf("audit answer: %w", err)
	}
	tw := tabwriter.NewWriter(c.env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tUSER\tVIA\tACTION\tTARGETS\tOUTCOME")
	for _, e := range r.Entries {
		out := e.Outcome
		if e.Error != "" {
			out += ": " + e.Error
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time, e.User, e.Via, e.Action, strings.Join(e.Targets, " "), out)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.Verified {
		fmt.Fprintln(c.env.Stdout, "hash chain verified")
	} else {
		fmt.Fprintln(c.env.Stdout, "WARNING: the audit log's hash chain does NOT verify (see gatehouse audit verify on the ANM)")
	}
	return nil
}

// backupStatus prints every host's scheduled backups (GET
// /api/backup/status); an ExitError 1 when a host's last run failed or its
// node manager did not answer.
func (c *apiClient) backupStatus(ctx context.Context) error {
	raw, _, err := c.do(ctx, http.MethodGet, "/backup/status", nil)
	if err != nil {
		return err
	}
	if c.o.json {
		if err := c.printJSON(raw); err != nil {
			return err
		}
	}
	var ans struct {
		Hosts []anm.HostBackups `json:"hosts"`
	}
	if err := json.Unmarshal(raw, &ans); err != nil {
		return fmt.Errorf("backup status answer: %w", err)
	}
	at := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.Local().Format("2006-01-02 15:04:05 MST")
	}
	var bad []string
	for _, h := range ans.Hosts {
		if c.o.json {
			break
		}
		label := fmt.Sprintf("%s (%s)", h.HostName, h.HostID)
		switch b := h.Backups; {
		case h.NodeManager != "running":
			fmt.Fprintf(c.env.Stdout, "%s: node manager %s: %s\n", label, h.NodeManager, h.Error)
		case h.Error != "":
			fmt.Fprintf(c.env.Stdout, "%s: %s\n", label, h.Error)
		case b == nil:
			fmt.Fprintf(c.env.Stdout, "%s: no scheduled backups\n", label)
		default:
			state := "ok"
			if b.Failing {
				state = "FAILING"
			}
			fmt.Fprintf(c.env.Stdout, "%s: scheduled backups %q into %s, the newest %d kept: %s\n", label, b.Schedule, b.Directory, b.Keep, state)
			if b.Error != "" {
				fmt.Fprintf(c.env.Stdout, "  state unreadable: %s\n", b.Error)
			}
			fmt.Fprintf(c.env.Stdout, "  next run:      %s\n", at(b.State.Next))
			fmt.Fprintf(c.env.Stdout, "  last success:  %s %s\n", at(b.State.LastSuccess), b.State.LastFile)
			fmt.Fprintf(c.env.Stdout, "  last failure:  %s %s\n", at(b.State.LastFailure), b.State.LastError)
			fmt.Fprintf(c.env.Stdout, "  runs:          %d succeeded, %d failed\n", b.State.Succeeded, b.State.Failed)
		}
	}
	for _, h := range ans.Hosts {
		switch {
		case h.NodeManager == "unreachable":
			bad = append(bad, fmt.Sprintf("the node manager of %s does not answer", h.HostID))
		case h.Backups != nil && h.Backups.Failing:
			bad = append(bad, fmt.Sprintf("the last scheduled backup of %s failed: %s", h.HostID, h.Backups.State.LastError))
		}
	}
	if len(bad) > 0 {
		return &ExitError{Code: 1, Err: errors.New(strings.Join(bad, "; "))}
	}
	return nil
}
