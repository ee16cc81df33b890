package halab

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Each scenario runs the load through HAProxy while it acts, and records in
// o what the clients saw and every promise it found broken. A step that
// cannot be done is a problem too; the lab repairs the group before the
// next scenario when there was one.

const (
	// backWithin bounds how long a killed instance may take to serve again:
	// the restart back-off (at most restartBackoffMax, 2 s), the node
	// manager's probe (every 2 s) and the start itself.
	backWithin = 15 * time.Second
	// settleWithin is scenario 4's deadline: an interrupted rollout resumed
	// or undone and every instance in service again (the out-of-service
	// lease is 30 s).
	settleWithin = 90 * time.Second
	// abortFor is how long scenario 5's clients keep aborting uploads.
	abortFor = 5 * time.Second
)

// withLoad starts the load, waits until it flows (some answers through
// HAProxy), runs act, waits until more answers came after it, and counts.
func (l *lab) withLoad(o *outcome, act func(ld *load)) {
	before := l.lb.retried()
	ld := startLoad(l.lb.addr)
	l.flowing(o, ld)
	act(ld)
	l.flowing(o, ld)
	ld.stop()
	o.count(ld, l.lb, before)
	for _, e := range ld.errors() {
		o.note("client saw %s", e)
	}
}

// flowing waits until the load has made 50 more requests: traffic is
// flowing before the action starts and after it ends.
func (l *lab) flowing(o *outcome, ld *load) {
	from := ld.requests.Load()
	if err := poll(30*time.Second, 10*time.Millisecond, func() (bool, string) {
		n := ld.requests.Load() - from
		return n >= 50, fmt.Sprintf("%d requests made", n)
	}); err != nil {
		o.fail("the load does not flow: %v", err)
	}
}

// zeroFailures is the promise of the zero-downtime scenarios: no client
// saw anything but the right answer, and HAProxy never had to retry a
// connection (it never sent one to an instance that was not listening).
func (o *outcome) zeroFailures() {
	if o.failures+o.sockErrs > 0 {
		o.fail("%d failed answers and %d socket errors of %d requests, want 0", o.failures, o.sockErrs, o.requests)
	}
	if o.lbRetries > 0 {
		o.fail("HAProxy retried %d connections, want 0 (a server was sent traffic while it did not listen)", o.lbRetries)
	}
}

// onlyInFlight is the promise of the kill -9 scenarios: at most the
// requests in flight at the moment of the kill fail (one per load worker),
// and none before it.
func (o *outcome) onlyInFlight(ld *load, killed time.Time) {
	if n := o.failures + o.sockErrs; n > loadWorkers {
		o.fail("%d failed answers and socket errors, want at most %d (the requests in flight)", n, loadWorkers)
	}
	for _, e := range ld.errors() {
		if e.at.Before(killed) {
			o.fail("a request failed before the kill: %s", e)
		}
	}
}

// rollingRestart (scenario 1): each instance in turn stopped with
// startinstance -k (zero-downtime shutdown: /healthchecklb 503 for the
// delay, then the listener closes) and started again with startinstance
// -d, the next one only once HAProxy has this one UP again.
func (l *lab) rollingRestart(round int, o *outcome) {
	l.withLoad(o, func(ld *load) {
		for i, in := range l.insts {
			began := time.Now()
			if r := l.h.Run("", "startinstance", "-k", "-n", in.name, "-g", groupName); r.Code != 0 {
				o.fail("startinstance -k %s: %s", in, r)
				return
			}
			if r := l.h.Run("", "startinstance", "-d", "-n", in.name, "-g", groupName); r.Code != 0 {
				o.fail("startinstance -d %s: %s", in, r)
				return
			}
			if err := l.lb.awaitUp(i, 30*time.Second); err != nil {
				o.fail("%s after its restart: %v", in, err)
				return
			}
			o.note("%s %.1fs", in.name, time.Since(began).Seconds())
		}
	})
	o.zeroFailures()
}

var archiveOf = regexp.MustCompile(`archive (\d+) of `)

