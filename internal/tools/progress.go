package tools

import (
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/term"
)

// progress reports a long write (a backup) on w: one line redrawn in place
// on a terminal (at most ten times a second), or a plain line every
// interval otherwise (a log, a pipe).
type progress struct {
	w        io.Writer
	tty      bool
	what     string
	interval time.Duration
	last     time.Time
	now      func() time.Time
	drawn    bool
}

// newProgress reports on w, as a terminal when w is one.
func newProgress(w io.Writer, what string) *progress {
	f, ok := w.(*os.File)
	return &progress{w: w, tty: ok && term.IsTerminal(int(f.Fd())), what: what, interval: 5 * time.Second, now: time.Now}
}

// update is backup.Options.Progress.
func (p *progress) update(entries int, bytes int64) {
	now := p.now()
	every := p.interval
	if p.tty {
		every = 100 * time.Millisecond
	}
	if !p.last.IsZero() && now.Sub(p.last) < every {
		return
	}
	if p.last.IsZero() && !p.tty {
		// A plain line only once there is something to say.
		p.last = now
		return
	}
	p.last = now
	if p.tty {
		fmt.Fprintf(p.w, "\r%s: %d entries, %s ", p.what, entries, humanBytes(bytes))
		p.drawn = true
		return
	}
	fmt.Fprintf(p.w, "%s: %d entries, %s so far\n", p.what, entries, humanBytes(bytes))
}

// done ends the redrawn line on a terminal.
func (p *progress) done() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
