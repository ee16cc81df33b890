package responsecache

import (
	"strconv"
	"strings"
)

// directives are what the gateway reads of a response's Cache-Control
// (RFC 9111 section 5.2.2), all its fields together.
type directives struct {
	noStore, private, noCache bool  // any of them: not stored
	public                    bool  // s-maxage or must-revalidate count too (storable for an authorized request)
	maxAge, sMaxAge           int64 // seconds; -1 when absent
}

// maxDelta bounds a delta-seconds (RFC 9111: 2^31 when larger).
const maxDelta = 1 << 31

// parseCacheControl reads one Cache-Control field value into d. Names are
// compared without case; an unknown directive is ignored; a max-age that
// is not a number is taken as 0 (stale: RFC 9111 section 4.2.1), so a
// malformed value never makes a response live longer.
func parseCacheControl(d *directives, v string) {
	for len(v) > 0 {
		var item string
		item, v = nextItem(v)
		name, arg, hasArg := strings.Cut(item, "=")
		name = strings.TrimSpace(name)
		arg = strings.Trim(strings.TrimSpace(arg), `"`)
		switch {
		case strings.EqualFold(name, "no-store"):
			d.noStore = true
		case strings.EqualFold(name, "private"):
			d.private = true
		case strings.EqualFold(name, "no-cache"):
			d.noCache = true
		case strings.EqualFold(name, "public"), strings.EqualFold(name, "must-revalidate"):
			d.public = true
		case strings.EqualFold(name, "max-age"):
			d.maxAge = minAge(d.maxAge, delta(arg, hasArg))
		case strings.EqualFold(name, "s-maxage"):
			d.sMaxAge = minAge(d.sMaxAge, delta(arg, hasArg))
			d.public = true
		}
	}
}

// nextItem splits v at the first comma outside a quoted string.
func nextItem(v string) (item, rest string) {
	quoted := false
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '"':
			quoted = !quoted
		case '\\':
			if quoted {
				i++
			}
		case ',':
			if !quoted {
				return v[:i], v[i+1:]
			}
		}
	}
	return v, ""
}

// delta is a delta-seconds argument; 0 when missing or malformed.
func delta(arg string, ok bool) int64 {
	if !ok || arg == "" {
		return 0
	}
	for i := 0; i < len(arg); i++ {
		if arg[i] < '0' || arg[i] > '9' {
			return 0
		}
	}
	n, err := strconv.ParseInt(arg, 10, 64)
	if err != nil || n > maxDelta {
		return maxDelta
	}
	return n
}

// minAge keeps the smaller of two ages (-1: absent); a directive given
// twice counts with its shorter value.
func minAge(old, n int64) int64 {
	if old < 0 || n < old {
		return n
	}
	return old
}

// varyCovered reports whether every field a Vary value names is one of
// the key's fields (keyed, canonical lower case); "*" never is.
func varyCovered(v string, keyed []string) bool {
	for len(v) > 0 {
		var item string
		item, v = nextItem(v)
		name := strings.TrimSpace(item)
		if name == "" {
			continue
		}
		if name == "*" {
			return false
		}
		found := false
		for _, k := range keyed {
			if strings.EqualFold(k, name) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
