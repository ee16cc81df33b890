package nodemanager

import "context"

// Supervisor starts, stops and watches the host's instances.
// (Being written: this is the seam's shape.)
type Supervisor struct{ n *NodeManager }

func newSupervisor(n *NodeManager) *Supervisor { return &Supervisor{n: n} }

func (s *Supervisor) start()                         {}
func (s *Supervisor) stop(ctx context.Context) error { return nil }
