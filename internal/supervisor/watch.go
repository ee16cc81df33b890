package supervisor

import (
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
	"golang.org/x/sys/unix"
)

// waitExit blocks until the process of rec has ended (true) or quit is
// closed (false). It waits on a pidfd, which becomes readable the moment the
// process exits, whoever its parent is; where pidfds are not available it
// checks /proc every 250 ms.
func waitExit(rec home.ProcRecord, quit <-chan struct{}) bool {
	fd, err := unix.PidfdOpen(rec.PID, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return true
		}
		return pollExit(rec, quit)
	}
	defer unix.Close(fd)
	// The pid may have been reused between the record and the pidfd: the
	// pidfd is rec's process only if the start time still matches.
	if !procAlive(rec) {
		return true
	}
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		select {
		case <-quit:
			return false
		default:
		}
		n, err := unix.Poll(fds, 250)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return pollExit(rec, quit)
		}
		if n > 0 {
			return true
		}
	}
}

func pollExit(rec home.ProcRecord, quit <-chan struct{}) bool {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for procAlive(rec) {
		select {
		case <-quit:
			return false
		case <-t.C:
		}
	}
	return true
}

// procAlive reports whether rec's process exists and has not exited (a
// zombie has exited).
func procAlive(rec home.ProcRecord) bool {
	st, err := home.ProcStartTime(rec.PID)
	if err != nil || st != rec.StartTime {
		return false
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(rec.PID) + "/stat")
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// reap collects the exit status of pid when it is a child of this process
// (the instances this node manager started are: it is their subreaper).
func reap(pid int) (unix.WaitStatus, bool) {
	var ws unix.WaitStatus
	deadline := time.Now().Add(2 * time.Second)
	for {
		wpid, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil: // ECHILD: not ours
			return ws, false
		case wpid == pid:
			return ws, true
		case time.Now().After(deadline):
			return ws, false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// managementAddr is the address of ref's management listener, from its
// configuration files (the topology's port when they do not load).
func (s *Supervisor) managementAddr(ref topology.InstanceRef) string {
	addr, port := "127.0.0.1", ref.Service.ManagementPort
	if cfg, err := groupconf.LoadInstance(s.h, ref.Group.ID, ref.Service.ID, nil, nil); err == nil {
		port = cfg.Management.Port
		if a := cfg.Management.Address; a != "" && a != "0.0.0.0" && a != "::" {
			addr = a
		}
	}
	return net.JoinHostPort(addr, strconv.Itoa(port))
}

// pollStatuses asks every watched instance for its /status.
func (s *Supervisor) pollStatuses() {
	s.mu.Lock()
	var watched []*supervised
	for _, id := range s.order {
		if si := s.insts[id]; si.rec != nil {
			watched = append(watched, si)
		}
	}
	topo := s.lastTopo
	s.mu.Unlock()
	for _, si := range watched {
		s.pollStatus(si)
		s.mu.Lock()
		serving := si.st.Health == "ok"
		s.mu.Unlock()
		if serving {
			s.pushPeers(si, topo)
		}
	}
}

// pollStatus asks si's process for its /status: phase, health, checksum.
// Health is "ok" when it answers, is the recorded process, and serves.
func (s *Supervisor) pollStatus(si *supervised) {
	s.mu.Lock()
	rec, addr := si.rec, si.mgmtAddr
	s.mu.Unlock()
	if rec == nil {
		return
	}
	st, err := s.mgmt.status(addr)
	s.mu.Lock()
	defer s.mu.Unlock()
	if si.rec != rec { // ended or replaced meanwhile
		return
	}
	switch {
	case err != nil:
		si.st.Phase, si.st.Health = "", "unhealthy"
		s.log.Debug("instance status", append(s.attrs(si), "error", err.Error())...)
	case st.PID != rec.PID:
		si.st.Phase, si.st.Health, si.st.ConfigChecksum = "", "unhealthy", ""
		s.log.Warn("another process answers on the instance's management port", append(s.attrs(si), "address", addr, "pid", rec.PID, "answeringPid", st.PID)...)
	default:
		si.st.Phase, si.st.ConfigChecksum = st.Phase, st.ConfigChecksum
		si.st.Archive, si.st.InService, si.st.OutOfServiceUntil = 0, st.InService, st.OutOfServiceUntil
		if st.Deployment != nil {
			si.st.Archive = st.Deployment.Archive
		}
		si.st.Health = "unhealthy"
		if st.Phase == "serving" {
			si.st.Health = "ok"
		}
	}
}
