//go:build !race

package h1

// raceEnabled: see race_test.go.
const raceEnabled = false
