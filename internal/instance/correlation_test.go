package instance

import (
	"strings"
	"testing"
	"time"
)

func TestValidID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"a", true},
		{"Id-0123456789abcdef01234567", true},
		{"A.b_c:d-9", true},
		{strings.Repeat("x", 128), true},
		{strings.Repeat("x", 129), false},
		{"", false},
		{"a b", false},
		{"a/b", false},
		{"é", false},
		{"a\n", false},
	}
	for _, tt := range tests {
		if got := validID(tt.id); got != tt.want {
			t.Errorf("validID(%q): got %v, want %v", tt.id, got, tt.want)
		}
	}
}

func TestNewID(t *testing.T) {
	s, err := newIDSource()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(0x65a1b2c3, 0)
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id := s.newID(now)
		if !generatedID.MatchString(id) || !strings.HasPrefix(id, "Id-65a1b2c3") {
			t.Fatalf("newID: got %q, want Id-65a1b2c3 and 16 hex digits", id)
		}
		if seen[id] {
			t.Fatalf("newID: %q twice", id)
		}
		seen[id] = true
	}
	if got := s.accept("keep.me", now); got != "keep.me" {
		t.Errorf("accept(valid): got %q, want %q", got, "keep.me")
	}
	if got := s.accept("no way", now); !generatedID.MatchString(got) {
		t.Errorf("accept(invalid): got %q, want a generated id", got)
	}
}

func BenchmarkNewID(b *testing.B) {
	s, _ := newIDSource()
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		_ = s.newID(now)
	}
}
