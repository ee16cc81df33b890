package difftest

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Reasons for the deliberate differences (RFC 9112 unless named).
const (
	whyConnFraming = "Connection naming Content-Length, Transfer-Encoding or Host asks the next hop to drop the framing or the target's host: a hop that obeys reads the message differently (RFC 9110 §7.6.1 abuse)"
	whyEmptyLines  = "at most 8 empty lines before a request line (§2.2 asks for at least one): bounded work per connection"
	whyVersion     = "the version is HTTP/DIGIT.DIGIT (§2.3); an HTTP/1 request line naming 0.x, 2 or 3 is answered 505, a malformed one 400, instead of being forwarded as HTTP/1.1 under a guessed framing"
	whyRequestLine = "request-line = method SP request-target SP HTTP-version (§3): extra or other whitespace is where parsers split the line differently (HTTP Garden)"
	whyTarget      = "request-target bytes are VCHAR without # (§3.2), and a % is followed by two hex digits (RFC 3986 §2.1): the gateway routes on one decoding of the path"
	whyTargetForm  = "only origin-form, absolute-form without userinfo and whose authority is the Host, and * for OPTIONS (§3.2); no CONNECT: the gateway does not tunnel, and routing and back end must agree on the host"
	whyLimits      = "bounded memory: request line 8 KiB (414), head 32 KiB and 100 fields (431), chunk line 4 KiB, chunk size 16 hex digits, Content-Length 18 digits (no overflow anywhere)"
	whyBareLF      = "CRLF only in the head (§2.2 allows refusing a bare LF): a hop that accepts it and one that does not disagree on where fields and the head end; a bare LF inside a field line is header injection (Kettle 2021)"
	whyCTL         = "control bytes (NUL, CR, VT, FF, DEL) in field values are invalid (RFC 9110 §5.5, §2.2): refused rather than forwarded or replaced"
	whyObsFold     = "obs-fold is refused with 400 (§5.2 allows it): unfolding or not changes what a framing field says (Watchfire 2005, Kettle 2019)"
	whyFieldName   = "a field name that is not a token is refused, not dropped: a field one hop ignores another may read"
	whyHost        = "exactly one Host, of uri-host[:port] bytes (§3.2, RFC 9110 §7.2): routing and back end must see the same host"
	whyCLTE        = "Content-Length with Transfer-Encoding is the classic smuggling pair; §6.3 lets a server refuse it, Gatehouse does instead of dropping Content-Length"
	whyTE          = "Transfer-Encoding is a list of tokens ending in chunked, only in HTTP/1.1 (§6.1); a malformed list is refused, not repaired"
	whyChunkWS     = "chunk-size is 1*HEXDIG directly followed by ; or CRLF (§7.1): whitespace there (BWS) is read differently by different parsers (Klein 2020, Funky chunks 2025)"
	whyChunkLF     = "CRLF only in chunked bodies: a bare LF ending a chunk line, extension, data or trailer is the TERM.EXT / EXT.TERM desync (Funky chunks 2025)"
	whyChunkExt    = "chunk extensions hold no control byte (§7.1.1)"
	whyTrailer     = "trailer fields follow the field-line rules (§7.1.2), though they are dropped"
	whyExpect      = "an expectation other than 100-continue is answered 417 (RFC 9110 §10.1.1) rather than forwarded to a back end that may act on it"
)

