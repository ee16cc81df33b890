package nodemanager

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/backup/schedule"
)

// The host's scheduled backups (nodemanager.yaml backup:): each run is
// gatehouse backup -o FILE, a process of its own, which writes, verifies
// (restored into a scratch copy and started, or its checksums when the
// copy needs passphrases) and reports.

// newBackups makes the scheduler of the node manager's backup settings
// (nil when there is no schedule).
func (n *NodeManager) newBackups() (*schedule.Scheduler, error) {
	conf := n.conf.Backup
	run := func(ctx context.Context, file string) error {
		args := []string{"backup", "-o", file}
		if conf.WithLogs {
			args = append(args, "--with-logs")
		}
		cmd := exec.CommandContext(ctx, n.opts.Exe, args...)
		// Stopped with SIGTERM, so that it removes its partial file.
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = 30 * time.Second
		env := os.Environ()
		for i := 0; i < len(env); i++ {
			if strings.HasPrefix(env[i], "GATEHOUSE_HOME=") {
				env = append(env[:i], env[i+1:]...)
				i--
			}
		}
		cmd.Env = append(env, "GATEHOUSE_HOME="+n.opts.Home.Dir)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%w: %s", err, lastLines(out.String(), 5))
		}
		return nil
	}
	return schedule.New(n.opts.Home, conf, n.conf.HostID, run, n.log.With("subsystem", "backup"))
}

// lastLines is the last n lines of s, on one line.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
