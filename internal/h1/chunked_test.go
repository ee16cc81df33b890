package h1

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// readAllChunked reads c to its end with reads of at most size bytes, and
// fails the test instead of looping when Read never ends.
func readAllChunked(t *testing.T, c *chunkedReader, size int) (string, error) {
	t.Helper()
	var out []byte
	buf := make([]byte, size)
	for range 100_000 {
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return string(out), nil
		}
		if err != nil {
			return string(out), err
		}
	}
	t.Fatalf("Read never returned an error or EOF (got %q so far)", out)
	return "", nil
}

func newChunked(in string, maxTrailer int) *chunkedReader {
	var c chunkedReader
	c.reset(bufio.NewReader(strings.NewReader(in)), maxTrailer)
	return &c
}

// TestChunkedBodies decodes whole bodies, read in pieces of several sizes,
// and checks the data or the refusal.
func TestChunkedBodies(t *testing.T) {
	// Limits as literals: a test that read the constants would move with them.
	ext4096 := "5;" + strings.Repeat("e", 4096-2) // a chunk line of exactly 4 KiB
	manyTrailers := strings.Repeat("T: v\r\n", 100)
	const (
		unexpectedEOF = "unexpected EOF"
		badSize       = "invalid chunk size"
		bareCR        = "bare cr in chunked body"
		noCRLF        = "chunk data not followed by crlf"
	)
	cases := []struct {
		name, in string
		want     string // the data, or the reason of the error
		fails    bool
	}{
		{"one chunk", "5\r\nhello\r\n0\r\n\r\n", "hello", false},
		{"two chunks", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world", false},
		{"empty body", "0\r\n\r\n", "", false},
		{"last chunk with several zeros", "000\r\n\r\n", "", false},
		{"two-digit size", "10\r\n0123456789abcdef\r\n0\r\n\r\n", "0123456789abcdef", false},
		{"hex sizes", "a\r\n0123456789\r\nA\r\n0123456789\r\n0\r\n\r\n", strings.Repeat("0123456789", 2), false},
		{"16 digits", "0000000000000005\r\nhello\r\n0\r\n\r\n", "hello", false},
		{"17 digits", "00000000000000005\r\nhello\r\n0\r\n\r\n", "chunk size too long", true},
		{"largest size", "4000000000000000\r\nx", unexpectedEOF, true},
		{"size too large", "4000000000000001\r\nx", "chunk size too large", true},
		{"extensions", "5;a=b;c=\"d e\"\t\r\nhello\r\n0;x\r\n\r\n", "hello", false},
		{"extension with obs-text and tilde", "5;\x80~\r\nhello\r\n0\r\n\r\n", "hello", false},
		{"extension with a control byte", "5;a\x1f\r\nhello\r\n0\r\n\r\n", "invalid byte in chunk extension", true},
		{"extension with DEL", "5;a\x7f\r\nhello\r\n0\r\n\r\n", "invalid byte in chunk extension", true},
		{"extension with a bare lf", "5;a\nb\r\nhello\r\n0\r\n\r\n", "invalid byte in chunk extension", true},
		{"extension with a bare cr", "5;a\rb\r\nhello\r\n0\r\n\r\n", bareCR, true},
		{"chunk line of 4 KiB", ext4096 + "\r\nhello\r\n0\r\n\r\n", "hello", false},
		{"chunk line over 4 KiB", ext4096 + "e\r\nhello\r\n0\r\n\r\n", "chunk extension too long", true},
		{"no size", "\r\nhello\r\n0\r\n\r\n", badSize, true},
		{"size with 0x", "0x5\r\nhello\r\n0\r\n\r\n", badSize, true},
		{"size then space", "5 \r\nhello\r\n0\r\n\r\n", badSize, true},
		{"size line with a bare lf", "5\nhello\r\n0\r\n\r\n", badSize, true},
		{"size line with a bare cr", "5\rhello\r\n0\r\n\r\n", bareCR, true},
		{"data too long", "5\r\nhello!\r\n0\r\n\r\n", noCRLF, true},
		{"data followed by a bare lf", "5\r\nhello\n0\r\n\r\n", noCRLF, true},
		{"data followed by a bare cr", "5\r\nhello\rx0\r\n\r\n", bareCR, true},
		{"trailers", "1\r\nx\r\n0\r\nA: b\r\nC:\r\nD: \te f\t\r\n\r\n", "x", false},
		{"100 trailers", "0\r\n" + manyTrailers + "\r\n", "", false},
		{"101 trailers", "0\r\n" + manyTrailers + "T: v\r\n\r\n", "too many trailer fields", true},
		{"trailer obs-fold", "0\r\nA: b\r\n c\r\n\r\n", "obsolete line folding in trailer", true},
		{"trailer starting with a tab", "0\r\n\tA: b\r\n\r\n", "obsolete line folding in trailer", true},
		{"trailer space before colon", "0\r\nA : b\r\n\r\n", "whitespace between field name and colon", true},
		{"trailer without colon", "0\r\nAb\r\n\r\n", "invalid byte in trailer field name", true},
		{"trailer with a bad name", "0\r\nA(: b\r\n\r\n", "invalid byte in trailer field name", true},
		{"trailer with an empty name", "0\r\n: b\r\n\r\n", "empty trailer field name", true},
		{"trailer with a control byte", "0\r\nA: b\x01\r\n\r\n", "invalid byte in trailer field value", true},
		{"trailer with a bare lf", "0\r\nA: b\nC: d\r\n\r\n", "invalid byte in trailer field value", true},
		{"trailer with a bare cr", "0\r\nA: b\rC\r\n\r\n", bareCR, true},
		{"end with a bare cr", "0\r\n\rX", bareCR, true},
		// The end of the input at every place: never a complete body.
		{"nothing", "", unexpectedEOF, true},
		{"size only", "5", unexpectedEOF, true},
		{"size and cr", "5\r", unexpectedEOF, true},
		{"size and extension", "5;a", unexpectedEOF, true},
		{"size, extension and cr", "5;a\r", unexpectedEOF, true},
		{"part of the data", "5\r\nhel", unexpectedEOF, true},
		{"data without crlf", "5\r\nhello", unexpectedEOF, true},
		{"data and cr", "5\r\nhello\r", unexpectedEOF, true},
		{"no last chunk", "5\r\nhello\r\n", unexpectedEOF, true},
		{"last chunk without crlf", "5\r\nhello\r\n0", unexpectedEOF, true},
		{"last chunk without the final crlf", "5\r\nhello\r\n0\r\n", unexpectedEOF, true},
		{"last chunk and cr", "0\r\n\r", unexpectedEOF, true},
		{"inside a trailer name", "0\r\nAb", unexpectedEOF, true},
		{"inside a trailer value", "0\r\nA: b", unexpectedEOF, true},
		{"trailer and cr", "0\r\nA: b\r", unexpectedEOF, true},
		{"trailer without the final crlf", "0\r\nA: b\r\n", unexpectedEOF, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, size := range []int{1, 3, 4096, -1, -64} {
				// A negative size: the same reads of -size bytes from a
				// source that gets its bytes one at a time, so that the
				// CRLF after a chunk's data is never at hand at once.
				c := newChunked(tc.in, 1<<20)
				if size < 0 {
					size = -size
					c.reset(bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(tc.in)), 16), 1<<20)
				}
				got, err := readAllChunked(t, c, size)
				if !tc.fails {
					if err != nil || got != tc.want {
						t.Fatalf("reads of %d: got %q, %v, want %q", size, got, err, tc.want)
					}
					continue
				}
				if err == nil {
					t.Fatalf("reads of %d: got %q and no error, want %q", size, got, tc.want)
				}
				if err.Error() != tc.want && !strings.HasSuffix(err.Error(), ": "+tc.want) {
					t.Fatalf("reads of %d: got error %q, want %q", size, err, tc.want)
				}
				var perr *ProtocolError
				if errors.As(err, &perr) != (tc.want != unexpectedEOF) || perr != nil && perr.Status != 400 {
					t.Fatalf("reads of %d: got error %#v, want a 400 ProtocolError or io.ErrUnexpectedEOF", size, err)
				}
			}
		})
	}
}

