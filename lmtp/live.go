package lmtp

// SetMaxConnections changes MaxConnections while the server runs (a
// configuration reload); 0 means DefaultMaxConnections. It counts from
// the next connection: connections already open over a lowered bound are
// not closed, since each may be in the middle of a delivery. The other
// bounds are handed to go-smtp, which reads them without synchronisation
// and announces them in LHLO, so they stay as they were at Serve.
func (s *Server) SetMaxConnections(n int) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lim.maxConns = orDefault(n, DefaultMaxConnections)
}
