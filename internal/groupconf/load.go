package groupconf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v4"
)

// Layer is one source of settings: a YAML document, or -D properties.
type Layer struct {
	Name       string            // file path shown in errors, or "-D"
	YAML       []byte            // a YAML mapping; ignored when Properties is set
	Properties map[string]string // dotted key → value, from startinstance -D
	// Order of the properties as given (for stable errors); optional.
	Order []string
}

// FileLayer reads path as a layer. A missing file is an empty layer.
func FileLayer(path string) (Layer, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Layer{Name: path}, nil
	}
	if err != nil {
		return Layer{}, fmt.Errorf("reading configuration: %w", err)
	}
	return Layer{Name: path, YAML: data}, nil
}

// Origin is where the value of a key came from.
type Origin struct {
	File string // file path, "-D" or "default"
	Line int
}

func (o Origin) String() string {
	if o.Line > 0 {
		return o.File + ":" + strconv.Itoa(o.Line)
	}
	return o.File
}

// Config is a loaded, validated configuration. Treat it as immutable.
type Config struct {
	Settings
	// Deployment is the deployment archive the group layers came from
	// (LoadInstance); nil when they came from group.yaml or from Load.
	Deployment *Deployed
	// GroupFileNotDeployed is the path of the group's conf/group.yaml when
	// the configuration came from a deployment archive and that file
	// differs from the archive's group.yaml: edits there do not run until
	// they are deployed (LoadInstance).
	GroupFileNotDeployed string
	origins              map[string]Origin
	// groupOnly: loaded by LoadGroup, without any instance's settings, so
	// the checks that depend on them are left to each instance's load.
	groupOnly bool
}

// Origin returns where key (dotted, e.g. "traffic.port" or "apis[0].path")
// was set; "default" when no layer set it.
func (c *Config) Origin(key string) Origin {
	if o, ok := c.origins[key]; ok {
		return o
	}
	return Origin{File: "default"}
}

