package oauth

import (
	"mime"
	"net/url"
	"strings"
	"unicode/utf8"
)

// MaxFormParams bounds the parameters of one form.
const MaxFormParams = 64

// ParseForm reads the body of a token, introspection or revocation
// request: application/x-www-form-urlencoded (a charset parameter, if any,
// must be UTF-8), at most MaxBodyBytes, at most MaxFormParams parameters,
// keys and values valid UTF-8 without control characters after decoding.
// A parameter may appear once (RFC 6749 §3.2: a repeated one is refused,
// even with an empty value). A parameter without a value is treated as
// omitted (RFC 6749 §3.1): it is not in the result. Every refusal is an
// invalid_request that names the rule broken.
func ParseForm(contentType string, body []byte) (url.Values, *Error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, errRequest("the body must be application/x-www-form-urlencoded")
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return nil, errRequest("the only media type parameter accepted is charset=utf-8")
		}
	}
	if len(body) > MaxBodyBytes {
		e := errRequest("the body is larger than %d bytes", MaxBodyBytes)
		e.Status = 413
		return nil, e
	}
	form := url.Values{}
	seen := map[string]bool{}
	rest := string(body)
	for rest != "" {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		if pair == "" {
			continue
		}
		if len(seen) == MaxFormParams {
			return nil, errRequest("more than %d parameters", MaxFormParams)
		}
		k, v, _ := strings.Cut(pair, "=")
		key, err1 := url.QueryUnescape(k)
		val, err2 := url.QueryUnescape(v)
		switch {
		case err1 != nil || err2 != nil:
			return nil, errRequest("a parameter is not well percent-encoded")
		case key == "":
			return nil, errRequest("a parameter without a name")
		case !clean(key) || !clean(val):
			return nil, errRequest("parameter %q: not valid UTF-8 or has control characters", printable(key))
		case seen[key]:
			return nil, errRequest("parameter %q is given more than once (RFC 6749 §3.2)", key)
		}
		seen[key] = true
		if val != "" {
			form[key] = []string{val}
		}
	}
	return form, nil
}

// clean: valid UTF-8 without C0 controls or DEL.
func clean(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}

func printable(s string) string {
	if !clean(s) || len(s) > 64 {
		return "(unprintable)"
	}
	return s
}
