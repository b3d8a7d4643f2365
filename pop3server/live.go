package pop3server

import "time"

// settings are what can change while the server runs. They are replaced
// whole (copy on write) and read through an atomic pointer, so that a
// reload never makes a session see half of an update, and the hot paths
// (accept, every read deadline) take no lock.
type settings struct {
	limits              Limits
	authFailureDelay    time.Duration
	authFailureDelayMax time.Duration
	loginDelay          time.Duration
}

// current returns the settings in force; init must have run.
func (s *Server) current() *settings { return s.live.Load() }

// limits returns the Limits in force, defaults filled in. The result is
// never modified: updates replace it.
func (s *Server) limits() *Limits { return &s.current().limits }

// update replaces the settings with a changed copy. The mutex only orders
// concurrent updaters; readers never take it.
func (s *Server) update(change func(*settings)) {
	s.init()
	s.liveMu.Lock()
	defer s.liveMu.Unlock()
	next := *s.current()
	change(&next)
	s.live.Store(&next)
}

// SetLimits replaces the server's Limits while it runs, zero fields taking
// their defaults as in Server.Limits. The caps on connections (total, per
// address, unauthenticated per address) apply from the next connection
// on; the per-session limits (line lengths, timeouts, bad commands,
// pre-login bytes) apply to sessions that start afterwards, while open
// sessions keep the ones they started with, so that a reload never cuts a
// session short in the middle of what it was allowed to do.
func (s *Server) SetLimits(l Limits) {
	l = l.withDefaults()
	s.update(func(st *settings) { st.limits = l })
}

// SetAuthFailureDelay replaces AuthFailureDelay and AuthFailureDelayMax
// (same meaning, zero for the defaults) for failures from now on.
func (s *Server) SetAuthFailureDelay(base, ceiling time.Duration) {
	base, ceiling = authDelayDefaults(base, ceiling)
	s.update(func(st *settings) { st.authFailureDelay, st.authFailureDelayMax = base, ceiling })
}

// SetLoginDelay replaces LoginDelay for logins and CAPA replies from now
// on.
func (s *Server) SetLoginDelay(d time.Duration) {
	s.update(func(st *settings) { st.loginDelay = d })
}

func authDelayDefaults(base, ceiling time.Duration) (time.Duration, time.Duration) {
	if base == 0 {
		base = 2 * time.Second
	}
	if ceiling == 0 {
		ceiling = 15 * time.Second
	}
	return base, ceiling
}
