package tools_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
)

// The deployment commands of the operator's client against a real ANM and
// two real instances: gatehouse deploy, rollback, deployments, archive;
// client topology's deployment column; managedomain --deploy; the usage
// errors.
func TestClientDeploy(t *testing.T) {
	a := startANM(t)
	h := a.h
	h.Env = append(h.Env, "XDG_CONFIG_HOME="+t.TempDir())
	apiURL := fmt.Sprintf("https://localhost:%d/api", a.port)
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("changeme-Secret1\n"), 0o600)
	backend := cdBackend(t)
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	v1 := file("v1.yaml", cdGroupYAML(backend, "/v1", ""))
	v2 := file("v2.yaml", cdGroupYAML(backend, "/v2", ""))
	// Line 7 has the typo.
	bad := file("bad.yaml", "backends:\n  - name: be\n    url: "+backend+"\napis:\n  - name: v1\n    pathPrefix: /v1\n    backnd: be\n")

	wantClient(t, "login", h.Run("", "client", "--url", apiURL, "--username", "admin", "--password-file", pw, "login"), 0, "logged in")
	wantClient(t, "group create", h.Run("", "client", "group", "create", "Deploy Group"), 0, "created group group-2")
	var tps []int
	for i := 1; i <= 2; i++ {
		tp, mp := gwtest.FreePort(t), gwtest.FreePort(t)
		tps = append(tps, tp)
		wantClient(t, "instance create", h.Run("", "client", "instance", "create", "group-2", "Server "+strconv.Itoa(i),
			"--traffic-port", strconv.Itoa(tp), "--management-port", strconv.Itoa(mp)), 0, fmt.Sprintf("created instance instance-%d", i))
		wantClient(t, "start", h.Run("", "client", "start", "group-2", fmt.Sprintf("instance-%d", i)), 0, ": running")
	}
	// serves checks what both instances answer on path.
	serves := func(what, path string, want int) {
		t.Helper()
		for i, tp := range tps {
			code, body := gwtest.Get(t, fmt.Sprintf("http://127.0.0.1:%d%s", tp, path))
			if code != want || (want == 200 && body != "backend "+path) {
				t.Errorf("%s: instance-%d GET %s: got %d %q, want %d", what, i+1, path, code, body, want)
			}
		}
	}

	// Deploy by group name: both instances serve /v1.
	r := h.Run("", "deploy", "-g", "Deploy Group", v1, "--comment", "first one")
	wantClient(t, "deploy", r, 0, "archive 1 of group-2: sha256:", `comment "first one"`, "job 1: deploy of archive 1 to group-2 by admin: succeeded",
		"2 of 2 instances", "instance-1 (Server 1) on host-1: deployed", "instance-2 (Server 2) on host-1: deployed")
	m := regexp.MustCompile(`archive 1 of group-2: sha256:([0-9a-f]{64})`).FindStringSubmatch(r.Stdout)
	if m == nil {
		t.Fatalf("deploy: no checksum in %q", r.Stdout)
	}
	sum1 := m[1]
	serves("after deploy", "/v1/a", 200)

	// An invalid configuration: file and line, nothing stored.
	r = h.Run("", "deploy", "-g", "group-2", bad)
	wantClient(t, "invalid deploy", r, 1, "refused (400)", "nothing was stored", "group.yaml:7:", `unknown key "backnd"`)
	t.Logf("invalid: %s", r.Stderr)

	r = h.Run("", "deployments")
	wantClient(t, "deployments", r, 0, "group-2  1", "first one", "sha256:"+sum1[:12], "group-2 (Deploy Group): consistent, archive 1", "instance-2  Server 2")
	if strings.Contains(r.Stdout, "group-2  2 ") {
		t.Errorf("deployments: the invalid upload was stored: %s", r.Stdout)
	}
	wantClient(t, "client topology", h.Run("", "client", "topology"), 0, "DEPLOYMENT", "consistent, archive 1")

	// A second archive, then a rollback to the first.
	wantClient(t, "second deploy", h.Run("", "deploy", "-g", "group-2", v2, "--comment", "second"), 0, "archive 2 of group-2", "succeeded")
	serves("after the second deploy", "/v2/a", 200)
	serves("after the second deploy", "/v1/a", 404)
	wantClient(t, "rollback", h.Run("", "rollback", "-g", "Deploy Group", "--archive", "1"), 0,
		"archive 1 of group-2: sha256:"+sum1, "rollback of archive 1 to group-2 by admin: succeeded")
	serves("after the rollback", "/v1/a", 200)
	serves("after the rollback", "/v2/a", 404)

	// The download is archive 1, byte for byte what its checksum says, and
	// holds the uploaded file.
	out := filepath.Join(t.TempDir(), "a1.tar.gz")
	wantClient(t, "archive", h.Run("", "archive", "-g", "group-2", "--archive", "1", "-o", out), 0, "wrote archive 1 of group-2 to "+out, sum1+" (verified)")
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if s := sha256.Sum256(data); hex.EncodeToString(s[:]) != sum1 {
		t.Errorf("archive: the file's sha256 is %x, want %s", s, sum1)
	}
	orig, _ := os.ReadFile(v1)
	if got := cdTarFile(t, data, "group.yaml"); got != string(orig) {
		t.Errorf("archive: group.yaml is %q, want the uploaded %q", got, orig)
	}
	wantClient(t, "archive of none", h.Run("", "archive", "-g", "group-2", "--archive", "9", "-o", out+".9"), 1, "(404)", "no archive 9", "gatehouse deployments lists the archives")
	if _, err := os.Stat(out + ".9"); !os.IsNotExist(err) {
		t.Errorf("archive of none: a file was written: %v", err)
	}

	// Store only; then --async with zero-downtime on (0.5 s delays) and a
	// deploy while it runs: 409.
	tgz := file("v2.tar.gz", string(cdTarGz(t, map[string]string{"group.yaml": cdGroupYAML(backend, "/v2", "")})))
	wantClient(t, "deploy --no-deploy of a tar.gz", h.Run("", "deploy", "-g", "group-2", tgz, "--no-deploy"), 0, "archive 3 of group-2", "files group.yaml", "stored, not deployed")
	slow := file("slow.yaml", cdGroupYAML(backend, "/v1", "0.5"))
	r = h.Run("", "deploy", "-g", "group-2", slow, "--async", "--comment", "slow")
	wantClient(t, "deploy --async", r, 0, "archive 4 of group-2", "deploy started; follow it with gatehouse deployments --job")
	m = regexp.MustCompile(`job ([0-9]+): deploy started`).FindStringSubmatch(r.Stdout)
	if m == nil {
		t.Fatalf("deploy --async: no job id in %q", r.Stdout)
	}
	job := m[1]
	wantClient(t, "deploy during a rollout", h.Run("", "deploy", "-g", "group-2", v1), 1, "conflict (409)", "is running (job "+job)
	cdAwaitJob(t, h, job)
	// The refused upload was not stored: the next archive is 5.
	serves("after the zero-downtime deploy", "/v1/a", 200)

	// An instance down: the rollout stops there, exit 1 naming it; the
	// group is inconsistent (instance-1 took archive 5, instance-2 did not).
	wantClient(t, "stop", h.Run("", "client", "stop", "group-2", "instance-2"), 0, ": stopped")
	r = h.Run("", "deploy", "-g", "group-2", v2)
	wantClient(t, "deploy with an instance down", r, 1, "the rollout failed (502)", "instance-2", "not running", "inconsistent",
		"instance-1 (Server 1) on host-1: deployed", "instance-2 (Server 2) on host-1: failed")
	t.Logf("instance down: %s", r)
	wantClient(t, "deployments of an inconsistent group", h.Run("", "deployments", "-g", "Deploy Group"), 0,
		"group-2 (Deploy Group): INCONSISTENT", "the instances are on different archives", "stopped")
	wantClient(t, "client topology of an inconsistent group", h.Run("", "client", "topology"), 0, "INCONSISTENT")

	// Back: start it and redeploy with managedomain --deploy (menu 18's
	// command mode), through the ANM of nodemanager.yaml.
	wantClient(t, "start again", h.Run("", "client", "start", "group-2", "instance-2"), 0, ": running")
	wantClient(t, "managedomain --deploy", h.Run("", "managedomain", "--deploy", "-g", "Deploy Group", "--archive_filename", v1,
		"--username", "admin", "--password_file", pw, "--comment", "by managedomain"), 0, "archive 6 of group-2", `"by managedomain"`, "succeeded", "2 of 2 instances")
	wantClient(t, "deployments --json", h.Run("", "deployments", "-g", "group-2", "--json"), 0, `"consistent": true`, `"archive": 6`)
	serves("after managedomain --deploy", "/v1/a", 200)
	// The menu's option 18: group, file, comment, user, password.
	r = h.Run("18\nDeploy Group\n"+v2+"\nfrom the menu\nadmin\nchangeme-Secret1\nq\n", "managedomain", "--menu")
	wantClient(t, "managedomain menu 18", r, 0, "archive 7 of group-2", `comment "from the menu"`, "succeeded")
	serves("after menu 18", "/v2/a", 200)

	// --dry-run: validated and compared with what runs (archive 7, /v2),
	// nothing stored (#15).
	r = h.Run("", "deploy", "-g", "Deploy Group", v1, "--dry-run")
	wantClient(t, "dry run", r, 0, "is valid for group-2", "nothing was stored", "Changes against archive 7, which the group runs:",
		"--- archive 7/group.yaml", "+++ upload/group.yaml", "-    pathPrefix: /v2", "+    pathPrefix: /v1")
	wantClient(t, "dry run of what runs", h.Run("", "deploy", "-g", "group-2", v2, "--dry-run"), 0, "It is the same as archive 7")
	wantClient(t, "dry run of an invalid file", h.Run("", "deploy", "-g", "group-2", bad, "--dry-run"), 1, "group.yaml:7:", "nothing was stored")
	if r := h.Run("", "deployments"); strings.Contains(r.Stdout, "group-2  8 ") {
		t.Errorf("a dry run stored an archive: %s", r.Stdout)
	}
	// Without FILE: the group's own conf/group.yaml, named in the output.
	os.WriteFile(h.Path("groups", "group-2", "conf", "group.yaml"), []byte(cdGroupYAML(backend, "/v3", "")), 0o644)
	r = h.Run("", "deploy", "-g", "group-2")
	wantClient(t, "deploy without FILE", r, 0, "archive 8 of group-2", "succeeded")
	if !strings.Contains(r.Stderr, filepath.Join("groups", "group-2", "conf", "group.yaml")) {
		t.Errorf("deploy without FILE does not name the file: %s", r.Stderr)
	}
	serves("after deploying group.yaml", "/v3/a", 200)

	t.Run("usage", func(t *testing.T) {
		for _, tt := range []struct {
			name string
			args []string
			want string
		}{
			{"deploy without -g", []string{"deploy", v1}, "deploy wants -g GROUP"},
			{"deploy with two files", []string{"deploy", "-g", "group-2", v1, v2}, "deploy wants [FILE]"},
			{"deploy --dry-run --comment", []string{"deploy", "-g", "group-2", v1, "--dry-run", "--comment", "x"}, "--dry-run stores and rolls out nothing"},
			{"deploy --no-deploy --async", []string{"deploy", "-g", "group-2", v1, "--no-deploy", "--async"}, "not both"},
			{"rollback without --archive", []string{"rollback", "-g", "group-2"}, "rollback wants --archive N"},
			{"rollback --archive x", []string{"rollback", "-g", "group-2", "--archive", "x"}, `--archive "x"`},
			{"archive without -o", []string{"archive", "-g", "group-2", "--archive", "1"}, "archive wants -o FILE"},
			{"deployments --job and -g", []string{"deployments", "--job", "1", "-g", "group-2"}, "not both"},
			{"option of another verb", []string{"deployments", "--comment", "x"}, "--comment is not an option of deployments"},
			{"client deploy without -g", []string{"client", "deploy", v1}, "deploy wants -g GROUP"},
			{"managedomain --deploy without a file", []string{"managedomain", "--deploy", "-g", "x", "--username", "admin"}, "--archive_filename"},
		} {
			r := h.Run("", tt.args...)
			wantClient(t, tt.name, r, 2, tt.want)
		}
		wantClient(t, "deploy --help", h.Run("", "deploy", "--help"), 0, "usage: gatehouse deploy [OPTIONS] -g GROUP [FILE]", "--no-deploy", "--insecure-skip-tls-verify")
		wantClient(t, "client deploy --help", h.Run("", "client", "deploy", "--help"), 0, "usage: gatehouse client [OPTIONS] deploy -g GROUP [FILE]")
		wantClient(t, "archive --help", h.Run("", "archive", "-h"), 0, "-g GROUP --archive N -o FILE", "GET /api/deployment/archive/{groupID}/{archiveID}")
		wantClient(t, "unknown group", h.Run("", "deploy", "-g", "No Such Group", v1), 1, `no group with the id or name "No Such Group"`, "group-2 (Deploy Group)")
		wantClient(t, "missing file", h.Run("", "deploy", "-g", "group-2", filepath.Join(dir, "none.yaml")), 1, "none.yaml")
		wantClient(t, "unknown job", h.Run("", "deployments", "--job", "999"), 1, "not found (404)", "no deployment job")
	})
}

