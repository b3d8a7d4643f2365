//go:build !race

package pop3server

const raceEnabled = false
