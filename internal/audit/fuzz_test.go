package audit_test

import (
	"bytes"
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
	// Ends of input: the log or the head cut anywhere, a head naming entry
	// 0 or the last entry, an empty head file.
	f.Add(log, []byte(nil))
	f.Add(log, []byte{})
	f.Add(log, []byte(`{"seq":0,"line":""}`))
	f.Add([]byte(nil), []byte(`{"seq":0,"line":""}`))
	f.Add([]byte(nil), []byte(`{"seq":1,"line":""}`))
	f.Add(log, hd[:len(hd)/2])
	f.Add(log, []byte(`{"seq":3,"line":"`))
	f.Add(log[:len(log)-1], hd)
	f.Add(log[:bytes.IndexByte(log, '\n')+1], hd)
	f.Add(log[:bytes.IndexByte(log, '\n')], hd)
	f.Add([]byte("x"), []byte(nil))
	f.Add([]byte("\n"), []byte(nil))
	f.Add([]byte(`{"seq":1,"user":"a\`), []byte(nil))
	f.Add([]byte(`{"seq":1,"user":"a\"`+"\n"), []byte(nil))
	f.Add(append(bytes.TrimSuffix(log, []byte("\n")), `{}`+"\n"...), hd)
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
