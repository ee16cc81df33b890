package anm

import (
	"context"
	"errors"
	"github.com/gatehouse-gw/gatehouse/internal/apitest"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/deploy"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/supervisor"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

func TestGroupDeploymentConsistency(t *testing.T) {
	a := &API{jobs: newJobs(), archives: deploy.NewStore(home.Home{Dir: t.TempDir()})}
	g := &topology.Group{ID: "group-2", Name: "G", Services: []topology.Service{
		{ID: "instance-1", Type: topology.TypeGateway, HostID: "host-1"},
		{ID: "instance-2", Type: topology.TypeGateway, HostID: "host-2"},
	}}
	run := func(archive, deployed int) supervisor.InstanceState {
		return supervisor.InstanceState{Status: supervisor.StatusRunning, ConfigChecksum: "x", Archive: archive, DeployedArchive: deployed}
	}
	for _, c := range []struct {
		name       string
		states     map[string]supervisor.InstanceState
		consistent bool
		archive    int
		reason     string
	}{
		{"both on 3", map[string]supervisor.InstanceState{"instance-1": run(3, 3), "instance-2": run(3, 3)}, true, 3, ""},
		{"both undeployed", map[string]supervisor.InstanceState{"instance-1": run(0, 0), "instance-2": {Status: supervisor.StatusStopped}}, true, 0, ""},
		{"stopped one on its files' archive", map[string]supervisor.InstanceState{"instance-1": run(3, 3), "instance-2": {Status: supervisor.StatusStopped, DeployedArchive: 3}}, true, 3, ""},
		{"different archives", map[string]supervisor.InstanceState{"instance-1": run(3, 3), "instance-2": {Status: supervisor.StatusStopped, DeployedArchive: 2}}, false, 0, "different archives"},
		{"serving another than its files", map[string]supervisor.InstanceState{"instance-1": run(2, 3), "instance-2": run(3, 3)}, false, 0, "serves archive 2 but its files name archive 3"},
		{"host did not answer", map[string]supervisor.InstanceState{"instance-1": run(3, 3)}, false, 0, "did not answer"},
		{"pointer unreadable", map[string]supervisor.InstanceState{"instance-1": run(3, 3), "instance-2": {Status: supervisor.StatusStopped, DeployedArchive: -1}}, false, 0, "cannot be read"},
		{"one out of service", map[string]supervisor.InstanceState{"instance-1": run(3, 3), "instance-2": outOf(run(3, 3), time.Time{})}, false, 0, "instance-2 is out of its load balancer's pool (/healthchecklb answers 503) until it is put back"},
		{"one out of service with a lease", map[string]supervisor.InstanceState{"instance-1": outOf(run(3, 3), time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)), "instance-2": run(3, 3)}, false, 0, "instance-1 is out of its load balancer's pool (/healthchecklb answers 503) until its lease runs out at 2026-12-06T05:00:00Z"},
		{"both in service", map[string]supervisor.InstanceState{"instance-1": in(run(3, 3)), "instance-2": in(run(3, 3))}, true, 3, ""},
		{"a stopped one out of service does not count", map[string]supervisor.InstanceState{"instance-1": run(3, 3), "instance-2": outOf(supervisor.InstanceState{Status: supervisor.StatusStopped, DeployedArchive: 3}, time.Time{})}, true, 3, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := a.groupDeployment(g, c.states)
			if d.Consistent != c.consistent || d.Archive != c.archive {
				t.Fatalf("got consistent=%t archive=%d %v, want %t %d", d.Consistent, d.Archive, d.Reasons, c.consistent, c.archive)
			}
			if c.reason != "" && !strings.Contains(strings.Join(d.Reasons, "; "), c.reason) {
				t.Errorf("reasons %v lack %q", d.Reasons, c.reason)
			}
		})
	}
}

func outOf(st supervisor.InstanceState, until time.Time) supervisor.InstanceState {
	f := false
	st.InService, st.OutOfServiceUntil = &f, until
	return st
}

func in(st supervisor.InstanceState) supervisor.InstanceState {
	tr := true
	st.InService = &tr
	return st
}

func TestJobsOnePerGroup(t *testing.T) {
	js := newJobs()
	j1 := &Job{Group: "group-2"}
	if err := js.begin(j1); err != nil || j1.ID != 1 {
		t.Fatalf("first job: %v %d", err, j1.ID)
	}
	var ae *apihttp.Error
	if err := js.begin(&Job{Group: "group-2"}); !errors.As(err, &ae) || ae.Code != http.StatusConflict || !strings.Contains(ae.Msg, "job 1") {
		t.Fatalf("second job of the group while the first runs: %v", err)
	}
	if err := js.begin(&Job{Group: "group-3"}); err != nil {
		t.Fatalf("a job of another group: %v", err)
	}
	js.update(j1, func(j *Job) { j.Status = jobSucceeded })
	j4 := &Job{Group: "group-2"}
	if err := js.begin(j4); err != nil || j4.ID != 3 {
		t.Fatalf("after the first ended: %v %d", err, j4.ID)
	}
	if got := js.list("group-2"); len(got) != 2 || got[0].ID != 3 {
		t.Errorf("list: %+v", got)
	}
	for i := 0; i < maxJobs+10; i++ {
		j := &Job{Group: "group-9"}
		if err := js.begin(j); err != nil {
			t.Fatal(err)
		}
		js.update(j, func(j *Job) { j.Status = jobFailed })
	}
	if n := len(js.list("")); n != maxJobs {
		t.Errorf("%d jobs kept, want %d", n, maxJobs)
	}
}

