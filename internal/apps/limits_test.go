package apps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
)

// TestApplicationLimits: each documented limit of an application's fields
// at its edge (accepted at the limit, refused one past it), and the
// characters a name may hold.
func TestApplicationLimits(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	c := &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	m := newManager(t, s, c)
	apis := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprint("api-", i)
		}
		return out
	}
	n := 0
	name := func() string { n++; return fmt.Sprint("app-", n) }
	for _, tc := range []struct {
		what string
		app  App
		ok   bool
	}{
		{"name of 128 bytes", App{Name: strings.Repeat("n", 128)}, true},
		{"name of 129 bytes", App{Name: strings.Repeat("n", 129)}, false},
		{"name of 64 two-byte characters", App{Name: strings.Repeat("é", 64)}, true},
		{"name with a space inside and a tilde", App{Name: "a b~"}, true},
		{"name with 0x1f", App{Name: "a\x1fb"}, false},
		{"name with DEL", App{Name: "a\x7fb"}, false},
		{"name not UTF-8", App{Name: "a\xffb"}, false},
		{"name only spaces", App{Name: "   "}, false},
		{"description of 4096 bytes", App{Name: name(), Description: strings.Repeat("d", 4096)}, true},
		{"description of 4097 bytes", App{Name: name(), Description: strings.Repeat("d", 4097)}, false},
		{"contact of 128 bytes", App{Name: name(), Contact: strings.Repeat("c", 128)}, true},
		{"contact of 129 bytes", App{Name: name(), Contact: strings.Repeat("c", 129)}, false},
		{"1024 APIs", App{Name: name(), APIs: apis(1024)}, true},
		{"1025 APIs", App{Name: name(), APIs: apis(1025)}, false},
		{"an API name of 128 bytes", App{Name: name(), APIs: []string{strings.Repeat("a", 128)}}, true},
		{"an API name of 129 bytes", App{Name: name(), APIs: []string{strings.Repeat("a", 129)}}, false},
		{"an empty API name", App{Name: name(), APIs: []string{""}}, false},
	} {
		_, err := m.CreateApp(ctx, tc.app)
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: refused: %v", tc.what, err)
		case !tc.ok && !errors.Is(err, kps.ErrInvalid):
			t.Errorf("%s: %v, want ErrInvalid", tc.what, err)
		}
	}
	// An application without APIs reads back with an empty list (JSON []).
	a, err := m.CreateApp(ctx, App{Name: "none"})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := m.App(ctx, a.ID)
	if b, _ := json.Marshal(got); got.APIs == nil || !strings.Contains(string(b), `"apis":[]`) {
		t.Errorf("no APIs read back as %s", b)
	}
	// A key's creation time is kept.
	c.t = c.t.Add(time.Hour)
	k, _, err := m.CreateKey(ctx, a.ID, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Key(ctx, k.ID); !got.CreatedAt.Equal(c.t) || got.CreatedAt.Location() != time.UTC {
		t.Errorf("key created at %v, want %v (UTC)", got.CreatedAt, c.t)
	}
}
