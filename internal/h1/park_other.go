//go:build !linux

package h1

// Without epoll, an idle connection parks in a goroutine (server.go's park).

type parkedEvent struct{}

func (c *conn) parkEvent() bool { return false }

func (c *conn) closeParked() {} // unreachable: no connection is ever stateParked here
