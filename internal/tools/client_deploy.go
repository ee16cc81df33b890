package tools

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/anm"
	"github.com/gatehouse-gw/gatehouse/internal/deploy"
	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// The deployment verbs of the operator's client (docs/deployment.md,
// docs/client.md): deploy a group configuration, roll back to a stored
// archive, list the archives and the groups' state, follow a job, download
// an archive. Each is a verb of gatehouse client and a top-level tool of
// its own (gatehouse deploy -g GROUP FILE, as issue 7 spells it); both take
// the client's options and its saved session.

// deployOpts are the deployment verbs' options.
type deployOpts struct {
	group           string // -g: a group id or name (resolveGroup)
	comment         string
	noDeploy        bool // store only (deploy=false)
	dryRun          bool // validate and compare only (dryRun=true)
	async           bool // return once the rollout is started
	archive         int  // --archive N
	job             int  // --job N
	output          string
	withLogs        bool // backup --with-logs (client_backup.go)
	thisHost        bool // backup --this-host
	skipUnreachable bool // backup --skip-unreachable
}

var deployVerbs = []clientVerb{
	{name: "deploy", args: []string{"[FILE]"}, opts: []string{"group", "comment", "no-deploy", "async", "dry-run"}, required: []string{"group"},
		api:     "POST /api/deployment/group/configuration/file/{groupID}",
		summary: "validate a group configuration (a YAML file or a tar.gz of YAML files), store it as the group's next archive and roll it out",
		help: "-g, --group GROUP              the group: its id (group-2) or its name\n" +
			"--comment TEXT                 stored with the archive (one line)\n" +
			"--no-deploy                    store the archive only; gatehouse rollback --archive N rolls it out later\n" +
			"--async                        return once the rollout is started; gatehouse deployments --job N follows it\n" +
			"--dry-run                      validate only, and print a unified diff against what the group runs;\n" +
			"                               nothing is stored or changed\n" +
			"Without FILE: the group's own groups/<group-id>/conf/group.yaml of this install directory.\n" +
			"Without --async the command returns when every instance took the archive (exit 0) or the rollout\n" +
			"stopped at one that did not (exit 1, naming it). An invalid configuration is refused with its\n" +
			"file and line (exit 1) and nothing is stored.",
		run: func(ctx context.Context, c *apiClient, a []string) error {
			file := ""
			if len(a) > 0 {
				file = a[0]
			}
			return c.deployFile(ctx, file)
		}},
	{name: "rollback", opts: []string{"group", "archive", "comment", "async"}, required: []string{"group", "archive"},
		api:     "POST /api/deployment/group/deploy/{groupID}/{archiveID}",
		summary: "roll out a stored archive again: a rollback to an older one, or a redeploy (makes an inconsistent group consistent)",
		help: "-g, --group GROUP              the group: its id (group-2) or its name\n" +
			"--archive N                    the archive (gatehouse deployments lists them)\n" +
			"--comment TEXT                 recorded with the job\n" +
			"--async                        return once the rollout is started",
		run: func(ctx context.Context, c *apiClient, _ []string) error { return c.rollback(ctx) }},
	{name: "deployments", opts: []string{"group", "job"},
		api:     "GET /api/deployment/domain/deployments, GET /api/deployment/jobs/{jobID}",
		summary: "the archives, each group's state (consistent or INCONSISTENT, and why) and the recent rollouts",
		help: "-g, --group GROUP              only this group (id or name)\n" +
			"--job N                        one rollout and each instance's step instead",
		run: func(ctx context.Context, c *apiClient, _ []string) error { return c.deployments(ctx) }},
	{name: "archive", opts: []string{"group", "archive", "output"}, required: []string{"group", "archive", "output"},
		api:     "GET /api/deployment/archive/{groupID}/{archiveID}",
		summary: "download a stored archive (a tar.gz), checked against its checksum",
		help: "-g, --group GROUP              the group: its id (group-2) or its name\n" +
			"--archive N                    the archive\n" +
			"-o, --output FILE              where to write it (atomically, mode 0600; - for standard output)",
		run: func(ctx context.Context, c *apiClient, _ []string) error { return c.downloadArchive(ctx) }},
}