// deliberateRefusals are the request cases Gatehouse refuses although nginx
// or HAProxy lets them through, with the reason. The test fails when
// Gatehouse refuses an unlisted case that a peer lets through, or lets a
// listed one through.
var deliberateRefusals = map[string]string{
	"connection-content-length":       whyConnFraming,
	"connection-close-content-length": whyConnFraming,
	"connection-transfer-encoding":    whyConnFraming,
	"connection-host":                 whyConnFraming,
	"leading-crlf-9":                  whyEmptyLines,
	"version-2.0":                     whyVersion,
	"version-3.0":                     whyVersion,
	"version-0.9":                     whyVersion,
	"version-1.10":                    whyVersion,
	"version-missing":                 whyVersion + "; no HTTP/0.9",
	"version-trailing-space":          whyRequestLine,
	"two-spaces-after-method":         whyRequestLine,
	"two-spaces-before-version":       whyRequestLine,
	"tab-separator":                   whyRequestLine,
	"fragment-in-target":              whyTarget,
	"high-byte-in-target":             whyTarget,
	"bad-percent-in-target":           whyTarget,
	"target-asterisk-get":             whyTargetForm,
	"absolute-form-other-host":        whyTargetForm,
	"absolute-form-userinfo":          whyTargetForm,
	"authority-form-connect":          whyTargetForm,
	"target-9k":                       whyLimits,
	"fields-150":                      whyLimits,
	"cl-19-digits":                    whyLimits,
	"chunk-size-17-digits":            whyLimits,
	"chunk-ext-5k":                    whyLimits,
	"bare-lf-everywhere":              whyBareLF,
	"bare-lf-after-request-line":      whyBareLF,
	"bare-lf-end-of-head":             whyBareLF,
	"bare-lf-field-line":              whyBareLF,
	"lf-in-value-cl":                  whyBareLF,
	"nul-in-value":                    whyCTL,
	"del-in-value":                    whyCTL,
	"vt-in-value":                     whyCTL,
	"ff-in-value":                     whyCTL,
	"te-cr-after":                     whyCTL,
	"obs-fold":                        whyObsFold,
	"obs-fold-tab":                    whyObsFold,
	"obs-fold-first-line":             whyObsFold,
	"cl-obs-fold":                     whyObsFold,
	"te-obs-fold":                     whyObsFold,
	"clte-obs-fold":                   whyObsFold,
	"expect-obs-fold":                 whyObsFold,
	"name-non-token":                  whyFieldName,
	"name-utf8":                       whyFieldName,
	"host-missing":                    whyHost,
	"host-dup-same":                   whyHost,
	"host-space-inside":               whyHost,
	"host-slash":                      whyHost,
	"host-userinfo":                   whyHost,
	"host-absolute-no-host":           whyHost,
	"http10-cl-te":                    whyCLTE,
	"clte-plain":                      whyCLTE,
	"tecl-plain":                      whyCLTE,
	"tecl-cl-first":                   whyCLTE,
	"te-chunked-trailing-comma":       whyTE,
	"clte-chunked-trailing-comma":     whyCLTE,
	"te-http10":                       whyTE,
	"chunk-size-trailing-space":       whyChunkWS,
	"chunk-size-trailing-tab":         whyChunkWS,
	"chunk-size-space-before-ext":     whyChunkWS,
	"chunk-size-bare-lf":              whyChunkLF,
	"chunk-ext-bare-lf":               whyChunkLF,
	"chunk-data-bare-lf":              whyChunkLF,
	"chunk-last-bare-lf":              whyChunkLF,
	"chunk-last-end-bare-lf":          whyChunkLF,
	"chunk-trailer-bare-lf":           whyChunkLF,
	"chunk-funky-lf-data-terminator":  whyChunkLF,
	"chunk-ext-nul":                   whyChunkExt,
	"chunk-trailer-obs-fold":          whyTrailer,
	"chunk-trailer-no-colon":          whyTrailer,
	"expect-other":                    whyExpect,
	"expect-list":                     whyExpect,
}

// deliberateAcceptances are the request cases Gatehouse lets through
// although both nginx and HAProxy refuse them, with the reason why that is
// safe. The test fails when Gatehouse lets an unlisted case through that
// both peers refuse, or refuses a listed one.
var deliberateAcceptances = map[string]string{
	"header-value-20k": "the head may hold 32 KiB (nginx: 8 KiB per line, HAProxy: a 16 KiB buffer); a long value is not ambiguous",
}

// A case ends at the back end when nothing arrived for settleQuiet and no
// connection holds a partial request, or after settleMax.
const (
	settleQuiet = 20 * time.Millisecond
	settleMax   = 500 * time.Millisecond
)

// caseResult is what one proxy did with one request case.
type caseResult struct {
	res     result
	outcome string
	fwd     int     // responses produced by the back end
	events  []Event // what the back end saw meanwhile
}

// outcome summarises a client's result: "fwd" when the back end answered
// the want requests; the status of the proxy's own answer ("400") when
// nothing was forwarded; "fwd+400" when some requests were forwarded and
// then one was refused; "fwdK/N" when K of N were; "closed", "timeout" or
// "garbage" when no response came.
func outcome(res result, want int) (string, int) {
	fwd, refusal := 0, 0
	for _, r := range res.Resps {
		switch {
		case r.forwarded():
			fwd++
		case refusal == 0:
			refusal = r.Status
		}
	}
	var s string
	switch {
	case fwd == 0 && refusal != 0:
		return strconv.Itoa(refusal), 0
	case fwd == 0 && res.Garbage != "":
		return "garbage", 0
	case fwd == 0 && res.TimedOut:
		return "timeout", 0
	case fwd == 0:
		return "closed", 0
	case fwd == want:
		s = "fwd"
	default:
		s = fmt.Sprintf("fwd%d/%d", fwd, want)
	}
	if refusal != 0 {
		s += "+" + strconv.Itoa(refusal)
	}
	return s, fwd
}

