package interop

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/popbox/popbox/internal/testcert"
	"github.com/popbox/popbox/internal/testjwt"
)

// authz is the authorization identity a row sends.
type authz int

const (
	authzNone  authz = iota
	authzSelf        // the user's own name: the same as none (RFC 4616 §2)
	authzOther       // another user's: proxy login, which the server refuses
)

var authzSuffix = [...]string{authzNone: "", authzSelf: "+authzid=self", authzOther: "+authzid=other"}

var allTLS = []string{"none", "stls", "pop3s"}

// saslMatrix is the table of TestSASLClients: a client (testdata/sasl-CLIENT.sh)
// logging in with one mechanism in each of some TLS modes. A mechanism the
// server comes to offer gets its rows appended here, and, in
// saslExchangeChecks, a check that its exchange really took place.
// Plaintext mechanisms (PLAIN, LOGIN, and the bearer tokens of OAUTHBEARER
// and XOAUTH2) run in mode "none" too: the server listens on loopback, where
// its default policy allows them. EXTERNAL needs TLS: the server offers it
// only to a client that presented a certificate it verified.
var saslMatrix = []struct {
	client string // testdata/sasl-CLIENT.sh
	mech   string // as in AUTH
	tls    []string
	authz  authz
	// lacks, if set, is why the client may be unable to do the mechanism:
	// its script then exits 77 and the row skips. Without it, exit 77 fails.
	lacks string
}{
	{client: "curl", mech: "PLAIN", tls: allTLS},
	{client: "curl", mech: "LOGIN", tls: allTLS},
	// curl has SCRAM only when built with libgsasl (curl >= 7.76 with
	// "gsasl" among the Features of curl --version). Debian's curl (7.88)
	// is not, so these rows skip there; they run wherever curl has it.
	{client: "curl", mech: "SCRAM-SHA-256", tls: allTLS,
		lacks: "curl is built without libgsasl, so it has no SCRAM"},
	{client: "curl", mech: "PLAIN", tls: []string{"stls", "pop3s"}, authz: authzSelf},
	{client: "curl", mech: "PLAIN", tls: []string{"stls", "pop3s"}, authz: authzOther},

	// sasl-poplib.py: the mechanisms written from the RFCs in Python.
	{client: "poplib", mech: "PLAIN", tls: allTLS},
	{client: "poplib", mech: "LOGIN", tls: allTLS},
	{client: "poplib", mech: "SCRAM-SHA-256", tls: allTLS},
	// -PLUS is offered on TLS only; the script binds with
	// tls-server-end-point (Python's ssl has no tls-exporter). Neither curl
	// nor mpop (1.4.18: "invalid argument scram-sha-256-plus for --auth")
	// can do -PLUS.
	{client: "poplib", mech: "SCRAM-SHA-256-PLUS", tls: []string{"stls", "pop3s"}},
	{client: "poplib", mech: "PLAIN", tls: []string{"stls"}, authz: authzSelf},
	{client: "poplib", mech: "PLAIN", tls: []string{"stls"}, authz: authzOther},
	{client: "poplib", mech: "SCRAM-SHA-256", tls: []string{"pop3s"}, authz: authzSelf},
	{client: "poplib", mech: "SCRAM-SHA-256", tls: []string{"pop3s"}, authz: authzOther},

	// mpop: mechanisms from GNU SASL. It has no authzid option.
	{client: "mpop", mech: "PLAIN", tls: allTLS},
	{client: "mpop", mech: "LOGIN", tls: allTLS},
	{client: "mpop", mech: "SCRAM-SHA-256", tls: allTLS},

	// OAuth bearer tokens (RFC 7628; Google's XOAUTH2) from saslIssuer; a
	// row's token is for its user. What makes the wrong token wrong
	// depends on the TLS mode (saslCreds.wrongToken).
	{client: "curl", mech: "OAUTHBEARER", tls: allTLS},
	// curl's --oauth2-bearer overrides AUTH=XOAUTH2 and sends OAUTHBEARER
	// when the server offers both (curl issue #10259, fixed in January 2024
	// by curl PR #12790): Debian 12's curl 7.88 skips these rows.
	{client: "curl", mech: "XOAUTH2", tls: allTLS,
		lacks: "this curl sends AUTH OAUTHBEARER even with --login-options AUTH=XOAUTH2 (curl issue #10259)"},
	{client: "poplib", mech: "OAUTHBEARER", tls: allTLS},
	{client: "poplib", mech: "XOAUTH2", tls: allTLS},
	// mpop (1.4.18) puts OAUTHBEARER's initial response on the AUTH line
	// however long: with a JWT that is over the 255 octets RFC 5034 §4
	// allows, so popbox accepts AUTH lines up to pop3.max_auth_line before
	// login. mpop also answers the error report with an empty line, not
	// %x01 (saslWant.emptyDummy). Its XOAUTH2 waits for the empty challenge.
	{client: "mpop", mech: "OAUTHBEARER", tls: allTLS},
	{client: "mpop", mech: "XOAUTH2", tls: allTLS},

	// EXTERNAL with a client certificate from saslCreds.ca naming the
	// row's user (client_cert_user = "cn"). curl's EXTERNAL message is its
	// user name, mpop's too, so both rows send the user as authzid. Without
	// a user name curl answers the empty challenge with "=" (RFC 5034 §4
	// defines "=" only as an initial response; popbox refuses it there as
	// bad base64) and mpop with its next command, so they have no row
	// without authzid; sasl-poplib.py sends "=" as the initial response.
	{client: "curl", mech: "EXTERNAL", tls: []string{"stls", "pop3s"}, authz: authzSelf},
	{client: "poplib", mech: "EXTERNAL", tls: []string{"stls", "pop3s"}, authz: authzSelf},
	{client: "poplib", mech: "EXTERNAL", tls: []string{"stls", "pop3s"}},
	{client: "mpop", mech: "EXTERNAL", tls: []string{"stls", "pop3s"}, authz: authzSelf},
}

var saslTools = map[string]tool{
	"curl":   {"curl", "curl"},
	"poplib": {"python3", "python3"},
	"mpop":   {"mpop", "mpop"},
}

