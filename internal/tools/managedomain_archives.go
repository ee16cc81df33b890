package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
)

// Menu 19, 20 and 21: the deployments, an archive stored without being
// rolled out, and the download of an archive. Like --deploy (menu 18) they
// go through the management API of the domain's Admin Node Manager with the
// credentials given (docs/managedomain.md), and do what gatehouse
// deployments, deploy --no-deploy and archive do (client_deploy.go).

// The credentials every API verb of managedomain asks for.
var (
	pUsername     = mdParam{Long: "username", Arg: "U", Help: "the admin user", Required: true, Prompt: "Admin user name"}
	pPassword     = mdParam{Long: "password", Arg: "P", Help: "its password (visible to other users in ps: prefer --password_file)", Secret: true}
	pPasswordFile = mdParam{Long: "password_file", Arg: "F", Help: "read the password from the first line of file F"}
)

func init() {
	pGroupAPI := mdParam{Long: "group", Short: "g", Arg: "GROUP", Help: "the group name (or id)", Required: true, Prompt: "Group name", Choices: chooseGroup}
	verbs := []*mdVerb{
		{
			Name: "list_deployments", Menu: 19, Title: "list the deployment archives, each group's state and the recent rollouts",
			Help: "What gatehouse deployments prints: the archives, each group consistent or INCONSISTENT (and\n" +
				"why), and the recent rollouts; with -g one group only. The user needs deployment.read.",
			Params: []mdParam{{Long: "group", Short: "g", Arg: "GROUP", Help: "only this group (name or id)", Prompt: "Group (empty: every group)", Choices: chooseGroup},
				pUsername, pPassword, pPasswordFile},
			Run: func(ctx context.Context, s *mdSession, v mdValues) error {
				c, wipe, err := s.anmAPIClient(v, deployOpts{group: v["group"]})
				if err != nil {
					return err
				}
				defer wipe()
				return c.deployments(ctx)
			},
		},
		{
			Name: "create_archive", Menu: 20, Title: "create a deployment archive from files, stored but not rolled out",
			Help: "Validates the file (a YAML file or a tar.gz of YAML files) and stores it as the group's next\n" +
				"archive without rolling it out (gatehouse deploy --no-deploy); --deploy or gatehouse rollback\n" +
				"--archive N rolls it out later. The user needs deployment.write.",
			Params: []mdParam{pGroupAPI,
				{Long: "archive_filename", Arg: "F", Help: "a YAML file (group.yaml) or a tar.gz of YAML files", Required: true, Prompt: "Configuration file (YAML or tar.gz)"},
				{Long: "comment", Arg: "TEXT", Help: "a comment stored with the archive", Prompt: "Comment"},
				pUsername, pPassword, pPasswordFile},
			Run: func(ctx context.Context, s *mdSession, v mdValues) error {
				c, wipe, err := s.anmAPIClient(v, deployOpts{group: v["group"], comment: v["comment"], noDeploy: true})
				if err != nil {
					return err
				}
				defer wipe()
				return c.deployFile(ctx, v["archive_filename"])
			},
		},
		{
			Name: "download_archive", Menu: 21, Title: "download a deployment archive (a tar.gz), checked against its checksum",
			Help:   "Writes archive N of the group to FILE (atomically, mode 0600), as gatehouse archive does.",
			Params: []mdParam{pGroupAPI, {Long: "archive", Arg: "N", Help: "the archive id (--list_deployments shows them)", Required: true, Prompt: "Archive number"}, {Long: "output", Short: "o", Arg: "FILE", Help: "where to write it", Required: true, Prompt: "Output file"}, pUsername, pPassword, pPasswordFile},
			Run: func(ctx context.Context, s *mdSession, v mdValues) error {
				n, err := strconv.Atoi(v["archive"])
				if err != nil || n < 1 {
					return fmt.Errorf("--archive %q: want an archive id, a positive integer", v["archive"])
				}
				c, wipe, err := s.anmAPIClient(v, deployOpts{group: v["group"], archive: n, output: v["output"]})
				if err != nil {
					return err
				}
				defer wipe()
				return c.downloadArchive(ctx)
			},
		},
	}
	verbs = append(verbs, &mdVerb{
		Name: "update_archive", Menu: 22, Title: "update a deployment archive's properties: its comment and name",
		Help: "Sets the comment and/or the name (a label) of archive N of the group through the Admin Node\n" +
			"Manager's API (PUT /api/deployment/archive/{groupID}/{archiveID}); the archive itself never\n" +
			"changes. The user needs deployment.write.",
		Params: []mdParam{pGroupAPI, {Long: "archive", Arg: "N", Help: "the archive id", Required: true, Prompt: "Archive number"},
			{Long: "comment", Arg: "TEXT", Help: "the new comment", Prompt: "New comment (empty: keep it)"},
			{Long: "archive_name", Arg: "NAME", Help: "the new name", Prompt: "New name (empty: keep it)"},
			pUsername, pPassword, pPasswordFile},
		Run: func(ctx context.Context, s *mdSession, v mdValues) error {
			n, err := strconv.Atoi(v["archive"])
			if err != nil || n < 1 {
				return fmt.Errorf("--archive %q: want an archive id, a positive integer", v["archive"])
			}
			props := map[string]string{}
			for flag, key := range map[string]string{"comment": "comment", "archive_name": "name"} {
				if val, ok := v[flag]; ok && val != "" {
					props[key] = val
				}
			}
			if len(props) == 0 {
				return usagef("managedomain", "update_archive wants --comment, --archive_name or both")
			}
			c, wipe, err := s.anmAPIClient(v, deployOpts{})
			if err != nil {
				return err
			}
			defer wipe()
			gid, err := c.resolveGroup(ctx, v["group"])
			if err != nil {
				return err
			}
			raw, _, err := c.send(ctx, apiRequest{Method: http.MethodPut, Path: fmt.Sprintf("/deployment/archive/%s/%d", url.PathEscape(gid), n), JSON: props})
			if err != nil {
				return err
			}
			var m deployMeta
			if err := json.Unmarshal(raw, &m); err != nil {
				return fmt.Errorf("update_archive answer: %w", err)
			}
			s.out("Archive %d of %s: comment %q, name %q\n", m.ID, m.Group, m.Comment, m.Name)
			return nil
		},
	})
	pHostAPI := mdParam{Long: "host", Arg: "HOST", Help: "the host's name (or id)", Required: true, Prompt: "Host name"}
	verbs = append(verbs,
		&mdVerb{
			Name: "edit_host", Menu: 2, Title: "edit a host: its name, its node manager's port, service or metrics",
			Help: "--new_name renames the host; --nm_port N moves the host's node manager to port N (the topology and\n" +
				"that host's nodemanager.yaml; its instances keep running; for the Admin Node Manager's own host the\n" +
				"management API moves too: the new address is printed); --metrics on|off turns GET /metrics of the\n" +
				"node manager on or off. These go through the Admin Node Manager's API (PUT\n" +
				"/api/topology/hosts/{hostID}); every host's copy follows; the user needs topology.write.\n" +
				"--service add|remove writes or deletes the Linux service of this host's node manager, as\n" +
				"--add_nm_service and --remove_nm_service (this host only: run it on the host it is for).\n" +
				"Changing a node manager's passphrase is later work (issue #20).",
			Params: []mdParam{pHostAPI,
				{Long: "new_name", Arg: "NEW", Help: "the host's new name", Prompt: "New host name (empty: keep it)"},
				{Long: "nm_port", Arg: "N", Help: "a new management port for the host's node manager (1 to 65535, none of its instances' ports)", Prompt: "Node manager port (empty: keep it)"},
				{Long: "metrics", Arg: "on|off", Help: "whether the host's node manager serves Prometheus metrics at GET /metrics", Prompt: "Metrics at GET /metrics: on or off (empty: keep them)"},
				{Long: "service", Arg: "add|remove", Help: "add or remove the Linux service of this host's node manager (as --add_nm_service)", Prompt: "Linux service of this host's node manager: add or remove (empty: keep it)"},
				pEditSystemdDir, pEditInitDDir,
				pUsernameOpt, pPassword, pPasswordFile, pIsAdmin},
			Run: noSecondANM(mdEditHost),
		},
		&mdVerb{
			Name: "delete_host", Menu: 3, Title: "delete a host (one without instances; never the Admin Node Manager's)",
			Help: "Removes the host and its node manager from the topology through the Admin Node Manager's API\n" +
				"(DELETE /api/topology/hosts/{hostID}): refused while instances are on it (listed) and for the\n" +
				"ANM's own host. Its node manager's certificate is then no longer accepted by any node.",
			Params: []mdParam{pHostAPI, pUsername, pPassword, pPasswordFile},
			Run: onHost(func(ctx context.Context, c *apiClient, id string, _ mdValues) error {
				return c.topologyDelete(ctx, "host", "/topology/hosts/"+url.PathEscape(id), id)
			}),
		})
	i := slices.IndexFunc(mdVerbs, func(vb *mdVerb) bool { return vb.Name == "menu" })
	if i < 0 {
		i = len(mdVerbs)
	}
	mdVerbs = slices.Insert(mdVerbs, i, verbs...)
}

