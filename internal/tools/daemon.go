package tools

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// The daemon protocol, shared by startinstance -d and nodemanager -d: the
// parent runs the child in a new session with GATEHOUSE_READY_FD=3 naming
// the write end of a pipe. The child writes one line, "READY <pid>" once it
// serves, or "ERROR <reason>", and closes it. Its console output goes to a
// boot trace file.
const readyFDEnv = "GATEHOUSE_READY_FD"

// daemonSpec is one daemonised start.
type daemonSpec struct {
	Label       string   // what starts, for messages ("instance "x" in group "y"")
	Exe         string   // the gatehouse binary
	Args        []string // after argv[0] ("startinstance", "-h", dir, ...)
	Home        home.Home
	Boot        string        // boot trace file (appended to)
	Header      string        // first line written to the boot trace for this start
	Timeout     time.Duration // how long to wait for READY
	TimeoutHint string        // the setting that bounds it, for the message ("startup.timeout")
	Quiet       bool
	Passphrases []*os.File // given to the child as descriptors 4, 5, … (--passphrase_fd 4)
}

// spawnDaemon starts d and waits for its readiness line. It returns nil once
// the child reported READY (printing "Started ..." unless quiet), the
// child's own reason on ERROR, or an error with the tail of the boot trace
// when the child exits early or does not report within the timeout (it is
// then killed).
func spawnDaemon(ctx context.Context, env *Env, d daemonSpec) error {
	if err := os.MkdirAll(filepath.Dir(d.Boot), 0o755); err != nil {
		return fmt.Errorf("boot trace: %w", err)
	}
	bootf, err := os.OpenFile(d.Boot, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("boot trace: %w", err)
	}
	defer bootf.Close()
	bootStart, _ := bootf.Seek(0, io.SeekEnd)
	fmt.Fprintf(bootf, "--- %s %s\n", time.Now().UTC().Format(time.RFC3339), d.Header)
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		w.Close()
		return err
	}
	defer devnull.Close()
	cmd := exec.Command(d.Exe, d.Args...)
	cmd.Args[0] = "gatehouse"
	cmd.Env = append(os.Environ(), home.EnvHome+"="+d.Home.Dir, readyFDEnv+"=3")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, bootf, bootf
	cmd.ExtraFiles = []*os.File{w}
	cmd.ExtraFiles = append(cmd.ExtraFiles, d.Passphrases...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("starting %s: %w", d.Label, err)
	}
	w.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(r).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	timer := time.NewTimer(d.Timeout)
	defer timer.Stop()
	tail := func() string { return tailFile(d.Boot, bootStart, 20) }
	select {
	case msg := <-line:
		switch {
		case strings.HasPrefix(msg, "READY"):
			if !d.Quiet {
				fmt.Fprintf(env.Stdout, "Started %s (pid %d)\n", d.Label, cmd.Process.Pid)
			}
			return nil
		case strings.HasPrefix(msg, "ERROR "):
			<-exited
			return errors.New(strings.TrimPrefix(msg, "ERROR "))
		default:
			err := <-exited
			return fmt.Errorf("%s exited before it was ready (%v); boot trace %s:\n%s", d.Label, err, d.Boot, tail())
		}
	case <-timer.C:
		cmd.Process.Signal(syscall.SIGKILL)
		<-exited
		hint := ""
		if d.TimeoutHint != "" {
			hint = " (" + d.TimeoutHint + ")"
		}
		return fmt.Errorf("%s did not report ready within %v%s; it was killed. Boot trace %s:\n%s", d.Label, d.Timeout, hint, d.Boot, tail())
	case <-ctx.Done():
		cmd.Process.Signal(syscall.SIGTERM)
		return ctx.Err()
	}
}

// readyPipe is the child's end of the daemon protocol: nil (reporting
// nothing) when the process was not started by spawnDaemon.
type readyPipe struct{ f *os.File }

// readyNotifier returns the pipe to report readiness on, when started by
// spawnDaemon.
func readyNotifier() *readyPipe {
	v := os.Getenv(readyFDEnv)
	if v == "" {
		return nil
	}
	os.Unsetenv(readyFDEnv)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil
	}
	return &readyPipe{f: os.NewFile(uintptr(fd), "ready")}
}

// report writes READY (err nil) or ERROR with the reason, once; later calls
// do nothing.
func (r *readyPipe) report(err error) {
	if r == nil || r.f == nil {
		return
	}
	if err != nil {
		fmt.Fprintf(r.f, "ERROR %s\n", strings.ReplaceAll(err.Error(), "\n", " | "))
	} else {
		fmt.Fprintf(r.f, "READY %d\n", os.Getpid())
	}
	r.f.Close()
	r.f = nil
}