// deployAndRollback (scenario 2): a zero-downtime deployment with the
// operator's tool (gatehouse deploy, HTTP Basic), then a rollback to the
// archive before through the management API, under load.
func (l *lab) deployAndRollback(round int, o *outcome) {
	prev := l.current
	v := l.nextVariant()
	file := filepath.Join(l.t.TempDir(), "group.yaml")
	if err := os.WriteFile(file, []byte(l.groupYAML(v)), 0o644); err != nil {
		o.fail("%v", err)
		return
	}
	l.withLoad(o, func(ld *load) {
		r := l.h.Run("", "deploy", "--url", l.anmURL+"/api", "--cacert", l.h.CACertFile(), "--username", "admin",
			"--password-file", l.pwFile, "-g", l.gid, file, "--comment", fmt.Sprintf("lab round %d", round))
		m := archiveOf.FindStringSubmatch(r.Stdout)
		if r.Code != 0 || m == nil {
			o.fail("gatehouse deploy: %s", r)
			return
		}
		id := atoi(m[1])
		l.variantOf[id] = v
		l.current = id
		if !l.settledOn(o, id, "after the deployment") {
			return
		}
		var res struct{ Job *job }
		if err := l.api.call("POST", fmt.Sprintf("/api/deployment/group/deploy/%s/%d?comment=lab+rollback", l.gid, prev), "", 200, &res); err != nil {
			o.fail("rollback to archive %d: %v", prev, err)
			return
		}
		if res.Job == nil || res.Job.Status != "succeeded" {
			o.fail("rollback to archive %d: job %+v", prev, res.Job)
			return
		}
		l.current = prev
		if l.settledOn(o, prev, "after the rollback") {
			o.note("archive %d deployed, rolled back to %d", id, prev)
		}
	})
	o.zeroFailures()
}

// settledOn checks that the group is consistent on archive id with every
// instance running and in service.
func (l *lab) settledOn(o *outcome, id int, when string) bool {
	g, err := l.groupState()
	if err != nil {
		o.fail("%s: %v", when, err)
		return false
	}
	if ok, what := g.settled(); !ok || g.Archive != id {
		o.fail("%s: want consistent on archive %d, every instance in service: %s", when, id, what)
		return false
	}
	return true
}

// killInstance (scenario 3): kill -9 of one instance (another each round);
// its node manager restarts it after the back-off.
func (l *lab) killInstance(round int, o *outcome) {
	i := (round - 1) % len(l.insts)
	in := l.insts[i]
	old := l.pid(in.id)
	var killed time.Time
	var ldSeen *load
	l.withLoad(o, func(ld *load) {
		ldSeen = ld
		killed = time.Now()
		if err := kill9(in.String(), old); err != nil {
			o.fail("%v", err)
			return
		}
		if err := l.awaitBack(in, old, backWithin); err != nil {
			o.fail("%s not restarted by its node manager: %v", in, err)
			return
		}
		back := time.Since(killed)
		if err := l.lb.awaitUp(i, 30*time.Second); err != nil {
			o.fail("%s not back in HAProxy's pool: %v", in, err)
			return
		}
		o.note("%s back %.2fs after the kill, in the pool after %.2fs", in.name, back.Seconds(), time.Since(killed).Seconds())
	})
	o.onlyInFlight(ldSeen, killed)
}

// killNodeManagerAndInstance (scenario 6): the node manager (here the
// ANM) and one instance killed together; the node manager started again
// finds the instance should run (var/run/<id>.desired) and starts it.
func (l *lab) killNodeManagerAndInstance(round int, o *outcome) {
	i := round % len(l.insts)
	in := l.insts[i]
	old, nm := l.pid(in.id), l.nodeManagerPID()
	var killed time.Time
	var ldSeen *load
	l.withLoad(o, func(ld *load) {
		ldSeen = ld
		killed = time.Now()
		if err := killTogether(map[string]int{"the node manager": nm, in.String(): old}); err != nil {
			o.fail("%v", err)
			return
		}
		if r := l.h.Run("", "nodemanager", "-d"); r.Code != 0 {
			o.fail("nodemanager -d after the kill: %s", r)
			return
		}
		restarted := time.Now()
		if err := l.awaitBack(in, old, backWithin); err != nil {
			o.fail("%s not started again by the restarted node manager: %v", in, err)
			return
		}
		back := time.Since(restarted)
		if err := l.lb.awaitUp(i, 30*time.Second); err != nil {
			o.fail("%s not back in HAProxy's pool: %v", in, err)
			return
		}
		o.note("node manager ready %.2fs after the kill, %s back %.2fs after that", restarted.Sub(killed).Seconds(), in.name, back.Seconds())
	})
	o.onlyInFlight(ldSeen, killed)
}

