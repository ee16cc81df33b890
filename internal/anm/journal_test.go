package anm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// Jobs are journaled at begin and at each update; a new jobs table loading
// the journal lists the finished ones again, continues the ids after the
// highest (an unreadable file's id included), marks a running one
// interrupted and hands it to ResumeRollouts; the files of jobs pruned
// beyond maxJobs are removed.
func TestJournal(t *testing.T) {
	h := home.Home{Dir: t.TempDir()}
	jn := newJournal(h, nil)
	js := newJobs()
	js.journal = jn
	j1 := &Job{Group: "group-2", Steps: []JobStep{{InstanceID: "instance-1", Status: stepPending}}}
	if err := js.begin(j1); err != nil {
		t.Fatal(err)
	}
	read := func(id int) string {
		b, err := os.ReadFile(jn.file(id))
		if err != nil {
			t.Fatalf("job %d's file: %v", id, err)
		}
		return string(b)
	}
	if got := read(1); !strings.Contains(got, `"status": "running"`) || !strings.Contains(got, `"pending"`) {
		t.Fatalf("after begin: %s", got)
	}
	js.update(j1, func(j *Job) { j.Steps[0].Status = stepOutOfLB })
	if got := read(1); !strings.Contains(got, `"out-of-service"`) {
		t.Fatalf("after a step: %s", got)
	}
	j2 := &Job{Group: "group-3"}
	js.begin(j2)
	js.update(j2, func(j *Job) { j.Status = jobSucceeded })
	os.WriteFile(jn.file(7), []byte("{not json"), 0o640)
	os.WriteFile(jn.file(5), []byte(`{"id": 4}`), 0o640) // holds another job: skipped
	os.WriteFile(filepath.Join(jn.dir, "notes.txt"), []byte("x"), 0o640)

	// A new ANM process.
	a := &API{jobs: newJobs()}
	a.jobs.journal = jn
	if err := a.LoadJobs(); err != nil {
		t.Fatal(err)
	}
	got := a.jobs.list("")
	if len(got) != 2 || got[0].ID != 2 || got[0].Status != jobSucceeded || got[1].ID != 1 || got[1].Status != jobInterrupted {
		t.Fatalf("loaded: %+v", got)
	}
	if len(a.jobs.interrupted) != 1 || a.jobs.interrupted[0].ID != 1 {
		t.Fatalf("interrupted: %+v", a.jobs.interrupted)
	}
	if err := a.jobs.busy("group-2"); err != nil {
		t.Fatalf("an interrupted job still blocks its group: %v", err)
	}
	j := &Job{Group: "group-2"}
	if err := a.jobs.begin(j); err != nil || j.ID != 8 {
		t.Fatalf("the next job: id %d %v, want 8 (after the unreadable 7.json)", j.ID, err)
	}
	// Pruning beyond maxJobs removes the files.
	for range maxJobs + 5 {
		j := &Job{Group: "group-9"}
		if err := a.jobs.begin(j); err != nil {
			t.Fatal(err)
		}
		a.jobs.update(j, func(j *Job) { j.Status = jobSucceeded })
	}
	if _, err := os.Stat(jn.file(1)); !os.IsNotExist(err) {
		t.Errorf("job 1's file after pruning: %v", err)
	}
	ents, _ := os.ReadDir(jn.dir)
	if n := len(ents); n > maxJobs+3 { // the kept jobs, 7.json, 5.json, notes.txt
		t.Errorf("%d files in the journal, want at most %d", n, maxJobs+3)
	}
}

// A journal that cannot be written stops a rollout from starting (500),
// and the id is not used.
func TestJournalNotWritable(t *testing.T) {
	h := home.Home{Dir: t.TempDir()}
	os.MkdirAll(h.Path("conf"), 0o750)
	os.WriteFile(h.Path("conf", "rollouts"), []byte("a file"), 0o640)
	js := newJobs()
	js.journal = newJournal(h, nil)
	err := js.begin(&Job{Group: "group-2"})
	if err == nil || !strings.Contains(err.Error(), "not started") {
		t.Fatalf("begin with no journal: %v", err)
	}
	if js.next != 0 || len(js.list("")) != 0 || js.busy("group-2") != nil {
		t.Fatalf("a refused job left traces: next %d, %d jobs", js.next, len(js.list("")))
	}
}

