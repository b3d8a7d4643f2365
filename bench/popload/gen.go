package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"
)

var words = []string{"the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with",
	"be", "by", "on", "not", "this", "are", "or", "from", "at", "which", "but", "have", "an",
	"they", "you", "were", "there", "been", "one", "all", "would", "when", "if", "so", "will",
	"more", "out", "up", "about", "into", "can", "only", "other", "new", "some", "could", "time",
	"mailbox", "message", "octet", "retrieve", "protocol", "session", "latency", "throughput",
	"maildrop", "server", "client", "Grüße", "naïve", "café"}

// Body lines that need byte-stuffing on the wire.
var dotLines = []string{".", "..", "...", ". leading dot", ".signature"}

// genMessage returns an RFC 5322 message with LF line ends of exactly size
// octets (or the shortest this generator makes, about 400, if size is
// smaller): plain headers, then lines of words with now and then a line
// that starts with a dot.
func genMessage(rng *rand.Rand, i int, size int, user string) []byte {
	var b bytes.Buffer
	b.Grow(size + 100)
	day := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute)
	fmt.Fprintf(&b, "Return-Path: <sender%d@example.net>\n", i%97)
	fmt.Fprintf(&b, "Received: from mx.example.net (mx.example.net [192.0.2.%d])\n\tby mail.example.org with ESMTPS id %08x\n\tfor <%s@example.org>; %s\n",
		1+i%250, rng.Uint32(), user, day.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "From: Sender %d <sender%d@example.net>\n", i%97, i%97)
	fmt.Fprintf(&b, "To: %s <%s@example.org>\n", user, user)
	fmt.Fprintf(&b, "Subject: Benchmark message %d\n", i)
	fmt.Fprintf(&b, "Date: %s\n", day.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%d.%08x@popload.example>\n", i, rng.Uint32())
	b.WriteString("MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n")
	line := 0
	for b.Len() < size {
		line++
		var l []byte
		if line%29 == 7 {
			l = []byte(dotLines[rng.IntN(len(dotLines))])
		} else {
			want := 40 + rng.IntN(36)
			for len(l) < want {
				if len(l) > 0 {
					l = append(l, ' ')
				}
				l = append(l, words[rng.IntN(len(words))]...)
			}
		}
		if room := size - 1 - b.Len(); len(l) > room {
			l = bytes.TrimRight(l[:room], " ")
			for len(l) < room { // exact size: pad, never end on a space
				l = append(l, 'x')
			}
		}
		b.Write(l)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// wireSize is the size of m with CRLF line ends, as Dovecot's W= field
// (byte-stuffing not counted).
func wireSize(m []byte) int { return len(m) + bytes.Count(m, []byte("\n")) }

// cmdGen fills Maildirs: -dir DIR (one Maildir) or -root ROOT -users SPEC
// (ROOT/USER/Maildir for each), -count messages of -size octets each
// (±-jitter), deterministic for a given -seed. Files go into new/ named as
// a Dovecot delivery would (with S= and W=).
func cmdGen(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ExitOnError)
	dir := fs.String("dir", "", "one Maildir to fill")
	root := fs.String("root", "", "fill ROOT/USER/Maildir for each of -users")
	users := fs.String("users", "", "users for -root (user1-user200,other)")
	count := fs.Int("count", 10, "messages per Maildir")
	size := fs.Int("size", 2000, "message size in octets")
	jitter := fs.Float64("jitter", 0, "sizes vary uniformly by this fraction (0.5: 50% to 150%)")
	seed := fs.Uint64("seed", 1, "random seed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	type box struct{ user, dir string }
	var boxes []box
	switch {
	case *dir != "":
		boxes = append(boxes, box{filepath.Base(filepath.Dir(filepath.Clean(*dir))), *dir})
	case *root != "" && *users != "":
		for _, u := range parseUsers(*users) {
			boxes = append(boxes, box{u, filepath.Join(*root, u, "Maildir")})
		}
	default:
		return errors.New("give -dir, or -root and -users")
	}
	type job struct {
		b box
		i int
	}
	jobs := make(chan job, 256)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) * 2 {
		wg.Go(func() {
			for j := range jobs {
				rng := rand.New(rand.NewPCG(*seed, uint64(j.i)))
				sz := *size
				if *jitter > 0 {
					sz = int(float64(*size) * (1 - *jitter + 2**jitter*rng.Float64()))
				}
				m := genMessage(rng, j.i, sz, j.b.user)
				name := fmt.Sprintf("%d.M%dP%d.popload,S=%d,W=%d", 1767225600+j.i, j.i, *seed, len(m), wireSize(m))
				if err := os.WriteFile(filepath.Join(j.b.dir, "new", name), m, 0o600); err != nil {
					select {
					case errc <- err:
					default:
					}
				}
			}
		})
	}
	for _, b := range boxes {
		for _, sub := range []string{"new", "cur", "tmp"} {
			if err := os.MkdirAll(filepath.Join(b.dir, sub), 0o700); err != nil {
				close(jobs)
				wg.Wait()
				return err
			}
		}
		for i := range *count {
			jobs <- job{b, i}
		}
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
	}
	return nil
}
