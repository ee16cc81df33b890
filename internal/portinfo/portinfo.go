// Package portinfo finds which process holds a listening TCP port, so that a
// "port in use" error can name it. It reads the Linux /proc file system: the
// socket tables /proc/net/tcp and /proc/net/tcp6 give the inode of the
// listening socket, the links in /proc/<pid>/fd name the process that has it
// open, and /proc/<pid>/comm its command name. Elsewhere, or when the holder
// belongs to another user whose fds cannot be read, it finds nothing.
package portinfo

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Holder returns the pid and command name of a process that has a socket
// listening on TCP port (any address, IPv4 or IPv6). ok is false when no
// such socket or process can be found.
func Holder(port int) (pid int, command string, ok bool) {
	return holder("/proc", port)
}

// tcpListen is the state column value of a listening socket in /proc/net/tcp.
const tcpListen = "0A"

func holder(proc string, port int) (int, string, bool) {
	inodes := map[string]bool{}
	for _, name := range []string{"tcp", "tcp6"} {
		listenInodes(filepath.Join(proc, "net", name), port, inodes)
	}
	if len(inodes) == 0 {
		return 0, "", false
	}
	entries, err := os.ReadDir(proc)
	if err != nil {
		return 0, "", false
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		if holdsSocket(filepath.Join(proc, e.Name(), "fd"), inodes) {
			comm, _ := os.ReadFile(filepath.Join(proc, e.Name(), "comm"))
			return pid, strings.TrimSpace(string(comm)), true
		}
	}
	return 0, "", false
}

// listenInodes adds to inodes the inode of every LISTEN socket on port found
// in the socket table at path. A missing or unreadable table adds nothing.
func listenInodes(path string, port int, inodes map[string]bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Scan() // header line
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
		f := strings.Fields(sc.Text())
		if len(f) < 10 || f[3] != tcpListen {
			continue
		}
		_, hexPort, found := strings.Cut(f[1], ":")
		if !found {
			continue
		}
		p, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil || int(p) != port || f[9] == "0" {
			continue
		}
		inodes[f[9]] = true
	}
}

// holdsSocket reports whether a link in the fd directory points at one of
// the socket inodes.
func holdsSocket(fdDir string, inodes map[string]bool) bool {
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return false
	}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
		if err != nil {
			continue
		}
		if inode, ok := strings.CutPrefix(target, "socket:["); ok && inodes[strings.TrimSuffix(inode, "]")] {
			return true
		}
	}
	return false
}
