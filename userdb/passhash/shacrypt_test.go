package passhash

import (
	"strconv"
	"strings"
	"testing"
)

// shaCrypt is crypt(3) for a "$5$"/"$6$" setting: it applies the spec's
// clamping of rounds and truncation of the salt (steps 22a-c) and returns the
// full hash string. Only tests use it, to check the spec's vectors; new
// hashes are argon2id.
func shaCrypt(v *shaVariant, setting, password string) string {
	rest := strings.TrimPrefix(setting, v.id)
	rounds, custom := shaCryptDefaultRounds, false
	if r, ok := strings.CutPrefix(rest, shaCryptRoundsPrefix); ok {
		num, after, _ := strings.Cut(r, "$")
		if n, err := strconv.ParseUint(num, 10, 64); err == nil {
			rounds = int(max(shaCryptMinRounds, min(n, 999_999_999)))
			custom = true
			rest = after
		}
	}
	salt, _, _ := strings.Cut(rest, "$")
	salt = salt[:min(len(salt), v.maxSalt)]
	out := v.id
	if custom {
		out += shaCryptRoundsPrefix + strconv.Itoa(rounds) + "$"
	}
	return out + salt + "$" + v.encode(shaCryptDigest(v, []byte(password), []byte(salt), rounds))
}

// TestSHACryptVectors checks the implementation against the test vectors
// published in Drepper's SHA-crypt.txt and against hashes produced by other
// implementations (OpenSSL 3.0 "openssl passwd", Dovecot 2.3 "doveadm pw").
func TestSHACryptVectors(t *testing.T) {
	long200 := ""
	for i := range 200 {
		long200 += string(rune('a' + i%26))
	}
	tests := []struct {
		name     string
		v        *shaVariant
		setting  string // a crypt(3) setting: may need clamping/truncation
		password string
		want     string
	}{
		// Drepper's SHA-512 vectors.
		{"spec512-1", sha512Variant(), "$6$saltstring", "Hello world!",
			"$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"},
		{"spec512-2", sha512Variant(), "$6$rounds=10000$saltstringsaltstring", "Hello world!",
			"$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."},
		{"spec512-3", sha512Variant(), "$6$rounds=5000$toolongsaltstring", "This is just a test",
			"$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0"},
		{"spec512-4", sha512Variant(), "$6$rounds=1400$anotherlongsaltstring",
			"a very much longer text to encrypt.  This one even stretches over morethan one line.",
			"$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1"},
		{"spec512-5", sha512Variant(), "$6$rounds=77777$short", "we have a short salt string but not a short password",
			"$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5CxtgfiAc0"},
		{"spec512-6", sha512Variant(), "$6$rounds=123456$asaltof16chars..", "a short string",
			"$6$rounds=123456$asaltof16chars..$BtCwjqMJGx5hrJhZywWvt0RLE8uZ4oPwcelCjmw2kSYu.Ec6ycULevoBK25fs2xXgMNrCzIMVcgEJAstJeonj1"},
		{"spec512-7", sha512Variant(), "$6$rounds=10$roundstoolow", "the minimum number is still observed",
			"$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX."},
		// Drepper's SHA-256 vectors.
		{"spec256-1", sha256Variant(), "$5$saltstring", "Hello world!",
			"$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"},
		{"spec256-2", sha256Variant(), "$5$rounds=10000$saltstringsaltstring", "Hello world!",
			"$5$rounds=10000$saltstringsaltst$3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA"},
		{"spec256-3", sha256Variant(), "$5$rounds=5000$toolongsaltstring", "This is just a test",
			"$5$rounds=5000$toolongsaltstrin$Un/5jzAHMgOGZ5.mWJpuVolil07guHPvOW8mGRcvxa5"},
		{"spec256-4", sha256Variant(), "$5$rounds=1400$anotherlongsaltstring",
			"a very much longer text to encrypt.  This one even stretches over morethan one line.",
			"$5$rounds=1400$anotherlongsalts$Rx.j8H.h8HjEDGomFU8bDkXm3XIUnzyxf12oP84Bnq1"},
		{"spec256-5", sha256Variant(), "$5$rounds=77777$short", "we have a short salt string but not a short password",
			"$5$rounds=77777$short$JiO1O3ZpDAxGJeaDIuqCoEFysAe1mZNJRs3pw0KQRd/"},
		{"spec256-6", sha256Variant(), "$5$rounds=123456$asaltof16chars..", "a short string",
			"$5$rounds=123456$asaltof16chars..$gP3VQ/6X7UUEW3HkBn2w1/Ptq2jxPyzV/cZKmF/wJvD"},
		{"spec256-7", sha256Variant(), "$5$rounds=10$roundstoolow", "the minimum number is still observed",
			"$5$rounds=1000$roundstoolow$yfvwcWrQ8l/K0DAWyuPMDNHpIVlTQebY9l/gL972bIC"},
		// openssl passwd: a password longer than one SHA-512 block, and a
		// salt with '.' and '/'.
		{"openssl512-long", sha512Variant(), "$6$Xy7/.q", long200,
			"$6$Xy7/.q$GQv027t1RmHOLo/Asb4G1yrgFNqoOno1sLvAYDB40Ah4iUtbdfft8O7G4OYeBKNxKgtMczYDp6QECb10gLRnt0"},
		{"openssl256-long", sha256Variant(), "$5$Xy7/.q", long200,
			"$5$Xy7/.q$cvWGqG2ipkpw7VP6tlrdXzr4.uJIsMd7FnSc0/TGY3/"},
		{"openssl512-utf8", sha512Variant(), "$6$u5xQ", "pässwörd ✓",
			"$6$u5xQ$ncb4IvDGMvhVZhjY/BfplbaZVD32qltJXmQLoIGPZ0vY41.tJvrSPxbFvu9Nlcd3spd/Izlv7iyVp64MO2x6m/"},
		// doveadm pw -s SHA512-CRYPT (prefix removed).
		{"dovecot512", sha512Variant(), "$6$LYubVnur2A9iXKHE", "Ünïcödé pass ✓",
			"$6$LYubVnur2A9iXKHE$YBM6NTz2ZTTH995S.upshuDbBVqvVWub9.X2yW8jXM1oaw5NLOIYUIHlLgbKkW5G6gTVcLbPLGSo1hAPvSwNJ0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := shaCrypt(tt.v, tt.setting, tt.password); got != tt.want {
				t.Errorf("shaCrypt(%q) = %q, want %q", tt.setting, got, tt.want)
			}
			// The stored form verifies through the public API, and only
			// with the right password.
			if ok, err := Verify(tt.want, tt.password); !ok || err != nil {
				t.Errorf("Verify(right password) = %v, %v; want true, nil", ok, err)
			}
			if ok, err := Verify(tt.want, tt.password+"x"); ok || err != nil {
				t.Errorf("Verify(wrong password) = %v, %v; want false, nil", ok, err)
			}
		})
	}
}

