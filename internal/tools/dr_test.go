package tools_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
	"github.com/gatehouse-gw/gatehouse/internal/home"
)

const drGroup = `oauth:
  enabled: true
  issuer: http://127.0.0.1:%d
  scopes: [orders:read]
backends:
  - name: sample
    sample: true
apis:
  - name: open
    pathPrefix: /sample
    stripPrefix: true
    backend: sample
  - name: keyed
    pathPrefix: /keyed
    stripPrefix: true
    backend: sample
    policies:
      - apiKey: {}
`

// TestDRDrill: gatehouse dr drill on a running domain with an apiKey API
// and the OAuth server on: the copy restored on other ports, started, every
// smoke request passed (health, each API, the drill's API key, a
// client_credentials grant), recovery time and point printed, the report
// written and named in the audit log, nothing of the copy left; a drill of
// a backup that does not start fails with a report saying why.
func TestDRDrill(t *testing.T) {
	h := gwtest.NewHome(t)
	p := newInstance(t, h, "G", "S", false)
	if err := os.WriteFile(h.Path("groups", "group-2", "conf", "group.yaml"), []byte(fmt.Sprintf(drGroup, p.traffic)), 0o644); err != nil {
		t.Fatal(err)
	}
	h.MustRun("", "startinstance", "-d", "-q", "-n", "S", "-g", "G")
	t.Cleanup(func() { h.Run("", "startinstance", "-k", "-q", "-n", "S", "-g", "G") })
	scratch := t.TempDir()
	report := filepath.Join(t.TempDir(), "drill.json")
	r := h.Run("", "dr", "drill", "--report", report, "--scratch", scratch)
	if r.Code != 0 {
		t.Fatalf("dr drill: %s", r)
	}
	for _, w := range []string{`ok   instance "S" of group "G": /healthcheck`, `ok   group "G": API "open" → 404`, `ok   group "G": API "keyed" with the drill's API key → 404`, // the sample back end answers 404 at /

		`ok   group "G": OAuth client_credentials grant → 200`, "Recovery time: ", "Recovery point: the backup was "} {
		if !strings.Contains(r.Stdout, w) {
			t.Errorf("the drill's output has no %q:\n%s", w, r.Stdout)
		}
	}
	var rep struct {
		Passed   bool
		Recovery struct {
			FirstSmokeOK float64 `json:"firstSmokeOkSeconds"`
			AllSmokeOK   float64 `json:"allSmokeOkSeconds"`
		} `json:"recoveryTime"`
		Point struct {
			KPSWrites string `json:"kpsWritesBefore"`
		} `json:"recoveryPoint"`
		Instances int
		Smoke     []struct {
			What string
			OK   bool
		}
	}
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.Passed || rep.Instances != 1 || len(rep.Smoke) != 4 || rep.Recovery.FirstSmokeOK <= 0 || rep.Recovery.AllSmokeOK < rep.Recovery.FirstSmokeOK || rep.Point.KPSWrites == "" {
		t.Errorf("report: %s", data)
	}
	t.Logf("recovery time %.2f s to the first smoke request, %.2f s to the last", rep.Recovery.FirstSmokeOK, rep.Recovery.AllSmokeOK)
	if ents, _ := os.ReadDir(scratch); len(ents) != 0 {
		t.Errorf("the drill left %v", ents)
	}
	entries, err := audit.Open(home.Home{Dir: h.Dir}).Search(audit.Filter{Action: "dr drill"})
	if err != nil || len(entries) != 1 || !strings.Contains(entries[0].Detail, report) || entries[0].Error != "" {
		t.Errorf("audit: %+v %v", entries, err)
	}
	// The live instance: untouched, and the drill's application is not in
	// its store (it was made in the copy).
	gwtest.AwaitHTTP(t, p.url("/healthcheck"), 200, 5*time.Second)
	if out := h.Run("", "kpsadmin", "-g", "G", "apps", "list"); strings.Contains(out.Stdout, "dr-drill") {
		t.Errorf("the drill's application leaked into the live store: %s", out.Stdout)
	}

	// A backup whose configuration does not start: the drill fails, and
	// its report (the default place) says why.
	if err := os.WriteFile(h.Path("groups", "group-2", "conf", "group.yaml"), []byte("apis:\n  - name: a\n    pathPrefix: /a\n    backend: nowhere\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = h.Run("", "dr", "drill", "--scratch", scratch)
	if r.Code != 1 || !strings.Contains(r.Stderr, "dr drill failed") || !strings.Contains(r.Stderr, "nowhere") {
		t.Fatalf("a drill of a domain that does not start: %s", r)
	}
	reports, _ := filepath.Glob(h.Path("conf", "drills", "drill-*.json"))
	if len(reports) != 1 {
		t.Fatalf("reports: %v", reports)
	}
	data, _ = os.ReadFile(reports[0])
	if !strings.Contains(string(data), `"passed": false`) || !strings.Contains(string(data), "nowhere") {
		t.Errorf("the failed drill's report: %s", data)
	}
	if r := h.Run("", "dr", "drill", "--from"); r.Code != 2 {
		t.Errorf("--from without a file: %s", r)
	}
	if r := h.Run("", "dr"); r.Code != 2 || !strings.Contains(r.Stderr, "drill") {
		t.Errorf("dr without a verb: %s", r)
	}
}
