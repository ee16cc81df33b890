package h2

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/gatehouse-gw/gatehouse/internal/h1"
)

// waitGoAway reads until a GOAWAY or the end of the connection and
// returns the GOAWAY's code. It writes nothing (a flood may be writing).
func (r *rawConn) waitGoAway() (http2.ErrCode, bool) {
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			return 0, false
		}
		if f, ok := f.(*http2.GoAwayFrame); ok {
			return f.ErrCode, true
		}
	}
}

// TestFloods: each flood ends with a GOAWAY of the expected code.
func TestFloods(t *testing.T) {
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	addr := startServer(t, &Server{Handler: h1.HandlerFunc(func(w h1.ResponseWriter, r *h1.Request) {
		if string(r.Path) == "/block" {
			<-block
		}
		w.Write([]byte("ok"))
	})})
	get := func(r *rawConn) []byte {
		return r.block(":method", "GET", ":scheme", "https", ":authority", "a", ":path", "/")
	}
	tests := []struct {
		name  string
		flood func(r *rawConn)
		want  http2.ErrCode
	}{
		{"ping", func(r *rawConn) {
			for i := 0; i < maxControl+10; i++ {
				r.fr.WritePing(false, [8]byte{})
			}
		}, http2.ErrCodeEnhanceYourCalm},
		{"settings", func(r *rawConn) {
			for i := 0; i < maxControl+10; i++ {
				r.fr.WriteSettings()
			}
		}, http2.ErrCodeEnhanceYourCalm},
		{"priority", func(r *rawConn) {
			for i := 0; i < maxControl+10; i++ {
				r.fr.WritePriority(3, http2.PriorityParam{StreamDep: 1})
			}
		}, http2.ErrCodeEnhanceYourCalm},
		{"rapid reset", func(r *rawConn) {
			b := get(r)
			for id := uint32(1); id < 2*maxResets+100; id += 2 {
				r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: b, EndStream: true, EndHeaders: true})
				r.fr.WriteRSTStream(id, http2.ErrCodeCancel)
			}
		}, http2.ErrCodeEnhanceYourCalm},
		{"refused streams", func(r *rawConn) {
			b := r.block(":method", "GET", ":scheme", "https", ":authority", "a", ":path", "/block")
			for id := uint32(1); id < 2*(DefaultMaxConcurrentStreams+maxResets)+100; id += 2 {
				r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: b, EndStream: true, EndHeaders: true})
			}
		}, http2.ErrCodeEnhanceYourCalm},
		{"data on a closed stream", func(r *rawConn) {
			r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: get(r), EndStream: true, EndHeaders: true})
			for i := 0; i < maxResets+10; i++ {
				if r.fr.WriteData(1, false, []byte("x")) != nil {
					return
				}
			}
		}, http2.ErrCodeEnhanceYourCalm},
		{"empty data", func(r *rawConn) {
			r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true,
				BlockFragment: r.block(":method", "POST", ":scheme", "https", ":authority", "a", ":path", "/block")})
			for i := 0; i < maxEmptyData+10; i++ {
				r.fr.WriteData(1, false, nil)
			}
		}, http2.ErrCodeEnhanceYourCalm},
		{"window update", func(r *rawConn) {
			for i := 0; i < maxWindowExtra+10; i++ {
				r.fr.WriteWindowUpdate(0, 1)
			}
		}, http2.ErrCodeEnhanceYourCalm},
		{"continuation without end", func(r *rawConn) {
			r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: get(r)[:1], EndHeaders: false})
			for i := 0; i < 100000; i++ {
				if r.fr.WriteContinuation(1, false, nil) != nil {
					return
				}
			}
		}, http2.ErrCodeEnhanceYourCalm},
		{"continuation over the header list size", func(r *rawConn) {
			r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: get(r), EndHeaders: false})
			big := bytes.Repeat([]byte{0}, 16000)
			for i := 0; i < 100; i++ {
				if r.fr.WriteContinuation(1, false, big) != nil {
					return
				}
			}
		}, http2.ErrCodeProtocol},
		{"connection window overflow", func(r *rawConn) {
			r.fr.WriteWindowUpdate(0, maxWindow)
		}, http2.ErrCodeFlowControl},
		{"settings window overflow", func(r *rawConn) {
			r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndStream: true, EndHeaders: true,
				BlockFragment: r.block(":method", "GET", ":scheme", "https", ":authority", "a", ":path", "/block")})
			r.fr.WriteWindowUpdate(1, maxWindow-65535)
			r.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 65536})
		}, http2.ErrCodeFlowControl},
		{"data over the connection window", func(r *rawConn) {
			r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true,
				BlockFragment: r.block(":method", "POST", ":scheme", "https", ":authority", "a", ":path", "/block")})
			chunk := make([]byte, 16384)
			for i := 0; i*len(chunk) <= connWindow+len(chunk); i++ {
				id := uint32(1 + 2*(i/(streamWindow/len(chunk))))
				if i%(streamWindow/len(chunk)) == 0 && id > 1 {
					r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true,
						BlockFragment: r.block(":method", "POST", ":scheme", "https", ":authority", "a", ":path", "/block")})
				}
				if r.fr.WriteData(id, false, chunk) != nil {
					return
				}
			}
		}, http2.ErrCodeFlowControl},
		{"push promise from the client", func(r *rawConn) {
			r.fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, BlockFragment: get(r), EndHeaders: true})
		}, http2.ErrCodeProtocol},
		{"even stream id", func(r *rawConn) {
			r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 2, BlockFragment: get(r), EndStream: true, EndHeaders: true})
		}, http2.ErrCodeProtocol},
		{"data on an idle stream", func(r *rawConn) {
			r.fr.WriteData(5, true, []byte("x"))
		}, http2.ErrCodeProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := dialRaw(t, addr)
			go tt.flood(r)
			code, ok := r.waitGoAway()
			if !ok || code != tt.want {
				t.Errorf("got GOAWAY %v (%v), want %v", code, ok, tt.want)
			}
		})
	}
}

