package groupconf

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"go.yaml.in/yaml/v3"
)

// LoadInstance loads the configuration of an instance from its install
// directory: defaults, group.yaml, instance.yaml, then props (-D).
func LoadInstance(h home.Home, groupID, instanceID string, props map[string]string, order []string) (*Config, error) {
	g, err := FileLayer(h.GroupConfFile(groupID))
	if err != nil {
		return nil, err
	}
	i, err := FileLayer(h.InstanceConfFile(groupID, instanceID))
	if err != nil {
		return nil, err
	}
	layers := []Layer{g, i}
	if len(props) > 0 {
		layers = append(layers, Layer{Name: "-D", Properties: props, Order: order})
	}
	return Load(layers...)
}

// SetKeys sets dotted single-value keys (e.g. "traffic.port") in the YAML file
// at path, keeping its comments and other keys, creating it when missing. The
// new file is checked as a layer before it atomically replaces the old one.
func SetKeys(path string, values map[string]string, order []string, header string) error {
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	var doc yaml.Node
	if len(bytes.TrimSpace(data)) > 0 {
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return &Error{Origin: Origin{File: path, Line: yamlErrLine(err)}, Msg: cleanYAMLError(err)}
		}
	}
	if doc.Kind == 0 {
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}, HeadComment: header}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return &Error{Origin: Origin{File: path, Line: root.Line}, Msg: "want a mapping of keys at the top"}
	}
	if len(order) == 0 {
		for k := range values {
			order = append(order, k)
		}
	}
	st := reflect.TypeOf(Settings{})
	for _, key := range order {
		// Reuse the -D checks for the key's shape.
		if _, err := propertiesNode(Layer{Name: path, Properties: map[string]string{key: values[key]}, Order: []string{key}}, st); err != nil {
			return err
		}
		node := root
		parts := strings.Split(key, ".")
		for _, p := range parts[:len(parts)-1] {
			child := getChild(node, p)
			if child == nil || child.Kind != yaml.MappingNode {
				child = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
				setChild(node, p, child)
			}
			node = child
		}
		last := parts[len(parts)-1]
		if old := getChild(node, last); old != nil && old.Kind == yaml.ScalarNode {
			old.Value, old.Tag, old.Style = values[key], "", 0
		} else {
			setChild(node, last, &yaml.Node{Kind: yaml.ScalarNode, Value: values[key]})
		}
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", path, err)
	}
	if _, err := parseLayer(Layer{Name: path, YAML: out}, st); err != nil {
		return err
	}
	return home.WriteFileAtomic(path, out, 0o644)
}

// KeyDoc documents one configuration key.
type KeyDoc struct {
	Key     string
	Type    string
	Default string
	Layer   string
	Doc     string
}

// Keys lists every configuration key with its type, default and
// documentation, in schema order. List items appear as "apis[].path".
func Keys() []KeyDoc {
	var out []KeyDoc
	walkKeys(reflect.TypeOf(Settings{}), reflect.ValueOf(Defaults()), "", "", &out)
	return out
}

func walkKeys(t reflect.Type, v reflect.Value, prefix, layer string, out *[]KeyDoc) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		key := joinKey(prefix, tagName(f))
		l := layer
		if fl := f.Tag.Get("layer"); fl != "" {
			l = fl
		}
		var fv reflect.Value
		if v.IsValid() {
			fv = v.Field(i)
		}
		switch {
		case f.Type.Kind() == reflect.Struct && !isLeafType(f.Type):
			walkKeys(f.Type, fv, key, l, out)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			*out = append(*out, KeyDoc{Key: key, Type: "list", Default: "[]", Layer: l, Doc: f.Tag.Get("doc")})
			walkKeys(f.Type.Elem(), itemDefaults[f.Type.Elem()], key+"[]", l, out)
		default:
			d := ""
			if fv.IsValid() {
				d = fmtDefault(fv)
			}
			*out = append(*out, KeyDoc{Key: key, Type: typeName(f.Type), Default: d, Layer: l, Doc: f.Tag.Get("doc")})
		}
	}
}

// itemDefaults are the defaults of list items that have them.
var itemDefaults = map[reflect.Type]reflect.Value{
	reflect.TypeOf(Backend{}):    reflect.ValueOf(BackendDefaults()),
	reflect.TypeOf(RemoteHost{}): reflect.ValueOf(RemoteHostDefaults()),
}

func typeName(t reflect.Type) string {
	switch {
	case t == durationType:
		return "duration"
	case t.Kind() == reflect.Slice:
		return "list of " + typeName(t.Elem())
	}
	return t.Kind().String()
}

func fmtDefault(v reflect.Value) string {
	if v.Type() == durationType {
		return Duration(v.Int()).String()
	}
	if v.Kind() == reflect.String {
		if v.String() == "" {
			return `""`
		}
		return v.String()
	}
	return fmt.Sprint(v.Interface())
}
