package instance

import (
	"context"
	"io"

	"github.com/gatehouse-gw/gatehouse/internal/apps"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/tlsticket"
)

// ticketShare is the rotator of the TLS session-ticket keys that the
// instance shares with its group through the group's store
// (traffic.tls.sessionTickets.shared), and the goroutine that runs it.
type ticketShare struct {
	conf     groupconf.KPS
	rotation groupconf.Duration
	rot      *tlsticket.Rotator
	cancel   context.CancelFunc
	done     chan struct{}
}

// ticketRotator returns the rotator for cfg's settings, starting it (and
// stopping the one of other settings) when there is none.
func (i *Instance) ticketRotator(cfg *groupconf.Config) *tlsticket.Rotator {
	i.ticketsMu.Lock()
	defer i.ticketsMu.Unlock()
	rotation := cfg.Traffic.TLS.SessionTickets.Rotation
	if t := i.tickets; t != nil && t.conf.Equal(cfg.KPS) && t.rotation == rotation {
		return t.rot
	}
	i.stopTicketsLocked()
	h, gid, kc := i.opts.Home, i.opts.GroupID, cfg.KPS
	log := i.logs.instance.With("component", "tls")
	rot := tlsticket.New(tlsticket.Options{
		Period: rotation.D(),
		Log:    log,
		Open: func(ctx context.Context) (kps.SharedSecrets, tlsticket.Sealer, io.Closer, error) {
			g, err := apps.OpenGroupSecrets(ctx, h, gid, kc, log.With("component", "kps"))
			if err != nil {
				return nil, nil, nil, err
			}
			if g.Keys != nil {
				return g, g.Keys, g, nil
			}
			return g, nil, g, nil
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	t := &ticketShare{conf: kc, rotation: rotation, rot: rot, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(t.done)
		rot.Run(ctx)
	}()
	i.tickets = t
	return rot
}

// stopTickets stops the rotator, closing its store.
func (i *Instance) stopTickets() {
	i.ticketsMu.Lock()
	defer i.ticketsMu.Unlock()
	i.stopTicketsLocked()
}

func (i *Instance) stopTicketsLocked() {
	if t := i.tickets; t != nil {
		t.cancel()
		<-t.done
		i.tickets = nil
	}
}
