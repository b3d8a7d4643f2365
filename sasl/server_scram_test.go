package sasl

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var errLookupFailed = errors.New("database down")

// testLookup knows "alice" (password "secret"); "broken" makes the lookup
// fail as a database would.
func testLookup(t testing.TB) SCRAMLookup {
	creds, err := NewSCRAMSHA256Credentials("secret", 0)
	if err != nil {
		t.Fatal(err)
	}
	return func(user string) (SCRAMCredentials, error) {
		switch user {
		case "alice":
			return creds, nil
		case "broken":
			return SCRAMCredentials{}, errLookupFailed
		}
		return SCRAMCredentials{}, ErrNoSCRAMCredentials
	}
}

var testFakeKey = []byte("0123456789abcdef0123456789abcdef")

// rawSCRAM is a hand-made SCRAM-SHA-256 client (RFC 5802 §3) that sends any
// GS2 header, which no library client lets one choose.
func rawSCRAM(t *testing.T, srv *SCRAMServer, gs2, user, password string) error {
	t.Helper()
	c1b := "n=" + user + ",r=clientnonce"
	s1, done, err := srv.Next([]byte(gs2 + c1b))
	if err != nil {
		return err
	}
	if done {
		t.Fatal("done after client-first")
	}
	f := map[string]string{}
	for kv := range strings.SplitSeq(string(s1), ",") {
		k, v, _ := strings.Cut(kv, "=")
		f[k] = v
	}
	salt, _ := base64.StdEncoding.DecodeString(f["s"])
	var iters int
	for _, d := range f["i"] {
		iters = iters*10 + int(d-'0')
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, iters, sha256.Size)
	if err != nil {
		t.Fatal(err)
	}
	mac := func(key []byte, s string) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(s))
		return m.Sum(nil)
	}
	clientKey := mac(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	c2wop := "c=" + base64.StdEncoding.EncodeToString([]byte(gs2)) + ",r=" + f["r"]
	sig := mac(stored[:], c1b+","+string(s1)+","+c2wop)
	for i := range sig {
		sig[i] ^= clientKey[i]
	}
	s2, done, err := srv.Next([]byte(c2wop + ",p=" + base64.StdEncoding.EncodeToString(sig)))
	if err != nil {
		return err
	}
	if done || !strings.HasPrefix(string(s2), "v=") {
		t.Fatalf("server-final %q, done %v", s2, done)
	}
	if _, done, err = srv.Next([]byte{}); err != nil || !done {
		t.Fatalf("after server-final: done %v, %v", done, err)
	}
	return nil
}

func TestSCRAMServer(t *testing.T) {
	tests := []struct {
		name, gs2, user, password string
		wantErr                   bool
		wantLookupErr             error
	}{
		{name: "n flag", gs2: "n,,", user: "alice", password: "secret"},
		// RFC 5802 §6: "y" means the client could bind but thinks the
		// server cannot; right, as no -PLUS variant is offered.
		{name: "y flag", gs2: "y,,", user: "alice", password: "secret"},
		{name: "authzid equal to user", gs2: "n,a=alice,", user: "alice", password: "secret"},
		{name: "authzid other than user", gs2: "n,a=bob,", user: "alice", password: "secret", wantErr: true},
		{name: "p flag refused", gs2: "p=tls-exporter,,", user: "alice", password: "secret", wantErr: true},
		{name: "unknown flag", gs2: "x,,", user: "alice", password: "secret", wantErr: true},
		{name: "wrong password", gs2: "n,,", user: "alice", password: "wrong", wantErr: true},
		{name: "unknown user", gs2: "n,,", user: "nobody", password: "secret", wantErr: true},
		{name: "lookup failure", gs2: "n,,", user: "broken", password: "secret", wantErr: true, wantLookupErr: errLookupFailed},
	}
	lookup := testLookup(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := NewSCRAMSHA256Server(lookup, testFakeKey)
			err := rawSCRAM(t, srv, tt.gs2, tt.user, tt.password)
			if (err != nil) != tt.wantErr {
				t.Fatalf("exchange error %v, want error %v", err, tt.wantErr)
			}
			if !errors.Is(srv.LookupErr(), tt.wantLookupErr) || (tt.wantLookupErr == nil) != (srv.LookupErr() == nil) {
				t.Errorf("LookupErr() = %v, want %v", srv.LookupErr(), tt.wantLookupErr)
			}
		})
	}
}

