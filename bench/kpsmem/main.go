// Command kpsmem measures what the number of API keys in a group's store
// does to an instance's memory (issue 17: "1,000,000 keys in the store do
// not change an instance's RSS by more than the cache bound").
//
// It makes a domain in a temporary install directory with the given
// gatehouse binary, a group whose API is behind an apiKey policy, and runs
// one instance of it (startinstance -d, a real process) twice:
//
//  1. with one key in the store, called -requests times with that key;
//  2. with -keys keys in the store, called -requests times, each request with
//     another key (so that the instance's caches fill to their bound).
//
// Each time it reads the instance's VmRSS once the load is over and prints
// both, their difference and the bound (docs/kps.md#memory). The back end is
// in this process; the instance process holds only its own memory.
//
//	go build -o /tmp/gatehouse ./cmd/gatehouse
//	go run ./bench/kpsmem -bin /tmp/gatehouse -keys 1000000 -requests 200000
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apps"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

func main() {
	bin := flag.String("bin", "", "the gatehouse binary (required)")
	keys := flag.Int("keys", 1_000_000, "keys in the store for the second run")
	requests := flag.Int("requests", 200_000, "requests per run (the second run uses that many distinct keys)")
	maxBytes := flag.Int64("maxbytes", 0, "kps.cache.maxBytes of the group (0: the default, 16 MiB)")
	workers := flag.Int("c", 8, "concurrent connections")
	keep := flag.Bool("keep", false, "keep the temporary install directory")
	flag.Parse()
	if *bin == "" || *keys < *requests || *requests < 1 {
		fmt.Fprintln(os.Stderr, "usage: kpsmem -bin GATEHOUSE [-keys N] [-requests M (<= N)] [-maxbytes B] [-c C]")
		os.Exit(2)
	}
	if err := run(*bin, *keys, *requests, *maxBytes, *workers, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "kpsmem:", err)
		os.Exit(1)
	}
}