// Error is a configuration error at a place.
type Error struct {
	Origin Origin
	Key    string
	Msg    string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Origin.String())
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Load merges the layers over the defaults, in order (later wins: pass the
// group file, then the instance file, then the -D properties) and validates
// the result. Maps merge key by key; a list given in a later layer replaces
// the earlier list whole.
func Load(layers ...Layer) (*Config, error) {
	p, err := Parse(layers...)
	if err != nil {
		return nil, err
	}
	return p.Load()
}

// MaxValues bounds the size of a configuration (all its layers together)
// in values: the scalars, lists and mappings of its YAML, estimated from
// its lines and indicators before anything is parsed (an estimate that
// never counts fewer than there are: FuzzEstimateValues). Parsing costs a
// few hundred bytes of memory per value, so this bounds the memory that
// validating any configuration takes (docs/deployment-archives.md); it
// admits some 20,000 lines of ordinary configuration.
const MaxValues = 100_000

// Parsed is configuration layers parsed and checked once, to be loaded
// with different further layers (the group's archive with each instance's
// settings) without parsing them again. Loading never changes the parsed
// layers, so a Parsed may be loaded many times, one load at a time or
// concurrently.
type Parsed struct {
	layers []parsedLayer
	values int // the estimate of MaxValues
}

type parsedLayer struct {
	name  string
	props bool
	doc   *yaml.Node // nil: an empty layer
}

// Parse parses and checks layers (see Load) without merging them.
func Parse(layers ...Layer) (*Parsed, error) {
	p := &Parsed{}
	if err := p.add(layers); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Parsed) add(layers []Layer) error {
	st := reflect.TypeOf(Settings{})
	for _, l := range layers {
		var doc *yaml.Node
		var err error
		if l.Properties != nil {
			doc, err = propertiesNode(l, st)
		} else {
			p.values += EstimateValues(l.YAML)
			if p.values > MaxValues {
				return &Error{Origin: Origin{File: l.Name}, Msg: fmt.Sprintf("the configuration holds about %d values (lines and list items, all files together), over the limit of %d: it is refused before it is parsed", p.values, MaxValues)}
			}
			doc, err = parseLayer(l, st)
		}
		if err != nil {
			return err
		}
		p.layers = append(p.layers, parsedLayer{name: l.Name, props: l.Properties != nil, doc: doc})
	}
	return nil
}

// EstimateValues is an upper bound of the YAML values in data. A value
// needs a line of its own or an indicator that starts it (a key's colon, a
// list item's dash, a complex key's question mark, a flow separator or
// bracket, an alias): at most two values per such byte, plus the document
// and its root. Hyphens and colons inside scalars count too, so it
// overcounts ordinary configuration about twice.
func EstimateValues(data []byte) int {
	n := 3
	for _, c := range data {
		switch c {
		case '\n', ':', '-', '?', ',', '[', '{', '*':
			n += 2
		}
	}
	return n
}

// Load merges the parsed layers and more (parsed now, not kept) over the
// defaults and validates the result, as the package-level Load does.
func (p *Parsed) Load(more ...Layer) (*Config, error) { return p.load(false, more) }

// LoadGroup is Load of a group's own layers, without an instance's
// settings: it validates everything but what only an instance's settings
// decide (a back end using the sample service, which an instance enables).
// Each instance's configuration is validated by Load with its settings.
func (p *Parsed) LoadGroup() (*Config, error) { return p.load(true, nil) }

func (p *Parsed) load(groupOnly bool, more []Layer) (*Config, error) {
	all := p
	if len(more) > 0 {
		all = &Parsed{layers: slices.Clip(p.layers), values: p.values}
		if err := all.add(more); err != nil {
			return nil, err
		}
	}
	merged := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	origins := map[string]Origin{}
	for _, l := range all.layers {
		if l.doc != nil {
			mergeMapping(merged, l.doc, "", l.name, l.props, origins)
		}
	}
	cfg := &Config{Settings: Defaults(), origins: origins, groupOnly: groupOnly}
	if err := merged.Decode(&cfg.Settings); err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	for i := range cfg.Backends {
		cfg.Backends[i] = withBackendDefaults(cfg.Backends[i], origins, i)
	}
	for i := range cfg.APIs {
		if _, set := origins[fmt.Sprintf("apis[%d].maxBodyBytes", i)]; !set {
			cfg.APIs[i].MaxBodyBytes = DefaultMaxBodyBytes
		}
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// parseLayer parses one YAML layer, checks every key against the schema and
// decodes it alone (so type errors name the right file). It returns the
// mapping node, or nil for an empty document.
func parseLayer(l Layer, st reflect.Type) (*yaml.Node, error) {
	if len(bytes.TrimSpace(l.YAML)) == 0 {
		return nil, nil
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(l.YAML))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) { // only comments
			return nil, nil
		}
		return nil, &Error{Origin: Origin{File: l.Name, Line: yamlErrLine(err)}, Msg: cleanYAMLError(err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &Error{Origin: Origin{File: l.Name, Line: extra.Line}, Msg: "more than one YAML document; a configuration file holds one"}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil, nil
		}
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, &Error{Origin: Origin{File: l.Name, Line: root.Line}, Msg: fmt.Sprintf("want a mapping of keys at the top, got a %s", kindName(root.Kind))}
	}
	if err := checkKeys(root, st, "", l.Name); err != nil {
		return nil, err
	}
	probe := Defaults()
	if err := root.Decode(&probe); err != nil {
		return nil, &Error{Origin: Origin{File: l.Name, Line: yamlErrLine(err)}, Msg: cleanYAMLError(err)}
	}
	return root, nil
}

var lineRE = regexp.MustCompile(`line (\d+)`)

func yamlErrLine(err error) int {
	m := lineRE.FindStringSubmatch(err.Error())
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func cleanYAMLError(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "yaml: unmarshal errors:\n")
	s = strings.TrimPrefix(s, "yaml: ")
	s = strings.TrimSpace(lineRE.ReplaceAllString(s, ""))
	s = strings.TrimPrefix(s, ": ")
	s = strings.ReplaceAll(s, "\n", "; ")
	return strings.TrimSpace(s)
}

// checkKeys walks n against type t and refuses keys that t does not have.
func checkKeys(n *yaml.Node, t reflect.Type, path, file string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case n.Kind == yaml.AliasNode:
		return &Error{Origin: Origin{File: file, Line: n.Line}, Key: path, Msg: "YAML aliases are not accepted in configuration"}
	case t.Kind() == reflect.Struct && !isLeafType(t):
		if n.Kind != yaml.MappingNode {
			if n.Tag == "!!null" {
				return nil
			}
			return &Error{Origin: Origin{File: file, Line: n.Line}, Key: path, Msg: fmt.Sprintf("want a mapping with keys %s, got a %s", strings.Join(yamlNames(t), ", "), kindName(n.Kind))}
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := joinKey(path, k.Value)
			if k.Kind != yaml.ScalarNode {
				return &Error{Origin: Origin{File: file, Line: k.Line}, Key: path, Msg: "keys must be plain names"}
			}
			if seen[k.Value] {
				return &Error{Origin: Origin{File: file, Line: k.Line}, Key: key, Msg: "key given twice"}
			}
			seen[k.Value] = true
			f, ok := fieldByYAML(t, k.Value)
			if !ok {
				where := "at the top level"
				if path != "" {
					where = "under " + path
				}
				msg := fmt.Sprintf("unknown key %q; accepted %s: %s", k.Value, where, strings.Join(yamlNames(t), ", "))
				if s := suggest(k.Value, yamlNames(t)); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				return &Error{Origin: Origin{File: file, Line: k.Line}, Key: key, Msg: msg}
			}
			if err := checkKeys(v, f.Type, key, file); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		if n.Kind != yaml.SequenceNode {
			if n.Tag == "!!null" {
				return nil
			}
			return &Error{Origin: Origin{File: file, Line: n.Line}, Key: path, Msg: fmt.Sprintf("want a list, got a %s", kindName(n.Kind))}
		}
		for i, item := range n.Content {
			if err := checkKeys(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), file); err != nil {
				return err
			}
		}
	}
	return nil
}

func joinKey(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

var durationType = reflect.TypeOf(Duration(0))

func isLeafType(t reflect.Type) bool {
	return t == durationType || (t.Kind() != reflect.Struct && !(t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct))
}

func fieldByYAML(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if tagName(f) == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func tagName(f reflect.StructField) string {
	n, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return n
}

func yamlNames(t reflect.Type) []string {
	var names []string
	for i := 0; i < t.NumField(); i++ {
		names = append(names, tagName(t.Field(i)))
	}
	return names
}

// Suggest returns the name of names closest to s (without case) when it is
// two edits away or less, else "": the did-you-mean of every refusal that
// lists accepted names (configuration keys, kpsadmin's verbs and names).
func Suggest(s string, names []string) string { return suggest(s, names) }

// suggest returns the accepted name closest to s when it is close enough.
func suggest(s string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		if d := editDistance(strings.ToLower(s), strings.ToLower(n)); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// propertiesNode turns -D properties into a mapping node, checking that each
// key names a single value (not a list or a section).
func propertiesNode(l Layer, st reflect.Type) (*yaml.Node, error) {
	keys := l.Order
	if len(keys) == 0 {
		for k := range l.Properties {
			keys = append(keys, k)
		}
		slices.Sort(keys)
	}
	root := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for _, key := range keys {
		val := l.Properties[key]
		t := st
		parts := strings.Split(key, ".")
		node := root
		for i, p := range parts {
			prefix := strings.Join(parts[:i], ".")
			f, ok := fieldByYAML(t, p)
			if !ok {
				where := "at the top level"
				if prefix != "" {
					where = "under " + prefix
				}
				msg := fmt.Sprintf("unknown property %q; accepted %s: %s", key, where, strings.Join(yamlNames(t), ", "))
				if s := suggest(p, yamlNames(t)); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", joinKey(prefix, s))
				}
				return nil, &Error{Origin: Origin{File: l.Name}, Msg: msg}
			}
			t = f.Type
			last := i == len(parts)-1
			if last {
				if !isLeafType(t) || t.Kind() == reflect.Slice {
					return nil, &Error{Origin: Origin{File: l.Name}, Key: key, Msg: "is a section or a list; set it in a YAML file, or set one of its keys (" + strings.Join(leafKeys(key, t), ", ") + ")"}
				}
				setChild(node, p, &yaml.Node{Kind: yaml.ScalarNode, Value: val})
				break
			}
			if !(t.Kind() == reflect.Struct && !isLeafType(t)) {
				return nil, &Error{Origin: Origin{File: l.Name}, Key: key, Msg: fmt.Sprintf("%s is a single value and has no key %q", joinKey(prefix, p), parts[i+1])}
			}
			child := getChild(node, p)
			if child == nil {
				child = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
				setChild(node, p, child)
			}
			node = child
		}
	}
	probe := Defaults()
	if err := root.Decode(&probe); err != nil {
		return nil, &Error{Origin: Origin{File: l.Name}, Msg: cleanYAMLError(err)}
	}
	return root, nil
}

func leafKeys(prefix string, t reflect.Type) []string {
	if t.Kind() == reflect.Slice {
		return []string{prefix + " (a list)"}
	}
	var out []string
	for i := 0; i < t.NumField(); i++ {
		out = append(out, prefix+"."+tagName(t.Field(i)))
	}
	return out
}

func getChild(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func setChild(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, v)
}

// mergeMapping overlays src onto dst, recording where each value came from.
func mergeMapping(dst, src *yaml.Node, path, file string, props bool, origins map[string]Origin) {
	for i := 0; i+1 < len(src.Content); i += 2 {
		k, v := src.Content[i], src.Content[i+1]
		key := joinKey(path, k.Value)
		if v.Kind == yaml.MappingNode {
			d := getChild(dst, k.Value)
			if d == nil || d.Kind != yaml.MappingNode {
				d = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
				setChild(dst, k.Value, d)
			}
			mergeMapping(d, v, key, file, props, origins)
			continue
		}
		setChild(dst, k.Value, v)
		// A replaced list forgets the origins of the earlier one.
		for ok := range origins {
			if strings.HasPrefix(ok, key+"[") {
				delete(origins, ok)
			}
		}
		o := Origin{File: file, Line: v.Line}
		if props {
			o = Origin{File: "-D " + key}
		}
		origins[key] = o
		if v.Kind == yaml.SequenceNode {
			recordSeq(v, key, file, origins)
		}
	}
}

func recordSeq(seq *yaml.Node, path, file string, origins map[string]Origin) {
	for i, item := range seq.Content {
		ip := fmt.Sprintf("%s[%d]", path, i)
		origins[ip] = Origin{File: file, Line: item.Line}
		recordNode(item, ip, file, origins)
	}
}

// recordNode records the origin of every key below n (mappings and lists
// nested in list items).
func recordNode(n *yaml.Node, path, file string, origins map[string]Origin) {
	switch n.Kind {
	case yaml.MappingNode:
		for j := 0; j+1 < len(n.Content); j += 2 {
			k := path + "." + n.Content[j].Value
			v := n.Content[j+1]
			origins[k] = Origin{File: file, Line: v.Line}
			recordNode(v, k, file, origins)
		}
	case yaml.SequenceNode:
		recordSeq(n, path, file, origins)
	}
}

func withBackendDefaults(b Backend, origins map[string]Origin, i int) Backend {
	d := BackendDefaults()
	set := func(k string) bool { _, ok := origins[fmt.Sprintf("backends[%d].%s", i, k)]; return ok }
	if !set("connectTimeout") {
		b.ConnectTimeout = d.ConnectTimeout
	}
	if !set("timeout") {
		b.Timeout = d.Timeout
	}
	if !set("maxIdleConns") {
		b.MaxIdleConns = d.MaxIdleConns
	}
	if !set("idleTimeout") {
		b.IdleTimeout = d.IdleTimeout
	}
	return b
}
