package groupconf

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"go.yaml.in/yaml/v4"
)

// LoadInstance loads the configuration of an instance from its install
// directory: defaults, the group layer(s), instance.yaml, then props (-D).
//
// The group layers are those of the deployment archive named by the
// instance's conf/deployment.json when it exists (the archive's files in the
// order it lists them, group.yaml first, read from the installed archive
// directory groups/<groupID>/conf/archives/<id>/), and groups/<groupID>/conf/
// group.yaml otherwise. A deployment.json that is corrupt or names an archive
// that is missing, incomplete or altered is an error wrapping
// ErrBadDeployment that names the file: it never falls back to group.yaml,
// which would serve an older configuration without anybody noticing.
// Config.Deployment tells which archive was loaded (nil for group.yaml).
func LoadInstance(h home.Home, groupID, instanceID string, props map[string]string, order []string) (*Config, error) {
	dep, err := ReadDeployment(h, groupID, instanceID)
	if err != nil {
		return nil, err
	}
	return LoadInstanceWith(h, groupID, instanceID, dep, props, order)
}

// LoadInstanceWith is LoadInstance as if the instance's deployment.json held
// dep (nil: as if there were none, i.e. group.yaml). It lets a caller check an
// installed archive against an instance's settings before it points the
// instance at it.
func LoadInstanceWith(h home.Home, groupID, instanceID string, dep *Deployed, props map[string]string, order []string) (*Config, error) {
	var layers []Layer
	if dep == nil {
		g, err := FileLayer(h.GroupConfFile(groupID))
		if err != nil {
			return nil, err
		}
		layers = append(layers, g)
	} else {
		ls, err := archiveLayers(h, groupID, dep)
		if err != nil {
			return nil, err
		}
		layers = append(layers, ls...)
	}
	i, err := FileLayer(h.InstanceConfFile(groupID, instanceID))
	if err != nil {
		return nil, err
	}
	layers = append(layers, i)
	if len(props) > 0 {
		layers = append(layers, Layer{Name: "-D", Properties: props, Order: order})
	}
	cfg, err := Load(layers...)
	if err != nil {
		return nil, err
	}
	if dep != nil {
		d := *dep
		d.Files = slices.Clone(dep.Files)
		cfg.Deployment = &d
		// An edited group.yaml is not what runs: say so (the instance
		// logs it at each load), so that nobody is misled by a reload.
		if g, err := os.ReadFile(h.GroupConfFile(groupID)); err == nil && len(layers) > 0 && !bytes.Equal(g, layers[0].YAML) {
			cfg.GroupFileNotDeployed = h.GroupConfFile(groupID)
		}
	}
	return cfg, nil
}

// ErrBadDeployment is wrapped by the errors of a deployment.json that cannot
// be used: unreadable, corrupt, or naming an archive that is not installed
// whole.
var ErrBadDeployment = errors.New("unusable deployment")

// Deployed is an instance's conf/deployment.json: the deployment archive it
// runs. internal/deploy writes it; LoadInstance reads it.
type Deployed struct {
	Group      string    `json:"group"`
	Archive    int       `json:"archive"`  // archive id, 1, 2, ... per group
	Checksum   string    `json:"checksum"` // sha256 hex of the canonical tar.gz
	Files      []string  `json:"files"`    // the group layers in order, group.yaml first
	DeployedAt time.Time `json:"deployedAt"`
	DeployedBy string    `json:"deployedBy"`
	Comment    string    `json:"comment"`
}

// InstalledArchive is the part of an installed archive's archive.json that
// LoadInstance checks (internal/deploy writes the whole metadata): the
// archive's identity and the sha256 of each of its files.
type InstalledArchive struct {
	Group    string            `json:"group"`
	ID       int               `json:"id"`
	Checksum string            `json:"checksum"`
	Files    []string          `json:"files"`
	SHA256   map[string]string `json:"sha256"` // file name → sha256 hex of its content
}

