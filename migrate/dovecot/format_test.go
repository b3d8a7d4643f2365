package dovecot

import (
	"errors"
	"strings"
	"testing"
)

func TestUIDLFormat(t *testing.T) {
	vars := formatVars{uid: 26, uidValidity: 1795783322, fileName: "1700000001.M1P1.host", guid: "feedfacefeedfacefeedfacefeedface"}
	tests := []struct{ format, want string }{
		{DefaultUIDLFormat, "0000001a6b097a9a"}, // lower-case hex, as Dovecot serves it
		{"%u", "26"},
		{"%v.%u", "1795783322.26"},
		{"%Xu", "1a"},
		{"%XUu", "1A"}, // modifiers apply in order: hex, then upper case
		{"%UXu", "1a"},
		{"%08u", "00000026"},
		{"%1u", "2"}, // a width without '0' truncates
		{"%010Xv", "006b097a9a"},
		{"%f", "1700000001.M1P1.host"},
		{"%Uf", "1700000001.M1P1.HOST"},
		{"%Lg", "feedfacefeedfacefeedfacefeedface"},
		{"%.4f", "1700"},                   // offset 0, width 4
		{"%3.4f", "0000"},                  // offset 3, width 4
		{"%-4f", "1700"},                   // a sign without '.' is ignored
		{"%-4.2f", "ho"},                   // the last 4, then 2 of them
		{"%-3.-1f", "os"},                  // the last 3 less 1 at the end
		{"%.-30f", "1700000001.M1P1.host"}, // width below 0 in total: all of it
		{"%99.3f", ""},                     // offset beyond the end
		{"%Rf", "tsoh.1P1M.1000000071"},
		{"%Tf", "1700000001.M1P1.host"},
		{"%Xf", "0"}, // not a number
		{"%u%%", "26%"},
		{"%%u%u", "%u26"},
		{"100%% %u", "100% 26"},
		{"%u%", "26"}, // a lone '%' at the end vanishes
		{"%-3.2f%.4Xv%5u", "os6b0926"},
	}
	for _, tt := range tests {
		f, err := parseUIDLFormat(tt.format)
		if err != nil {
			t.Errorf("parseUIDLFormat(%q): %v", tt.format, err)
			continue
		}
		got, err := f.expand(vars)
		if got != tt.want || err != nil {
			t.Errorf("expand(%q) = %q, %v; want %q", tt.format, got, err, tt.want)
		}
	}
}

func TestUIDLFormatRefused(t *testing.T) {
	for _, format := range []string{
		"",
		"static",
		"%%",
		"%m",
		"%u%m",
		"%{uid}",
		"%u%{uidvalidity}",
		"%u%x",
		"%u%{",
		"%X%%v", // "%X%" then "%v": no variable is a key by Dovecot's count
		"%u%n",
		"%Eu",
		"%Hu",
		"%Mu",
		"%LLLLLLLLLLLu", // eleven modifiers: the eleventh is taken for the key
		"%01025u",
		"%2000.1u",
	} {
		if f, err := parseUIDLFormat(format); !errors.Is(err, ErrUIDLFormat) {
			t.Errorf("parseUIDLFormat(%q) = %v, %v; want ErrUIDLFormat", format, f, err)
		}
	}
}

// FuzzUIDLFormat: any format is either refused or expands, for any values,
// without error and within a bound.
func FuzzUIDLFormat(f *testing.F) {
	for _, s := range []string{DefaultUIDLFormat, "%v-%u", "%-3.2f%.4Xv%5u", "%%%u%", "%{uid}", "%0999Lg", "%LUXRTu%m"} {
		f.Add(s, uint32(7), uint32(1795783322), "1700000001.M1P1.host:2,S", "feedface")
	}
	f.Fuzz(func(t *testing.T, format string, uid, uidValidity uint32, fileName, guid string) {
		p, err := parseUIDLFormat(format)
		if err != nil {
			if !errors.Is(err, ErrUIDLFormat) {
				t.Fatalf("error %v does not wrap ErrUIDLFormat", err)
			}
			return
		}
		v := formatVars{uid: uid, uidValidity: uidValidity, fileName: fileName, guid: guid}
		got, err := p.expand(v)
		if err != nil {
			t.Fatalf("accepted format %q fails to expand: %v", format, err)
		}
		// Each '%' field yields at most max(width, longest value) bytes.
		limit := len(format) + (strings.Count(format, "%")+1)*(maxFormatWidth+len(fileName)+len(guid)+20)
		if len(got) > limit {
			t.Fatalf("expansion of %q is %d bytes", format, len(got))
		}
		if again, _ := p.expand(v); again != got {
			t.Fatalf("expansion not deterministic: %q then %q", got, again)
		}
	})
}
