package passhash

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/bcrypt"
)

// cheap keeps tests fast; the code paths are the same as for the defaults.
var cheap = Params{Memory: 64, Time: 1, Threads: 1}

func TestCheckPassword(t *testing.T) {
	tests := []struct {
		name     string
		password string
		ok       bool
	}{
		{"simple", "secret", true},
		{"one byte", "x", true},
		{"utf8", "pässwörd ✓ 密码", true},
		{"spaces and symbols", " a b $%{} ", true},
		{"max length", strings.Repeat("a", MaxPasswordLen), true},
		{"max length multibyte", strings.Repeat("é", MaxPasswordLen/2), true},
		{"empty", "", false},
		{"too long", strings.Repeat("a", MaxPasswordLen+1), false},
		{"too long multibyte", strings.Repeat("é", MaxPasswordLen/2+1), false},
		{"invalid utf8", "abc\xff", false},
		{"latin1", "p\xe4ss", false},
		{"nul", "a\x00b", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckPassword(tt.password)
			if (err == nil) != tt.ok {
				t.Fatalf("CheckPassword = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidPassword) {
				t.Errorf("error %v is not ErrInvalidPassword", err)
			}
			_, herr := Hash(tt.password, cheap)
			if (herr == nil) != tt.ok {
				t.Errorf("Hash error = %v, want ok=%v", herr, tt.ok)
			}
		})
	}
}

var phcRE = regexp.MustCompile(`^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$([A-Za-z0-9+/]{22})\$([A-Za-z0-9+/]{43})$`)

func TestHashFormat(t *testing.T) {
	tests := []struct {
		params  Params
		wantMTP []string
	}{
		{cheap, []string{"64", "1", "1"}},
		{Params{Memory: 256, Time: 3, Threads: 4}, []string{"256", "3", "4"}},
		{Params{}, []string{"19456", "2", "1"}}, // zero value: OWASP defaults
	}
	for _, tt := range tests {
		h, err := Hash("secret", tt.params)
		if err != nil {
			t.Fatalf("Hash(%v): %v", tt.params, err)
		}
		m := phcRE.FindStringSubmatch(h)
		if m == nil {
			t.Fatalf("Hash(%v) = %q, not a PHC argon2id string with 16-byte salt and 32-byte key", tt.params, h)
		}
		if diff := cmp.Diff(tt.wantMTP, m[1:4]); diff != "" {
			t.Errorf("Hash(%v) parameters (-want +got):\n%s", tt.params, diff)
		}
		if NeedsRehash(h, tt.params) {
			t.Errorf("NeedsRehash(fresh hash, same params) = true")
		}
		if ok, err := Verify(h, "secret"); !ok || err != nil {
			t.Errorf("Verify(right) = %v, %v", ok, err)
		}
		if ok, err := Verify(h, "Secret"); ok || err != nil {
			t.Errorf("Verify(wrong) = %v, %v", ok, err)
		}
	}
	// Two hashes of one password differ: the salt is random.
	a, _ := Hash("secret", cheap)
	b, _ := Hash("secret", cheap)
	if a == b {
		t.Errorf("two hashes of the same password are equal: %q", a)
	}
}

func TestHashInvalidParams(t *testing.T) {
	for _, p := range []Params{
		{Memory: 0, Time: 1, Threads: 1},
		{Memory: 64, Time: 0, Threads: 1},
		{Memory: 64, Time: 1, Threads: 0},
		{Memory: 15, Time: 1, Threads: 2},                  // m < 8p
		{Memory: MaxArgon2Memory + 1, Time: 1, Threads: 1}, // too much memory
		{Memory: MaxArgon2Memory / 2, Time: 3, Threads: 1}, // too much work
		{Memory: 64, Time: MaxArgon2Time + 1, Threads: 1},  // too many passes
		{Memory: 1024, Time: 1, Threads: MaxArgon2Threads + 1},
	} {
		if _, err := Hash("secret", p); !errors.Is(err, ErrInvalidParams) {
			t.Errorf("Hash(%+v) error = %v, want ErrInvalidParams", p, err)
		}
		if err := p.Validate(); !errors.Is(err, ErrInvalidParams) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalidParams", p, err)
		}
	}
}

