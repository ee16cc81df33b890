package tlsticket_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/fieldcrypt"
	"github.com/gatehouse-gw/gatehouse/internal/kps/sqlite"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
	"github.com/gatehouse-gw/gatehouse/internal/tlsticket"
)

// openStore opens the embedded store at path, as one process of the group
// does: two calls on one path are two processes sharing the file.
func openStore(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), kps.SQLiteConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// clock is a settable time.
type clock struct{ t atomic.Int64 }

func (c *clock) now() time.Time                { return time.Unix(0, c.t.Load()) }
func (c *clock) set(t time.Time)               { c.t.Store(t.UnixNano()) }
func (c *clock) add(d time.Duration)           { c.t.Add(int64(d)) }
func newClock(t time.Time) *clock              { c := &clock{}; c.set(t); return c }
func start(p int64, d time.Duration) time.Time { return time.Unix(0, p*int64(d)) }

const hour = time.Hour

func TestSharedAndRotated(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kps.db")
	c := newClock(start(1000, hour).Add(10 * time.Minute))
	a := tlsticket.New(tlsticket.Options{Store: openStore(t, path).LocalSecrets(), Now: c.now})
	b := tlsticket.New(tlsticket.Options{Store: openStore(t, path).LocalSecrets(), Now: c.now})

	ka, err := a.Keys(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := b.Keys(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	// No previous period's key yet: current and next.
	if len(ka) != 2 || len(kb) != 2 {
		t.Fatalf("keys: %d and %d, want current and next", len(ka), len(kb))
	}
	if ka[0] != kb[0] || ka[1] != kb[1] {
		t.Fatal("two processes of the group hold different keys for the same periods")
	}
	if ka[0] == ka[1] {
		t.Fatal("the current and the next period have the same key")
	}

	// The next period: its key is the one announced as next, the previous
	// is still accepted, a new next is made.
	k2, err := b.Keys(ctx, 1001)
	if err != nil {
		t.Fatal(err)
	}
	if len(k2) != 3 || k2[0] != ka[1] || k2[1] != ka[0] {
		t.Fatalf("period 1001: %d keys, current=next of 1000 %v, previous=current of 1000 %v", len(k2), k2[0] == ka[1], len(k2) > 1 && k2[1] == ka[0])
	}
	if k2[2] == ka[0] || k2[2] == ka[1] {
		t.Fatal("period 1002's key repeats an older one")
	}

	// Three periods on, period 1000's slot holds 1003's key: it is gone.
	k3, err := a.Keys(ctx, 1002)
	if err != nil {
		t.Fatal(err)
	}
	if k3[0] != k2[2] {
		t.Fatal("period 1002's key changed between its announcement and its turn")
	}
	for _, k := range k3 {
		if k == ka[0] {
			t.Fatal("period 1000's key is still in use at 1002")
		}
	}
	raw, err := openStore(t, path).LocalSecrets().LookupSharedSecret(ctx, tlsticket.SlotName(1000))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, ka[0][:]) {
		t.Fatal("period 1000's key is still stored after period 1003's was made")
	}
	if tlsticket.SlotName(1000) != tlsticket.SlotName(1003) || tlsticket.SlotName(1000) == tlsticket.SlotName(1001) || tlsticket.SlotName(-1) != tlsticket.SlotName(2) {
		t.Fatal("slots: want period mod 3")
	}
}

func TestRaceToMake(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kps.db")
	const n = 6
	rots := make([]*tlsticket.Rotator, n)
	for i := range rots {
		rots[i] = tlsticket.New(tlsticket.Options{Store: openStore(t, path).LocalSecrets()})
	}
	// Each makes the slots' older periods first, then all race to the next.
	for p := int64(7); p < 12; p++ {
		got := make(chan [][32]byte, n)
		errs := make(chan error, n)
		for _, r := range rots {
			go func() {
				k, err := r.Keys(ctx, p)
				got <- k
				errs <- err
			}()
		}
		var first [][32]byte
		for range n {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
			k := <-got
			if first == nil {
				first = k
			} else if k[0] != first[0] || k[len(k)-1] != first[len(first)-1] {
				t.Fatalf("period %d: processes racing to make the keys ended with different ones", p)
			}
		}
	}
}

// failing is a store that fails every call after fail is set.
type failing struct {
	kps.SharedSecrets
	fail atomic.Bool
}

var errDown = errors.New("the store is down")

func (f *failing) SharedSecret(ctx context.Context, name string, offer []byte) ([]byte, error) {
	if f.fail.Load() {
		return nil, errDown
	}
	return f.SharedSecrets.SharedSecret(ctx, name, offer)
}
func (f *failing) LookupSharedSecret(ctx context.Context, name string) ([]byte, error) {
	if f.fail.Load() {
		return nil, errDown
	}
	return f.SharedSecrets.LookupSharedSecret(ctx, name)
}
func (f *failing) ReplaceSharedSecret(ctx context.Context, name string, old, value []byte) error {
	if f.fail.Load() {
		return errDown
	}
	return f.SharedSecrets.ReplaceSharedSecret(ctx, name, old, value)
}

func TestStoreDown(t *testing.T) {
	ctx := context.Background()
	f := &failing{SharedSecrets: openStore(t, filepath.Join(t.TempDir(), "kps.db")).LocalSecrets()}
	c := newClock(start(50, hour).Add(59 * time.Minute))
	lc := &logs{}
	r := tlsticket.New(tlsticket.Options{Store: f, Now: c.now, Log: slog.New(lc)})
	cfg := &tls.Config{}
	r.Attach(cfg)
	if wait := r.Refresh(ctx); wait != time.Minute {
		t.Fatalf("refresh at 59 min: next in %s, want at the period's end (1m)", wait)
	}
	shared, _ := r.Keys(ctx, 50)

	// Down: the keys held are kept through the next period …
	f.fail.Store(true)
	c.add(2 * time.Minute)
	if wait := r.Refresh(ctx); wait != 30*time.Second {
		t.Fatalf("refresh with the store down: next in %s, want the 30 s retry", wait)
	}
	if lc.errors.Load() != 1 {
		t.Fatalf("%d errors logged, want 1", lc.errors.Load())
	}
	if !resumes(t, cfg, cfg, shared[0]) {
		t.Fatal("the shared keys were dropped at once when the store failed")
	}
	// … then replaced by one of the process's own; the error is not
	// logged again.
	c.add(hour)
	r.Refresh(ctx)
	r.Refresh(ctx)
	if lc.errors.Load() != 1 {
		t.Fatalf("%d errors logged for one outage, want 1", lc.errors.Load())
	}
	other := &tls.Config{}
	other.SetSessionTicketKeys(shared)
	if resumes(t, other, cfg, [32]byte{}) {
		t.Fatal("expired shared keys still accepted two periods after the store went down")
	}
	if !resumes(t, cfg, cfg, [32]byte{}) {
		t.Fatal("no resumption on the instance itself while the store is down")
	}
	// Back: shared again.
	f.fail.Store(false)
	r.Refresh(ctx)
	keys, err := r.Keys(ctx, 52)
	if err != nil {
		t.Fatal(err)
	}
	peer := &tls.Config{}
	peer.SetSessionTicketKeys(keys)
	if !resumes(t, peer, cfg, [32]byte{}) {
		t.Fatal("not shared again once the store answers")
	}
}

func TestClockBehind(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kps.db")
	ahead := tlsticket.New(tlsticket.Options{Store: openStore(t, path).LocalSecrets()})
	before, err := ahead.Keys(ctx, 103)
	if err != nil {
		t.Fatal(err)
	}
	behind := tlsticket.New(tlsticket.Options{Store: openStore(t, path).LocalSecrets()})
	_, err = behind.Keys(ctx, 100)
	if err == nil || !strings.Contains(err.Error(), "clock behind") {
		t.Fatalf("a host 3 periods behind: got %v, want an error about its clock", err)
	}
	// And the newer key is not erased by the one behind.
	if k, err := ahead.Keys(ctx, 103); err != nil || k[0] != before[0] {
		t.Fatalf("after the one behind: %v, key kept %v", err, err == nil && k[0] == before[0])
	}
}

func TestSealed(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kps.db")
	st := openStore(t, path)
	if err := st.Define(ctx, fieldcrypt.MetaTable()); err != nil {
		t.Fatal(err)
	}
	keys, err := fieldcrypt.OpenKey(ctx, st, secret.FromString("first passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	r := tlsticket.New(tlsticket.Options{Store: st.LocalSecrets(), Sealer: keys})
	k, err := r.Keys(ctx, 9)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := st.LocalSecrets().LookupSharedSecret(ctx, tlsticket.SlotName(9))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, k[0][:]) {
		t.Fatal("the key is stored in clear with a passphrase")
	}
	// A process with the same passphrase reads the same keys.
	again := tlsticket.New(tlsticket.Options{Store: openStore(t, path).LocalSecrets(), Sealer: keys})
	if k2, err := again.Keys(ctx, 9); err != nil || k2[0] != k[0] {
		t.Fatalf("same passphrase: %v, same key %v", err, err == nil && k2[0] == k[0])
	}
	// Without it (the passphrase changed: the slots do not open) the slots
	// are made anew, not an error.
	plain := tlsticket.New(tlsticket.Options{Store: openStore(t, path).LocalSecrets()})
	k3, err := plain.Keys(ctx, 9)
	if err != nil {
		t.Fatal(err)
	}
	if k3[0] == k[0] {
		t.Fatal("a slot that does not open was used")
	}
}

func TestOpenRetried(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kps.db")
	var calls atomic.Int32
	closed := make(chan struct{})
	lc := &logs{}
	r := tlsticket.New(tlsticket.Options{
		Log: slog.New(lc),
		Open: func(ctx context.Context) (kps.SharedSecrets, tlsticket.Sealer, io.Closer, error) {
			if calls.Add(1) == 1 {
				return nil, nil, nil, errDown
			}
			s, err := sqlite.Open(ctx, kps.SQLiteConfig{Path: path})
			if err != nil {
				return nil, nil, nil, err
			}
			return s.LocalSecrets(), nil, closerFunc(func() error { close(closed); return s.Close() }), nil
		},
	})
	cfg := &tls.Config{}
	r.Attach(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	// The first open fails; the retry comes 30 s later: too long for a
	// test, so check only that it logged and is waiting, then stop it.
	deadline := time.Now().Add(10 * time.Second)
	for lc.errors.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if lc.errors.Load() != 1 {
		t.Fatalf("%d errors logged after a failed open, want 1", lc.errors.Load())
	}
	cancel()
	<-done
	if calls.Load() != 1 {
		t.Fatalf("open called %d times before the retry delay", calls.Load())
	}

	// An open that works at once: Run sets the keys, and closes the store
	// when it returns.
	calls.Store(1)
	ctx, cancel = context.WithCancel(context.Background())
	done = make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	other := &tls.Config{}
	ok := false
	for deadline = time.Now().Add(10 * time.Second); !ok && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		keys, err := tlsticket.New(tlsticket.Options{Store: openStore(t, path).LocalSecrets()}).Keys(context.Background(), time.Now().UnixNano()/int64(hour))
		if err != nil {
			t.Fatal(err)
		}
		other.SetSessionTicketKeys(keys)
		ok = resumes(t, other, cfg, [32]byte{})
	}
	if !ok {
		t.Fatal("Run did not set the store's keys on the attached configuration")
	}
	cancel()
	<-done
	select {
	case <-closed:
	default:
		t.Fatal("the store was not closed as Run returned")
	}
}

func TestDetach(t *testing.T) {
	ctx := context.Background()
	c := newClock(start(70, hour))
	r := tlsticket.New(tlsticket.Options{Store: openStore(t, filepath.Join(t.TempDir(), "kps.db")).LocalSecrets(), Now: c.now})
	a, b := &tls.Config{}, &tls.Config{}
	r.Attach(a)
	detach := r.Attach(b)
	r.Refresh(ctx)
	if !resumes(t, a, b, [32]byte{}) {
		t.Fatal("two attached configurations do not share keys")
	}
	detach()
	c.add(3 * hour)
	r.Refresh(ctx)
	if resumes(t, a, b, [32]byte{}) {
		t.Fatal("a detached configuration still gets the rotated keys")
	}
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// resumes reports whether a session whose ticket server `from` issued
// resumes on server `to`, for TLS 1.3 and 1.2 alike (both must agree). A
// non-zero key is set on from first.
func resumes(t *testing.T, from, to *tls.Config, key [32]byte) bool {
	t.Helper()
	if key != ([32]byte{}) {
		from = from.Clone()
		from.SetSessionTicketKeys([][32]byte{key})
	}
	var got [2]bool
	for i, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		cache := tls.NewLRUClientSessionCache(4)
		if r := handshake(t, from, cache, v); r {
			t.Fatal("the first handshake resumed")
		}
		got[i] = handshake(t, to, cache, v)
	}
	if got[0] != got[1] {
		t.Fatalf("TLS 1.3 resumed %v, TLS 1.2 %v", got[0], got[1])
	}
	return got[0]
}

var cert = func() tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}()

// handshake connects a client with cache to a server with cfg (its
// certificate added) and reports whether the session was resumed.
func handshake(t *testing.T, cfg *tls.Config, cache tls.ClientSessionCache, version uint16) bool {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cs, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	sc := cfg.Clone()
	sc.Certificates = []tls.Certificate{cert}
	sc.MaxVersion = version
	srv := tls.Server(cs, sc)
	errc := make(chan error, 1)
	go func() {
		err := srv.Handshake()
		if err == nil {
			_, err = srv.Write([]byte("x")) // the TLS 1.3 ticket goes with it
		}
		errc <- err
		srv.Close()
	}()
	cli := tls.Client(cc, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost", ClientSessionCache: cache, MaxVersion: version})
	defer cli.Close()
	cli.SetDeadline(time.Now().Add(10 * time.Second))
	if err := cli.Handshake(); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := io.ReadFull(cli, b[:]); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return cli.ConnectionState().DidResume
}
