// Package testenv finds the real services and tools otonode's tests talk to
// (PostgreSQL, dcmtk, Orthanc, …). Under CI=true a missing one fails the
// test, so a CI run cannot pass by skipping; elsewhere it skips with the
// reason.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// CI reports whether the tests run in CI, where nothing may be skipped.
func CI() bool { return os.Getenv("CI") == "true" }

// Require stops the test when err says that what it needs is missing:
// a failure under CI=true, a skip elsewhere.
func Require(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if CI() {
		t.Fatalf("%s is required and CI=true: %v", what, err)
	}
	t.Skipf("%s not available: %v", what, err)
}

// Tool returns the path of an executable on PATH (see Require).
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	Require(t, name, err)
	return p
}

// RandHex returns n random bytes in hex, for names of test databases,
// streams and folders.
func RandHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// PostgresAdmin returns a DSN of the maintenance database of the local
// PostgreSQL server (127.0.0.1:5432, trust auth, user postgres or root), or
// OTONODE_TEST_POSTGRES when set.
func PostgresAdmin(t testing.TB) string {
	t.Helper()
	if dsn := os.Getenv("OTONODE_TEST_POSTGRES"); dsn != "" {
		return dsn
	}
	var last error
	for _, user := range []string{"postgres", "root"} {
		dsn := "postgres://" + user + "@127.0.0.1:5432/postgres?sslmode=disable&connect_timeout=3"
		db, err := sql.Open("pgx", dsn)
		if err == nil {
			err = db.PingContext(context.Background())
			db.Close()
		}
		if err == nil {
			return dsn
		}
		last = err
	}
	Require(t, "PostgreSQL at 127.0.0.1:5432", last)
	return ""
}

// Postgres creates a database of the test's own, named prefix_<random>, drops
// it at cleanup, and returns its DSN.
func Postgres(t testing.TB, prefix string) string {
	t.Helper()
	admin := PostgresAdmin(t)
	name := prefix + "_" + RandHex(6)
	db, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		db.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := db.Exec("DROP DATABASE " + name + " WITH (FORCE)"); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
		db.Close()
	})
	return withDatabase(admin, name)
}

// withDatabase replaces the database name in a postgres:// URL.
func withDatabase(dsn, name string) string {
	if !strings.Contains(dsn, "://") { // key=value form
		return dsn + " dbname=" + name
	}
	head, query, _ := strings.Cut(dsn, "?")
	if i := strings.LastIndex(head, "/"); i > len("postgres://") {
		head = head[:i]
	}
	if query != "" {
		return head + "/" + name + "?" + query
	}
	return head + "/" + name
}
