package policy

import (
	"errors"
	"net/http"
	"slices"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/h1"
)

// recordingPolicy appends its name to the exchange's trail header and returns err.
type recordingPolicy struct {
	name string
	err  error
}

func (p recordingPolicy) Name() string { return p.name }

func (p recordingPolicy) Apply(ex *Exchange) error {
	ex.R.Header.AddString("Trail", p.name)
	return p.err
}

func TestChain(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name      string
		chain     Chain
		wantTrail []string
		wantErr   error
		wantStat  int
	}{
		{"empty", nil, nil, nil, 0},
		{"order kept", Chain{recordingPolicy{name: "a"}, recordingPolicy{name: "b"}, recordingPolicy{name: "c"}}, []string{"a", "b", "c"}, nil, 0},
		{"reject stops", Chain{recordingPolicy{name: "a"}, recordingPolicy{name: "key", err: Reject(http.StatusUnauthorized, "missing API key")}, recordingPolicy{name: "c"}}, []string{"a", "key"}, nil, http.StatusUnauthorized},
		{"handled stops", Chain{recordingPolicy{name: "cache", err: ErrHandled}, recordingPolicy{name: "c"}}, []string{"cache"}, ErrHandled, 0},
		{"internal error wrapped", Chain{recordingPolicy{name: "x", err: boom}, recordingPolicy{name: "c"}}, []string{"x"}, boom, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex := &Exchange{R: &h1.Request{Method: []byte("GET"), Path: []byte("/")}}
			err := tt.chain.Apply(ex)
			var got []string
			ex.R.Header.Each(func(name, value []byte) bool {
				if string(name) == "Trail" {
					got = append(got, string(value))
				}
				return true
			})
			if !slices.Equal(got, tt.wantTrail) {
				t.Errorf("trail: got %v, want %v", got, tt.wantTrail)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error: got %v, want %v", err, tt.wantErr)
			}
			var pe *Error
			if tt.wantStat != 0 {
				if !errors.As(err, &pe) {
					t.Fatalf("error: got %v, want a *Error", err)
				}
				if pe.Status != tt.wantStat || pe.Policy != "key" {
					t.Errorf("rejection: got %d from %q, want %d from %q", pe.Status, pe.Policy, tt.wantStat, "key")
				}
			}
			if tt.wantErr == nil && tt.wantStat == 0 && err != nil {
				t.Errorf("error: got %v, want nil", err)
			}
		})
	}
}

// hookPolicy records its hooks in a shared trail.
type hookPolicy struct {
	name  string
	trail *[]string
}

func (p hookPolicy) Name() string             { return p.name }
func (p hookPolicy) Apply(ex *Exchange) error { return nil }
func (p hookPolicy) EditResponse(ex *Exchange, status int, h *h1.Header) {
	*p.trail = append(*p.trail, p.name+".edit:"+string(h.Get("X-Seen")))
	h.SetString("X-Seen", "edited")
}

type observerPolicy struct{ hookPolicy }

func (p observerPolicy) ObserveResponse(ex *Exchange, status int, h *h1.Header) {
	*p.trail = append(*p.trail, p.name+".observe:"+string(h.Get("X-Seen")))
}

func (p observerPolicy) Finish(ex *Exchange, err error) {
	*p.trail = append(*p.trail, p.name+".finish")
}

// TestChainHooks: observers see the head before any editor changes it,
// whatever their place in the chain; Finish reaches only Finishers.
func TestChainHooks(t *testing.T) {
	var trail []string
	c := Chain{hookPolicy{"a", &trail}, observerPolicy{hookPolicy{"b", &trail}}, hookPolicy{"c", &trail}}
	var h h1.Header
	h.SetString("X-Seen", "backend")
	c.EditResponse(&Exchange{}, 200, &h)
	c.Finish(&Exchange{}, nil)
	want := []string{"b.observe:backend", "a.edit:backend", "b.edit:edited", "c.edit:edited", "b.finish"}
	if !slices.Equal(trail, want) {
		t.Errorf("got %v, want %v", trail, want)
	}
}
