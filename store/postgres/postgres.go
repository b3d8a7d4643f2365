package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/popbox/popbox/store"
)

// DefaultMaxMessageSize is the largest message Deliver and Import accept
// when Options.MaxMessageSize is zero (store/maildir's default).
const DefaultMaxMessageSize = 256 << 20

// DefaultLeaseDuration is Options.LeaseDuration's default.
const DefaultLeaseDuration = 30 * time.Second

// ErrTooLarge: Deliver or Import refused a message bigger than
// Options.MaxMessageSize.
var ErrTooLarge = errors.New("postgres: message too large")

// Internal timeouts for operations the store.Maildrop interface gives no
// context to (see the package doc).
const (
	// readTimeout bounds Maildrop.Open and each chunk fetch of the reader
	// it returns: one small query each.
	readTimeout = 30 * time.Second
	// commitTimeout bounds Maildrop.Commit's transaction, which marks
	// messages deleted (or deletes them and their chunks).
	commitTimeout = 60 * time.Second
	// releaseTimeout bounds giving a lease back (Close, store shutdown);
	// a release that fails is not a problem: the lease expires.
	releaseTimeout = 10 * time.Second
	// connectTimeout bounds establishing one connection when the DSN sets
	// none (pgx's default is two minutes).
	connectTimeout = 10 * time.Second
)

// Options configures a Store. The zero value gives the defaults and no
// logging, quotas or retention.
type Options struct {
	// Logger receives lease losses, expiries, purges and restores; nil
	// discards them.
	Logger *slog.Logger
	// MaxMessageSize bounds what Deliver and Import store, in stored
	// octets; 0 means DefaultMaxMessageSize, negative means no bound.
	MaxMessageSize int64
	// Quota returns a user's limits, asked once per Deliver; nil means no
	// quotas. An error fails the delivery (not as store.ErrQuota: the
	// caller should retry, not tell the sender the mailbox is full).
	Quota func(ctx context.Context, user string) (store.Quota, error)
	// Retention is how long deleted messages (POP3 DELE, Expire) are kept
	// for Restore before Purge removes them; 0 deletes at once.
	Retention time.Duration
	// LeaseDuration is how long a session lock outlives its holder's last
	// renewal: the longest a crashed or cut-off node keeps a mailbox
	// locked. Holders renew every LeaseDuration/3. 0 means
	// DefaultLeaseDuration.
	LeaseDuration time.Duration
	// NodeID names this process in lease rows and logs; "" means
	// hostname/pid/random.
	NodeID string
}

// Store keeps mailboxes in a PostgreSQL database. It implements store.Store
// and store.Admin, is safe for concurrent use, and any number of Stores,
// in any number of processes on any number of machines, may share one
// database.
type Store struct {
	pool      *pgxpool.Pool // every query but lease upkeep
	leasePool *pgxpool.Pool // lease renewal and release only (see the package doc)
	log       *slog.Logger
	maxSize   int64
	quota     func(ctx context.Context, user string) (store.Quota, error)
	retention time.Duration
	lease     time.Duration
	node      string
	sessions  atomic.Uint64 // numbers this node's leases in holder names

	// held are the leases this node renews, by token.
	mu   sync.Mutex
	held map[int64]*lease

	// life ends with Close; the renewer stops with it.
	life    context.Context
	stop    context.CancelFunc
	renewer sync.WaitGroup
	closed  sync.Once
}

var _ store.Admin = (*Store)(nil)

