package tools_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/user"
	"strconv"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
	"github.com/gatehouse-gw/gatehouse/internal/home"
)

type auditEntry struct {
	Seq           int64
	User, Via     string
	Remote        string
	Action        string
	Detail        string
	Targets       []string
	Outcome       string
	Error         string
	BeforeVersion int64
	AfterVersion  int64
}

type auditAnswer struct {
	Entries  []auditEntry
	Verified bool
	FirstBad int64
	Reason   string
}

func (a *anm) audit(query string) auditAnswer {
	a.t.Helper()
	var got auditAnswer
	result(a.t, a.curl("-u", adminCreds, "/api/audit?"+query), 200, &got)
	return got
}

// The audit log through the real binary: changes by managedomain (one of
// them refused) and starts and stops through the API of a real ANM are
// recorded with who, via, where from and the outcome; GET /api/audit
// searches them; gatehouse audit verify holds the chain, and after the
// file is tampered with both it and the API name the bad entry.
func TestAuditLog(t *testing.T) {
	a := startANM(t)
	h := a.h
	osUser := "root"
	if u, err := user.Current(); err == nil {
		osUser = u.Username
	}
	tp, mp := gwtest.FreePort(t), gwtest.FreePort(t)
	h.MustRun("", "managedomain", "-c", "-n", "S1", "-g", "G", "--traffic_port", strconv.Itoa(tp), "--management_port", strconv.Itoa(mp))
	if r := h.Run("", "managedomain", "-c", "-n", "S1", "-g", "G"); r.Code == 0 {
		t.Fatalf("a second S1: got %s, want a refusal", r)
	}

	// Through the API: start, stop, and a start of an unknown instance.
	var st struct{ Status string }
	result(t, a.api("POST", "/api/management/start/group-2/instance-1", ""), 200, &st)
	result(t, a.api("POST", "/api/management/stop/group-2/instance-1", ""), 200, &st)
	if r := a.api("POST", "/api/management/start/group-2/instance-9", ""); r.code != 404 {
		t.Fatalf("unknown instance: got %d %s", r.code, r.body)
	}
	result(t, a.api("POST", "/api/management/status/group-2/instance-1", ""), 200, &st) // not recorded

	// The node manager starts and stops instances with startinstance, which
	// records them too (as the tool, by the node manager's OS user).
	all := a.audit("")
	if !all.Verified || len(all.Entries) != 8 {
		t.Fatalf("got %+v, want 8 verified entries", all)
	}
	want := []struct{ user, via, action, outcome string }{
		{"admin", "api", "start instance", "error"},
		{"admin", "api", "stop instance", "ok"},
		{osUser, "startinstance", "stop instance", "ok"},
		{"admin", "api", "start instance", "ok"},
		{osUser, "startinstance", "start instance", "ok"},
		{osUser, "managedomain", "create instance", "error"},
		{osUser, "managedomain", "create instance", "ok"},
		{osUser, "managedomain", "create domain", "ok"},
	}
	for i, w := range want {
		e := all.Entries[i]
		if e.User != w.user || e.Via != w.via || e.Action != w.action || e.Outcome != w.outcome {
			t.Errorf("entry %d: got %+v, want %+v", i, e, w)
		}
		if wantSeq := int64(8 - i); e.Seq != wantSeq {
			t.Errorf("entry %d: got seq %d, want %d (newest first)", i, e.Seq, wantSeq)
		}
		if w.via == "api" && (e.Remote == "" || e.Remote == "local") {
			t.Errorf("entry %d: got remote %q, want the client's address", i, e.Remote)
		}
		if w.via != "api" && e.Remote != "local" {
			t.Errorf("entry %d: got remote %q, want local", i, e.Remote)
		}
	}
	if e := all.Entries[6]; e.AfterVersion != e.BeforeVersion+1 || !strings.Contains(strings.Join(e.Targets, " "), "instance-1") {
		t.Errorf("create instance: got %+v, want versions and instance-1 in targets", e)
	}
	if e := all.Entries[5]; e.AfterVersion != 0 || !strings.Contains(e.Error, "S1") {
		t.Errorf("refused create: got %+v, want its error naming S1", e)
	}
	if e := all.Entries[0]; fmt.Sprint(e.Targets) != "[group-2 instance-9]" || !strings.Contains(e.Error, "instance-9") {
		t.Errorf("refused start: got %+v", e)
	}

	// Search.
	for _, tt := range []struct {
		query string
		seqs  string
	}{
		{"user=admin", "[8 7 5]"},
		{"user=" + url.QueryEscape(osUser) + "&action=" + url.QueryEscape("create instance"), "[3 2]"},
		{"action=STOP", "[7 6]"},
		{"limit=2", "[8 7]"},
		{"since=2000-01-01&until=2001-01-01", "[]"},
	} {
		var seqs []int64
		for _, e := range a.audit(tt.query).Entries {
			seqs = append(seqs, e.Seq)
		}
		if got := fmt.Sprint(seqs); got != tt.seqs {
			t.Errorf("GET /api/audit?%s: got %s, want %s", tt.query, got, tt.seqs)
		}
	}
	if r := a.curl("-u", adminCreds, "/api/audit?since=yesterday"); r.code != 400 || !strings.Contains(r.body, "RFC 3339") {
		t.Errorf("bad since: got %d %s", r.code, r.body)
	}
	if r := a.curl("/api/audit"); r.code != 401 {
		t.Errorf("without credentials: got %d, want 401", r.code)
	}

	// The tool.
	if r := h.MustRun("", "audit", "verify"); !strings.Contains(r.Stdout, "8 entries, hash chain verified") {
		t.Errorf("audit verify: got %s", r)
	}
	if r := h.Run("", "audit", "--help"); r.Code != 0 || !strings.Contains(r.Stdout, "usage: gatehouse audit verify") {
		t.Errorf("audit --help: got %s", r)
	}
	if r := h.Run("", "audit", "check"); r.Code != 2 {
		t.Errorf("audit check: got %s, want exit 2", r)
	}

	// Tampered: the refused create made to look successful.
	log := h.Path("conf", "audit", "audit.log")
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(data, []byte("\n"))
	var e3 map[string]any
	json.Unmarshal(lines[2], &e3)
	if e3["seq"] != float64(3) {
		t.Fatalf("line 3: got %s", lines[2])
	}
	lines[2] = bytes.Replace(lines[2], []byte(`"outcome":"error"`), []byte(`"outcome":"ok"`), 1)
	if err := os.WriteFile(log, bytes.Join(lines, []byte("\n")), 0o640); err != nil {
		t.Fatal(err)
	}
	if r := h.Run("", "audit", "verify"); r.Code != 1 || !strings.Contains(r.Stderr, "entry 3 is bad") {
		t.Errorf("audit verify after tampering: got %s, want exit 1 naming entry 3", r)
	}
	if got := a.audit(""); got.Verified || got.FirstBad != 3 {
		t.Errorf("API after tampering: got verified %v firstBad %d, want false and 3", got.Verified, got.FirstBad)
	}
}