// What a restarted ANM does with each interrupted job: it resumes one whose
// archive is still the group's to take (here to a group without
// instances: a job of nothing that succeeds), and leaves, saying why, one
// whose group or archive is gone, whose archive is not the one it was
// deploying, or whose group has a newer archive; each gets an audit entry.
func TestResumeDecisions(t *testing.T) {
	e := newAPIEnv(t)
	e.do("POST", "/api/topology/groups", `{"name":"G"}`).MustCode(t, 201)
	for _, level := range []string{"info", "debug"} {
		e.do("POST", "/api/deployment/group/configuration/file/group-2?deploy=false", "log:\n  level: "+level+"\n", "Content-Type", "application/yaml").MustCode(t, 201)
	}
	var deps struct {
		Archives []struct {
			ID       int
			Checksum string
		}
	}
	e.do("GET", "/api/deployment/domain/deployments", "").Decode(t, &deps)
	if len(deps.Archives) != 2 {
		t.Fatalf("archives: %+v", deps.Archives)
	}
	sum1, sum2 := deps.Archives[0].Checksum, deps.Archives[1].Checksum
	jn := newJournal(e.h, nil)
	for _, j := range []*Job{
		{ID: 1, Group: "group-2", Archive: 1, Checksum: sum1, Kind: kindDeploy},
		{ID: 2, Group: "group-9", Archive: 1, Checksum: sum1, Kind: kindDeploy},
		{ID: 3, Group: "group-2", Archive: 2, Checksum: sum1, Kind: kindRedeploy},
		{ID: 4, Group: "group-2", Archive: 5, Checksum: sum1, Kind: kindRollback},
		{ID: 5, Group: "group-2", Archive: 2, Checksum: sum2, Kind: kindDeploy, By: "alice", Total: 1,
			Steps: []JobStep{{InstanceID: "instance-7", Status: stepDeploying}}},
	} {
		j.Status = jobRunning
		if err := jn.save(j); err != nil {
			t.Fatal(err)
		}
	}
	a := New(Config{Home: e.h, Conf: e.a.conf, Admin: true, Store: e.store, Audit: e.a.audit, Logger: e.a.log, Instances: e.sup, Net: e.a.net, Router: e.a.router})
	if err := a.LoadJobs(); err != nil {
		t.Fatal(err)
	}
	a.ResumeRollouts(t.Context())
	if err := a.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := map[int]string{
		1: "not resumed: the group has a newer archive (2)",
		2: "not resumed: the group is gone",
		3: "not resumed: archive 2 is not the one the job was deploying",
		4: "not resumed: archive 5 is gone",
		5: "interrupted: the Admin Node Manager stopped during the rollout (0 of 1 instances deployed, at instance-7); resumed as job 6",
	}
	for id, msg := range want {
		j, ok := a.jobs.get(id)
		if !ok || j.Status != jobInterrupted || !strings.Contains(j.Error, msg) {
			t.Errorf("job %d: %+v, want interrupted with %q", id, j, msg)
		}
	}
	if j, _ := a.jobs.get(5); j.ResumedBy != 6 || j.Steps[0].Status != stepSkipped {
		t.Errorf("job 5: %+v", j)
	}
	if j, ok := a.jobs.get(6); !ok || j.Status != jobSucceeded || j.ResumedFrom != 5 || j.By != "alice" || j.Archive != 2 || j.Comment != "resumes job 5" {
		t.Errorf("job 6: %+v", j)
	}
	entries, err := e.a.audit.Log.Search(audit.Filter{Action: "archive"})
	if err != nil {
		t.Fatal(err)
	}
	var interrupted []string
	for _, en := range entries {
		if strings.Contains(en.Error, "interrupted") {
			interrupted = append(interrupted, en.Detail)
			if en.Via != "anm/resume" || en.Outcome != "error" {
				t.Errorf("entry %+v", en)
			}
		}
	}
	if len(interrupted) != 5 {
		t.Errorf("audit entries of interrupted jobs: %q, want 5", interrupted)
	}
}
