package anm

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/deploy"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/nodeapi"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// A rollout takes one archive to every gateway instance of a group, one
// instance at a time, in id order (docs/deployment.md):
//
//  1. the archive is installed on every host of the group (nothing changes
//     for the instances yet; a host that cannot take it stops the rollout
//     before any instance changed);
//  2. for each instance, with zero-downtime deployment on: out of service
//     (/healthchecklb 503), wait delayBefore, deploy (pointer + reload), back
//     in service, wait delayAfter (not after the last one); without it just
//     the deploy;
//  3. the first instance that does not take it (not running, its host
//     unreachable, its reload refused) stops the rollout: it is put back in
//     service still serving what it served, the instances after it are
//     skipped, and the job fails. The group is then inconsistent until a
//     deployment reaches every instance.
//
// Rollouts run detached from the request that asked for them (a client
// that goes away does not leave an instance out of service); one at a time
// per group. An instance is taken out of service with a lease
// (rolloutLease, renewed while its step lasts), so that it goes back in by
// itself when this process dies. Each job is journaled on disk at every
// change (journal.go; the last maxJobs are kept), a job the ANM was
// running when it stopped is resumed when it starts again (resume.go), and
// every rollout is in the audit log.

const (
	maxJobs = 100
	// rolloutLease is how long an instance taken out of service by a
	// rollout stays out without the ANM renewing it (every third of it).
	rolloutLease = 30 * time.Second
	// rolloutTimeout bounds a whole rollout beyond its configured delays.
	rolloutTimeout = 30 * time.Minute
)

// Step states.
const (
	stepPending   = "pending"
	stepOutOfLB   = "out-of-service"
	stepDeploying = "deploying"
	stepDone      = "deployed"
	stepFailed    = "failed"
	stepSkipped   = "skipped"
	jobRunning    = "running"
	jobSucceeded  = "succeeded"
	jobFailed     = "failed"
	// jobInterrupted: the ANM stopped (crashed) while the job ran; it was
	// resumed as a new job (ResumedBy) or, when it could not be, left.
	jobInterrupted = "interrupted"
	kindDeploy     = "deploy"
	kindRollback   = "rollback"
	kindRedeploy   = "redeploy"
	seconds        = float64(time.Second)
	zeroDowntimeOn = "on"
)

// JobStep is one instance of a rollout.
type JobStep struct {
	InstanceID string    `json:"instanceID"`
	Name       string    `json:"name"`
	HostID     string    `json:"hostID"`
	Status     string    `json:"status"`
	Error      string    `json:"error,omitempty"`
	Started    time.Time `json:"started,omitzero"`
	Ended      time.Time `json:"ended,omitzero"`
}

// Job is a rollout of an archive to a group, as GET
// /api/deployment/jobs/{jobID} shows it.
type Job struct {
	ID           int       `json:"id"`
	Group        string    `json:"groupID"`
	Archive      int       `json:"archive"`
	Checksum     string    `json:"checksum"`
	Kind         string    `json:"kind"` // deploy, rollback (to an earlier archive), redeploy
	By           string    `json:"by"`
	Comment      string    `json:"comment,omitempty"`
	Status       string    `json:"status"` // running, succeeded, failed
	Error        string    `json:"error,omitempty"`
	ZeroDowntime bool      `json:"zeroDowntime"`
	DelayBefore  float64   `json:"delayBefore"` // seconds
	DelayAfter   float64   `json:"delayAfter"`
	Done         int       `json:"done"` // instances deployed
	Total        int       `json:"total"`
	Steps        []JobStep `json:"steps"`
	Created      time.Time `json:"created"`
	Ended        time.Time `json:"ended,omitzero"`
	// ResumedFrom is the interrupted job this one finishes; ResumedBy, on
	// an interrupted job, the job that finishes it (resume.go).
	ResumedFrom int `json:"resumedFrom,omitempty"`
	ResumedBy   int `json:"resumedBy,omitempty"`
}

// jobs holds the rollouts of this ANM.
type jobs struct {
	mu      sync.Mutex
	journal journal // on disk: every change is saved before the rollout goes on
	next    int
	byID    map[int]*Job
	order   []int
	running map[string]int // group → job
	// interrupted are the jobs LoadJobs found running in the journal,
	// until ResumeRollouts takes them.
	interrupted []*Job
	wg          sync.WaitGroup
}

