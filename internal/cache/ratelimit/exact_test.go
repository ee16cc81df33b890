package ratelimit

import (
	"strconv"
	"testing"
	"time"
)

// TestExactSimulated: in exact mode the group admits exactly the limit in
// a window, whichever instance the requests reach; an instance cut from
// the owner decides alone with its share.
func TestExactSimulated(t *testing.T) {
	const limit = 20
	s := newSim(t, 4, Spec{API: "a", Name: "default", Requests: limit, Window: time.Second, Exact: true}, time.Millisecond)
	s.clk.add(100 * time.Millisecond)
	got := 0
	for round := range 20 {
		for _, l := range s.lims {
			if l.Allow([]byte("client-1")).Allowed {
				got++
			}
		}
		_ = round
	}
	if got != limit {
		t.Errorf("80 requests over 4 instances: got %d allowed, want exactly %d", got, limit)
	}
	var remote int64
	for _, l := range s.lims {
		remote += l.Stats().ExactRemote
	}
	if remote == 0 {
		t.Error("no decision was asked of another instance")
	}
	// Cut the owner from everyone: the others see 3 of 4 and decide
	// alone at their share after the next tick; the owner alone, 1/4.
	kh := keyHash([]byte("client-1"))
	m := s.svcs[0].members.Load()
	own := owner(kh, m.live)
	for _, svc := range s.svcs {
		if svc.self != own {
			s.h.cutLink(own, svc.self)
		}
	}
	for _, svc := range s.svcs {
		svc.Tick()
	}
	s.clk.add(2 * time.Second) // a fresh window
	others := 0
	var ownerLim *Limiter
	for i, l := range s.lims {
		if s.svcs[i].self == own {
			ownerLim = l
			continue
		}
		for range limit {
			if l.Allow([]byte("client-1")).Allowed {
				others++
			}
		}
	}
	mine := 0
	for range limit {
		if ownerLim.Allow([]byte("client-1")).Allowed {
			mine++
		}
	}
	// The other side elects a new owner among its 3: 20×3/4 = 15.
	if others != 15 || mine != 5 {
		t.Errorf("partitioned 3 | 1: got %d and %d allowed, want 15 and 5", others, mine)
	}
}

func TestDecisionEncoding(t *testing.T) {
	d := Decision{Allowed: true, Limit: 10, Remaining: 3, Reset: 1500 * time.Millisecond, RetryAfter: 0}
	got, err := decodeDecision(encodeDecision(d))
	if err != nil || got != d {
		t.Errorf("round trip: got %+v, %v, want %+v", got, err, d)
	}
	for _, bad := range [][]byte{nil, {2}, {1, 0x80}} {
		if _, err := decodeDecision(bad); err == nil {
			t.Errorf("decodeDecision(%x): got no error", bad)
		}
	}
}

// TestExactUnknownLimiter: an owner without the limiter (another
// configuration) answers at once, and the asker decides alone.
func TestExactUnknownLimiter(t *testing.T) {
	s := newSim(t, 2, Spec{API: "a", Name: "default", Requests: 4, Window: time.Second, Exact: true}, time.Millisecond)
	s.svcs[1].Retain(nil) // instance-2 no longer has it
	live := s.svcs[0].members.Load().live
	key := ""
	for i := 0; key == "" && i < 1000; i++ {
		if k := "k" + strconv.Itoa(i); owner(keyHash([]byte(k)), live) == "instance-2" {
			key = k
		}
	}
	if key == "" {
		t.Fatal("no key of 1000 is owned by instance-2")
	}
	asker := s.lims[0]
	got := allowN(asker, key, 4)
	if st := asker.Stats(); st.ExactAlone != 4 || got != 2 {
		t.Errorf("got %d allowed, %d decided alone; want 2 (4/2 alone) and 4", got, st.ExactAlone)
	}
}
