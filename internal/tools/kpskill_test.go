package tools_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/kps/postgres/pgtest"
)

// TestKPSWritesSurviveKill (issue 17): rows written through the management
// API (POST /api/kps/{group}/{table}) by several writers while the Admin
// Node Manager is killed with SIGKILL: after a restart, every write the API
// acknowledged (201) is there, with the values sent, on the embedded store
// and on PostgreSQL.
func TestKPSWritesSurviveKill(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			a := startANM(t)
			h := a.h
			// A group with an instance on this host, whose configuration
			// defines the table (not deployed: the ANM reads conf/group.yaml).
			h.MustRun("", "managedomain", "-c", "-n", "one", "-g", "G")
			confs, _ := filepath.Glob(h.Path("groups", "group-*", "conf", "group.yaml"))
			if len(confs) != 1 {
				t.Fatalf("group files: %v", confs)
			}
			gid := filepath.Base(filepath.Dir(filepath.Dir(confs[0])))
			kps := ""
			if backend == "postgres" {
				pc := pgtest.Shared(t).NewDatabase(t)
				pw := filepath.Join(filepath.Dir(confs[0]), "pgpw") // under the group's directory, where a configuration may name files
				os.WriteFile(pw, []byte(pc.Password.RevealString()+"\n"), 0o600)
				ca := filepath.Join(filepath.Dir(confs[0]), "pgca.pem")
				caPEM, _ := os.ReadFile(pc.SSLRootCert)
				os.WriteFile(ca, caPEM, 0o644)
				kps = fmt.Sprintf("  backend: postgres\n  postgres: {host: 127.0.0.1, port: %d, database: %s, user: %s, passwordFile: %s, sslMode: verify-full, sslRootCert: %s}\n",
					pc.Port, pc.Database, pc.User, pw, ca)
			}
			os.WriteFile(confs[0], []byte("kps:\n"+kps+"  tables:\n    - {collection: Test, name: Writes, alias: writes, primaryKey: id, properties: [{name: id, type: string}, {name: n, type: long}, {name: who, type: string}]}\n"), 0o644)
			pool := x509.NewCertPool()
			caPEM, _ := os.ReadFile(a.ca)
			pool.AppendCertsFromPEM(caPEM)
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
			base := fmt.Sprintf("https://localhost:%d/api/kps/%s/writes", a.port, gid)
			post := func(id string, n int) (int, error) {
				body, _ := json.Marshal(map[string]any{"values": map[string]any{"id": id, "n": n, "who": "writer"}})
				req, _ := http.NewRequest("POST", base, bytes.NewReader(body))
				req.SetBasicAuth("admin", "changeme-Secret1")
				req.Header.Set("Content-Type", "application/json")
				res, err := client.Do(req)
				if err != nil {
					return 0, err
				}
				res.Body.Close()
				return res.StatusCode, nil
			}
			if code, err := post("first", 0); err != nil || code != 201 {
				t.Fatalf("first write: %d %v", code, err)
			}
			var mu sync.Mutex
			acked := map[string]int{}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for w := 0; w < 4; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := 0; n < 100000; n++ {
						select {
						case <-stop:
							return
						default:
						}
						id := fmt.Sprintf("w%d-%d", w, n)
						code, err := post(id, n)
						if err != nil {
							return // the ANM is gone
						}
						if code == 201 {
							mu.Lock()
							acked[id] = n
							mu.Unlock()
						}
					}
				}()
			}
			// Kill the ANM once a few hundred writes were acknowledged.
			deadline := time.Now().Add(60 * time.Second)
			for {
				mu.Lock()
				n := len(acked)
				mu.Unlock()
				if n >= 200 || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			pid := pidOf(t, h, "nodemanager-1")
			if pid == 0 {
				t.Fatal("no pid of the node manager")
			}
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			close(stop)
			wg.Wait()
			mu.Lock()
			defer mu.Unlock()
			if len(acked) < 200 {
				t.Fatalf("only %d writes acknowledged before the kill", len(acked))
			}
			for i := 0; i < 100; i++ { // the pid file's process is gone
				if syscall.Kill(pid, 0) != nil {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			h.MustRun("", "nodemanager", "-d")
			missing := 0
			for id, n := range acked {
				req, _ := http.NewRequest("GET", base+"/"+id, nil)
				req.SetBasicAuth("admin", "changeme-Secret1")
				res, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				var got struct {
					Result struct {
						Values map[string]any `json:"values"`
					} `json:"result"`
				}
				json.NewDecoder(res.Body).Decode(&got)
				res.Body.Close()
				if res.StatusCode != 200 || got.Result.Values["n"] != float64(n) {
					missing++
					if missing < 5 {
						t.Errorf("acknowledged row %s: %d %v", id, res.StatusCode, got.Result.Values)
					}
				}
			}
			if missing > 0 {
				t.Errorf("%d of %d acknowledged rows missing or wrong after SIGKILL", missing, len(acked))
			}
			t.Logf("%s: %d acknowledged writes, all there after SIGKILL and restart", backend, len(acked))
		})
	}
}