func newJobs() *jobs { return &jobs{byID: map[int]*Job{}, running: map[string]int{}} }

// busy is a 409 while a rollout to group runs, nil otherwise.
func (js *jobs) busy(group string) error {
	js.mu.Lock()
	defer js.mu.Unlock()
	return js.busyLocked(group)
}

func (js *jobs) busyLocked(group string) error {
	if id, ok := js.running[group]; ok {
		return &apihttp.Error{Code: http.StatusConflict, Msg: fmt.Sprintf("a deployment to %s is running (job %d, GET /api/deployment/jobs/%d); try again when it has finished", group, id, id)}
	}
	return nil
}

// begin registers a job for its group and journals it; 409 while another
// runs there, 500 when the journal cannot be written (the rollout does not
// start).
func (js *jobs) begin(j *Job) error {
	js.mu.Lock()
	defer js.mu.Unlock()
	if err := js.busyLocked(j.Group); err != nil {
		return err
	}
	j.ID = js.next + 1
	j.Status = jobRunning
	if err := js.journal.save(j); err != nil {
		return &apihttp.Error{Code: http.StatusInternalServerError, Msg: "the rollout was not started: " + err.Error(), Err: err}
	}
	js.next = j.ID
	js.add(j)
	return nil
}

// add lists j (mu held), forgetting the oldest finished jobs beyond
// maxJobs (running ones stay).
func (js *jobs) add(j *Job) {
	js.byID[j.ID] = j
	js.order = append(js.order, j.ID)
	if j.Status == jobRunning {
		js.running[j.Group] = j.ID
	}
	for i := 0; len(js.order) > maxJobs && i < len(js.order); {
		if id := js.order[i]; js.byID[id].Status != jobRunning {
			delete(js.byID, id)
			js.order = append(js.order[:i], js.order[i+1:]...)
			js.journal.remove(id)
			continue
		}
		i++
	}
}

// wait waits for the rollouts running in the background to end: stopping
// the node manager in the middle of one would leave an instance out of
// its load balancer's pool.
func (js *jobs) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { js.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stopping with a deployment still running: %w", ctx.Err())
	}
}

// update changes a job under the lock and journals it. A journal that
// cannot be written is logged: the rollout goes on (stopping it half-way
// would do more harm than a journal a step behind).
func (js *jobs) update(j *Job, fn func(*Job)) {
	js.mu.Lock()
	defer js.mu.Unlock()
	fn(j)
	if j.Status != jobRunning && js.running[j.Group] == j.ID {
		delete(js.running, j.Group)
	}
	if err := js.journal.save(j); err != nil && js.journal.log != nil {
		js.journal.log.Error("rollout journal not written", "job", j.ID, "error", err.Error())
	}
}

// get returns a copy of job id.
func (js *jobs) get(id int) (Job, bool) {
	js.mu.Lock()
	defer js.mu.Unlock()
	j, ok := js.byID[id]
	if !ok {
		return Job{}, false
	}
	return j.copy(), true
}

// list returns copies of the jobs, newest first, optionally of one group.
func (js *jobs) list(group string) []Job {
	js.mu.Lock()
	defer js.mu.Unlock()
	out := []Job{}
	for i := len(js.order) - 1; i >= 0; i-- {
		if j := js.byID[js.order[i]]; group == "" || j.Group == group {
			out = append(out, j.copy())
		}
	}
	return out
}

func (j *Job) copy() Job {
	c := *j
	c.Steps = append([]JobStep(nil), j.Steps...)
	return c
}

// rolloutPlan is what a rollout needs, resolved before it starts.
type rolloutPlan struct {
	meta      deploy.Meta
	archive   deploy.Archive
	instances []topology.Service // the group's gateway instances, in id order
	zdt       groupconf.ZDTDeployment
}

