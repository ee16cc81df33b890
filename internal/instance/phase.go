package instance

import "fmt"

// Phase is where an instance is in its life. Phases only move forward:
//
//	starting → serving → draining → closing → stopped
//
// draining happens only with zero-downtime shutdown enabled; Close and a
// cancelled Shutdown go straight to closing.
type Phase int32

const (
	PhaseStarting Phase = iota // New returned; Start not done yet
	PhaseServing               // every listener serves; /healthchecklb answers 200
	PhaseDraining              // shutdown began: /healthchecklb answers 503, everything else is served for the delay
	PhaseClosing               // listeners closing: in-flight requests finish, bounded by the drain timeout
	PhaseStopped               // everything closed; Wait returns
)

var phaseNames = [...]string{"starting", "serving", "draining", "closing", "stopped"}

func (p Phase) String() string {
	if p >= 0 && int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return fmt.Sprintf("Phase(%d)", int32(p))
}

// MarshalText encodes the phase as its name (in /status and logs).
func (p Phase) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText decodes a phase name, so that a Status can be read back
// (node managers, tests).
func (p *Phase) UnmarshalText(b []byte) error {
	for n, name := range phaseNames {
		if name == string(b) {
			*p = Phase(n)
			return nil
		}
	}
	return fmt.Errorf("unknown phase %q", b)
}
