package h2

import (
	"bytes"
	"context"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/h1"
	"github.com/gatehouse-gw/gatehouse/internal/h2bridge"
)

// h2specVersion is the conformance suite the engine is held to.
const h2specVersion = "github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible"

// h2specBinary builds h2spec once into the user cache directory (not into
// go.mod: it is a tool, not a dependency) and returns its path. A failure
// to build fails the test.
func h2specBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("H2SPEC"); p != "" {
		return p
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatalf("h2spec: no cache directory: %v", err)
	}
	dir := filepath.Join(cache, "gatehouse-h2spec", "v2.2.1")
	bin := filepath.Join(dir, "h2spec")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "install", h2specVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=-mod=mod")
	cmd.Dir = os.TempDir()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building h2spec (%s): %v\n%s", h2specVersion, err, out)
	}
	return bin
}

var h2specSummary = regexp.MustCompile(`(\d+) tests, (\d+) passed, (\d+) skipped, (\d+) failed`)

// runH2spec runs the whole h2spec suite against addr and returns its
// counts and output.
func runH2spec(t *testing.T, addr string) (tests, passed, failed int, out []byte) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, h2specBinary(t), "-h", host, "-p", port, "-t", "-k", "-o", "3")
	out, _ = cmd.CombinedOutput()
	m := h2specSummary.FindSubmatch(out)
	if m == nil {
		t.Fatalf("h2spec printed no summary:\n%s", out)
	}
	tests, _ = strconv.Atoi(string(m[1]))
	passed, _ = strconv.Atoi(string(m[2]))
	failed, _ = strconv.Atoi(string(m[4]))
	return tests, passed, failed, out
}

// TestH2spec: the engine passes every case of h2spec (RFC 7540/9113 and
// RFC 7541 conformance).
func TestH2spec(t *testing.T) {
	s := &Server{Handler: h1.HandlerFunc(func(w h1.ResponseWriter, r *h1.Request) {
		var b bytes.Buffer
		b.ReadFrom(r.Body)
		w.Header().SetString("Content-Type", "text/plain")
		w.Write(h2specBody)
	})}
	addr := startServer(t, s)
	tests, passed, failed, out := runH2spec(t, addr)
	t.Logf("h2spec: %d tests, %d passed, %d failed", tests, passed, failed)
	if testing.Verbose() {
		t.Logf("%s", out)
	}
	if failed != 0 || passed == 0 {
		t.Errorf("h2spec: %d of %d cases failed:\n%s", failed, tests, failures(out))
	}
}

// TestH2specGoServer runs the same suite against Go's HTTP/2 server with
// h2bridge, the other engine of traffic.http2Engine, for comparison: its
// counts are logged, and it fails only if it passes a case this engine
// does not (checked by TestH2spec passing everything).
func TestH2specGoServer(t *testing.T) {
	srv := httptest.NewUnstartedServer(h2bridge.Handler(h1.HandlerFunc(func(w h1.ResponseWriter, r *h1.Request) {
		var b bytes.Buffer
		b.ReadFrom(r.Body)
		w.Header().SetString("Content-Type", "text/plain")
		w.Write(h2specBody)
	})))
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	tests, passed, failed, out := runH2spec(t, srv.Listener.Addr().String())
	t.Logf("h2spec against Go's server: %d tests, %d passed, %d failed", tests, passed, failed)
	if testing.Verbose() {
		t.Logf("%s", out)
	}
}

// failures keeps the failed cases of h2spec's output.
func failures(out []byte) []byte {
	i := bytes.Index(out, []byte("Failures:"))
	if i < 0 {
		return out
	}
	return out[i:]
}

// h2specBody is long enough for every flow-control case of h2spec to run
// (some are skipped for a body of less than 5 bytes).
var h2specBody = []byte("h2spec response body, long enough for the flow-control cases\n")