// TestChunkedTrailerLimit: the trailer section, its final CRLF included,
// may take maxTrailer bytes (the LFs are not counted), and no more.
func TestChunkedTrailerLimit(t *testing.T) {
	in := "0\r\nA: b\r\n\r\n" // counted: "A: b\r" and "\r"
	if _, err := readAllChunked(t, newChunked(in, 6), 64); err != nil {
		t.Errorf("trailer of 6 bytes with a limit of 6: got %v, want accepted", err)
	}
	_, err := readAllChunked(t, newChunked(in, 5), 64)
	var perr *ProtocolError
	if !errors.As(err, &perr) || perr.Status != 400 || perr.Reason != "trailer section too large" {
		t.Errorf("trailer of 6 bytes with a limit of 5: got %#v, want 400 trailer section too large", err)
	}
}

// TestChunkedErrorsAreSticky: after an error, or after the end, every Read
// returns the same thing at once, and the first Read that meets the problem
// reports it.
func TestChunkedErrorsAreSticky(t *testing.T) {
	buf := make([]byte, 64)
	c := newChunked("zz\r\n", 1<<20)
	n, err1 := c.Read(buf)
	if n != 0 || err1 == nil {
		t.Fatalf("got %d, %v, want an error at once", n, err1)
	}
	if n, err2 := c.Read(buf); n != 0 || err2 != err1 {
		t.Errorf("second Read: got %d, %v, want %v again", n, err2, err1)
	}

	for _, in := range []string{"0\r\nA b\r\n\r\n", "5 \r\nhello\r\n0\r\n\r\n"} {
		c = newChunked(in, 1<<20)
		if n, err := c.Read(buf); n != 0 || err == nil {
			t.Errorf("%q: got %d, %v, want no bytes and an error", in, n, err)
		}
	}

	// The data of a chunk comes with the error of what follows it only
	// when both are at hand.
	c = newChunked("5\r\nhelloXY", 1<<20)
	n, err := c.Read(buf)
	if n != 5 || err == nil || !strings.Contains(err.Error(), "chunk data not followed by crlf") {
		t.Errorf("got %d, %v, want the 5 bytes and the crlf error", n, err)
	}
	if n, err2 := c.Read(buf); n != 0 || err2 != err {
		t.Errorf("after the error: got %d, %v, want %v again", n, err2, err)
	}

	c = newChunked("5\r\nhello\r\n0\r\n\r\nGET", 1<<20)
	if n, err := c.Read(buf); n != 5 || err != nil {
		t.Errorf("got %d, %v, want 5 bytes", n, err)
	}
	if n, err := c.Read(buf); n != 0 || err != io.EOF {
		t.Errorf("at the end: got %d, %v, want EOF", n, err)
	}
	if n, err := c.Read(buf); n != 0 || err != io.EOF {
		t.Errorf("after the end: got %d, %v, want EOF again", n, err)
	}
	if n, _ := c.Read(buf); n != 0 {
		t.Errorf("read %d bytes past the body", n)
	}

	// A read of nothing reads nothing.
	c = newChunked("5\r\nhello\r\n0\r\n\r\n", 1<<20)
	if n, err := c.Read(buf[:1]); n != 1 || err != nil {
		t.Fatalf("got %d, %v, want 1 byte", n, err)
	}
	if n, err := c.Read(buf[:0]); n != 0 || err != nil {
		t.Errorf("empty read: got %d, %v, want 0, nil", n, err)
	}
	if got, err := readAllChunked(t, c, 64); got != "ello" || err != nil {
		t.Errorf("after an empty read: got %q, %v, want ello", got, err)
	}
}

