package tools_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
)

type jobView struct {
	ID          int
	Status      string
	Error       string
	Done, Total int
	ResumedFrom int
	ResumedBy   int
	Steps       []struct{ InstanceID, Status string }
}

// healthLB is an instance's /healthchecklb status on its traffic port (0
// when it does not answer).
func healthLB(port int) int {
	c := &http.Client{Timeout: 2 * time.Second}
	res, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/healthchecklb", port))
	if err != nil {
		return 0
	}
	res.Body.Close()
	return res.StatusCode
}

// kill -9 of the Admin Node Manager in the middle of a zero-downtime
// rollout, with one instance out of its load balancer's pool: the rollout's
// journal is on disk; the restarted ANM marks the job interrupted, records
// how it ended in the audit log and finishes it as a new job with a new id;
// the group ends consistent on the new archive with every instance in
// service. Then an instance taken out of service by hand makes the group
// inconsistent, naming it.
func TestRolloutResumesAfterANMKill(t *testing.T) {
	pw := adminPasswordFile(t)
	anm, _ := startANMHost(t, "127.0.0.2", pw)
	// managedomain -p names the address the ANM listens on (--nm_address).
	if r := anm.h.MustRun("", "managedomain", "-p"); !strings.Contains(r.Stdout, fmt.Sprintf("Admin Node Manager, management https://127.0.0.2:%d", anm.port)) {
		t.Errorf("managedomain -p: %s", r.Stdout)
	}
	var group struct{ ID string }
	result(t, anm.api("POST", "/api/topology/groups", `{"name":"G"}`), 201, &group)
	gid := group.ID
	tps := []int{gwtest.FreePort(t), gwtest.FreePort(t)}
	for i, name := range []string{"one", "two"} {
		var svc struct{ ID string }
		result(t, anm.api("POST", "/api/topology/services/"+gid, fmt.Sprintf(`{"name":%q,"hostID":"host-1","trafficPort":%d,"managementPort":%d}`, name, tps[i], gwtest.FreePort(t))), 201, &svc)
		var st struct{ Status string }
		result(t, anm.api("POST", "/api/management/start/"+gid+"/"+svc.ID, ""), 200, &st)
	}
	be := deployBackend(t)
	var up struct {
		Archive struct{ ID int }
		Job     jobView
	}
	result(t, anm.upload(gid, groupYAML(be.URL, false, "0.2"), ""), 200, &up)
	if up.Job.Status != "succeeded" {
		t.Fatalf("archive 1: %+v", up.Job)
	}

	// Archive 2 with a long delayBefore: the first instance stays out of
	// service while the ANM is killed.
	r := anm.upload(gid, strings.Replace(groupYAML(be.URL, true, "0.2"), "delayBefore: 0.2", "delayBefore: 8", 1), "?async=true")
	result(t, r, 202, &up)
	jobID := up.Job.ID
	deadline := time.Now().Add(30 * time.Second)
	for {
		var j jobView
		result(t, anm.api("GET", fmt.Sprintf("/api/deployment/jobs/%d", jobID), ""), 200, &j)
		if len(j.Steps) == 2 && j.Steps[0].Status == "out-of-service" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rollout never took the first instance out: %+v", j)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := healthLB(tps[0]); got != 503 {
		t.Fatalf("the first instance's /healthchecklb during its step: %d, want 503", got)
	}
	journal, err := os.ReadFile(anm.h.Path("conf", "rollouts", fmt.Sprintf("%d.json", jobID)))
	if err != nil || !strings.Contains(string(journal), `"status": "running"`) || !strings.Contains(string(journal), `"out-of-service"`) {
		t.Fatalf("the journal of job %d: %s %v", jobID, journal, err)
	}
	pid := pidOf(t, anm.h, "nodemanager-1")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	awaitGone(t, pid)
	anm.h.MustRun("", "nodemanager", "-d")

	// The group ends consistent on archive 2, every instance in service.
	deadline = time.Now().Add(60 * time.Second)
	for {
		g := anm.groupState(gid)
		if g.Consistent && g.Archive == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the ANM's restart the group is not consistent on archive 2: %+v", g)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for i, p := range tps {
		if got := healthLB(p); got != 200 {
			t.Errorf("instance %d's /healthchecklb after the resumed rollout: %d", i+1, got)
		}
	}
	var old, resumed jobView
	result(t, anm.api("GET", fmt.Sprintf("/api/deployment/jobs/%d", jobID), ""), 200, &old)
	if old.Status != "interrupted" || old.ResumedBy <= jobID || !strings.Contains(old.Error, fmt.Sprintf("resumed as job %d", old.ResumedBy)) || !strings.Contains(old.Error, "at instance-1") {
		t.Fatalf("the interrupted job: %+v", old)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		result(t, anm.api("GET", fmt.Sprintf("/api/deployment/jobs/%d", old.ResumedBy), ""), 200, &resumed)
		if resumed.Status != "running" || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if resumed.Status != "succeeded" || resumed.ResumedFrom != jobID {
		t.Fatalf("the resumed job: %+v", resumed)
	}
	// The audit log says how the interrupted rollout ended.
	var audit struct {
		Entries []auditEntry
	}
	result(t, anm.api("GET", "/api/audit?action=deploy", ""), 200, &audit)
	found := false
	for _, e := range audit.Entries {
		if strings.Contains(e.Detail, fmt.Sprintf("job %d,", jobID)) && e.Outcome == "error" && strings.Contains(e.Error, "interrupted") && strings.Contains(e.Error, fmt.Sprintf("resumed as job %d", old.ResumedBy)) {
			found = true
		}
	}
	if !found {
		b, _ := json.Marshal(audit.Entries)
		t.Fatalf("no audit entry for the interrupted job %d: %s", jobID, b)
	}

	// An instance out of service makes the group inconsistent, naming it.
	if r := anm.api("POST", "/api/router/service/instance-2/deployment/lb", `{"inService": false}`); r.code != 200 {
		t.Fatalf("out of service through the router: %d %s", r.code, r.body)
	}
	// The node manager polls its instances' status every 2 s.
	awaitGroup := func(what string, ok func(groupDeploymentState) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			g := anm.groupState(gid)
			if ok(g) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %+v", what, g)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	awaitGroup("with instance-2 out of service", func(g groupDeploymentState) bool {
		return !g.Consistent && strings.Contains(strings.Join(g.Reasons, "; "), "instance-2 is out of its load balancer's pool")
	})
	if r := anm.api("POST", "/api/router/service/instance-2/deployment/lb", `{"inService": true}`); r.code != 200 {
		t.Fatalf("back in service through the router: %d %s", r.code, r.body)
	}
	awaitGroup("back in service", func(g groupDeploymentState) bool { return g.Consistent })
}

