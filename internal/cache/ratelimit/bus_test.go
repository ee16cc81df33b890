package ratelimit

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/cluster"
)

// Tests on real cluster buses (embedded NATS servers with plain TCP routes
// on loopback, in this process), with the real clock.

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type busNode struct {
	id  string
	bus *cluster.Bus
	svc *Service
}

// busGroup starts n buses meshed on loopback, each with a Service, and
// waits until every service sees the whole group.
func busGroup(t testing.TB, n int) []*busNode {
	t.Helper()
	nodes := make([]*busNode, n)
	ports := make([]int, n)
	for i := range nodes {
		nodes[i] = &busNode{id: "instance-" + strconv.Itoa(i+1)}
		ports[i] = freePort(t)
	}
	for i, nd := range nodes {
		var peers []cluster.Peer
		for j, o := range nodes {
			if j != i {
				peers = append(peers, cluster.Peer{ID: o.id, URL: "127.0.0.1:" + strconv.Itoa(ports[j])})
			}
		}
		b, err := cluster.Start(t.Context(), cluster.Options{InstanceID: nd.id, GroupID: "group-rl", Address: "127.0.0.1", Port: ports[i],
			Logger: slog.New(slog.DiscardHandler), PollInterval: 20 * time.Millisecond, RetryInterval: 100 * time.Millisecond, StartTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.SetPeers(t.Context(), peers); err != nil {
			t.Fatal(err)
		}
		nd.bus = b
		nd.svc = New(Options{InstanceID: nd.id, Transport: BusTransport(b)})
		t.Cleanup(func() { nd.svc.Close(); b.Close() })
	}
	awaitLive(t, nodes, n, 15*time.Second)
	return nodes
}

// awaitLive waits until every node's service sees want live instances.
func awaitLive(t testing.TB, nodes []*busNode, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for _, nd := range nodes {
		for {
			_, live, _ := nd.svc.Partitioned()
			if live == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: sees %d live instances, want %d", nd.id, live, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Subscriptions travel through the routes after they connect.
	time.Sleep(300 * time.Millisecond)
}

// load offers rate requests per second of key to the limiters for d,
// spread by weights, each paced every millisecond by its own goroutine,
// and returns the requests admitted by aligned window.
func load(lims []*Limiter, key string, rate float64, weights []float64, window, d time.Duration) map[int64]int64 {
	var sum float64
	for _, w := range weights {
		sum += w
	}
	var mu sync.Mutex
	perWin := map[int64]int64{}
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for i, l := range lims {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := []byte(key)
			perMS := rate * weights[i] / sum / 1000
			start := time.Now()
			var sent float64
			local := map[int64]int64{}
			for now := time.Now(); now.Before(end); now = time.Now() {
				due := float64(now.Sub(start)) / float64(time.Millisecond) * perMS
				for sent+1 <= due {
					sent++
					if l.Allow(k).Allowed {
						local[time.Now().UnixNano()/int64(window)]++
					}
				}
				time.Sleep(time.Millisecond)
			}
			mu.Lock()
			for k, v := range local {
				perWin[k] += v
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return perWin
}

// overshootOf is the largest excess over limit in one window, as a
// fraction of limit; the first and last windows (partly offered) count
// too, they can only be lower.
func overshootOf(perWin map[int64]int64, limit int64) (worst float64, total int64) {
	for _, n := range perWin {
		worst = max(worst, float64(n-limit)/float64(limit))
		total += n
	}
	return max(worst, 0), total
}

// TestBusOvershoot: 2, 4 and 8 instances on real buses, load three times
// the limit spread evenly and unevenly: the group admits at most 5 % over
// the limit in any window. (BenchmarkOvershoot prints the same numbers.)
func TestBusOvershoot(t *testing.T) {
	if testing.Short() {
		t.Skip("real buses, a few seconds each")
	}
	for _, n := range []int{2, 4, 8} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			nodes := busGroup(t, n)
			for _, spread := range []string{"even", "uneven"} {
				worst, total, limit := measureBus(t, nodes, spread, 3*time.Second)
				t.Logf("n=%d %s: %d admitted in ~3 windows of limit %d; worst window %.2f%% over", n, spread, total, limit, 100*worst)
				if worst > 0.05 {
					t.Errorf("n=%d %s: %.2f%% over the limit in one window, want at most 5%%", n, spread, 100*worst)
				}
				if total < 2*limit {
					t.Errorf("n=%d %s: %d admitted in about 3 windows at 3× the limit, want at least %d", n, spread, total, 2*limit)
				}
			}
		})
	}
}

// measureBus runs the load on nodes for d with a limit of 1000 per second.
func measureBus(t testing.TB, nodes []*busNode, spread string, d time.Duration) (worst float64, total, limit int64) {
	return measureBusAt(t, nodes, spread, 3, d)
}

// measureBusAt offers over × the limit.
func measureBusAt(t testing.TB, nodes []*busNode, spread string, over float64, d time.Duration) (worst float64, total, limit int64) {
	limit = 1000
	w := make([]float64, len(nodes))
	lims := make([]*Limiter, len(nodes))
	for i, nd := range nodes {
		w[i] = 1
		if spread == "uneven" {
			w[i] = float64(int(1) << i)
		}
		l, err := nd.svc.Limiter(Spec{API: "a", Name: fmt.Sprintf("%s-%v", spread, over), Requests: limit, Window: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		lims[i] = l
	}
	// Start on a window boundary: every window but the last is whole.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	perWin := load(lims, "client-"+spread, over*float64(limit), w, time.Second, d)
	worst, total = overshootOf(perWin, limit)
	return worst, total, limit
}

// TestBusExact: exact mode on 3 real buses admits exactly the limit, most
// decisions asked of the owner on another bus.
func TestBusExact(t *testing.T) {
	nodes := busGroup(t, 3)
	const limit = 30
	lims := make([]*Limiter, len(nodes))
	for i, nd := range nodes {
		lims[i], _ = nd.svc.Limiter(Spec{API: "a", Name: "exact", Requests: limit, Window: 2 * time.Second, Exact: true, Timeout: time.Second})
	}
	time.Sleep(time.Until(time.Now().Truncate(2 * time.Second).Add(2 * time.Second)))
	got := 0
	for range 30 {
		for _, l := range lims {
			if l.Allow([]byte("k")).Allowed {
				got++
			}
		}
	}
	var remote, alone int64
	for _, l := range lims {
		remote += l.Stats().ExactRemote
		alone += l.Stats().ExactAlone
	}
	if got != limit || remote < 50 || alone != 0 {
		t.Errorf("90 requests over 3 instances: got %d allowed (%d asked of the owner, %d alone), want exactly %d, about 60 asked, none alone", got, remote, alone, limit)
	}
}

// TestBusPartition: a peer's bus closes; the others see 3 of 4 and admit
// 3/4 of the limit between them, the closed one 1/4 alone: never
// unlimited, never zero, and the metrics say so.
func TestBusPartition(t *testing.T) {
	nodes := busGroup(t, 4)
	nodes[3].bus.Close()
	awaitLive(t, nodes[:3], 3, 10*time.Second)
	awaitLive(t, nodes[3:], 1, 10*time.Second)
	const limit = 400
	var sides [2]atomic.Int64
	time.Sleep(time.Until(time.Now().Truncate(2 * time.Second).Add(2 * time.Second)))
	var wg sync.WaitGroup
	for i, nd := range nodes {
		l, _ := nd.svc.Limiter(Spec{API: "a", Name: "part", Requests: limit, Window: 2 * time.Second})
		side := 0
		if i == 3 {
			side = 1
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 * limit / 4 { // 300 each, paced over ~0.6 s of the 2 s window
				if l.Allow([]byte("k")).Allowed {
					sides[side].Add(1)
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	a, b := sides[0].Load(), sides[1].Load()
	t.Logf("partition 3 | 1, limit %d: admitted %d and %d", limit, a, b)
	if a < 300*95/100 || a > 300*105/100 || b != 100 {
		t.Errorf("got %d and %d admitted, want about 300 (3/4 of %d) and exactly 100 (1/4)", a, b, limit)
	}
	for i, nd := range nodes {
		p, live, size := nd.svc.Partitioned()
		if !p || size != 4 || (i < 3 && live != 3) || (i == 3 && live != 1) {
			t.Errorf("%s: Partitioned() = %v, %d live of %d", nd.id, p, live, size)
		}
	}
}

// BenchmarkOvershoot prints the overshoot at 2, 4 and 8 instances on real
// buses, load 3 and 10 times the limit, even and uneven
// (go test -run '^$' -bench Overshoot -benchtime 1x -v ./internal/cache/ratelimit).
func BenchmarkOvershoot(b *testing.B) {
	for _, n := range []int{2, 4, 8} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			nodes := busGroup(b, n)
			for range b.N {
				for _, over := range []float64{3, 10} {
					for _, spread := range []string{"even", "uneven"} {
						worst, total, limit := measureBusAt(b, nodes, spread, over, 3*time.Second)
						b.Logf("n=%d %-6s limit %d/s, offered %v×: admitted %d in 3 s, worst window +%.2f%%", n, spread, limit, over, total, 100*worst)
						b.ReportMetric(100*worst, fmt.Sprintf("%%over-%s-%vx", spread, over))
					}
				}
			}
		})
	}
}

// BenchmarkExactRemote: one exact-mode decision asked of the key's owner
// on another bus (loopback), against one taken by the owner itself.
//
//	go test ./internal/cache/ratelimit -run '^$' -bench ExactRemote
func BenchmarkExactRemote(b *testing.B) {
	nodes := busGroup(b, 2)
	lims := make([]*Limiter, 2)
	for i, nd := range nodes {
		lims[i], _ = nd.svc.Limiter(Spec{API: "a", Name: "exact", Requests: 10000, Window: time.Hour, Exact: true, Timeout: time.Second})
	}
	key := []byte("k")
	own := owner(keyHash(key), []string{nodes[0].id, nodes[1].id})
	for _, c := range []struct {
		name string
		from int
	}{{"remote", 0}, {"owner", 1}} {
		from := c.from
		if own == nodes[0].id {
			from = 1 - from
		}
		b.Run(c.name, func(b *testing.B) {
			l := lims[from]
			before := l.Stats()
			for range b.N {
				l.Allow(key)
			}
			after := l.Stats()
			if c.name == "remote" && after.ExactRemote-before.ExactRemote != int64(b.N) {
				b.Fatalf("%d of %d asked of the owner", after.ExactRemote-before.ExactRemote, b.N)
			}
		})
	}
}