// expand fills in a case's paths.
func expand(c reqCase) []byte {
	return []byte(strings.NewReplacer("{P2}", "/c/"+c.name+"/2", "{P}", "/c/"+c.name).Replace(c.raw))
}

func runRequestCases(p *proxy, cases []reqCase) []caseResult {
	out := make([]caseResult, len(cases))
	for i, c := range cases {
		mark := p.rec.Mark()
		res := exchange(p.addr, expand(c), c.n, c.head)
		p.rec.Settle(settleQuiet, settleMax)
		o, fwd := outcome(res, c.n)
		out[i] = caseResult{res: res, outcome: o, fwd: fwd, events: p.rec.Since(mark)}
	}
	return out
}

// anomalies lists what a strict back end could not read cleanly: ambiguous
// bytes, and partial request heads left waiting (a smuggled prefix). A
// complete head whose body stopped arriving is streaming, not an anomaly.
func anomalies(events []Event) []string {
	var out []string
	for _, e := range events {
		switch e.Kind {
		case EvAmbiguous:
			out = append(out, fmt.Sprintf("ambiguous (%s): %q", e.Reason, truncate(e.Raw, 200)))
		case EvPending, EvIncomplete:
			if req, _, err := ParseRequest(e.Raw, Options{}); req == nil && errors.Is(err, errNeedMore) {
				out = append(out, fmt.Sprintf("partial head left at the back end (%s): %q", e.Kind, truncate(e.Raw, 200)))
			}
		}
	}
	return out
}

// parseAll reads the client's bytes as the reference (lenient) reader does,
// up to the first error, which it returns.
func parseAll(b []byte) ([]*Request, error) {
	var reqs []*Request
	for len(b) > 0 {
		r, n, err := ParseRequest(b, Options{Lenient: true})
		if err != nil {
			return reqs, err
		}
		reqs = append(reqs, r)
		b = b[n:]
	}
	return reqs, nil
}

// checkGatehouse returns what is wrong with Gatehouse's handling of c.
func checkGatehouse(c reqCase, cr caseResult) []string {
	var bad []string
	if cr.outcome != c.gw {
		bad = append(bad, fmt.Sprintf("outcome: got %s, want %s", cr.outcome, c.gw))
	}
	bad = append(bad, anomalies(cr.events)...)
	var reqs []*Request
	atBackend := map[string]bool{}
	for _, e := range cr.events {
		if e.Kind == EvRequest {
			reqs = append(reqs, e.Req)
			atBackend[strconv.Itoa(e.Seq)] = true
		}
	}
	var answered []response
	for _, r := range cr.res.Resps {
		if r.forwarded() {
			answered = append(answered, r)
			if !atBackend[r.get("X-Backend-Seq")] {
				bad = append(bad, fmt.Sprintf("response with X-Backend-Seq %s that the back end did not send during the case", r.get("X-Backend-Seq")))
			}
			delete(atBackend, r.get("X-Backend-Seq"))
		}
	}
	for seq := range atBackend {
		bad = append(bad, fmt.Sprintf("the back end received request %s, the client got no answer from it", seq))
	}
	ref, refErr := parseAll(expand(c))
	for i, r := range answered {
		if i >= len(ref) {
			bad = append(bad, fmt.Sprintf("answer %d came from the back end, but the reference reading of the client's bytes stops after %d requests: %v", i+1, len(ref), refErr))
			break
		}
		if got, want := r.get("X-Backend-Body"), BodyDigest(ref[i].Body); got != want {
			bad = append(bad, fmt.Sprintf("request %d body at the back end: got %s, want %s", i+1, got, want))
		}
		if got, want := r.get("X-Backend-Path"), ref[i].Path(); got != want {
			bad = append(bad, fmt.Sprintf("request %d target at the back end: got %q, want %q", i+1, got, want))
		}
	}
	if c.check != nil && len(answered) > 0 {
		if err := c.check(reqs); err != nil {
			bad = append(bad, err.Error())
		}
	}
	return bad
}

