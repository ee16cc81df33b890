package tools

import (
	"context"
	"net"
	"slices"
	"strconv"

	"github.com/gatehouse-gw/gatehouse/internal/domain"
)

// deploy (menu 18): the vendor's managedomain --deploy -g GROUP
// --archive_filename F. It does what gatehouse deploy does (client_deploy.go),
// through the management API of this domain's Admin Node Manager: the URL
// from system/conf/nodemanager.yaml, the domain CA of groups/certs, and
// the credentials of --username and --password or --password_file (else a
// prompt). docs/deployment.md.

func init() {
	vb := &mdVerb{
		Name: "deploy", Menu: 18, Title: "deploy a configuration (a YAML file or a tar.gz of YAML files) to a group",
		Help: "Sends the file to this domain's Admin Node Manager (the one system/conf/nodemanager.yaml names,\n" +
			"trusted through groups/certs/domaincert.pem), which validates it (refused with file and line,\n" +
			"nothing stored), stores it as the group's next archive and rolls it out to the group's instances.\n" +
			"It returns when every instance took it; an instance that did not is named and the command fails.\n" +
			"The same as gatehouse deploy -g GROUP FILE (docs/deployment.md). The user needs deployment.write\n" +
			"(API Server Administrator or Deployer). Without --password or --password_file it asks for the password.",
		Synopsis: "-g GROUP --archive_filename F --username U [--password P | --password_file F] [--comment TEXT]",
		Params: []mdParam{
			{Long: "group", Short: "g", Arg: "GROUP", Help: "the group name (or id)", Required: true, Prompt: "Group name", Choices: chooseGroup},
			{Long: "archive_filename", Arg: "F", Help: "the configuration: a YAML file (group.yaml) or a tar.gz of YAML files", Required: true,
				Prompt: "Configuration file (YAML or tar.gz)"},
			{Long: "comment", Arg: "TEXT", Help: "a comment stored with the archive", Prompt: "Comment"},
			pUsername, pPassword, pPasswordFile,
		},
		Run: mdDeploy,
	}
	i := slices.IndexFunc(mdVerbs, func(vb *mdVerb) bool { return vb.Name == "menu" })
	if i < 0 {
		i = len(mdVerbs)
	}
	mdVerbs = slices.Insert(mdVerbs, i, vb)
}

func mdDeploy(ctx context.Context, s *mdSession, v mdValues) error {
	c, wipe, err := s.anmAPIClient(v, deployOpts{group: v["group"], comment: v["comment"]})
	if err != nil {
		return err
	}
	defer wipe()
	return c.deployFile(ctx, v["archive_filename"])
}

// anmURL is the management API of the domain's Admin Node Manager as this
// host reaches it: the ANM recorded by managedomain -a, else this host's
// own node manager (its listen address, or localhost).
func anmURL(nc domain.NodeManagerConf) string {
	host, port := "localhost", nc.Port
	switch {
	case nc.ANMAddress != "":
		host, port = nc.ANMAddress, nc.ANMPort
	case nc.Address != "":
		if ip := net.ParseIP(nc.Address); ip == nil || !ip.IsUnspecified() {
			host = nc.Address
		}
	}
	return "https://" + net.JoinHostPort(host, strconv.Itoa(port)) + "/api"
}
