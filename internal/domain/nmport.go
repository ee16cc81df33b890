package domain

import (
	"bytes"
	"fmt"
	"os"
	"strconv"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
	"go.yaml.in/yaml/v4"
)

// Changing a node manager's port (managedomain --edit_host --nm_port,
// docs/managedomain.md): the node manager's own listener follows
// system/conf/nodemanager.yaml's port, and a joined host reaches the Admin
// Node Manager at its anmPort.

// SetNodeManagerPort writes port as the port of system/conf/nodemanager.yaml
// (atomically, keeping the file's comments and other settings) and returns
// the port it had.
func SetNodeManagerPort(h home.Home, port int) (old int, err error) {
	if err := checkPort("node manager port", port); err != nil {
		return 0, err
	}
	c, err := LoadNodeManagerConf(h)
	if err != nil {
		return 0, err
	}
	return c.Port, setNodeManagerConfInt(h, "port", port)
}

// SetANMPort writes port as the anmPort of system/conf/nodemanager.yaml: where
// this joined host reaches the Admin Node Manager.
func SetANMPort(h home.Home, port int) error {
	if err := checkPort("Admin Node Manager port", port); err != nil {
		return err
	}
	return setNodeManagerConfInt(h, "anmPort", port)
}

// setNodeManagerConfInt sets key of the top-level mapping of
// nodemanager.yaml to v, adding the key when it is missing, and writes the
// file atomically; the result must still load.
func setNodeManagerConfInt(h home.Home, key string, v int) error {
	path := h.NodeManagerConf()
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading node manager settings: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("parsing %s: %w", path, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return fmt.Errorf("%s: want a mapping of settings: %w", path, topology.ErrInvalid)
	}
	m := doc.Content[0]
	set := false
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			// In place: the value's comments stay.
			n := m.Content[i+1]
			n.Kind, n.Tag, n.Value, n.Style, n.Content = yaml.ScalarNode, "!!int", strconv.Itoa(v), 0, nil
			set = true
		}
	}
	if !set {
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(v)})
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return fmt.Errorf("encoding %s: %w", path, err)
	}
	enc.Close()
	if err := home.WriteFileAtomic(path, buf.Bytes(), 0o644); err != nil {
		return err
	}
	if _, err := LoadNodeManagerConf(h); err != nil {
		home.WriteFileAtomic(path, data, 0o644) // put the file back as it was
		return err
	}
	return nil
}
