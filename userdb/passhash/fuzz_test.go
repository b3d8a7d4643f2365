package passhash

import (
	"errors"
	"testing"
	"time"
)

// fuzzLimits are cheap bounds so each fuzz input runs in milliseconds; the
// parsing code is the same as with defaultLimits.
func fuzzLimits() limits {
	return limits{
		argon2Memory: 256, argon2Time: 4, argon2Threads: 4, argon2Work: 512,
		bcryptCost:     5,
		shaCryptRounds: 5000, shaCryptBlocks: 20000,
	}
}

// FuzzVerify: arbitrary hash strings never panic, verify in bounded time,
// fail only with this package's sentinel errors, and whatever parses
// normalizes to a string that parses again as the same scheme.
func FuzzVerify(f *testing.F) {
	for _, h := range []string{
		"$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHQxNmJ5dGVzIQ$X2DJq/2PcFgol+mt/SPfhlyK3CUmEL4nBSAlItwsis8",
		"{ARGON2ID}$argon2id$v=19$m=256,t=2,p=2$KQIhQEXIuwX4BHm71138vQ$rshTR2N+uZKZdmZPbdG/EyrcrHhrDesxyM0DxOjsRlA",
		"{BLF-CRYPT}$2y$05$FXTr1yTPzK/2nefwHJHhP.lZkdMqG4Wm.069Yl9QYY7PNiULvkEUG",
		"$2a$04$/6QhJ1Uke88lcF/wWSWFqegFIx5AJQ63o/Tk3QaDtSk8wriO0HhaS",
		"{SHA512-CRYPT}$6$I.3iRdMIli5lceDR$YlH1M8/j3fjDlXuM5mIimBU1QOoOcEaXtZ0zFRM7K8yqH/GExqKl3XCfyUpmzXX2dma99jLjUBZoDXd21qwIx0",
		"$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX.",
		"{CRYPT}$5$vkasyQkCFFMOwh9e$5lFO3JItMyX3MwZC5PyhfJJRL.5IpSvZcd0nLAjssG/",
		"{PLAIN}x", "{", "}", "$", "$$$$", "$6$", "$6$rounds=$", "$argon2id$v=19$m=,t=,p=$$",
	} {
		f.Add(h, "correct horse")
	}
	f.Fuzz(func(t *testing.T, hash, password string) {
		start := time.Now()
		ok, err := verify(hash, password, fuzzLimits())
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("verify took %v", d)
		}
		if err != nil {
			if ok {
				t.Errorf("verify = true with error %v", err)
			}
			if !errors.Is(err, ErrInvalidHash) && !errors.Is(err, ErrUnsupportedScheme) {
				t.Errorf("unexpected error type: %v", err)
			}
			return
		}
		// Within the cheap limits implies within the real ones.
		scheme, err := Scheme(hash)
		if err != nil {
			t.Fatalf("verify accepted %q but Scheme rejects it: %v", hash, err)
		}
		norm, err := Normalize(hash)
		if err != nil {
			t.Fatalf("Normalize(%q): %v", hash, err)
		}
		if s2, err := Scheme(norm); err != nil || s2 != scheme {
			t.Errorf("Normalize(%q) = %q, scheme %q, %v; want scheme %q", hash, norm, s2, err, scheme)
		}
	})
}
