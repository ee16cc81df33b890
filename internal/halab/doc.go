// Package halab is the high-availability lab (issue 14): its tests build a
// real domain with the gatehouse binary (an Admin Node Manager and a group
// of three instances), put a real HAProxy in front of the group, load it
// with keep-alive GETs and chunked POSTs, and break things while the load
// runs: rolling restarts, deployments and rollbacks, kill -9 of an
// instance, of the Admin Node Manager in the middle of a rollout and of a
// node manager with an instance, and clients aborting large uploads. Every
// scenario counts what the clients saw and checks it against what
// Gatehouse promises (docs/reliability.md).
//
// The package has no code of its own: everything is in its tests.
//
//	go test ./internal/halab -v                               # one round
//	go test ./internal/halab -run TestLab -soak 30m -v -timeout 0
package halab
