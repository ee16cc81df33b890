package instance

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"gopkg.in/natefinch/lumberjack.v2"
)

// logFile is a rotated log file that drops writes once closed, so that a
// handler still running after a forced stop cannot reopen it.
type logFile struct {
	mu     sync.Mutex
	lj     *lumberjack.Logger
	closed bool
}

func newLogFile(path string, c groupconf.Log) *logFile {
	return &logFile{lj: &lumberjack.Logger{
		Filename:   path,
		MaxSize:    c.MaxSizeMB,
		MaxBackups: c.MaxBackups,
		MaxAge:     c.MaxAgeDays,
		Compress:   c.Compress,
	}}
}

func (f *logFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return len(p), nil
	}
	return f.lj.Write(p)
}

// apply takes the rotation settings of c for the next writes. The rotated
// logger is replaced rather than changed: its background cleanup reads its
// settings without our lock.
func (f *logFile) apply(c groupconf.Log) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || (f.lj.MaxSize == c.MaxSizeMB && f.lj.MaxBackups == c.MaxBackups && f.lj.MaxAge == c.MaxAgeDays && f.lj.Compress == c.Compress) {
		return
	}
	_ = f.lj.Close()
	f.lj = newLogFile(f.lj.Filename, c).lj
}

func (f *logFile) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	return f.lj.Close()
}

// logs are an instance's two logs.
type logs struct {
	level    *slog.LevelVar
	instance *slog.Logger // JSON to logs/instance.log, and text to the console unless quiet
	access   *accessLog   // JSON to logs/access.log, one line per request
	files    []*logFile
}

func openLogs(dir string, c groupconf.Log, quiet bool, console io.Writer) (*logs, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating log directory: %w", err)
	}
	l := &logs{level: new(slog.LevelVar)}
	if err := l.level.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	inst := newLogFile(filepath.Join(dir, "instance.log"), c)
	acc := newLogFile(filepath.Join(dir, "access.log"), c)
	l.files = []*logFile{inst, acc}
	var h slog.Handler = slog.NewJSONHandler(inst, &slog.HandlerOptions{Level: l.level})
	if !quiet && console != nil {
		h = slog.NewMultiHandler(h, slog.NewTextHandler(console, &slog.HandlerOptions{Level: l.level}))
	}
	l.instance = slog.New(h)
	l.access = newAccessLog(acc)
	return l, nil
}

// apply takes the level and rotation settings of c (a configuration swap).
func (l *logs) apply(c groupconf.Log, level slog.Level) {
	l.level.Set(level)
	for _, f := range l.files {
		f.apply(c)
	}
}

func (l *logs) close() {
	l.access.close()
	for _, f := range l.files {
		_ = f.Close()
	}
}
