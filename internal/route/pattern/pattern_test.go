package pattern

import (
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		parse            func(string) (Pattern, error)
		in               string
		kind             Kind
		shape, example   string
		literals, params int
	}{
		{ParsePath, "/", Exact, "exact /", "/", 1, 0},
		{ParsePath, "/a/b/", Exact, "exact /a/b/", "/a/b/", 3, 0},
		{ParsePath, "/a/{id}/b/{x_1}", Param, "param /a/{}/b/{}", "/a/v/b/v", 2, 2},
		{ParsePrefix, "/", Prefix, "prefix ", "/", 0, 0},
		{ParsePrefix, "/a/b/", Prefix, "prefix /a/b", "/a/b", 2, 0},
		{ParseRegex, "/a/.*", Regex, "regex /a/.*", "", 0, 0},
	}
	for _, tt := range tests {
		p, err := tt.parse(tt.in)
		if err != nil {
			t.Fatalf("%q: %v", tt.in, err)
		}
		if p.Kind != tt.kind || p.Shape() != tt.shape || p.Example("v") != tt.example || p.Literals() != tt.literals || len(p.Names) != tt.params {
			t.Errorf("%q: got %v %q %q %d %d, want %v %q %q %d %d", tt.in, p.Kind, p.Shape(), p.Example("v"), p.Literals(), len(p.Names), tt.kind, tt.shape, tt.example, tt.literals, tt.params)
		}
	}
}

func TestSeen(t *testing.T) {
	var s Seen
	a, _ := ParsePath("/a/{x}")
	b, _ := ParsePath("/a/{y}")
	if err := s.Add(0, "H.", &a, []string{"GET"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(1, "h", &b, []string{"POST"}); err != nil {
		t.Errorf("disjoint methods: got %v, want nil", err)
	}
	if err := s.Add(2, "other", &b, nil); err != nil {
		t.Errorf("other host: got %v, want nil", err)
	}
	var de *DuplicateError
	if err := s.Add(3, "h", &b, nil); !errors.Is(err, ErrDuplicate) || !errors.As(err, &de) || de.Earlier != 0 || de.Method != "GET" {
		t.Errorf("duplicate: got %v, want one of API #1 for GET", err)
	}
}