// respResult is one round of a response case through one proxy.
type respResult struct {
	mode   string
	a      result
	leaks  []string // what a client got that was not its own
	extraA bool     // the asking client saw its own request's smuggled response (allowed)
}

// others is how many other clients send a request right after the asking
// one, in parallel, on their own connections.
const others = 3

func runResponseCases(p *proxy, rounds int) []respResult {
	var out []respResult
	for _, m := range ResponseModes {
		for round := range rounds {
			path := fmt.Sprintf("/resp/%s/%d", m.Name, round)
			method, head := "GET", false
			if m.Name == "body-on-head" {
				method, head = "HEAD", true
			}
			rr := respResult{mode: m.Name}
			rr.a = exchange(p.addr, []byte(method+" "+path+" HTTP/1.1\r\n"+host+"\r\n"), 1, head)
			var bad []string
			rr.extraA, bad = checkAsker(path, rr.a)
			rr.leaks = append(rr.leaks, bad...)
			if m.Name == "extra-after-cl-late" && !p.rec.WaitExtra(path, 2*responseWait) {
				rr.leaks = append(rr.leaks, "the back end never wrote the late extra bytes")
			}
			var wg sync.WaitGroup
			got := make([]result, others)
			for i := range others {
				wg.Add(1)
				go func() {
					defer wg.Done()
					got[i] = getPath(p.addr, fmt.Sprintf("/ok/%s/%d/%d", m.Name, round, i))
				}()
			}
			wg.Wait()
			for i, res := range got {
				own := fmt.Sprintf("/ok/%s/%d/%d", m.Name, round, i)
				rr.leaks = append(rr.leaks, leaks(own, res)...)
			}
			p.rec.Settle(settleQuiet, settleMax)
			p.rec.CloseIdle()
			p.rec.Settle(quietAfter, 2*quietAfter) // proxies see the closes before the next round
			out = append(out, rr)
		}
	}
	return out
}

// checkAsker checks what the client that asked for path got: its own
// response (or the proxy's error), possibly followed by the smuggled
// response of its own request, and nothing of an earlier request.
func checkAsker(path string, res result) (sawExtra bool, bad []string) {
	own := ""
	for _, r := range res.Resps {
		raw := string(r.Raw)
		switch {
		case r.forwarded() && r.get("X-Backend-Path") == path:
			own = r.get("X-Backend-Seq")
			sawExtra = sawExtra || strings.Contains(raw, "SMUGGLED after "+own+"\n")
		case r.forwarded():
			bad = append(bad, fmt.Sprintf("%s got the response to %s", path, r.get("X-Backend-Path")))
		case strings.Contains(raw, "SMUGGLED") && own != "" && strings.Contains(raw, "SMUGGLED after "+own+"\n"):
			sawExtra = true
		case strings.Contains(raw, "SMUGGLED"):
			bad = append(bad, fmt.Sprintf("%s got the smuggled response of another request: %q", path, r.Body))
		case r.Status < 400:
			bad = append(bad, fmt.Sprintf("%s got a %d that the back end did not send for it: %q", path, r.Status, truncate(r.Raw, 160)))
		}
	}
	return sawExtra, bad
}

// leaks checks that a client that asked for own got exactly its own
// response and nothing of anyone else's.
func leaks(own string, res result) []string {
	var bad []string
	for _, r := range res.Resps {
		raw := string(r.Raw)
		if strings.Contains(raw, "SMUGGLED") {
			bad = append(bad, fmt.Sprintf("%s got a smuggled response: %q", own, r.Body))
		}
		if strings.Contains(raw, "/resp/") {
			bad = append(bad, fmt.Sprintf("%s got (part of) the response of the asking client: %q", own, truncate(r.Raw, 160)))
		}
	}
	switch {
	case len(res.Resps) != 1:
		bad = append(bad, fmt.Sprintf("%s: got %d responses, want 1 (garbage %q, timed out %v)", own, len(res.Resps), res.Garbage, res.TimedOut))
	case res.Resps[0].get("X-Backend-Path") != own:
		bad = append(bad, fmt.Sprintf("%s: got status %d for %q", own, res.Resps[0].Status, res.Resps[0].get("X-Backend-Path")))
	default:
		r := res.Resps[0]
		if want := fmt.Sprintf("seq=%s path=%s\n", r.get("X-Backend-Seq"), own); string(r.Body) != want {
			bad = append(bad, fmt.Sprintf("%s: body %q does not match X-Backend-Seq %s", own, r.Body, r.get("X-Backend-Seq")))
		}
	}
	return bad
}

