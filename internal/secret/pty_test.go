package secret

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair (master, slave).
func openPTY(t *testing.T) (*os.File, *os.File, int) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); m.Close() })
	return m, s, int(s.Fd())
}

// TestFromTerminal: typed on a real pseudo-terminal, not echoed; asked
// twice to set one, and a mismatch refused.
func TestFromTerminal(t *testing.T) {
	for _, c := range []struct {
		name    string
		typed   string
		confirm bool
		want    string
		err     string
	}{
		{"once", "typed secret 1\r", false, "typed secret 1", ""},
		{"confirmed", "typed secret 1\rtyped secret 1\r", true, "typed secret 1", ""},
		{"mismatch", "typed secret 1\rtyped secret 2\r", true, "", "differ"},
		{"empty", "\r", false, "", "empty"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, s, sfd := openPTY(t)
			var mu sync.Mutex
			var out bytes.Buffer // what the terminal showed
			done := make(chan struct{})
			go func() {
				defer close(done)
				buf := make([]byte, 1024)
				for {
					n, err := m.Read(buf)
					mu.Lock()
					out.Write(buf[:n])
					mu.Unlock()
					if err != nil {
						return
					}
				}
			}()
			shown := func(prompt string) bool {
				mu.Lock()
				defer mu.Unlock()
				return strings.Contains(out.String(), prompt)
			}
			go func() {
				// Each line typed once its prompt is out and the terminal
				// no longer echoes.
				prompts := []string{"Passphrase: ", "Again: "}
				for i, line := range strings.SplitAfter(c.typed, "\r") {
					if line == "" || i >= len(prompts) {
						continue
					}
					for deadline := time.Now().Add(5 * time.Second); !shown(prompts[i]) && time.Now().Before(deadline); {
						time.Sleep(2 * time.Millisecond)
					}
					waitEcho(sfd, false)
					m.Write([]byte(line))
				}
			}()
			// A watchdog: a read that waits for input never typed gets
			// empty lines (a wrong answer), not a hung test.
			watchdog := time.AfterFunc(10*time.Second, func() { m.Write([]byte("\r\r")) })
			defer watchdog.Stop()
			v, err := FromTerminal(s, s, "Passphrase: ", c.confirm)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("got %v, want %q", err, c.err)
				}
			} else if err != nil || v.RevealString() != c.want {
				t.Fatalf("got %q %v, want %q", v.RevealString(), err, c.want)
			}
			s.Close() // the master's read ends (EIO) once the terminal is closed
			<-done
			mu.Lock()
			shownAll := out.String()
			mu.Unlock()
			if !strings.Contains(shownAll, "Passphrase: ") || strings.Contains(shownAll, "typed secret") {
				t.Errorf("the terminal showed %q: want the prompt and no passphrase", shownAll)
			}
		})
	}
}

// waitEcho waits (at most 5 s) until the terminal fd's echo is on or off.
// It takes the descriptor's number, read before any goroutine starts: the
// *os.File is closed by the test meanwhile.
func waitEcho(fd int, on bool) {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err == nil && (tio.Lflag&unix.ECHO != 0) == on {
			return
		}
	}
}

// TestFromTerminalClosed: a terminal that goes away while the passphrase
// is asked for (or asked again) is an error, not an empty passphrase.
func TestFromTerminalClosed(t *testing.T) {
	for _, c := range []struct {
		name    string
		confirm bool
		typed   string
	}{{"first read", false, ""}, {"second read", true, "typed secret 1\r"}} {
		t.Run(c.name, func(t *testing.T) {
			m, s, sfd := openPTY(t)
			// Nothing reads the master (the prompts fit in the terminal's
			// buffer): a read in progress would keep it open after Close.
			go func() {
				waitEcho(sfd, false)
				if c.typed != "" {
					m.Write([]byte(c.typed))
					// Until the second prompt is out (read here, in the
					// goroutine that closes the master, so no read is left
					// in progress), then no echo again.
					var seen []byte
					buf := make([]byte, 256)
					for !bytes.Contains(seen, []byte("Again: ")) {
						n, err := m.Read(buf)
						if err != nil {
							break
						}
						seen = append(seen, buf[:n]...)
					}
					waitEcho(sfd, false)
				}
				m.Close() // the terminal hangs up
			}()
			v, err := FromTerminal(s, s, "Passphrase: ", c.confirm)
			if err == nil || !strings.Contains(err.Error(), "reading the passphrase") {
				t.Errorf("got %q %v, want a read error", v.RevealString(), err)
			}
		})
	}
}

// TestFromTerminalEOF: the end of input on the terminal (Ctrl-D, or a
// hang-up that makes every read return 0 bytes) ends the prompt with an
// error; it neither waits for more nor spins (x/term's ReadPassword loops
// on a read of 0 bytes).
func TestFromTerminalEOF(t *testing.T) {
	m, s, sfd := openPTY(t)
	go func() {
		waitEcho(sfd, false)
		m.Write([]byte{4}) // VEOF: the read returns 0 bytes
	}()
	done := make(chan error, 1)
	go func() {
		_, err := FromTerminal(s, io.Discard, "Passphrase: ", false)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "EOF") {
			t.Errorf("got %v, want an end-of-input error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the prompt did not end at the end of input")
	}
}