// TestUploadSlots: at most maxUploadsAtOnce uploads are read and validated
// at once; another waits for a turn, then gets 429.
func TestUploadSlots(t *testing.T) {
	old := uploadWait
	uploadWait = 50 * time.Millisecond
	t.Cleanup(func() { uploadWait = old })
	a := &API{uploads: make(chan struct{}, maxUploadsAtOnce)}
	var releases []func()
	for i := range maxUploadsAtOnce {
		r, err := a.uploadSlot(context.Background())
		if err != nil {
			t.Fatalf("slot %d: %v", i, err)
		}
		releases = append(releases, r)
	}
	_, err := a.uploadSlot(context.Background())
	var ae *apihttp.Error
	if !errors.As(err, &ae) || ae.Code != http.StatusTooManyRequests {
		t.Fatalf("one more: got %v, want 429", err)
	}
	// A slot given back can be taken again.
	releases[0]()
	if _, err := a.uploadSlot(context.Background()); err != nil {
		t.Fatalf("after a release: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := a.uploadSlot(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v", err)
	}
}

// TestUploadAuditedBeforeStored: an upload's audit entry is written before
// the archive exists, and when it cannot be written the archive is not
// stored.
func TestUploadAuditedBeforeStored(t *testing.T) {
	e := newAPIEnv(t)
	e.do("POST", "/api/topology/groups", `{"name":"G"}`).MustCode(t, 201)
	up := func() apitest.Answer {
		return e.do("POST", "/api/deployment/group/configuration/file/group-2?deploy=false", "log:\n  level: info\n", "Content-Type", "application/yaml")
	}
	up().MustCode(t, 201)
	var got struct {
		Entries []struct {
			Action, Outcome string
			Targets         []string
		}
	}
	e.do("GET", "/api/audit?action=upload", "").Decode(t, &got)
	if len(got.Entries) != 1 || got.Entries[0].Outcome != "ok" || strings.Join(got.Entries[0].Targets, ",") != "group-2,archive-1" {
		t.Fatalf("after one upload: %+v", got.Entries)
	}
	// The audit log cannot be written: nothing is stored.
	logFile := e.h.Path("conf", "audit", "audit.log")
	if err := os.Rename(logFile, logFile+".moved"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(logFile, 0o700); err != nil {
		t.Fatal(err)
	}
	up().WantError(t, 400, "audit log could not be written")
	os.Remove(logFile)
	os.Rename(logFile+".moved", logFile)
	var deps struct{ Archives []struct{ ID int } }
	e.do("GET", "/api/deployment/domain/deployments", "").Decode(t, &deps)
	if len(deps.Archives) != 1 {
		t.Errorf("archives after a failed audit write: %+v, want only archive 1", deps.Archives)
	}
}

// dryRun=true validates, compares with what the group runs and stores,
// changes and audits nothing.
func TestUploadDryRun(t *testing.T) {
	e := newAPIEnv(t)
	e.do("POST", "/api/topology/groups", `{"name":"G"}`).MustCode(t, 201)
	os.MkdirAll(e.h.GroupConfDir("group-2"), 0o755)
	os.WriteFile(e.h.GroupConfFile("group-2"), []byte("log:\n  level: info\n"), 0o644)
	up := func(q, body string) apitest.Answer {
		return e.do("POST", "/api/deployment/group/configuration/file/group-2?"+q, body, "Content-Type", "application/yaml")
	}
	dry := func(q, body string, res *dryRunResult) {
		t.Helper()
		a := up(q, body)
		a.MustCode(t, 200)
		a.Decode(t, res)
	}
	var res dryRunResult
	dry("dryRun=true", "log:\n  level: debug\n", &res)
	if !res.Valid || res.Against != "group.yaml" || !strings.Contains(res.Diff, "-  level: info\n+  level: debug\n") || !strings.Contains(res.Diff, "--- group.yaml/group.yaml") {
		t.Fatalf("against the undeployed group.yaml: %+v", res)
	}
	up("dryRun=true", "log:\n  level: nonsense\n").WantError(t, 400, "log.level")
	var deps struct{ Archives []struct{ ID int } }
	e.do("GET", "/api/deployment/domain/deployments", "").Decode(t, &deps)
	if len(deps.Archives) != 0 {
		t.Fatalf("a dry run stored an archive: %+v", deps.Archives)
	}
	if got, _ := e.a.audit.Log.Search(audit.Filter{Action: "upload"}); len(got) != 0 {
		t.Fatalf("a dry run was audited: %+v", got)
	}
	up("deploy=false", "log:\n  level: warn\n").MustCode(t, 201)
	dry("dryRun=true", "log:\n  level: warn\n", &res)
	if res.Against != "archive 1" || res.Diff != "" {
		t.Fatalf("the same as archive 1: %+v", res)
	}
	dry("dryRun=true", "log:\n  level: error\n", &res)
	if res.Against != "archive 1" || !strings.Contains(res.Diff, "+++ upload/group.yaml") || !strings.Contains(res.Diff, "+  level: error") {
		t.Fatalf("against archive 1: %+v", res)
	}
	up("dryRun=maybe", "log:\n  level: warn\n").WantError(t, 400, "dryRun")
}
