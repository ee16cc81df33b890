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

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// Report is the result of Verify.
type Report struct {
	Entries  int   `json:"entries"`  // lines read
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

// Verify reads the audit log of h and checks the chain: sequence numbers
// 1, 2, 3 ... without gaps, each prev the SHA-256 of the line before, each
// hash the SHA-256 of its entry, each line in the form Record writes it,
// and the newest entry at least the one audit.head names. The error is for
// a log that cannot be read at all; a broken chain is a Report with
// Verified false.
func Verify(h home.Home) (Report, error) {
	headData, err := os.ReadFile(HeadFile(h))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return Report{}, fmt.Errorf("reading %s: %w", HeadFile(h), err)
	}
	f, err := os.Open(File(h))
	if errors.Is(err, os.ErrNotExist) {
		return verifyStream(bytes.NewReader(nil), headData, headKey(h))
	}
	if err != nil {
		return Report{}, fmt.Errorf("reading audit log: %w", err)
	}
	defer f.Close()
	// Streamed: memory does not grow with the log.
	r, err := verifyStream(f, headData, headKey(h))
	if err != nil {
		return Report{}, fmt.Errorf("reading audit log: %w", err)
	}
	return r, nil
}

// VerifyData is Verify on the contents of audit.log and audit.head (nil
// when there is no head file), without the domain key.
func VerifyData(data, headData []byte) Report { return VerifyDataKey(data, headData, nil) }

// VerifyDataKey is VerifyData that also checks the head's MAC with key
// (nil: not checked). A log with entries and no head fails: entries could
// have been cut from its end.
func VerifyDataKey(data, headData []byte, key []byte) Report {
	r, _ := verifyStream(bytes.NewReader(data), headData, key) // a bytes.Reader does not fail
	return r
}

// verifyStream is VerifyDataKey reading the log from log, a line at a
// time; its error is log's read error.
func verifyStream(log io.Reader, headData []byte, key []byte) (Report, error) {
	var hd head
	hasHead := headData != nil
	var herr error
	if hasHead {
		if err := json.Unmarshal(headData, &hd); err != nil {
			herr = fmt.Errorf("audit.head does not parse: %w", err)
		}
	}
	var r Report
	bad := func(seq int64, format string, args ...any) Report {
		r.FirstBad, r.Reason = seq, fmt.Sprintf(format, args...)
		return r
	}
	var prevLine []byte
	headLine := "" // the hash of the entry that audit.head names, once read
	br := bufio.NewReaderSize(log, 64<<10)
	for i := 0; ; i++ {
		line, err := br.ReadBytes('\n')
		if len(line) == 0 && errors.Is(err, io.EOF) {
			break
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return r, err
		}
		want := r.LastSeq + 1
		r.Entries = i + 1
		if !bytes.HasSuffix(line, []byte("\n")) {
			return bad(want, "line %d is cut off (no newline at its end)", i+1), nil
		}
		line = line[:len(line)-1]
		e, perr := parseStrict(line)
		if perr != nil {
			return bad(want, "line %d is not an audit entry: %v", i+1, perr), nil
		}
		switch {
		case e.Seq > want:
			return bad(want, "entry %d is missing (line %d holds entry %d)", want, i+1, e.Seq), nil
		case e.Seq < want:
			return bad(want, "entry %d is out of place (line %d holds entry %d)", want, i+1, e.Seq), nil
		}
		wantPrev := zeroHash
		if prevLine != nil {
			wantPrev = lineHash(prevLine)
		}
		if e.Prev != wantPrev {
			return bad(e.Seq, "entry %d: prev does not match the line before it (that line was altered, or this entry was forged or moved)", e.Seq), nil
		}
		got := e
		if _, err := encode(&got); err != nil || got.Hash != e.Hash {
			return bad(e.Seq, "entry %d: hash does not match its content (altered)", e.Seq), nil
		}
		if canon, _ := json.Marshal(e); !bytes.Equal(canon, line) {
			return bad(e.Seq, "entry %d: line is not in the form the log writes (edited by hand)", e.Seq), nil
		}
		if hasHead && e.Seq == hd.Seq {
			headLine = lineHash(line)
		}
		r.LastSeq, prevLine = e.Seq, line
	}
	if herr != nil {
		return bad(r.LastSeq+1, "%v", herr), nil
	}
	if !hasHead && r.LastSeq > 0 {
		return bad(r.LastSeq+1, "audit.head is missing: entries after %d may have been cut from the end", r.LastSeq), nil
	}
	if hasHead && key != nil {
		if hd.MAC == "" || !hmac.Equal([]byte(hd.MAC), []byte(headMAC(key, hd))) {
			return bad(min(hd.Seq, r.LastSeq)+1, "audit.head is not signed with this domain's key (written or recomputed without it): entries may have been cut from the end"), nil
		}
		r.HeadSigned = true
	}
	if hasHead {
		if hd.Seq > r.LastSeq {
			return bad(r.LastSeq+1, "entries %d to %d are missing from the end (audit.head names entry %d)", r.LastSeq+1, hd.Seq, hd.Seq), nil
		}
		// The head may lag the log by one entry after a crash between the
		// two writes; the entry it names must still be the same.
		if hd.Seq > 0 && headLine != hd.Line {
			return bad(hd.Seq, "entry %d is not the one audit.head recorded", hd.Seq), nil
		}
	}
	r.Verified = true
	return r, nil
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
