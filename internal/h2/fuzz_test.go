package h2

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/gatehouse-gw/gatehouse/internal/h1"
)

// fuzzSeeds are frame sequences (after the preface) to start from.
func fuzzSeeds() [][]byte {
	var seeds [][]byte
	frames := func(write func(fr *http2.Framer, block func(...string) []byte)) []byte {
		var out, hb bytes.Buffer
		fr := http2.NewFramer(&out, nil)
		enc := hpack.NewEncoder(&hb)
		block := func(f ...string) []byte {
			hb.Reset()
			for i := 0; i+1 < len(f); i += 2 {
				enc.WriteField(hpack.HeaderField{Name: f[i], Value: f[i+1]})
			}
			return append([]byte(nil), hb.Bytes()...)
		}
		fr.WriteSettings()
		write(fr, block)
		return out.Bytes()
	}
	get := []string{":method", "GET", ":scheme", "https", ":authority", "a", ":path", "/"}
	post := []string{":method", "POST", ":scheme", "https", ":authority", "a", ":path", "/", "content-length", "5"}
	seeds = append(seeds,
		frames(func(fr *http2.Framer, b func(...string) []byte) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b(get...), EndStream: true, EndHeaders: true})
		}),
		frames(func(fr *http2.Framer, b func(...string) []byte) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b(post...), EndHeaders: true})
			fr.WriteData(1, false, []byte("hel"))
			fr.WriteData(1, true, []byte("lo"))
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: b(get...), EndStream: true, EndHeaders: true})
			fr.WriteRSTStream(3, http2.ErrCodeCancel)
		}),
		frames(func(fr *http2.Framer, b func(...string) []byte) {
			blk := b(get...)
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk[:2], EndStream: true})
			fr.WriteContinuation(1, true, blk[2:])
			fr.WritePing(false, [8]byte{1})
			fr.WriteWindowUpdate(0, 100)
			fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1})
			fr.WritePriority(1, http2.PriorityParam{StreamDep: 0, Weight: 3})
			fr.WriteGoAway(1, http2.ErrCodeNo, nil)
		}),
	)
	return seeds
}

// FuzzServer: whatever follows the preface, the server neither panics nor
// hangs: the connection and every handler end once the client is gone.
func FuzzServer(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := &Server{
			Handler: h1.HandlerFunc(func(w h1.ResponseWriter, r *h1.Request) {
				io.Copy(io.Discard, r.Body)
				w.Header().SetString("X-A", "b")
				w.Write([]byte("ok"))
			}),
			ReadHeaderTimeout: time.Second, IdleTimeout: time.Second,
			WriteTimeout: time.Second, BodyIdleTimeout: time.Second,
		}
		cli, srv := net.Pipe()
		done := make(chan struct{})
		go func() {
			s.ServeConn(srv)
			close(done)
		}()
		go io.Copy(io.Discard, cli)
		cli.SetWriteDeadline(time.Now().Add(2 * time.Second))
		io.WriteString(cli, http2.ClientPreface)
		cli.Write(data)
		cli.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the connection did not end after the client left")
		}
		handlers := make(chan struct{})
		go func() {
			s.handlers.Wait()
			close(handlers)
		}()
		select {
		case <-handlers:
		case <-time.After(10 * time.Second):
			t.Fatal("a handler still runs after the connection ended")
		}
	})
}
