package mailtest

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseMboxrd(t *testing.T) {
	got, err := ParseMboxrd("From a Mon\nSubject: x\n\n>From me\n>>From you\n\nFrom b Tue\nb\n\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Subject: x\n\nFrom me\n>From you\n", "b\n"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if _, err := ParseMboxrd("From a Mon\nno blank line\n"); err == nil {
		t.Error("an entry without its blank line was accepted")
	}
	if _, err := ParseMboxrd("garbage\n"); err == nil {
		t.Error("a file not starting with From_ was accepted")
	}
}

func TestStripHeader(t *testing.T) {
	m := "Received: from a\n\tby b\nSubject: s\n\nReceived: in body\n"
	if got, want := StripHeader(m, "received"), "Subject: s\n\nReceived: in body\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := Normalise("a\r\nb"), "a\nb\n"; got != want {
		t.Errorf("Normalise = %q, want %q", got, want)
	}
}
