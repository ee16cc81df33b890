package anm

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/supervisor"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// findInstance resolves groupID/serviceID to a gateway instance of the
// domain. Unknown ids are 404; a node manager is 400.
func (a *API) findInstance(t *topology.Topology, groupID, serviceID, doing string) (*topology.Group, *topology.Service, error) {
	g, err := t.Group(groupID)
	if err != nil {
		return nil, nil, err
	}
	s, err := g.Service(serviceID)
	if err != nil {
		return nil, nil, err
	}
	if s.Type != topology.TypeGateway {
		return nil, nil, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("%s is a %s, not a gateway instance; only instances are %s here", s.ID, s.Type, doing)}
	}
	return g, s, nil
}

// managementArea is POST /api/management/{start|stop|status}/{groupID}/{serviceID}.
func (a *API) managementArea() area {
	return area{name: "management", routes: []route{
		{pattern: "/api/management/{action}/{groupID}/{serviceID}", ops: map[string]op{
			http.MethodPost: change(a.manage, "manageInstance", recorded("recordManage: start and stop, refused ones too; status changes nothing"), "instances.status", "instances.control"),
		}},
	}}
}

// POST /api/management/{start|stop|status}/{groupID}/{serviceID}:
// synchronous, through the supervisor of this host, or for an instance of
// another host through its node manager (remote.go; 502 naming the host
// when it cannot be reached). The answer is the instance's state once the
// action is done.
func (a *API) manage(w http.ResponseWriter, r *http.Request) {
	action := r.PathValue("action")
	var doing string
	switch action {
	case "start":
		doing = "started"
	case "stop":
		doing = "stopped"
	case "status":
		doing = "reported on"
	default:
		a.fail(w, r, &apihttp.Error{Code: http.StatusNotFound, Msg: fmt.Sprintf("no management action %q; want start, stop or status", action)})
		return
	}
	// Start and stop are recorded in the audit log, refused ones too
	// (audit.go); status changes nothing.
	var svc *topology.Service
	var outcome error
	if action != "status" {
		defer func() { a.recordManage(r, action, svc, outcome) }()
	}
	t, ok := a.load(w, r)
	if !ok {
		outcome = errors.New("the topology could not be read")
		return
	}
	_, s, err := a.findInstance(t, r.PathValue("groupID"), r.PathValue("serviceID"), doing)
	if err != nil {
		outcome = err
		a.fail(w, r, err)
		return
	}
	svc = s
	var st supervisor.InstanceState
	if s.HostID != a.conf.HostID {
		if st, err = a.manageRemote(r.Context(), t, s, action, doing); err != nil {
			outcome = err
			a.fail(w, r, err)
			return
		}
		apihttp.WriteResult(w, http.StatusOK, st)
		return
	}
	switch action {
	case "start":
		a.log.Info("starting instance", "instanceId", s.ID, "user", apihttp.UserOf(r.Context()), "remote", apihttp.RemoteIP(r))
		st, err = a.sup.StartInstance(r.Context(), s.ID)
	case "stop":
		a.log.Info("stopping instance", "instanceId", s.ID, "user", apihttp.UserOf(r.Context()), "remote", apihttp.RemoteIP(r))
		st, err = a.sup.StopInstance(r.Context(), s.ID)
	default:
		st, err = a.sup.Status(s.ID)
	}
	if err != nil {
		if code, _ := apihttp.Classify(err); code == http.StatusInternalServerError {
			// The supervisor's reasons (a port taken, an exit during start)
			// are what the administrator needs to see.
			err = &apihttp.Error{Code: http.StatusInternalServerError, Msg: fmt.Sprintf("instance %s (%q) could not be %s: %v", s.ID, s.Name, doing, err), Err: err}
		}
		outcome = err
		a.fail(w, r, err)
		return
	}
	apihttp.WriteResult(w, http.StatusOK, st)
}