// Open connects to the database at dsn (a libpq keyword/value string or a
// postgres:// URL, as pgx parses it; pool settings such as pool_max_conns
// are honoured) and checks that its schema is the version this binary
// expects: if not, the error wraps ErrSchemaVersion and says to run
// `popbox migrate` (Migrate). ctx bounds the connection and the check.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout <= 0 {
		cfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	if opts.NodeID == "" {
		opts.NodeID = defaultNodeID()
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		// Shows in pg_stat_activity which frontend a connection is.
		cfg.ConnConfig.RuntimeParams["application_name"] = "popbox " + opts.NodeID
	}
	leaseCfg := cfg.Copy()
	leaseCfg.MaxConns, leaseCfg.MinConns, leaseCfg.MinIdleConns = 1, 0, 0

	s := &Store{
		log:       opts.Logger,
		maxSize:   opts.MaxMessageSize,
		quota:     opts.Quota,
		retention: max(opts.Retention, 0),
		lease:     opts.LeaseDuration,
		node:      opts.NodeID,
		held:      map[int64]*lease{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxSize == 0 {
		s.maxSize = DefaultMaxMessageSize
	}
	if s.lease <= 0 {
		s.lease = DefaultLeaseDuration
	}
	if s.lease < 30*time.Millisecond {
		return nil, fmt.Errorf("postgres: lease duration %v too short", s.lease)
	}
	if s.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if s.leasePool, err = pgxpool.NewWithConfig(ctx, leaseCfg); err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := checkSchema(ctx, s.pool, SchemaVersion()); err != nil {
		s.pool.Close()
		s.leasePool.Close()
		return nil, err
	}
	s.life, s.stop = context.WithCancel(context.Background())
	s.renewer.Go(s.renewLoop)
	return s, nil
}

// Close stops renewing leases, gives back those of maildrops still open
// (their Commit then fails; nothing is deleted), and closes the
// connections. It is idempotent.
func (s *Store) Close() {
	s.closed.Do(func() {
		s.stop()
		s.renewer.Wait()
		s.pool.Close()
		s.leasePool.Close()
	})
}

// defaultNodeID is hostname/pid/random: unique per process, and readable
// in a lease row.
func defaultNodeID() string {
	host, err := os.Hostname()
	if err != nil {
		host = "localhost"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// validUser is store.ValidUser: the Maildir store's rules, which a
// database would not need, so that every name is valid in both backends or
// in neither and mailboxes can move between them.
func validUser(user string) error { return store.ValidUser(user) }

// querier is what both a pool and a transaction offer.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// mailboxID returns the id of user's mailbox; with create it makes the
// mailbox first if there is none, else ok is false. Creation races are
// settled by the unique name: the loser's INSERT does nothing and its next
// SELECT (a new snapshot) finds the winner's row.
func (s *Store) mailboxID(ctx context.Context, q querier, user string, create bool) (id int64, ok bool, err error) {
	for range 3 {
		err = q.QueryRow(ctx, "SELECT id FROM mailboxes WHERE name = $1", user).Scan(&id)
		if err == nil {
			return id, true, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return 0, false, fmt.Errorf("postgres: mailbox %s: %w", user, ctxErr(ctx, err))
		}
		if !create {
			return 0, false, nil
		}
		// The epoch of a new counter is the time (the database's clock), so
		// a mailbox deleted and created again does not hand out its old
		// UIDLs again.
		err = q.QueryRow(ctx, `INSERT INTO mailboxes (name, epoch, floor)
			VALUES ($1, extract(epoch FROM now())::bigint, extract(epoch FROM now())::bigint)
			ON CONFLICT (name) DO NOTHING RETURNING id`, user).Scan(&id)
		if err == nil {
			return id, true, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return 0, false, fmt.Errorf("postgres: create mailbox %s: %w", user, ctxErr(ctx, err))
		}
	}
	return 0, false, fmt.Errorf("postgres: mailbox %s: created and gone again", user)
}

// mailboxes lists every mailbox name, for the *All operations.
func (s *Store) mailboxes(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, "SELECT name FROM mailboxes ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("postgres: list mailboxes: %w", ctxErr(ctx, err))
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres: list mailboxes: %w", ctxErr(ctx, err))
	}
	return names, nil
}

// ctxErr prefers the context's error: pgx reports a cancelled query as a
// network error that does not always wrap context.Canceled, and callers
// test for it.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w (%w)", cerr, err)
	}
	return err
}

// rollback ends tx if it is still open. It has its own short context: the
// caller's may be the reason for the rollback.
func rollback(tx pgx.Tx) {
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	_ = tx.Rollback(ctx)
}

// mailboxRow is what the mailbox row holds besides its name: the UIDL
// counter, the next listing position and the totals of live messages.
type mailboxRow struct {
	ctr  counter
	pos  int64
	msgs int64
	size int64
}

// lockMailbox locks the mailbox row for the rest of tx and reads it. FOR NO
// KEY UPDATE, not FOR UPDATE: it serializes every writer of the counter and
// the totals, but not the foreign-key checks of rows that merely reference
// the mailbox.
func lockMailbox(ctx context.Context, tx pgx.Tx, id int64) (mailboxRow, error) {
	var r mailboxRow
	err := tx.QueryRow(ctx, `SELECT epoch, uid_next, floor, pos_next, msgs, bytes
		FROM mailboxes WHERE id = $1 FOR NO KEY UPDATE`, id).
		Scan(&r.ctr.epoch, &r.ctr.next, &r.ctr.floor, &r.pos, &r.msgs, &r.size)
	if err != nil {
		return r, fmt.Errorf("postgres: lock mailbox: %w", ctxErr(ctx, err))
	}
	return r, nil
}

// saveMailbox writes back what lockMailbox read, changed.
func saveMailbox(ctx context.Context, tx pgx.Tx, id int64, r mailboxRow) error {
	_, err := tx.Exec(ctx, `UPDATE mailboxes SET epoch = $2, uid_next = $3, floor = $4, pos_next = $5, msgs = $6, bytes = $7
		WHERE id = $1`, id, r.ctr.epoch, r.ctr.next, r.ctr.floor, r.pos, r.msgs, r.size)
	if err != nil {
		return fmt.Errorf("postgres: update mailbox: %w", ctxErr(ctx, err))
	}
	return nil
}
