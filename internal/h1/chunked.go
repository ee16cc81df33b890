package h1

import (
	"errors"
	"io"
	"strconv"
)

// byteSource is what the chunked decoder reads from: the server's connection
// reader or an upstream connection's bufio.Reader.
type byteSource interface {
	ReadByte() (byte, error)
	Read(p []byte) (int, error)
	Buffered() int // bytes readable without waiting
}

const (
	maxChunkLine    = 4 << 10 // chunk-size line with its extensions
	maxChunkSize    = 1 << 62
	maxTrailerCount = 100
)

const (
	csSize uint8 = iota
	csData
	csDataEnd
)

// chunkedReader decodes the chunked transfer coding (RFC 9112 §7.1) strictly:
// chunk-size is 1 to 16 hex digits and nothing else before the extensions or
// CRLF; extensions are bounded and free of CTLs; data is followed by exactly
// CRLF; trailer fields follow the rules of header fields and are dropped.
// Every syntax error is a *ProtocolError with status 400, sticky.
type chunkedReader struct {
	src        byteSource
	state      uint8
	n          uint64 // data bytes left in the current chunk
	maxTrailer int    // bytes of the trailer section
	err        error
}

func (c *chunkedReader) reset(src byteSource, maxTrailer int) {
	*c = chunkedReader{src: src, maxTrailer: maxTrailer}
}

func (c *chunkedReader) fail(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	c.err = err
	return err
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	for {
		if c.err != nil {
			return 0, c.err
		}
		switch c.state {
		case csSize:
			if err := c.readSizeLine(); err != nil {
				return 0, c.fail(err)
			}
			if c.n > 0 {
				c.state = csData
				continue
			}
			if err := c.readTrailers(); err != nil {
				return 0, c.fail(err)
			}
			c.err = io.EOF // sticky, like the errors: the body has ended (returned above)
		case csData:
			if len(p) == 0 {
				return 0, nil
			}
			if uint64(len(p)) > c.n { // mutate:equivalent boundary p[:c.n] with len(p) == c.n is p
				p = p[:c.n]
			}
			n, err := c.src.Read(p)
			c.n -= uint64(n)
			if c.n == 0 {
				c.state = csDataEnd
				// Take the CRLF after the data now when it is at hand, so
				// that a caller that flushes when nothing is buffered
				// sees the chunk as complete.
				if err == nil && c.src.Buffered() >= 2 {
					if err := c.expectCRLF("chunk data not followed by crlf"); err != nil {
						return n, c.fail(err)
					}
					c.state = csSize
				}
			}
			// An error is the body's end only when it is EOF right after
			// the chunk's last byte (n > 0 then, since c.n was > 0): the
			// CRLF is then missing, which the next Read reports.
			if err != nil && (c.n > 0 || !errors.Is(err, io.EOF)) {
				return n, c.fail(err)
			}
			return n, nil
		case csDataEnd:
			if err := c.expectCRLF("chunk data not followed by crlf"); err != nil {
				return 0, c.fail(err)
			}
			c.state = csSize
		}
	}
}

func (c *chunkedReader) expectCRLF(reason string) error {
	b, err := c.src.ReadByte()
	if err != nil {
		return err
	}
	if b != '\r' {
		return protoErr(400, reason)
	}
	return c.expectLF()
}

func (c *chunkedReader) expectLF() error {
	b, err := c.src.ReadByte()
	if err != nil {
		return err
	}
	if b != '\n' {
		return protoErr(400, "bare cr in chunked body")
	}
	return nil
}

func (c *chunkedReader) readSizeLine() error {
	var n uint64
	digits := 0
	var b byte
	for {
		var err error
		b, err = c.src.ReadByte()
		if err != nil {
			return err
		}
		v := hexval[b]
		if v < 0 {
			break
		}
		digits++
		if digits > 16 {
			return protoErr(400, "chunk size too long")
		}
		n = n<<4 | uint64(v)
	}
	if digits == 0 {
		return protoErr(400, "invalid chunk size")
	}
	if n > maxChunkSize {
		return protoErr(400, "chunk size too large")
	}
	switch b {
	case '\r':
		if err := c.expectLF(); err != nil {
			return err
		}
	case ';':
		line := digits + 1
		for {
			b, err := c.src.ReadByte()
			if err != nil {
				return err
			}
			if b == '\r' {
				if err := c.expectLF(); err != nil {
					return err
				}
				break
			}
			if b != '\t' && (b < 0x20 || b == 0x7f) {
				return protoErr(400, "invalid byte in chunk extension")
			}
			line++
			if line > maxChunkLine {
				return protoErr(400, "chunk extension too long")
			}
		}
	default:
		return protoErr(400, "invalid chunk size")
	}
	c.n = n
	return nil
}

// readTrailers reads the trailer section after the last chunk, up to and
// including the final CRLF, and drops it.
func (c *chunkedReader) readTrailers() error {
	size, count := 0, 0
	next := func() (byte, error) {
		size++
		if size > c.maxTrailer {
			err := protoErr(400, "trailer section too large")
			return 0, err // mutate:equivalent const the byte is never read when the error is set
		}
		return c.src.ReadByte()
	}
	for {
		b, err := next()
		if err != nil {
			return err
		}
		if b == '\r' {
			return c.expectLF()
		}
		if isOWS(b) {
			return protoErr(400, "obsolete line folding in trailer")
		}
		count++
		if count > maxTrailerCount {
			return protoErr(400, "too many trailer fields")
		}
		name := 0
		for tchar[b] {
			name++
			if b, err = next(); err != nil {
				return err
			}
		}
		if b != ':' {
			if isOWS(b) {
				return protoErr(400, "whitespace between field name and colon")
			}
			return protoErr(400, "invalid byte in trailer field name")
		}
		if name == 0 {
			return protoErr(400, "empty trailer field name")
		}
		for {
			if b, err = next(); err != nil {
				return err
			}
			if b == '\r' {
				if err := c.expectLF(); err != nil {
					return err
				}
				break
			}
			if !vchar[b] {
				return protoErr(400, "invalid byte in trailer field value")
			}
		}
	}
}

// appendChunkHeader appends the chunk-size line of an n-byte chunk.
func appendChunkHeader(dst []byte, n int) []byte {
	dst = strconv.AppendUint(dst, uint64(n), 16)
	return append(dst, '\r', '\n')
}
