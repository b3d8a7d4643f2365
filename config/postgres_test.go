package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseStore(t *testing.T) {
	for _, tt := range []struct {
		name, doc string
		check     func(t *testing.T, c Config)
	}{
		{"default", "", func(t *testing.T, c Config) {
			if c.Store != StoreMaildir || c.StoreDSN() != "" {
				t.Errorf("Store = %q, StoreDSN = %q; want maildir, none", c.Store, c.StoreDSN())
			}
			if c.Postgres.Lease.Duration != 30*time.Second {
				t.Errorf("postgres.lease = %v, want 30s", c.Postgres.Lease)
			}
		}},
		{"empty store is maildir", `store = ""`, func(t *testing.T, c Config) {
			if c.StoreDSN() != "" {
				t.Errorf("StoreDSN = %q", c.StoreDSN())
			}
		}},
		{"postgres", "store = \"postgresql://popbox:pw@db.example/popbox?sslmode=verify-full&pool_max_conns=8\"\n" +
			"[users]\ndatabase = \"/var/lib/popbox/users.db\"\n[postgres]\nlease = \"2s\"\nnode_id = \"pop1\"\n",
			func(t *testing.T, c Config) {
				if c.StoreDSN() != c.Store || !strings.HasPrefix(c.Store, "postgresql://") {
					t.Errorf("StoreDSN = %q", c.StoreDSN())
				}
				if c.Postgres.Lease.Duration != 2*time.Second || c.Postgres.NodeID != "pop1" || c.Users.Database != "/var/lib/popbox/users.db" {
					t.Errorf("postgres = %+v, users.database = %q", c.Postgres, c.Users.Database)
				}
			}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.doc), "popbox.toml")
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

// TestParseStoreErrors: a bad store or users.database is reported with its
// line, like any other key, and never with the password.
func TestParseStoreErrors(t *testing.T) {
	const secret = "S3cr%2Ft"
	for _, tt := range []struct {
		name, doc, want string
	}{
		{"bad port", "# c\n\nstore = \"postgres://popbox:" + secret + "@db:x/popbox\"\n",
			"popbox.toml:3: store: postgres://xxxxx@db:x/popbox is not a usable PostgreSQL URL: invalid port"},
		{"bad sslmode", "store = \"postgres://popbox:" + secret + "@db/popbox?sslmode=maybe\"\n",
			"popbox.toml:1: store: postgres://popbox:xxxxx@db/popbox?sslmode=maybe is not a usable PostgreSQL URL: failed to configure TLS (sslmode is invalid)"},
		{"bad pool size", "store = \"postgres://db/popbox?pool_max_conns=many&password=" + secret + "\"\n",
			"popbox.toml:1: store: postgres://db/popbox?pool_max_conns=many&password=xxxxx is not a usable PostgreSQL URL: cannot parse pool_max_conns (strconv.ParseInt: parsing \"many\": invalid syntax)"},
		{"bad escape in the password", "store = \"postgres://popbox:" + secret + "%zz@db/popbox\"\n",
			"popbox.toml:1: store: postgres://xxxxx@db/popbox is not a usable PostgreSQL URL: failed to parse as URL (invalid percent-encoded token in password)"},
		{"other scheme", "store = \"mysql://popbox:" + secret + "@db/popbox\"\n",
			`popbox.toml:1: store: "mysql://popbox:xxxxx@db/popbox" is neither "maildir" nor a postgres:// or postgresql:// URL`},
		{"typo", "store = \"Maildir\"\n",
			`popbox.toml:1: store: "Maildir" is neither "maildir" nor a postgres:// or postgresql:// URL`},
		{"users database", "[users]\n\ndatabase = \"postgres://u:" + secret + "@db:99999/x\"\n",
			"popbox.toml:3: users.database: postgres://u:xxxxx@db:99999/x is not a usable PostgreSQL URL: invalid port"},
		{"users database url", "[users]\ndatabase = \"sqlite://users.db\"\n",
			`popbox.toml:2: users.database: "sqlite://users.db" is neither a file nor a postgres:// or postgresql:// URL`},
		{"short lease", "[postgres]\nlease = \"100ms\"\n", "popbox.toml:2: postgres.lease: must be between 1s and 1h0m0s, not 100ms"},
		{"node id", "[postgres]\nnode_id = \"pop 1\"\n",
			`popbox.toml:2: postgres.node_id: "pop 1": use at most 48 printable ASCII characters without spaces`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc), "popbox.toml")
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrInvalidValue) {
				t.Errorf("errors.Is(err, ErrInvalidValue) = false: %v", err)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error\n got: %s\nwant: %s", got, tt.want)
			}
			if strings.Contains(err.Error(), "S3cr") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}

func TestRedactDSN(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"postgres://db.example/popbox", "postgres://db.example/popbox"},
		{"postgres://popbox@db.example/popbox", "postgres://popbox@db.example/popbox"},
		{"postgres://popbox:pw@db.example:5433/popbox?sslmode=require", "postgres://popbox:xxxxx@db.example:5433/popbox?sslmode=require"},
		{"postgresql://popbox:p%40ss@db/popbox", "postgresql://popbox:xxxxx@db/popbox"},
		{"postgres://db/popbox?user=u&password=pw&sslpassword=k", "postgres://db/popbox?user=u&password=xxxxx&sslpassword=xxxxx"},
		{"postgres://db/popbox?Pass%77ord=pw", "postgres://db/popbox?Pass%77ord=xxxxx"},
		{"postgres://u@h?options=a@b", "postgres://u@h?options=a@b"},
		{"postgres:///popbox?host=/run/postgresql", "postgres:///popbox?host=/run/postgresql"},
		// Does not parse: everything before the last '@' goes.
		{"postgres://u:pa/ss@h/db", "postgres://xxxxx@h/db"},
		{"postgres://u:p%zz@h/db", "postgres://xxxxx@h/db"},
		{"users.db", "users.db"},
	} {
		if got := RedactDSN(tt.in); got != tt.want {
			t.Errorf("RedactDSN(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestScrubDSN(t *testing.T) {
	dsn := "postgres://popbox:p%40ss@db/popbox?password=other"
	text := `failed: parse "postgres://popbox:p%40ss@db/popbox?password=other": p@ss, p%40ss and other`
	want := `failed: parse "postgres://popbox:xxxxx@db/popbox?password=xxxxx": xxxxx, xxxxx and xxxxx`
	if got := ScrubDSN(text, dsn); got != want {
		t.Errorf("ScrubDSN\n got: %s\nwant: %s", got, want)
	}
	if got := ScrubDSN("no secret here", ""); got != "no secret here" {
		t.Errorf("ScrubDSN with no DSN = %q", got)
	}
}
