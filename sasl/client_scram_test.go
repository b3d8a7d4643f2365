package sasl

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/xdg-go/scram"
)

// scramServer is xdg-go/scram's server with one account, alice/pencil.
// cb, when not nil, is the server's own view of the channel binding, which
// the client must then use.
func scramServer(t *testing.T, cb *scram.ChannelBinding) *scram.ServerConversation {
	t.Helper()
	client, err := scram.SHA256.NewClient("alice", "pencil", "")
	if err != nil {
		t.Fatal(err)
	}
	creds, err := client.GetStoredCredentialsWithError(scram.KeyFactors{Salt: "QSXCR+Q6sek8bf92", Iters: 4096})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := scram.SHA256.NewServer(func(name string) (scram.StoredCredentials, error) {
		if name != "alice" {
			return scram.StoredCredentials{}, errors.New("unknown user")
		}
		return creds, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if cb != nil {
		return srv.NewConversationWithChannelBindingRequired(*cb)
	}
	return srv.NewConversation()
}

// converse runs a whole exchange between the client and the server and
// returns the error of the client's last step, if any.
func converse(t *testing.T, c Client, srv *scram.ServerConversation, tamper func(step int, s string) string) error {
	t.Helper()
	_, ir, err := c.Start()
	if err != nil {
		return err
	}
	msg := string(ir)
	for step := 0; !srv.Done(); step++ {
		challenge, serr := srv.Step(msg)
		if serr != nil && challenge == "" {
			return fmt.Errorf("server: %w", serr)
		}
		if tamper != nil {
			challenge = tamper(step, challenge)
		}
		resp, err := c.Next([]byte(challenge))
		if err != nil {
			return err
		}
		msg = string(resp)
	}
	if msg != "" {
		return fmt.Errorf("response to the server-final message %q, want empty", msg)
	}
	return nil
}

func TestSCRAM(t *testing.T) {
	tests := []struct {
		name     string
		password string
		tamper   func(step int, s string) string
		wantErr  string // "" for success
	}{
		{name: "success", password: "pencil"},
		{name: "wrong password", password: "crayon", wantErr: "invalid-proof"},
		{name: "forged server signature", password: "pencil", wantErr: "server validation failed",
			tamper: func(step int, s string) string {
				if step == 1 {
					return "v=" + strings.Repeat("A", 43) + "="
				}
				return s
			}},
		{name: "too many iterations", password: "pencil", wantErr: "iterations",
			tamper: func(step int, s string) string {
				if step == 0 {
					return strings.Replace(s, "i=4096", fmt.Sprintf("i=%d", MaxSCRAMIterations+1), 1)
				}
				return s
			}},
		{name: "too few iterations", password: "pencil", wantErr: "too few iterations",
			tamper: func(step int, s string) string {
				if step == 0 {
					return strings.Replace(s, "i=4096", "i=1", 1)
				}
				return s
			}},
		{name: "nonce not extended", password: "pencil", wantErr: "nonce",
			tamper: func(step int, s string) string {
				if step == 0 {
					return "r=other" + s[strings.Index(s, ","):]
				}
				return s
			}},
		{name: "garbage", password: "pencil", wantErr: "",
			tamper: func(step int, s string) string { return "\x00\xff" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewSCRAMSHA256Client("alice", tt.password, nil)
			err := converse(t, c, scramServer(t, nil), tt.tamper)
			if tt.name == "garbage" {
				if err == nil {
					t.Fatalf("a garbage challenge was accepted")
				}
			} else if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one mentioning %q", err, tt.wantErr)
			}
			verr := c.(MutualAuthenticator).ServerVerified()
			if (verr == nil) != (tt.wantErr == "" && tt.name != "garbage") {
				t.Errorf("ServerVerified: %v", verr)
			}
			if err != nil && strings.Contains(err.Error(), tt.password) {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}

func TestSCRAMStart(t *testing.T) {
	c := NewSCRAMSHA256Client("alice", "pencil", nil)
	if err := c.(MutualAuthenticator).ServerVerified(); err == nil {
		t.Errorf("ServerVerified before any exchange succeeded")
	}
	if _, err := c.Next([]byte("r=x,s=eA==,i=4096")); err == nil {
		t.Errorf("Next before Start succeeded")
	}
	mech, ir, err := c.Start()
	if err != nil {
		t.Fatal(err)
	}
	if mech != SCRAMSHA256 || !strings.HasPrefix(string(ir), "n,,n=alice,r=") {
		t.Errorf("Start = %q, %q", mech, ir)
	}
	// SASLprep (RFC 4013) refuses control characters.
	if _, _, err := NewSCRAMSHA256Client("alice", "pen\x07cil", nil).Start(); err == nil {
		t.Errorf("a password with a control character passed SASLprep")
	} else if strings.Contains(err.Error(), "pen") {
		t.Errorf("error %q shows the password", err)
	}
	if _, _, err := NewSCRAMSHA256Client("alice", "pencil", &ChannelBinding{Type: TLSExporter}).Start(); err == nil {
		t.Errorf("an empty channel binding was accepted")
	}
}

// tlsPair connects a TLS client and server over an in-memory pipe and
// returns both connection states. sign chooses the certificate's key type.
func tlsPair(t *testing.T, version uint16, ed bool) (client, server tls.ConnectionState, leaf *x509.Certificate) {
	t.Helper()
	var pub, priv any
	if ed {
		p, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pub, priv = p, k
	} else {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pub, priv = &k.PublicKey, k
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err = x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	deadline := time.Now().Add(10 * time.Second)
	c1.SetDeadline(deadline)
	c2.SetDeadline(deadline)
	sc := tls.Server(c2, &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: leaf}},
		MinVersion:   version, MaxVersion: version,
	})
	cc := tls.Client(c1, &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: version, MaxVersion: version})
	errc := make(chan error, 1)
	go func() { errc <- sc.Handshake() }()
	if err := cc.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return cc.ConnectionState(), sc.ConnectionState(), leaf
}

// TestSCRAMPlus runs SCRAM-SHA-256-PLUS over a real TLS connection: the
// client's channel binding, computed from its side of the connection, must
// match the server's, computed independently from its side.
func TestSCRAMPlus(t *testing.T) {
	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		clientState, serverState, leaf := tlsPair(t, version, false)
		exporter, err := serverState.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
		if err != nil {
			t.Fatal(err)
		}
		endPoint := sha256.Sum256(leaf.Raw) // RFC 5929 §4.1: SHA-256 for an ECDSA-SHA256 certificate
		tests := []struct {
			typ        string
			serverData []byte
		}{
			{TLSExporter, exporter},
			{TLSServerEndPoint, endPoint[:]},
			{"", exporter}, // the default picks tls-exporter where it can
		}
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/%q", tls.VersionName(version), tt.typ), func(t *testing.T) {
				cb, err := ChannelBindingFromTLS(clientState, tt.typ)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tt.serverData, cb.Data); diff != "" {
					t.Fatalf("channel binding data (-server +client):\n%s", diff)
				}
				c := NewSCRAMSHA256Client("alice", "pencil", cb)
				mech, _, _ := c.Start()
				if mech != SCRAMSHA256Plus {
					t.Errorf("mechanism %q, want %q", mech, SCRAMSHA256Plus)
				}
				srv := scramServer(t, &scram.ChannelBinding{Type: scram.ChannelBindingType(cb.Type), Data: tt.serverData})
				if err := converse(t, c, srv, nil); err != nil {
					t.Fatal(err)
				}
				if err := c.(MutualAuthenticator).ServerVerified(); err != nil {
					t.Error(err)
				}
			})
		}
	}
	t.Run("binding of another connection", func(t *testing.T) {
		// A man in the middle terminates TLS: the client's binding is of
		// its connection to the attacker, the server's of its own.
		clientState, _, _ := tlsPair(t, tls.VersionTLS13, false)
		_, serverState, _ := tlsPair(t, tls.VersionTLS13, false)
		cb, err := ChannelBindingFromTLS(clientState, TLSExporter)
		if err != nil {
			t.Fatal(err)
		}
		serverData, err := serverState.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
		if err != nil {
			t.Fatal(err)
		}
		c := NewSCRAMSHA256Client("alice", "pencil", cb)
		srv := scramServer(t, &scram.ChannelBinding{Type: scram.ChannelBindingTLSExporter, Data: serverData})
		err = converse(t, c, srv, nil)
		if err == nil || !strings.Contains(err.Error(), "channel-bindings-dont-match") {
			t.Errorf("exchange with mismatched bindings: %v", err)
		}
	})
}

func TestChannelBindingFromTLS(t *testing.T) {
	clientState, _, _ := tlsPair(t, tls.VersionTLS13, false)
	edState, _, _ := tlsPair(t, tls.VersionTLS13, true)
	tests := []struct {
		name    string
		state   tls.ConnectionState
		typ     string
		wantTyp string // "" for an error
	}{
		{"exporter", clientState, TLSExporter, TLSExporter},
		{"end point", clientState, TLSServerEndPoint, TLSServerEndPoint},
		{"default", clientState, "", TLSExporter},
		{"tls-unique is not offered", clientState, "tls-unique", ""},
		{"unknown type", clientState, "tls-foo", ""},
		{"handshake not complete", tls.ConnectionState{}, TLSExporter, ""},
		// RFC 5929 §4.1: undefined for a signature without one hash.
		{"end point with Ed25519", edState, TLSServerEndPoint, ""},
		{"default with Ed25519", edState, "", TLSExporter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cb, err := ChannelBindingFromTLS(tt.state, tt.typ)
			if tt.wantTyp == "" {
				if err == nil {
					t.Fatalf("got %+v, want an error", cb)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cb.Type != tt.wantTyp || len(cb.Data) == 0 {
				t.Errorf("got type %q with %d octets, want %q", cb.Type, len(cb.Data), tt.wantTyp)
			}
		})
	}
}
