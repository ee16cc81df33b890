//go:build race

package h1

// raceEnabled: the race detector doubles the runtime's stack guard, so a new
// goroutine's stack starts at 4 KiB and stack sizes are not the release
// build's.
const raceEnabled = true
