package h2

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/h1"
)

var h2loadDone = regexp.MustCompile(`requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)

// TestNghttp2Clients: nghttp2's own clients (Debian's nghttp2-client)
// against the engine: a 1 MiB download and upload with nghttp, and h2load
// with 100 streams at a time (the advertised maximum), with large bodies
// both ways. scripts/test installs them; without them the test fails,
// saying so (a test that skips proves nothing).
func TestNghttp2Clients(t *testing.T) {
	for _, bin := range []string{"nghttp", "h2load"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is not installed (apt-get install nghttp2-client; scripts/test does it)", bin)
		}
	}
	big := strings.Repeat("0123456789abcdef", 1<<16)
	addr := startServer(t, &Server{Handler: h1.HandlerFunc(func(w h1.ResponseWriter, r *h1.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil || r.ContentLength > 0 && n != r.ContentLength {
			w.WriteHeader(400)
			return
		}
		if string(r.Path) == "/big" {
			w.Write([]byte(big))
			return
		}
		w.Write([]byte("ok"))
	})})
	up := filepath.Join(t.TempDir(), "up.bin")
	os.WriteFile(up, []byte(big), 0o644)
	base := "https://" + addr
	for _, args := range [][]string{
		{"nghttp", "-n", "-s", base + "/big"},
		{"nghttp", "-n", "-s", "-d", up, base + "/up"},
	} {
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), " 200 ") {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
	}
	for _, args := range [][]string{
		{"h2load", "-n3000", "-c4", "-m100", base + "/x"},
		{"h2load", "-n200", "-c2", "-m20", base + "/big"},
		{"h2load", "-n200", "-c2", "-m20", "-d", up, base + "/up"},
	} {
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		m := h2loadDone.FindStringSubmatch(string(out))
		if err != nil || m == nil || m[1] != m[2] || !strings.Contains(string(out), "status codes: "+m[1]+" 2xx") {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
	}
}
