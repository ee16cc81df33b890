package tlsticket_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/fieldcrypt"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
	"github.com/gatehouse-gw/gatehouse/internal/tlsticket"
)

// scripted fails the calls on chosen slots.
type scripted struct {
	kps.SharedSecrets
	lookup, offer, replace map[string]error
	conflict               bool // every replace loses a race
}

func (s *scripted) LookupSharedSecret(ctx context.Context, name string) ([]byte, error) {
	if err := s.lookup[name]; err != nil {
		return nil, err
	}
	return s.SharedSecrets.LookupSharedSecret(ctx, name)
}

func (s *scripted) SharedSecret(ctx context.Context, name string, offer []byte) ([]byte, error) {
	if err := s.offer[name]; err != nil {
		return nil, err
	}
	return s.SharedSecrets.SharedSecret(ctx, name, offer)
}

func (s *scripted) ReplaceSharedSecret(ctx context.Context, name string, old, value []byte) error {
	if s.conflict {
		return &kps.Error{Op: "shared secret", Key: name, Err: kps.ErrConflict}
	}
	if err := s.replace[name]; err != nil {
		return err
	}
	return s.SharedSecrets.ReplaceSharedSecret(ctx, name, old, value)
}

func TestStoreFaults(t *testing.T) {
	ctx := context.Background()
	down := errors.New("connection reset")
	fresh := func() *scripted {
		return &scripted{SharedSecrets: openStore(t, filepath.Join(t.TempDir(), "kps.db")).LocalSecrets(), lookup: map[string]error{}, offer: map[string]error{}, replace: map[string]error{}}
	}
	// Reading the previous period's slot, the next one's, offering, and
	// replacing: each failure is an error naming the slot.
	s := fresh()
	s.lookup[tlsticket.SlotName(19)] = down
	if _, err := tlsticket.New(tlsticket.Options{Store: s}).Keys(ctx, 20); err == nil || !strings.Contains(err.Error(), "reading "+tlsticket.SlotName(19)) {
		t.Errorf("the previous slot unreadable: %v", err)
	}
	s = fresh()
	s.lookup[tlsticket.SlotName(21)] = down
	if _, err := tlsticket.New(tlsticket.Options{Store: s}).Keys(ctx, 20); err == nil || !strings.Contains(err.Error(), tlsticket.SlotName(21)) {
		t.Errorf("the next slot unreadable: %v", err)
	}
	s = fresh()
	s.offer[tlsticket.SlotName(20)] = down
	if _, err := tlsticket.New(tlsticket.Options{Store: s}).Keys(ctx, 20); err == nil || !errors.Is(err, down) {
		t.Errorf("the offer refused: %v", err)
	}
	s = fresh()
	if _, err := tlsticket.New(tlsticket.Options{Store: s}).Keys(ctx, 20); err != nil {
		t.Fatal(err)
	}
	s.replace[tlsticket.SlotName(23)] = down
	if _, err := tlsticket.New(tlsticket.Options{Store: s}).Keys(ctx, 23); err == nil || !strings.Contains(err.Error(), "replacing "+tlsticket.SlotName(23)) {
		t.Errorf("the replace refused: %v", err)
	}
	s.replace = map[string]error{}
	s.conflict = true
	if _, err := tlsticket.New(tlsticket.Options{Store: s}).Keys(ctx, 23); err == nil || !strings.Contains(err.Error(), "kept changing") {
		t.Errorf("always a race lost: %v", err)
	}
}

func TestSlotFormat(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, filepath.Join(t.TempDir(), "kps.db")).LocalSecrets()
	keys, err := tlsticket.New(tlsticket.Options{Store: st}).Keys(ctx, 1234)
	if err != nil {
		t.Fatal(err)
	}
	// The stored form is shared by every version of the group's
	// instances: the period (8 bytes, big-endian), then the key.
	raw, err := st.LookupSharedSecret(ctx, tlsticket.SlotName(1234))
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != 40 || binary.BigEndian.Uint64(raw) != 1234 || [32]byte(raw[8:]) != keys[0] {
		t.Fatalf("slot: %x", raw)
	}
	// A damaged slot is made anew, not an error.
	if err := st.ReplaceSharedSecret(ctx, tlsticket.SlotName(1235), mustLookup(t, st, tlsticket.SlotName(1235)), []byte("short")); err != nil {
		t.Fatal(err)
	}
	k2, err := tlsticket.New(tlsticket.Options{Store: st}).Keys(ctx, 1235)
	if err != nil || len(mustLookup(t, st, tlsticket.SlotName(1235))) != 40 {
		t.Fatalf("a damaged slot: %v", err)
	}
	// The previous period's slot holding another period is not used.
	if _, err := tlsticket.New(tlsticket.Options{Store: st}).Keys(ctx, 1238); err != nil {
		t.Fatal(err)
	}
	k3, err := tlsticket.New(tlsticket.Options{Store: st}).Keys(ctx, 1241)
	if err != nil {
		t.Fatal(err)
	}
	// For 1241, the slot of 1240 holds 1237 (1234's, replaced by 1237
	// when 1238 made its next? no: 1238 made 1238 and 1239), a period
	// other than 1240: it is not taken as the previous key.
	if len(k3) != 2 {
		t.Errorf("keys for 1241: %d, want the current and the next only", len(k3))
	}
	_ = k2
}

