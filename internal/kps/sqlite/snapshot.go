package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
)

// Snapshot writes a consistent copy of the store at src to dst (which must
// not exist), while other processes may write to it: SQLite's VACUUM INTO
// runs in one read transaction, so the copy holds every transaction
// committed before it began and none after, and it is a whole database
// with no write-ahead log beside it. A backup takes it (internal/backup).
func Snapshot(ctx context.Context, src, dst string) error {
	if strings.ContainsAny(src, "?#") || strings.ContainsAny(dst, "'") {
		return kps.Invalid("sqlite snapshot: unusable path %q or %q", src, dst)
	}
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("kps store %s: %w", src, err)
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("mode", "ro")
	db, err := sql.Open("sqlite", "file:"+filepath.ToSlash(src)+"?"+q.Encode())
	if err != nil {
		return fmt.Errorf("kps store %s: %w", src, kps.Unavailable(err))
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", dst); err != nil {
		os.Remove(dst)
		return fmt.Errorf("snapshot of the kps store %s: %w", src, classify(err))
	}
	return nil
}
