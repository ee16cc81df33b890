package tools

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestProgress(t *testing.T) {
	clock := time.Unix(1000, 0)
	var buf bytes.Buffer
	p := &progress{w: &buf, what: "backup", interval: 5 * time.Second, now: func() time.Time { return clock }}
	p.update(1, 10)
	clock = clock.Add(time.Second)
	p.update(2, 20)
	if buf.Len() != 0 {
		t.Fatalf("a line before the interval: %q", buf.String())
	}
	clock = clock.Add(5 * time.Second)
	p.update(30, 3<<20)
	p.update(31, 4<<20) // at once: not again
	p.done()
	if got := buf.String(); got != "backup: 30 entries, 3.0 MiB so far\n" {
		t.Fatalf("plain lines: %q", got)
	}

	buf.Reset()
	tty := &progress{w: &buf, tty: true, what: "backup", interval: 5 * time.Second, now: func() time.Time { return clock }}
	tty.update(1, 512)
	clock = clock.Add(50 * time.Millisecond)
	tty.update(2, 2048)
	clock = clock.Add(100 * time.Millisecond)
	tty.update(3, 3<<30)
	tty.done()
	if got := buf.String(); got != "\rbackup: 1 entries, 512 bytes \rbackup: 3 entries, 3.0 GiB \n" {
		t.Fatalf("terminal: %q", got)
	}
	if !strings.HasSuffix(humanBytes(2048), "2.0 KiB") {
		t.Errorf("humanBytes(2048) = %s", humanBytes(2048))
	}
}
