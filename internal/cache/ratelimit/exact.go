package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"time"
)

// Exact mode: the key's owner, chosen by rendezvous hashing over the live
// instances, holds the counter; the others ask it. A request the owner
// does not answer within Spec.Timeout is decided here alone, against this
// instance's share of the limit (limit × live / size), on a counter of its
// own.

// owner is the live instance with the highest weight for key hash kh.
func owner(kh [16]byte, live []string) string {
	var best string
	var bestW uint64
	for _, id := range live {
		h := sha256.New()
		h.Write(kh[:])
		h.Write([]byte(id))
		w := binary.BigEndian.Uint64(h.Sum(nil))
		if best == "" || w > bestW {
			best, bestW = id, w
		}
	}
	return best
}

func (l *Limiter) allowExact(key []byte, now time.Time) Decision {
	m := l.svc.members.Load()
	kh := keyHash(key)
	if len(m.live) > 1 && l.svc.tr() != nil {
		if o := owner(kh, m.live); o != l.svc.self {
			d, err := l.askOwner(o, kh)
			if err == nil {
				l.exactRemote.Add(1)
				if d.Allowed {
					l.allowed.Add(1)
				} else {
					l.limited.Add(1)
				}
				return d
			}
			l.exactFallback.Add(1)
			// Alone, with this instance's share: the owner may be on the
			// other side of a partition not seen yet.
			share := &members{gen: m.gen, live: []string{l.svc.self}, set: m.set, size: max(m.size, len(m.live))}
			return l.takeLocal(kh, now, share, true)
		}
	}
	return l.takeLocal(kh, now, m, true)
}

// takeLocal counts one request of key hash kh on this instance's counter,
// against the limit in force with view m.
func (l *Limiter) takeLocal(kh [16]byte, now time.Time, m *members, count bool) Decision {
	e, _ := l.byHash(kh, true)
	if e == nil {
		l.overflowed.Add(1)
		e = l.getOverflow()
	}
	l.touch(e)
	idx, frac := l.at(now)
	e.mu.Lock()
	defer e.mu.Unlock()
	if old := e.idx.Load(); old < idx {
		if old == idx-1 {
			e.p.Store(e.c.Load())
		} else {
			e.p.Store(0)
		}
		e.c.Store(0)
		e.idx.Store(idx)
	}
	e.tried.Add(1)
	limit := l.limitFor(m)
	used := float64(e.c.Load()) + float64(e.p.Load())*(1-frac)
	if used+1 > float64(limit) {
		if count {
			l.limited.Add(1)
		}
		return Decision{Limit: limit, Reset: l.reset(now),
			RetryAfter: retryAfter(float64(limit), float64(e.c.Load()), float64(e.p.Load()), frac, time.Duration(l.window))}
	}
	e.c.Add(1)
	if count {
		l.allowed.Add(1)
	}
	return Decision{Allowed: true, Limit: limit, Remaining: max(0, int64(float64(limit)-used-1)), Reset: l.reset(now)}
}

// exact-mode wire format: request = limiter id (8) + key hash (16);
// answer = allowed (1 byte), then limit, remaining, reset and retry-after
// in milliseconds (uvarints).
func (l *Limiter) askOwner(owner string, kh [16]byte) (Decision, error) {
	req := make([]byte, 0, 24)
	req = append(req, l.id[:]...)
	req = append(req, kh[:]...)
	ctx, cancel := context.WithTimeout(context.Background(), l.spec.Timeout)
	defer cancel()
	resp, err := l.svc.tr().Request(ctx, ExactSubject+"."+owner, req)
	if err != nil {
		return Decision{}, err
	}
	return decodeDecision(resp)
}

func encodeDecision(d Decision) []byte {
	b := make([]byte, 0, 1+4*binary.MaxVarintLen64)
	if d.Allowed {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(d.Limit))
	b = binary.AppendUvarint(b, uint64(d.Remaining))
	b = binary.AppendUvarint(b, uint64(d.Reset.Milliseconds()))
	b = binary.AppendUvarint(b, uint64(d.RetryAfter.Milliseconds()))
	return b
}

var errBadAnswer = errors.New("rate limit: an exact-mode answer that does not decode")

// notMine is the answer of an instance that has no such limiter.
const notMine = 2

func decodeDecision(b []byte) (Decision, error) {
	if len(b) < 1 || b[0] > 1 {
		return Decision{}, errBadAnswer
	}
	d := Decision{Allowed: b[0] == 1}
	b = b[1:]
	var v [4]uint64
	for i := range v {
		x, k := binary.Uvarint(b)
		if k <= 0 || x > 1<<62 {
			return Decision{}, errBadAnswer
		}
		v[i] = x
		b = b[k:]
	}
	d.Limit, d.Remaining = int64(v[0]), int64(v[1])
	d.Reset, d.RetryAfter = time.Duration(v[2])*time.Millisecond, time.Duration(v[3])*time.Millisecond
	return d, nil
}

// serveExact answers another instance's exact-mode request: this instance
// is the key's owner as the asker sees the group.
func (s *Service) serveExact(data []byte, respond func([]byte) error) {
	if respond == nil || len(data) != 24 {
		return
	}
	var lid [8]byte
	var kh [16]byte
	copy(lid[:], data[:8])
	copy(kh[:], data[8:])
	s.mu.Lock()
	l := s.limiters[lid]
	s.mu.Unlock()
	if l == nil || !l.spec.Exact {
		// Not a limiter of this configuration (a deployment rolling
		// through the group): the asker decides alone at once.
		_ = respond([]byte{notMine})
		return
	}
	d := l.takeLocal(kh, s.now(), s.members.Load(), false)
	_ = respond(encodeDecision(d))
}