func TestVerifySchemes(t *testing.T) {
	const pw = "correct horse"
	bc, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	bcryptA := string(bc) // x/crypto writes $2a$
	bcryptB := "$2b$" + bcryptA[4:]
	bcryptY := "$2y$" + bcryptA[4:]
	ours, err := Hash(pw, cheap)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		hash       string
		password   string
		wantOK     bool
		wantErr    error
		wantScheme string
	}{
		{"argon2id ours", ours, pw, true, nil, SchemeArgon2id},
		{"argon2id ours wrong", ours, "correct horse ", false, nil, SchemeArgon2id},
		// Reference implementation: echo -n 'correct horse' |
		// argon2 somesalt16bytes! -id -t 2 -m 10 -p 2 -l 32 -e
		{"argon2id reference p=2", "$argon2id$v=19$m=1024,t=2,p=2$c29tZXNhbHQxNmJ5dGVzIQ$X2DJq/2PcFgol+mt/SPfhlyK3CUmEL4nBSAlItwsis8", pw, true, nil, SchemeArgon2id},
		{"argon2id reference wrong", "$argon2id$v=19$m=1024,t=2,p=2$c29tZXNhbHQxNmJ5dGVzIQ$X2DJq/2PcFgol+mt/SPfhlyK3CUmEL4nBSAlItwsis8", "correct horsE", false, nil, SchemeArgon2id},
		// The rest are Dovecot 2.3.19 "doveadm pw -s SCHEME -p 'correct horse'".
		{"dovecot ARGON2ID", "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$KQIhQEXIuwX4BHm71138vQ$rshTR2N+uZKZdmZPbdG/EyrcrHhrDesxyM0DxOjsRlA", pw, true, nil, SchemeArgon2id},
		{"dovecot BLF-CRYPT", "{BLF-CRYPT}$2y$05$FXTr1yTPzK/2nefwHJHhP.lZkdMqG4Wm.069Yl9QYY7PNiULvkEUG", pw, true, nil, SchemeBcrypt},
		{"dovecot BLF-CRYPT wrong", "{BLF-CRYPT}$2y$05$FXTr1yTPzK/2nefwHJHhP.lZkdMqG4Wm.069Yl9QYY7PNiULvkEUG", "correct", false, nil, SchemeBcrypt},
		{"dovecot lower-case prefix", "{blf-crypt}$2y$05$FXTr1yTPzK/2nefwHJHhP.lZkdMqG4Wm.069Yl9QYY7PNiULvkEUG", pw, true, nil, SchemeBcrypt},
		{"dovecot CRYPT bcrypt", "{CRYPT}$2y$05$i/b87raZPZfvekGxquj4PeT5qeRJzfla4.j5rk1BniP9qDTAcb1CK", pw, true, nil, SchemeBcrypt},
		{"dovecot SHA512-CRYPT", "{SHA512-CRYPT}$6$I.3iRdMIli5lceDR$YlH1M8/j3fjDlXuM5mIimBU1QOoOcEaXtZ0zFRM7K8yqH/GExqKl3XCfyUpmzXX2dma99jLjUBZoDXd21qwIx0", pw, true, nil, SchemeSHA512Crypt},
		{"dovecot SHA512-CRYPT rounds", "{SHA512-CRYPT}$6$rounds=10000$jZqIoWnPEuP.B2A5$4CLnOQLFaxJ2sciU0CP5ORe2fTPQZ5NrtNGtnwMI9aTFnB0XTcrH3GKLI5.AG3h5bZCPurB0rv0Cpl6OisvAk.", pw, true, nil, SchemeSHA512Crypt},
		{"dovecot SHA512-CRYPT wrong", "{SHA512-CRYPT}$6$I.3iRdMIli5lceDR$YlH1M8/j3fjDlXuM5mIimBU1QOoOcEaXtZ0zFRM7K8yqH/GExqKl3XCfyUpmzXX2dma99jLjUBZoDXd21qwIx0", "Correct horse", false, nil, SchemeSHA512Crypt},
		{"dovecot CRYPT sha512", "{CRYPT}$6$I.3iRdMIli5lceDR$YlH1M8/j3fjDlXuM5mIimBU1QOoOcEaXtZ0zFRM7K8yqH/GExqKl3XCfyUpmzXX2dma99jLjUBZoDXd21qwIx0", pw, true, nil, SchemeSHA512Crypt},
		{"dovecot SHA256-CRYPT", "{SHA256-CRYPT}$5$vkasyQkCFFMOwh9e$5lFO3JItMyX3MwZC5PyhfJJRL.5IpSvZcd0nLAjssG/", pw, true, nil, SchemeSHA256Crypt},
		{"spec SHA512-CRYPT bare", "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1", "Hello world!", true, nil, SchemeSHA512Crypt},
		{"bcrypt 2a", bcryptA, pw, true, nil, SchemeBcrypt},
		{"bcrypt 2b", bcryptB, pw, true, nil, SchemeBcrypt},
		{"bcrypt 2y", bcryptY, pw, true, nil, SchemeBcrypt},
		{"bcrypt 2a wrong", bcryptA, "x", false, nil, SchemeBcrypt},
		// bcrypt only reads 72 bytes: doveadm pw -s BLF-CRYPT -r 4 -p
		// with 100 x's, verified with 72 and 73 x's.
		{"bcrypt 72-byte truncation", "{BLF-CRYPT}$2y$04$/6QhJ1Uke88lcF/wWSWFqegFIx5AJQ63o/Tk3QaDtSk8wriO0HhaS", strings.Repeat("x", 72), true, nil, SchemeBcrypt},
		{"bcrypt 71 bytes is not 100", "{BLF-CRYPT}$2y$04$/6QhJ1Uke88lcF/wWSWFqegFIx5AJQ63o/Tk3QaDtSk8wriO0HhaS", strings.Repeat("x", 71), false, nil, SchemeBcrypt},

		// Unsupported schemes.
		{"PLAIN", "{PLAIN}correct horse", pw, false, ErrUnsupportedScheme, ""},
		{"plaintext", "correct horse", pw, false, ErrUnsupportedScheme, ""},
		{"empty", "", pw, false, ErrUnsupportedScheme, ""},
		{"MD5-CRYPT", "{MD5-CRYPT}$1$saltsalt$abcdefghijklmnopqrstuv", pw, false, ErrUnsupportedScheme, ""},
		{"CRYPT md5", "{CRYPT}$1$saltsalt$abcdefghijklmnopqrstuv", pw, false, ErrUnsupportedScheme, ""},
		{"argon2i", "$argon2i$v=19$m=1024,t=2,p=2$c29tZXNhbHQxNmJ5dGVzIQ$X2DJq/2PcFgol+mt/SPfhlyK3CUmEL4nBSAlItwsis8", pw, false, ErrUnsupportedScheme, ""},
		{"bcrypt 2x", "$2x$" + bcryptA[4:], pw, false, ErrUnsupportedScheme, ""},
		{"yescrypt", "$y$j9T$salt$hash", pw, false, ErrUnsupportedScheme, ""},

		// Malformed or out of bounds.
		{"prefix mismatch", "{SHA512-CRYPT}" + bcryptY, pw, false, ErrInvalidHash, ""},
		{"ARGON2ID prefix on bcrypt", "{ARGON2ID}" + bcryptY, pw, false, ErrInvalidHash, ""},
		{"too long", "$argon2id$v=19$m=64,t=1,p=1$" + strings.Repeat("A", MaxHashLen), pw, false, ErrInvalidHash, ""},
		{"argon2 no version", "$argon2id$m=1024,t=2,p=2$c29tZXNhbHQxNmJ5dGVzIQ$X2DJq/2PcFgol+mt/SPfhlyK3CUmEL4nBSAlItwsis8", pw, false, ErrInvalidHash, ""},
		{"argon2 v=16", "$argon2id$v=16$m=1024,t=2,p=2$c29tZXNhbHQxNmJ5dGVzIQ$X2DJq/2PcFgol+mt/SPfhlyK3CUmEL4nBSAlItwsis8", pw, false, ErrInvalidHash, ""},
		{"argon2 order", "$argon2id$v=19$t=2,m=1024,p=2$c29tZXNhbHQxNmJ5dGVzIQ$X2DJq/2PcFgol+mt/SPfhlyK3CUmEL4nBSAlItwsis8", pw, false, ErrInvalidHash, ""},
		{"argon2 keyid", "$argon2id$v=19$m=1024,t=2,p=2,keyid=AAAA$c29tZXNhbHQxNmJ5dGVzIQ$X2DJq/2PcFgol+mt/SPfhlyK3CUmEL4nBSAlItwsis8", pw, false, ErrInvalidHash, ""},
		{"argon2 m > 1 GiB", "$argon2id$v=19$m=1048577,t=1,p=1$c29tZXNhbHQxNmJ5dGVzIQ$X2DJq/2PcFgol+mt/SPfhlyK3CUmEL4nBSAlItwsis8", pw, false, ErrInvalidHash, ""},
		{"argon2 m overflow", "$argon2id$v=19$m=99999999999,t=1,p=1$c29tZXNhbHQxNmJ5dGVzIQ$X2DJq/2PcFgol+mt/SPfhlyK3CUmEL4nBSAlItwsis8", pw, false, ErrInvalidHash, ""},
		{"argon2 too much work", "$argon2id$v=19$m=1048576,t=4,p=1$c29tZXNhbHQxNmJ5dGVzIQ$X2DJq/2PcFgol+mt/SPfhlyK3CUmEL4nBSAlItwsis8", pw, false, ErrInvalidHash, ""},
		{"argon2 t=0", "$argon2id$v=19$m=1024,t=0,p=2$c29tZXNhbHQxNmJ5dGVzIQ$X2DJq/2PcFgol+mt/SPfhlyK3CUmEL4nBSAlItwsis8", pw, false, ErrInvalidHash, ""},
		{"argon2 p=0", "$argon2id$v=19$m=1024,t=2,p=0$c29tZXNhbHQxNmJ5dGVzIQ$X2DJq/2PcFgol+mt/SPfhlyK3CUmEL4nBSAlItwsis8", pw, false, ErrInvalidHash, ""},
		{"argon2 p=255", "$argon2id$v=19$m=4096,t=2,p=255$c29tZXNhbHQxNmJ5dGVzIQ$X2DJq/2PcFgol+mt/SPfhlyK3CUmEL4nBSAlItwsis8", pw, false, ErrInvalidHash, ""},
		{"argon2 m < 8p", "$argon2id$v=19$m=15,t=2,p=2$c29tZXNhbHQxNmJ5dGVzIQ$X2DJq/2PcFgol+mt/SPfhlyK3CUmEL4nBSAlItwsis8", pw, false, ErrInvalidHash, ""},
		{"argon2 leading zero", "$argon2id$v=19$m=01024,t=2,p=2$c29tZXNhbHQxNmJ5dGVzIQ$X2DJq/2PcFgol+mt/SPfhlyK3CUmEL4nBSAlItwsis8", pw, false, ErrInvalidHash, ""},
		{"argon2 sign", "$argon2id$v=19$m=+1024,t=2,p=2$c29tZXNhbHQxNmJ5dGVzIQ$X2DJq/2PcFgol+mt/SPfhlyK3CUmEL4nBSAlItwsis8", pw, false, ErrInvalidHash, ""},
		{"argon2 padded base64", "$argon2id$v=19$m=1024,t=2,p=2$c29tZXNhbHQxNmJ5dGVzIQ==$X2DJq/2PcFgol+mt/SPfhlyK3CUmEL4nBSAlItwsis8", pw, false, ErrInvalidHash, ""},
		{"argon2 short salt", "$argon2id$v=19$m=1024,t=2,p=2$c2FsdA$X2DJq/2PcFgol+mt/SPfhlyK3CUmEL4nBSAlItwsis8", pw, false, ErrInvalidHash, ""},
		{"argon2 short key", "$argon2id$v=19$m=1024,t=2,p=2$c29tZXNhbHQxNmJ5dGVzIQ$X2D", pw, false, ErrInvalidHash, ""},
		{"argon2 trailing field", "$argon2id$v=19$m=1024,t=2,p=2$c29tZXNhbHQxNmJ5dGVzIQ$X2DJq/2PcFgol+mt/SPfhlyK3CUmEL4nBSAlItwsis8$", pw, false, ErrInvalidHash, ""},
		{"bcrypt cost too high", "$2y$14$FXTr1yTPzK/2nefwHJHhP.lZkdMqG4Wm.069Yl9QYY7PNiULvkEUG", pw, false, ErrInvalidHash, ""},
		{"bcrypt cost 31", "$2y$31$FXTr1yTPzK/2nefwHJHhP.lZkdMqG4Wm.069Yl9QYY7PNiULvkEUG", pw, false, ErrInvalidHash, ""},
		{"bcrypt cost too low", "$2y$03$FXTr1yTPzK/2nefwHJHhP.lZkdMqG4Wm.069Yl9QYY7PNiULvkEUG", pw, false, ErrInvalidHash, ""},
		{"bcrypt short", "$2y$05$FXTr1yTPzK/2nefwHJHhP.lZkdMqG4Wm.069Yl9QYY7PNiULvkEU", pw, false, ErrInvalidHash, ""},
		{"bcrypt bad char", "$2y$05$FXTr1yTPzK/2nefwHJHhP.lZkdMqG4Wm.069Yl9QYY7PNiULvkE+G", pw, false, ErrInvalidHash, ""},
		{"sha512 too many rounds", "$6$rounds=1000001$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1", pw, false, ErrInvalidHash, ""},
		{"sha512 rounds 999999999", "$6$rounds=999999999$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1", pw, false, ErrInvalidHash, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, err := Verify(tt.hash, tt.password)
			if ok != tt.wantOK || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Verify = %v, %v; want %v, %v", ok, err, tt.wantOK, tt.wantErr)
			}
			scheme, err := Scheme(tt.hash)
			if scheme != tt.wantScheme || (err == nil) != (tt.wantErr == nil) {
				t.Errorf("Scheme = %q, %v; want %q", scheme, err, tt.wantScheme)
			}
			// Everything but our own current hash wants an upgrade.
			if got, want := NeedsRehash(tt.hash, cheap), tt.hash != ours; got != want {
				t.Errorf("NeedsRehash = %v, want %v", got, want)
			}
		})
	}
}

