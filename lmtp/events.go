package lmtp

// Events receives counts of what a Server does, for monitoring (package
// metrics implements it with Prometheus, so this package does not depend
// on it). Server.Events nil means nothing is reported. The methods are
// called from every connection's goroutine concurrently: they must be
// safe for that, cheap, and must never block.
type Events interface {
	// ConnAccepted: a connection was accepted and is served.
	ConnAccepted()
	// ConnRefused: a connection was told 421 and closed, for reason
	// RefusedMaxConnections.
	ConnRefused(reason string)
	// Delivery: one recipient of a message got its final reply.
	Delivery(result DeliveryResult)
}

// RefusedMaxConnections is the reason given to Events.ConnRefused when the
// server has MaxConnections connections.
const RefusedMaxConnections = "max_connections"

// DeliveryResult classifies the reply one recipient got after DATA.
type DeliveryResult int

const (
	// Delivered: 250, the message is stored.
	Delivered DeliveryResult = iota
	// DeliveryTempFail: a 4xx reply other than a full mailbox; the MTA
	// retries.
	DeliveryTempFail
	// DeliveryPermFail: a 5xx reply other than a full mailbox (a message
	// too big, a line too long); the MTA bounces.
	DeliveryPermFail
	// DeliveryOverQuota: the mailbox is full (store.ErrQuota), 452 or,
	// with QuotaPermanent, 552.
	DeliveryOverQuota
)

// String names the result as metrics label it.
func (r DeliveryResult) String() string {
	switch r {
	case Delivered:
		return "ok"
	case DeliveryTempFail:
		return "temp"
	case DeliveryPermFail:
		return "perm"
	case DeliveryOverQuota:
		return "quota"
	}
	return "unknown"
}

// delivered reports one recipient's result to Events.
func (s *Server) delivered(r DeliveryResult) {
	if s.Events != nil {
		s.Events.Delivery(r)
	}
}

// failureResult classifies a failure reply: 5xx permanent, else temporary.
func failureResult(code int) DeliveryResult {
	if code >= 500 {
		return DeliveryPermFail
	}
	return DeliveryTempFail
}
