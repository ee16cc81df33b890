package anm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apps"
	"github.com/gatehouse-gw/gatehouse/internal/nodeapi"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// A KPS write through this API is announced to the group's instances so
// that their cached look-ups are forgotten at once (docs/cluster.md): POST
// /cluster/kps through the router to the first instance of the group that
// announces it on its cluster bus; when none has a bus (a group of one
// instance, or buses down), to every instance, each forgetting its own.
// It runs after the answer, in the background, within kpsAnnounceTimeout;
// an instance that cannot be reached sees the change within kps.cache.ttl.

const kpsAnnounceTimeout = 10 * time.Second

// kpsChangedTables are the tables a successful recordKPS action changed:
// a custom table's row (targets: group, alias, key), or the applications'
// tables. Others (the authorization server's) are not cached look-ups.
func kpsChangedTables(action string, targets []string) []string {
	switch {
	case strings.HasSuffix(action, " kps row") && len(targets) >= 2:
		return []string{targets[1]}
	case strings.Contains(action, "application"), strings.Contains(action, "api key"):
		return []string{apps.AppsTable, apps.KeysTable}
	}
	return nil
}

// announceKPS announces that tables of group gid changed (every row of
// each: the instances forget the tables' cached look-ups).
func (a *API) announceKPS(gid string, tables []string) {
	if len(tables) == 0 || a.router == nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), kpsAnnounceTimeout)
		defer cancel()
		t, err := a.store.Load()
		if err != nil {
			return
		}
		g, err := t.Group(gid)
		if err != nil {
			if g, err = t.FindGroup(gid); err != nil {
				return
			}
		}
		for _, table := range tables {
			body, _ := json.Marshal(map[string]string{"table": table})
			for i := range g.Services {
				svc := &g.Services[i]
				if svc.Type != topology.TypeGateway {
					continue
				}
				announced, err := a.postToInstance(ctx, t, svc, "cluster/kps", body)
				if err != nil {
					a.log.Debug("announcing a KPS change to an instance", "instance", svc.ID, "table", table, "error", err.Error())
					continue
				}
				if announced {
					break
				}
			}
		}
	}()
}

// postToInstance POSTs body to path of svc's management listener through
// the router (this host's, or its host's node manager's /nm/router) and
// reads "announced" from a 200 answer.
func (a *API) postToInstance(ctx context.Context, t *topology.Topology, svc *topology.Service, path string, body []byte) (bool, error) {
	var status int
	var data []byte
	if svc.HostID == a.conf.HostID {
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/api/router/service/"+svc.ID+"/"+path, bytes.NewReader(body))
		req.SetPathValue("serviceID", svc.ID)
		req.SetPathValue("path", path)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		a.router.ServeHTTP(rec, req)
		status, data = rec.Code, rec.Body.Bytes()
	} else {
		peer, err := nodeapi.PeerOfHost(t, svc.HostID)
		if err != nil {
			return false, err
		}
		c, err := a.net.Client()
		if err != nil {
			return false, err
		}
		u := &url.URL{Scheme: "https", Host: peer.Addr, Path: "/nm/router/" + url.PathEscape(svc.ID) + "/" + path}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
		if err != nil {
			return false, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := (&http.Client{Transport: c.Transport()}).Do(req)
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		status = resp.StatusCode
		data, _ = io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	}
	if status != http.StatusOK {
		return false, fmt.Errorf("answered %d: %s", status, bytes.TrimSpace(data))
	}
	var out struct {
		Announced bool `json:"announced"`
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return false, err
	}
	return out.Announced, nil
}
