package audit_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// chain returns a valid log of n entries and its head file.
func chain(t *testing.T, n int, user string) (log, head []byte) {
	t.Helper()
	h := newHome(t)
	record(t, audit.Open(h), n, user)
	log, _ = os.ReadFile(audit.File(h))
	head, _ = os.ReadFile(audit.HeadFile(h))
	return log, head
}

func splitLines(log []byte) [][]byte {
	return bytes.Split(bytes.TrimSuffix(log, []byte("\n")), []byte("\n"))
}

// Each finding of VerifyData names the first bad entry, the lines read and
// why, in the words of docs/audit.md.
func TestVerifyDataReasons(t *testing.T) {
	log, head := chain(t, 5, "alice")
	ls := splitLines(log)
	_, oneHead := chain(t, 1, "alice")
	other, _ := chain(t, 1, "mallory")
	_, head4 := chain(t, 4, "alice") // another chain's head naming entry 4
	with := func(i int, line []byte) []byte {
		c := bytes.Clone(log)
		cs := splitLines(c)
		cs[i] = line
		return joinLines(cs)
	}
	for _, c := range []struct {
		name      string
		log, head []byte
		verified  bool
		firstBad  int64
		entries   int
		lastSeq   int64
		reason    string
	}{
		{"whole", log, head, true, 0, 5, 5, ""},
		{"no head", log, nil, false, 6, 5, 5, "audit.head is missing: entries after 5 may have been cut from the end"},
		{"empty, no head", nil, nil, true, 0, 0, 0, ""},
		{"empty, head naming entry 0", nil, []byte(`{"seq":0,"line":""}`), true, 0, 0, 0, ""},
		{"head naming entry 0", log, []byte(`{"seq":0,"line":""}`), true, 0, 5, 5, ""},
		{"a newline only", []byte("\n"), nil, false, 1, 1, 0, "line 1 is not an audit entry"},
		{"one byte, no newline", []byte("x"), nil, false, 1, 1, 0, "line 1 is cut off (no newline at its end)"},
		{"last line cut off", log[:len(log)-1], head, false, 5, 5, 4, "line 5 is cut off (no newline at its end)"},
		{"a line that is not JSON", with(2, []byte("garbage")), head, false, 3, 3, 2, "line 3 is not an audit entry"},
		{"two entries on a line", with(1, append(bytes.Clone(ls[1]), ls[1]...)), head, false, 2, 2, 1, "line 2 is not an audit entry: data after the entry"},
		{"an entry missing", joinLines(append(append([][]byte{}, ls[:2]...), ls[3:]...)), head, false, 3, 3, 2, "entry 3 is missing (line 3 holds entry 4)"},
		{"an entry replayed", with(1, ls[0]), head, false, 2, 2, 1, "entry 2 is out of place (line 2 holds entry 1)"},
		{"head does not parse", log, []byte(`{"seq":`), false, 6, 5, 5, "audit.head does not parse"},
		{"entries cut off the end", joinLines(ls[:4]), head, false, 5, 4, 4, "entries 5 to 5 are missing from the end (audit.head names entry 5)"},
		{"head of another chain naming entry 4", log, head4, false, 4, 5, 5, "entry 4 is not the one audit.head recorded"},
		{"empty head file", log, []byte{}, false, 6, 5, 5, "audit.head does not parse"},
		{"log replaced by another chain of the same length", other, oneHead, false, 1, 1, 1, "entry 1 is not the one audit.head recorded"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := audit.VerifyData(c.log, c.head)
			if r.Verified != c.verified || r.FirstBad != c.firstBad || r.Entries != c.entries || r.LastSeq != c.lastSeq || !strings.Contains(r.Reason, c.reason) {
				t.Errorf("got %+v, want verified %v firstBad %d entries %d lastSeq %d reason %q", r, c.verified, c.firstBad, c.entries, c.lastSeq, c.reason)
			}
		})
	}
}

// The head may lag the log by one entry (a crash after the log was
// written, before the head was): the log still verifies.
func TestVerifyHeadLaggingByOne(t *testing.T) {
	h := newHome(t)
	l := audit.Open(h)
	record(t, l, 4, "alice")
	head4, _ := os.ReadFile(audit.HeadFile(h))
	record(t, l, 1, "alice")
	os.WriteFile(audit.HeadFile(h), head4, 0o640)
	if r := verify(t, h); !r.Verified || r.LastSeq != 5 {
		t.Errorf("got %+v, want verified up to 5", r)
	}
}

