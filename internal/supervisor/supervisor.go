// Package supervisor starts, watches and restarts the gateway instances of
// one host: the desired state is the topology's gateway services of the
// host, the running state comes from the pid-and-lock files (home.Probe),
// pidfds and each instance's GET /status over mutual TLS (MgmtClient). It
// also carries a deployment to a local instance (Deploy, SetInService,
// SetArchive: POST /deployment/reload and /deployment/lb).
//
// It may use the domain's model and files (home, topology, groupconf,
// deploy, pki) and nothing of the node manager's HTTP APIs: the
// node-to-node API (internal/nodeapi) and the management API
// (internal/anm) call it, never the other way round (layers_test.go in
// internal/nodemanager enforces this).
package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
	"golang.org/x/sys/unix"
)

// InstanceState is what the supervisor knows of one instance of this host.
type InstanceState struct {
	ID        string `json:"id"`
	GroupID   string `json:"groupID"`
	Name      string `json:"name"`
	GroupName string `json:"groupName"`
	// Status is one of StatusRunning, StatusStopped, StatusStarting,
	// StatusStopping, StatusFailed (ended without being asked to, not
	// restarted) or StatusUnknown (not probed yet).
	Status string `json:"status"`
	PID    int    `json:"pid,omitempty"`
	// Phase is the drain phase from the instance's GET /status ("serving",
	// "draining", ...); "" when not running or not answering.
	Phase string `json:"phase,omitempty"`
	// Health is "ok" when /status answers with phase serving, "unhealthy"
	// otherwise; "" when not running.
	Health         string    `json:"health,omitempty"`
	ConfigChecksum string    `json:"configChecksum,omitempty"`
	StartedAt      time.Time `json:"startedAt,omitzero"`
	// Restarts counts the restarts done by the supervisor since the node
	// manager started.
	Restarts int `json:"restarts"`
	// LastExit is how the instance last ended, when known: "stopped
	// (SIGTERM)", "killed by signal 9 (SIGKILL)", "exit status 1", ...
	LastExit string `json:"lastExit,omitempty"`
	// Archive is the deployment archive the running instance serves (its
	// GET /status); 0 when it runs its group's undeployed group.yaml or
	// does not run.
	Archive int `json:"archive,omitempty"`
	// DeployedArchive is the archive the instance's files name
	// (conf/deployment.json): what it starts from; 0 for none.
	DeployedArchive int `json:"deployedArchive,omitempty"`
	// InService is false while the instance is taken out of its load
	// balancer's pool (/healthchecklb 503 during a rolling deployment);
	// nil when not running.
	InService *bool `json:"inService,omitempty"`
	// OutOfServiceUntil is when the instance's out-of-service lease runs
	// out and it goes back in by itself (absent without a lease).
	OutOfServiceUntil time.Time `json:"outOfServiceUntil,omitzero"`
}

// ErrNotStarted is wrapped by StartInstance when startinstance -d failed; the
// message carries its reason (port in use naming the holder, configuration
// error with file and line, ...).
var ErrNotStarted = errors.New("instance did not start")

// Timing of the supervision; variables so that tests can shorten them.
var (
	pollInterval  = 2 * time.Second         // topology, probes of unwatched instances, GET /status
	statusTimeout = 1500 * time.Millisecond // one GET /status
)

// Supervisor starts, stops and watches the instances of this host (the
// topology's gateway services whose hostID is this host's).
//
// Starting and stopping run the tool itself — startinstance -d -h DIR and
// startinstance -k -h DIR with Options.Exe — so the readiness pipe, boot
// trace, pid-and-lock files and stop budget are exactly the tool's, and an
// instance is a daemon of its own that outlives the node manager.
//
// Watching: a running instance is watched through a pidfd (prompt, no
// polling); when it ends, its stop mark (home.StopMark) tells whether it was
// asked to stop. Without one it failed: the supervisor logs a warning with
// the cause (the wait status: the node manager makes itself the subreaper of
// the instances it starts, so it reaps them) and, when the group's
// nodeManager.restartOnFailure is true, restarts it after a back-off
// (nextDelay). Instances not watched are probed every pollInterval with
// home.Probe, exactly as startinstance -s does; running ones also answer
// GET /status (phase, health, configuration checksum).
//
// Methods are safe for concurrent use. Lock order: supervised.op before
// Supervisor.mu; mu is never held across a process start, stop or HTTP call.
type Supervisor struct {
	h      home.Home
	hostID string
	exe    string
	topo   TopologySource
	log    *slog.Logger
	mgmt   *MgmtClient // the node manager's
	// passphrase gives a group's passphrase to the instances it starts (Config.Passphrase).
	passphrase func(ctx context.Context, groupID string) (secret.Value, error)

	quit      chan struct{} // closed by stop
	wg        sync.WaitGroup
	reaper    bool // this process is the child subreaper
	startOnce sync.Once
	stopOnce  sync.Once

	mu       sync.Mutex // guards the fields below and every supervised's fields but op
	insts    map[string]*supervised
	order    []string           // instance ids in topology order
	lastTopo *topology.Topology // the last topology read (refresh)
	closed   bool
}

