package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/nodeapi"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// The verbs of a domain with several hosts: add_host (-a, menu 1) and the
// topology checks check_topology, compare_topology and sync_topology (menu
// 14 to 16). docs/adding-a-host.md is the operator's page.

// joinTimeout bounds each call to the Admin Node Manager.
const joinTimeout = 60 * time.Second

func init() {
	hostVerbs := []*mdVerb{
		{
			Name: "add_host", Short: "a", Menu: 1, Title: "register this install directory as a new host of an existing domain",
			Help: "In a fresh install directory: fetches the domain CA certificate from the Admin Node Manager and\n" +
				"shows its SHA-256 fingerprint (compare it with the one managedomain -i printed, or pass it with\n" +
				"--anm_fingerprint); generates this node manager's key here and sends a certificate request with\n" +
				"an admin user's credentials; the Admin Node Manager adds the host and its node manager to the\n" +
				"topology and signs the request with the domain CA, whose key never leaves its host. Then writes\n" +
				"the CA certificate, the node manager's certificate and key, system/conf/nodemanager.yaml and the\n" +
				"topology, and installs this binary. Start the node manager with: nodemanager -d",
			Synopsis: "--anm_host H[:PORT] --username U [--password P | --password_file F] [--host_name NAME] [--nm_address IP] [--port N] [--anm_fingerprint SHA256]",
			Params: []mdParam{
				{Long: "anm_host", Arg: "H[:PORT]", Help: "the Admin Node Manager's address (port 8090 when not given)", Required: true, Prompt: "Admin Node Manager host[:port]"},
				{Long: "username", Arg: "U", Help: "an admin user of the domain", Required: true, Prompt: "Admin user name"},
				{Long: "password", Arg: "P", Help: "its password (visible to other users in ps: prefer --password_file)", Secret: true},
				{Long: "password_file", Arg: "F", Help: "read the password from the first line of file F"},
				{Long: "host_name", Arg: "NAME", Help: "this host's name in the topology (default: the system host name)", Prompt: "This host's name in the topology", Default: func(*mdSession, mdValues) string { return defaultHostName() }},
				{Long: "nm_address", Arg: "IP", Help: "the IP this host's node manager listens on and is reached at (default: every interface, reached by host name)", Prompt: "This node manager's IP address (empty: every interface)"},
				{Long: "port", Arg: "N", Help: "the node manager's management port (default 8090)", Prompt: "This node manager's port", Default: func(*mdSession, mdValues) string { return "8090" }},
				{Long: "anm_fingerprint", Arg: "SHA256", Help: "the domain CA's SHA-256 fingerprint (AB:CD:... or hex); without it you are asked to confirm"},
				pIsAdmin,
			},
			Run: noSecondANM(mdAddHost),
		},
		{
			Name: "check_topology", Menu: 14, Title: "check that the topologies of all hosts are in sync",
			Help: "Asks the Admin Node Manager for every host's topology version and checksum and compares them with\n" +
				"its own. Exit status 1 when a host differs or cannot be reached.",
			Run: mdCheckTopology,
		},
		{
			Name: "compare_topology", Menu: 15, Title: "compare the local topology with the Admin Node Manager's",
			Help: "Reads the Admin Node Manager's topology and prints what differs from this host's\n" +
				"groups/topology.json. Exit status 1 when they differ.",
			Run: mdCompareTopology,
		},
		{
			Name: "reset_topology", Menu: 17, Title: "reset the local topology: take the Admin Node Manager's, whatever the versions",
			Help: "On a host that joined a domain: fetches the Admin Node Manager's topology and writes it as this\n" +
				"host's, also when this host's is newer or diverged (sync_topology refuses that). Prints what\n" +
				"changed. Refused on the Admin Node Manager's own host.",
			Run: mdResetTopology,
		},
		{
			Name: "sync_topology", Menu: 16, Title: "sync all topologies: the Admin Node Manager pushes its topology to every host",
			Help: "Has the Admin Node Manager send its topology to every host's node manager (a host takes it when\n" +
				"its version is higher than the one it has). Exit status 1 when a host cannot be reached.",
			Run: mdSyncTopology,
		},
	}
	i := slices.IndexFunc(mdVerbs, func(vb *mdVerb) bool { return vb.Name == "initialize" })
	mdVerbs = slices.Insert(mdVerbs, i+1, hostVerbs...)
}

func defaultHostName() string {
	hn, err := os.Hostname()
	if err != nil || hn == "" {
		return "localhost"
	}
	return hn
}

