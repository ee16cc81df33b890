// Command idleconns holds many idle HTTP/1.1 keep-alive connections open to
// one server, so that the benchmark script (bench/run) can read the server's
// memory with and without them.
//
// It opens -n connections to -addr, with at most -parallel dials in flight,
// sends one GET request on each and reads the whole response, so every
// connection has carried a request and is idle in keep-alive. It then prints
//
//	READY <n> <seconds>
//
// on standard output and waits for a line on standard input (or for
// standard input to close, or for -hold to pass). It then checks which
// connections the server still holds open, prints
//
//	OPEN <n>
//
// and closes them all. Any failure to open a connection or to get a 2xx
// answer is fatal: the measurement would be meaningless. Diagnostics go to
// standard error; the exit status is 0 on success, 1 on failure.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "server `host:port`")
	path := flag.String("path", "/", "request path")
	n := flag.Int("n", 10000, "number of connections")
	parallel := flag.Int("parallel", 32, "connections being opened at once")
	hold := flag.Duration("hold", 5*time.Minute, "longest time to wait for a line on standard input")
	flag.Parse()
	if err := run(*addr, *path, *n, *parallel, *hold); err != nil {
		fmt.Fprintln(os.Stderr, "idleconns:", err)
		os.Exit(1)
	}
}

func run(addr, path string, n, parallel int, hold time.Duration) error {
	if n < 1 || parallel < 1 {
		return errors.New("-n and -parallel must be at least 1")
	}
	start := time.Now()
	conns, err := openAll(addr, path, n, parallel)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	if err != nil {
		return err
	}
	fmt.Printf("READY %d %.1f\n", len(conns), time.Since(start).Seconds())

	line := make(chan struct{})
	go func() {
		bufio.NewReader(os.Stdin).ReadString('\n')
		close(line)
	}()
	select {
	case <-line:
	case <-time.After(hold):
	}
	fmt.Printf("OPEN %d\n", countOpen(conns))
	return nil
}

// openAll opens n connections, each having carried one request, with at
// most parallel being opened at a time. On error it returns the connections
// opened so far (for the caller to close) and the first error.
func openAll(addr, path string, n, parallel int) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	next := make(chan int)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c, err := openOne(addr, path)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("connection %d: %w", i+1, err)
					}
					mu.Unlock()
					continue
				}
				conns[i] = c
			}
		}()
	}
	for i := range n {
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	return conns, firstErr
}

func openOne(addr, path string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: idleconns\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		c.Close()
		return nil, fmt.Errorf("sending request: %w", err)
	}
	// The response is read with a reader that is then dropped: nothing more
	// arrives on an idle keep-alive connection, so no bytes are lost.
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("reading response: %w", err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("reading response body: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		c.Close()
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	if resp.Close {
		c.Close()
		return nil, errors.New("the server closes the connection after the response (no keep-alive)")
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// countOpen reports how many connections the server has not closed: a read
// that times out means the connection is still open and idle.
func countOpen(conns []net.Conn) int {
	open := 0
	for _, c := range conns {
		if c == nil {
			continue
		}
		c.SetReadDeadline(time.Now().Add(time.Millisecond))
		var b [1]byte
		_, err := c.Read(b[:])
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			open++
		}
	}
	return open
}