// supervised is one instance. Its fields are guarded by Supervisor.mu.
type supervised struct {
	op sync.Mutex // held for the whole of a start, stop or restart

	ref      topology.InstanceRef
	st       InstanceState
	rec      *home.ProcRecord // the process being watched; nil when none
	watchEnd chan struct{}    // closed when the watcher of rec has finished
	mgmtAddr string           // host:port of the management listener
	stopping bool             // StopInstance is stopping it: never a failure
	delay    time.Duration    // last back-off delay; 0 after a stable run
	timer    *time.Timer      // pending restart
	timerGen uint64           // identifies the pending restart (guards against a stale timer firing)
	// The cluster peers last told to the process peersRec (peers.go).
	peersSent string
	peersRec  *home.ProcRecord
}

// TopologySource reads the domain's topology (a *topology.Store).
type TopologySource interface {
	Load() (*topology.Topology, error)
}

// Config is what a Supervisor needs.
type Config struct {
	Home   home.Home
	HostID string // this host: its instances are supervised
	// Exe is the gatehouse binary that starts and stops instances
	// (startinstance -d and -k).
	Exe      string
	Topology TopologySource
	Logger   *slog.Logger // the node manager's (with "component"); "subsystem" is set here
	// Client calls the instances' management listeners (GET /status,
	// reloads); it gets its identity from the node manager.
	Client *MgmtClient
	// Passphrase returns the passphrase of a group for the instances it
	// starts (zero when the group has none); nil: none is ever given.
	Passphrase func(ctx context.Context, groupID string) (secret.Value, error)
}

// New makes the supervisor of c.HostID's instances. It watches nothing
// until Start.
func New(c Config) *Supervisor {
	return &Supervisor{
		h: c.Home, hostID: c.HostID, exe: c.Exe, topo: c.Topology, passphrase: c.Passphrase,
		log:   c.Logger.With("subsystem", "supervisor"),
		mgmt:  c.Client,
		quit:  make(chan struct{}),
		insts: map[string]*supervised{},
	}
}

// Start makes the node manager the subreaper of the instances it starts,
// adopts the instances already running and begins watching.
func (s *Supervisor) Start() {
	s.startOnce.Do(func() {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err == nil {
			s.reaper = true
		} else {
			s.log.Warn("cannot become the instances' subreaper; exit causes will be unknown", "error", err.Error())
		}
		s.refresh()
		s.pollStatuses()
		s.wg.Add(1)
		go s.loop()
	})
}

// Stop ends the watching (instances keep running) and cancels pending
// restarts; it returns when every goroutine of the supervisor has ended, or
// with ctx's error.
func (s *Supervisor) Stop(ctx context.Context) error {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		for _, si := range s.insts {
			if si.timer != nil {
				si.timer.Stop()
				si.timer = nil
			}
		}
		s.mu.Unlock()
		close(s.quit)
	})
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stopping supervisor: %w", ctx.Err())
	}
}

func (s *Supervisor) loop() {
	defer s.wg.Done()
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
			s.refresh()
			s.pollStatuses()
		}
	}
}

