package audit

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"slices"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// Recorder is the topology.Recorder that writes every topology change
// attempt, successful or not, to the audit log, and also to Logger (as
// topology.LogRecorder does) when it is set.
//
// Record has no error to return: when the audit log cannot be written the
// change is already made (or already refused), so the failure is logged to
// Logger, or written to Warn (os.Stderr when nil) when there is no Logger.
type Recorder struct {
	Log    *Log
	Logger *slog.Logger
	Warn   io.Writer
}

var _ topology.Recorder = Recorder{}

// Record implements topology.Recorder.
func (r Recorder) Record(ctx context.Context, c topology.Change) {
	if r.Logger != nil {
		topology.LogRecorder{Log: r.Logger}.Record(ctx, c)
	}
	if r.Log == nil {
		return
	}
	if _, err := r.Log.Record(ctx, FromChange(c)); err != nil {
		r.Warning(ctx, err)
	}
}

// Warning reports an audit entry that could not be written.
func (r Recorder) Warning(ctx context.Context, err error) {
	if r.Logger != nil {
		r.Logger.ErrorContext(ctx, "audit entry not written", "err", err)
		return
	}
	w := r.Warn
	if w == nil {
		w = os.Stderr
	}
	fmt.Fprintf(w, "warning: audit entry not written: %v\n", err)
}

// idPattern finds the topology ids a detail names.
var idPattern = regexp.MustCompile(`\b(?:host|group|nodemanager|instance)-[0-9]+\b`)

// FromChange is the entry of a topology change: its targets are the ids
// its detail names.
func FromChange(c topology.Change) Entry {
	e := Entry{
		Time:          c.Time,
		User:          c.Actor.User,
		Via:           c.Actor.Via,
		Remote:        c.Actor.Remote,
		Action:        c.Action,
		Detail:        c.Detail,
		BeforeVersion: c.BeforeVersion,
		AfterVersion:  c.AfterVersion,
	}
	for _, id := range idPattern.FindAllString(c.Detail, -1) {
		if !slices.Contains(e.Targets, id) {
			e.Targets = append(e.Targets, id)
		}
	}
	if c.Err != nil {
		e.Outcome, e.Error = OutcomeError, c.Err.Error()
	}
	return e
}

// StoreFor is the topology store of h recording to h's audit log; tools and
// internal/domain use it where they used topology.NewStore(h, nil).
// Failures to write the log are written to standard error.
func StoreFor(h home.Home) *topology.Store {
	return topology.NewStore(h, Recorder{Log: Open(h)})
}
