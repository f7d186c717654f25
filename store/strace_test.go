package store

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/otonode/otonode/store/files"
	"github.com/otonode/otonode/store/index"
)

// TestMain lets the strace test run this binary as its traced child.
func TestMain(m *testing.M) {
	if dir := os.Getenv("OTONODE_STRACE_CHILD"); dir != "" {
		os.Exit(straceChild(dir))
	}
	if dir := os.Getenv("OTONODE_CRASH_CHILD"); dir != "" {
		round, _ := strconv.Atoi(os.Getenv("OTONODE_CRASH_ROUND"))
		os.Exit(crashChild(dir, round))
	}
	os.Exit(m.Run())
}

// straceChild stores two instances with the real file system and SQLite,
// writing "RESPONSE n" to stdout where the SCP would answer.
func straceChild(dir string) int {
	ctx := context.Background()
	fs, err := files.Open(ctx, filepath.Join(dir, "data"), files.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	x, err := index.OpenSQLite(ctx, filepath.Join(dir, "index.db"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer x.Close()
	g := &Ingest{Files: fs, Index: x}
	for i, sop := range []string{"1.2.3.4.7.1", "1.2.3.4.7.2"} {
		if _, err := g.Store(ctx, bytes.NewReader(dataSet("1.2.3", "1.2.3.4", sop, i)), meta(sop)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		os.Stdout.WriteString(fmt.Sprintf("RESPONSE %d\n", i))
	}
	return 0
}

// TestDurabilityOrderStrace traces the real system calls: for each
// instance, fsync of the staged data, link to its name, fsync of the
// series directory, the SQLite commit's fsync of its WAL, and only then
// the response.
func TestDurabilityOrderStrace(t *testing.T) {
	strace, err := exec.LookPath("strace")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("strace not installed")
		}
		t.Skip("strace not installed")
	}
	dir := t.TempDir()
	log := filepath.Join(dir, "trace")
	cmd := exec.Command(strace, "-f", "-y", "-o", log, "-e", "trace=fsync,fdatasync,linkat,write", os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "OTONODE_STRACE_CHILD="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	// Reduce the trace to the events that matter, in order.
	var ev []string
	re := regexp.MustCompile(`(fsync|fdatasync|linkat|write)\((\d+<([^>]*)>)?(.*)`)
	for _, l := range strings.Split(string(b), "\n") {
		m := re.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		call, path, rest := m[1], m[3], m[4]
		switch {
		case call == "linkat":
			ev = append(ev, "link")
		case (call == "fsync" || call == "fdatasync") && strings.HasSuffix(path, ".part"):
			ev = append(ev, "fsync data")
		case (call == "fsync" || call == "fdatasync") && strings.HasSuffix(path, "/1.2.3.4"):
			ev = append(ev, "fsync series dir")
		case (call == "fsync" || call == "fdatasync") && strings.HasSuffix(path, "index.db-wal"):
			ev = append(ev, "fsync index")
		case call == "write" && strings.Contains(rest, "RESPONSE"):
			ev = append(ev, "response")
		}
	}
	got := strings.Join(ev, ",")
	// Within one instance: data, link, directory, index, response. The
	// first instance also creates the study and series directories.
	want := regexp.MustCompile(`^(fsync index,)*` +
		`fsync data,link,fsync series dir,(fsync index,)+response,` +
		`fsync data,link,fsync series dir,(fsync index,)+response(,fsync index)*$`)
	if !want.MatchString(got) {
		t.Errorf("system call order:\n%s", got)
	}
	t.Log(got)
}