// Status returns the state of one instance of this host. An id that is not
// an instance of this host gives an error wrapping topology.ErrNotFound.
func (s *Supervisor) Status(instanceID string) (InstanceState, error) {
	si, err := s.lookup(instanceID)
	if err != nil {
		return InstanceState{}, err
	}
	s.probeIdle(si)
	s.mu.Lock()
	st := si.st
	s.mu.Unlock()
	st.DeployedArchive = s.deployedArchive(st.GroupID, st.ID)
	return st, nil
}

// States returns the state of every instance of this host, in topology order.
func (s *Supervisor) States() []InstanceState {
	s.refresh()
	s.mu.Lock()
	out := make([]InstanceState, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, s.insts[id].st)
	}
	s.mu.Unlock()
	for i := range out {
		out[i].DeployedArchive = s.deployedArchive(out[i].GroupID, out[i].ID)
	}
	return out
}

// deployedArchive is the archive the files of an instance name (0 for
// none, -1 when the pointer cannot be read). It reads the pointer only:
// States is called for every status request, and the archive itself is
// verified when the instance loads it.
func (s *Supervisor) deployedArchive(gid, iid string) int {
	d, err := groupconf.ReadDeployment(s.h, gid, iid)
	switch {
	case err != nil:
		return -1
	case d == nil:
		return 0
	}
	return d.Archive
}

// StartInstance starts an instance with startinstance -d and returns once it
// reports itself ready, or the reason it did not start (an error wrapping
// ErrNotStarted). Starting a running instance is an error wrapping
// home.ErrRunning (the state is returned too).
func (s *Supervisor) StartInstance(ctx context.Context, instanceID string) (InstanceState, error) {
	si, err := s.lookup(instanceID)
	if err != nil {
		return InstanceState{}, err
	}
	si.op.Lock()
	defer si.op.Unlock()
	s.mu.Lock()
	s.cancelRestart(si)
	s.mu.Unlock()
	return s.startLocked(ctx, si, false)
}

// StopInstance stops an instance with startinstance -k and returns once its
// process has ended. Stopping an instance that does not run succeeds (as
// startinstance -k does). A stopped instance is never restarted.
func (s *Supervisor) StopInstance(ctx context.Context, instanceID string) (InstanceState, error) {
	si, err := s.lookup(instanceID)
	if err != nil {
		return InstanceState{}, err
	}
	si.op.Lock()
	defer si.op.Unlock()
	ref := s.refOf(si) // refresh may replace si.ref (under mu)
	rf := s.h.RunFiles(ref.Service.ID)
	s.mu.Lock()
	s.cancelRestart(si)
	prev := si.st.Status
	si.stopping = true
	si.st.Status = nextStatus(si.st.Status, evStopping)
	watchEnd := si.watchEnd
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		si.stopping = false
		s.mu.Unlock()
	}()

	out, runErr := s.runTool(ctx, "-k", ref)
	if runErr == nil && watchEnd != nil {
		// The watcher reaps the process and records how it ended; it sees
		// the end at once (pidfd), so this wait is short.
		select {
		case <-watchEnd:
		case <-time.After(5 * time.Second):
		case <-ctx.Done():
		}
	}
	st, perr := home.Probe(rf)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case perr == nil && !st.Running:
		s.clearProcess(si)
		si.st.Status = nextStatus(StatusStopping, evStopped)
		if runErr == nil && watchEnd == nil && prev != StatusFailed {
			si.st.LastExit = "stopped"
		}
		si.delay = 0
		s.log.Info("instance stopped", s.attrs(si)...)
		return si.st, nil
	case runErr == nil:
		runErr = fmt.Errorf("%s still runs after startinstance -k", label(ref))
	}
	if perr == nil && st.Running {
		si.st.Status = StatusRunning
	} else {
		si.st.Status = StatusUnknown
	}
	if out != "" {
		return si.st, fmt.Errorf("stopping %s: %s: %w", label(ref), out, runErr)
	}
	return si.st, fmt.Errorf("stopping %s: %w", label(ref), runErr)
}

