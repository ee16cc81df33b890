package anm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aymanbagabas/go-udiff"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/deploy"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/supervisor"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// The deployment part of the management API (docs/deployment.md):
//
//	GET  /api/deployment/domain/deployments                  archives, groups' state, recent jobs
//	POST /api/deployment/group/configuration/file/{groupID}  upload (validate, store, roll out)
//	GET  /api/deployment/archive/{groupID}/{archiveID}       download an archive (tar.gz)
//	POST /api/deployment/group/deploy/{groupID}/{archiveID}  roll out a stored archive (rollback, redeploy)
//	GET  /api/deployment/group/{groupID}                     a group's state: consistent or not
//	GET  /api/deployment/jobs[/{jobID}]                      rollouts and their progress

// deploymentsView is the answer of GET /api/deployment/domain/deployments.
type deploymentsView struct {
	Archives []deploy.Meta     `json:"archives"`
	Groups   []groupDeployment `json:"groups"`
	Jobs     []Job             `json:"jobs"`
}

// groupDeployment is a group's deployment state. Consistent: every gateway
// instance of the group is known to run, or to start from, one same
// archive (Archive; 0 = the undeployed group.yaml), and every running one
// is in its load balancer's pool.
type groupDeployment struct {
	GroupID    string `json:"groupID"`
	Name       string `json:"name"`
	Archive    int    `json:"archive"`
	Consistent bool   `json:"consistent"`
	// LatestArchive is the group's newest stored archive (0: none); a
	// consistent group may be on an older one (a rollback, or a rollout
	// that failed before it changed any instance).
	LatestArchive int                  `json:"latestArchive"`
	Reasons       []string             `json:"reasons,omitempty"`
	Instances     []instanceDeployment `json:"instances"`
	LastJob       *Job                 `json:"lastJob,omitempty"`
}

type instanceDeployment struct {
	ID              string `json:"id"`
	Name            string `json:"name"`
	HostID          string `json:"hostID"`
	Status          string `json:"status"`
	Archive         int    `json:"archive"`         // what it serves now (running instances)
	DeployedArchive int    `json:"deployedArchive"` // what its files name: what it starts from
	InService       *bool  `json:"inService,omitempty"`
	// OutOfServiceUntil: when an out-of-service lease runs out.
	OutOfServiceUntil time.Time `json:"outOfServiceUntil,omitzero"`
}

// uploadResult is the answer of an upload and of a rollout.
type uploadResult struct {
	Archive deploy.Meta `json:"archive"`
	Job     *Job        `json:"job,omitempty"`
}

// deploymentArea is /api/deployment. Uploads and rollouts are recorded in
// the audit log (recordUpload, recordRollout).
func (a *API) deploymentArea() area {
	rd := []string{"deployment.read", "deployment.write"}
	return area{name: "deployment", routes: []route{
		{pattern: "/api/deployment/domain/deployments", ops: map[string]op{http.MethodGet: read(a.listDeployments, "listDeployments", rd...)}},
		{pattern: "/api/deployment/group/configuration/file/{groupID}", ops: map[string]op{http.MethodPost: change(a.uploadConfiguration, "uploadConfiguration", recorded("recordUpload, and the rollout that follows by recordRollout"), "deployment.write")}},
		{pattern: "/api/deployment/archive/{groupID}/{archiveID}", ops: map[string]op{
			http.MethodGet: read(a.downloadArchive, "downloadArchive", rd...),
			http.MethodPut: change(a.setArchiveProperties, "setArchiveProperties", recorded("change archive"), "deployment.write")}},
		{pattern: "/api/deployment/group/deploy/{groupID}/{archiveID}", ops: map[string]op{http.MethodPost: change(a.deployArchive, "deployArchive", recorded("recordRollout"), "deployment.write")}},
		{pattern: "/api/deployment/group/{groupID}", ops: map[string]op{http.MethodGet: read(a.getGroupDeployment, "getGroupDeployment", rd...)}},
		{pattern: "/api/deployment/jobs", ops: map[string]op{http.MethodGet: read(a.listJobs, "listJobs", rd...)}},
		{pattern: "/api/deployment/jobs/{jobID}", ops: map[string]op{http.MethodGet: read(a.getJob, "getJob", rd...)}},
	}}
}

