// Package metrics exposes what popbox serve does as Prometheus metrics, on
// an HTTP listener of its own ([metrics] listen, off by default), beside
// /healthz and /readyz for process supervisors and load balancers.
//
// The protocol packages do not import Prometheus: pop3server and lmtp each
// report through a small optional interface (pop3server.Events,
// lmtp.Events) that this package implements, and store latencies are
// measured by wrapping the store.Store or store.Admin both of them are
// given (Metrics.Store, Metrics.Admin), so that neither store
// implementation knows of it. Everything is registered in a registry
// owned by Metrics, never Prometheus's global one, so two servers in one
// process (tests) do not share counters.
//
// Label values come only from fixed sets known when New runs: the
// commands of pop3server's table, the login mechanisms it implements, the
// listeners and refusal reasons both servers define. Anything else a
// client could make up is counted under "unknown" (commands) or "other",
// so no client can grow the number of series. Every series is resolved
// once, in New; an event is a map lookup and an atomic add, without
// allocating, since some come once per POP3 command.
//
// Metrics and their labels:
//
//	popbox_connections_accepted_total{listener}
//	    Connections that became sessions. listener: pop3 (STLS), pop3s
//	    (implicit TLS), lmtp (socket and TCP together), other.
//	popbox_connections_refused_total{listener, reason}
//	    Connections answered "try again later" and closed. reason:
//	    max_connections (pop3.max_connections, lmtp.max_connections),
//	    per_address (pop3.max_connections_per_ip or
//	    max_unauthenticated_per_ip), other.
//	popbox_pop3_sessions
//	    POP3 sessions open now (gauge), logged in or not.
//	popbox_pop3_logins_total{mechanism, result}
//	    Logins. mechanism: USER (USER/PASS), PLAIN, LOGIN, SCRAM-SHA-256,
//	    SCRAM-SHA-256-PLUS, OAUTHBEARER, XOAUTH2, EXTERNAL, other. result:
//	    success (credentials right and maildrop open) or failure (bad
//	    credentials of any kind, unknown users included). A login refused
//	    for [IN-USE], LOGIN-DELAY or a backend failure is neither.
//	popbox_pop3_commands_total{command, result}
//	    Commands answered. command: CAPA, USER, PASS, AUTH, STLS, UTF8,
//	    QUIT, STAT, LIST, UIDL, RETR, TOP, DELE, NOOP, RSET, or unknown
//	    for any other line. result: ok (+OK) or err (-ERR).
//	popbox_pop3_sent_bytes_total{command}
//	    Message octets sent. command: RETR (wire size, as LIST reports
//	    it) or TOP (octets of the stored message sent).
//	popbox_pop3_messages_retrieved_total
//	    Messages sent whole by RETR.
//	popbox_pop3_messages_deleted_total
//	    Messages removed by QUIT (the UPDATE state, RFC 1939 §6).
//	popbox_pop3_maildrop_in_use_total
//	    Logins refused with -ERR [IN-USE]: another session held the
//	    maildrop lock. (The wait for a Maildir's index lock is internal to
//	    store/maildir and not exposed.)
//	popbox_lmtp_deliveries_total{result}
//	    Final replies to LMTP recipients after DATA, one per recipient.
//	    result: ok (250), temp (4xx), perm (5xx), quota (mailbox full,
//	    452 or 552 with lmtp.quota_permanent).
//	popbox_store_operation_duration_seconds{operation}
//	    Histogram of store call latencies. operation: open (lock and
//	    snapshot a maildrop at login), deliver (a message durable and
//	    indexed), commit (QUIT's deletions), message_open (opening one
//	    message for RETR or TOP, before streaming).
//	popbox_store_operation_errors_total{operation}
//	    Store calls that failed, with the same operation values. An
//	    [IN-USE] open and an over-quota delivery are outcomes, not
//	    errors, and are not counted here.
//	popbox_store_lock_wait_seconds{lock}
//	    Histogram of the time taken to get a mailbox's index lock in the
//	    Maildir store (lock: index), where deliveries, logins, QUIT and
//	    administrative commands queue. The PostgreSQL store's row locks
//	    wait inside the database and are not measured.
//	go_*, process_*
//	    The Go runtime and process collectors of client_golang.
//
// HTTP endpoints (Server):
//
//	/metrics  the registry in the Prometheus text or protobuf format.
//	/healthz  200 while the process runs.
//	/readyz   200 once the POP3 and LMTP listeners are up (SetReady) and
//	          the store and user database answer a cheap check; 503
//	          before that, when the check fails, and from the start of a
//	          shutdown, so that a load balancer stops sending clients
//	          while the sessions already open finish.
package metrics