// planRollout resolves group gid's instances and the archive's
// zero-downtime settings (those of the configuration being deployed).
func (a *API) planRollout(t *topology.Topology, gid string, m deploy.Meta, arch deploy.Archive) (rolloutPlan, error) {
	g, err := t.Group(gid)
	if err != nil {
		return rolloutPlan{}, err
	}
	p := rolloutPlan{meta: m, archive: arch}
	for _, s := range g.Services {
		if s.Type == topology.TypeGateway {
			p.instances = append(p.instances, s)
		}
	}
	sort.Slice(p.instances, func(i, j int) bool { return idLess(p.instances[i].ID, p.instances[j].ID) })
	parsed, err := groupconf.Parse(archiveLayers(arch)...)
	var cfg *groupconf.Config
	if err == nil {
		cfg, err = parsed.LoadGroup() // the zero-downtime settings are the group's
	}
	if err != nil {
		return rolloutPlan{}, &apihttp.Error{Code: http.StatusBadRequest, Msg: "the archive's configuration is not valid: " + err.Error(), Err: err}
	}
	p.zdt = cfg.ZeroDowntime.Deployment
	return p, nil
}

// idLess orders ids such as instance-2 < instance-10.
func idLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// archiveLayers are the archive's files as configuration layers, named as
// in the archive so that errors read "group.yaml:7: …".
func archiveLayers(arch deploy.Archive) []groupconf.Layer {
	ls := make([]groupconf.Layer, 0, len(arch.Files))
	for _, f := range arch.Files {
		ls = append(ls, groupconf.Layer{Name: f.Name, YAML: f.Data})
	}
	return ls
}

// startRollout registers a job for plan and runs it: to its end when wait
// is true, otherwise in the background. The job is returned as it stands.
func (a *API) startRollout(ctx context.Context, act topology.Actor, t *topology.Topology, p rolloutPlan, kind, comment string, wait bool) (Job, error) {
	return a.startJob(ctx, act, t, p, &Job{Kind: kind, Comment: comment}, wait)
}

// startJob is startRollout of a job whose kind, comment and resumedFrom are
// set.
func (a *API) startJob(ctx context.Context, act topology.Actor, t *topology.Topology, p rolloutPlan, j *Job, wait bool) (Job, error) {
	*j = Job{
		Group: p.meta.Group, Archive: p.meta.ID, Checksum: p.meta.Checksum, Kind: j.Kind, ResumedFrom: j.ResumedFrom,
		By: act.User, Comment: j.Comment, ZeroDowntime: p.zdt.Enabled,
		DelayBefore: float64(p.zdt.DelayBefore.D()) / seconds, DelayAfter: float64(p.zdt.DelayAfter.D()) / seconds,
		Total: len(p.instances), Created: time.Now().UTC(),
	}
	for _, s := range p.instances {
		j.Steps = append(j.Steps, JobStep{InstanceID: s.ID, Name: s.Name, HostID: s.HostID, Status: stepPending})
	}
	if err := a.jobs.begin(j); err != nil {
		return Job{}, err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rolloutTimeout+p.zdt.DelayBefore.D()*time.Duration(len(p.instances))+p.zdt.DelayAfter.D()*time.Duration(len(p.instances)))
	done := make(chan struct{})
	a.jobs.wg.Add(1)
	go func() {
		defer a.jobs.wg.Done()
		defer close(done)
		defer cancel()
		err := a.runRollout(ctx, t, p, j)
		a.recordRollout(ctx, act, j, err)
	}()
	if wait {
		<-done
	}
	c, _ := a.jobs.get(j.ID)
	return c, nil
}

