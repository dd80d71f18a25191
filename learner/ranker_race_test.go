//go:build race

package learner

// rkRace reports whether the race detector is on (tests shrink their data).
const rkRace = true