func TestDifferential(t *testing.T) {
	nginxBin, haproxyBin := binary(t, "nginx"), binary(t, "haproxy")
	proxies := []*proxy{
		startGatehouse(t, newRecorder(t)),
		startNginx(t, nginxBin, newRecorder(t)),
		startHAProxy(t, haproxyBin, newRecorder(t)),
	}
	for _, p := range proxies {
		if o, _ := outcome(getPath(p.addr, "/ready"), 1); o != "fwd" {
			t.Fatalf("%s: GET /ready through it: got %s, want fwd", p.name, o)
		}
	}
	cases := requestCorpus()
	names := map[string]bool{}
	for _, c := range cases {
		if names[c.name] {
			t.Fatalf("case %s twice in the corpus", c.name)
		}
		names[c.name] = true
	}

	const rounds = 3
	reqResults := make([][]caseResult, len(proxies))
	respResults := make([][]respResult, len(proxies))
	var wg sync.WaitGroup
	for i, p := range proxies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reqResults[i] = runRequestCases(p, cases)
			respResults[i] = runResponseCases(p, rounds)
		}()
	}
	wg.Wait()

	gh, ng, hp := reqResults[0], reqResults[1], reqResults[2]
	var table strings.Builder
	fmt.Fprintf(&table, "request corpus (%d cases; !amb: the back end read ambiguous bytes):\n%-44s %-12s %-14s %-14s\n", len(cases), "case", "gatehouse", "nginx", "haproxy")
	col := func(cr caseResult) string {
		if len(anomalies(cr.events)) > 0 {
			return cr.outcome + "!amb"
		}
		return cr.outcome
	}
	for i, c := range cases {
		fmt.Fprintf(&table, "%-44s %-12s %-14s %-14s\n", c.name, col(gh[i]), col(ng[i]), col(hp[i]))
		if bad := checkGatehouse(c, gh[i]); len(bad) > 0 {
			t.Errorf("case %s (%s) through Gatehouse:\n  %s\n  client sent %q\n  client got %s%s", c.name, c.src, strings.Join(bad, "\n  "), truncate(expand(c), 300), describe(gh[i].res), transcripts(proxies[0].rec, gh[i].events))
		}
	}
	t.Log(table.String())
	var peerAmb strings.Builder
	for i, c := range cases {
		for _, pr := range []struct {
			name string
			cr   caseResult
		}{{"nginx", ng[i]}, {"haproxy", hp[i]}} {
			for _, a := range anomalies(pr.cr.events) {
				fmt.Fprintf(&peerAmb, "%s via %s: %s\n", c.name, pr.name, truncate([]byte(a), 160))
			}
		}
	}
	t.Logf("what the peers forwarded that a strict back end cannot read unambiguously:\n%s", peerAmb.String())
	checkTables(t, cases, gh, ng, hp)

	var rt strings.Builder
	fmt.Fprintf(&rt, "response corpus (%d rounds each; A: what the asking client got, +smuggled: then its own smuggled response; LEAK: what the asking client or the %d others got that was not their own):\n%-24s %-26s %-26s %-26s\n", rounds, others, "mode", "gatehouse", "nginx", "haproxy")
	for j := range respResults[0] {
		mode := respResults[0][j].mode
		fmt.Fprintf(&rt, "%-24s", mode)
		for i, p := range proxies {
			rr := respResults[i][j]
			o, _ := outcome(rr.a, 1)
			cell := "A:" + o
			if rr.extraA {
				cell += "+smuggled"
			}
			if len(rr.leaks) > 0 {
				cell += fmt.Sprintf(" LEAK×%d", len(rr.leaks))
				if p.name == "gatehouse" {
					t.Errorf("response mode %s round %d through Gatehouse: a client got what was not its own:\n  %s", mode, j%rounds, strings.Join(rr.leaks, "\n  "))
				}
			}
			fmt.Fprintf(&rt, " %-26s", cell)
		}
		rt.WriteString("\n")
	}
	t.Log(rt.String())
}