// TestStreamWindowOverflow: a WINDOW_UPDATE past 2^31-1 on a stream resets
// that stream only.
func TestStreamWindowOverflow(t *testing.T) {
	release := make(chan struct{})
	addr := startServer(t, &Server{Handler: h1.HandlerFunc(func(w h1.ResponseWriter, r *h1.Request) {
		if string(r.Path) == "/wait" {
			<-release
		}
		w.Write([]byte("ok"))
	})})
	r := dialRaw(t, addr)
	r.get(1, "/wait")
	r.fr.WriteWindowUpdate(1, maxWindow)
	o := r.wait(1)
	close(release)
	if !o.gotRST || o.rst != http2.ErrCodeFlowControl {
		t.Errorf("got %+v, want RST_STREAM FLOW_CONTROL_ERROR", o)
	}
	r.get(3, "/")
	if o := r.wait(3); o.status != 200 {
		t.Errorf("next stream: got %+v, want 200", o)
	}
}

// TestMaxConcurrentStreams: the stream past the limit is refused, and
// served again once a place is free.
func TestMaxConcurrentStreams(t *testing.T) {
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(2)
	addr := startServer(t, &Server{MaxConcurrentStreams: 2, Handler: h1.HandlerFunc(func(w h1.ResponseWriter, r *h1.Request) {
		if string(r.Path) == "/wait" {
			started.Done()
			<-release
		}
		w.Write([]byte("ok"))
	})})
	r := dialRaw(t, addr)
	r.get(1, "/wait")
	r.get(3, "/wait")
	started.Wait()
	r.get(5, "/")
	if o := r.wait(5); !o.gotRST || o.rst != http2.ErrCodeRefusedStream {
		t.Errorf("third stream: got %+v, want REFUSED_STREAM", o)
	}
	close(release)
	// The places free up as the two handlers return: the next stream is
	// served once they have.
	for id := uint32(7); ; id += 2 {
		r.get(id, "/")
		o := r.wait(id)
		if o.status == 200 {
			break
		}
		if !o.gotRST || id > 200 {
			t.Fatalf("after the others ended: got %+v, want 200", o)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFlowControl: a large response respects a client's small windows,
// and a large request body reaches the handler whole with the server's
// windows returned as it reads.
func TestFlowControl(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	addr := startServer(t, &Server{Handler: h1.HandlerFunc(func(w h1.ResponseWriter, r *h1.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("reading the body: %v", err)
		}
		if r.ContentLength != 0 && string(b) != big {
			t.Errorf("body: got %d bytes, want %d", len(b), len(big))
		}
		w.Write([]byte(big))
	})})
	tr := &http2.Transport{TLSClientConfig: serverTLSClient(), MaxReadFrameSize: 16384}
	c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Post("https://"+addr+"/", "application/octet-stream", strings.NewReader(big))
			if err != nil {
				t.Error(err)
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || string(b) != big {
				t.Errorf("response: got %d bytes (%v), want %d", len(b), err, len(big))
			}
		}()
	}
	wg.Wait()

	// A client whose stream window is 10 bytes gets the body in pieces as
	// it opens the window.
	r := dialRaw(t, addr)
	r.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10})
	r.get(1, "/")
	got := 0
	for got < len(big) {
		f, err := r.fr.ReadFrame()
		if err != nil {
			t.Fatalf("after %d bytes: %v", got, err)
		}
		if d, ok := f.(*http2.DataFrame); ok {
			if n := len(d.Data()); n > 10 {
				t.Fatalf("got a DATA frame of %d bytes in a window of 10", n)
			}
			got += len(d.Data())
			if len(d.Data()) > 0 {
				r.fr.WriteWindowUpdate(1, uint32(len(d.Data())))
				r.fr.WriteWindowUpdate(0, uint32(len(d.Data())))
			}
			if got > 1000 {
				break // enough pieces seen
			}
		}
	}
}

