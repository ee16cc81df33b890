package sqlite

import (
	"path/filepath"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/kpstest"
)

func TestConformance(t *testing.T) {
	kpstest.Run(t, kpstest.Harness{New: func(t *testing.T) kps.Config {
		return kps.Config{SQLite: kps.SQLiteConfig{Path: filepath.Join(t.TempDir(), "kps", "kps.db")}}
	}})
}
