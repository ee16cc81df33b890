package audit

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// Report is the result of Verify.
type Report struct {
	Entries  int   `json:"entries"`  // lines read
	Files    int   `json:"files"`    // files read: the rotated ones and audit.log
	LastSeq  int64 `json:"lastSeq"`  // sequence number of the last good entry
	Verified bool  `json:"verified"` // the whole chain holds
	// FirstBad is the sequence number of the first entry that is missing,
	// altered, out of place or damaged (0 when Verified).
	FirstBad int64  `json:"firstBad,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// HeadSigned: audit.head's MAC was checked with the domain key (on the
	// Admin Node Manager's host). Without the key, a head recomputed after
	// a truncation cannot be told from the real one.
	HeadSigned bool `json:"headSigned"`
}

// Verify reads the audit log of h, its rotated files oldest first and
// then audit.log, and checks the chain: sequence numbers 1, 2, 3 ...
// without gaps across the files, each prev the SHA-256 of the line before
// (the last line of the previous file for a file's first entry), each hash
// the SHA-256 of its entry, each line in the form Record writes it, and
// the newest entry at least the one audit.head names. The error is for a
// log that cannot be read at all; a broken chain is a Report with Verified
// false. It streams: memory does not grow with the log.
func Verify(h home.Home) (Report, error) {
	headData, err := os.ReadFile(HeadFile(h))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return Report{}, fmt.Errorf("reading %s: %w", HeadFile(h), err)
	}
	files, err := openFiles(h)
	if err != nil {
		return Report{}, fmt.Errorf("reading audit log: %w", err)
	}
	defer closeAll(files)
	v := newVerifier(headData, headKey(h))
	for _, f := range files {
		v.r.Files++
		v.file = ""
		if len(files) > 1 {
			v.file = filepath.Base(f.Name())
		}
		done, err := v.stream(f)
		if err != nil {
			return Report{}, fmt.Errorf("reading audit log %s: %w", f.Name(), err)
		}
		if done {
			return v.r, nil
		}
	}
	return v.finish(), nil
}

// VerifyData is Verify on the contents of audit.log and audit.head (nil
// when there is no head file), without the domain key.
func VerifyData(data, headData []byte) Report { return VerifyDataKey(data, headData, nil) }

// VerifyDataKey is VerifyData that also checks the head's MAC with key
// (nil: not checked). A log with entries and no head fails: entries could
// have been cut from its end.
func VerifyDataKey(data, headData []byte, key []byte) Report {
	v := newVerifier(headData, key)
	if done, _ := v.stream(bytes.NewReader(data)); done { // a bytes.Reader does not fail
		return v.r
	}
	return v.finish()
}

// verifier checks the chain over one or more files fed to stream in order.
type verifier struct {
	r        Report
	hd       head
	hasHead  bool
	herr     error
	key      []byte
	prevLine []byte
	headLine string // the hash of the entry that audit.head names, once read
	file     string // the name of the file being read, for reasons ("" for one file)
}

func newVerifier(headData, key []byte) *verifier {
	v := &verifier{hasHead: headData != nil, key: key}
	if v.hasHead {
		if err := json.Unmarshal(headData, &v.hd); err != nil {
			v.herr = fmt.Errorf("audit.head does not parse: %w", err)
		}
	}
	return v
}

// bad records the first bad entry; the reason names the file when the log
// has several.
func (v *verifier) bad(seq int64, format string, args ...any) {
	v.r.FirstBad, v.r.Reason = seq, fmt.Sprintf(format, args...)
	if v.file != "" {
		v.r.Reason = v.file + ": " + v.r.Reason
	}
}

// stream reads one file of the log, a line at a time. done: a bad entry
// was found (v.r is the report). The error is log's read error.
func (v *verifier) stream(log io.Reader) (done bool, err error) {
	br := bufio.NewReaderSize(log, 64<<10) // mutate:equivalent const a buffer size: ReadBytes reads longer lines too
	for i := 0; ; i++ {
		line, err := br.ReadBytes('\n')
		if len(line) == 0 && errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return false, err
		}
		want := v.r.LastSeq + 1
		v.r.Entries++
		if !bytes.HasSuffix(line, []byte("\n")) {
			v.bad(want, "line %d is cut off (no newline at its end)", i+1)
			return true, nil
		}
		line = line[:len(line)-1]
		e, perr := parseStrict(line)
		if perr != nil {
			v.bad(want, "line %d is not an audit entry: %v", i+1, perr)
			return true, nil
		}
		switch {
		case e.Seq > want:
			v.bad(want, "entry %d is missing (line %d holds entry %d)", want, i+1, e.Seq)
			return true, nil
		case e.Seq < want:
			v.bad(want, "entry %d is out of place (line %d holds entry %d)", want, i+1, e.Seq)
			return true, nil
		}
		wantPrev := zeroHash
		if v.prevLine != nil {
			wantPrev = lineHash(v.prevLine)
		}
		if e.Prev != wantPrev {
			v.bad(e.Seq, "entry %d: prev does not match the line before it (that line was altered, or this entry was forged or moved)", e.Seq)
			return true, nil
		}
		got := e
		if _, err := encode(&got); err != nil || got.Hash != e.Hash {
			v.bad(e.Seq, "entry %d: hash does not match its content (altered)", e.Seq)
			return true, nil
		}
		if canon, _ := json.Marshal(e); !bytes.Equal(canon, line) {
			v.bad(e.Seq, "entry %d: line is not in the form the log writes (edited by hand)", e.Seq)
			return true, nil
		}
		if v.hasHead && e.Seq == v.hd.Seq {
			v.headLine = lineHash(line)
		}
		v.r.LastSeq, v.prevLine = e.Seq, line
	}
}

// finish checks the head once every file is read.
func (v *verifier) finish() Report {
	v.file = ""
	r, hd := &v.r, v.hd
	if v.herr != nil {
		v.bad(r.LastSeq+1, "%v", v.herr)
		return *r
	}
	if !v.hasHead && r.LastSeq > 0 {
		v.bad(r.LastSeq+1, "audit.head is missing: entries after %d may have been cut from the end", r.LastSeq)
		return *r
	}
	if v.hasHead && v.key != nil {
		if hd.MAC == "" || !hmac.Equal([]byte(hd.MAC), []byte(headMAC(v.key, hd))) {
			v.bad(min(hd.Seq, r.LastSeq)+1, "audit.head is not signed with this domain's key (written or recomputed without it): entries may have been cut from the end")
			return *r
		}
		r.HeadSigned = true
	}
	if v.hasHead {
		if hd.Seq > r.LastSeq {
			v.bad(r.LastSeq+1, "entries %d to %d are missing from the end (audit.head names entry %d)", r.LastSeq+1, hd.Seq, hd.Seq)
			return *r
		}
		// The head may lag the log by one entry after a crash between the
		// two writes; the entry it names must still be the same.
		if hd.Seq > 0 && v.headLine != hd.Line {
			v.bad(hd.Seq, "entry %d is not the one audit.head recorded", hd.Seq)
			return *r
		}
	}
	r.Verified = true
	return *r
}

func parseStrict(line []byte) (Entry, error) {
	var e Entry
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return e, err
	}
	if dec.More() {
		return e, errors.New("data after the entry")
	}
	return e, nil
}