// TestSHACryptEncodePermutation pins the byte order of step 22e
// independently of the vectors: every input byte must be encoded exactly
// once, so changing any single byte changes the output.
func TestSHACryptEncodePermutation(t *testing.T) {
	for _, v := range []*shaVariant{sha512Variant(), sha256Variant()} {
		size := v.newHash().Size()
		base := v.encode(make([]byte, size))
		if len(base) != v.encLen {
			t.Fatalf("%s: encoded length %d, want %d", v.id, len(base), v.encLen)
		}
		seen := map[string]bool{}
		for i := range size {
			d := make([]byte, size)
			d[i] = 0xff
			got := v.encode(d)
			if got == base || seen[got] {
				t.Errorf("%s: byte %d not encoded or encoded like another byte", v.id, i)
			}
			seen[got] = true
		}
	}
}

// TestParseSHACryptStrict checks that stored hashes that crypt(3) would never
// produce are refused rather than silently clamped or truncated.
func TestParseSHACryptStrict(t *testing.T) {
	const digest = "svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"
	tests := []struct {
		hash string
		ok   bool
	}{
		{"$6$saltstring$" + digest, true},
		{"$6$$" + digest, true}, // empty salt is legal
		{"$6$rounds=1000$saltstring$" + digest, true},
		{"$6$rounds=999$saltstring$" + digest, false},
		{"$6$rounds=0100000$saltstring$" + digest, false},
		{"$6$rounds=" + strconv.Itoa(MaxSHACryptRounds+1) + "$saltstring$" + digest, false},
		{"$6$rounds=-5000$saltstring$" + digest, false},
		{"$6$rounds=5000saltstring$" + digest, false},
		{"$6$saltstringsaltstring$" + digest, false}, // 20-character salt
		{"$6$salt:tring$" + digest, false},
		{"$6$salt tring$" + digest, false},
		{"$6$saltstring$" + digest[1:], false},
		{"$6$saltstring$" + digest + "x", false},
		{"$6$saltstring$" + strings.Replace(digest, "s", "_", 1), false},
		{"$6$saltstring", false},
		{"$5$saltstring$" + digest, false}, // SHA-512 length under $5$
	}
	for _, tt := range tests {
		_, err := Scheme(tt.hash)
		if (err == nil) != tt.ok {
			t.Errorf("Scheme(%q) error = %v, want ok=%v", tt.hash, err, tt.ok)
		}
	}
}