// TestSCRAMServerLibraryClient runs our own client against the server, with
// and without initial response.
func TestSCRAMServerLibraryClient(t *testing.T) {
	lookup := testLookup(t)
	for _, initial := range []bool{true, false} {
		srv := NewSCRAMSHA256Server(lookup, testFakeKey)
		cl := NewSCRAMSHA256Client("alice", "secret", nil)
		_, resp, err := cl.Start()
		if err != nil {
			t.Fatal(err)
		}
		if !initial {
			ch, done, err := srv.Next(nil)
			if err != nil || done || len(ch) != 0 {
				t.Fatalf("without initial response: %q, %v, %v; want an empty challenge", ch, done, err)
			}
		}
		for {
			ch, done, err := srv.Next(resp)
			if err != nil {
				t.Fatalf("initial %v: %v", initial, err)
			}
			if done {
				break
			}
			if resp, err = cl.Next(ch); err != nil {
				t.Fatal(err)
			}
		}
		if err := cl.(MutualAuthenticator).ServerVerified(); err != nil {
			t.Errorf("initial %v: client did not verify the server: %v", initial, err)
		}
		if diff := cmp.Diff("alice", srv.Username()); diff != "" {
			t.Errorf("Username (-want +got):\n%s", diff)
		}
	}
}

// TestSCRAMFakeCredentials: an unknown user's server-first message has the
// same salt at every attempt and the real users' iteration count (RFC 5802
// §5.1), and another user's salt differs.
func TestSCRAMFakeCredentials(t *testing.T) {
	saltIters := func(user string) string {
		srv := NewSCRAMSHA256Server(testLookup(t), testFakeKey)
		s1, _, err := srv.Next([]byte("n,,n=" + user + ",r=abc"))
		if err != nil {
			t.Fatal(err)
		}
		_, rest, _ := strings.Cut(string(s1), ",s=")
		return rest
	}
	a, b := saltIters("nobody"), saltIters("nobody")
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("fake salt changes between attempts (-first +second):\n%s", diff)
	}
	if !strings.HasSuffix(a, ",i=4096") {
		t.Errorf("fake iteration count in %q, want 4096", a)
	}
	if a == saltIters("somebody") {
		t.Error("two unknown users have the same salt")
	}
}

func TestSCRAMCredentialsFormat(t *testing.T) {
	c, err := NewSCRAMSHA256Credentials("secret", 5000)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseSCRAMCredentials(FormatSCRAMCredentials(c))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if _, err := NewSCRAMSHA256Credentials("secret", 100); err == nil {
		t.Error("100 iterations accepted")
	}
	for _, bad := range []string{"", "4096,a,b", "x,AAAA,AAAA,AAAA", "4096,!,AAAA,AAAA", "4096,AAAA,AAAA,AAAA", "0,AAAA," + strings.Repeat("A", 44) + "," + strings.Repeat("A", 44)} {
		if _, err := ParseSCRAMCredentials(bad); err == nil {
			t.Errorf("ParseSCRAMCredentials(%q) accepted", bad)
		}
	}
}

// FuzzSCRAMClientFirst feeds arbitrary client-first messages to
// SCRAM-SHA-256 and SCRAM-SHA-256-PLUS: the server must not panic, and may only go on to a server-first message that starts
// with the client's nonce.
func FuzzSCRAMClientFirst(f *testing.F) {
	for _, s := range []string{"n,,n=alice,r=abc", "y,,n=nobody,r=x", "p=tls-exporter,,n=alice,r=abc",
		"n,a=bob,n=alice,r=abc", "n,,m=ext,n=alice,r=abc", "n,,n=a=2Cb=3D,r=abc", "n,,n=a=ZZ,r=abc", "", ",,,", "n,,n=,r="} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	lookup := testLookup(f)
	binding := func(typ string) ([]byte, error) {
		if typ == TLSExporter {
			return []byte("exporter"), nil
		}
		return nil, errors.New("unsupported")
	}
	f.Fuzz(func(t *testing.T, c1 []byte, plus bool) {
		// plus: SCRAM-SHA-256-PLUS on a TLS connection; otherwise the
		// plain mechanism without TLS.
		opts := SCRAMServerOptions{}
		if plus {
			opts = SCRAMServerOptions{Plus: true, ChannelBinding: binding}
		}
		srv := NewSCRAMServer(lookup, testFakeKey, opts)
		s1, done, err := srv.Next(c1)
		if err != nil {
			return
		}
		if done || !strings.HasPrefix(string(s1), "r=") {
			t.Fatalf("client-first %q: server-first %q, done %v", c1, s1, done)
		}
	})
}

