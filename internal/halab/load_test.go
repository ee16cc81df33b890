package halab

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The load generator speaks HTTP/1.1 itself on raw keep-alive connections
// instead of using net/http's client: net/http retries an idempotent
// request on a fresh connection when a reused one fails, which would hide
// exactly the socket errors the lab counts. Here every attempt counts once,
// and a connection is only re-dialled after the server closed it (a
// response with Connection: close) or after an error that was counted.

const (
	getWorkers  = 3
	postWorkers = 2
	// loadWorkers is the number of requests that can be in flight at once:
	// the most that a kill -9 of one instance may cost.
	loadWorkers = getWorkers + postWorkers
	// pace is a pause between a worker's requests, so that the load leaves
	// CPU to the gateway processes on a 2-core machine. It is not
	// synchronisation: nothing waits for anything with it.
	pace = 5 * time.Millisecond
	// maxErrs is how many failures are kept (with their time) for the
	// report.
	maxErrs = 20
)

// load is the traffic of one scenario through HAProxy.
type load struct {
	addr                         string
	requests, failures, sockErrs atomic.Int64
	mu                           sync.Mutex
	errs                         []loadErr
	cancel                       context.CancelFunc
	wg                           sync.WaitGroup
	ctx                          context.Context
}

type loadErr struct {
	at  time.Time
	msg string
}

func (e loadErr) String() string { return e.at.Format("15:04:05.000") + " " + e.msg }

// startLoad starts the GET and chunked POST workers against addr (HAProxy's
// frontend).
func startLoad(addr string) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{addr: addr, cancel: cancel, ctx: ctx}
	for w := 0; w < getWorkers; w++ {
		l.run(func(c *conn, i int) { c.get(l, fmt.Sprintf("/v1/get/%d", i%7)) })
	}
	for w := 0; w < postWorkers; w++ {
		l.run(func(c *conn, i int) { c.postChunked(l, fmt.Sprintf("/v1/post/%d", i%5), 1+i%4) })
	}
	return l
}

// run starts one worker doing step on its own keep-alive connection until
// the load stops.
func (l *load) run(step func(c *conn, i int)) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		c := &conn{addr: l.addr}
		defer c.close()
		for i := 0; l.ctx.Err() == nil; i++ {
			step(c, i)
			pause(l.ctx, pace)
		}
	}()
}

// extra runs another kind of client (the management API's poller) whose
// answers count in this load.
func (l *load) extra(step func(ctx context.Context) error, every time.Duration) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for l.ctx.Err() == nil {
			l.requests.Add(1)
			if err := step(l.ctx); err != nil && l.ctx.Err() == nil {
				l.failed(&l.failures, err.Error())
			}
			pause(l.ctx, every)
		}
	}()
}

// stop ends the load and waits for the workers.
func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
}

func (l *load) failed(counter *atomic.Int64, msg string) {
	counter.Add(1)
	l.mu.Lock()
	if len(l.errs) < maxErrs {
		l.errs = append(l.errs, loadErr{time.Now(), msg})
	}
	l.mu.Unlock()
}

// errors returns the failures kept (the first maxErrs).
func (l *load) errors() []loadErr {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]loadErr(nil), l.errs...)
}

// pause waits d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// conn is one client's keep-alive connection.
type conn struct {
	addr string
	c    net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
}

func (c *conn) close() {
	if c.c != nil {
		c.c.Close()
		c.c = nil
	}
}

// ensure dials when there is no open connection.
func (c *conn) ensure() error {
	if c.c != nil {
		return nil
	}
	nc, err := net.DialTimeout("tcp", c.addr, 2*time.Second)
	if err != nil {
		return err
	}
	c.c, c.br, c.bw = nc, bufio.NewReader(nc), bufio.NewWriter(nc)
	return nil
}

// exchange sends a request with write and reads the answer; it counts the
// attempt, a socket error or a non-2xx / unexpected answer.
func (c *conn) exchange(l *load, what, wantBody string, write func(w *bufio.Writer) error) {
	l.requests.Add(1)
	sockErr := func(err error) {
		c.close()
		if l.ctx.Err() == nil || !isClosedByUs(err) {
			l.failed(&l.sockErrs, fmt.Sprintf("%s: %v", what, err))
		}
	}
	if err := c.ensure(); err != nil {
		sockErr(err)
		return
	}
	c.c.SetDeadline(time.Now().Add(20 * time.Second))
	if err := write(c.bw); err != nil {
		sockErr(err)
		return
	}
	if err := c.bw.Flush(); err != nil {
		sockErr(err)
		return
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		sockErr(err)
		return
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		sockErr(err)
		return
	}
	if resp.Close {
		c.close() // the server said so: not an error
	}
	if resp.StatusCode/100 != 2 || string(body) != wantBody {
		l.failed(&l.failures, fmt.Sprintf("%s: %d %.120q", what, resp.StatusCode, body))
	}
}

func isClosedByUs(err error) bool { return strings.Contains(err.Error(), "use of closed") }

func (c *conn) get(l *load, path string) {
	c.exchange(l, "GET "+path, "backend GET "+path+" 0", func(w *bufio.Writer) error {
		_, err := fmt.Fprintf(w, "GET %s HTTP/1.1\r\nHost: lab\r\nUser-Agent: halab\r\n\r\n", path)
		return err
	})
}

// postChunked sends a body of n chunks of 1 to 8 KiB with
// Transfer-Encoding: chunked, flushing after each chunk so that the body
// really streams through HAProxy and the instance.
func (c *conn) postChunked(l *load, path string, n int) {
	sizes := make([]int, n)
	total := 0
	for i := range sizes {
		sizes[i] = 1024 + rand.IntN(7*1024)
		total += sizes[i]
	}
	c.exchange(l, "POST "+path, fmt.Sprintf("backend POST %s %d", path, total), func(w *bufio.Writer) error {
		fmt.Fprintf(w, "POST %s HTTP/1.1\r\nHost: lab\r\nUser-Agent: halab\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n", path)
		for _, s := range sizes {
			fmt.Fprintf(w, "%x\r\n%s\r\n", s, strings.Repeat("x", s))
			if err := w.Flush(); err != nil {
				return err
			}
		}
		_, err := io.WriteString(w, "0\r\n\r\n")
		return err
	})
}

// abortUpload opens a connection with dial, sends head (a request with a
// large Content-Length) and part of the body, and drops the connection with
// a reset (SO_LINGER 0), as a client that crashes or loses its network in
// the middle of an upload. dial returns the connection to write to and the
// TCP connection under it (the same one without TLS). It returns the bytes
// of the body sent, and an error when the connection could not be made or
// the server stopped reading before a quarter of the body was sent (then
// the upload was not aborted by the client, it was refused).
func abortUpload(ctx context.Context, dial func() (net.Conn, *net.TCPConn, error), head string, send int) (int, error) {
	c, raw, err := dial()
	if err != nil {
		return 0, err
	}
	defer func() {
		raw.SetLinger(0)
		raw.Close()
	}()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, head); err != nil {
		return 0, err
	}
	chunk := []byte(strings.Repeat("#", 32<<10)) // YAML comments for the management API
	sent := 0
	for sent < send && ctx.Err() == nil {
		n, err := c.Write(chunk)
		sent += n
		if err != nil {
			if sent < send/4 {
				return sent, fmt.Errorf("after %d bytes: %v", sent, err)
			}
			break
		}
	}
	// A client that stalls in the middle of its upload before it dies:
	// the server is reading the body when the reset comes, not only the
	// kernel's buffers. (A pause of the client, not synchronisation.)
	pause(ctx, 20*time.Millisecond)
	return sent, nil
}
