package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// KPSChangedSubject prefixes the subject of a KPS change: a change of
// table T is announced on "gatehouse.kps.changed.T".
const KPSChangedSubject = "gatehouse.kps.changed"

// KPSChange announces that a row of the group's Key Property Store changed
// (inserted, updated or deleted): every instance forgets its cached look-up
// of it.
type KPSChange struct {
	Table string `json:"table"`
	// Key is the row's primary key: a string or an integer (int64 once
	// received); nil means any row of the table.
	Key any `json:"key,omitempty"`
	// At is when the change was announced (for the change-to-eviction
	// latency).
	At time.Time `json:"at"`
}

// PublishKPSChange announces c to the group's other instances (At is set
// when zero). It returns ErrNotRunning without a bus.
func (b *Bus) PublishKPSChange(c KPSChange) error {
	if c.Table == "" || strings.ContainsAny(c.Table, " \t\r\n*>") {
		return fmt.Errorf("announcing a KPS change: table %q is not a table alias", c.Table)
	}
	switch c.Key.(type) {
	case nil, string, int, int32, int64:
	default:
		return fmt.Errorf("announcing a KPS change: key of type %T (want a string or an integer)", c.Key)
	}
	if c.At.IsZero() {
		c.At = time.Now()
	}
	data, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("announcing a KPS change: %w", err)
	}
	return b.Publish(KPSChangedSubject+"."+c.Table, data)
}

// OnKPSChange calls fn for each KPS change another instance announces.
func (b *Bus) OnKPSChange(fn func(KPSChange)) (unsubscribe func()) {
	return b.Subscribe(KPSChangedSubject+".>", func(m Msg) {
		c, err := DecodeKPSChange(m.Data)
		if err != nil {
			b.log.Warn("cluster bus: a KPS change that does not decode", "subject", m.Subject, "error", err.Error())
			return
		}
		fn(c)
	})
}

// DecodeKPSChange reads a KPSChange: an integer key becomes an int64.
func DecodeKPSChange(data []byte) (KPSChange, error) {
	var raw struct {
		Table string          `json:"table"`
		Key   json.RawMessage `json:"key"`
		At    time.Time       `json:"at"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return KPSChange{}, err
	}
	if raw.Table == "" {
		return KPSChange{}, errors.New("no table")
	}
	c := KPSChange{Table: raw.Table, At: raw.At}
	if len(raw.Key) > 0 && !bytes.Equal(raw.Key, []byte("null")) {
		dec := json.NewDecoder(bytes.NewReader(raw.Key))
		dec.UseNumber()
		var k any
		if err := dec.Decode(&k); err != nil {
			return KPSChange{}, err
		}
		switch v := k.(type) {
		case string:
			c.Key = v
		case json.Number:
			n, err := v.Int64()
			if err != nil {
				return KPSChange{}, fmt.Errorf("key %s is not an integer", v)
			}
			c.Key = n
		default:
			return KPSChange{}, fmt.Errorf("key of JSON type %T (want a string or an integer)", k)
		}
	}
	return c, nil
}