// stallSource is a byteSource whose bytes arrive in segments: Buffered
// counts the current one; reading past it takes the next (as if it had
// arrived), and past the last fails with errStalled, as a read that would
// wait, or with EOF. A segment "" is a read that fails once with
// errStalled (a timed-out read) before the next segment.
type stallSource struct {
	segs   [][]byte // nil: one failing read
	eof    bool     // at the end, EOF (together with the last bytes for Read)
	stalls int
}

func newStallSource(eof bool, segs ...string) *stallSource {
	s := &stallSource{eof: eof}
	for _, seg := range segs {
		if seg == "" {
			s.segs = append(s.segs, nil)
			continue
		}
		s.segs = append(s.segs, []byte(seg))
	}
	return s
}

var errStalled = errors.New("would wait")

// next drops the segments read to their end and reports what a read gets
// when there is no byte at hand.
func (s *stallSource) next() error {
	for len(s.segs) > 0 {
		if s.segs[0] == nil {
			s.segs = s.segs[1:]
			s.stalls++
			return errStalled
		}
		if len(s.segs[0]) > 0 {
			return nil
		}
		s.segs = s.segs[1:]
	}
	if s.eof {
		return io.EOF
	}
	s.stalls++
	return errStalled
}

func (s *stallSource) ReadByte() (byte, error) {
	if err := s.next(); err != nil {
		return 0, err
	}
	b := s.segs[0][0]
	s.segs[0] = s.segs[0][1:]
	return b, nil
}

