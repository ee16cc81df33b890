package ratelimit

import (
	"context"

	"github.com/gatehouse-gw/gatehouse/internal/cluster"
)

// BusTransport adapts the group's cluster bus. The group's size is this
// instance and every peer the bus knows (wanted from the topology or the
// manual list, or connected); the live ones are this instance and the
// peers whose routes are up.
func BusTransport(b *cluster.Bus) Transport { return busTransport{b} }

type busTransport struct{ b *cluster.Bus }

func (t busTransport) Publish(subject string, data []byte) error { return t.b.Publish(subject, data) }

func (t busTransport) Subscribe(subject string, fn func([]byte, func([]byte) error)) func() {
	return t.b.Subscribe(subject, func(m cluster.Msg) {
		var respond func([]byte) error
		if m.Reply != "" {
			respond = m.Respond
		}
		fn(m.Data, respond)
	})
}

func (t busTransport) Request(ctx context.Context, subject string, data []byte) ([]byte, error) {
	return t.b.Request(ctx, subject, data)
}

func (t busTransport) Members() (live []string, size int) {
	st := t.b.Status()
	live = []string{st.InstanceID}
	for _, p := range st.Peers {
		if p.State == "up" && p.ID != "" {
			live = append(live, p.ID)
		}
	}
	return live, 1 + len(st.Peers)
}