func serverTLSClient() *tlsConfig { return &tlsConfig{InsecureSkipVerify: true} }

// TestShutdown: Shutdown sends GOAWAY, lets the stream in flight finish,
// refuses nothing already accepted, and returns once it is done.
func TestShutdown(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	s := &Server{Handler: h1.HandlerFunc(func(w h1.ResponseWriter, r *h1.Request) {
		close(started)
		<-release
		w.Write([]byte("done"))
	})}
	addr := startServer(t, s)
	r := dialRaw(t, addr)
	r.get(1, "/")
	<-started
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(context.Background()) }()
	code, ok := r.waitGoAway()
	if !ok || code != http2.ErrCodeNo {
		t.Fatalf("got GOAWAY %v (%v), want NO_ERROR", code, ok)
	}
	r.get(3, "/") // after the GOAWAY: ignored
	close(release)
	if o := r.wait(1); o.status != 200 || o.body != "done" {
		t.Errorf("stream in flight: got %+v, want 200 done", o)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	if err := s.ServeConn(nil); err != ErrServerClosed {
		t.Errorf("ServeConn after Shutdown: got %v, want ErrServerClosed", err)
	}
}

// TestShutdownDeadline: a handler that does not finish makes Shutdown
// return its context's error and close the connection.
func TestShutdownDeadline(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	started := make(chan struct{})
	s := &Server{Handler: h1.HandlerFunc(func(w h1.ResponseWriter, r *h1.Request) {
		close(started)
		<-release
	})}
	addr := startServer(t, s)
	r := dialRaw(t, addr)
	r.get(1, "/")
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); err != context.DeadlineExceeded {
		t.Errorf("Shutdown: got %v, want context.DeadlineExceeded", err)
	}
}

// TestIdleTimeout: a connection without streams is closed with a GOAWAY
// NO_ERROR after IdleTimeout.
func TestIdleTimeout(t *testing.T) {
	addr := startServer(t, &Server{IdleTimeout: 100 * time.Millisecond, Handler: h1.HandlerFunc(hello)})
	r := dialRaw(t, addr)
	r.get(1, "/")
	if o := r.wait(1); o.status != 200 {
		t.Fatalf("got %+v, want 200", o)
	}
	start := time.Now()
	code, ok := r.waitGoAway()
	if !ok || code != http2.ErrCodeNo {
		t.Errorf("got GOAWAY %v (%v), want NO_ERROR", code, ok)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("closed after %v, want about 100ms", d)
	}
}

// TestPrefaceTimeout: a client that never sends the preface is closed
// after ReadHeaderTimeout.
func TestPrefaceTimeout(t *testing.T) {
	addr := startServer(t, &Server{ReadHeaderTimeout: 100 * time.Millisecond, Handler: h1.HandlerFunc(hello)})
	c, err := tlsDial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Errorf("got %v, want the connection closed", err)
	}
}

// TestBadPreface: anything but the preface closes the connection.
func TestBadPreface(t *testing.T) {
	addr := startServer(t, &Server{Handler: h1.HandlerFunc(hello)})
	c, err := tlsDial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	io.ReadAll(c)
}

