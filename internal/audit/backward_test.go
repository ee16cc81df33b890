package audit

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
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
	long := strings.Repeat("x", maxSearchLine+10)
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
	} {
		var got []string
		err := eachLineBackward(bytes.NewReader([]byte(tc.data)), int64(len(tc.data)), func(l []byte) bool {
			got = append(got, string(l))
			return true
		})
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
	if first != "line 199999" || cr.read > searchChunk {
		t.Errorf("the newest line of a %d-byte log: %q after reading %d bytes, want one chunk at most", b.Len(), first, cr.read)
	}
}