// The lease, on real processes: with rollout.leaseSeconds: 3 in
// nodemanager.yaml, an ANM killed while a rollout has an instance out of
// service and NOT restarted: the instance puts itself back in service
// within the lease (no process is left to do it), and says so in its log.
func TestOutOfServiceLeaseOutlivesANM(t *testing.T) {
	pw := adminPasswordFile(t)
	anm, _ := startANMHost(t, "127.0.0.2", pw)
	conf := anm.h.Path("system", "conf", "nodemanager.yaml")
	data, _ := os.ReadFile(conf)
	os.WriteFile(conf, append(data, "rollout:\n  leaseSeconds: 3\n"...), 0o644)
	anm.h.MustRun("", "nodemanager", "-k")
	anm.h.MustRun("", "nodemanager", "-d")
	var group struct{ ID string }
	result(t, anm.api("POST", "/api/topology/groups", `{"name":"G"}`), 201, &group)
	tp := gwtest.FreePort(t)
	var svc struct{ ID string }
	result(t, anm.api("POST", "/api/topology/services/"+group.ID, fmt.Sprintf(`{"name":"one","hostID":"host-1","trafficPort":%d,"managementPort":%d}`, tp, gwtest.FreePort(t))), 201, &svc)
	var st struct{ Status string }
	result(t, anm.api("POST", "/api/management/start/"+group.ID+"/"+svc.ID, ""), 200, &st)
	t.Cleanup(func() { anm.h.Run("", "startinstance", "-k", "-n", "one", "-g", "G") })
	be := deployBackend(t)
	var up struct{ Job jobView }
	result(t, anm.upload(group.ID, strings.Replace(groupYAML(be.URL, true, "0.2"), "delayBefore: 0.2", "delayBefore: 60", 1), "?async=true"), 202, &up)
	deadline := time.Now().Add(30 * time.Second)
	for healthLB(tp) != 503 {
		if time.Now().After(deadline) {
			t.Fatal("the rollout never took the instance out of service")
		}
		time.Sleep(50 * time.Millisecond)
	}
	pid := pidOf(t, anm.h, "nodemanager-1")
	syscall.Kill(pid, syscall.SIGKILL)
	awaitGone(t, pid)
	killed := time.Now()
	for healthLB(tp) != 200 {
		if time.Since(killed) > 10*time.Second {
			t.Fatalf("the instance is still out of service %s after the ANM died (lease 3 s)", time.Since(killed))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("back in service %s after the ANM was killed", time.Since(killed).Round(10*time.Millisecond))
	logs, _ := filepath.Glob(anm.h.Path("groups", group.ID, svc.ID, "logs", "instance*.log"))
	var all string
	for _, f := range logs {
		b, _ := os.ReadFile(f)
		all += string(b)
	}
	if !strings.Contains(all, "out-of-service lease ran out without being renewed") {
		t.Errorf("the instance's log does not say why it went back in service")
	}
	// A lease out of bounds is refused when the node manager starts.
	os.WriteFile(conf, append(data, "rollout:\n  leaseSeconds: 1\n"...), 0o644)
	if r := anm.h.Run("", "nodemanager", "-d"); r.Code == 0 || !strings.Contains(r.Stderr+r.Stdout, "rollout.leaseSeconds 1: want 3 to 3600") {
		t.Errorf("nodemanager with leaseSeconds 1: %s", r)
	}
}