// GET /api/deployment/domain/deployments[?groupID=]
func (a *API) listDeployments(w http.ResponseWriter, r *http.Request) {
	t, ok := a.load(w, r)
	if !ok {
		return
	}
	gid := r.URL.Query().Get("groupID")
	var metas []deploy.Meta
	var err error
	if gid != "" {
		if _, err = t.Group(gid); err == nil {
			metas, err = a.archives.List(gid)
		}
	} else {
		metas, err = a.archives.ListAll()
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if metas == nil {
		metas = []deploy.Meta{}
	}
	v := deploymentsView{Archives: metas, Groups: []groupDeployment{}, Jobs: a.jobs.list(gid)}
	_, states := a.allStates(r.Context(), t)
	for i := range t.Groups {
		if gid == "" || t.Groups[i].ID == gid {
			v.Groups = append(v.Groups, a.groupDeployment(&t.Groups[i], states))
		}
	}
	apihttp.WriteResult(w, http.StatusOK, v)
}

// GET /api/deployment/group/{groupID}
func (a *API) getGroupDeployment(w http.ResponseWriter, r *http.Request) {
	t, ok := a.load(w, r)
	if !ok {
		return
	}
	g, err := t.Group(r.PathValue("groupID"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	_, states := a.allStates(r.Context(), t)
	apihttp.WriteResult(w, http.StatusOK, a.groupDeployment(g, states))
}

// groupDeployment works out whether g is consistent from its instances'
// states (states: by service id; missing = its host did not answer).
func (a *API) groupDeployment(g *topology.Group, states map[string]supervisor.InstanceState) groupDeployment {
	v := groupDeployment{GroupID: g.ID, Name: g.Name, Consistent: true, Instances: []instanceDeployment{}}
	if ms, err := a.archives.List(g.ID); err == nil && len(ms) > 0 {
		v.LatestArchive = ms[len(ms)-1].ID
	}
	if js := a.jobs.list(g.ID); len(js) > 0 {
		v.LastJob = &js[0]
	}
	seen := map[int]bool{}
	for _, s := range g.Services {
		if s.Type != topology.TypeGateway {
			continue
		}
		st, known := states[s.ID]
		d := instanceDeployment{ID: s.ID, Name: s.Name, HostID: s.HostID, Status: supervisor.StatusUnknown}
		if known {
			d.Status, d.Archive, d.DeployedArchive, d.InService, d.OutOfServiceUntil = st.Status, st.Archive, st.DeployedArchive, st.InService, st.OutOfServiceUntil
		}
		v.Instances = append(v.Instances, d)
		switch {
		case !known:
			v.Reasons = append(v.Reasons, fmt.Sprintf("%s: its host %s did not answer", s.ID, s.HostID))
			continue
		case d.DeployedArchive < 0:
			v.Reasons = append(v.Reasons, fmt.Sprintf("%s: its deployment.json cannot be read", s.ID))
			continue
		case d.Status == supervisor.StatusRunning && st.ConfigChecksum != "" && d.Archive != d.DeployedArchive:
			v.Reasons = append(v.Reasons, fmt.Sprintf("%s serves archive %d but its files name archive %d", s.ID, d.Archive, d.DeployedArchive))
		}
		if d.Status == supervisor.StatusRunning && d.InService != nil && !*d.InService {
			// Out of the pool: the load balancer has lost its capacity.
			back := "until it is put back (POST /deployment/lb through /api/router)"
			if !st.OutOfServiceUntil.IsZero() {
				back = "until its lease runs out at " + st.OutOfServiceUntil.UTC().Format(time.RFC3339)
			}
			v.Reasons = append(v.Reasons, fmt.Sprintf("%s is out of its load balancer's pool (/healthchecklb answers 503) %s", s.ID, back))
		}
		seen[d.DeployedArchive] = true
	}
	if len(seen) > 1 {
		var ids []string
		for _, d := range v.Instances {
			ids = append(ids, fmt.Sprintf("%s: %d", d.ID, d.DeployedArchive))
		}
		v.Reasons = append(v.Reasons, "the instances are on different archives ("+strings.Join(ids, ", ")+")")
	}
	v.Consistent = len(v.Reasons) == 0
	if v.Consistent {
		for id := range seen {
			v.Archive = id
		}
	}
	return v
}

// allStates is every gateway instance's state: this host's from the
// supervisor, the others' from their node managers (missing when one did
// not answer); and the status of each service as remoteStatuses gives it,
// with this host's instances added (so that a.status need not probe them
// again).
func (a *API) allStates(ctx context.Context, t *topology.Topology) (map[string]string, map[string]supervisor.InstanceState) {
	status, states := a.remoteStates(ctx, t)
	for _, st := range a.sup.States() {
		states[st.ID] = st
		if st.Status != "" {
			status[st.ID] = st.Status
		}
	}
	return status, states
}

// GET /api/deployment/jobs[?groupID=]
func (a *API) listJobs(w http.ResponseWriter, r *http.Request) {
	apihttp.WriteResult(w, http.StatusOK, a.jobs.list(r.URL.Query().Get("groupID")))
}

// GET /api/deployment/jobs/{jobID}
func (a *API) getJob(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.PathValue("jobID"))
	j, ok := a.jobs.get(id)
	if err != nil || !ok {
		a.fail(w, r, &apihttp.Error{Code: http.StatusNotFound, Msg: fmt.Sprintf("no deployment job %q on this Admin Node Manager (jobs are kept in memory, the last %d)", r.PathValue("jobID"), maxJobs)})
		return
	}
	apihttp.WriteResult(w, http.StatusOK, j)
}

// GET /api/deployment/archive/{groupID}/{archiveID}: the stored archive,
// verified against its checksum.
func (a *API) downloadArchive(w http.ResponseWriter, r *http.Request) {
	m, arch, err := a.storedArchive(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-archive-%d.tar.gz"`, m.Group, m.ID))
	w.Header().Set("Content-Length", strconv.Itoa(len(arch.Canonical)))
	w.Header().Set("ETag", `"sha256:`+m.Checksum+`"`)
	w.Header().Set("X-Archive-Checksum", "sha256:"+m.Checksum)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(arch.Canonical)
}

// storedArchive finds the archive the path names.
func (a *API) storedArchive(r *http.Request) (deploy.Meta, deploy.Archive, error) {
	t, err := a.store.Load()
	if err != nil {
		return deploy.Meta{}, deploy.Archive{}, err
	}
	gid := r.PathValue("groupID")
	if _, err := t.Group(gid); err != nil {
		return deploy.Meta{}, deploy.Archive{}, err
	}
	id, err := strconv.Atoi(r.PathValue("archiveID"))
	if err != nil || id < 1 {
		return deploy.Meta{}, deploy.Archive{}, &apihttp.Error{Code: http.StatusNotFound, Msg: fmt.Sprintf("archive %q: archive ids are numbers from 1", r.PathValue("archiveID"))}
	}
	m, arch, err := a.archives.Get(gid, id)
	switch {
	case errors.Is(err, deploy.ErrNotFound):
		return m, arch, &apihttp.Error{Code: http.StatusNotFound, Msg: fmt.Sprintf("group %s has no archive %d", gid, id), Err: err}
	case errors.Is(err, deploy.ErrCorrupt):
		return m, arch, &apihttp.Error{Code: http.StatusInternalServerError, Msg: fmt.Sprintf("archive %d of %s is corrupt on this Admin Node Manager (its checksum does not match); restore conf/deployments from a backup", id, gid), Err: err}
	case err != nil:
		return m, arch, err
	}
	return m, arch, nil
}

// PUT /api/deployment/archive/{groupID}/{archiveID} {"comment", "name"}:
// an archive's properties (managedomain menu 22); the archive itself never
// changes. A field left out is kept.
func (a *API) setArchiveProperties(w http.ResponseWriter, r *http.Request) {
	gid := r.PathValue("groupID")
	var b struct {
		Comment *string `json:"comment"`
		Name    *string `json:"name"`
	}
	err := apihttp.ReadBody(w, r, &b, `{"comment": "…", "name": "…"}`)
	if err == nil && b.Comment == nil && b.Name == nil {
		err = &apihttp.Error{Code: http.StatusBadRequest, Msg: `want {"comment": "…"}, {"name": "…"} or both`}
	}
	var m deploy.Meta
	if err == nil {
		m, _, err = a.storedArchive(r)
	}
	if err == nil {
		m, err = a.archives.SetProperties(gid, m.ID, b.Comment, b.Name)
		if errors.Is(err, deploy.ErrInvalid) {
			err = &apihttp.Error{Code: http.StatusBadRequest, Msg: err.Error(), Err: err}
		}
	}
	detail := ""
	if b.Comment != nil {
		detail = fmt.Sprintf("comment %q", *b.Comment)
	}
	if b.Name != nil {
		detail = strings.TrimPrefix(detail+fmt.Sprintf(", name %q", *b.Name), ", ")
	}
	targets := []string{gid}
	if m.ID > 0 {
		targets = append(targets, fmt.Sprintf("archive-%d", m.ID))
	}
	a.record(r.Context(), actor(r), "change archive", targets, detail, apihttp.ClientMessage(err))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	apihttp.WriteResult(w, http.StatusOK, m)
}

// POST /api/deployment/group/configuration/file/{groupID}?comment=&deploy=&async=
//
// The body is the configuration: one YAML document or a tar.gz of YAML
// files (docs/deployment-archives.md), sent raw or as the "file" part of
// multipart/form-data (with an optional "comment" part). It is validated
// (400 with file and line, nothing stored), stored as the group's next
// archive and, unless deploy=false, rolled out to the group's instances:
// to the end before answering (200; 502 naming the instance that did not
// take it), or in the background with async=true (202, the job to follow).
func (a *API) uploadConfiguration(w http.ResponseWriter, r *http.Request) {
	gid := r.PathValue("groupID")
	q := r.URL.Query()
	doDeploy, err := boolParam(q.Get("deploy"), "deploy", true)
	var async, dryRun bool
	if err == nil {
		async, err = boolParam(q.Get("async"), "async", false)
	}
	if err == nil {
		dryRun, err = boolParam(q.Get("dryRun"), "dryRun", false)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var m deploy.Meta
	var outcome error
	recorded := false
	defer func() {
		if !recorded {
			a.recordUpload(r, gid, m, outcome)
		}
	}()
	// Reading and validating an upload takes memory (a bounded multiple
	// of its size): only so many at once; the others wait a little, then
	// are told to retry.
	release, err := a.uploadSlot(r.Context())
	if err != nil {
		outcome = err
		w.Header().Set("Retry-After", "5")
		a.fail(w, r, err)
		return
	}
	defer release()
	data, comment, err := readUpload(w, r)
	if err != nil {
		outcome = err
		a.fail(w, r, err)
		return
	}
	if c := q.Get("comment"); c != "" {
		comment = c
	}
	t, ok := a.load(w, r)
	if !ok {
		outcome = errors.New("the topology could not be read")
		return
	}
	if g, err := t.Group(gid); err != nil {
		outcome = err
		a.fail(w, r, err)
		return
	} else if g.IsNodeManagerGroup() {
		err := &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("group %s is the %s: it runs no gateway and takes no configuration; deploy to a group of instances", gid, topology.NodeManagerGroupName)}
		outcome = err
		a.fail(w, r, err)
		return
	}
	if dryRun {
		// Validated, compared with what runs, and nothing else: nothing is
		// stored or changed, so there is no audit entry.
		recorded = true
		arch, err := a.validateUpload(t, gid, data)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		apihttp.WriteResult(w, http.StatusOK, a.dryRun(r.Context(), t, gid, arch))
		return
	}
	if doDeploy {
		// Refused before anything is stored (a rollout that starts
		// between this check and ours still makes the upload's rollout
		// 409 after the archive is stored: the message says so).
		if err := a.jobs.busy(gid); err != nil {
			outcome = err
			a.fail(w, r, err)
			return
		}
	}
	arch, err := a.validateUpload(t, gid, data)
	if err != nil {
		outcome = err
		a.fail(w, r, err)
		return
	}
	// The upload's audit entry is written before the archive exists
	// (AddRecorded): a crash never leaves a stored archive unaudited.
	m, err = a.archives.AddRecorded(gid, arch, deploy.Meta{Comment: comment, By: actor(r).User, From: apihttp.RemoteIP(r)}, func(pending deploy.Meta) error {
		recorded = true
		return a.recordUploadStrict(r, gid, pending)
	})
	if err != nil {
		// Not stored: an entry says so (after the entry of the attempt,
		// when the files failed once it was written).
		recorded = false
		outcome = err
		a.fail(w, r, &apihttp.Error{Code: http.StatusBadRequest, Msg: err.Error(), Err: err})
		return
	}
	a.log.Info("archive stored", "group", gid, "archive", m.ID, "checksum", m.Checksum, "user", m.By)
	if !doDeploy {
		apihttp.WriteResult(w, http.StatusCreated, uploadResult{Archive: m})
		return
	}
	a.rollout(w, r, t, m, arch, kindDeploy, comment, async)
}

// POST /api/deployment/group/deploy/{groupID}/{archiveID}?comment=&async=
// rolls out a stored archive: a rollback when it is older than the group's
// newest archive, a redeploy otherwise.
func (a *API) deployArchive(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	async, err := boolParam(q.Get("async"), "async", false)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	m, arch, err := a.storedArchive(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	t, ok := a.load(w, r)
	if !ok {
		return
	}
	kind := kindRedeploy
	if all, err := a.archives.List(m.Group); err == nil && len(all) > 0 && all[len(all)-1].ID > m.ID {
		kind = kindRollback
	}
	a.rollout(w, r, t, m, arch, kind, q.Get("comment"), async)
}

// rollout plans and runs the rollout of m and answers.
func (a *API) rollout(w http.ResponseWriter, r *http.Request, t *topology.Topology, m deploy.Meta, arch deploy.Archive, kind, comment string, async bool) {
	p, err := a.planRollout(t, m.Group, m, arch)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if len(p.instances) == 0 {
		a.fail(w, r, &apihttp.Error{Code: http.StatusConflict, Msg: fmt.Sprintf("archive %d is stored, but %s: %v", m.ID, m.Group, errNotDeployable)})
		return
	}
	j, err := a.startRollout(r.Context(), actor(r), t, p, kind, comment, !async)
	if err != nil {
		var ae *apihttp.Error
		if kind == kindDeploy && errors.As(err, &ae) {
			ae.Msg = fmt.Sprintf("archive %d is stored but was not deployed: %s; deploy it later with POST /api/deployment/group/deploy/%s/%d", m.ID, ae.Msg, m.Group, m.ID)
		}
		a.fail(w, r, err)
		return
	}
	res := uploadResult{Archive: m, Job: &j}
	switch {
	case async:
		w.Header().Set("Location", fmt.Sprintf("/api/deployment/jobs/%d", j.ID))
		apihttp.WriteResult(w, http.StatusAccepted, res)
	case j.Status == jobFailed:
		a.fail(w, r, &apihttp.Error{Code: http.StatusBadGateway, Msg: fmt.Sprintf("%s of archive %d to %s failed (job %d, GET /api/deployment/jobs/%d): %s; the group is inconsistent until a deployment reaches every instance", kind, m.ID, m.Group, j.ID, j.ID, j.Error)})
	default:
		apihttp.WriteResult(w, http.StatusOK, res)
	}
}

// Uploads read and validated at once, and how long another waits for its
// turn before 429 (a variable so that a test can shorten it).
const maxUploadsAtOnce = 2

var uploadWait = 10 * time.Second

// uploadSlot waits up to uploadWait for a turn to read and validate an
// upload; release gives it back.
func (a *API) uploadSlot(ctx context.Context) (release func(), err error) {
	t := time.NewTimer(uploadWait)
	defer t.Stop()
	select {
	case a.uploads <- struct{}{}:
		return func() { <-a.uploads }, nil
	case <-t.C:
		return nil, &apihttp.Error{Code: http.StatusTooManyRequests, Msg: fmt.Sprintf("%d uploads are being validated; retry in a few seconds", maxUploadsAtOnce)}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// validateUpload normalizes and validates an upload: alone, and with the
// settings of every instance of the group on this host (the others check
// it when they reload it).
func (a *API) validateUpload(t *topology.Topology, gid string, data []byte) (deploy.Archive, error) {
	arch, err := deploy.Normalize(data)
	if err != nil {
		return arch, &apihttp.Error{Code: http.StatusBadRequest, Msg: "not a deployment archive, nothing was stored: " + err.Error(), Err: err}
	}
	files := a.conf.FilePolicy(a.h, gid)
	parsed, err := deploy.Parse(arch) // once: every load below reuses it
	var cfg *groupconf.Config
	if err == nil {
		// The group's own layers; what depends on an instance's settings
		// is checked below with each instance's (on this host; the others'
		// node managers refuse at the rollout, naming the instance).
		cfg, err = parsed.LoadGroup()
	}
	if err == nil {
		err = files.Check(cfg)
	}
	if err != nil {
		return arch, &apihttp.Error{Code: http.StatusBadRequest, Msg: "the configuration is not valid, nothing was stored: " + err.Error(), Err: err}
	}
	for _, ref := range t.Instances(a.conf.HostID) {
		if ref.Group.ID != gid {
			continue
		}
		il, err := groupconf.FileLayer(a.h.InstanceConfFile(gid, ref.Service.ID))
		if err != nil {
			return arch, err
		}
		cfg, err := parsed.Load(il)
		if err == nil {
			err = files.Check(cfg)
		}
		if err != nil {
			return arch, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("the configuration is not valid with the settings of instance %s (%q), nothing was stored: %v", ref.Service.ID, ref.Service.Name, err), Err: err}
		}
	}
	return arch, nil
}

// readUpload reads the configuration from the body: raw, or the "file"
// part of multipart/form-data (and its "comment" part).
func readUpload(w http.ResponseWriter, r *http.Request) (data []byte, comment string, err error) {
	apihttp.AllowSlowUpload(w)
	body := http.MaxBytesReader(w, r.Body, deploy.MaxUpload+1<<20)
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "multipart/form-data" {
		data, err = io.ReadAll(body)
		if err != nil {
			return nil, "", err
		}
		if len(data) == 0 {
			return nil, "", &apihttp.Error{Code: http.StatusBadRequest, Msg: "the body is empty; send a YAML file or a tar.gz of YAML files (docs/deployment-archives.md)"}
		}
		return data, "", nil
	}
	if params["boundary"] == "" {
		return nil, "", &apihttp.Error{Code: http.StatusBadRequest, Msg: "multipart/form-data without a boundary"}
	}
	mr := multipart.NewReader(body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, "", &apihttp.Error{Code: http.StatusBadRequest, Msg: "reading the multipart body: " + err.Error(), Err: err}
		}
		var buf bytes.Buffer
		if _, err := io.Copy(&buf, p); err != nil {
			return nil, "", err
		}
		switch p.FormName() {
		case "file":
			data = buf.Bytes()
		case "comment":
			comment = buf.String()
		}
	}
	if data == nil {
		return nil, "", &apihttp.Error{Code: http.StatusBadRequest, Msg: `the multipart body has no "file" part`}
	}
	return data, comment, nil
}

func boolParam(s, name string, def bool) (bool, error) {
	if s == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("%s=%q: want true or false", name, s)}
	}
	return b, nil
}

// recordUpload writes an upload to the audit log (the rollout that may
// follow is recorded by itself).
// recordUploadStrict writes the entry of an upload about to be stored; an
// error (the log cannot be written) keeps the archive from being stored.
func (a *API) recordUploadStrict(r *http.Request, gid string, m deploy.Meta) error {
	targets := []string{gid, fmt.Sprintf("archive-%d", m.ID)}
	detail := fmt.Sprintf("checksum %s, %d bytes, files %s", m.Checksum, m.Size, strings.Join(m.Files, ", "))
	if m.Comment != "" {
		detail += fmt.Sprintf(", comment %q", m.Comment)
	}
	act := actor(r)
	e := audit.Entry{User: act.User, Via: act.Via, Remote: act.Remote, Action: "upload archive", Targets: targets, Detail: detail}
	if _, err := a.audit.Log.Record(r.Context(), e); err != nil {
		a.audit.Warning(r.Context(), err)
		return fmt.Errorf("the audit log could not be written, so the archive is not stored: %w", err)
	}
	return nil
}

func (a *API) recordUpload(r *http.Request, gid string, m deploy.Meta, err error) {
	targets, detail := []string{gid}, ""
	if m.ID > 0 {
		targets = append(targets, fmt.Sprintf("archive-%d", m.ID))
		detail = fmt.Sprintf("checksum %s, %d bytes, files %s", m.Checksum, m.Size, strings.Join(m.Files, ", "))
		if m.Comment != "" {
			detail += fmt.Sprintf(", comment %q", m.Comment)
		}
	}
	a.record(r.Context(), actor(r), "upload archive", targets, detail, apihttp.ClientMessage(err))
}

// dryRunResult is the answer of an upload with dryRun=true.
type dryRunResult struct {
	Valid    bool   `json:"valid"`
	Checksum string `json:"checksum"`
	// Against is what the upload was compared with: "archive N" (the
	// archive the group runs, or its newest when it is not consistent on
	// one) or "group.yaml" (a group never deployed: its conf/group.yaml on
	// the Admin Node Manager's host).
	Against string `json:"against"`
	// Diff is a unified diff of each file, from Against to the upload;
	// empty when they are the same.
	Diff string `json:"diff"`
}

// dryRun compares arch, valid, with what group gid runs.
func (a *API) dryRun(ctx context.Context, t *topology.Topology, gid string, arch deploy.Archive) dryRunResult {
	res := dryRunResult{Valid: true, Checksum: arch.Checksum}
	old := map[string][]byte{}
	id := 0
	if g, err := t.Group(gid); err == nil {
		_, states := a.allStates(ctx, t)
		if d := a.groupDeployment(g, states); d.Consistent && d.Archive > 0 {
			id = d.Archive
		} else if d.LatestArchive > 0 {
			id = d.LatestArchive
		}
	}
	if id > 0 {
		if _, cur, err := a.archives.Get(gid, id); err == nil {
			res.Against = fmt.Sprintf("archive %d", id)
			for _, f := range cur.Files {
				old[f.Name] = f.Data
			}
		}
	}
	if res.Against == "" {
		res.Against = deploy.GroupFile
		if b, err := os.ReadFile(a.h.GroupConfFile(gid)); err == nil {
			old[deploy.GroupFile] = b
		}
	}
	names := map[string]bool{}
	upload := map[string][]byte{}
	for n := range old {
		names[n] = true
	}
	for _, f := range arch.Files {
		names[f.Name], upload[f.Name] = true, f.Data
	}
	var diff strings.Builder
	for _, n := range slices.Sorted(maps.Keys(names)) {
		diff.WriteString(udiff.Unified(res.Against+"/"+n, "upload/"+n, string(old[n]), string(upload[n])))
	}
	res.Diff = diff.String()
	return res
}
