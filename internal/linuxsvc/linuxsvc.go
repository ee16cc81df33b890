// Package linuxsvc renders and installs the operating-system services that
// start a gateway instance, or a host's node manager, at boot: a systemd
// unit and an LSB init.d script. Both drive an instance with startinstance
// -d (start, returning once it is ready), -k (stop, returning once it has
// ended) and -s (status), and a node manager with nodemanager -d, -k, -s.
//
// Files are named by the instance id, never by its name, so that names with
// spaces or quotes are safe: gatehouse-<instance-id>.service and
// gatehouse-<instance-id>. The group and instance names appear only in
// descriptions and comments, escaped for each format. Target directories are
// parameters (defaults /etc/systemd/system and /etc/init.d) so that tests
// never touch /etc.
package linuxsvc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// Default target directories.
const (
	DefaultSystemdDir = "/etc/systemd/system"
	DefaultInitDDir   = "/etc/init.d"
)

// Service describes the instance, or node manager, a service file starts.
type Service struct {
	Home         string // install directory (absolute)
	GroupID      string // "group-2" (unused for a node manager)
	InstanceID   string // "instance-1", or the node manager's id "nodemanager-1"
	GroupName    string // for descriptions only
	InstanceName string // for descriptions only (a node manager: its host's name)
	// NodeManager makes it the service of this host's node manager
	// (InstanceID its id); Admin says it is the Admin Node Manager.
	NodeManager bool
	Admin       bool
	// StopTimeout bounds "startinstance -k" (systemd TimeoutStopSec): make it
	// at least the zero-downtime delay plus the drain timeout.
	StopTimeout time.Duration
}

// Dirs are where Install writes and Remove deletes. Empty fields mean the
// defaults.
type Dirs struct {
	Systemd string
	InitD   string
}

func (d Dirs) withDefaults() Dirs {
	if d.Systemd == "" {
		d.Systemd = DefaultSystemdDir
	}
	if d.InitD == "" {
		d.InitD = DefaultInitDDir
	}
	return d
}

// UnitName is the systemd unit file name of an instance.
func UnitName(instanceID string) string { return "gatehouse-" + instanceID + ".service" }

// InitScriptName is the init.d script name of an instance.
func InitScriptName(instanceID string) string { return "gatehouse-" + instanceID }

func (s Service) check() error {
	if !filepath.IsAbs(s.Home) {
		return fmt.Errorf("install directory %q is not absolute", s.Home)
	}
	ids := []string{s.GroupID, s.InstanceID}
	if s.NodeManager {
		ids = ids[1:]
	}
	for _, id := range ids {
		if id == "" || strings.ContainsFunc(id, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-')
		}) {
			return fmt.Errorf("id %q: want lower-case letters, digits and dashes", id)
		}
	}
	if strings.ContainsFunc(s.Home, unicode.IsControl) {
		return fmt.Errorf("install directory %q contains control characters", s.Home)
	}
	if s.StopTimeout <= 0 {
		return errors.New("stop timeout must be more than 0")
	}
	return nil
}

// paths are the install directory, the instance's directory ("" for a
// node manager), the tool that drives it and its pid file.
func (s Service) paths() (hm, instDir, tool, pidFile string) {
	h := home.Home{Dir: s.Home}
	if s.NodeManager {
		return s.Home, "", filepath.Join(h.BinDir(), "nodemanager"), h.RunFiles(s.InstanceID).PID
	}
	return s.Home, h.InstanceDir(s.GroupID, s.InstanceID), filepath.Join(h.BinDir(), "startinstance"), h.RunFiles(s.InstanceID).PID
}

// description is the human label: names quoted Go-style (so any character
// shows up escaped, none can break a line) and the ids.
func (s Service) description() string {
	if s.NodeManager {
		role := "Node Manager"
		if s.Admin {
			role = "Admin Node Manager"
		}
		return fmt.Sprintf("Gatehouse %s %s of host %s", role, s.InstanceID, strconv.Quote(s.InstanceName))
	}
	return fmt.Sprintf("Gatehouse API Gateway instance %s in group %s (%s, %s)",
		strconv.Quote(s.InstanceName), strconv.Quote(s.GroupName), s.InstanceID, s.GroupID)
}