// saslCase is one row of saslMatrix in one TLS mode, with a user of its own,
// so that the server's log lines of each row can be told apart and no two
// rows contend for a maildrop lock.
type saslCase struct {
	client, mech, tls string
	authz             authz
	lacks             string
	user              string
	source            string // the local address the client connects from ("": any)
}

func (c saslCase) name() string { return c.client + "/" + c.mech + authzSuffix[c.authz] + "/" + c.tls }

// saslAttempt is one run of a client script.
type saslAttempt struct {
	what    string // for messages
	secret  string // the password, or the bearer token; "" for EXTERNAL
	authzid string
	cert    string // whose client certificate the client presents ("": none)
	wantOK  bool
	// unoffered: the server must not offer the mechanism (EXTERNAL without
	// a certificate), so the client fails without sending AUTH.
	unoffered bool
	run       saslRun
}

// saslRun is what a client script did.
type saslRun struct {
	out  string
	code int
	err  error // the script could not run, or did not exit in time
}

const (
	saslPassword = "Sasl pw-7719" // with a space, which every client must send as is
	saslOther    = "sasl-other"   // the user whose name authzOther rows send
	// saslConcurrency bounds the client runs at a time. A refused login is
	// answered after the server's failure delay (2 s by default), so the
	// runs mostly sleep and overlap well, more than -parallel (GOMAXPROCS)
	// would allow. The delay doubles with the consecutive failures of an
	// address, up to 15 s, and the server refuses an address more than 10
	// connections not logged in (Limits.MaxUnauthenticatedPerIP): so each
	// row connects from an address of its own in 127/8 where it can
	// (Linux), and otherwise fewer runs overlap.
	saslConcurrency, saslConcurrencyOneAddress = 12, 6

	saslIssuer   = "https://issuer.popbox.test" // the "iss" the server accepts
	saslAudience = "popbox-interop"             // the "aud" it requires
)

// saslCreds are what the server trusts besides passwords: the token issuer
// of [oauth] and the client CA of [tls], and the client certificates.
type saslCreds struct {
	issuer *testjwt.Issuer // the issuer whose JWKS the server has
	forger *testjwt.Issuer // the same name and key ID, another key
	ca     testcert.Pair
	dir    string // the JWKS, the CA, and USER-cert.pem and USER-key.pem
}

func newSASLCreds(t *testing.T) saslCreds {
	t.Helper()
	var cr saslCreds
	var err error
	if cr.issuer, err = testjwt.New(saslIssuer); err != nil {
		t.Fatal(err)
	}
	if cr.forger, err = testjwt.New(saslIssuer); err != nil {
		t.Fatal(err)
	}
	if cr.ca, err = testcert.New("popbox interop client CA"); err != nil {
		t.Fatal(err)
	}
	cr.dir = t.TempDir()
	cr.write(t, "jwks.json", cr.issuer.JWKS())
	cr.write(t, "client-ca.pem", cr.ca.CertPEM)
	return cr
}