func run(bin string, nKeys, nReq int, maxBytes int64, workers int, keep bool) error {
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "kpsmem-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(dir)
	} else {
		fmt.Fprintln(os.Stderr, "install directory:", dir)
	}
	backend, err := startBackend()
	if err != nil {
		return err
	}
	traffic, mgmt := freePort(), freePort()
	env := append(os.Environ(), "GATEHOUSE_HOME="+dir)
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("kpsmem-Secret-1\n"), 0o600); err != nil {
		return err
	}
	if err := command(env, bin, "managedomain", "-i", "--domain_name", "Mem", "--username", "admin", "--password_file", pw); err != nil {
		return err
	}
	if err := command(env, bin, "managedomain", "-c", "-n", "mem", "-g", "mem", "--traffic_port", strconv.Itoa(traffic), "--management_port", strconv.Itoa(mgmt)); err != nil {
		return err
	}
	confs, _ := filepath.Glob(filepath.Join(dir, "groups", "group-*", "instance-*", "conf", "instance.yaml"))
	if len(confs) != 1 {
		return fmt.Errorf("want one instance directory, found %v", confs)
	}
	instDir := filepath.Dir(filepath.Dir(confs[0]))
	groupDir := filepath.Dir(instDir)
	groupID := filepath.Base(groupDir)
	cache := "ttl: 10m" // entries stay for the whole run: the caches reach their bound
	if maxBytes > 0 {
		cache += fmt.Sprintf(", maxBytes: %d", maxBytes)
	}
	yaml := fmt.Sprintf(`kps: {cache: {%s}}
accessLog: {enabled: false}
backends:
  - name: backend
    url: %s
apis:
  - name: bench
    pathPrefix: /api
    backend: backend
    policies:
      - apiKey: {}
`, cache, backend)
	if err := os.WriteFile(filepath.Join(groupDir, "conf", "group.yaml"), []byte(yaml), 0o644); err != nil {
		return err
	}

	// The store: an application and one key first.
	ctx := context.Background()
	h := home.Home{Dir: dir}
	store, err := apps.OpenGroupStore(ctx, h, groupID, groupconf.Defaults().KPS, nil)
	if err != nil {
		return err
	}
	hk, err := apps.LoadOrCreateHashKey(h, groupID)
	if err != nil {
		return err
	}
	m, err := apps.NewManager(ctx, store, hk)
	if err != nil {
		return err
	}
	app, err := m.CreateApp(ctx, apps.App{Name: "bench", Enabled: true, APIs: []string{"bench"}})
	if err != nil {
		return err
	}
	_, one, err := m.CreateKey(ctx, app.ID, time.Time{})
	if err != nil {
		return err
	}
	base := fmt.Sprintf("http://127.0.0.1:%d/api/hello", traffic)
	pidFile := filepath.Join(dir, "var", "run", filepath.Base(instDir)+".pid")

	rss1, err := measure(env, bin, pidFile, base, workers, nReq, func(int) string { return one.RevealString() })
	if err != nil {
		return fmt.Errorf("run with one key: %w", err)
	}
	fmt.Printf("run 1: 1 key in the store, %d requests with it: VmRSS %.1f MiB\n", nReq, mib(rss1))

	start := time.Now()
	presented := make([]string, 0, nReq)
	err = m.CreateKeys(ctx, app.ID, nKeys-1, func(_ apps.Key, key secret.Value) error {
		if len(presented) < nReq {
			presented = append(presented, key.RevealString())
		}
		return nil
	})
	store.Close()
	if err != nil {
		return err
	}
	fi, _ := os.Stat(filepath.Join(groupDir, "conf", "kps", "kps.db"))
	size := int64(0)
	if fi != nil {
		size = fi.Size()
	}
	fmt.Printf("stored %d keys more in %s (store file %.0f MiB)\n", nKeys-1, time.Since(start).Round(time.Second), mib(size))

	rss2, err := measure(env, bin, pidFile, base, workers, nReq, func(i int) string { return presented[i] })
	if err != nil {
		return fmt.Errorf("run with %d keys: %w", nKeys, err)
	}
	fmt.Printf("run 2: %d keys in the store, %d requests each with another key: VmRSS %.1f MiB\n", nKeys, nReq, mib(rss2))
	bound := maxBytes
	if bound == 0 {
		bound = 16 << 20
	}
	limit := RSSBound(bound)
	fmt.Printf("difference: %+.1f MiB; kps.cache.maxBytes %.1f MiB; the documented bound 3.5 × maxBytes + 16 MiB = %.1f MiB\n",
		mib(rss2-rss1), mib(bound), mib(limit))
	if rss2-rss1 > limit {
		return fmt.Errorf("the instance's RSS grew by %.1f MiB, more than the documented bound (%.1f MiB)", mib(rss2-rss1), mib(limit))
	}
	fmt.Println("within the documented bound")
	return nil
}

// RSSBound is docs/kps.md#memory's bound on what a store's keys add to an
// instance's RSS: the caches' live heap (maxBytes of rows, a quarter of it
// in verified keys), about doubled by Go's collector (GOGC=100), and the
// embedded store's page caches (8 connections × 512 KiB) and buffers.
func RSSBound(maxBytes int64) int64 { return maxBytes*7/2 + 16<<20 }

// measure starts the instance, sends n requests (key(i) in KeyId), checks
// that each was answered 200, waits 2 s and returns the instance's VmRSS,
// then stops it.
func measure(env []string, bin, pidFile, url string, workers, n int, key func(int) string) (int64, error) {
	if err := command(env, bin, "startinstance", "-d", "-n", "mem", "-g", "mem", "-Dtraffic.address=127.0.0.1"); err != nil {
		return 0, err
	}
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", pidFile, err)
	}
	defer stop(pid)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}, Timeout: 10 * time.Second}
	var next, bad atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				req, _ := http.NewRequest("GET", url, nil)
				req.Header.Set("KeyId", key(i))
				resp, err := client.Do(req)
				if err != nil {
					bad.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					bad.Add(1)
					firstErr.CompareAndSwap(nil, resp.Status)
				}
			}
		}()
	}
	wg.Wait()
	if b := bad.Load(); b > 0 {
		return 0, fmt.Errorf("%d of %d requests failed (first: %v)", b, n, firstErr.Load())
	}
	time.Sleep(2 * time.Second) // let the last frees settle before reading
	return vmRSS(pid)
}

func vmRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:")); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(string(v)), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

func stop(pid int) {
	syscall.Kill(pid, syscall.SIGTERM)
	for range 200 {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
}

func command(env []string, bin string, args ...string) error {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("gatehouse %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

func startBackend() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	body := []byte(strings.Repeat("b", 100))
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	return "http://" + ln.Addr().String(), nil
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