func (s *stallSource) Read(p []byte) (int, error) {
	if err := s.next(); err != nil {
		return 0, err
	}
	n := copy(p, s.segs[0])
	s.segs[0] = s.segs[0][n:]
	if s.eof && len(s.segs) == 1 && len(s.segs[0]) == 0 {
		return n, io.EOF
	}
	return n, nil
}

func (s *stallSource) Buffered() int {
	if len(s.segs) == 0 {
		return 0
	}
	return len(s.segs[0])
}

// TestChunkedTakesTheCRLFAtHand: a chunk's data is returned without waiting
// for more input, and the CRLF after it is consumed when it is already at
// hand (so that a caller flushing when nothing is buffered sees the chunk
// complete), never waited for.
func TestChunkedTakesTheCRLFAtHand(t *testing.T) {
	buf := make([]byte, 64)
	cases := []struct {
		in       string
		leftover int // bytes left at hand after the data's Read
	}{
		{"5\r\nhello\r\n", 0},
		{"5\r\nhello\r\n0", 1},
		{"5\r\nhello\r", 1}, // only the CR: not taken, nothing waited for
		{"5\r\nhello", 0},
	}
	for _, tc := range cases {
		s := newStallSource(false, tc.in)
		var c chunkedReader
		c.reset(s, 1<<20)
		n, err := c.Read(buf)
		if n != 5 || err != nil || s.stalls != 0 {
			t.Errorf("%q: got %d, %v after %d waits, want 5 bytes without waiting", tc.in, n, err, s.stalls)
		}
		if s.Buffered() != tc.leftover {
			t.Errorf("%q: %d bytes left at hand, want %d", tc.in, s.Buffered(), tc.leftover)
		}
	}
}