func (cr saslCreds) write(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(cr.dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// config is the server's configuration file: OAUTHBEARER and XOAUTH2 with
// tokens of cr.issuer for saslAudience, whose sub is the user; EXTERNAL for
// certificates of cr.ca, whose common name is the user.
func (cr saslCreds) config() string {
	return fmt.Sprintf(`[oauth]
jwks_file = %q
issuer = %q
audience = %q

[tls]
client_ca_file = %q
client_cert_user = "cn"
`, filepath.Join(cr.dir, "jwks.json"), saslIssuer, saslAudience, filepath.Join(cr.dir, "client-ca.pem"))
}

// addCert issues user a client certificate.
func (cr saslCreds) addCert(t *testing.T, user string) {
	t.Helper()
	p, err := testcert.NewClient(cr.ca, user, "")
	if err != nil {
		t.Fatal(err)
	}
	cr.write(t, user+"-cert.pem", p.CertPEM)
	cr.write(t, user+"-key.pem", p.KeyPEM)
}

// token is a valid token for user.
func (cr saslCreds) token(t *testing.T, user string) string {
	t.Helper()
	tok, err := cr.issuer.Token(user, saslAudience, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// wrongToken is the token of a row's refused attempt. What is wrong with it
// depends on the TLS mode, so that every client meets each kind: a forged
// signature (the issuer's name and key ID, another key), another audience,
// or another user's token while the client names the row's user.
func (cr saslCreds) wrongToken(t *testing.T, c saslCase) (what, token string) {
	t.Helper()
	var err error
	switch c.tls {
	case "none":
		what = "token signed by another key"
		token, err = cr.forger.Token(c.user, saslAudience, nil)
	case "stls":
		what = "token for another audience"
		token, err = cr.issuer.Token(c.user, "another-service", nil)
	default:
		what = saslOther + "'s token"
		token, err = cr.issuer.Token(saslOther, saslAudience, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	return what, token
}

// attempts are the runs of a row's client: a login that must succeed, then
// ones that must fail, each for a reason of its own.
func (cr saslCreds) attempts(t *testing.T, c saslCase) []saslAttempt {
	t.Helper()
	authzid := ""
	switch c.authz {
	case authzSelf:
		authzid = c.user
	case authzOther:
		authzid = saslOther
	}
	switch {
	case c.mech == "OAUTHBEARER" || c.mech == "XOAUTH2":
		what, wrong := cr.wrongToken(t, c)
		return []saslAttempt{
			{what: "valid token", secret: cr.token(t, c.user), wantOK: true},
			{what: what, secret: wrong},
		}
	case c.mech == "EXTERNAL":
		cr.addCert(t, c.user)
		as := []saslAttempt{{what: "own certificate", authzid: authzid, cert: c.user, wantOK: true}}
		if authzid == c.user {
			// Without an authzid the certificate alone decides: another
			// user's would log that user in.
			as = append(as, saslAttempt{what: saslOther + "'s certificate, authzid " + authzid,
				authzid: authzid, cert: saslOther})
		}
		return append(as, saslAttempt{what: "no certificate", authzid: authzid, unoffered: true})
	case c.authz == authzOther:
		return []saslAttempt{{what: "authzid " + authzid, secret: saslPassword, authzid: authzid}}
	}
	return []saslAttempt{
		{what: "right password", secret: saslPassword, authzid: authzid, wantOK: true},
		{what: "wrong password", secret: "wrong-" + saslPassword, authzid: authzid},
	}
}

// TestSASLClients logs in with each SASL mechanism the server offers, with
// each real client that has it (saslMatrix), in each TLS mode, and proves
// that the login used that mechanism and no other:
//
//   - the client's own protocol trace shows exactly one AUTH, for that
//     mechanism, no USER/PASS, and an exchange that is that mechanism's
//     (saslExchangeChecks: the PLAIN message, LOGIN's two challenges,
//     SCRAM's four messages);
//   - with the right password the client then counts the user's messages,
//     and the server logs msg=login for that user with mechanism= that
//     mechanism and tls= as the mode says, once;
//   - the same with a wrong password fails, and the server logs
//     msg="login failed" for that user with mechanism= that mechanism, once;
//   - PLAIN and SCRAM with the user's own name as authorization identity
//     succeed, and with another user's name fail (no proxy login);
//   - OAUTHBEARER and XOAUTH2 with a token for the user succeed, and with
//     a forged one, one for another audience or another user's fail;
//   - EXTERNAL with the user's client certificate succeeds, with another
//     user's fails, and without one it is not offered.
//
// One server serves every row: besides passwords it trusts a token issuer
// and a client CA (saslCreds), which the password rows do not use.
func TestSASLClients(t *testing.T) {
	creds := newSASLCreds(t)
	srv := startServerConfig(t, t.TempDir(), creds.config())
	msgs := testMessages()[:2]
	srv.addUser(t, saslOther, "Other-pw-5113")
	srv.deliver(t, saslOther, msgs[0])
	creds.addCert(t, saslOther)

	sources := loopbackSources(srv.plain)
	concurrency := saslConcurrency
	if !sources {
		concurrency = saslConcurrencyOneAddress
		t.Log("cannot connect from 127.0.0.2: all clients connect from one address, fewer at a time")
	}
	var cases []saslCase
	for _, row := range saslMatrix {
		for _, mode := range row.tls {
			c := saslCase{client: row.client, mech: row.mech, tls: mode, authz: row.authz, lacks: row.lacks}
			c.user = strings.ToLower(strings.NewReplacer("/", "-", "+", "-", "=", "-").Replace(c.name()))
			if sources {
				c.source = fmt.Sprintf("127.0.0.%d", 10+len(cases))
			}
			cases = append(cases, c)
		}
	}
	if len(cases) > 240 {
		t.Fatalf("%d rows: more than there are loopback addresses for", len(cases))
	}
	attempts := make([][]saslAttempt, len(cases))
	for i, c := range cases {
		srv.addUser(t, c.user, saslPassword)
		for _, m := range msgs {
			srv.deliver(t, c.user, m)
		}
		attempts[i] = creds.attempts(t, c)
	}

	// Run every client first, concurrently (see saslConcurrency), then
	// judge each row in its subtest. A row's attempts run in order: the
	// success first resets the address's failure count.
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for i, c := range cases {
		if _, err := exec.LookPath(saslTools[c.client].command); err != nil {
			continue // the subtest skips, or fails under CI
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			for j := range attempts[i] {
				a := &attempts[i][j]
				a.run = runSASLScript(t.Context(), srv, c, *a, creds.dir)
				if a.run.code == scriptSkip || a.run.err != nil {
					return
				}
			}
		})
	}
	wg.Wait()

	endPoint := serverEndPoint(t, srv.cafile)
	for i, c := range cases {
		t.Run(c.name(), func(t *testing.T) {
			requireTool(t, saslTools[c.client])
			for _, a := range attempts[i] {
				checkSASLAttempt(t, c, a, len(msgs), endPoint)
			}
			checkSASLServerLog(t, srv, c, attempts[i])
		})
	}
	// No row may log in as saslOther: its name, token and certificate
	// only ever go with another user's.
	for _, rec := range srv.log.records() {
		if rec["msg"] == "login" && rec["user"] == saslOther {
			t.Errorf("server log: a login of %s, who no row logs in as: %v", saslOther, rec)
		}
	}
}

// loopbackSources reports whether a client can connect to addr from
// another loopback address than 127.0.0.1, as on Linux, where all of
// 127.0.0.0/8 is local.
func loopbackSources(addr string) bool {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// serverEndPoint is the tls-server-end-point channel binding data (RFC 5929
// §4.1) of the server's certificate: its SHA-256 hash, as popbox's
// self-signed certificate is signed with ECDSA and SHA-256.
func serverEndPoint(t *testing.T, certFile string) []byte {
	t.Helper()
	data, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s: no PEM", certFile)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if cert.SignatureAlgorithm != x509.ECDSAWithSHA256 && cert.SignatureAlgorithm != x509.SHA256WithRSA {
		// The -PLUS rows fail; sasl-poplib.py would need the other hash.
		t.Errorf("%s is signed with %v: its tls-server-end-point hash is not SHA-256", certFile, cert.SignatureAlgorithm)
		return nil
	}
	sum := sha256.Sum256(cert.Raw)
	return sum[:]
}

// checkSASLAttempt judges one run of a client script by its exit status
// and its trace. endPoint is the server's tls-server-end-point binding.
func checkSASLAttempt(t *testing.T, c saslCase, a saslAttempt, delivered int, endPoint []byte) {
	t.Helper()
	what, r := a.what, a.run
	switch {
	case r.err != nil:
		t.Fatalf("%s: %v\n%s", what, r.err, r.out)
	case r.code == scriptSkip && c.lacks != "":
		t.Skipf("%s (the script: %s)", c.lacks, lastLine(r.out))
	case r.code == scriptSkip:
		t.Fatalf("%s: the script skipped a row that is not marked as one the client may lack:\n%s", what, r.out)
	case a.wantOK && r.code != 0:
		t.Fatalf("%s: the login or the count failed (exit %d):\n%s", what, r.code, r.out)
	case !a.wantOK && r.code == 0:
		t.Fatalf("%s: the client logged in; the server must refuse:\n%s", what, r.out)
	}

	if a.unoffered {
		if err := checkUnoffered(r.out, c.mech); err != nil {
			t.Errorf("%s: %v; output:\n%s", what, err, r.out)
		}
		return
	}
	tr := parseTrace(r.out)
	if a.secret != "" && c.mech != "PLAIN" && c.mech != "LOGIN" {
		// Only PLAIN and LOGIN send the secret itself, and only base64
		// encoded in the exchange.
		for _, l := range tr.lines {
			if l.client && strings.Contains(l.text, a.secret) {
				t.Errorf("%s: the client sent the secret in clear: %q", what, l.text)
			}
		}
	}
	ex, err := tr.exchange(c.mech, c.tls == "stls")
	if err != nil {
		t.Fatalf("%s: %v; output:\n%s", what, err, r.out)
	}
	switch {
	case a.wantOK && !strings.HasPrefix(ex.outcome, "+OK"):
		t.Errorf("%s: AUTH %s ended in %q, want +OK", what, c.mech, ex.outcome)
	case !a.wantOK && !strings.HasPrefix(ex.outcome, "-ERR [AUTH]"):
		t.Errorf("%s: AUTH %s ended in %q, want -ERR [AUTH]", what, c.mech, ex.outcome)
	}
	if check, ok := saslExchangeChecks[c.mech]; !ok {
		t.Errorf("no check in saslExchangeChecks of what a %s exchange is", c.mech)
	} else if err := check(ex, saslWant{c.user, a.secret, a.authzid, a.wantOK, endPoint, c.client == "mpop"}); err != nil {
		t.Errorf("%s: not a %s exchange: %v\n%s", what, c.mech, err, r.out)
	}
	if a.wantOK {
		if got := tr.count; got != strconv.Itoa(delivered) {
			t.Errorf("%s: the client counted %q messages, delivered %d", what, got, delivered)
		}
		t.Log(lastLine(r.out))
	}
}

// checkSASLServerLog checks the server's log lines for the row's user: one
// msg=login with the mechanism and one msg="session end" for each login, TLS
// or not as the row says, and one msg="login failed" with the mechanism for
// each refusal.
func checkSASLServerLog(t *testing.T, srv *server, c saslCase, attempts []saslAttempt) {
	t.Helper()
	wantOK, wantFailed := 0, 0
	for _, a := range attempts {
		switch {
		case a.wantOK:
			wantOK++
		case !a.unoffered:
			wantFailed++
		}
	}
	// A session's line comes when the server has closed the connection,
	// which may be just after the client has exited.
	var logins, ends, failed, other []map[string]string
	deadline := time.Now().Add(5 * time.Second)
	for {
		logins, ends, failed, other = nil, nil, nil, nil
		for _, rec := range srv.log.records() {
			switch {
			case rec["user"] != c.user:
				if rec["user"] == saslOther && rec["msg"] != "login failed" {
					other = append(other, rec)
				}
			case rec["msg"] == "login":
				logins = append(logins, rec)
			case rec["msg"] == "login failed":
				failed = append(failed, rec)
			case rec["msg"] == "session end":
				ends = append(ends, rec)
			}
		}
		if len(ends) >= wantOK || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}

	if len(logins) != wantOK || len(ends) != wantOK {
		t.Errorf(`server log: %d lines msg=login and %d msg="session end" with user=%s, want %d`,
			len(logins), len(ends), c.user, wantOK)
	}
	wantTLS := "TLS 1.x"
	if c.tls == "none" {
		wantTLS = "none"
	}
	for _, rec := range slices.Concat(logins, ends) {
		if tls := rec["tls"]; tls != wantTLS && (wantTLS == "none" || !strings.HasPrefix(tls, "TLS 1.")) {
			t.Errorf("server log: msg=%q user=%s tls=%q, want %s", rec["msg"], c.user, tls, wantTLS)
		}
	}
	for _, rec := range logins {
		if !strings.EqualFold(rec["mechanism"], c.mech) {
			t.Errorf("server log: login of %s with mechanism=%q, want %s", c.user, rec["mechanism"], c.mech)
		}
	}
	if len(failed) != wantFailed {
		t.Errorf(`server log: %d lines msg="login failed" user=%s, want %d`, len(failed), c.user, wantFailed)
		if c.authz == authzOther && c.mech == "PLAIN" {
			t.Errorf(`(is it logged with user=""? PLAIN's callback in pop3server/auth.go ` +
				"returned ErrAuthFailed for the authzid before it recorded the user name)")
		}
	}
	for _, rec := range failed {
		if !strings.EqualFold(rec["mechanism"], c.mech) {
			t.Errorf(`server log: login failed for %s with mechanism=%q, want %s`, c.user, rec["mechanism"], c.mech)
		}
		if c.source != "" && rec["remote_ip"] != c.source {
			t.Errorf(`server log: login failed for %s from remote_ip=%s, but the client connected from %s`,
				c.user, rec["remote_ip"], c.source)
		}
	}
	if c.authz == authzOther && len(other) > 0 {
		t.Errorf("server log: a session of %s, whose name was only the authzid: %v", saslOther, other)
	}
}

// saslTrace is what a sasl-*.sh script printed: the client's protocol trace
// ("C: " and "S: " lines) and its COUNT line.
type saslTrace struct {
	lines []traceLine
	count string
}

type traceLine struct {
	client bool
	text   string
}

func parseTrace(out string) saslTrace {
	var tr saslTrace
	for l := range strings.Lines(out) {
		l = strings.TrimRight(l, "\r\n")
		if text, ok := strings.CutPrefix(l, "C:"); ok {
			tr.lines = append(tr.lines, traceLine{true, strings.TrimSpace(text)})
		} else if text, ok := strings.CutPrefix(l, "S:"); ok {
			tr.lines = append(tr.lines, traceLine{false, strings.TrimSpace(text)})
		} else if n, ok := strings.CutPrefix(l, "COUNT "); ok {
			tr.count = n
		}
	}
	return tr
}

// checkUnoffered checks the output of a client script that was to find the
// mechanism not offered: the client sent no AUTH (nor USER, PASS, APOP),
// and the SASL capability the server listed lacks the mechanism. The
// capability is in curl's and mpop's traces; sasl-poplib.py's trace has no
// capability lines, but the script prints the list it found lacking.
func checkUnoffered(out, mech string) error {
	listed := strings.Contains(out, "lacks "+mech)
	for _, l := range parseTrace(out).lines {
		verb, _, _ := strings.Cut(l.text, " ")
		switch {
		case l.client && slices.Contains([]string{"AUTH", "USER", "PASS", "APOP"}, strings.ToUpper(verb)):
			return fmt.Errorf("the client sent %q, but the server should not offer %s", l.text, mech)
		case !l.client && verb == "SASL":
			if slices.ContainsFunc(strings.Fields(l.text)[1:], func(m string) bool { return strings.EqualFold(m, mech) }) {
				return fmt.Errorf("the server offered %s: %q", mech, l.text)
			}
			listed = true
		}
	}
	if !listed {
		return errors.New("the output shows no SASL capability the server listed")
	}
	return nil
}

// saslExchange is one AUTH exchange (RFC 5034 §4), base64 decoded: what the
// client sent, the initial response first, and the server's challenges. A
// leading empty challenge answered by the client (how a server asks for an
// initial response the client did not send) is left out, so that client[0]
// is the first message either way.
type saslExchange struct {
	client, server [][]byte
	initial        bool   // the client sent an initial response with AUTH
	outcome        string // the +OK or -ERR line that ended it
}

// exchange finds the one AUTH command of the trace and returns its exchange.
// It fails when the client sent anything but AUTH mech to log in (USER, PASS,
// APOP, a second AUTH), or, for stls, did not start TLS first.
func (tr saslTrace) exchange(mech string, stls bool) (saslExchange, error) {
	var ex saslExchange
	auth, sawSTLS := -1, false
	for i, l := range tr.lines {
		if !l.client {
			continue
		}
		verb, _, _ := strings.Cut(l.text, " ")
		switch strings.ToUpper(verb) {
		case "USER", "PASS", "APOP":
			return ex, fmt.Errorf("the client sent %s: not only AUTH %s", verb, mech)
		case "STLS":
			if auth >= 0 {
				return ex, errors.New("STLS after AUTH")
			}
			if i+1 >= len(tr.lines) || !strings.HasPrefix(tr.lines[i+1].text, "+OK") {
				return ex, errors.New("STLS not answered +OK")
			}
			sawSTLS = true
		case "AUTH":
			if auth >= 0 {
				return ex, fmt.Errorf("two AUTH commands: %q and %q", tr.lines[auth].text, l.text)
			}
			auth = i
		}
	}
	if auth < 0 {
		return ex, fmt.Errorf("no AUTH %s in the client's trace", mech)
	}
	if sawSTLS != stls {
		return ex, fmt.Errorf("STLS sent: %v, want %v", sawSTLS, stls)
	}
	f := strings.Fields(tr.lines[auth].text)
	if len(f) < 2 || len(f) > 3 || !strings.EqualFold(f[1], mech) {
		return ex, fmt.Errorf("the client sent %q, want AUTH %s", tr.lines[auth].text, mech)
	}
	decode := func(s string) ([]byte, error) {
		if s == "=" { // RFC 5034 §4: an empty initial response
			return []byte{}, nil
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("bad base64 %q: %v", s, err)
		}
		return b, nil
	}
	if len(f) == 3 {
		ir, err := decode(f[2])
		if err != nil {
			return ex, err
		}
		ex.client, ex.initial = append(ex.client, ir), true
	}
	waiting := false // a challenge is waiting for the client's answer
	for _, l := range tr.lines[auth+1:] {
		switch {
		case l.client && !waiting:
			return ex, fmt.Errorf("the client sent %q without a challenge", l.text)
		case l.client:
			b, err := decode(l.text)
			if err != nil {
				return ex, err
			}
			ex.client = append(ex.client, b)
			waiting = false
		case waiting:
			return ex, fmt.Errorf("server line %q while waiting for the client", l.text)
		case l.text == "+" || strings.HasPrefix(l.text, "+ "):
			b, err := decode(strings.TrimSpace(l.text[1:]))
			if err != nil {
				return ex, err
			}
			ex.server = append(ex.server, b)
			waiting = true
		case strings.HasPrefix(l.text, "+OK"), strings.HasPrefix(l.text, "-ERR"):
			ex.outcome = l.text
			if !ex.initial && len(ex.server) > 0 && len(ex.server[0]) == 0 {
				ex.server = ex.server[1:]
			}
			return ex, nil
		default:
			return ex, fmt.Errorf("server line %q in the AUTH exchange", l.text)
		}
	}
	return ex, errors.New("the trace ends within the AUTH exchange")
}

// saslWant is what an exchange should show.
type saslWant struct {
	user, secret, authzid string // secret: the password, or a token
	ok                    bool   // the login succeeds
	endPoint              []byte // the tls-server-end-point binding data
	// emptyDummy: the client is known to answer OAUTHBEARER's error report
	// with an empty response instead of RFC 7628 §3.2.3's %x01 (mpop
	// 1.4.18); the server fails the login either way.
	emptyDummy bool
}

// saslExchangeChecks checks that an exchange is the mechanism's.
var saslExchangeChecks = map[string]func(saslExchange, saslWant) error{
	// RFC 4616: one message, authzid NUL authcid NUL passwd.
	"PLAIN": func(ex saslExchange, w saslWant) error {
		want := w.authzid + "\x00" + w.user + "\x00" + w.secret
		if len(ex.client) != 1 || string(ex.client[0]) != want || len(ex.server) != 0 {
			return fmt.Errorf("client sent %q, server %q; want the client to send %q, the server nothing",
				ex.client, ex.server, want)
		}
		return nil
	},
	// draft-murchison-sasl-login-00: the server asks for the user name and
	// the password, the client sends each as is; the user name may come as
	// an initial response.
	"LOGIN": func(ex saslExchange, w saslWant) error {
		wantServer := []string{"Username:", "Password:"}
		if ex.initial {
			wantServer = wantServer[1:]
		}
		if !slices.Equal(strs(ex.client), []string{w.user, w.secret}) || !slices.Equal(strs(ex.server), wantServer) {
			return fmt.Errorf("client sent %q, server %q; want %q and %q",
				ex.client, ex.server, []string{w.user, w.secret}, wantServer)
		}
		return nil
	},
	"SCRAM-SHA-256":      func(ex saslExchange, w saslWant) error { return checkSCRAM(ex, w, false) },
	"SCRAM-SHA-256-PLUS": func(ex saslExchange, w saslWant) error { return checkSCRAM(ex, w, true) },
	"OAUTHBEARER":        func(ex saslExchange, w saslWant) error { return checkOAuth(ex, w, true) },
	"XOAUTH2":            func(ex saslExchange, w saslWant) error { return checkOAuth(ex, w, false) },
	// RFC 4422 Appendix A: one message, the authorization identity (empty
	// for the one the certificate establishes), as the initial response or
	// after an empty challenge; nothing from the server.
	"EXTERNAL": func(ex saslExchange, w saslWant) error {
		if len(ex.client) != 1 || string(ex.client[0]) != w.authzid || len(ex.server) != 0 {
			return fmt.Errorf("client sent %q, server %q; want the client to send %q, the server nothing",
				ex.client, ex.server, w.authzid)
		}
		return nil
	},
}

// checkOAuth checks an OAUTHBEARER (RFC 7628 §3.1) or XOAUTH2 exchange. The
// client's message names the user, in OAUTHBEARER's GS2 header "n,a=USER,"
// (no channel binding) or XOAUTH2's "user=USER", and carries the token as
// "auth=Bearer TOKEN", in %x01-separated pairs ending in %x01 %x01;
// OAUTHBEARER may add host= and port=. A valid token ends the exchange. A
// refused one gets the JSON error report of RFC 7628 §3.2.2 as a
// challenge, which the client answers with the dummy response: %x01 for
// OAUTHBEARER, an empty one for XOAUTH2.
func checkOAuth(ex saslExchange, w saslWant, bearer bool) error {
	if len(ex.client) == 0 {
		return errors.New("no client message")
	}
	msg := string(ex.client[0])
	pairs, ok := strings.CutSuffix(msg, "\x01\x01")
	if bearer {
		gs2 := "n,a=" + w.user + ",\x01"
		pairs, ok = strings.CutPrefix(pairs, gs2)
		if !ok {
			return fmt.Errorf("message %q, want the GS2 header %q, pairs, and %%x01 %%x01", msg, gs2)
		}
	} else if !ok {
		return fmt.Errorf("message %q does not end in %%x01 %%x01", msg)
	}
	auth := "auth=Bearer " + w.secret
	kv := strings.Split(pairs, "\x01")
	switch {
	case !bearer && !slices.Equal(kv, []string{"user=" + w.user, auth}):
		return fmt.Errorf("message %q, want %q", msg, "user="+w.user+"\x01"+auth+"\x01\x01")
	case bearer && slices.Index(kv, auth) < 0:
		return fmt.Errorf("message %q has no %q", msg, auth)
	case bearer && slices.ContainsFunc(kv, func(p string) bool {
		k, _, _ := strings.Cut(p, "=")
		return p != auth && k != "host" && k != "port"
	}):
		return fmt.Errorf("message %q has pairs other than auth, host and port", msg)
	}
	if w.ok {
		if len(ex.client) != 1 || len(ex.server) != 0 {
			return fmt.Errorf("client sent %q, server %q: more than the client's message", ex.client, ex.server)
		}
		return nil
	}
	var report struct{ Status string }
	dummy := "\x01"
	if !bearer || w.emptyDummy {
		dummy = ""
	}
	switch {
	case len(ex.server) != 1:
		return fmt.Errorf("server sent %q after the message, want one error report", ex.server)
	case json.Unmarshal(ex.server[0], &report) != nil || report.Status == "" || report.Status == "success":
		return fmt.Errorf("server sent %q, want the JSON error report with an error status", ex.server[0])
	case len(ex.client) != 2 || string(ex.client[1]) != dummy:
		return fmt.Errorf("client answered the error report with %q, want %q", ex.client[1:], dummy)
	}
	return nil
}

func strs(bs [][]byte) []string {
	s := make([]string, len(bs))
	for i, b := range bs {
		s[i] = string(b)
	}
	return s
}

// checkSCRAM checks a SCRAM exchange (RFC 5802 §5, RFC 7677): client-first,
// server-first, client-final, and on success server-final with the server's
// signature, which the clients verify. Without plus the client must not bind
// to the channel ("n"); with plus it must (RFC 5802 §6), and for
// tls-server-end-point its binding data must be the server certificate's
// hash. A client-first naming another user as authzid may be refused at
// once; a wrong password can only be refused after client-final.
func checkSCRAM(ex saslExchange, w saslWant, plus bool) error {
	if len(ex.client) == 0 {
		return errors.New("no client-first message")
	}
	proxy := w.authzid != "" && w.authzid != w.user
	if len(ex.server) == 0 && !(proxy && !w.ok && len(ex.client) == 1) {
		return fmt.Errorf("client sent %q, server %q: no server-first", ex.client, ex.server)
	}
	first := string(ex.client[0])
	cbFlag, _, _ := strings.Cut(first, ",")
	wantFlag, cbData := "n", []byte(nil)
	if plus {
		wantFlag = "p=tls-server-end-point"
		switch cbFlag {
		case wantFlag:
			if cbData = w.endPoint; cbData == nil {
				return errors.New("the server certificate's tls-server-end-point hash is unknown")
			}
		case "p=tls-exporter": // RFC 9266: its data is the TLS session's secret
			wantFlag = cbFlag
		}
	}
	if cbFlag != wantFlag {
		return fmt.Errorf("client-first %q: channel binding flag %q, want %q", first, cbFlag, wantFlag)
	}
	wantGS2 := wantFlag + ",,"
	if w.authzid != "" {
		wantGS2 = wantFlag + ",a=" + w.authzid + ","
	}
	bare, found := strings.CutPrefix(first, wantGS2)
	nonce, hasNonce := strings.CutPrefix(bare, "n="+w.user+",r=")
	if !found || !hasNonce || nonce == "" || strings.Contains(nonce, ",") {
		return fmt.Errorf("client-first %q, want %sn=%s,r=NONCE", first, wantGS2, w.user)
	}
	if len(ex.server) == 0 {
		return nil // refused at once: proxy login
	}
	if len(ex.client) < 2 {
		return fmt.Errorf("client sent %q, server %q: no client-final", ex.client, ex.server)
	}
	sf := strings.Split(string(ex.server[0]), ",")
	if len(sf) < 3 || !strings.HasPrefix(sf[0], "r="+nonce) || len(sf[0]) <= len("r="+nonce) ||
		!strings.HasPrefix(sf[1], "s=") || !strings.HasPrefix(sf[2], "i=") {
		return fmt.Errorf("server-first %q, want r=%s...,s=SALT,i=N", ex.server[0], nonce)
	}
	if i, err := strconv.Atoi(sf[2][2:]); err != nil || i < 4096 {
		return fmt.Errorf("server-first %q: RFC 7677 wants at least 4096 iterations", ex.server[0])
	}
	cbind, rest, _ := strings.Cut(string(ex.client[1]), ",")
	gotCB, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(cbind, "c="))
	switch {
	case !strings.HasPrefix(cbind, "c=") || err != nil || !bytes.HasPrefix(gotCB, []byte(wantGS2)):
		return fmt.Errorf("client-final %q: c= is not the GS2 header %q and binding data", ex.client[1], wantGS2)
	case !plus && len(gotCB) != len(wantGS2):
		return fmt.Errorf("client-final %q: binding data without channel binding", ex.client[1])
	case plus && cbData != nil && !bytes.Equal(gotCB[len(wantGS2):], cbData):
		return fmt.Errorf("client-final %q: binding data %x, but the server certificate's hash is %x",
			ex.client[1], gotCB[len(wantGS2):], cbData)
	case plus && len(gotCB) == len(wantGS2):
		return fmt.Errorf("client-final %q: no binding data", ex.client[1])
	case !strings.HasPrefix(rest, sf[0]+",p="):
		return fmt.Errorf("client-final %q, want c=...,%s,p=PROOF", ex.client[1], sf[0])
	}
	switch {
	case w.ok && (len(ex.server) != 2 || !bytes.HasPrefix(ex.server[1], []byte("v="))):
		return fmt.Errorf("server sent %q after client-final, want server-final v=SIGNATURE", ex.server[1:])
	case w.ok && (len(ex.client) != 3 || len(ex.client[2]) != 0):
		return fmt.Errorf("client answered server-final with %q, want an empty response", ex.client[2:])
	case !w.ok && len(ex.server) > 1 && !bytes.HasPrefix(ex.server[1], []byte("e=")):
		return fmt.Errorf("a failed login got server-final %q", ex.server[1])
	}
	return nil
}

// records returns the server's log lines so far, parsed.
func (l *serverLog) records() []map[string]string {
	l.mu.Lock()
	text := l.buf.String()
	l.mu.Unlock()
	var recs []map[string]string
	for line := range strings.Lines(text) {
		recs = append(recs, parseLogLine(strings.TrimRight(line, "\n")))
	}
	return recs
}

// parseLogLine parses one line of slog's text format: key=value pairs, the
// value quoted (Go syntax) when it has a space, '=' or '"'.
func parseLogLine(line string) map[string]string {
	rec := map[string]string{}
	for {
		line = strings.TrimLeft(line, " ")
		k, rest, ok := strings.Cut(line, "=")
		if !ok || k == "" || strings.Contains(k, " ") {
			return rec
		}
		v := ""
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return rec
			}
			v, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			v, rest, _ = strings.Cut(rest, " ")
		}
		rec[k] = v
		line = rest
	}
}

func TestParseLogLine(t *testing.T) {
	got := parseLogLine(`time=2026-11-27T12:15:07.405Z level=INFO msg="login failed" remote=127.0.0.1:45436 ` +
		`user="a b=\"c\"" mechanism=SCRAM-SHA-256 tls="TLS 1.3" empty=""`)
	want := map[string]string{"time": "2026-11-27T12:15:07.405Z", "level": "INFO", "msg": "login failed",
		"remote": "127.0.0.1:45436", "user": `a b="c"`, "mechanism": "SCRAM-SHA-256", "tls": "TLS 1.3", "empty": ""}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("parseLogLine:\n got %v\nwant %v", got, want)
	}
}

// runSASLScript runs testdata/sasl-CLIENT.sh for one attempt of c, with the
// client certificates in certDir. Unlike runClient it may run outside the
// test's goroutine: it reports problems instead of failing the test.
func runSASLScript(ctx context.Context, srv *server, c saslCase, a saslAttempt, certDir string) saslRun {
	script, err := filepath.Abs(filepath.Join("testdata", "sasl-"+c.client+".sh"))
	if err != nil {
		return saslRun{err: err}
	}
	work, err := os.MkdirTemp("", "popbox-interop-sasl-")
	if err != nil {
		return saslRun{err: err}
	}
	defer os.RemoveAll(work)
	addr := srv.plain
	if c.tls == "pop3s" {
		addr = srv.tls
	}
	args := []string{script, "--host", "127.0.0.1", "--port", addr[strings.LastIndexByte(addr, ':')+1:],
		"--tls", c.tls, "--user", c.user, "--mech", c.mech,
		"--timeout", strconv.Itoa(int(scriptTimeout.Seconds()))}
	if c.tls != "none" {
		args = append(args, "--cafile", srv.cafile)
	}
	if a.authzid != "" {
		args = append(args, "--authzid", a.authzid)
	}
	if a.cert != "" {
		args = append(args, "--cert", filepath.Join(certDir, a.cert+"-cert.pem"),
			"--key", filepath.Join(certDir, a.cert+"-key.pem"))
	}
	if c.source != "" {
		args = append(args, "--source", c.source)
	}

	ctx, cancel := context.WithTimeout(ctx, clientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", args...)
	cmd.Env = append(os.Environ(), "TMPDIR="+work, "SASL_SECRET="+a.secret)
	// As in runClient: on timeout, kill the script's children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return saslRun{out: string(out), err: fmt.Errorf("sasl-%s.sh: no exit within %v", c.client, clientTimeout)}
	case errors.As(err, &exit):
		return saslRun{out: string(out), code: exit.ExitCode()}
	case err != nil:
		return saslRun{out: string(out), err: fmt.Errorf("sasl-%s.sh: %v", c.client, err)}
	}
	return saslRun{out: string(out)}
}

// TestSASLTraceExchange checks that the trace reading catches a client that
// falls back to another way of logging in.
func TestSASLTraceExchange(t *testing.T) {
	plain := "C: AUTH PLAIN\nS: + \nC: " + base64.StdEncoding.EncodeToString([]byte("\x00u\x00pw")) + "\n"
	for _, tc := range []struct {
		name, trace string
		stls        bool
		wantErr     string // "" for a PLAIN exchange that succeeded
	}{
		{"plain", plain + "S: +OK logged in\nC: STAT\n", false, ""},
		{"plain after STLS", "C: STLS\nS: +OK go\n" + plain + "S: +OK logged in\n", true, ""},
		{"no STLS", plain + "S: +OK logged in\n", true, "STLS sent: false"},
		{"fallback to USER", plain + "S: -ERR [AUTH] no\nC: USER u\nS: +OK\nC: PASS pw\nS: +OK\n", false, "USER"},
		{"second AUTH", plain + "S: -ERR [AUTH] no\nC: AUTH LOGIN\nS: + VXNlcm5hbWU6\n", false, "two AUTH"},
		{"other mechanism", "C: AUTH LOGIN\nS: + VXNlcm5hbWU6\nC: dQ==\nS: +OK\n", false, "want AUTH PLAIN"},
		{"unfinished", plain, false, "ends within"},
	} {
		ex, err := parseTrace(tc.trace).exchange("PLAIN", tc.stls)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.wantErr == "" && (!strings.HasPrefix(ex.outcome, "+OK") ||
			saslExchangeChecks["PLAIN"](ex, saslWant{user: "u", secret: "pw", ok: true}) != nil):
			t.Errorf("%s: exchange %+v is not a PLAIN login of u", tc.name, ex)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: error %v, want one about %q", tc.name, err, tc.wantErr)
		}
	}
}

