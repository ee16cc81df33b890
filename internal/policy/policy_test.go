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
