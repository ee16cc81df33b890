package portinfo

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHolderFindsThisProcess(t *testing.T) {
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skip("no /proc/net/tcp on this system")
	}
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if network == "tcp6" {
				addr = "[::1]:0"
			}
			ln, err := net.Listen(network, addr)
			if err != nil {
				t.Skipf("cannot listen on %s: %v", addr, err)
			}
			defer ln.Close()
			port := ln.Addr().(*net.TCPAddr).Port
			pid, comm, ok := Holder(port)
			if !ok {
				t.Fatalf("Holder(%d): not found", port)
			}
			if pid != os.Getpid() {
				t.Errorf("pid: got %v, want %v", pid, os.Getpid())
			}
			self, _ := os.ReadFile("/proc/self/comm")
			if want := strings.TrimSpace(string(self)); comm != want {
				t.Errorf("command: got %q, want %q", comm, want)
			}
		})
	}
}

func TestHolderFakeProc(t *testing.T) {
	proc := t.TempDir()
	write := func(rel, content string) {
		p := filepath.Join(proc, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	// Port 8080 = 0x1F90: one ESTABLISHED (01) with inode 111, one LISTEN (0A) with inode 222.
	write("net/tcp", header+
		"   0: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 111 1 0000000000000000 20 4 30 10 -1\n"+
		"   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 222 1 0000000000000000 100 0 0 10 0\n"+
		"   2: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 333 1 0000000000000000 100 0 0 10 0\n")
	write("net/tcp6", header)
	write("41/comm", "client\n")
	write("42/comm", "nginx\n")
	write("43/comm", "other\n")
	write("self/comm", "ignored\n")
	for _, l := range []struct{ dir, target string }{
		{"41/fd/3", "socket:[111]"},
		{"42/fd/0", "/dev/null"},
		{"42/fd/7", "socket:[222]"},
		{"43/fd/5", "socket:[333]"},
	} {
		if err := os.MkdirAll(filepath.Join(proc, filepath.Dir(l.dir)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(l.target, filepath.Join(proc, l.dir)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		port    int
		wantPID int
		wantCmd string
		wantOK  bool
	}{
		{8080, 42, "nginx", true},
		{80, 43, "other", true},
		{9999, 0, "", false},
	}
	for _, tt := range tests {
		pid, cmd, ok := holder(proc, tt.port)
		if pid != tt.wantPID || cmd != tt.wantCmd || ok != tt.wantOK {
			t.Errorf("holder(%d): got %v %q %v, want %v %q %v", tt.port, pid, cmd, ok, tt.wantPID, tt.wantCmd, tt.wantOK)
		}
	}
}
