//go:build race

package maildir

// raceEnabled: the tests run under the race detector, which slows some
// code paths far more than others; the timing guards skip then.
const raceEnabled = true
