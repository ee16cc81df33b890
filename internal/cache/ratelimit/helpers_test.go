package ratelimit

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"
)

// clock is an injectable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_800_000_000, 0)} } // on a window boundary for any whole-second window

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// hub is an in-memory bus between services, with a delivery delay and
// cuttable links: the deterministic stand-in for the cluster bus in the
// simulations (the real bus is in bus_test.go).
type hub struct {
	mu      sync.Mutex
	clk     *clock
	delay   time.Duration
	size    int
	nodes   map[string]*hubNode
	cut     map[string]bool // "a|b", both orders: the bus knows (Members)
	silent  map[string]bool // "a|b": messages dropped, the bus does not know
	pending []pendingMsg
}

type pendingMsg struct {
	at       time.Time
	from, to string
	subject  string
	data     []byte
}

type hubNode struct {
	h    *hub
	id   string
	subs map[string]func([]byte, func([]byte) error)
}

func newHub(clk *clock, size int, delay time.Duration) *hub {
	return &hub{clk: clk, size: size, delay: delay, nodes: map[string]*hubNode{}, cut: map[string]bool{}, silent: map[string]bool{}}
}

func (h *hub) node(id string) *hubNode {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := &hubNode{h: h, id: id, subs: map[string]func([]byte, func([]byte) error){}}
	h.nodes[id] = n
	return n
}

func (h *hub) cutLink(a, b string) {
	h.mu.Lock()
	h.cut[a+"|"+b], h.cut[b+"|"+a] = true, true
	h.mu.Unlock()
}

// silence drops the messages between a and b while the bus still counts
// them connected (a route that passes nothing).
func (h *hub) silence(a, b string) {
	h.mu.Lock()
	h.silent[a+"|"+b], h.silent[b+"|"+a] = true, true
	h.mu.Unlock()
}

func (h *hub) heal() {
	h.mu.Lock()
	h.cut = map[string]bool{}
	h.silent = map[string]bool{}
	h.mu.Unlock()
}

// deliver hands over the messages due by now.
func (h *hub) deliver() {
	now := h.clk.now()
	h.mu.Lock()
	var due []pendingMsg
	keep := h.pending[:0]
	for _, m := range h.pending {
		if !m.at.After(now) {
			due = append(due, m)
		} else {
			keep = append(keep, m)
		}
	}
	h.pending = keep
	h.mu.Unlock()
	for _, m := range due {
		h.mu.Lock()
		n := h.nodes[m.to]
		cut := h.cut[m.from+"|"+m.to] || h.silent[m.from+"|"+m.to]
		var fn func([]byte, func([]byte) error)
		if n != nil {
			fn = n.subs[m.subject]
		}
		h.mu.Unlock()
		if fn != nil && !cut {
			fn(m.data, nil)
		}
	}
}

func (n *hubNode) Publish(subject string, data []byte) error {
	h := n.h
	h.mu.Lock()
	defer h.mu.Unlock()
	at := h.clk.now().Add(h.delay)
	for id := range h.nodes {
		if id != n.id && !h.cut[n.id+"|"+id] {
			h.pending = append(h.pending, pendingMsg{at: at, from: n.id, to: id, subject: subject, data: slices.Clone(data)})
		}
	}
	return nil
}

func (n *hubNode) Subscribe(subject string, fn func([]byte, func([]byte) error)) func() {
	n.h.mu.Lock()
	n.subs[subject] = fn
	n.h.mu.Unlock()
	return func() {
		n.h.mu.Lock()
		delete(n.subs, subject)
		n.h.mu.Unlock()
	}
}

// Request is answered at once (the simulations count requests, not time).
func (n *hubNode) Request(_ context.Context, subject string, data []byte) ([]byte, error) {
	to := subject[strings.LastIndexByte(subject, '.')+1:]
	n.h.mu.Lock()
	t := n.h.nodes[to]
	cut := n.h.cut[n.id+"|"+to]
	var fn func([]byte, func([]byte) error)
	if t != nil {
		fn = t.subs[subject]
	}
	n.h.mu.Unlock()
	if fn == nil || cut {
		return nil, errors.New("no responders")
	}
	var answer []byte
	fn(data, func(b []byte) error { answer = b; return nil })
	if answer == nil {
		return nil, errors.New("no answer")
	}
	return answer, nil
}

func (n *hubNode) Members() ([]string, int) {
	n.h.mu.Lock()
	defer n.h.mu.Unlock()
	live := []string{n.id}
	for id := range n.h.nodes {
		if id != n.id && !n.h.cut[n.id+"|"+id] {
			live = append(live, id)
		}
	}
	return live, n.h.size
}