// normFingerprint upper-cases a fingerprint and drops separators.
func normFingerprint(s string) string {
	return strings.ToUpper(strings.NewReplacer(":", "", " ", "", "-", "").Replace(strings.TrimSpace(s)))
}

// readPassword is the password from --password, --password_file, or asked
// once (without echo on a terminal).
func (s *mdSession) readPassword(v mdValues, prompt string) (secret.Value, error) {
	switch {
	case v.has("password") && v.has("password_file"):
		return secret.Value{}, usagef(mdName, "give --password or --password_file, not both")
	case v.has("password"):
		return secret.FromString(v["password"]), nil
	case v.has("password_file"):
		data, err := os.ReadFile(v["password_file"])
		if err != nil {
			return secret.Value{}, fmt.Errorf("reading the password file: %w", err)
		}
		defer secret.New(data).Wipe()
		line, _, _ := strings.Cut(string(data), "\n")
		return secret.FromString(strings.TrimRight(line, "\r")), nil
	}
	if f, ok := s.env.Stdin.(*os.File); ok && isTerminal(f) {
		fmt.Fprintf(s.env.Stderr, "%s: ", prompt)
		pw, err := readPasswordNoEcho(f)
		fmt.Fprintln(s.env.Stderr)
		return pw, err
	}
	fmt.Fprintf(s.env.Stderr, "%s (one line of standard input): ", prompt)
	line, err := s.readLine()
	fmt.Fprintln(s.env.Stderr)
	if err == io.EOF {
		return secret.Value{}, errors.New("no password given (end of input); use --password_file F")
	}
	return secret.FromString(line), err
}

func mdAddHost(ctx context.Context, s *mdSession, v mdValues) error {
	port, err := v.port("port")
	if err != nil {
		return err
	}
	if port == 0 {
		port = domain.DefaultNodeManagerPort
	}
	if err := domain.CheckListenAddress(v["nm_address"]); err != nil {
		return usagef(mdName, "--nm_address: %v", err)
	}
	hostName := v["host_name"]
	if hostName == "" {
		hostName = defaultHostName()
	}
	if err := topology.ValidateName("host", hostName); err != nil {
		return usagef(mdName, "--host_name: %v", err)
	}
	if err := s.home.CheckDomain(); err == nil {
		return fmt.Errorf("this install directory (%s) already belongs to a domain (groups/topology.json); a host joins with a fresh install directory", s.home.Dir)
	}
	addr, err := nodeapi.ANMAddress(v["anm_host"])
	if err != nil {
		return usagef(mdName, "--anm_host: %v", err)
	}

	// 1. The trust decision: the domain CA's fingerprint.
	cctx, cancel := context.WithTimeout(ctx, joinTimeout)
	caPEM, caCert, err := nodeapi.FetchDomainCA(cctx, addr)
	cancel()
	if err != nil {
		return fmt.Errorf("fetching the domain CA certificate: %w", err)
	}
	fp := pki.Fingerprint(caCert)
	s.out("The Admin Node Manager at %s presents the domain CA\n  %s\n  SHA-256 fingerprint %s\n", addr, caCert.Subject.CommonName, fp)
	if want := v["anm_fingerprint"]; want != "" {
		if normFingerprint(want) != normFingerprint(fp) {
			return fmt.Errorf("the domain CA's fingerprint %s is not the one given with --anm_fingerprint (%s): not joining; check the address and the fingerprint managedomain -i printed on the Admin Node Manager's host", fp, want)
		}
		s.out("It matches --anm_fingerprint.\n")
	} else {
		s.out("Compare it with the fingerprint managedomain -i printed on the Admin Node Manager's host.\nTrust this domain CA? (yes/no): ")
		line, err := s.readLine()
		if err != nil && err != io.EOF {
			return err
		}
		if a := strings.ToLower(strings.TrimSpace(line)); a != "yes" && a != "y" {
			return errors.New("the domain CA was not trusted: not joining (pass --anm_fingerprint to decide without a question)")
		}
	}

	// 2. The credentials and the request for this node manager's certificate.
	pw, err := s.readPassword(v, fmt.Sprintf("Password of admin user %q", v["username"]))
	if err != nil {
		return err
	}
	defer pw.Wipe()
	dns, ips := nodeapi.CertNames(hostName, v["nm_address"])
	csrPEM, keyPEM, err := pki.NewKeyAndCSR("Gatehouse Node Manager (joining host "+hostName+")", dns, ips)
	if err != nil {
		return err
	}
	defer keyPEM.Wipe()
	cctx, cancel = context.WithTimeout(ctx, joinTimeout)
	ans, err := nodeapi.RequestJoin(cctx, addr, caPEM, v["username"], pw, nodeapi.JoinRequest{
		HostName: hostName, Address: v["nm_address"], Port: port, CSR: string(csrPEM),
	})
	cancel()
	if err != nil {
		return err
	}

	// 3. This host's files.
	anmHost, anmPort := splitHostPortInt(addr)
	exe := s.env.Exe
	if exe != "" {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
	}
	if err := domain.Join(ctx, s.home, domain.JoinOptions{
		CACertPEM: caPEM, CertPEM: []byte(ans.Certificate), KeyPEM: keyPEM, Topology: ans.Topology,
		Conf: domain.NodeManagerConf{HostID: ans.HostID, NodeManagerID: ans.NodeManagerID, Port: port, Address: v["nm_address"],
			ANMAddress: anmHost, ANMPort: anmPort},
		Actor: s.actor, Exe: exe, ToolNames: LinkedNames(),
	}); err != nil {
		return fmt.Errorf("the Admin Node Manager registered host %s (%s), but writing this host's files failed: %w; delete the host on the Admin Node Manager (DELETE /api/topology/hosts/%s) before trying again", ans.HostID, ans.NodeManagerID, err, ans.HostID)
	}
	s.out("Joined domain %q as host %q (%s) with node manager %s on port %d.\n", ans.Topology.DomainName, hostName, ans.HostID, ans.NodeManagerID, port)
	s.out("  domain CA certificate %s (no CA key on this host)\n", pki.CertFile(s.home))
	s.out("  node manager certificate %s, signed by the domain CA\n", pki.NodeManagerCertFile(s.home))
	s.out("  topology version %d\n", ans.Topology.Version)
	s.out("Next: nodemanager -d starts this host's node manager; the Admin Node Manager then manages its instances.\n")
	return nil
}