// TestHeaderListTooLarge: a header list over MaxHeaderBytes is answered
// 431, and the connection goes on. (A single field longer than the whole
// limit is a COMPRESSION_ERROR of the connection: the HPACK decoder
// refuses strings that long.)
func TestHeaderListTooLarge(t *testing.T) {
	addr := startServer(t, &Server{MaxHeaderBytes: 1024, Handler: h1.HandlerFunc(hello)})
	r := dialRaw(t, addr)
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndStream: true, EndHeaders: true,
		BlockFragment: r.block(":method", "GET", ":scheme", "https", ":authority", "a", ":path", "/",
			"x-a", strings.Repeat("a", 400), "x-b", strings.Repeat("b", 400), "x-c", strings.Repeat("c", 400))})
	if o := r.wait(1); o.status != 431 {
		t.Errorf("got %+v, want 431", o)
	}
	r.get(3, "/")
	if o := r.wait(3); o.status != 200 {
		t.Errorf("next stream: got %+v, want 200", o)
	}
}

// TestWaitingStreamReset: a request that waits for its end (declared length
// 0) and is reset gives its place back.
func TestWaitingStreamReset(t *testing.T) {
	addr := startServer(t, &Server{MaxConcurrentStreams: 2, Handler: h1.HandlerFunc(hello)})
	r := dialRaw(t, addr)
	for id := uint32(1); id <= 9; id += 2 {
		r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true,
			BlockFragment: r.block(":method", "POST", ":scheme", "https", ":authority", "a", ":path", "/", "content-length", "0")})
		r.fr.WriteRSTStream(id, http2.ErrCodeCancel)
	}
	r.get(11, "/")
	if o := r.wait(11); o.status != 200 {
		t.Errorf("got %+v, want 200", o)
	}
}

// TestHeaderBlockTimeout: a header block left without its end is bounded
// by ReadHeaderTimeout even while another stream keeps the connection
// busy.
func TestHeaderBlockTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	addr := startServer(t, &Server{ReadHeaderTimeout: 200 * time.Millisecond, Handler: h1.HandlerFunc(func(w h1.ResponseWriter, r *h1.Request) {
		<-release
	})})
	r := dialRaw(t, addr)
	r.get(1, "/") // keeps a stream open: no idle timeout
	blk := r.block(":method", "GET", ":scheme", "https", ":authority", "a", ":path", "/")
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: blk[:2], EndStream: true})
	start := time.Now()
	r.waitGoAway()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the connection lasted %v with an unfinished header block, want about 200ms", d)
	}
}

// TestStreamPlaceFreedAtEnd: a client that opens a new stream as soon as
// it reads the end of a response, keeping exactly MaxConcurrentStreams
// open (as h2load -m does), is never refused: the place is freed before the
// frame that ends the stream leaves.
func TestStreamPlaceFreedAtEnd(t *testing.T) {
	addr := startServer(t, &Server{MaxConcurrentStreams: 1, Handler: h1.HandlerFunc(hello)})
	r := dialRaw(t, addr)
	next := uint32(1)
	open := func() {
		r.get(next, "/")
		next += 2
	}
	open()
	for done := 0; done < 3000; {
		f, err := r.fr.ReadFrame()
		if err != nil {
			t.Fatalf("after %d responses: %v", done, err)
		}
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			t.Fatalf("after %d responses: stream %d reset (%v)", done, f.StreamID, f.ErrCode)
		case *http2.HeadersFrame:
			r.dec.DecodeFull(f.HeaderBlockFragment())
			if f.StreamEnded() {
				done++
				open()
			}
		case *http2.DataFrame:
			if f.StreamEnded() {
				done++
				open()
			}
		}
	}
}

// TestDraining: while draining, open connections get a graceful GOAWAY
// and new ones one after their first stream, which is served.
func TestDraining(t *testing.T) {
	s := &Server{Handler: h1.HandlerFunc(hello)}
	addr := startServer(t, s)
	old := dialRaw(t, addr)
	old.get(1, "/")
	if o := old.wait(1); o.status != 200 {
		t.Fatalf("before draining: got %+v, want 200", o)
	}
	s.SetDraining(true)
	if code, ok := old.waitGoAway(); !ok || code != http2.ErrCodeNo {
		t.Errorf("open connection: got GOAWAY %v (%v), want NO_ERROR", code, ok)
	}
	r := dialRaw(t, addr)
	r.get(1, "/")
	o := r.wait(1)
	if o.status != 200 || !o.gotGoAway && !func() bool { _, ok := r.waitGoAway(); return ok }() {
		t.Errorf("new connection: got %+v, want 200 and a GOAWAY", o)
	}
	s.SetDraining(false)
	r = dialRaw(t, addr)
	r.get(1, "/")
	r.get(3, "/")
	if o := r.wait(3); o.status != 200 || o.gotGoAway {
		t.Errorf("after draining: got %+v, want 200 without GOAWAY", o)
	}
}
