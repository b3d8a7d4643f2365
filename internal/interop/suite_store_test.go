package interop

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/popbox/popbox/internal/pgtest"
)

// The whole suite runs twice: on the default Maildir store, and again with
// every server and command on a PostgreSQL store (issue 7: "the whole POP3
// and delivery test suite also runs against the PostgreSQL store").
// TestSuiteOnPostgres runs this test binary again with suiteStoreEnv set;
// in that run TestMain starts a private PostgreSQL, startServerArgs gives
// each server a database of its own (migrated by `popbox migrate`) through
// its configuration file, and server.run passes that file to every
// command. Tests that examine the Maildir on disk (crash recovery, a full
// file system) or do not touch the store at all skip themselves in that
// run with skipOnSuiteStore; the PostgreSQL store's own tests are
// TestPostgres and store/postgres.
const suiteStoreEnv = "POPBOX_TEST_STORE"

// suiteBinEnv passes the built popbox binary to the second run, which then
// does not build it again.
const suiteBinEnv = "POPBOX_TEST_BIN"

// suitePG is the private PostgreSQL of the second run; nil in the first.
// Set once by TestMain before any test runs.
var suitePG *pgtest.Server

// onSuiteStore reports whether this is the run on the PostgreSQL store.
func onSuiteStore() bool { return os.Getenv(suiteStoreEnv) == "postgres" }

// skipOnSuiteStore skips a Maildir-specific or store-independent test in
// the PostgreSQL run, saying why.
func skipOnSuiteStore(t *testing.T, why string) {
	t.Helper()
	if onSuiteStore() {
		t.Skipf("not rerun on the PostgreSQL store: %s", why)
	}
}

// startSuitePG starts the second run's PostgreSQL, from TestMain.
func startSuitePG() (stop func(), err error) {
	if !onSuiteStore() {
		return func() {}, nil
	}
	srv, stop, err := pgtest.StartMain()
	if err != nil {
		return nil, err
	}
	suitePG = srv
	return stop, nil
}

// suiteDBs maps a data directory to its database's URL in the PostgreSQL
// run, so that commands run on a data directory before its server starts
// (an import, say) and the server share one database.
var suiteDBs = struct {
	sync.Mutex
	m map[string]string
}{m: map[string]string{}}

// suiteStoreConfig points s at its data directory's database, created and
// migrated (`popbox migrate`) on first use: it writes the store key into
// the configuration file passed in args with -c (or a new one) and returns
// the arguments to pass to serve.
func suiteStoreConfig(t *testing.T, s *server, args []string) []string {
	t.Helper()
	suiteDBs.Lock()
	dsn, migrated := suiteDBs.m[s.data]
	if !migrated {
		dsn = pgURL(t, suitePG.NewDatabase(t))
		suiteDBs.m[s.data] = dsn
		t.Cleanup(func() {
			suiteDBs.Lock()
			delete(suiteDBs.m, s.data)
			suiteDBs.Unlock()
		})
	}
	suiteDBs.Unlock()
	// A top-level key, so it goes before any [table].
	line := fmt.Sprintf("store = %q\n", dsn)
	if i := slices.Index(args, "-c"); i >= 0 && i+1 < len(args) {
		old, err := os.ReadFile(args[i+1])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(args[i+1], append([]byte(line), old...), 0o600); err != nil {
			t.Fatal(err)
		}
		s.config = args[i+1]
	} else {
		s.config = filepath.Join(t.TempDir(), "popbox.toml")
		if err := os.WriteFile(s.config, []byte(line), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-c", s.config)
	}
	if !migrated {
		if out, code := s.run(t, nil, "migrate", "--data", s.data); code != 0 {
			t.Fatalf("popbox migrate: exit %d\n%s", code, out)
		}
	}
	return args
}

// newCLI returns a server value that is never started, for running
// commands on data, on the same store a server started later on data uses.
func newCLI(t *testing.T, bin, data string) *server {
	t.Helper()
	s := &server{bin: bin, data: data}
	if suitePG != nil {
		suiteStoreConfig(t, s, nil)
	}
	return s
}

// notRerun: the tests the PostgreSQL run leaves out wholesale, beside
// those that skip themselves: this test, and TestPostgres, which has its
// own private server and runs in the first run.
const notRerun = "^(TestSuiteOnPostgres|TestPostgres)$"

// TestSuiteOnPostgres runs the suite again on the PostgreSQL store, in a
// child process of this test binary, and fails with its output if any test
// fails there. Without PostgreSQL it is skipped, failed under CI=true.
func TestSuiteOnPostgres(t *testing.T) {
	if onSuiteStore() {
		t.Skip("this is the PostgreSQL run")
	}
	pgtest.Start(t).Stop() // skips or fails (CI=true) when PostgreSQL is missing
	bin, err := popboxBinary()
	if err != nil {
		t.Fatal(err)
	}
	// The whole suite, whatever -run selected this test with.
	args := []string{"-test.skip", notRerun, "-test.count=1", "-test.v"}
	if testing.Short() {
		args = append(args, "-test.short")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), suiteStoreEnv+"=postgres", suiteBinEnv+"="+bin)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	passed, skipped, failed := countResults(out)
	t.Logf("suite on PostgreSQL: %d passed, %d skipped, %d failed in %v", len(passed), len(skipped), len(failed), time.Since(start).Round(time.Second))
	for _, name := range skipped {
		t.Logf("skipped there: %s", name)
	}
	if err != nil || len(failed) > 0 || len(passed) == 0 {
		t.Fatalf("suite on PostgreSQL: %v; failed: %v\n%s", err, failed, out)
	}
}

var resultLine = regexp.MustCompile(`(?m)^--- (PASS|SKIP|FAIL): (Test\S+)`)

// countResults lists the top-level tests of a -test.v output by result.
func countResults(out []byte) (passed, skipped, failed []string) {
	for _, m := range resultLine.FindAllSubmatch(out, -1) {
		name := string(m[2])
		switch string(m[1]) {
		case "PASS":
			passed = append(passed, name)
		case "SKIP":
			skipped = append(skipped, name)
		case "FAIL":
			failed = append(failed, name)
		}
	}
	return passed, skipped, failed
}
