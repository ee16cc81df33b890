package domain

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"strings"
	"unicode"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// Tags are an operator's labels on a gateway instance (menu 8 and 9):
// key=value pairs kept in the topology. Keys Gatehouse itself uses
// ("internal_…", "address") cannot be set or removed this way.

// tagKey is the form of a tag name.
var tagKey = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// MaxTagValue bounds a tag's value.
const MaxTagValue = 256

func checkTag(key, value string) error {
	switch {
	case !tagKey.MatchString(key):
		return fmt.Errorf("tag name %q: want 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit: %w", key, topology.ErrInvalid)
	case strings.HasPrefix(key, "internal_") || key == TagAddress:
		return fmt.Errorf("tag %q is Gatehouse's own and cannot be changed: %w", key, topology.ErrInvalid)
	case len(value) > MaxTagValue:
		return fmt.Errorf("tag value of %d bytes: at most %d: %w", len(value), MaxTagValue, topology.ErrInvalid)
	case strings.ContainsFunc(value, unicode.IsControl):
		return fmt.Errorf("tag value %q holds control characters: %w", value, topology.ErrInvalid)
	}
	return nil
}

// SetTag sets tag key to value on instance name of group (names or ids),
// or removes it when remove is set (an absent tag is an error then). The
// change is a topology change, in the audit log.
func SetTag(ctx context.Context, h home.Home, actor topology.Actor, group, name, key, value string, remove bool) error {
	action := "add tag"
	if remove {
		action = "delete tag"
	}
	_, err := audit.StoreFor(h).Update(ctx, actor, action, 0, func(t *topology.Topology) (string, error) {
		// Checked in here so that a refused attempt is in the audit log too.
		if err := checkTag(key, value); err != nil {
			return "", err
		}
		ref, err := t.FindInstance(group, name)
		if err != nil {
			return "", err
		}
		s := ref.Service
		if remove {
			if _, ok := s.Tags[key]; !ok {
				return "", fmt.Errorf("instance %q in group %q has no tag %q: %w", s.Name, ref.Group.Name, key, topology.ErrNotFound)
			}
			tags := maps.Clone(s.Tags)
			delete(tags, key)
			s.Tags = tags
			return fmt.Sprintf("tag %q of instance %q (%s) in group %q (%s)", key, s.Name, s.ID, ref.Group.Name, ref.Group.ID), nil
		}
		tags := maps.Clone(s.Tags)
		if tags == nil {
			tags = map[string]string{}
		}
		tags[key] = value
		s.Tags = tags
		return fmt.Sprintf("tag %s=%q on instance %q (%s) in group %q (%s)", key, value, s.Name, s.ID, ref.Group.Name, ref.Group.ID), nil
	})
	return err
}