func mustLookup(t *testing.T, st kps.SharedSecrets, name string) []byte {
	t.Helper()
	b, err := st.LookupSharedSecret(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSealedWithAnotherPassphrase(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kps.db")
	st := openStore(t, path)
	if err := st.Define(ctx, fieldcrypt.MetaTable()); err != nil {
		t.Fatal(err)
	}
	k1, err := fieldcrypt.OpenKey(ctx, st, secret.FromString("first passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	first, err := tlsticket.New(tlsticket.Options{Store: st.LocalSecrets(), Sealer: k1}).Keys(ctx, 50)
	if err != nil {
		t.Fatal(err)
	}
	// Another store's key (another passphrase): the slots do not open; they
	// are made anew with it.
	other := openStore(t, filepath.Join(t.TempDir(), "other.db"))
	other.Define(ctx, fieldcrypt.MetaTable())
	k2, err := fieldcrypt.OpenKey(ctx, other, secret.FromString("second passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	second, err := tlsticket.New(tlsticket.Options{Store: st.LocalSecrets(), Sealer: k2}).Keys(ctx, 50)
	if err != nil {
		t.Fatal(err)
	}
	if second[0] == first[0] {
		t.Fatal("a slot sealed with another key was used")
	}
}

// logs counts records by level.
type logs struct{ errors, infos atomic.Int32 }

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }
func (l *logs) Handle(_ context.Context, r slog.Record) error {
	switch r.Level {
	case slog.LevelError:
		l.errors.Add(1)
	case slog.LevelInfo:
		l.infos.Add(1)
	}
	return nil
}
func (l *logs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logs) WithGroup(string) slog.Handler      { return l }

func TestOutagesLoggedOnceEach(t *testing.T) {
	ctx := context.Background()
	f := &failing{SharedSecrets: openStore(t, filepath.Join(t.TempDir(), "kps.db")).LocalSecrets()}
	lg := &logs{}
	c := newClock(start(60, hour))
	r := tlsticket.New(tlsticket.Options{Store: f, Now: c.now, Log: slog.New(lg)})
	for outage := 1; outage <= 2; outage++ {
		f.fail.Store(true)
		r.Refresh(ctx)
		r.Refresh(ctx)
		f.fail.Store(false)
		r.Refresh(ctx)
		r.Refresh(ctx)
		if lg.errors.Load() != int32(outage) || lg.infos.Load() != int32(outage) {
			t.Fatalf("after outage %d: %d errors, %d infos logged, want %d each", outage, lg.errors.Load(), lg.infos.Load(), outage)
		}
	}
	// Without a logger: no panic.
	f.fail.Store(true)
	tlsticket.New(tlsticket.Options{Store: f}).Refresh(ctx)
	// The default period is an hour: the wait is to the next hour.
	fresh := openStore(t, filepath.Join(t.TempDir(), "fresh.db")).LocalSecrets()
	d := tlsticket.New(tlsticket.Options{Store: fresh, Now: func() time.Time { return start(7, hour).Add(45 * time.Minute) }}).Refresh(ctx)
	if d != 15*time.Minute {
		t.Errorf("default period: next refresh in %s, want 15m", d)
	}
}

func TestFallbackKeyIsRandom(t *testing.T) {
	ctx := context.Background()
	f := &failing{SharedSecrets: openStore(t, filepath.Join(t.TempDir(), "kps.db")).LocalSecrets()}
	f.fail.Store(true)
	r := tlsticket.New(tlsticket.Options{Store: f})
	cfg := &tls.Config{}
	r.Attach(cfg)
	r.Refresh(ctx)
	zero := &tls.Config{}
	zero.SetSessionTicketKeys([][32]byte{{}})
	if resumes(t, zero, cfg, [32]byte{}) {
		t.Fatal("the fallback ticket key is all zeros")
	}
	// A configuration attached after the keys were set gets them at once.
	late := &tls.Config{}
	r.Attach(late)
	if !resumes(t, cfg, late, [32]byte{}) {
		t.Fatal("a configuration attached late does not hold the keys")
	}
}

func TestOpenLogsRecovery(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kps.db")
	var calls atomic.Int32
	lg := &logs{}
	opened := make(chan struct{})
	r := tlsticket.New(tlsticket.Options{Log: slog.New(lg), Retry: 20 * time.Millisecond, Open: func(ctx context.Context) (kps.SharedSecrets, tlsticket.Sealer, io.Closer, error) {
		if calls.Add(1) < 3 {
			return nil, nil, nil, errors.New("not yet")
		}
		defer close(opened)
		return openStore(t, path).LocalSecrets(), nil, nil, nil
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	select {
	case <-opened:
	case <-time.After(10 * time.Second):
		t.Fatal("the store was not opened on a retry")
	}
	deadline := time.Now().Add(10 * time.Second)
	for lg.infos.Load() < 1 && time.Now().Before(deadline) { // the recovery
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if calls.Load() != 3 || lg.errors.Load() != 1 || lg.infos.Load() != 1 {
		t.Errorf("%d opens, %d errors, %d infos logged; want 3 opens, the failure logged once, the recovery once", calls.Load(), lg.errors.Load(), lg.infos.Load())
	}
}

func TestRefreshWhileStopping(t *testing.T) {
	lg := &logs{}
	f := &failing{SharedSecrets: openStore(t, filepath.Join(t.TempDir(), "kps.db")).LocalSecrets()}
	f.fail.Store(true)
	r := tlsticket.New(tlsticket.Options{Store: f, Log: slog.New(lg)})
	cfg := &tls.Config{}
	r.Attach(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if d := r.Refresh(ctx); d != 0 || lg.errors.Load() != 0 {
		t.Errorf("a refresh cut by the stop: wait %s, %d errors logged; want 0 and none", d, lg.errors.Load())
	}
	zero := &tls.Config{}
	zero.SetSessionTicketKeys([][32]byte{{}})
	if resumes(t, cfg, zero, [32]byte{}) {
		t.Error("keys set by a refresh cut by the stop")
	}
}