func init() {
	for k, v := range map[string]optKind{"group": optString, "comment": optString, "no-deploy": optBool, "async": optBool, "dry-run": optBool,
		"archive": optString, "job": optString, "output": optString} {
		clientOptions[k] = v
	}
	for k, v := range map[string]string{"group": "GROUP", "comment": "TEXT", "archive": "N", "job": "N", "output": "FILE"} {
		clientOptionArg[k] = v
	}
	clientVerbs = append(clientVerbs, deployVerbs...)
}

// deployOptsFrom fills o's deployment options from vals (the options have
// been checked to belong to verb).
func deployOptsFrom(verb *clientVerb, o *clientOpts, vals map[string][]string) error {
	one := func(name string) string {
		if v := vals[name]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	o.group, o.comment, o.output = one("group"), one("comment"), one("output")
	o.noDeploy, o.async, o.dryRun = vals["no-deploy"] != nil, vals["async"] != nil, vals["dry-run"] != nil
	o.withLogs = vals["with-logs"] != nil
	o.thisHost = vals["this-host"] != nil
	o.skipUnreachable = vals["skip-unreachable"] != nil
	for _, p := range []struct {
		name string
		dst  *int
		what string
	}{{"archive", &o.archive, "an archive id (gatehouse deployments lists them)"}, {"job", &o.job, "a job id"}} {
		if s := one(p.name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				return usagef("client", "--%s %q: want %s, a positive integer", p.name, s, p.what)
			}
			*p.dst = n
		}
	}
	if vals["group"] != nil && strings.TrimSpace(o.group) == "" {
		return usagef("client", "-g wants a group id or name, got an empty one")
	}
	switch {
	case o.noDeploy && o.async:
		return usagef("client", "give --no-deploy or --async, not both (--no-deploy starts no rollout)")
	case o.dryRun && (o.noDeploy || o.async || o.comment != ""):
		return usagef("client", "--dry-run stores and rolls out nothing: it takes no --no-deploy, --async or --comment")
	case verb.name == "deployments" && o.job > 0 && o.group != "":
		return usagef("client", "give --job N or -g GROUP, not both (a job names its group)")
	case verb.name == "archive" && o.output == "":
		return usagef("client", "-o wants a file name (or - for standard output)")
	}
	return nil
}

// The top-level tools: gatehouse deploy|rollback|deployments|archive run
// the client verb of that name.
var (
	deployTool      = clientVerbTool("deploy", "validate, store and roll out a group configuration: deploy -g GROUP FILE --comment TEXT")
	rollbackTool    = clientVerbTool("rollback", "roll out a stored archive again: rollback -g GROUP --archive N")
	deploymentsTool = clientVerbTool("deployments", "the deployment archives, each group's state (consistent or not), the rollouts")
	archiveTool     = clientVerbTool("archive", "download a deployment archive: archive -g GROUP --archive N -o FILE")
)

func clientVerbTool(name, summary string) Tool {
	return Tool{Name: name, Summary: summary, Linked: true, Run: func(ctx context.Context, env *Env, args []string) error {
		v := findDeployVerb(name)
		for _, a := range args {
			if a == "--" {
				break
			}
			if a == "--help" || a == "-h" {
				fmt.Fprintln(env.Stdout, topLevelHelp(v))
				return nil
			}
		}
		err := runClient(ctx, env, append([]string{name}, args...))
		var ue *UsageError
		if errors.As(err, &ue) && ue.Tool == "client" {
			ue.Tool = "gatehouse " + name
			ue.Msg = strings.ReplaceAll(ue.Msg, "gatehouse client [OPTIONS] "+name, "gatehouse "+name+" [OPTIONS]")
		}
		return err
	}}
}

