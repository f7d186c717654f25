package store

import (
	"bytes"
	"context"
	"encoding/binary"
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
// writing "RESPONSE n" to stdout where the SCP would answer, then closes
// the store, which writes the instance files.
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
	for i, sop := range straceSOPs {
		if _, err := g.Store(ctx, bytes.NewReader(dataSet("1.2.3", "1.2.3.4", sop, i)), meta(sop)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		os.Stdout.WriteString(fmt.Sprintf("RESPONSE %d\n", i))
	}
	if err := fs.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

var straceSOPs = []string{"1.2.3.4.7.1", "1.2.3.4.7.2"}

// TestDurabilityOrderStrace traces the real system calls. For each
// instance: its record written to a segment, the segment fdatasynced, the
// SQLite commit's fsync of its WAL, and only then the response. Later, in
// the background: the instance file fsynced, its series directory
// fsynced, and only then a segment mark that moves past the record.
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
	cmd := exec.Command(strace, "-f", "-y", "-xx", "-s", "48", "-o", log, "-e", "trace=fsync,fdatasync,pwrite64,write",
		os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "OTONODE_STRACE_CHILD="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	ev := straceEvents(string(b))
	var names []string
	for _, e := range ev {
		names = append(names, e.name)
	}
	t.Log(strings.Join(names, ","))
	if err := checkDurabilityOrder(ev, straceSOPs); err != nil {
		t.Error(err)
	}
}

// straceEvent is a system call that matters for durability.
type straceEvent struct {
	name string // record, mark, sync segment, sync file SOP, sync series dir, sync index, response
	seg  string // the segment file of a record or mark
	end  int64  // a record: where it ends; a mark: its value
}

var (
	straceLine   = regexp.MustCompile(`(fsync|fdatasync|pwrite64|write)\((\d+<([^>]*)>)?(.*)`)
	stracePwrite = regexp.MustCompile(`^, "((?:\\x[0-9a-f]{2})*)"(?:\.\.\.)?, \d+, (\d+)\)`)
)

// straceResumed is the second half of a call that strace -f split in two
// because another thread made a call meanwhile: "PID <... NAME resumed>REST".
var straceResumed = regexp.MustCompile(`^(\d+) +<\.\.\. \w+ resumed>(.*)`)

// straceEvents reduces a trace (strace -f -y -xx -s 48) to the events that
// matter, in order. A call that strace split in two (on a busy machine,
// while another thread made one) is joined and counts where it returned.
func straceEvents(trace string) []straceEvent {
	var ev []straceEvent
	unfinished := map[string]string{} // pid → the first half of its call
	for _, l := range strings.Split(trace, "\n") {
		if head, ok := strings.CutSuffix(l, " <unfinished ...>"); ok {
			pid, _, _ := strings.Cut(head, " ")
			unfinished[pid] = head
			continue
		}
		if r := straceResumed.FindStringSubmatch(l); r != nil {
			l = unfinished[r[1]] + r[2]
			delete(unfinished, r[1])
		}
		m := straceLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		call, path, rest := m[1], string(unescape(m[3])), m[4]
		sync := call == "fsync" || call == "fdatasync"
		switch {
		case call == "pwrite64" && strings.HasSuffix(path, ".seg"):
			p := stracePwrite.FindStringSubmatch(rest)
			if p == nil {
				continue
			}
			b := unescape(p[1])
			off, _ := strconv.ParseInt(p[2], 10, 64)
			switch {
			case len(b) >= 32 && string(b[:8]) == "OTOREC02":
				size := int64(binary.LittleEndian.Uint64(b[24:]))
				end := (off + 512 + size + 4095) / 4096 * 4096
				ev = append(ev, straceEvent{name: "record", seg: path, end: end})
			case len(b) >= 40 && string(b[:8]) == "OTOSEG01":
				ev = append(ev, straceEvent{name: "mark", seg: path, end: int64(binary.LittleEndian.Uint64(b[32:]))})
			}
		case sync && strings.HasSuffix(path, ".seg"):
			ev = append(ev, straceEvent{name: "sync segment", seg: path})
		case sync && strings.HasSuffix(path, ".dcm"):
			ev = append(ev, straceEvent{name: "sync file " + strings.TrimSuffix(filepath.Base(path), ".dcm")})
		case sync && strings.HasSuffix(path, "/1.2.3.4"):
			ev = append(ev, straceEvent{name: "sync series dir"})
		case sync && strings.HasSuffix(path, "index.db-wal"):
			ev = append(ev, straceEvent{name: "sync index"})
		case call == "write" && strings.Contains(string(unescape(rest)), "RESPONSE"):
			ev = append(ev, straceEvent{name: "response"})
		}
	}
	return ev
}

// unescape decodes the bytes that strace -xx writes as \xNN, skipping
// everything else.
func unescape(s string) []byte {
	var b []byte
	for {
		i := strings.Index(s, `\x`)
		if i < 0 || len(s) < i+4 {
			return b
		}
		if v, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil {
			b = append(b, byte(v))
		}
		s = s[i+4:]
	}
}

// checkDurabilityOrder checks the events of straceEvents for the
// instances sops, stored one after the other.
func checkDurabilityOrder(ev []straceEvent, sops []string) error {
	find := func(from int, name string) int {
		for i := max(from, 0); i < len(ev); i++ {
			if ev[i].name == name {
				return i
			}
		}
		return -1
	}
	rsp := -1
	for k, sop := range sops {
		rec := find(rsp+1, "record")
		sync := find(rec, "sync segment")
		idx := find(sync, "sync index")
		next := find(rsp+1, "response")
		if rec < 0 || !(rec < sync && sync < idx && idx < next) {
			return fmt.Errorf("instance %d: record %d, segment sync %d, index sync %d, response %d", k, rec, sync, idx, next)
		}
		rsp = next
		// In the background: file, directory, then the mark past the
		// record, durable.
		f := find(rec, "sync file "+sop)
		d := find(f, "sync series dir")
		if f < 0 || d < 0 {
			return fmt.Errorf("%s: file sync %d, directory sync %d", sop, f, d)
		}
		released := -1
		for i := rec; i < len(ev); i++ {
			if ev[i].name == "mark" && ev[i].seg == ev[rec].seg && ev[i].end >= ev[rec].end {
				released = i
				break
			}
		}
		if released < 0 || released < d || find(released, "sync segment") < 0 {
			return fmt.Errorf("%s: file sync %d, directory sync %d, mark past the record %d", sop, f, d, released)
		}
	}
	return nil
}

// A call that strace split in two (another thread made a call meanwhile)
// is one event, where it returned: on a busy machine the trace of
// TestDurabilityOrderStrace has such calls, and a record missed made it
// fail.
func TestStraceEventsJoinsSplitCalls(t *testing.T) {
	// strace -xx writes every byte of data and paths as \xNN.
	hex := func(b []byte) string {
		var x strings.Builder
		for _, c := range b {
			fmt.Fprintf(&x, `\x%02x`, c)
		}
		return x.String()
	}
	hdr := append([]byte("OTOREC02"), make([]byte, 16)...)
	hdr = binary.LittleEndian.AppendUint64(hdr, 1000)
	seg, wal := hex([]byte("/d/seg/00000001.seg")), hex([]byte("/d/index.db-wal"))
	trace := strings.Join([]string{
		`100 pwrite64(7<` + seg + `>, "` + hex(hdr) + `"..., 512, 4096 <unfinished ...>`,
		`101 fdatasync(8<` + wal + `> <unfinished ...>`,
		`100 <... pwrite64 resumed>) = 512`,
		`100 fdatasync(7<` + seg + `>) = 0`,
		`101 <... fdatasync resumed>) = 0`,
	}, "\n")
	var got []string
	for _, e := range straceEvents(trace) {
		got = append(got, e.name)
		if e.name == "record" && e.end != 8192 {
			t.Errorf("record ends at %d, want 8192", e.end)
		}
	}
	if want := "record,sync segment,sync index"; strings.Join(got, ",") != want {
		t.Errorf("events %q, want %q", strings.Join(got, ","), want)
	}
}