// killTogether sends SIGKILL to every process before it waits for any.
func killTogether(procs map[string]int) error {
	for what, pid := range procs {
		if pid == 0 {
			return fmt.Errorf("%s: no pid", what)
		}
	}
	var errs []string
	var wg sync.WaitGroup
	var mu sync.Mutex
	for what, pid := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := kill9(what, pid); err != nil {
				mu.Lock()
				errs = append(errs, err.Error())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// nodeManagerPID is the pid of this host's node manager (the ANM).
func (l *lab) nodeManagerPID() int {
	matches, _ := filepath.Glob(l.h.Path("var", "run", "nodemanager-*.pid"))
	if len(matches) != 1 {
		return 0
	}
	return l.pid(strings.TrimSuffix(filepath.Base(matches[0]), ".pid"))
}

// killANMMidRollout (scenario 4): a zero-downtime rollout started
// (async), the ANM killed with SIGKILL while the second instance is out of
// service, the ANM started again. Promised: within settleWithin the
// group is consistent with every instance running and in service (the
// instance's out-of-service lease ends, the restarted ANM resumes the
// interrupted rollout from its journal), and no client saw a failure.
func (l *lab) killANMMidRollout(round int, o *outcome) {
	v := l.nextVariant()
	l.withLoad(o, func(ld *load) {
		var res uploadResult
		if err := l.api.upload(l.gid, l.groupYAML(v), fmt.Sprintf("async=true&comment=lab+round+%d+interrupted", round), 202, &res); err != nil {
			o.fail("async upload: %v", err)
			return
		}
		l.variantOf[res.Archive.ID] = v
		target := res.Archive.ID
		if res.Job == nil {
			o.fail("async upload: no job")
			return
		}
		// Wait for the middle of the rollout: the second instance out of
		// service (the first one already on the new archive).
		var out string
		if err := poll(60*time.Second, 20*time.Millisecond, func() (bool, string) {
			var j job
			if err := l.api.call("GET", fmt.Sprintf("/api/deployment/jobs/%d", res.Job.ID), "", 200, &j); err != nil {
				return false, err.Error()
			}
			if j.Status != "running" {
				return false, fmt.Sprintf("job %d %s before the second instance left the pool: %+v", j.ID, j.Status, j)
			}
			if len(j.Steps) > 1 && j.Steps[1].Status == "out-of-service" {
				out = j.Steps[1].InstanceID
				return true, ""
			}
			return false, fmt.Sprintf("steps %+v", j.Steps)
		}); err != nil {
			o.fail("the rollout of archive %d: %v", target, err)
			return
		}
		killed := time.Now()
		if err := kill9("the ANM", l.nodeManagerPID()); err != nil {
			o.fail("%v", err)
			return
		}
		if r := l.h.Run("", "nodemanager", "-d"); r.Code != 0 {
			o.fail("nodemanager -d after the kill: %s", r)
			return
		}
		up := time.Since(killed)
		o.note("ANM killed with %s out of service, ready again %.2fs after the kill", out, up.Seconds())
		err := l.awaitSettled(settleWithin - up)
		if err != nil {
			o.fail("after the ANM's restart: the group is not consistent with every instance in service: %v", err)
			l.current = target // what repair redeploys
			return
		}
		g, _ := l.groupState()
		l.current = g.Archive
		o.note("group consistent on archive %d (the rollout was to %d), every instance in service, %.1fs after the kill", g.Archive, target, time.Since(killed).Seconds())
	})
	o.zeroFailures()
}

// abortedUploads (scenario 5): while the load runs, one client after
// another starts an 8 MiB upload, sends part of it and resets the
// connection: through HAProxy to an API, and to the management API's
// upload (with the lab's session). A poller of the management API counts
// with the load: nobody else may notice, and nothing is stored.
func (l *lab) abortedUploads(round int, o *outcome) {
	archivesBefore, err := l.archiveCount()
	if err != nil {
		o.fail("%v", err)
		return
	}
	var traffic, mgmt, sent atomic.Int64
	l.withLoad(o, func(ld *load) {
		ld.extra(func(ctx context.Context) error {
			code, body, err := l.api.do(ctx, "GET", "/api/deployment/group/"+l.gid, "", nil)
			if err != nil {
				return fmt.Errorf("management API: %v", err)
			}
			if code != 200 {
				return fmt.Errorf("management API: %d %.120q", code, body)
			}
			return nil
		}, 100*time.Millisecond)

		const size = 8 << 20
		trafficHead := fmt.Sprintf("POST /v1/upload HTTP/1.1\r\nHost: lab\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", size)
		mgmtHead := l.uploadHead(size)
		// The same request sent whole with a body that does not parse is
		// answered 400 by the validation: the aborted ones are accepted
		// (session, CSRF token) and their bodies read, not refused at once.
		if err := l.checkUploadHead(); err != nil {
			o.fail("%v", err)
			return
		}
		dialLB := func() (net.Conn, *net.TCPConn, error) {
			c, err := net.DialTimeout("tcp", l.lb.addr, 2*time.Second)
			if err != nil {
				return nil, nil, err
			}
			return c, c.(*net.TCPConn), nil
		}
		// Aborting for abortFor, one upload after another on each path;
		// the count bounds the loop should an abort ever be instant.
		var wg sync.WaitGroup
		var mu sync.Mutex // o, from the two aborters
		end := time.Now().Add(abortFor)
		aborter := func(what string, count *atomic.Int64, dial func() (net.Conn, *net.TCPConn, error), head string) {
			defer wg.Done()
			refused := 0
			for i := 0; i < 10000 && time.Now().Before(end) && ld.ctx.Err() == nil; i++ {
				n, err := abortUpload(ld.ctx, dial, head, 256<<10+rand.IntN(2<<20))
				sent.Add(int64(n))
				if err != nil {
					if refused++; refused == 1 {
						mu.Lock()
						o.note("an upload to %s could not be made: %v", what, err)
						mu.Unlock()
					}
					continue
				}
				count.Add(1)
			}
			if refused > 0 {
				mu.Lock()
				o.fail("%d uploads to %s could not be made or were cut by the server before the client aborted them", refused, what)
				mu.Unlock()
			}
		}
		wg.Add(2)
		go aborter("HAProxy", &traffic, dialLB, trafficHead)
		go aborter("the management API", &mgmt, l.api.dialAPI, mgmtHead)
		wg.Wait()
	})
	o.note("%d uploads aborted through HAProxy, %d to the management API, %.0f MiB sent", traffic.Load(), mgmt.Load(), float64(sent.Load())/(1<<20))
	o.zeroFailures()
	if after, err := l.archiveCount(); err != nil {
		o.fail("%v", err)
	} else if after != archivesBefore {
		o.fail("%d archives before the aborted uploads, %d after: an aborted upload was stored", archivesBefore, after)
	}
}

// uploadHead is the head of a raw upload to the management API (store
// only, with the lab's session) with a body of size bytes.
func (l *lab) uploadHead(size int) string {
	return fmt.Sprintf("POST /api/deployment/group/configuration/file/%s?deploy=false&comment=aborted HTTP/1.1\r\nHost: %s\r\n"+
		"Cookie: %s\r\ncsrf-token: %s\r\nContent-Type: application/yaml\r\nContent-Length: %d\r\n\r\n",
		l.gid, strings.TrimPrefix(l.anmURL, "https://"), l.api.cookieHeader(), l.api.csrf, size)
}

// checkUploadHead sends uploadHead with a whole body that is not YAML and
// wants the validation's 400.
func (l *lab) checkUploadHead() error {
	c, raw, err := l.api.dialAPI()
	if err != nil {
		return err
	}
	defer raw.Close()
	const body = "apis: [\n"
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, l.uploadHead(len(body))+body); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return fmt.Errorf("raw upload: %v", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || !strings.Contains(string(msg), "nothing was stored") {
		return fmt.Errorf("raw upload of a body that does not parse: %d %.200s, want 400 from the validation", resp.StatusCode, msg)
	}
	return nil
}

// archiveCount is the number of archives the ANM stores.
func (l *lab) archiveCount() (int, error) {
	var deps struct{ Archives []struct{ ID int } }
	if err := l.api.call("GET", "/api/deployment/domain/deployments", "", 200, &deps); err != nil {
		return 0, err
	}
	return len(deps.Archives), nil
}

func atoi(s string) int {
	n := 0
	fmt.Sscan(s, &n)
	return n
}
