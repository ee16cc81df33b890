package tools_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// peakRSS is the peak resident set size of process pid (VmHWM), in KiB.
func peakRSS(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

// longList is a group configuration holding a list of n addresses.
func longList(n int) []byte {
	var b bytes.Buffer
	b.WriteString("traffic:\n  trustedProxies:\n")
	for range n {
		b.WriteString("    - 10.0.0.1\n")
	}
	return b.Bytes()
}

// TestUploadMemoryBounded: validating uploads costs the Admin Node
// Manager a bounded amount of memory, measured as the growth of the real
// process's peak RSS: the largest configuration it accepts, then uploads
// too large to parse cheaply (a 4 MiB list; a small tar.gz unpacking to
// four of them), three at once. They are refused before they are parsed.
func TestUploadMemoryBounded(t *testing.T) {
	a := startANM(t)
	pidData, err := os.ReadFile(a.h.Path("var", "run", "nodemanager-1.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.Fields(string(pidData))[0])
	if r := a.api("POST", "/api/topology/groups", `{"name":"G"}`); r.code != 201 {
		t.Fatalf("group: %d %s", r.code, r.body)
	}
	dir := t.TempDir()
	upload := func(name string, data []byte) curlResult {
		f := filepath.Join(dir, name)
		os.WriteFile(f, data, 0o644)
		return a.curl("-u", adminCreds, "-X", "POST", "--data-binary", "@"+f, "/api/deployment/group/configuration/file/group-2?deploy=false")
	}
	if r := upload("small.yaml", []byte("log:\n  level: info\n")); r.code != 201 {
		t.Fatalf("a small upload: %d %s", r.code, r.body)
	}
	before := peakRSS(t, pid)

	// The largest accepted: just under the limit of values.
	big := longList(24_000) // about 96,000 values estimated, 360 KiB
	if r := upload("big.yaml", big); r.code != 201 {
		t.Fatalf("the largest accepted configuration: %d %s", r.code, r.body)
	}
	accepted := peakRSS(t, pid) - before

	// Too large: refused before parsing, three at once.
	huge := longList(4<<20/15 - 10) // just under 4 MiB
	var tgz bytes.Buffer
	zw := gzip.NewWriter(&tgz)
	tw := tar.NewWriter(zw)
	for _, name := range []string{"group.yaml", "a.yaml", "b.yaml", "c.yaml"} {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(huge))})
		tw.Write(huge)
	}
	tw.Close()
	zw.Close()
	var wg sync.WaitGroup
	results := make([]curlResult, 3)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == 0 {
				results[i] = upload("huge.yaml", huge)
			} else {
				results[i] = upload(fmt.Sprintf("bomb%d.tar.gz", i), tgz.Bytes())
			}
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.code != 400 || !strings.Contains(r.body, "over the limit of 100000") {
			t.Errorf("too large upload %d: got %d %s, want 400 over the limit of values", i, r.code, r.body)
		}
	}
	total := peakRSS(t, pid) - before
	t.Logf("peak RSS %d MiB at start; +%d MiB for the largest accepted (%d KiB); +%d MiB after three refused at once (a %d KiB tar.gz of 4 × %d KiB, a %d KiB YAML)",
		before>>10, accepted>>10, len(big)>>10, total>>10, tgz.Len()>>10, len(huge)>>10, len(huge)>>10)
	// docs/deployment-archives.md states this bound.
	if total > 64<<10 {
		t.Errorf("peak RSS grew by %d MiB, over the 64 MiB the docs promise", total>>10)
	}
}
