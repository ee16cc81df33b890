package groupconf

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"
)

// TestParsedLoadedTwice: layers parsed once load with different further
// layers, and no load sees another's layers.
func TestParsedLoadedTwice(t *testing.T) {
	group := Layer{Name: "group.yaml", YAML: []byte("traffic:\n  readTimeout: 5\nbackends:\n  - name: b\n    url: http://b.test:9000\napis:\n  - name: a\n    pathPrefix: /a\n    backend: b\n")}
	p, err := Parse(group)
	if err != nil {
		t.Fatal(err)
	}
	one, err := p.Load(Layer{Name: "one.yaml", YAML: []byte("traffic:\n  port: 9001\n")})
	if err != nil {
		t.Fatal(err)
	}
	two, err := p.Load(Layer{Name: "two.yaml", YAML: []byte("traffic:\n  address: 127.0.0.2\n")})
	if err != nil {
		t.Fatal(err)
	}
	alone, err := p.Load()
	if err != nil {
		t.Fatal(err)
	}
	if one.Traffic.Port != 9001 || one.Traffic.Address != "" || one.Traffic.ReadTimeout.D().Seconds() != 5 {
		t.Errorf("one: got port %d address %q readTimeout %v", one.Traffic.Port, one.Traffic.Address, one.Traffic.ReadTimeout.D())
	}
	if two.Traffic.Port != Defaults().Traffic.Port || two.Traffic.Address != "127.0.0.2" || two.Traffic.ReadTimeout.D().Seconds() != 5 {
		t.Errorf("two: got port %d address %q (one's layer leaked?)", two.Traffic.Port, two.Traffic.Address)
	}
	if alone.Traffic.Port != Defaults().Traffic.Port || alone.Traffic.Address != "" || len(alone.APIs) != 1 {
		t.Errorf("alone: got %+v", alone.Traffic)
	}
	if o := two.Origin("traffic.address"); o.File != "two.yaml" {
		t.Errorf("origin of traffic.address: got %+v", o)
	}
	// A bad further layer is its own error; the parsed layers still load.
	if _, err := p.Load(Layer{Name: "bad.yaml", YAML: []byte("traffic:\n  prot: 1\n")}); err == nil || !strings.Contains(err.Error(), "bad.yaml:2") {
		t.Errorf("bad layer: got %v", err)
	}
	if _, err := p.Load(); err != nil {
		t.Errorf("after a bad layer: %v", err)
	}
}

// TestMaxValues: a configuration too large to parse cheaply is refused
// before it is parsed, counting every layer.
func TestMaxValues(t *testing.T) {
	long := "traffic:\n  trustedProxies:\n" + strings.Repeat("    - 10.0.0.1\n", MaxValues/4)
	_, err := Load(Layer{Name: "group.yaml", YAML: []byte(long)})
	if err == nil || !strings.Contains(err.Error(), "over the limit of 100000") || !strings.Contains(err.Error(), "group.yaml") {
		t.Fatalf("a long list: got %v", err)
	}
	half := "traffic:\n  trustedProxies:\n" + strings.Repeat("    - 10.0.0.1\n", MaxValues/8+100)
	if _, err := Load(Layer{Name: "group.yaml", YAML: []byte(half)}); err != nil {
		t.Fatalf("half the limit: %v", err)
	}
	_, err = Load(Layer{Name: "group.yaml", YAML: []byte(half)}, Layer{Name: "more.yaml", YAML: []byte(half)})
	if err == nil || !strings.Contains(err.Error(), "more.yaml") || !strings.Contains(err.Error(), "all files together") {
		t.Fatalf("two halves: got %v", err)
	}
	flow := "traffic:\n  trustedProxies: [" + strings.Repeat("10.0.0.1,", MaxValues/2) + "10.0.0.1]\n"
	if got := EstimateValues([]byte(half)); got < MaxValues/2 || got > MaxValues/2+1000 {
		t.Errorf("estimate of half: got %d", got)
	}
	if _, err := Load(Layer{Name: "group.yaml", YAML: []byte(flow)}); err == nil || !strings.Contains(err.Error(), "over the limit") {
		t.Fatalf("a long flow list on one line: got %v", err)
	}
}

func countNodes(n *yaml.Node) int {
	c := 1
	for _, k := range n.Content {
		c += countNodes(k)
	}
	return c
}

// FuzzEstimateValues: the estimate never counts fewer values than the YAML
// holds (the bound the memory limit rests on).
func FuzzEstimateValues(f *testing.F) {
	for _, s := range []string{"a: 1\n", "{a: 1, b: [1, 2, {c: d}]}", "- a\n- b\n- [c, d]\n", "a:\n  - {x: 1, y: 2}\n  - z\n", "[[[[]]]]", "k: v", "? a\n: b\n", "a: |\n  text\n  more\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var n yaml.Node
		if yaml.Unmarshal(data, &n) != nil {
			return
		}
		if got, est := countNodes(&n), EstimateValues(data); got > est {
			t.Fatalf("%q: %d values, estimated %d", data, got, est)
		}
	})
}
