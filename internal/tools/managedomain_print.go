package tools

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// mdPrintTopology prints the topology as a tree (or, with --json, the
// topology.json document). Ports of instances on this host are their
// effective configuration; others are what the topology records.
func mdPrintTopology(ctx context.Context, s *mdSession, v mdValues) error {
	t, err := s.topology()
	if err != nil {
		return err
	}
	if v.has("json") {
		data, err := os.ReadFile(s.home.TopologyFile())
		if err != nil {
			return fmt.Errorf("reading topology: %w", err)
		}
		_, err = s.env.Stdout.Write(data)
		return err
	}
	localHost, _ := domain.LocalHost(s.home)
	w := s.env.Stdout
	fmt.Fprintf(w, "Domain %q (id %s)\n", t.DomainName, t.ID)
	fmt.Fprintf(w, "  version %d, schema %d, last changed %s\n", t.Version, t.SchemaVersion, time.UnixMilli(t.Timestamp).UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "Hosts:\n")
	for _, h := range t.Hosts {
		mark := ""
		if h.ID == localHost {
			mark = "  (this host)"
		}
		fmt.Fprintf(w, "  %-12s %q%s\n", h.ID, h.Name, mark)
	}
	fmt.Fprintf(w, "Groups:\n")
	for gi := range t.Groups {
		g := &t.Groups[gi]
		fmt.Fprintf(w, "  %-12s %q\n", g.ID, g.Name)
		if len(g.Services) == 0 {
			fmt.Fprintf(w, "    (no instances)\n")
		}
		for _, svc := range g.Services {
			fmt.Fprintf(w, "    %-16s %q  on %s  %s\n", svc.ID, svc.Name, svc.HostID, s.portsText(g, svc, localHost))
			if tags := userTags(svc.Tags); tags != "" {
				fmt.Fprintf(w, "      tags: %s\n", tags)
			}
		}
	}
	return nil
}

func (s *mdSession) portsText(g *topology.Group, svc topology.Service, localHost string) string {
	if svc.Type == topology.TypeNodeManager {
		role := "node manager"
		if svc.Tags[topology.TagAdminNM] == "true" {
			role = "Admin Node Manager"
		}
		addr := svc.Tags[domain.TagAddress]
		if addr == "" && svc.HostID == localHost {
			if c, err := domain.LoadNodeManagerConf(s.home); err == nil {
				addr = c.Address // this host's: its own settings
			}
		}
		if addr != "" {
			return fmt.Sprintf("%s, management %s://%s", role, svc.Scheme, net.JoinHostPort(addr, strconv.Itoa(svc.ManagementPort)))
		}
		return fmt.Sprintf("%s, management %s on every interface, port %d", role, svc.Scheme, svc.ManagementPort)
	}
	parts := []string{fmt.Sprintf("traffic %d", svc.TrafficPort), fmt.Sprintf("management %d", svc.ManagementPort)}
	if svc.HostID == localHost {
		cfg, err := groupconf.LoadInstance(s.home, g.ID, svc.ID, nil, nil)
		if err != nil {
			parts = append(parts, "(configuration error: "+err.Error()+")")
		} else {
			parts = []string{fmt.Sprintf("traffic %d", cfg.Traffic.Port), fmt.Sprintf("management %d", cfg.Management.Port)}
			if cfg.Sample.Enabled {
				parts = append(parts, fmt.Sprintf("sample %d", cfg.Sample.Port))
			}
		}
	}
	return "gateway, " + strings.Join(parts, ", ")
}

// userTags are an instance's tags as name="value", sorted, without
// Gatehouse's own.
func userTags(tags map[string]string) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		if !strings.HasPrefix(k, "internal_") && k != domain.TagAddress {
			out = append(out, fmt.Sprintf("%s=%q", k, tags[k]))
		}
	}
	return strings.Join(out, " ")
}
