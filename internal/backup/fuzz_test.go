package backup

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// FuzzVerify: any bytes given to verify (and restore) end in a manifest or
// in ErrDamaged, never a panic, a hang or another error.
func FuzzVerify(f *testing.F) {
	h := home.Home{Dir: f.TempDir()}
	for _, d := range []string{"conf", "groups/group-2/conf", "system/conf"} {
		if err := mkdir(h, d); err != nil {
			f.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if _, err := Write(context.Background(), h, &buf, Options{}); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add(buf.Bytes()[:buf.Len()/2])
	f.Add([]byte{0x1f, 0x8b})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Verify(context.Background(), bytes.NewReader(b))
		if err != nil && !errors.Is(err, ErrDamaged) {
			t.Fatalf("an error that is not ErrDamaged: %v", err)
		}
		if err == nil && m == nil {
			t.Fatal("no error and no manifest")
		}
	})
}

func mkdir(h home.Home, rel string) error {
	return os.MkdirAll(h.Path(rel), 0o755)
}
