package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/deploy"
)

// The node manager's side of a deployment on its own host: the archive is
// installed under groups/<gid>/conf/archives/<id>/, the instance's pointer
// (conf/deployment.json) is moved to it, and the running instance is asked
// to reload (POST /deployment/reload on its management listener), which
// builds the new configuration beside the running one and swaps it in
// (docs/instance.md). An instance that refuses it keeps running what it ran,
// and its pointer is put back, so that what it would start from after a
// restart is what it serves (last-known-good).

// reloadTimeout bounds one instance's reload: building a configuration and,
// when a listener changes, binding it.
const reloadTimeout = 60 * time.Second

// deployedStatus is the part of an instance's GET /status about
// deployments (instance.Status).
type deployedStatus struct {
	Archive    int       `json:"archive"`
	Checksum   string    `json:"checksum"`
	DeployedAt time.Time `json:"deployedAt"`
	DeployedBy string    `json:"deployedBy"`
}

// RefusedError is an instance's refusal of a configuration (its message
// names the file and line) or of a listener change.
type RefusedError struct {
	Code int
	Msg  string
}

func (e *RefusedError) Error() string { return e.Msg }

// post sends a JSON body to the instance's management listener at addr and
// decodes a 200 answer into out. An error answer {"error": …} becomes an
// *RefusedError.
func (c *MgmtClient) post(ctx context.Context, addr, path string, body, out any) error {
	return c.call(ctx, http.MethodPost, addr, path, body, out)
}

// call is post with another method.
func (c *MgmtClient) call(ctx context.Context, method, addr, path string, body, out any) error {
	var rd io.Reader = http.NoBody
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, InstanceURL(addr, path, "").String(), rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: c}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("reading the answer of %s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var eb struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &eb) == nil && eb.Error != "" {
			msg = eb.Error
		}
		if msg == "" {
			msg = resp.Status
		}
		return &RefusedError{Code: resp.StatusCode, Msg: msg}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decoding the answer of %s %s: %w", method, path, err)
		}
	}
	return nil
}

// runningAddr returns the management address of a running instance, or an
// error saying that it does not run.
func (s *Supervisor) runningAddr(si *supervised) (string, error) {
	s.probeIdle(si)
	s.mu.Lock()
	defer s.mu.Unlock()
	if si.rec == nil || si.st.Status != StatusRunning {
		st := si.st.Status
		if st == "" {
			st = StatusUnknown
		}
		return "", fmt.Errorf("%s is not running (%s)", label(si.ref), st)
	}
	return si.mgmtAddr, nil
}

// Deploy makes instance instanceID of this host run archive m, which must
// have been installed (deploy.Install). The instance must be running.
func (s *Supervisor) Deploy(ctx context.Context, instanceID string, m deploy.Meta) (InstanceState, error) {
	si, err := s.lookup(instanceID)
	if err != nil {
		return InstanceState{}, err
	}
	if si.ref.Group.ID != m.Group {
		return InstanceState{}, fmt.Errorf("%s is in group %s, not %s", label(si.ref), si.ref.Group.ID, m.Group)
	}
	si.op.Lock()
	defer si.op.Unlock()
	addr, err := s.runningAddr(si)
	if err != nil {
		return s.state(si), err
	}
	gid, iid := si.ref.Group.ID, si.ref.Service.ID
	prev, err := deploy.Current(s.h, gid, iid)
	if err != nil {
		return s.state(si), fmt.Errorf("%s: reading its current deployment: %w", label(si.ref), err)
	}
	if err := deploy.SetCurrent(s.h, gid, iid, m); err != nil {
		return s.state(si), fmt.Errorf("%s: %w", label(si.ref), err)
	}
	rctx, cancel := context.WithTimeout(ctx, reloadTimeout)
	defer cancel()
	start := time.Now()
	var st struct {
		Deployment *deployedStatus `json:"deployment"`
	}
	err = s.mgmt.post(rctx, addr, "/deployment/reload", nil, &st)
	if err == nil && (st.Deployment == nil || st.Deployment.Archive != m.ID || st.Deployment.Checksum != m.Checksum) {
		err = fmt.Errorf("the instance reloaded but reports another archive (%+v)", st.Deployment)
	}
	if err != nil {
		// Put the pointer back: the instance still serves prev.
		if rerr := s.restorePointer(gid, iid, prev); rerr != nil {
			s.log.Error("restoring the deployment pointer", append(s.attrs(si), "error", rerr.Error())...)
		}
		s.log.Warn("deployment refused", append(s.attrs(si), "archive", m.ID, "error", err.Error())...)
		return s.state(si), fmt.Errorf("%s did not take archive %d: %w", label(si.ref), m.ID, err)
	}
	s.log.Info("deployed", append(s.attrs(si), "archive", m.ID, "checksum", m.Checksum, "took", time.Since(start).Round(time.Millisecond).String())...)
	s.pollStatus(si)
	return s.state(si), nil
}

// restorePointer puts back the deployment pointer an instance had.
func (s *Supervisor) restorePointer(gid, iid string, prev *deploy.Meta) error {
	if prev != nil {
		return deploy.SetCurrent(s.h, gid, iid, *prev)
	}
	err := os.Remove(s.h.InstanceDeploymentFile(gid, iid))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// MaxLease is the longest out-of-service lease an instance accepts
// (instance.MaxLease; TestMaxLeaseAgrees checks they are the same).
const MaxLease = time.Hour

// SetInService takes a running instance out of its load balancer's pool
// (false: /healthchecklb answers 503, everything else is still served) or
// puts it back (true). With a lease (out of service only; whole seconds,
// at most instance.MaxLease) the instance goes back in by itself when the
// lease runs out without being renewed by another call.
func (s *Supervisor) SetInService(ctx context.Context, instanceID string, in bool, lease time.Duration) (InstanceState, error) {
	si, err := s.lookup(instanceID)
	if err != nil {
		return InstanceState{}, err
	}
	addr, err := s.runningAddr(si)
	if err != nil {
		return s.state(si), err
	}
	ctx, cancel := context.WithTimeout(ctx, statusTimeout+5*time.Second)
	defer cancel()
	body := map[string]any{"inService": in}
	if lease > 0 {
		body["leaseSeconds"] = int64((lease + time.Second - 1) / time.Second)
	}
	if err := s.mgmt.post(ctx, addr, "/deployment/lb", body, nil); err != nil {
		return s.state(si), fmt.Errorf("%s: setting inService=%t: %w", label(si.ref), in, err)
	}
	s.pollStatus(si)
	return s.state(si), nil
}

func (s *Supervisor) state(si *supervised) InstanceState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return si.st
}

// SetArchive points a stopped instance of this host at installed archive
// m (it starts from it): a new instance of a group that has been deployed.
// A running instance is refused (deploy to it instead).
func (s *Supervisor) SetArchive(ctx context.Context, instanceID string, m deploy.Meta) (InstanceState, error) {
	si, err := s.lookup(instanceID)
	if err != nil {
		return InstanceState{}, err
	}
	si.op.Lock()
	defer si.op.Unlock()
	if _, err := s.runningAddr(si); err == nil {
		return s.state(si), fmt.Errorf("%s is running: deploy archive %d to it instead", label(si.ref), m.ID)
	}
	if err := deploy.SetCurrent(s.h, si.ref.Group.ID, si.ref.Service.ID, m); err != nil {
		return s.state(si), fmt.Errorf("%s: %w", label(si.ref), err)
	}
	s.log.Info("instance set to start from archive", append(s.attrs(si), "archive", m.ID)...)
	st := s.state(si)
	st.DeployedArchive = m.ID
	return st, nil
}
