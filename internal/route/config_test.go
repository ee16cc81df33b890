package route

import (
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
)

// TestConfigErrors: every bad pattern is refused by groupconf.Load with the
// file and line of the key, and what the configuration accepted compiles.
func TestConfigErrors(t *testing.T) {
	const head = "backends:\n  - name: b\n    url: http://127.0.0.1:9\napis:\n  - name: ok\n    path: /ok/{id}\n    methods: [GET]\n    backend: b\n"
	// The API under test starts on line 9; its pattern is on line 10.
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"malformed brace", "  - name: x\n    path: /a/{id\n    backend: b\n", []string{"g.yaml:10", "apis[1].path", "not a parameter"}},
		{"stray brace", "  - name: x\n    path: /a/id}\n    backend: b\n", []string{"g.yaml:10", "not a parameter"}},
		{"param not a whole segment", "  - name: x\n    path: /a/v{id}\n    backend: b\n", []string{"g.yaml:10", "whole segment"}},
		{"bad param name", "  - name: x\n    path: /a/{9}\n    backend: b\n", []string{"g.yaml:10", "not accepted"}},
		{"duplicate param", "  - name: x\n    path: /a/{id}/{id}\n    backend: b\n", []string{"g.yaml:10", "appears twice"}},
		{"too many params", "  - name: x\n    path: " + manyParams(17) + "\n    backend: b\n", []string{"g.yaml:10", "more than 16"}},
		{"invalid regex", "  - name: x\n    pathRegex: /a/[0-9\n    backend: b\n", []string{"g.yaml:10", "apis[1].pathRegex", "not a regular expression"}},
		{"param in prefix", "  - name: x\n    pathPrefix: /a/{id}\n    backend: b\n", []string{"g.yaml:10", "apis[1].pathPrefix", "no parameters"}},
		{"percent", "  - name: x\n    path: /a%2fb\n    backend: b\n", []string{"g.yaml:10", "decoded"}},
		{"dot segment", "  - name: x\n    path: /a/../b\n    backend: b\n", []string{"g.yaml:10", `".." segment`}},
		{"empty segment", "  - name: x\n    pathPrefix: /a//b\n    backend: b\n", []string{"g.yaml:10", "empty segment"}},
		{"two kinds", "  - name: x\n    path: /a\n    pathRegex: /a\n    backend: b\n", []string{"g.yaml:9", "exactly one of path, pathPrefix or pathRegex"}},
		{"identical route", "  - name: x\n    path: /ok/{other}\n    methods: [GET]\n    backend: b\n", []string{"g.yaml:10", `same host and path as API "ok" (g.yaml:5)`, "GET", "never be chosen"}},
	}
	for _, tt := range tests {
		_, err := groupconf.Load(groupconf.Layer{Name: "g.yaml", YAML: []byte(head + tt.yaml)})
		if err == nil {
			t.Errorf("%s: got nil error, want one containing %q", tt.name, tt.want)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: got %v, want an error containing %q", tt.name, err, w)
			}
		}
	}

	good := head + "  - name: y\n    path: /ok/{id}\n    methods: [POST]\n    backend: b\n  - name: z\n    pathRegex: '/r/[a-z]+'\n    backend: b\n  - name: w\n    pathPrefix: /ok\n    backend: b\n"
	cfg, err := groupconf.Load(groupconf.Layer{Name: "g.yaml", YAML: []byte(good)})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	tab, err := Compile(cfg.APIs)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	var p Params
	for _, c := range []struct{ method, path, want string }{{"GET", "/ok/1", "ok"}, {"POST", "/ok/1", "y"}, {"GET", "/r/abc", "z"}, {"GET", "/ok", "w"}} {
		r, err := tab.Match(c.method, "h", c.path, &p)
		if err != nil || r.Name != c.want {
			t.Errorf("Match(%s %s): got %v, %v, want %s", c.method, c.path, r, err, c.want)
		}
	}
}