// checkTables holds Gatehouse's differences from its peers to the tables
// of deliberate refusals and acceptances. A case counts at most the
// requests a strict reading finds (a peer's smuggled extra is no
// acceptance).
func checkTables(t *testing.T, cases []reqCase, gh, ng, hp []caseResult) {
	t.Helper()
	for name := range deliberateRefusals {
		if !hasCase(cases, name) {
			t.Errorf("deliberateRefusals names %s, which is not in the corpus", name)
		}
	}
	for name := range deliberateAcceptances {
		if !hasCase(cases, name) {
			t.Errorf("deliberateAcceptances names %s, which is not in the corpus", name)
		}
	}
	var refused, accepted []string
	for i, c := range cases {
		g, n, h := min(passed(gh[i]), c.n), min(passed(ng[i]), c.n), min(passed(hp[i]), c.n)
		reason, listed := deliberateRefusals[c.name]
		switch {
		case g < max(n, h) && !listed:
			t.Errorf("case %s: Gatehouse %s, nginx %s, HAProxy %s: a refusal missing from deliberateRefusals", c.name, gh[i].outcome, ng[i].outcome, hp[i].outcome)
		case g < max(n, h):
			refused = append(refused, fmt.Sprintf("%-40s gatehouse %-8s nginx %-8s haproxy %-8s %s", c.name, gh[i].outcome, ng[i].outcome, hp[i].outcome, reason))
		case listed && g > 0:
			t.Errorf("case %s: Gatehouse %s, but deliberateRefusals says it refuses (%s)", c.name, gh[i].outcome, reason)
		case listed:
			t.Logf("case %s: in deliberateRefusals, but no peer forwards it any more (nginx %s, HAProxy %s)", c.name, ng[i].outcome, hp[i].outcome)
		}
		reason, listed = deliberateAcceptances[c.name]
		switch {
		case g > max(n, h) && !listed:
			t.Errorf("case %s: Gatehouse %s, nginx %s, HAProxy %s: forwarded what both peers refuse, missing from deliberateAcceptances", c.name, gh[i].outcome, ng[i].outcome, hp[i].outcome)
		case g > max(n, h):
			accepted = append(accepted, fmt.Sprintf("%-40s gatehouse %-8s nginx %-8s haproxy %-8s %s", c.name, gh[i].outcome, ng[i].outcome, hp[i].outcome, reason))
		case listed && g == 0:
			t.Errorf("case %s: Gatehouse %s, but deliberateAcceptances says it forwards (%s)", c.name, gh[i].outcome, reason)
		case listed:
			t.Logf("case %s: in deliberateAcceptances, but a peer forwards it too now (nginx %s, HAProxy %s)", c.name, ng[i].outcome, hp[i].outcome)
		}
	}
	sort.Strings(refused)
	sort.Strings(accepted)
	t.Logf("Gatehouse refuses, a peer forwards (deliberateRefusals):\n%s", strings.Join(refused, "\n"))
	t.Logf("Gatehouse forwards, both peers refuse (deliberateAcceptances):\n%s", strings.Join(accepted, "\n"))
}

// passed counts the requests of a case that a proxy let through: answered
// from the back end, or received there (a back end that refused ambiguous
// bytes makes the proxy answer 502, yet the proxy did forward them).
func passed(cr caseResult) int {
	n := 0
	for _, e := range cr.events {
		if e.Kind == EvRequest || e.Kind == EvAmbiguous {
			n++
		}
	}
	return max(n, cr.fwd)
}

func hasCase(cases []reqCase, name string) bool {
	for _, c := range cases {
		if c.name == name {
			return true
		}
	}
	return false
}

// transcripts shows the end of what the back-end connections that the
// events happened on received.
func transcripts(rec *Recorder, events []Event) string {
	var b strings.Builder
	seen := map[int]bool{}
	for _, e := range events {
		if !seen[e.Conn] {
			seen[e.Conn] = true
			all := rec.Transcript(e.Conn)
			fmt.Fprintf(&b, "\n  back-end connection %d received, last 600 bytes: %q", e.Conn, all[max(0, len(all)-600):])
		}
	}
	return b.String()
}

func describe(res result) string {
	var parts []string
	for _, r := range res.Resps {
		parts = append(parts, fmt.Sprintf("%d seq=%q", r.Status, r.get("X-Backend-Seq")))
	}
	return fmt.Sprintf("[%s] closed=%v timedOut=%v truncated=%v garbage=%q", strings.Join(parts, ", "), res.Closed, res.TimedOut, res.Truncated, res.Garbage)
}