// writtenBy is the command a service file says wrote it.
func (s Service) writtenBy() (add, remove string) {
	if s.NodeManager {
		return "--add_nm_service", "--remove_nm_service"
	}
	return "--add_service", "--remove_service"
}

// SystemdUnit renders the systemd unit of s.
func SystemdUnit(s Service) ([]byte, error) {
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("rendering systemd unit: %w", err)
	}
	hm, instDir, start, pid := s.paths()
	secs := int64((s.StopTimeout + time.Second - 1) / time.Second)
	args := ""
	if instDir != "" {
		args = " -h " + systemdQuote(instDir, true)
	}
	add, remove := s.writtenBy()
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by \"gatehouse managedomain %s\"; remove with %s.\n", add, remove)
	fmt.Fprintf(&b, "# %s\n", s.description())
	b.WriteString("[Unit]\n")
	fmt.Fprintf(&b, "Description=%s\n", systemdEscapeSpecifiers(s.description()))
	b.WriteString("After=network-online.target\nWants=network-online.target\n\n")
	b.WriteString("[Service]\n")
	b.WriteString("Type=forking\n")
	// PIDFile= takes a bare path (systemd does not unquote it); it may hold
	// spaces, and only specifiers need escaping.
	fmt.Fprintf(&b, "PIDFile=%s\n", systemdEscapeSpecifiers(pid))
	fmt.Fprintf(&b, "Environment=%s\n", systemdQuote(home.EnvHome+"="+hm, false))
	fmt.Fprintf(&b, "ExecStart=%s -d%s\n", systemdQuote(start, true), args)
	fmt.Fprintf(&b, "ExecStop=%s -k%s\n", systemdQuote(start, true), args)
	fmt.Fprintf(&b, "TimeoutStartSec=300\n")
	fmt.Fprintf(&b, "TimeoutStopSec=%d\n", secs)
	if s.NodeManager {
		// The instances the node manager started run in its control group:
		// stopping (or restarting) the node manager must not kill them
		// (they outlive it, docs/nodemanager.md).
		b.WriteString("KillMode=process\n")
	} else {
		b.WriteString("KillMode=mixed\n")
	}
	b.WriteString("Restart=on-failure\n")
	b.WriteString("RestartSec=5\n\n")
	b.WriteString("[Install]\n")
	b.WriteString("WantedBy=multi-user.target\n")
	return []byte(b.String()), nil
}

// systemdQuote quotes s as one word for ExecStart=, ExecStop= (exec true)
// and Environment= (exec false): double quotes with C-style escapes, and "%"
// doubled (specifiers). In Exec lines "$" is doubled too (variable
// expansion); Environment= takes "$" literally.
func systemdQuote(s string, exec bool) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '%':
			b.WriteString("%%")
		case '$':
			if exec {
				b.WriteString("$$")
			} else {
				b.WriteByte('$')
			}
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if unicode.IsControl(r) {
				fmt.Fprintf(&b, `\x%02x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

func systemdEscapeSpecifiers(s string) string {
	return strings.ReplaceAll(s, "%", "%%")
}

// shQuote quotes s for POSIX sh: inside single quotes, each single quote
// closes the quoting, is written backslash-escaped and reopens it.
func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// InitScript renders the LSB init.d script of s.
func InitScript(s Service) ([]byte, error) {
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("rendering init.d script: %w", err)
	}
	hm, instDir, start, pid := s.paths()
	name := InitScriptName(s.InstanceID)
	// run is how the script calls the tool: with the instance's directory
	// (-h) for an instance, as it is for the node manager.
	target, run := "INSTANCE_DIR="+shQuote(instDir)+"\n", `"$TOOL" "$@" -h "$INSTANCE_DIR"`
	if s.NodeManager {
		target, run = "", `"$TOOL" "$@"`
	}
	add, remove := s.writtenBy()
	r := strings.NewReplacer(
		"@NAME@", name,
		"@DESC@", s.description(),
		"@ADD@", add,
		"@REMOVE@", remove,
		"@HOME@", shQuote(hm),
		"@TOOLNAME@", filepath.Base(start),
		"@TOOL@", shQuote(start),
		"@TARGET@", target,
		"@RUN@", run,
		"@PIDFILE@", shQuote(pid),
		"@STOPSECS@", strconv.FormatInt(int64((s.StopTimeout+time.Second-1)/time.Second), 10),
	)
	return []byte(r.Replace(initTemplate)), nil
}

const initTemplate = `#!/bin/sh
### BEGIN INIT INFO
# Provides:          @NAME@
# Required-Start:    $remote_fs $network
# Required-Stop:     $remote_fs $network
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: @DESC@
# Description:       @DESC@,
#                    started and stopped with @TOOLNAME@ -d/-k/-s.
### END INIT INFO
#
# Written by "gatehouse managedomain @ADD@"; remove with @REMOVE@.
# Stopping may take up to @STOPSECS@ seconds.

GATEHOUSE_HOME=@HOME@
export GATEHOUSE_HOME
TOOL=@TOOL@
@TARGET@PIDFILE=@PIDFILE@

tool() {
	@RUN@
}

is_running() {
	tool -s >/dev/null 2>&1
}

do_start() {
	if is_running; then
		echo "@NAME@ is already running"
		return 0
	fi
	tool -d || return 1
}

do_stop() {
	if ! is_running; then
		echo "@NAME@ is not running"
		return 0
	fi
	tool -k || return 1
}

if [ ! -x "$TOOL" ]; then
	echo "$TOOL is missing or not executable" >&2
	case "$1" in
	status) exit 4 ;;
	*) exit 5 ;;
	esac