// startLocked starts si (its op lock is held). restart is true for a
// restart after a failure: finding the instance already running is then
// success.
func (s *Supervisor) startLocked(ctx context.Context, si *supervised, restart bool) (InstanceState, error) {
	ref := s.refOf(si) // refresh may replace si.ref (under mu)
	rf := s.h.RunFiles(ref.Service.ID)
	if st, err := home.Probe(rf); err == nil && st.Running {
		s.mu.Lock()
		if st.Record != nil {
			s.adopt(si, *st.Record)
		}
		si.st.Status = nextStatus(si.st.Status, evSeenRunning)
		state := si.st
		s.mu.Unlock()
		if restart {
			return state, nil
		}
		if st.Record != nil {
			return state, fmt.Errorf("%s is %w (pid %d)", label(ref), home.ErrRunning, st.Record.PID)
		}
		return state, fmt.Errorf("%s is %w", label(ref), home.ErrRunning)
	}
	s.mu.Lock()
	prev := si.st.Status
	si.st.Status = nextStatus(prev, evStarting)
	s.mu.Unlock()

	out, runErr := s.runTool(ctx, "-d", ref)
	st, perr := home.Probe(rf)
	s.mu.Lock()
	if perr == nil && st.Running && st.Record != nil {
		s.adopt(si, *st.Record)
		si.st.Status = nextStatus(StatusStarting, evStarted)
		if restart {
			si.st.Restarts++
		}
		s.mu.Unlock()
		s.pollStatus(si)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.log.Info("instance started", s.attrs(si)...)
		return si.st, nil
	}
	if prev == StatusStarting || prev == StatusStopping || prev == StatusUnknown || prev == StatusRunning {
		prev = StatusStopped
	}
	si.st.Status = prev
	state := si.st
	s.mu.Unlock()
	if runErr == nil {
		runErr = errors.New("startinstance -d succeeded but the instance does not run")
	}
	if out == "" {
		out = runErr.Error()
	}
	return state, fmt.Errorf("%w: %s", ErrNotStarted, out)
}

// refOf is si.ref, read under mu (refresh replaces it).
func (s *Supervisor) refOf(si *supervised) topology.InstanceRef {
	s.mu.Lock()
	defer s.mu.Unlock()
	return si.ref
}

// binary is the gatehouse binary instances are started with: the install
// directory's posix/bin/gatehouse (what managedomain installs and gatehouse
// upgrade replaces) when it is there, else the node manager's own
// (Options.Exe).
func (s *Supervisor) binary() string {
	p := filepath.Join(s.h.BinDir(), "gatehouse")
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
		return p
	}
	return s.exe
}

// runTool runs startinstance with op (-d or -k) on ref's directory and
// returns its reason on failure (the tool's message without its prefix).
// Cancelling ctx sends SIGTERM to the tool.
func (s *Supervisor) runTool(ctx context.Context, op string, ref topology.InstanceRef) (string, error) {
	exe := s.binary()
	if exe == "" {
		return "", errors.New("no gatehouse binary to run startinstance with (posix/bin/gatehouse, or Options.Exe)")
	}
	dir := s.h.InstanceDir(ref.Group.ID, ref.Service.ID)
	cmd := exec.Command(exe, "startinstance", op, "-h", dir)
	cmd.Args[0] = "gatehouse"
	if op == "-d" && s.passphrase != nil && secret.GroupScope(ref.Group.ID).Protected(s.h) {
		// The group's passphrase reaches startinstance through a pipe
		// (descriptor 3): never on disk, in its arguments or environment.
		p, err := s.passphrase(ctx, ref.Group.ID)
		if err != nil {
			return err.Error(), err
		}
		r, w, err := os.Pipe()
		if err != nil {
			p.Wipe()
			return "", err
		}
		w.Write(p.Reveal())
		w.Write([]byte("\n"))
		w.Close()
		p.Wipe()
		defer r.Close()
		cmd.ExtraFiles = []*os.File{r}
		cmd.Args = append(cmd.Args, "--passphrase_fd", "3")
	}
	cmd.Env = append(os.Environ(), home.EnvHome+"="+s.h.Dir, home.EnvBy+"=the node manager of "+s.hostID)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("running startinstance %s: %w", op, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		cmd.Process.Signal(syscall.SIGTERM)
		<-done
		return "", ctx.Err()
	}
	if err == nil {
		return "", nil
	}
	msg := strings.TrimSpace(stderr.String())
	msg = strings.TrimPrefix(msg, "startinstance: ")
	return msg, fmt.Errorf("startinstance %s: %w", op, err)
}