// An archive whose bytes do not match the X-Archive-Checksum the server
// sends is not written (a stand-in ANM that serves a wrong checksum).
func TestClientDeployArchiveChecksum(t *testing.T) {
	h := gwtest.NewHome(t)
	h.Env = append(h.Env, "XDG_CONFIG_HOME="+t.TempDir())
	body := cdTarGz(t, map[string]string{"group.yaml": "apis: []\n"})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/topology":
			fmt.Fprint(w, `{"result":{"groups":[{"id":"group-2","name":"G"}]}}`)
		case "/api/deployment/archive/group-2/1":
			w.Header().Set("X-Archive-Checksum", "sha256:"+strings.Repeat("0", 64))
			w.Write(body)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("whatever-Secret1\n"), 0o600)
	out := filepath.Join(dir, "a.tar.gz")
	r := h.Run("", "archive", "--url", srv.URL+"/api", "--cacert", ca, "--username", "admin", "--password-file", pw, "-g", "G", "--archive", "1", "-o", out)
	wantClient(t, "archive with a wrong checksum", r, 1, "does not match its checksum", "nothing was written")
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("archive with a wrong checksum: %s was written (%v)", out, err)
	}
}

// cdTarGz is a tar.gz of files.
func cdTarGz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, content := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(content))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// cdBackend answers every request with "backend PATH".
func cdBackend(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "backend %s", r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// cdGroupYAML is a group configuration with one API, prefix, to the back
// end; zero-downtime deployment with delay (seconds) when delay is set.
func cdGroupYAML(backend, prefix, delay string) string {
	zd := "  deployment:\n    enabled: false\n"
	if delay != "" {
		zd = fmt.Sprintf("  deployment:\n    enabled: true\n    delayBefore: %s\n    delayAfter: %s\n", delay, delay)
	}
	return "zeroDowntime:\n" + zd + "backends:\n  - name: be\n    url: " + backend + "\napis:\n  - name: api\n    pathPrefix: " + prefix + "\n    backend: be\n"
}

// cdTarFile is the content of name in the tar.gz data.
func cdTarFile(t *testing.T, data []byte, name string) string {
	t.Helper()
	zr, err := gzip.NewReader(strings.NewReader(string(data)))
	if err != nil {
		t.Fatalf("archive: not gzip: %v", err)
	}
	tr := tar.NewReader(zr)
	for {
		hd, err := tr.Next()
		if err != nil {
			t.Fatalf("archive: no %s: %v", name, err)
		}
		if hd.Name == name {
			b, _ := io.ReadAll(tr)
			return string(b)
		}
	}
}

// cdAwaitJob polls gatehouse deployments --job until the job has ended
// and wants it succeeded.
func cdAwaitJob(t *testing.T, h *gwtest.Home, job string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := h.Run("", "deployments", "--job", job)
		if r.Code != 0 {
			t.Fatalf("deployments --job %s: %s", job, r)
		}
		if !strings.Contains(r.Stdout, ": running") {
			wantClient(t, "the async job", r, 0, "job "+job+": deploy of archive", ": succeeded in", "zero-downtime on, 0.5s before and 0.5s after")
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still running after 30 s: %s", job, r.Stdout)
		}
		time.Sleep(100 * time.Millisecond) // polling the job
	}
}
