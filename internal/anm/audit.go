package anm

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// auditArea is GET /api/audit: reading the domain audit log.
func (a *API) auditArea() area {
	return area{name: "audit", routes: []route{
		{pattern: "/api/audit", ops: map[string]op{http.MethodGet: read(a.getAudit, "getAudit", "audit.read")}},
	}}
}

// auditResult is the answer of GET /api/audit.
type auditResult struct {
	Entries  []audit.Entry `json:"entries"`
	Verified bool          `json:"verified"`
	FirstBad int64         `json:"firstBad,omitempty"`
	Reason   string        `json:"reason,omitempty"`
}

// GET /api/audit?user=&action=&since=&until=&limit=: the entries of this
// host's audit log (docs/audit.md), newest first, with the result of
// verifying the whole chain. since and until are RFC 3339 times or dates
// (2026-11-27); action matches a part of the action, case-insensitively.
// The permission audit.read is needed (docs/rbac.md).
func (a *API) getAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := audit.Filter{User: q.Get("user"), Action: q.Get("action")}
	var err error
	if f.Since, err = auditTime("since", q.Get("since")); err != nil {
		a.fail(w, r, err)
		return
	}
	if f.Until, err = auditTime("until", q.Get("until")); err != nil {
		a.fail(w, r, err)
		return
	}
	if s := q.Get("limit"); s != "" {
		if f.Limit, err = strconv.Atoi(s); err != nil || f.Limit < 1 || f.Limit > audit.MaxLimit {
			a.fail(w, r, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("limit %q: want an integer from 1 to %d", s, audit.MaxLimit)})
			return
		}
	}
	log := a.audit.Log
	rep, err := audit.Verify(log.Home())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	entries, err := log.Search(f)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	apihttp.WriteResult(w, http.StatusOK, auditResult{Entries: entries, Verified: rep.Verified, FirstBad: rep.FirstBad, Reason: rep.Reason})
}

func auditTime(name, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("%s %q: want an RFC 3339 time (2026-11-27T10:00:00Z) or a date (2026-11-27)", name, s)}
}

// record writes one change made through the API to the domain audit log:
// who and from where (act), what, on which targets, and the outcome —
// errMsg is "" when it succeeded, otherwise the message the client got. A
// log that cannot be written is reported (audit.Warning); it never fails
// the change.
func (a *API) record(ctx context.Context, act topology.Actor, action string, targets []string, detail, errMsg string) {
	e := audit.Entry{User: act.User, Via: act.Via, Remote: act.Remote, Action: action, Targets: targets, Detail: detail, Error: errMsg}
	if _, err := a.audit.Log.Record(ctx, e); err != nil {
		a.audit.Warning(ctx, err)
	}
}

// recordManage writes a start or stop through the API to the audit log;
// s is nil when the instance was not found, err nil when it succeeded.
func (a *API) recordManage(r *http.Request, action string, s *topology.Service, err error) {
	detail := ""
	if s != nil {
		detail = fmt.Sprintf("instance %q (%s) on host %s", s.Name, s.ID, s.HostID)
	}
	a.record(r.Context(), actor(r), action+" instance", []string{r.PathValue("groupID"), r.PathValue("serviceID")}, detail, apihttp.ClientMessage(err))
}