// lookup returns the supervised instance id, refreshing from the topology
// when it is not known yet.
func (s *Supervisor) lookup(id string) (*supervised, error) {
	s.mu.Lock()
	si := s.insts[id]
	s.mu.Unlock()
	if si != nil {
		return si, nil
	}
	s.refresh()
	s.mu.Lock()
	defer s.mu.Unlock()
	if si := s.insts[id]; si != nil {
		return si, nil
	}
	return nil, &topology.NotFoundError{Kind: "instance", Name: id, Scope: "on host " + s.hostID, Available: slices.Clone(s.order)}
}

// refresh reloads the topology (instances created, renamed or deleted) and
// probes the instances that are not watched.
func (s *Supervisor) refresh() {
	topo, err := s.topo.Load()
	if err != nil {
		s.log.Warn("reading the topology", "error", err.Error())
		return
	}
	refs := topo.Instances(s.hostID)
	s.mu.Lock()
	s.lastTopo = topo
	seen := make(map[string]bool, len(refs))
	order := make([]string, 0, len(refs))
	for _, ref := range refs {
		id := ref.Service.ID
		seen[id] = true
		order = append(order, id)
		si := s.insts[id]
		if si == nil {
			si = &supervised{st: InstanceState{ID: id, Status: StatusUnknown}}
			s.insts[id] = si
		}
		si.ref = ref
		si.st.GroupID, si.st.GroupName, si.st.Name = ref.Group.ID, ref.Group.Name, ref.Service.Name
	}
	for id, si := range s.insts {
		if !seen[id] {
			s.cancelRestart(si)
			delete(s.insts, id)
		}
	}
	s.order = order
	all := make([]*supervised, 0, len(order))
	for _, id := range order {
		all = append(all, s.insts[id])
	}
	s.mu.Unlock()
	for _, si := range all {
		s.probeIdle(si)
	}
}

// probeIdle probes an instance that is not watched and not being started or
// stopped (home.Probe, as startinstance -s), and adopts it when it runs.
func (s *Supervisor) probeIdle(si *supervised) {
	s.mu.Lock()
	busy := si.rec != nil || si.st.Status == StatusStarting || si.st.Status == StatusStopping
	s.mu.Unlock()
	if busy || !si.op.TryLock() {
		return
	}
	defer si.op.Unlock()
	st, err := home.Probe(s.h.RunFiles(s.refOf(si).Service.ID))
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err != nil:
		si.st.Status = StatusUnknown
	case st.Running && st.Record != nil:
		s.adopt(si, *st.Record)
		si.st.Status = nextStatus(si.st.Status, evSeenRunning)
	case st.Running: // lock held, record being written: next probe
	default:
		si.st.Status = nextStatus(si.st.Status, evSeenNotRunning)
		// Not running, but it should (both it and the node manager were
		// killed, the host rebooted): start it again, as the group's
		// restart policy says.
		if d, ok := home.ReadDesired(s.h.RunFiles(si.ref.Service.ID)); ok && d.State == home.DesiredRunning && si.timer == nil && !si.stopping && !s.closed {
			si.st.Status = StatusFailed
			s.log.Warn("instance should run but does not", append(s.attrs(si), "desiredBy", d.By, "since", d.At)...)
			s.scheduleRestart(si, 0)
		}
	}
}

// adopt starts watching the process rec of si (mu held).
func (s *Supervisor) adopt(si *supervised, rec home.ProcRecord) {
	if si.rec != nil && si.rec.PID == rec.PID && si.rec.StartTime == rec.StartTime {
		return
	}
	r := rec
	si.rec = &r
	si.st.PID, si.st.StartedAt = rec.PID, rec.Started
	si.st.Phase, si.st.Health, si.st.ConfigChecksum = "", "", ""
	si.mgmtAddr = s.managementAddr(si.ref)
	s.log.Info("watching instance", append(s.attrs(si), "pid", rec.PID)...)
	end := make(chan struct{})
	si.watchEnd = end
	if s.closed {
		close(end)
		return
	}
	s.wg.Add(1)
	// The run files are named now, under mu: refresh may change si.ref.
	go s.watch(si, r, s.h.RunFiles(si.ref.Service.ID), end)
}

