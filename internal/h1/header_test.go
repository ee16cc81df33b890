package h1

import (
	"strings"
	"testing"
)

func TestRemoveConnectionNamed(t *testing.T) {
	tests := []struct {
		name string
		in   [][2]string
		want string // the names left, in order
	}{
		{"no connection field", [][2]string{{"A", "1"}, {"B", "2"}}, "A,B"},
		{"named before and after", [][2]string{{"X", "1"}, {"Connection", "x, close"}, {"Y", "2"}, {"x", "3"}}, "Y"},
		{"connection first, kept fields in between", [][2]string{{"Connection", "z"}, {"Y", "1"}, {"W", "2"}, {"Z", "3"}}, "Y,W"},
		{"two connection fields", [][2]string{{"connection", "a"}, {"A", "1"}, {"B", "2"}, {"CONNECTION", " b ,"}}, ""},
		{"other ten-byte names stay", [][2]string{{"Connection", "x"}, {"Keep-Alive", "1"}, {"X-Ten-Char", "2"}, {"x", "3"}}, "Keep-Alive,X-Ten-Char"},
		{"only tokens", [][2]string{{"Connection", "keep-alive, upgrade"}, {"Upgrade", "websocket"}, {"K", "v"}}, "K"},
		{"only connection fields", [][2]string{{"Connection", "close"}, {"connection", "keep-alive"}}, ""},
	}
	for _, tt := range tests {
		var h Header
		for _, f := range tt.in {
			h.AddString(f[0], f[1])
		}
		h.RemoveConnectionNamed()
		var names []string
		h.Each(func(name, _ []byte) bool { names = append(names, string(name)); return true })
		if got := strings.Join(names, ","); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
		// Fields added afterwards are never removed by the client's list.
		h.AddString("X-Forwarded-For", "1.2.3.4")
		if h.Get("X-Forwarded-For") == nil {
			t.Errorf("%s: a field added after the removal is missing", tt.name)
		}
	}
}

func TestHeaderCount(t *testing.T) {
	var h Header
	if h.Count("KeyId") != 0 {
		t.Error("empty header: count not 0")
	}
	h.AddString("KeyId", "a")
	h.AddString("Other", "b")
	h.AddString("keyid", "c")
	if got := h.Count("KEYID"); got != 2 {
		t.Errorf("Count: got %d, want 2 (names without case)", got)
	}
	if got := h.Count("Other"); got != 1 {
		t.Errorf("Count(Other): got %d", got)
	}
}