func TestVerifyPasswordBounds(t *testing.T) {
	long := strings.Repeat("p", MaxPasswordLen)
	h, err := Hash(long, cheap)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, password string
		want           bool
	}{
		{"longest", long, true},
		{"one byte more", long + "p", false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		ok, err := Verify(h, tt.password)
		if ok != tt.want || err != nil {
			t.Errorf("%s: Verify = %v, %v; want %v, nil", tt.name, ok, err, tt.want)
		}
	}
	// A broken hash is reported even for an empty password.
	if _, err := Verify("$argon2id$garbage", ""); !errors.Is(err, ErrInvalidHash) {
		t.Errorf("Verify(broken, \"\") error = %v, want ErrInvalidHash", err)
	}
}

// TestSHACryptWorkBudget: long passwords against high-rounds SHA-crypt
// hashes fail without hashing, short ones still verify.
func TestSHACryptWorkBudget(t *testing.T) {
	h := shaCrypt(sha256Variant(), "$5$rounds=100000$budget", "short")
	if ok, err := Verify(h, "short"); !ok || err != nil {
		t.Errorf("Verify(short password) = %v, %v; want true", ok, err)
	}
	p, err := parse(h, defaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if got := p.(*shaCryptHash).blocks(MaxPasswordLen); got <= MaxSHACryptBlocks {
		t.Fatalf("blocks(%d) = %d, expected over budget %d", MaxPasswordLen, got, MaxSHACryptBlocks)
	}
	long := shaCrypt(sha256Variant(), "$5$rounds=100000$budget", strings.Repeat("x", MaxPasswordLen))
	if ok, err := Verify(long, strings.Repeat("x", MaxPasswordLen)); ok || err != nil {
		t.Errorf("Verify(over budget) = %v, %v; want false, nil", ok, err)
	}
}

func TestNeedsRehash(t *testing.T) {
	h, err := Hash("pw", cheap)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		hash string
		p    Params
		want bool
	}{
		{"same", h, cheap, false},
		{"with dovecot prefix", "{ARGON2ID}" + h, cheap, false},
		{"more memory", h, Params{Memory: 128, Time: 1, Threads: 1}, true},
		{"fewer passes wanted", strings.Replace(h, "t=1", "t=2", 1), cheap, true},
		{"more threads", h, Params{Memory: 64, Time: 1, Threads: 2}, true},
		{"defaults", h, Params{}, true},
		{"short key", "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHQxNmJ5dGVzIQ$X2DJq/2PcFgol+mt/SPfhg", cheap, true},
		{"bcrypt", "$2y$05$FXTr1yTPzK/2nefwHJHhP.lZkdMqG4Wm.069Yl9QYY7PNiULvkEUG", cheap, true},
		{"garbage", "nonsense", cheap, true},
	}
	for _, tt := range tests {
		if got := NeedsRehash(tt.hash, tt.p); got != tt.want {
			t.Errorf("%s: NeedsRehash = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestNormalize(t *testing.T) {
	const bc = "$2y$05$FXTr1yTPzK/2nefwHJHhP.lZkdMqG4Wm.069Yl9QYY7PNiULvkEUG"
	tests := []struct {
		in, want string
		wantErr  error
	}{
		{"{BLF-CRYPT}" + bc, bc, nil},
		{"{crypt}" + bc, bc, nil},
		{bc, bc, nil},
		{"{PLAIN}secret", "", ErrUnsupportedScheme},
		{"{SHA512-CRYPT}" + bc, "", ErrInvalidHash},
		// An unterminated or over-long brace is no prefix at all.
		{"{BLF-CRYPT" + bc, "", ErrUnsupportedScheme},
		{"{" + strings.Repeat("A", 40) + "}" + bc, "", ErrUnsupportedScheme},
	}
	for _, tt := range tests {
		got, err := Normalize(tt.in)
		if got != tt.want || !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
			t.Errorf("Normalize(%q) = %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestErrorsDoNotLeakPlaintext: a {PLAIN} or unrecognised "hash" may be a
// password; error messages must not repeat it.
func TestErrorsDoNotLeakPlaintext(t *testing.T) {
	for _, h := range []string{"hunter2secret", "{PLAIN}hunter2secret", "{CRYPT}hunter2secret"} {
		_, err := Verify(h, "x")
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Verify(%q) error = %v", h, err)
		}
	}
}
