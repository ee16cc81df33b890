package anm

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/deploy"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// Resuming interrupted rollouts. When the ANM starts, LoadJobs reads the
// rollout journal (journal.go); a job still "running" there was cut off by
// the ANM's own death. ResumeRollouts then, for each:
//
//   - marks it "interrupted" (with how far it got) and records that in the
//     audit log;
//   - finishes it: a new job of the same archive and kind, resumedFrom the
//     old one, run by the ANM in the background, which skips the instances
//     already serving that archive and in service.
//
// Why finish rather than roll back: the archive was validated and chosen
// by an operator, the instances before the interrupted one already serve
// it, and a rollback would undo a change nobody asked to undo (for a first
// deployment there is not even an archive to go back to). The instance
// that was out of service when the ANM died went back in by itself when its
// lease ran out (rolloutLease). A rollout is not resumed when its group or
// archive is gone, or when the group has a newer archive than the one it
// was taking (deployed meanwhile by another ANM): the interrupted job says
// why, and the group shows inconsistent until an operator deploys.

// LoadJobs reads the rollout journal: finished jobs are listed again and
// new job ids follow the highest. Call it before serving (the Admin Node
// Manager only).
func (a *API) LoadJobs() error {
	if _, err := a.conf.Rollout.Lease(); err != nil {
		return fmt.Errorf("%s: %w", a.h.NodeManagerConf(), err)
	}
	loaded, maxID, err := a.jobs.journal.load()
	if err != nil {
		return err
	}
	js := a.jobs
	js.mu.Lock()
	defer js.mu.Unlock()
	js.next = max(js.next, maxID)
	for _, j := range loaded {
		if j.Status == jobRunning {
			// Not running any more: ResumeRollouts says how it ended.
			j.Status, j.Error, j.Ended = jobInterrupted, "interrupted: the Admin Node Manager stopped during the rollout", time.Now().UTC()
			js.interrupted = append(js.interrupted, j)
		}
		js.add(j)
	}
	return nil
}

// ResumeRollouts finishes the rollouts LoadJobs found interrupted, in the
// background (Wait waits for them too). Call it once the node manager
// serves and supervises.
func (a *API) ResumeRollouts(ctx context.Context) {
	js := a.jobs
	js.mu.Lock()
	todo := js.interrupted
	js.interrupted = nil
	js.mu.Unlock()
	for _, j := range todo {
		a.resume(ctx, j)
	}
}

// resumeActor is who the audit log names for a resumed rollout.
func resumeActor(j *Job) topology.Actor {
	return topology.Actor{User: j.By, Via: "anm/resume", Remote: "local"}
}

// resume marks j interrupted and starts the job that finishes it.
func (a *API) resume(ctx context.Context, j *Job) {
	done := 0
	var at string
	for _, st := range j.Steps {
		switch st.Status {
		case stepDone:
			done++
		case stepOutOfLB, stepDeploying:
			at = st.InstanceID
		}
	}
	how := fmt.Sprintf("interrupted: the Admin Node Manager stopped during the rollout (%d of %d instances deployed", done, j.Total)
	if at != "" {
		how += ", at " + at
	}
	how += ")"
	act := resumeActor(j)
	next, why := a.resumePlan(ctx, j)
	finish := func(msg string, by int) {
		a.jobs.update(j, func(j *Job) {
			j.Error, j.ResumedBy = msg, by
			for i := range j.Steps {
				if s := j.Steps[i].Status; s != stepDone && s != stepFailed {
					j.Steps[i].Status = stepSkipped
				}
			}
		})
		a.record(ctx, act, j.Kind+" archive", []string{j.Group, fmt.Sprintf("archive-%d", j.Archive)},
			fmt.Sprintf("job %d, %d of %d instances, zero-downtime %t, checksum %s", j.ID, done, j.Total, j.ZeroDowntime, j.Checksum), msg)
	}
	if why != "" {
		a.log.Warn("an interrupted rollout is not resumed", "job", j.ID, "group", j.Group, "archive", j.Archive, "reason", why)
		finish(how+"; not resumed: "+why, 0)
		return
	}
	nj := &Job{Kind: j.Kind, Comment: fmt.Sprintf("resumes job %d", j.ID), ResumedFrom: j.ID}
	got, err := a.startJob(ctx, act, next.t, next.plan, nj, false)
	if err != nil {
		finish(how+"; not resumed: "+err.Error(), 0)
		return
	}
	a.log.Warn("resuming an interrupted rollout", "job", j.ID, "resumedAs", got.ID, "group", j.Group, "archive", j.Archive)
	finish(fmt.Sprintf("%s; resumed as job %d", how, got.ID), got.ID)
}

type resumption struct {
	t    *topology.Topology
	plan rolloutPlan
}

// resumePlan is the rollout that finishes j, or why there is none.
func (a *API) resumePlan(ctx context.Context, j *Job) (resumption, string) {
	t, err := a.store.Load()
	if err != nil {
		return resumption{}, "the topology cannot be read: " + err.Error()
	}
	if _, err := t.Group(j.Group); err != nil {
		return resumption{}, "the group is gone"
	}
	ms, err := a.archives.List(j.Group)
	if err != nil {
		return resumption{}, "its archives cannot be listed: " + err.Error()
	}
	i := slices.IndexFunc(ms, func(m deploy.Meta) bool { return m.ID == j.Archive })
	if i < 0 {
		return resumption{}, fmt.Sprintf("archive %d is gone", j.Archive)
	}
	if j.Kind == kindDeploy && ms[len(ms)-1].ID != j.Archive {
		return resumption{}, fmt.Sprintf("the group has a newer archive (%d)", ms[len(ms)-1].ID)
	}
	m, arch, err := a.archives.Get(j.Group, j.Archive)
	if err != nil {
		return resumption{}, fmt.Sprintf("archive %d cannot be read: %v", j.Archive, err)
	}
	if m.Checksum != j.Checksum {
		return resumption{}, fmt.Sprintf("archive %d is not the one the job was deploying (checksum %s, the job's %s)", j.Archive, m.Checksum, j.Checksum)
	}
	p, err := a.planRollout(t, j.Group, m, arch)
	if err != nil {
		return resumption{}, err.Error()
	}
	// Instances already serving the archive, from it, and in service need
	// nothing more.
	_, states := a.allStates(ctx, t)
	p.instances = slices.DeleteFunc(p.instances, func(s topology.Service) bool {
		st, ok := states[s.ID]
		return ok && st.Archive == m.ID && st.DeployedArchive == m.ID && st.InService != nil && *st.InService
	})
	return resumption{t: t, plan: p}, ""
}
