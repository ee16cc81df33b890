package audit_test

import (
	"os"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// FuzzVerify: any audit.log and audit.head (a damaged or tampered install
// directory) give a report, never a panic, and a verified report names no
// bad entry.
func FuzzVerify(f *testing.F) {
	h, _ := home.At(f.TempDir())
	l := audit.Open(h)
	for range 3 {
		l.Record(f.Context(), audit.Entry{User: "u", Via: "test", Remote: "local", Action: "create group", Targets: []string{"group-2"}})
	}
	log, _ := os.ReadFile(audit.File(h))
	hd, _ := os.ReadFile(audit.HeadFile(h))
	f.Add(log, hd)
	f.Add(log[:len(log)-7], hd)
	f.Add([]byte("{}\n"), []byte(`{"seq":-1}`))
	f.Add([]byte("\n\n"), []byte(`{"seq":9,"line":""}`))
	f.Fuzz(func(t *testing.T, log, head []byte) {
		r := audit.VerifyData(log, head)
		if r.Verified != (r.FirstBad == 0) {
			t.Fatalf("got verified %v with firstBad %d", r.Verified, r.FirstBad)
		}
		if r.Verified && len(log) > 0 && log[len(log)-1] != '\n' {
			t.Fatalf("a log without a final newline verified")
		}
	})
}