// clearProcess forgets the process of si (mu held).
func (s *Supervisor) clearProcess(si *supervised) {
	si.rec, si.watchEnd = nil, nil
	si.st.PID = 0
	si.st.Phase, si.st.Health, si.st.ConfigChecksum = "", "", ""
	si.st.Archive, si.st.InService, si.st.OutOfServiceUntil = 0, nil, time.Time{}
}

// watch waits for the process rec of si to end, reaps it when it is a child,
// and records how it ended.
func (s *Supervisor) watch(si *supervised, rec home.ProcRecord, rf home.RunFiles, end chan struct{}) {
	defer s.wg.Done()
	defer close(end)
	if !waitExit(rec, s.quit) {
		return
	}
	ws, wsOK := reap(rec.PID)
	mark, markOK := home.ReadStopMark(rf)
	clean, cause := exitVerdict(rec, mark, markOK, ws, wsOK)

	s.mu.Lock()
	defer s.mu.Unlock()
	if si.rec == nil || si.rec.PID != rec.PID || si.rec.StartTime != rec.StartTime {
		return
	}
	s.clearProcess(si)
	si.st.LastExit = cause
	attrs := append(s.attrs(si), "pid", rec.PID, "exit", cause)
	if clean || si.stopping {
		si.st.Status = nextStatus(si.st.Status, evExitClean)
		s.log.Info("instance ended", attrs...)
		return
	}
	si.st.Status = nextStatus(si.st.Status, evExitFailed)
	attrs = append(attrs, "bootTrace", filepath.Join(s.h.InstanceTraceDir(si.ref.Group.ID, si.ref.Service.ID), "boot.log"),
		"log", filepath.Join(s.h.InstanceLogsDir(si.ref.Group.ID, si.ref.Service.ID), "instance.log"))
	s.log.Warn("instance died", attrs...)
	s.scheduleRestart(si, time.Since(rec.Started))
}

// scheduleRestart arms the restart of a failed instance when its group asks
// for it (mu held).
func (s *Supervisor) scheduleRestart(si *supervised, uptime time.Duration) {
	if s.closed {
		return
	}
	cfg, err := groupconf.LoadInstance(s.h, si.ref.Group.ID, si.ref.Service.ID, nil, nil)
	if err != nil {
		s.log.Error("not restarting: the configuration does not load", append(s.attrs(si), "error", err.Error())...)
		return
	}
	nm := cfg.NodeManager
	if !nm.RestartOnFailure {
		s.log.Info("not restarting (nodeManager.restartOnFailure is false)", s.attrs(si)...)
		return
	}
	si.delay = nextDelay(si.delay, uptime, nm.RestartBackoff.D(), nm.RestartBackoffMax.D(), stableAfter)
	s.log.Info("restarting instance after back-off", append(s.attrs(si), "delay", si.delay.String())...)
	s.cancelRestart(si)
	si.timerGen++
	gen := si.timerGen
	si.timer = time.AfterFunc(si.delay, func() { s.restart(si, gen) })
}

// cancelRestart disarms a pending restart (mu held).
func (s *Supervisor) cancelRestart(si *supervised) {
	if si.timer != nil {
		si.timer.Stop()
		si.timer = nil
	}
}

// restart is the restart (generation gen) of a failed instance.
func (s *Supervisor) restart(si *supervised, gen uint64) {
	s.mu.Lock()
	if s.closed || si.timer == nil || si.timerGen != gen {
		s.mu.Unlock()
		return
	}
	si.timer = nil
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	si.op.Lock()
	defer si.op.Unlock()
	s.mu.Lock()
	if si.st.Status != StatusFailed { // started or stopped by someone meanwhile
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	_, err := s.startLocked(ctx, si, true)
	if err == nil || ctx.Err() != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	si.st.Status = StatusFailed
	s.log.Warn("restart failed", append(s.attrs(si), "error", err.Error())...)
	s.scheduleRestart(si, 0)
}

// attrs are the log attributes naming si (mu held).
func (s *Supervisor) attrs(si *supervised) []any {
	return []any{"instanceId", si.ref.Service.ID, "instance", si.ref.Service.Name, "group", si.ref.Group.Name}
}

func label(ref topology.InstanceRef) string {
	return fmt.Sprintf("instance %q in group %q", ref.Service.Name, ref.Group.Name)
}
