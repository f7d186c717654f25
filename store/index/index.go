// Package index keeps the instance index, the series state machine and the
// event outbox in SQL: PostgreSQL (pgx v5) for production and SQLite
// (modernc.org/sqlite, pure Go, WAL) as the embedded single-machine
// default. Both run the same code; a dialect covers the few differences
// (DDL, placeholders, row locks), and the same test suite runs against both.
//
// Every state change is one transaction that first locks the series row
// (SELECT … FOR UPDATE on PostgreSQL; SQLite transactions take the write
// lock at BEGIN), so several node processes can share one PostgreSQL
// database. Timers live in the database as timestamps, so completion
// resumes after a crash or on another node. Callers pass the time in
// (now, ReceivedAt), which keeps tests free of sleeps.
package index

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver
)

//go:embed migrations
var migrations embed.FS

// Errors callers match with errors.Is.
var (
	// ErrNotFound: no such series (or study, or outbox row).
	ErrNotFound = errors.New("index: not found")
	// ErrState: the series revision is not in a state the change allows.
	ErrState = errors.New("index: wrong state")
)

type dialect struct {
	name      string
	forUpdate string // appended to a SELECT that locks the series row
}

// Index is the SQL index. It is safe for concurrent use, also by several
// processes on one PostgreSQL database.
type Index struct {
	db *sql.DB
	d  dialect

	// stmts are the statements of the C-STORE path, prepared once at
	// open (read-only after): the embedded SQLite compiles a statement
	// anew for every Exec otherwise, about half of the index's CPU per
	// instance.
	stmts map[string]*sql.Stmt
}

// SQLiteOption changes how OpenSQLite opens the database.
type SQLiteOption func(*sqliteOptions)

type sqliteOptions struct{ synchronous string }

// Synchronous sets SQLite's synchronous pragma: "FULL" (the default: every
// commit is flushed, so a committed row survives a power cut), "NORMAL"
// (in WAL mode a commit is flushed at the next checkpoint; a power cut may
// lose the last commits, never corrupt the database) or "OFF" (benchmarks).
// A node whose instance files are durable before they are indexed can use
// NORMAL: Ingest.Reindex restores lost rows from the files at start-up.
func Synchronous(mode string) SQLiteOption {
	return func(o *sqliteOptions) { o.synchronous = mode }
}

// OpenSQLite opens (creating if needed) the SQLite database at path in WAL
// mode, synchronous=FULL unless an option says otherwise, and applies the
// migrations.
func OpenSQLite(ctx context.Context, path string, opts ...SQLiteOption) (*Index, error) {
	o := sqliteOptions{synchronous: "FULL"}
	for _, opt := range opts {
		opt(&o)
	}
	switch o.synchronous {
	case "FULL", "NORMAL", "OFF":
	default:
		return nil, fmt.Errorf("index: synchronous %q (want FULL, NORMAL or OFF)", o.synchronous)
	}
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "synchronous(" + o.synchronous + ")", "busy_timeout(10000)", "foreign_keys(1)"} {
		q.Add("_pragma", p)
	}
	// Every transaction takes the write lock at BEGIN: the SQLite form of
	// the row locks PostgreSQL takes, and no deadlock on lock upgrade.
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("index: open sqlite: %w", err)
	}
	// One writer at a time anyway; a few connections serve readers.
	db.SetMaxOpenConns(4)
	return open(ctx, db, dialect{name: "sqlite"})
}

// OpenPostgres connects to PostgreSQL with a pgx connection string
// ("postgres://user@host:5432/db" or "host=… dbname=…") and applies the
// migrations.
func OpenPostgres(ctx context.Context, dsn string) (*Index, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("index: open postgres: %w", err)
	}
	db.SetMaxOpenConns(16)
	return open(ctx, db, dialect{name: "postgres", forUpdate: " FOR UPDATE"})
}

func open(ctx context.Context, db *sql.DB, d dialect) (*Index, error) {
	x := &Index{db: db, d: d}
	if err := x.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := x.prepare(ctx); err != nil {
		return nil, errors.Join(err, x.Close())
	}
	return x, nil
}

// Close closes the database.
func (x *Index) Close() error {
	var err error
	for _, st := range x.stmts {
		err = errors.Join(err, st.Close())
	}
	return errors.Join(err, x.db.Close())
}

// prepare prepares the statements of the C-STORE path (recordQueries),
// at open, before any transaction: preparing on the database from inside
// one would wait for a free connection while the others wait in theirs.
func (x *Index) prepare(ctx context.Context) error {
	x.stmts = map[string]*sql.Stmt{}
	for _, q := range x.recordQueries() {
		st, err := x.db.PrepareContext(ctx, x.q(q))
		if err != nil {
			return fmt.Errorf("index: prepare: %w", err)
		}
		x.stmts[q] = st
	}
	return nil
}

// execPrepared runs query in tx, as a statement prepared at open where it
// is one of those; database/sql keeps it prepared on each connection that
// has run it.
func (x *Index) execPrepared(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	if st, ok := x.stmts[query]; ok {
		return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, x.q(query), args...)
}

// queryRowPrepared is QueryRowContext of query in tx (see execPrepared).
func (x *Index) queryRowPrepared(ctx context.Context, tx *sql.Tx, query string, args ...any) *sql.Row {
	if st, ok := x.stmts[query]; ok {
		return tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return tx.QueryRowContext(ctx, x.q(query), args...)
}

// Dialect is "sqlite" or "postgres".
func (x *Index) Dialect() string { return x.d.name }

// migrate applies the embedded migrations not yet recorded, each in its
// own transaction; on PostgreSQL an advisory lock keeps nodes that start
// together from applying one twice.
func (x *Index) migrate(ctx context.Context) error {
	dir := "migrations/" + x.d.name
	ents, err := fs.ReadDir(migrations, dir)
	if err != nil {
		return fmt.Errorf("index: migrations: %w", err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return x.tx(ctx, func(tx *sql.Tx) error {
		if x.d.name == "postgres" {
			if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(7470011)"); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
			return err
		}
		for _, n := range names {
			v, err := strconv.Atoi(strings.SplitN(n, "_", 2)[0])
			if err != nil {
				return fmt.Errorf("index: migration name %q", n)
			}
			var one int
			err = tx.QueryRowContext(ctx, x.q(`SELECT 1 FROM schema_migrations WHERE version = ?`), v).Scan(&one)
			if err == nil {
				continue
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			b, err := migrations.ReadFile(dir + "/" + n)
			if err != nil {
				return err
			}
			for _, stmt := range strings.Split(string(b), ";\n") {
				if strings.TrimSpace(stripComments(stmt)) == "" {
					continue
				}
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("index: migration %s: %w", n, err)
				}
			}
			if _, err := tx.ExecContext(ctx, x.q(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`), v, micros(time.Now())); err != nil {
				return err
			}
		}
		return nil
	})
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "--") {
			b.WriteString(l)
		}
	}
	return b.String()
}

// q rewrites ? placeholders to $n for PostgreSQL. Queries here never hold
// a literal question mark.
func (x *Index) q(s string) string {
	if x.d.name != "postgres" {
		return s
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// tx runs fn in a transaction, committing when it returns nil.
func (x *Index) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := x.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("index: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		return errors.Join(err, tx.Rollback())
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("index: commit: %w", err)
	}
	return nil
}

// micros stores times as microseconds since the epoch, the same in both
// dialects and free of time zone handling.
func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

func fromNullMicros(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMicros(v.Int64)
}