// edit_host's: the user only for the changes made through the API, the
// service directories only in command mode (the menu writes to the
// defaults).
var (
	pUsernameOpt    = mdParam{Long: "username", Arg: "U", Help: "the admin user (for the changes made through the Admin Node Manager)", Prompt: "Admin user name (for a name, port or metrics change)"}
	pEditSystemdDir = mdParam{Long: "systemd_dir", Arg: "DIR", Help: pSystemdDir.Help}
	pEditInitDDir   = mdParam{Long: "initd_dir", Arg: "DIR", Help: pInitDDir.Help}
)

// pIsAdmin is the vendor's flag that makes a host a second Admin Node
// Manager: later work, refused with a message saying so.
var pIsAdmin = mdParam{Long: "is_admin", Help: "make this host a second Admin Node Manager: not available yet (later work)"}

// noSecondANM refuses --is_admin before anything is done.
func noSecondANM(run func(context.Context, *mdSession, mdValues) error) func(context.Context, *mdSession, mdValues) error {
	return func(ctx context.Context, s *mdSession, v mdValues) error {
		if _, ok := v["is_admin"]; ok {
			return fmt.Errorf("--is_admin: a second Admin Node Manager is not available yet in this version of Gatehouse (later work); nothing was changed")
		}
		return run(ctx, s, v)
	}
}

