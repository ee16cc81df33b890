package nodemanager

import "context"

// server is the node manager's HTTPS listener. (Being written: this is the
// seam's shape.)
type server struct{ n *NodeManager }

func newServer(n *NodeManager) *server { return &server{n: n} }

func (s *server) start() error                       { return nil }
func (s *server) shutdown(ctx context.Context) error { return nil }
func (s *server) addr() string                       { return "" }