// runRollout does the rollout of job j.
func (a *API) runRollout(ctx context.Context, t *topology.Topology, p rolloutPlan, j *Job) (err error) {
	log := a.log.With("job", j.ID, "group", j.Group, "archive", j.Archive)
	log.Info("rollout started", "instances", len(p.instances), "zeroDowntime", p.zdt.Enabled)
	defer func() {
		a.jobs.update(j, func(j *Job) {
			j.Ended = time.Now().UTC()
			if err != nil {
				j.Status, j.Error = jobFailed, err.Error()
				for i := range j.Steps {
					if j.Steps[i].Status == stepPending {
						j.Steps[i].Status = stepSkipped
					}
				}
				return
			}
			j.Status = jobSucceeded
		})
		if err != nil {
			log.Warn("rollout failed", "error", err.Error())
		} else {
			log.Info("rollout succeeded")
		}
	}()

	// 1. Install the archive on every host of the group.
	hosts := map[string]bool{}
	for _, s := range p.instances {
		if hosts[s.HostID] {
			continue
		}
		hosts[s.HostID] = true
		if err := a.installOn(ctx, t, s.HostID, p.meta, p.archive); err != nil {
			return fmt.Errorf("installing archive %d on host %s: %w", p.meta.ID, nodeapi.HostLabel(t, s.HostID), err)
		}
	}

	// 2. One instance at a time.
	for i, s := range p.instances {
		step := func(fn func(*JobStep)) { a.jobs.update(j, func(j *Job) { fn(&j.Steps[i]) }) }
		step(func(st *JobStep) { st.Started = time.Now().UTC() })
		if err := a.deployOne(ctx, t, p, &s, step); err != nil {
			step(func(st *JobStep) { st.Status, st.Error, st.Ended = stepFailed, err.Error(), time.Now().UTC() })
			return fmt.Errorf("instance %s (%q) on host %s: %w; the rollout stopped there (%d of %d instances on archive %d)",
				s.ID, s.Name, nodeapi.HostLabel(t, s.HostID), err, i, len(p.instances), p.meta.ID)
		}
		step(func(st *JobStep) { st.Status, st.Ended = stepDone, time.Now().UTC() })
		a.jobs.update(j, func(j *Job) { j.Done++ })
		if p.zdt.Enabled && i < len(p.instances)-1 {
			if err := sleepCtx(ctx, p.zdt.DelayAfter.D()); err != nil {
				return err
			}
		}
	}
	return nil
}

// deployOne deploys to instance s, out of its load balancer's pool around
// it when zero-downtime deployment is on.
func (a *API) deployOne(ctx context.Context, t *topology.Topology, p rolloutPlan, s *topology.Service, step func(func(*JobStep))) error {
	if p.zdt.Enabled {
		step(func(st *JobStep) { st.Status = stepOutOfLB })
		if err := a.inServiceOn(ctx, t, s, false, a.lease()); err != nil {
			return fmt.Errorf("taking it out of service: %w", err)
		}
		stopRenewing := a.renewLease(ctx, t, s)
		defer func() {
			stopRenewing()
			// Back in service whatever happened: it serves either the new
			// archive or, having refused it, what it served before.
			if err := a.inServiceOn(context.WithoutCancel(ctx), t, s, true, 0); err != nil {
				a.log.Error("putting an instance back in service (its lease brings it back)", "instance", s.ID, "error", err.Error())
			}
		}()
		if err := sleepCtx(ctx, p.zdt.DelayBefore.D()); err != nil {
			return err
		}
	}
	step(func(st *JobStep) { st.Status = stepDeploying })
	return a.deployTo(ctx, t, s, p.meta)
}

// lease is the out-of-service lease of a rollout step (rolloutLease, or a
// test's).
func (a *API) lease() time.Duration {
	if a.rolloutLease > 0 {
		return a.rolloutLease
	}
	return rolloutLease
}

// renewLease renews instance s's out-of-service lease every third of it
// until the function it returns is called (and has waited for the last
// renewal, so that none lands after the instance is put back).
func (a *API) renewLease(ctx context.Context, t *topology.Topology, s *topology.Service) (stop func()) {
	lease := a.lease()
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(lease / 3)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
				if err := a.inServiceOn(ctx, t, s, false, lease); err != nil {
					a.log.Warn("renewing an instance's out-of-service lease", "instance", s.ID, "error", err.Error())
				}
			}
		}
	}()
	return func() { close(quit); <-done }
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("the rollout ran out of time: %w", ctx.Err())
	}
}

// recordRollout writes a finished rollout to the audit log.
// The rollout's own error (not classify's: it is not an API answer) is
// the entry's error.
func (a *API) recordRollout(ctx context.Context, act topology.Actor, j *Job, err error) {
	detail := fmt.Sprintf("job %d, %d of %d instances, zero-downtime %t, checksum %s", j.ID, j.Done, j.Total, j.ZeroDowntime, j.Checksum)
	if j.Comment != "" {
		detail += fmt.Sprintf(", comment %q", j.Comment)
	}
	errMsg := ""
	if err != nil {
		errMsg = err.Error()
	}
	a.record(ctx, act, j.Kind+" archive", []string{j.Group, fmt.Sprintf("archive-%d", j.Archive)}, detail, errMsg)
}

// errNotDeployable: the group has no gateway instance.
var errNotDeployable = errors.New("the group has no gateway instance to deploy to")
