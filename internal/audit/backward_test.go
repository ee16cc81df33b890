package audit

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// countingReader counts the bytes read through it.
type countingReader struct {
	r    *bytes.Reader
	read int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.read += int64(n)
	return n, err
}

func TestEachLineBackward(t *testing.T) {
	// docs/audit.md: a line over 1 MiB is skipped.
	const mib = 1 << 20
	long := strings.Repeat("x", mib+10)
	longer := strings.Repeat("y", 2*mib+10) // long enough to be dropped while read
	exact := strings.Repeat("e", mib)
	span := strings.Repeat("s", searchChunk+100) // spans a chunk boundary
	for _, tc := range []struct {
		name, data string
		want       []string
	}{
		{"empty", "", nil},
		{"one line, no newline", "a", []string{"a"}},
		{"newline at the end", "a\nb\n", []string{"b", "a"}},
		{"empty lines skipped", "a\n\n\nb", []string{"b", "a"}},
		{"a line across chunks", "first\n" + span + "\nlast\n", []string{"last", span, "first"}},
		{"a line too long is skipped whole", "first\n" + long + "\nlast\n", []string{"last", "first"}},
		{"a line too long at the start", long + "\nlast", []string{"last"}},
		{"a line far too long", "first\n" + longer + "\nlast\n", []string{"last", "first"}},
		{"a line far too long at the start", longer + "\nlast", []string{"last"}},
		{"a line of 1 MiB is kept", "first\n" + exact + "\nlast", []string{"last", exact, "first"}},
		{"a line of 1 MiB at the start is kept", exact + "\nlast", []string{"last", exact}},
		{"a newline first", "\na", []string{"a"}},
		{"newlines only", "\n\n", nil},
	} {
		var got []string
		done := make(chan error, 1)
		go func() {
			done <- eachLineBackward(bytes.NewReader([]byte(tc.data)), int64(len(tc.data)), func(l []byte) bool {
				got = append(got, string(l))
				return true
			})
		}()
		var err error
		select {
		case err = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: eachLineBackward did not return within 10 s", tc.name)
		}
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: got %d lines %.60q (%v), want %d %.60q", tc.name, len(got), got, err, len(tc.want), tc.want)
		}
	}
	// Stopping early reads no more than needed: memory and work do not
	// grow with the log.
	var b strings.Builder
	for i := range 200000 {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	cr := &countingReader{r: bytes.NewReader([]byte(b.String()))}
	var first string
	eachLineBackward(cr, int64(b.Len()), func(l []byte) bool { first = string(l); return false })
	if first != "line 199999" || cr.read > 64<<10 {
		t.Errorf("the newest line of a %d-byte log: %q after reading %d bytes, want one chunk at most", b.Len(), first, cr.read)
	}
}

// The part of a line too long to keep is dropped while it is read: reading
// an 8 MiB line allocates a bounded amount, not the line's size per chunk.
func TestEachLineBackwardMemory(t *testing.T) {
	data := []byte("first\n" + strings.Repeat("z", 8<<20) + "\nlast\n")
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.TotalAlloc
	var got []string
	eachLineBackward(bytes.NewReader(data), int64(len(data)), func(l []byte) bool {
		got = append(got, string(l))
		return true
	})
	runtime.ReadMemStats(&ms)
	if alloc := ms.TotalAlloc - before; alloc > 200<<20 || fmt.Sprint(got) != "[last first]" {
		t.Fatalf("an 8 MiB line: %d MiB allocated, lines %.40q; want under 200 MiB and [last first]", alloc>>20, got)
	}
}