// A log or head that cannot be read is an error, not a report.
func TestVerifyUnreadable(t *testing.T) {
	for _, c := range []struct {
		name string
		path func(h home.Home) string
		want string
	}{
		{"log", func(h home.Home) string { return audit.File(h) }, "reading audit log"},
		{"head", func(h home.Home) string { return audit.HeadFile(h) }, "reading HEAD"},
	} {
		h := newHome(t)
		record(t, audit.Open(h), 1, "u")
		os.Remove(c.path(h))
		putDir(t, c.path(h))
		want := strings.Replace(c.want, "HEAD", audit.HeadFile(h), 1)
		if r, err := audit.Verify(h); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s unreadable: got %+v, %v, want an error containing %q", c.name, r, err, want)
		}
	}
}

// TestHeadMAC: with the domain key, audit.head carries a MAC; a head
// recomputed without the key (to hide entries cut from the end) fails.
func TestHeadMAC(t *testing.T) {
	h := home.Home{Dir: t.TempDir()}
	if err := os.MkdirAll(h.Path("conf"), 0o755); err != nil {
		t.Fatal(err)
	}
	key := bytes.Repeat([]byte{0xab}, 32)
	if err := os.WriteFile(audit.SessionKeyFile(h), []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l := audit.Open(h)
	for i := range 3 {
		if _, err := l.Record(t.Context(), audit.Entry{User: "u", Via: "test", Action: fmt.Sprintf("a%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := audit.Verify(h)
	if err != nil || !r.Verified || !r.HeadSigned {
		t.Fatalf("a signed head: %+v %v", r, err)
	}
	data, _ := os.ReadFile(audit.File(h))
	headData, _ := os.ReadFile(audit.HeadFile(h))
	// The last entry cut, the head recomputed for entry 2 without the key.
	lines := bytes.SplitAfter(data, []byte("\n"))
	cut := bytes.Join(lines[:2], nil)
	sum := sha256.Sum256(bytes.TrimSuffix(lines[1], []byte("\n")))
	forged := []byte(fmt.Sprintf(`{"seq":2,"line":%q}`, hex.EncodeToString(sum[:])))
	if r := audit.VerifyDataKey(cut, forged, key); r.Verified || r.FirstBad != 3 || !strings.Contains(r.Reason, "not signed with this domain's key") {
		t.Errorf("a recomputed head: %+v", r)
	}
	if r := audit.VerifyData(cut, forged); !r.Verified || r.HeadSigned {
		t.Errorf("without the key the recomputed head cannot be told: %+v", r)
	}
	wrong := bytes.Replace(headData, []byte(`"mac":"`), []byte(`"mac":"00`), 1)
	if r := audit.VerifyDataKey(data, wrong, key); r.Verified {
		t.Errorf("a head with a wrong MAC: %+v", r)
	}
	if r := audit.VerifyDataKey(data, headData, bytes.Repeat([]byte{1}, 32)); r.Verified {
		t.Errorf("another domain's key: %+v", r)
	}
}

// A session key file that is not 32 or more bytes of hex (short, empty,
// damaged) is no key: the head is written and checked unsigned rather than
// with a weak or partial key.
func TestHeadKeyOfWrongShape(t *testing.T) {
	for _, c := range []struct {
		name, content string
		signed        bool
	}{
		{"32 bytes", strings.Repeat("ab", 32), true},
		{"31 bytes", strings.Repeat("ab", 31), false},
		{"empty", "", false},
		{"hex damaged after 40 bytes", strings.Repeat("ab", 40) + "zz" + strings.Repeat("ab", 10), false},
	} {
		h := home.Home{Dir: t.TempDir()}
		os.MkdirAll(h.Path("conf"), 0o755)
		os.WriteFile(audit.SessionKeyFile(h), []byte(c.content+"\n"), 0o600)
		if _, err := audit.Open(h).Record(t.Context(), audit.Entry{User: "u", Action: "a"}); err != nil {
			t.Fatal(err)
		}
		hd, _ := os.ReadFile(audit.HeadFile(h))
		r, err := audit.Verify(h)
		if err != nil || !r.Verified || r.HeadSigned != c.signed || bytes.Contains(hd, []byte(`"mac"`)) != c.signed {
			t.Errorf("%s: %+v %v, head %s; want signed %v", c.name, r, err, hd, c.signed)
		}
	}
}

// The head's edge cases: one entry without a head fails (it could be the
// first of many); a head naming entry 0 of an empty log passes whatever
// its line hash.
func TestHeadEdges(t *testing.T) {
	one, _ := chain(t, 1, "u")
	if r := audit.VerifyData(one, nil); r.Verified || r.FirstBad != 2 {
		t.Errorf("one entry, no head: %+v", r)
	}
	if r := audit.VerifyData(nil, []byte(`{"seq":0,"line":"x"}`)); !r.Verified {
		t.Errorf("an empty log with a head of entry 0: %+v", r)
	}
}
