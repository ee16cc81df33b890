package h1

import (
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The poller holds idle keep-alive connections without a goroutine each: one
// epoll instance of its own (the connections stay registered with Go's
// netpoller too), whose descriptor is itself waited for in Go's netpoller by
// one goroutine for the whole process (no thread of its own: a thread blocked
// in epoll_wait cost five times more per wake-up, in cross-thread wake-ups),
// and a timer per parked connection for its idle timeout. A connection that
// await found idle for idleParkAfter registers here (parkEvent) and its
// goroutine exits; when bytes (or the client's close) arrive, the poller
// starts a new goroutine that reads and serves (resume). What an idle
// connection then costs is its structs, Go's own per-socket descriptor and a
// timer: no stack and no goroutine.
//
// The connection's state decides every race: the poller's wake-up, the idle
// timer, Shutdown and Close each move it out of stateParked with a
// compare-and-swap, and only the one that succeeds acts.
type poller struct {
	epfd  int
	file  *os.File        // epfd, for Go's netpoller
	rc    syscall.RawConn // its raw reads
	evs   [128]syscall.EpollEvent
	mu    sync.Mutex
	conns map[uint64]*conn // by registration: an event for an id no longer here is stale and dropped
	next  uint64
}

// parkedEvent is a connection's hold in the poller: allocated at its first
// park and kept for the next ones.
type parkedEvent struct {
	id       uint64                     // this registration's key in poller.conns (a new one each park)
	added    bool                       // the socket is in the poller's epoll set (re-armed with MOD)
	deadline time.Time                  // end of the idle wait
	timer    atomic.Pointer[time.Timer] // idle timeout of this registration (see idleExpired)
}

var thePoller struct {
	once sync.Once
	p    *poller
}

// getPoller starts the process's poller at its first use; nil when epoll is
// not available (connections then park in a goroutine).
func getPoller() *poller {
	thePoller.once.Do(func() {
		epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			return
		}
		// The epoll descriptor is itself waited for in Go's netpoller
		// (readable when events are ready): no thread of its own.
		if syscall.SetNonblock(epfd, true) != nil {
			syscall.Close(epfd)
			return
		}
		f := os.NewFile(uintptr(epfd), "h1-poller")
		rc, err := f.SyscallConn()
		if err != nil {
			f.Close()
			return
		}
		p := &poller{epfd: epfd, conns: map[uint64]*conn{}}
		p.file, p.rc = f, rc
		thePoller.p = p
		go p.run()
	})
	return thePoller.p
}

func (p *poller) run() {
	for {
		// The callback takes every ready event and reports false once
		// there are none, so that the read waits for the next.
		if p.rc.Read(p.take) != nil {
			// Not expected (the descriptor is ours and stays open):
			// parked connections still end by their idle timers.
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func (p *poller) take(fd uintptr) bool {
	for {
		n, err := syscall.EpollWait(int(fd), p.evs[:], 0)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			return false
		}
		p.dispatch(n)
	}
}

func (p *poller) dispatch(n int) {
	evs := &p.evs
	{
		for i := range n {
			id := uint64(uint32(evs[i].Fd)) | uint64(uint32(evs[i].Pad))<<32
			p.mu.Lock()
			c := p.conns[id]
			delete(p.conns, id)
			p.mu.Unlock()
			if c != nil && c.state.CompareAndSwap(stateParked, stateIdle) {
				if t := c.ev.timer.Load(); t != nil { // stored before the socket was registered
					t.Stop()
				}
				go c.resume()
			}
		}
	}
}

func (p *poller) remove(id uint64) {
	p.mu.Lock()
	delete(p.conns, id)
	p.mu.Unlock()
}

// parkEvent hands an idle connection (state idle, read deadline at the end
// of its wait) to the poller. It reports false when the poller cannot take
// it: the caller then parks it in a goroutine. On true the connection is the
// poller's, or was closed meanwhile and is finished.
func (c *conn) parkEvent() bool {
	p := getPoller()
	if p == nil {
		return false
	}
	ev := c.ev
	if ev == nil {
		ev = &parkedEvent{}
		c.ev = ev
	}
	ev.deadline = c.idleUntil
	p.mu.Lock()
	p.next++
	id := p.next
	ev.id = id
	p.conns[id] = c
	p.mu.Unlock()
	if !c.state.CompareAndSwap(stateIdle, stateParked) {
		// Shutdown or Close took the connection before it parked.
		p.remove(id)
		c.finish()
		return true
	}
	// The timer is armed once the connection is parked: one that fires
	// before would find it idle and leave it. Shutdown or Close may end the
	// connection before the timer is stored (they stop the previous one):
	// this one then finds its registration gone and does nothing.
	ev.timer.Store(time.AfterFunc(time.Until(ev.deadline), func() { c.idleExpired(id) }))
	// From here the poller, the timer, Shutdown or Close may take the
	// connection at any time. The epoll registration is made while the
	// socket is held (Control), so that it cannot be closed, and its number
	// reused, in the meantime; level-triggered, so bytes that arrived before
	// it are seen at once.
	var cerr error
	err := c.rc.Control(func(fd uintptr) {
		e := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT,
			Fd: int32(uint32(ev.id)), Pad: int32(uint32(ev.id >> 32))}
		op := syscall.EPOLL_CTL_ADD
		if ev.added {
			op = syscall.EPOLL_CTL_MOD
		}
		cerr = syscall.EpollCtl(p.epfd, op, int(fd), &e)
		if cerr == syscall.EEXIST && op == syscall.EPOLL_CTL_ADD {
			cerr = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_MOD, int(fd), &e)
		}
		if cerr == nil {
			ev.added = true
		}
	})
	if err == nil {
		err = cerr
	}
	if err == nil {
		return true
	}
	// Not registered: take the connection back, unless someone else took
	// it (closed), and let the caller park it in a goroutine.
	if !c.state.CompareAndSwap(stateParked, stateIdle) {
		return true
	}
	ev.timer.Load().Stop()
	p.remove(id)
	return false
}

// resume serves a parked connection whose socket became readable, in a new
// goroutine started by the poller (state idle).
func (c *conn) resume() {
	c.rerr = nil
	err := c.setRead(c.ev.deadline)
	if err == nil {
		err = c.rc.Read(c.rawFn) // bytes or EOF are there: at once
		if err == nil {
			err = c.rerr
		}
	}
	if c.woke(err) != nil {
		c.finish()
		return
	}
	c.serve(c.s.idleTimeout())
}

// idleExpired is the idle timeout of the connection's registration id: it
// closes the connection, silently, like a goroutine's wait that times out.
// A timer of an earlier registration (one the poller woke, Shutdown ended, or
// that parkEvent took back) finds its id gone and does nothing.
func (c *conn) idleExpired(id uint64) {
	p := thePoller.p
	p.mu.Lock()
	mine := p.conns[id] == c
	delete(p.conns, id)
	p.mu.Unlock()
	if !mine || !c.state.CompareAndSwap(stateParked, stateClosed) {
		return
	}
	s := c.s
	s.mu.Lock()
	c.closeParked()
	s.mu.Unlock()
}

// closeParked ends a parked connection whose state this goroutine moved to
// closed; s.mu is held. Closing the socket removes it from the epoll set.
func (c *conn) closeParked() {
	if t := c.ev.timer.Load(); t != nil {
		t.Stop()
	}
	if p := thePoller.p; p != nil {
		p.remove(c.ev.id)
	}
	c.c.Close()
	delete(c.s.conns, c)
}