// The audit log rotates by size in the real processes: with
// audit.maxFileBytes in nodemanager.yaml, the Admin Node Manager's next
// entry rotates a full audit.log to audit.000001.log and starts a new one
// that continues the chain; gatehouse audit verify checks both files and
// GET /api/audit finds entries in each.
func TestAuditLogRotates(t *testing.T) {
	a := startANM(t)
	h := a.h
	conf := h.Path("system", "conf", "nodemanager.yaml")
	data, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, append(data, "audit:\n  maxFileBytes: 65536\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	hh, err := home.At(h.Dir)
	if err != nil {
		t.Fatal(err)
	}
	// Fill audit.log with entries of this test until the next would not
	// fit; the ANM's entry, longer than these, then does not fit either.
	l := audit.Open(hh)
	for last := int64(0); ; {
		st, err := os.Stat(audit.File(hh))
		if err != nil {
			t.Fatal(err)
		}
		if st.Size()+last+16 > 65536 {
			break
		}
		if _, err := l.Record(context.Background(), audit.Entry{User: "filler", Via: "test", Remote: "local", Action: "fill"}); err != nil {
			t.Fatal(err)
		}
		st2, _ := os.Stat(audit.File(hh))
		last = st2.Size() - st.Size()
	}
	if _, err := os.Stat(audit.RotatedFile(hh, 1)); err == nil {
		t.Fatal("rotated while filling")
	}
	// A wrong login: the ANM records it, rotating the log.
	if r := a.curl("-u", "admin:wrong-password-1", "/api/topology"); r.code != 401 {
		t.Fatalf("wrong password: got %d %s", r.code, r.body)
	}
	if _, err := os.Stat(audit.RotatedFile(hh, 1)); err != nil {
		t.Fatalf("the ANM's entry did not rotate the log: %v", err)
	}
	if r := h.MustRun("", "audit", "verify"); !strings.Contains(r.Stdout, "in 2 files (1 rotated), hash chain verified") {
		t.Errorf("audit verify: got %s", r)
	}
	got := a.audit("limit=1000")
	if !got.Verified || len(got.Entries) < 100 || got.Entries[0].Action != "login" || got.Entries[0].Outcome != "error" || got.Entries[len(got.Entries)-1].Seq != 1 {
		t.Fatalf("GET /api/audit: verified %v, %d entries, newest %+v", got.Verified, len(got.Entries), got.Entries[0])
	}
	for i := 1; i < len(got.Entries); i++ {
		if got.Entries[i].Seq != got.Entries[i-1].Seq-1 {
			t.Fatalf("GET /api/audit: entry %d after %d", got.Entries[i].Seq, got.Entries[i-1].Seq)
		}
	}
	// Tampering with the rotated file is found and named.
	rot := audit.RotatedFile(hh, 1)
	data, _ = os.ReadFile(rot)
	os.WriteFile(rot, bytes.Replace(data, []byte(`"user":"filler"`), []byte(`"user":"fillex"`), 1), 0o640)
	if r := h.Run("", "audit", "verify"); r.Code != 1 || !strings.Contains(r.Stderr, "audit.000001.log: entry") {
		t.Errorf("audit verify after tampering with the rotated file: got %s", r)
	}
}