// TestSASLOAuthExternalChecks checks the exchange checks of the token and
// certificate mechanisms, and checkUnoffered, on traces made up here.
func TestSASLOAuthExternalChecks(t *testing.T) {
	b64 := func(s string) string {
		if s == "" {
			return ""
		}
		return base64.StdEncoding.EncodeToString([]byte(s))
	}
	report := "S: + " + b64(`{"status":"invalid_token","schemes":"bearer"}`) + "\n"
	bearer := "n,a=u,\x01host=h\x01port=110\x01auth=Bearer tok\x01\x01"
	xoauth := "user=u\x01auth=Bearer tok\x01\x01"
	for _, tc := range []struct {
		name, mech, trace string
		ok                bool   // the login succeeded
		authzid           string // for EXTERNAL
		wantErr           string // "" for an exchange the check accepts
	}{
		{"bearer", "OAUTHBEARER", "C: AUTH OAUTHBEARER " + b64(bearer) + "\nS: +OK\n", true, "", ""},
		{"bearer after challenge", "OAUTHBEARER", "C: AUTH OAUTHBEARER\nS: + \nC: " + b64(bearer) + "\nS: +OK\n", true, "", ""},
		{"bearer refused", "OAUTHBEARER", "C: AUTH OAUTHBEARER " + b64(bearer) + "\n" + report + "C: AQ==\nS: -ERR [AUTH] no\n", false, "", ""},
		{"bearer no GS2 header", "OAUTHBEARER", "C: AUTH OAUTHBEARER " + b64("\x01auth=Bearer tok\x01\x01") + "\nS: +OK\n", true, "", "GS2 header"},
		{"bearer other user", "OAUTHBEARER", "C: AUTH OAUTHBEARER " + b64("n,a=v,\x01auth=Bearer tok\x01\x01") + "\nS: +OK\n", true, "", "GS2 header"},
		{"bearer other token", "OAUTHBEARER", "C: AUTH OAUTHBEARER " + b64("n,a=u,\x01auth=Bearer other\x01\x01") + "\nS: +OK\n", true, "", "no \"auth=Bearer tok\""},
		{"bearer refused without report", "OAUTHBEARER", "C: AUTH OAUTHBEARER " + b64(bearer) + "\nS: -ERR [AUTH] no\n", false, "", "one error report"},
		{"bearer wrong dummy", "OAUTHBEARER", "C: AUTH OAUTHBEARER " + b64(bearer) + "\n" + report + "C: \nS: -ERR [AUTH] no\n", false, "", "answered the error report"},
		{"xoauth2", "XOAUTH2", "C: AUTH XOAUTH2\nS: + \nC: " + b64(xoauth) + "\nS: +OK\n", true, "", ""},
		{"xoauth2 refused", "XOAUTH2", "C: AUTH XOAUTH2 " + b64(xoauth) + "\n" + report + "C: \nS: -ERR [AUTH] no\n", false, "", ""},
		{"xoauth2 as bearer", "XOAUTH2", "C: AUTH XOAUTH2 " + b64(bearer) + "\nS: +OK\n", true, "", "want"},
		{"xoauth2 wrong dummy", "XOAUTH2", "C: AUTH XOAUTH2 " + b64(xoauth) + "\n" + report + "C: AQ==\nS: -ERR [AUTH] no\n", false, "", "answered the error report"},
		{"external", "EXTERNAL", "C: AUTH EXTERNAL =\nS: +OK\n", true, "", ""},
		{"external after challenge", "EXTERNAL", "C: AUTH EXTERNAL\nS: + \nC: " + b64("u") + "\nS: +OK\n", true, "u", ""},
		{"external other authzid", "EXTERNAL", "C: AUTH EXTERNAL " + b64("v") + "\nS: -ERR [AUTH] no\n", false, "u", "want the client to send"},
	} {
		ex, err := parseTrace(tc.trace).exchange(tc.mech, false)
		if err == nil {
			err = saslExchangeChecks[tc.mech](ex, saslWant{user: "u", secret: "tok", authzid: tc.authzid, ok: tc.ok})
		}
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%s: error %v, want one about %q", tc.name, err, tc.wantErr)
		}
	}

	for _, tc := range []struct{ name, out, wantErr string }{
		{"not listed", "S: SASL PLAIN LOGIN\nFAIL\n", ""},
		{"script says so", "ERROR: CAPA SASL ['PLAIN'] lacks EXTERNAL\n", ""},
		{"listed", "S: SASL PLAIN EXTERNAL\n", "offered"},
		{"auth sent", "S: SASL PLAIN\nC: AUTH EXTERNAL\nS: -ERR\n", "sent"},
		{"no capability", "C: CAPA\nS: -ERR\n", "no SASL capability"},
	} {
		err := checkUnoffered(tc.out, "EXTERNAL")
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("checkUnoffered, %s: error %v, want one about %q", tc.name, err, tc.wantErr)
		}
	}
}
