package audit

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

var errInjected = errors.New("injected I/O error")

// faultyFile is the real log file with one operation failing.
type faultyFile struct {
	*os.File
	failStat, failWrite, failSync bool
	failReadAt                    int // the n-th ReadAt fails (1-based; 0: none)
	reads                         int
}

func (f *faultyFile) Stat() (fs.FileInfo, error) {
	if f.failStat {
		return nil, errInjected
	}
	return f.File.Stat()
}

func (f *faultyFile) ReadAt(b []byte, off int64) (int, error) {
	f.reads++
	if f.reads == f.failReadAt {
		return 0, errInjected
	}
	return f.File.ReadAt(b, off)
}

func (f *faultyFile) Write(b []byte) (int, error) {
	if f.failWrite {
		return 0, errInjected
	}
	return f.File.Write(b)
}

func (f *faultyFile) Sync() error {
	if f.failSync {
		return errInjected
	}
	return f.File.Sync()
}

// Every I/O error of an append is returned, naming the log, and the head
// is not moved past what is in the log.
func TestRecordIOFaults(t *testing.T) {
	for _, c := range []struct {
		name  string
		fault faultyFile
		torn  bool // the log ends in a torn line (the whole log is read)
		want  string
	}{
		{"stat", faultyFile{failStat: true}, false, "audit log: reading"},
		{"reading the end", faultyFile{failReadAt: 1}, false, "audit log: reading"},
		{"reading the whole log after a torn line", faultyFile{failReadAt: 2}, true, "audit log: reading"},
		{"write", faultyFile{failWrite: true}, false, "audit log: writing"},
		{"sync", faultyFile{failSync: true}, false, "audit log: syncing"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, err := home.At(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			good := Open(h)
			for range 2 {
				if _, err := good.Record(t.Context(), Entry{User: "u", Action: "a"}); err != nil {
					t.Fatal(err)
				}
			}
			if c.torn {
				f, _ := os.OpenFile(File(h), os.O_WRONLY|os.O_APPEND, 0)
				f.WriteString(`{"seq":3`)
				f.Close()
			}
			headBefore, _ := os.ReadFile(HeadFile(h))
			l := &Log{h: h, open: func(name string) (logFile, error) {
				f, err := os.OpenFile(name, os.O_RDWR|os.O_APPEND, 0)
				ff := c.fault
				ff.File = f
				return &ff, err
			}}
			_, err = l.Record(t.Context(), Entry{User: "u", Action: "b"})
			if want := c.want + " " + File(h); !errors.Is(err, errInjected) || !strings.Contains(err.Error(), want) {
				t.Fatalf("got %v, want %q and the injected error", err, want)
			}
			if headAfter, _ := os.ReadFile(HeadFile(h)); string(headAfter) != string(headBefore) {
				t.Errorf("audit.head moved to %s", headAfter)
			}
		})
	}
}

func TestLastGoodSeqReadError(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := lastGoodSeq(&faultyFile{File: f, failReadAt: 1}); !errors.Is(err, errInjected) {
		t.Errorf("got %v, want the read error", err)
	}
	if n, err := lastGoodSeq(strings.NewReader("{\"seq\":7}\n{\"seq\":3}\nx\n{\"seq\":5}")); n != 7 || err != nil {
		t.Errorf("got %d, %v, want 7 (the highest)", n, err)
	}
}
