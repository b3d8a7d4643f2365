package pop3

// Extended response codes (RFC 2449 §8, RFC 3206), sent in brackets after
// "-ERR " so that clients can tell a busy mailbox from a bad password.
const (
	CodeInUse      = "IN-USE"      // RFC 2449 §8.1.2: maildrop locked by another session
	CodeLoginDelay = "LOGIN-DELAY" // RFC 2449 §8.1.1: logged in too recently
	CodeSysTemp    = "SYS/TEMP"    // RFC 3206 §4: temporary system problem, try later
	CodeSysPerm    = "SYS/PERM"    // RFC 3206 §4: permanent system problem
	CodeAuth       = "AUTH"        // RFC 3206 §5: credentials rejected
	CodeUTF8       = "UTF8"        // RFC 6856 §3: command needs UTF8 mode
)

// Capability names (RFC 2449 §6, RFC 2595 §4, RFC 6856 §2).
const (
	CapTop            = "TOP"
	CapUIDL           = "UIDL"
	CapUser           = "USER"
	CapSASL           = "SASL"
	CapRespCodes      = "RESP-CODES"
	CapAuthRespCode   = "AUTH-RESP-CODE"
	CapPipelining     = "PIPELINING"
	CapExpire         = "EXPIRE"
	CapLoginDelay     = "LOGIN-DELAY"
	CapImplementation = "IMPLEMENTATION"
	CapSTLS           = "STLS"
	CapUTF8           = "UTF8"
)

// Line limits from RFC 2449 §4.
const (
	MaxCommandLine  = 255 // octets including CRLF
	MaxResponseLine = 512 // octets including CRLF, for the first line of a reply
)