// TestChunkedEOFWithTheData: a source may return its last bytes together
// with EOF. At the end of a chunk's data that is not yet an error (the data
// is good); the missing CRLF is reported by the next Read. Inside the data
// it is io.ErrUnexpectedEOF at once.
func TestChunkedEOFWithTheData(t *testing.T) {
	buf := make([]byte, 64)
	var c chunkedReader
	c.reset(newStallSource(true, "5\r\nhello"), 1<<20)
	if n, err := c.Read(buf); n != 5 || err != nil {
		t.Errorf("EOF right after the data: got %d, %v, want 5 bytes and no error", n, err)
	}
	if n, err := c.Read(buf); n != 0 || err != io.ErrUnexpectedEOF {
		t.Errorf("next Read: got %d, %v, want io.ErrUnexpectedEOF", n, err)
	}

	for _, in := range []string{"5\r\nhel", "5\r\nhell"} {
		c.reset(newStallSource(true, in), 1<<20)
		if n, err := c.Read(buf); n != len(in)-3 || err != io.ErrUnexpectedEOF {
			t.Errorf("EOF inside the data of %q: got %d, %v, want %d bytes and io.ErrUnexpectedEOF", in, n, err, len(in)-3)
		}
	}

	// Another error with the data's last byte is the body's error.
	c.reset(newStallSource(false, "5\r\nhello"), 1<<20)
	if n, err := c.Read(buf); n != 5 || err != nil {
		t.Fatalf("got %d, %v, want 5 bytes", n, err)
	}
	if n, err := c.Read(buf); n != 0 || err != errStalled {
		t.Errorf("a failing source after the data: got %d, %v, want %v", n, err, errStalled)
	}
}

// TestChunkedCRLFArrivingLater: the CRLF after a chunk's data is checked
// by the next Read when it arrives after the data.
func TestChunkedCRLFArrivingLater(t *testing.T) {
	buf := make([]byte, 64)
	var c chunkedReader
	c.reset(newStallSource(false, "5\r\nhello", "XY0\r\n\r\n"), 1<<20)
	if n, err := c.Read(buf); n != 5 || err != nil {
		t.Fatalf("got %d, %v, want 5 bytes", n, err)
	}
	n, err := c.Read(buf)
	if n != 0 || err == nil || !strings.HasSuffix(err.Error(), "chunk data not followed by crlf") {
		t.Errorf("got %d, %v, want the crlf error", n, err)
	}

	c.reset(newStallSource(false, "5\r\nhello", "\r\n3\r\nabc\r\n0\r\n\r\n"), 1<<20)
	if got, err := readAllChunked(t, &c, 64); got != "helloabc" || err != nil {
		t.Errorf("got %q, %v, want helloabc", got, err)
	}

	// A failed read is the body's error, even when the bytes after it
	// would make a valid body: at every place of the chunked framing.
	for _, segs := range [][]string{
		{"5", "", "\r\nhello\r\n0\r\n\r\n"},
		{"5\r", "", "\nhello\r\n0\r\n\r\n"},
		{"5;a", "", "\r\nhello\r\n0\r\n\r\n"},
		{"5;a\r", "", "\nhello\r\n0\r\n\r\n"},
		{"5\r\nhello", "", "\r\n0\r\n\r\n"},
		{"5\r\nhello\r", "", "\n0\r\n\r\n"},
		{"0\r\n", "", "\r\n"},
		{"0\r\n\r", "", "\n"},
		{"0\r\nA", "", ": b\r\n\r\n"},
		{"0\r\nA:", "", " b\r\n\r\n"},
		{"0\r\nA: b\r", "", "\n\r\n"},
	} {
		c.reset(newStallSource(true, segs...), 1<<20)
		got, err := readAllChunked(t, &c, 64)
		if err != errStalled {
			t.Errorf("%q: got %q, %v, want %v", segs, got, err, errStalled)
		}
	}

	// An empty read never waits for bytes that are not there yet.
	c.reset(newStallSource(false, "5\r\nh"), 1<<20)
	if n, err := c.Read(buf[:1]); n != 1 || err != nil {
		t.Fatalf("got %d, %v, want 1 byte", n, err)
	}
	if n, err := c.Read(buf[:0]); n != 0 || err != nil {
		t.Errorf("empty read with nothing at hand: got %d, %v, want 0, nil", n, err)
	}
}

func TestChunkHeader(t *testing.T) {
	for n, want := range map[int]string{1: "1\r\n", 15: "f\r\n", 16: "10\r\n", 4096: "1000\r\n"} {
		if got := string(appendChunkHeader([]byte("x"), n)); got != "x"+want {
			t.Errorf("appendChunkHeader(%d): got %q, want %q", n, got, "x"+want)
		}
	}
}