// ArchiveFileName reports whether name is acceptable as the name of a file
// in a deployment archive: [A-Za-z0-9._-]+ ending in .yaml or .yml, at most
// 100 bytes (what a plain ustar header holds), not starting with a dot (no hidden files).
func ArchiveFileName(name string) bool {
	if name == "" || len(name) > 100 || name[0] == '.' || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
		return false
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ReadDeployment reads and checks the instance's deployment.json; it returns
// nil, nil when there is none.
func ReadDeployment(h home.Home, groupID, instanceID string) (*Deployed, error) {
	path := h.InstanceDeploymentFile(groupID, instanceID)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %w", ErrBadDeployment, path, err)
	}
	var d Deployed
	// Unknown fields are allowed: a newer node manager may write more than
	// an older instance knows. What is read is checked below.
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("%w: %s is corrupt: %w", ErrBadDeployment, path, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: %s is corrupt: data after the JSON object", ErrBadDeployment, path)
	}
	if err := d.check(groupID); err != nil {
		return nil, fmt.Errorf("%w: %s is corrupt: %w", ErrBadDeployment, path, err)
	}
	return &d, nil
}

func (d *Deployed) check(groupID string) error {
	switch {
	case d.Group != groupID:
		return fmt.Errorf("group %q, want %q", d.Group, groupID)
	case d.Archive < 1:
		return fmt.Errorf("archive %d, want an id from 1", d.Archive)
	case !isSHA256Hex(d.Checksum):
		return fmt.Errorf("checksum %q is not a sha256 in hex", d.Checksum)
	case len(d.Files) == 0 || d.Files[0] != "group.yaml":
		return fmt.Errorf("files %q: want group.yaml first", d.Files)
	}
	seen := map[string]bool{}
	for _, f := range d.Files {
		if !ArchiveFileName(f) || seen[f] {
			return fmt.Errorf("files: %q is not a file name of an archive, or is given twice", f)
		}
		seen[f] = true
	}
	return nil
}

func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// archiveLayers reads the layers of the installed archive dep names,
// checking it against its archive.json.
func archiveLayers(h home.Home, groupID string, dep *Deployed) ([]Layer, error) {
	if err := dep.check(groupID); err != nil {
		return nil, fmt.Errorf("%w: deployment of archive %d: %w", ErrBadDeployment, dep.Archive, err)
	}
	dir := h.GroupArchiveDir(groupID, dep.Archive)
	metaPath := filepath.Join(dir, "archive.json")
	data, err := os.ReadFile(metaPath)
	if err != nil {
		return nil, fmt.Errorf("%w: archive %d of group %s is not installed: %w", ErrBadDeployment, dep.Archive, groupID, err)
	}
	var ia InstalledArchive
	if err := json.Unmarshal(data, &ia); err != nil {
		return nil, fmt.Errorf("%w: %s is corrupt: %w", ErrBadDeployment, metaPath, err)
	}
	if ia.Group != groupID || ia.ID != dep.Archive || ia.Checksum != dep.Checksum {
		return nil, fmt.Errorf("%w: %s describes archive %d of group %q (checksum %.12s), not archive %d of group %q (checksum %.12s)",
			ErrBadDeployment, metaPath, ia.ID, ia.Group, ia.Checksum, dep.Archive, groupID, dep.Checksum)
	}
	if !slices.Equal(ia.Files, dep.Files) {
		return nil, fmt.Errorf("%w: %s lists files %q, the deployment %q", ErrBadDeployment, metaPath, ia.Files, dep.Files)
	}
	layers := make([]Layer, 0, len(dep.Files))
	for _, name := range dep.Files {
		p := filepath.Join(dir, name)
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("%w: archive %d of group %s is incomplete: %w", ErrBadDeployment, dep.Archive, groupID, err)
		}
		sum := sha256.Sum256(b)
		if want, ok := ia.SHA256[name]; !ok || hex.EncodeToString(sum[:]) != want {
			return nil, fmt.Errorf("%w: %s does not match the sha256 in %s: the installed archive was altered or is incomplete", ErrBadDeployment, p, metaPath)
		}
		layers = append(layers, Layer{Name: p, YAML: b})
	}
	return layers, nil
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
		case f.Type.Kind() == reflect.Pointer && f.Type.Elem().Kind() == reflect.Struct:
			// A policy's settings (apis[].policies[].cors): no defaults.
			*out = append(*out, KeyDoc{Key: key, Type: "mapping", Default: "", Layer: l, Doc: f.Tag.Get("doc")})
			walkKeys(f.Type.Elem(), reflect.Value{}, key, l, out)
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
	reflect.TypeOf(Cache{}):      reflect.ValueOf(CacheDefaults()),
}

func typeName(t reflect.Type) string {
	switch {
	case t == durationType:
		return "duration"
	case t.Kind() == reflect.Slice:
		return "list of " + typeName(t.Elem())
	case t.Kind() == reflect.Map:
		return "map of " + typeName(t.Key()) + " to " + typeName(t.Elem())
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