func splitHostPortInt(addr string) (string, int) {
	i := strings.LastIndexByte(addr, ':')
	host := strings.TrimSuffix(strings.TrimPrefix(addr[:i], "["), "]")
	var port int
	fmt.Sscanf(addr[i+1:], "%d", &port)
	return host, port
}

func (s *mdSession) anmClient() (*nodeapi.ANMClient, error) {
	if err := s.home.CheckDomain(); err != nil {
		return nil, err
	}
	return nodeapi.NewANMClient(s.home)
}

func printSync(s *mdSession, rep nodeapi.SyncReport, verb string) (bad int) {
	s.out("Admin Node Manager: version %d, checksum %s\n", rep.Version, shortSum(rep.Checksum))
	for _, h := range rep.Hosts {
		state := "in sync"
		switch {
		case h.Error != "":
			state = "UNREACHABLE: " + h.Error
			bad++
		case !h.InSync:
			state = fmt.Sprintf("OUT OF SYNC: version %d, checksum %s", h.Version, shortSum(h.Checksum))
			bad++
		case h.Pushed:
			state = "in sync (" + verb + ")"
		}
		s.out("  %s %q (%s at %s): %s\n", h.HostID, h.HostName, h.NodeManagerID, h.Address, state)
	}
	if len(rep.Hosts) == 0 {
		s.out("  (no other hosts)\n")
	}
	return bad
}

func shortSum(c string) string {
	if len(c) > 16 {
		return c[:16]
	}
	return c
}

func mdCheckTopology(ctx context.Context, s *mdSession, _ mdValues) error {
	c, err := s.anmClient()
	if err != nil {
		return err
	}
	defer c.Close()
	rep, err := c.CheckSync(ctx)
	if err != nil {
		return fmt.Errorf("asking the Admin Node Manager at %s: %w", c.Addr(), err)
	}
	if bad := printSync(s, rep, ""); bad > 0 {
		return &ExitError{Code: 1, Err: fmt.Errorf("%d host(s) not in sync; managedomain --sync_topology pushes the Admin Node Manager's topology", bad)}
	}
	s.out("All topologies are in sync.\n")
	return nil
}

func mdSyncTopology(ctx context.Context, s *mdSession, _ mdValues) error {
	c, err := s.anmClient()
	if err != nil {
		return err
	}
	defer c.Close()
	rep, err := c.SyncAll(ctx)
	if err != nil {
		return fmt.Errorf("asking the Admin Node Manager at %s: %w", c.Addr(), err)
	}
	if bad := printSync(s, rep, "pushed"); bad > 0 {
		return &ExitError{Code: 1, Err: fmt.Errorf("%d host(s) could not be brought in sync", bad)}
	}
	s.out("All topologies are in sync.\n")
	return nil
}