// onHost runs fn with a client of the ANM and the id of the host --host
// names (its name or id).
func onHost(fn func(ctx context.Context, c *apiClient, hostID string, v mdValues) error) func(context.Context, *mdSession, mdValues) error {
	return func(ctx context.Context, s *mdSession, v mdValues) error {
		c, wipe, err := s.anmAPIClient(v, deployOpts{})
		if err != nil {
			return err
		}
		defer wipe()
		id, err := c.hostID(ctx, v["host"])
		if err != nil {
			return err
		}
		return fn(ctx, c, id, v)
	}
}

// anmAPIClient is a client of this domain's Admin Node Manager with the
// credentials of v (--username and --password, --password_file or a
// prompt) and the deployment options do. wipe clears the password from
// memory once the client is done.
func (s *mdSession) anmAPIClient(v mdValues, do deployOpts) (c *apiClient, wipe func(), err error) {
	if err := s.home.CheckDomain(); err != nil {
		return nil, nil, err
	}
	nc, err := domain.LoadNodeManagerConf(s.home)
	if err != nil {
		return nil, nil, err
	}
	pw, err := s.readPassword(v, "Password for "+v["username"])
	if err != nil {
		return nil, nil, err
	}
	if pw.IsZero() {
		return nil, nil, fmt.Errorf("no password for %s", v["username"])
	}
	o := &clientOpts{url: anmURL(nc), cacert: pki.CertFile(s.home), username: v["username"], password: pw, deployOpts: do}
	if c, err = newAPIClient(s.env, o, false); err != nil {
		pw.Wipe()
		return nil, nil, err
	}
	return c, pw.Wipe, nil
}