// FuzzSCRAMClientFinal feeds an arbitrary client-final message after a good
// client-first: no panic, and never success (the proof cannot be guessed).
func FuzzSCRAMClientFinal(f *testing.F) {
	for _, s := range []string{"c=biws,r=abc,p=AAAA", "c=biws,r=abc", "c=!!,r=abc,p=x", "", "c=biws,r=abc,x=1,p=" + strings.Repeat("A", 44)} {
		f.Add([]byte(s), []byte{})
	}
	lookup := testLookup(f)
	f.Fuzz(func(t *testing.T, c2, last []byte) {
		srv := NewSCRAMSHA256Server(lookup, testFakeKey)
		if _, _, err := srv.Next([]byte("n,,n=alice,r=abc")); err != nil {
			t.Fatal(err)
		}
		if _, done, err := srv.Next(c2); err == nil || done {
			t.Fatalf("client-final %q accepted (done %v)", c2, done)
		}
		if _, done, err := srv.Next(last); err == nil || done {
			t.Fatalf("exchange goes on after a failed client-final")
		}
	})
}

// TestSCRAMServerChannelBinding runs the library client, with and without
// binding, against servers that offer -PLUS or not, as the POP3 server sets
// them up on TLS connections.
func TestSCRAMServerChannelBinding(t *testing.T) {
	conn := map[string][]byte{TLSExporter: []byte("exporter-data-32-octets-xxxxxxxx"), TLSServerEndPoint: []byte("cert-hash")}
	binding := func(typ string) ([]byte, error) {
		if d, ok := conn[typ]; ok {
			return d, nil
		}
		return nil, errors.New("unsupported")
	}
	tests := []struct {
		name    string
		opts    SCRAMServerOptions
		cb      *ChannelBinding // the client's
		gs2     string          // a raw client's header instead of the library client
		wantErr bool
		wantCB  string
	}{
		{name: "plus/tls-exporter", opts: SCRAMServerOptions{Plus: true, ChannelBinding: binding},
			cb: &ChannelBinding{Type: TLSExporter, Data: conn[TLSExporter]}, wantCB: TLSExporter},
		{name: "plus/tls-server-end-point", opts: SCRAMServerOptions{Plus: true, ChannelBinding: binding},
			cb: &ChannelBinding{Type: TLSServerEndPoint, Data: conn[TLSServerEndPoint]}, wantCB: TLSServerEndPoint},
		// Another connection's data: a man in the middle relaying the exchange.
		{name: "plus/other connection", opts: SCRAMServerOptions{Plus: true, ChannelBinding: binding},
			cb: &ChannelBinding{Type: TLSExporter, Data: []byte("exporter-data-of-another-session")}, wantErr: true},
		{name: "plus/unsupported type", opts: SCRAMServerOptions{Plus: true, ChannelBinding: binding},
			cb: &ChannelBinding{Type: "tls-unique", Data: []byte("x")}, wantErr: true},
		{name: "plus/client does not bind", opts: SCRAMServerOptions{Plus: true, ChannelBinding: binding}, wantErr: true},
		{name: "plus/without TLS", opts: SCRAMServerOptions{Plus: true},
			cb: &ChannelBinding{Type: TLSExporter, Data: conn[TLSExporter]}, wantErr: true},
		{name: "plain on TLS/n", opts: SCRAMServerOptions{ChannelBinding: binding}},
		{name: "plain on TLS/p refused", opts: SCRAMServerOptions{ChannelBinding: binding}, gs2: "p=tls-exporter,,", wantErr: true},
		// RFC 5802 §6: -PLUS was offered, so "y" means the client did not
		// see it: a downgrade.
		{name: "plain on TLS/y is a downgrade", opts: SCRAMServerOptions{ChannelBinding: binding}, gs2: "y,,", wantErr: true},
		{name: "plain without TLS/y", opts: SCRAMServerOptions{}, gs2: "y,,"},
	}
	lookup := testLookup(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := NewSCRAMServer(lookup, testFakeKey, tt.opts)
			var err error
			if tt.gs2 != "" {
				err = rawSCRAM(t, srv, tt.gs2, "alice", "secret")
			} else {
				err = runSCRAM(NewSCRAMSHA256Client("alice", "secret", tt.cb), srv)
			}
			if (err != nil) != tt.wantErr {
				t.Fatalf("exchange error %v, want error %v", err, tt.wantErr)
			}
			if err == nil && srv.ChannelBindingType() != tt.wantCB {
				t.Errorf("ChannelBindingType() = %q, want %q", srv.ChannelBindingType(), tt.wantCB)
			}
		})
	}
}

// runSCRAM runs a client against a server to the end.
func runSCRAM(cl Client, srv *SCRAMServer) error {
	_, resp, err := cl.Start()
	if err != nil {
		return err
	}
	for {
		ch, done, err := srv.Next(resp)
		if err != nil {
			return err
		}
		if done {
			return cl.(MutualAuthenticator).ServerVerified()
		}
		if resp, err = cl.Next(ch); err != nil {
			return err
		}
	}
}