// mdResetTopology makes this host's topology the Admin Node Manager's again,
// whatever the versions (menu 17): a host that is ahead of the ANM or
// diverged from it (written locally by an older Gatehouse) follows the
// domain again. On the ANM's host there is nothing to reset from.
func mdResetTopology(ctx context.Context, s *mdSession, _ mdValues) error {
	nc, err := domain.LoadNodeManagerConf(s.home)
	if err != nil {
		return err
	}
	if nc.ANMAddress == "" {
		return fmt.Errorf("this host's node manager is the Admin Node Manager: its topology is the domain's, there is nothing to reset it from")
	}
	local, anm, err := s.bothTopologies(ctx)
	if err != nil {
		return err
	}
	diffs := topologyDiff(local, anm)
	if len(diffs) == 0 && local.Version == anm.Version {
		s.out("The local topology is the Admin Node Manager's (version %d); nothing to reset.\n", anm.Version)
		return nil
	}
	if err := audit.StoreFor(s.home).Reset(ctx, s.actor, "reset topology", anm); err != nil {
		return err
	}
	s.out("Reset the local topology (version %d) to the Admin Node Manager's (version %d).\n", local.Version, anm.Version)
	for _, d := range diffs {
		s.out("  %s\n", d)
	}
	return nil
}

// bothTopologies are this host's topology and the Admin Node Manager's.
func (s *mdSession) bothTopologies(ctx context.Context) (local, anm *topology.Topology, err error) {
	if local, err = s.topology(); err != nil {
		return nil, nil, err
	}
	c, err := s.anmClient()
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	if anm, err = c.Topology(ctx); err != nil {
		return nil, nil, fmt.Errorf("asking the Admin Node Manager at %s: %w", c.Addr(), err)
	}
	return local, anm, nil
}

func mdCompareTopology(ctx context.Context, s *mdSession, _ mdValues) error {
	local, anm, err := s.bothTopologies(ctx)
	if err != nil {
		return err
	}
	s.out("Local topology: version %d, checksum %s\nAdmin Node Manager's: version %d, checksum %s\n", local.Version, shortSum(local.Checksum()), anm.Version, shortSum(anm.Checksum()))
	diffs := topologyDiff(local, anm)
	if len(diffs) == 0 {
		s.out("They are the same.\n")
		return nil
	}
	s.out("Differences (- local, + Admin Node Manager's):\n")
	for _, d := range diffs {
		s.out("  %s\n", d)
	}
	return &ExitError{Code: 1, Err: fmt.Errorf("the local topology differs from the Admin Node Manager's in %d place(s); managedomain --sync_topology brings every host in step", len(diffs))}
}

// topologyDiff lists what differs between two topologies, item by item
// (domain fields, each host, each group, each service), in a stable order.
func topologyDiff(a, b *topology.Topology) []string {
	fa, fb := flattenTopology(a), flattenTopology(b)
	keys := make([]string, 0, len(fa)+len(fb))
	for k := range fa {
		keys = append(keys, k)
	}
	for k := range fb {
		if _, ok := fa[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out []string
	for _, k := range keys {
		va, ina := fa[k]
		vb, inb := fb[k]
		switch {
		case ina && !inb:
			out = append(out, fmt.Sprintf("- %s %s", k, va))
		case !ina && inb:
			out = append(out, fmt.Sprintf("+ %s %s", k, vb))
		case va != vb:
			out = append(out, fmt.Sprintf("- %s %s", k, va), fmt.Sprintf("+ %s %s", k, vb))
		}
	}
	return out
}

func flattenTopology(t *topology.Topology) map[string]string {
	js := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	m := map[string]string{
		"id": js(t.ID), "version": js(t.Version), "timestamp": js(t.Timestamp), "domainName": js(t.DomainName), "counters": js(t.Counters),
	}
	for _, h := range t.Hosts {
		m["host "+h.ID] = js(h)
	}
	for _, g := range t.Groups {
		m["group "+g.ID] = js(struct {
			Name string            `json:"name"`
			Tags map[string]string `json:"tags,omitempty"`
		}{g.Name, g.Tags})
		for _, s := range g.Services {
			m["service "+g.ID+"/"+s.ID] = js(s)
		}
	}
	return m
}