func findDeployVerb(name string) *clientVerb {
	for i := range deployVerbs {
		if deployVerbs[i].name == name {
			return &deployVerbs[i]
		}
	}
	panic("no deployment verb " + name)
}

func topLevelHelp(v *clientVerb) string {
	full := v.fullHelp()
	full = strings.Replace(full, "usage: gatehouse client [OPTIONS] "+v.name, "usage: gatehouse "+v.name+" [OPTIONS]", 1)
	return full + "\n\nThe same as gatehouse client " + v.name + "; it uses the session of gatehouse client login (docs/client.md)."
}

// The answers are decoded into the server's own types (deploy.Meta,
// anm.Job), so that the client and the API cannot disagree on
// their shape.
type (
	deployMeta = deploy.Meta
	deployJob  = anm.Job
)

// maxDeployFile bounds what deploy reads: the API's limit.
const maxDeployFile = deploy.MaxUpload

// deployFile uploads file to the group of -g: raw, as application/gzip
// when it starts with the gzip magic, else as application/yaml.
func (c *apiClient) deployFile(ctx context.Context, file string) error {
	gid, err := c.resolveGroup(ctx, c.o.group)
	if err != nil {
		return err
	}
	if file == "" {
		// The group's own group.yaml, of this install directory.
		h, err := home.Resolve()
		if err != nil {
			return fmt.Errorf("no FILE given, and the group's group.yaml cannot be found: %w", err)
		}
		file = h.GroupConfFile(gid)
		if _, err := os.Stat(file); err != nil {
			return fmt.Errorf("no FILE given, and the group's %s is not here (%v): give the file to deploy", file, err)
		}
	}
	fi, err := os.Stat(file)
	if err != nil {
		return fmt.Errorf("the configuration file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("the configuration file %s is not a regular file", file)
	}
	if fi.Size() > maxDeployFile {
		return fmt.Errorf("the configuration file %s is %d bytes; the API takes at most 8 MiB", file, fi.Size())
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("reading the configuration: %w", err)
	}
	if len(data) == 0 {
		return fmt.Errorf("the configuration file %s is empty; give a YAML file or a tar.gz of YAML files", file)
	}
	ct := "application/yaml"
	if len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b {
		ct = "application/gzip"
	}
	q := url.Values{}
	if c.o.comment != "" {
		q.Set("comment", c.o.comment)
	}
	if c.o.noDeploy {
		q.Set("deploy", "false")
	}
	if c.o.async {
		q.Set("async", "true")
	}
	if c.o.dryRun {
		q.Set("dryRun", "true")
	}
	path := "/deployment/group/configuration/file/" + url.PathEscape(gid)
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	if c.o.dryRun {
		raw, _, err := c.send(ctx, apiRequest{Method: http.MethodPost, Path: path, Body: data, ContentType: ct})
		if err != nil {
			return err
		}
		return c.printDryRun(file, gid, raw)
	}
	sync := !c.o.noDeploy && !c.o.async
	if sync && !c.o.json {
		fmt.Fprintf(c.env.Stderr, "deploying %s to %s; the answer comes when every instance has taken it (zero-downtime delays included)\n", file, gid)
	}
	raw, _, err := c.send(ctx, apiRequest{Method: http.MethodPost, Path: path, Body: data, ContentType: ct, Long: sync})
	if err != nil {
		return c.rolloutFailed(ctx, err)
	}
	return c.printRollout(raw)
}

// rollback rolls out stored archive --archive N of -g.
func (c *apiClient) rollback(ctx context.Context) error {
	gid, err := c.resolveGroup(ctx, c.o.group)
	if err != nil {
		return err
	}
	q := url.Values{}
	if c.o.comment != "" {
		q.Set("comment", c.o.comment)
	}
	if c.o.async {
		q.Set("async", "true")
	}
	path := fmt.Sprintf("/deployment/group/deploy/%s/%d", url.PathEscape(gid), c.o.archive)
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	if !c.o.async && !c.o.json {
		fmt.Fprintf(c.env.Stderr, "rolling out archive %d to %s; the answer comes when every instance has taken it\n", c.o.archive, gid)
	}
	raw, _, err := c.send(ctx, apiRequest{Method: http.MethodPost, Path: path, Long: !c.o.async})
	if err != nil {
		return c.rolloutFailed(ctx, err)
	}
	return c.printRollout(raw)
}

// jobInMessage finds the job a 502's message names.
var jobInMessage = regexp.MustCompile(`\(job ([0-9]+)`)

// rolloutFailed shows the steps of a failed rollout (502: its message
// names the job) before returning err, the server's message.
func (c *apiClient) rolloutFailed(ctx context.Context, err error) error {
	ae, ok := asAPIError(err)
	if !ok || ae.Status != http.StatusBadGateway {
		return err
	}
	// The status in the words of a rollout: the server's message names the
	// instance that did not take the archive and says the group is
	// inconsistent.
	ae.Message = strings.Replace(ae.Message, http.StatusText(http.StatusBadGateway)+" (502): ", "the rollout failed (502): ", 1)
	m := jobInMessage.FindStringSubmatch(ae.Message)
	if m == nil {
		return err
	}
	raw, _, jerr := c.do(ctx, http.MethodGet, "/deployment/jobs/"+m[1], nil)
	var j deployJob
	switch {
	case jerr != nil:
	case c.o.json:
		_ = c.printJSON(raw)
	case json.Unmarshal(raw, &j) == nil:
		c.printJob(&j)
	}
	return err
}

func (c *apiClient) printRollout(raw json.RawMessage) error {
	if c.o.json {
		return c.printJSON(raw)
	}
	var r struct {
		Archive deployMeta `json:"archive"`
		Job     *deployJob `json:"job"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return fmt.Errorf("deployment answer: %w", err)
	}
	m := r.Archive
	fmt.Fprintf(c.env.Stdout, "archive %d of %s: sha256:%s, %d bytes, files %s", m.ID, m.Group, m.Checksum, m.Size, strings.Join(m.Files, ", "))
	if m.Comment != "" {
		fmt.Fprintf(c.env.Stdout, ", comment %q", m.Comment)
	}
	fmt.Fprintln(c.env.Stdout)
	switch {
	case r.Job == nil:
		fmt.Fprintf(c.env.Stdout, "stored, not deployed: gatehouse rollback -g %s --archive %d rolls it out\n", m.Group, m.ID)
	case r.Job.Status == "running":
		fmt.Fprintf(c.env.Stdout, "job %d: %s started; follow it with gatehouse deployments --job %d\n", r.Job.ID, r.Job.Kind, r.Job.ID)
	default:
		c.printJob(r.Job)
	}
	return nil
}

// printJob prints a rollout and each instance's step.
func (c *apiClient) printJob(j *deployJob) {
	w := c.env.Stdout
	zd := "zero-downtime off"
	if j.ZeroDowntime {
		zd = fmt.Sprintf("zero-downtime on, %gs before and %gs after each instance", j.DelayBefore, j.DelayAfter)
	}
	took := ""
	if !j.Ended.IsZero() {
		took = " in " + duration(j.Ended.Sub(j.Created))
	} else if !j.Created.IsZero() {
		took = " for " + duration(time.Since(j.Created))
	}
	fmt.Fprintf(w, "job %d: %s of archive %d to %s by %s: %s%s (%d of %d instances; %s)\n",
		j.ID, j.Kind, j.Archive, j.Group, j.By, j.Status, took, j.Done, j.Total, zd)
	if j.Checksum != "" {
		fmt.Fprintf(w, "  checksum sha256:%s\n", j.Checksum)
	}
	for _, s := range j.Steps {
		line := fmt.Sprintf("  %s (%s) on %s: %s", s.InstanceID, s.Name, s.HostID, s.Status)
		if !s.Started.IsZero() && !s.Ended.IsZero() {
			line += " in " + duration(s.Ended.Sub(s.Started))
		}
		if s.Error != "" {
			line += ": " + s.Error
		}
		fmt.Fprintln(w, line)
	}
	if j.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", j.Error)
	}
}

func duration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// deployments lists the archives, the groups' state and the recent jobs;
// with --job N one job.
func (c *apiClient) deployments(ctx context.Context) error {
	if c.o.job > 0 {
		raw, _, err := c.do(ctx, http.MethodGet, fmt.Sprintf("/deployment/jobs/%d", c.o.job), nil)
		if err != nil {
			return err
		}
		if c.o.json {
			return c.printJSON(raw)
		}
		var j deployJob
		if err := json.Unmarshal(raw, &j); err != nil {
			return fmt.Errorf("job answer: %w", err)
		}
		c.printJob(&j)
		return nil
	}
	path := "/deployment/domain/deployments"
	if c.o.group != "" {
		gid, err := c.resolveGroup(ctx, c.o.group)
		if err != nil {
			return err
		}
		path += "?groupID=" + url.QueryEscape(gid)
	}
	raw, _, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	if c.o.json {
		return c.printJSON(raw)
	}
	var v struct {
		Archives []deployMeta `json:"archives"`
		Groups   []struct {
			GroupID    string   `json:"groupID"`
			Name       string   `json:"name"`
			Archive    int      `json:"archive"`
			Consistent bool     `json:"consistent"`
			Reasons    []string `json:"reasons"`
			Instances  []struct {
				ID              string `json:"id"`
				Name            string `json:"name"`
				HostID          string `json:"hostID"`
				Status          string `json:"status"`
				Archive         int    `json:"archive"`
				DeployedArchive int    `json:"deployedArchive"`
				InService       *bool  `json:"inService"`
			} `json:"instances"`
		} `json:"groups"`
		Jobs []deployJob `json:"jobs"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("deployments answer: %w", err)
	}
	w := c.env.Stdout
	fmt.Fprintln(w, "archives:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  GROUP\tARCHIVE\tWHEN\tBY\tCHECKSUM\tFILES\tCOMMENT")
	if len(v.Archives) == 0 {
		fmt.Fprintln(tw, "  (none)\t\t\t\t\t\t")
	}
	for _, m := range v.Archives {
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\tsha256:%.12s\t%s\t%s\n", m.Group, m.ID, m.At.Local().Format("2006-01-02 15:04:05"), m.By, m.Checksum, strings.Join(m.Files, ","), m.Comment)
	}
	tw.Flush()
	fmt.Fprintln(w, "\ngroups:")
	stored := map[string]bool{}
	for _, m := range v.Archives {
		stored[m.Group] = true
	}
	for _, g := range v.Groups {
		if len(g.Instances) == 0 && !stored[g.GroupID] {
			continue // no gateway instance, nothing deployed (the Node Manager Group)
		}
		state := "consistent, "
		if g.Archive == 0 {
			state += "no archive deployed (group.yaml)"
		} else {
			state += fmt.Sprintf("archive %d", g.Archive)
		}
		if !g.Consistent {
			state = "INCONSISTENT"
		}
		fmt.Fprintf(w, "  %s (%s): %s\n", g.GroupID, g.Name, state)
		for _, r := range g.Reasons {
			fmt.Fprintf(w, "    - %s\n", r)
		}
		if len(g.Instances) == 0 {
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "    INSTANCE\tNAME\tHOST\tSTATUS\tSERVES\tON DISK\tIN SERVICE")
		for _, in := range g.Instances {
			serves := "-"
			if in.Status == "running" {
				serves = archiveLabel(in.Archive)
			}
			inService := "-"
			if in.InService != nil {
				inService = strconv.FormatBool(*in.InService)
			}
			fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\t%s\t%s\t%s\n", in.ID, in.Name, in.HostID, in.Status, serves, archiveLabel(in.DeployedArchive), inService)
		}
		tw.Flush()
	}
	if len(v.Jobs) > 0 {
		fmt.Fprintln(w, "\nrecent rollouts (gatehouse deployments --job N for the steps):")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		// STATUS is the last column: a long error does not widen the others.
		fmt.Fprintln(tw, "  JOB\tGROUP\tKIND\tARCHIVE\tBY\tSTARTED\tINSTANCES\tSTATUS")
		for i, j := range v.Jobs {
			if i == 10 {
				break
			}
			status := j.Status
			if j.Error != "" {
				status += ": " + truncate(j.Error, 300)
			}
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%d\t%s\t%s\t%d/%d\t%s\n", j.ID, j.Group, j.Kind, j.Archive, j.By, j.Created.Local().Format("2006-01-02 15:04:05"), j.Done, j.Total, status)
		}
		tw.Flush()
	}
	return nil
}

// archiveLabel names an instance's archive: a number, 0 (the group's
// undeployed group.yaml) or -1 (its deployment.json cannot be read).
func archiveLabel(n int) string {
	switch {
	case n == 0:
		return "group.yaml"
	case n < 0:
		return "unreadable"
	}
	return strconv.Itoa(n)
}

// downloadArchive writes archive --archive N of -g to -o, after checking
// it against the X-Archive-Checksum the server sends; nothing is written
// when it does not match.
func (c *apiClient) downloadArchive(ctx context.Context) error {
	gid, err := c.resolveGroup(ctx, c.o.group)
	if err != nil {
		return err
	}
	b, resp, err := c.sendRaw(ctx, apiRequest{Method: http.MethodGet, Path: fmt.Sprintf("/deployment/archive/%s/%d", url.PathEscape(gid), c.o.archive),
		Accept: "application/gzip, application/json"})
	if err != nil {
		return err
	}
	algo, want, _ := strings.Cut(resp.Header.Get("X-Archive-Checksum"), ":")
	if algo != "sha256" || want == "" {
		return fmt.Errorf("the answer has no X-Archive-Checksum: sha256:… header (got %q); nothing was written", resp.Header.Get("X-Archive-Checksum"))
	}
	sum := sha256.Sum256(b)
	got := hex.EncodeToString(sum[:])
	if got != strings.ToLower(want) {
		return fmt.Errorf("archive %d of %s does not match its checksum: the %d bytes received have sha256:%s, the server says sha256:%s; nothing was written", c.o.archive, gid, len(b), got, want)
	}
	report := c.env.Stdout
	if c.o.output == "-" {
		if _, err := c.env.Stdout.Write(b); err != nil {
			return err
		}
		report = c.env.Stderr
	} else if err := home.WriteFileAtomic(c.o.output, b, 0o600); err != nil {
		return fmt.Errorf("writing the archive: %w", err)
	}
	if c.o.json && c.o.output != "-" {
		out, _ := json.Marshal(map[string]any{"group": gid, "archive": c.o.archive, "file": c.o.output, "size": len(b), "checksum": "sha256:" + got})
		return c.printJSON(out)
	}
	fmt.Fprintf(report, "wrote archive %d of %s to %s: %d bytes, sha256:%s (verified)\n", c.o.archive, gid, c.o.output, len(b), got)
	return nil
}

// printDryRun prints the answer of a dry run: valid, and the difference
// with what the group runs.
func (c *apiClient) printDryRun(file, gid string, raw []byte) error {
	if c.o.json {
		return c.printJSON(raw)
	}
	var r struct {
		Checksum, Against, Diff string
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return fmt.Errorf("dry run answer: %w", err)
	}
	fmt.Fprintf(c.env.Stdout, "%s is valid for %s (sha256:%s); nothing was stored.\n", file, gid, r.Checksum)
	if r.Diff == "" {
		fmt.Fprintf(c.env.Stdout, "It is the same as %s, which the group runs.\n", r.Against)
		return nil
	}
	fmt.Fprintf(c.env.Stdout, "Changes against %s, which the group runs:\n%s", r.Against, r.Diff)
	return nil
}