fi

case "$1" in
start)
	do_start
	exit "$?"
	;;
stop)
	do_stop
	exit "$?"
	;;
restart|force-reload)
	do_stop || exit 1
	do_start
	exit "$?"
	;;
try-restart)
	if is_running; then
		do_stop || exit 1
		do_start
		exit "$?"
	fi
	exit 0
	;;
status)
	if is_running; then
		if [ -r "$PIDFILE" ]; then
			echo "@NAME@ is running (pid $(cat "$PIDFILE"))"
		else
			echo "@NAME@ is running"
		fi
		exit 0
	fi
	echo "@NAME@ is not running"
	exit 3
	;;
*)
	echo "usage: $0 {start|stop|status|restart|try-restart|force-reload}" >&2
	exit 2
	;;
esac
`

// Install writes the systemd unit and the init.d script of s into d
// (defaults for empty fields), each atomically: the unit 0644, the script
// 0755. It returns the paths written. If the second write fails the first
// is removed again, unless it replaced an existing file.
func Install(s Service, d Dirs) ([]string, error) {
	d = d.withDefaults()
	unit, err := SystemdUnit(s)
	if err != nil {
		return nil, err
	}
	script, err := InitScript(s)
	if err != nil {
		return nil, err
	}
	unitPath := filepath.Join(d.Systemd, UnitName(s.InstanceID))
	scriptPath := filepath.Join(d.InitD, InitScriptName(s.InstanceID))
	for _, dir := range []string{d.Systemd, d.InitD} {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("installing service: %s is not a directory", dir)
		}
	}
	_, statErr := os.Stat(unitPath)
	existed := statErr == nil
	if err := home.WriteFileAtomic(unitPath, unit, 0o644); err != nil {
		return nil, fmt.Errorf("installing systemd unit: %w", err)
	}
	if err := home.WriteFileAtomic(scriptPath, script, 0o755); err != nil {
		if !existed {
			os.Remove(unitPath)
		}
		return nil, fmt.Errorf("installing init.d script: %w", err)
	}
	return []string{unitPath, scriptPath}, nil
}

// Remove deletes the systemd unit and the init.d script of the instance from
// d. It returns the paths removed; files already absent are not an error.
func Remove(instanceID string, d Dirs) ([]string, error) {
	d = d.withDefaults()
	var removed []string
	var errs []error
	for _, p := range []string{filepath.Join(d.Systemd, UnitName(instanceID)), filepath.Join(d.InitD, InitScriptName(instanceID))} {
		err := os.Remove(p)
		switch {
		case err == nil:
			removed = append(removed, p)
		case errors.Is(err, os.ErrNotExist):
		default:
			errs = append(errs, fmt.Errorf("removing service: %w", err))
		}
	}
	return removed, errors.Join(errs...)
}
