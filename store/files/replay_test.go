package files

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// A record whose payload was damaged after it was acknowledged (a flipped
// byte) is refused at replay with a log line naming it; the records after
// it in the same segment are still replayed.
func TestJournalReplayRefusesCorruptRecord(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	l, err := Open(ctx, dir, Options{FS: brokenFS{}})
	if err != nil {
		t.Fatal(err)
	}
	sops := []string{"1.2.3.70", "1.2.3.71", "1.2.3.72"}
	var sts []Stored
	for _, sop := range sops {
		sts = append(sts, put(t, l, sop, dataSet(sop, "A")))
	}
	l.Close() // the files cannot be written: all stay in the segment
	seg := filepath.Join(dir, segDir, "00000001.seg")
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.LastIndex(b, []byte(sops[1]))
	if i < 0 {
		t.Fatal("record not in the newest segment")
	}
	b[i+2] ^= 0x01
	if err := os.WriteFile(seg, b, 0o644); err != nil {
		t.Fatal(err)
	}

	var logged bytes.Buffer
	l2, err := Open(ctx, dir, Options{Log: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	for k, st := range sts {
		_, err := os.Stat(filepath.Join(dir, filepath.FromSlash(st.Location)))
		if k == 1 && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("corrupt record %s replayed: %v", st.Location, err)
		}
		if k != 1 && err != nil {
			t.Errorf("record %s after a corrupt one not replayed: %v", st.Location, err)
		}
	}
	if s := logged.String(); !strings.Contains(s, "refused at replay") || !strings.Contains(s, sts[1].Location) ||
		!strings.Contains(s, "CRC-32C") {
		t.Errorf("no clear log of the refused record: %q", s)
	}
}

// A record that a version with SHA-256 in its records left (OTOREC01: the
// CRC-32C over the whole payload) is still replayed.
func TestJournalReplaysVersion1Records(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	l, err := Open(ctx, dir, Options{FS: brokenFS{}})
	if err != nil {
		t.Fatal(err)
	}
	ds := dataSet("1.2.3.73", "A")
	st := put(t, l, "1.2.3.73", ds)
	l.Close()
	seg := filepath.Join(dir, segDir, "00000001.seg")
	f, err := os.OpenFile(seg, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	h, ok := readSegHeader(f)
	if !ok {
		t.Fatal("no segment header")
	}
	hdr := make([]byte, recHeaderSize)
	if _, err := f.ReadAt(hdr, h.mark); err != nil {
		t.Fatal(err)
	}
	r, ok := decodeRecord(hdr, h.epoch)
	if !ok || r.loc != st.Location {
		t.Fatalf("record %+v %v", r, ok)
	}
	// Rewrite it the way version 1 did.
	p := part10(t, "1.2.3.73", ds)
	v1 := append([]byte(recMagicV1), h.epoch[:]...)
	v1 = append(v1, hdr[24:32]...)
	v1 = append(v1, le32(crcOf(p))...)
	v1 = append(v1, hdr[36:40]...)
	sum := sha256.Sum256(ds)
	v1 = append(v1, sum[:]...)
	v1 = append(v1, hdr[recFixed-2:recFixed+len(r.loc)]...)
	v1 = append(v1, le32(crcOf(v1))...)
	if _, err := f.WriteAt(v1, h.mark); err != nil {
		t.Fatal(err)
	}
	f.Close()
	l2, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(st.Location))); err != nil || !bytes.Equal(got, p) {
		t.Errorf("version 1 record not replayed: %v", err)
	}
}

// The background writer reports the SHA-256 of each data set once its
// file is durable; Put itself leaves it zero.
func TestHashSinkAfterMaterialisation(t *testing.T) {
	ctx := context.Background()
	l, err := Open(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var mu sync.Mutex
	got := map[string]Hashed{}
	l.SetHashSink(func(_ context.Context, hs []Hashed) {
		mu.Lock()
		defer mu.Unlock()
		for _, h := range hs {
			got[h.Location] = h
		}
	})
	a, b := dataSet("1.2.3.74", "A"), dataSet("1.2.3.74", "B")
	sa, sb := put(t, l, "1.2.3.74", a), put(t, l, "1.2.3.74", b)
	if sa.DataSetSHA256 != ([32]byte{}) {
		t.Error("Put hashed on the acknowledgement path")
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, c := range []struct {
		st      Stored
		ds      []byte
		version int
	}{{sa, a, 1}, {sb, b, 2}} {
		h, ok := got[c.st.Location]
		if !ok || h.DataSetSHA256 != sha256.Sum256(c.ds) || h.SOPInstanceUID != "1.2.3.74" || h.Version != c.version {
			t.Errorf("%s: hash %+v %v", c.st.Location, h, ok)
		}
	}
}

func crcOf(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

func le32(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }
