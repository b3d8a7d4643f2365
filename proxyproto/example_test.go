package proxyproto_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"

	"github.com/popbox/popbox/proxyproto"
)

func ExampleHeader_Format() {
	h := &proxyproto.Header{
		Command:     proxyproto.CommandProxy,
		Source:      netip.MustParseAddrPort("192.0.2.1:56324"),
		Destination: netip.MustParseAddrPort("198.51.100.2:995"),
	}
	line, err := h.Format(1)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%q\n", line)

	r := bufio.NewReader(io.MultiReader(bytes.NewReader(line), bytes.NewReader([]byte("CAPA\r\n"))))
	got, err := proxyproto.ReadHeader(r)
	if err != nil {
		log.Fatal(err)
	}
	rest, _ := io.ReadAll(r)
	fmt.Println(got.Command, got.Source, got.Destination)
	fmt.Printf("%q\n", rest)
	// Output:
	// "PROXY TCP4 192.0.2.1 198.51.100.2 56324 995\r\n"
	// PROXY 192.0.2.1:56324 198.51.100.2:995
	// "CAPA\r\n"
}

func ExampleListener() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	l := &proxyproto.Listener{
		Listener: ln,
		// The load balancers; here the proxy is this machine.
		Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	}
	defer l.Close()

	// The proxy's side: a v2 header, then the client's bytes.
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			log.Fatal(err)
		}
		defer c.Close()
		h := &proxyproto.Header{
			Command:     proxyproto.CommandProxy,
			Source:      netip.MustParseAddrPort("[2001:db8::7]:40000"),
			Destination: netip.MustParseAddrPort("[2001:db8::1]:110"),
		}
		b, _ := h.Format(2)
		c.Write(append(b, "CAPA\r\n"...))
		io.Copy(io.Discard, c)
	}()

	c, err := l.Accept()
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	// In the connection's own goroutine, not the accept loop's: it waits
	// for the header.
	if err := c.(*proxyproto.Conn).Handshake(); err != nil {
		log.Fatal(err)
	}
	fmt.Println("client", c.RemoteAddr())
	line, _ := bufio.NewReader(c).ReadString('\n')
	fmt.Printf("%q\n", line)
	// Output:
	// client [2001:db8::7]:40000
	// "CAPA\r\n"
}
