package files

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// sizedDataSet is dataSet(sop) with an OB element that makes the whole
// Part 10 file of sop exactly size bytes (size large enough).
func sizedDataSet(t *testing.T, sop string, size int) []byte {
	t.Helper()
	ds := dataSet(sop, "A")
	pad := size - len(part10(t, sop, ds)) - 12
	if pad < 0 || pad%2 == 1 {
		t.Fatalf("size %d cannot be made", size)
	}
	ds = binary.LittleEndian.AppendUint16(ds, 0x0011) // a private group after the UIDs
	ds = binary.LittleEndian.AppendUint16(ds, 0x1010)
	ds = append(ds, "OB\x00\x00"...)
	ds = binary.LittleEndian.AppendUint32(ds, uint32(pad))
	for i := range pad {
		ds = append(ds, byte(i*7+i/4096))
	}
	return ds
}

// TestJournalRecordSizes stores instances around the sizes where a record
// changes shape (one write, a first chunk exactly full, several chunks):
// the locator sees the payload, the instance file is the Part 10 file, a
// re-send is a duplicate, and a replay from the segments gives the same
// files; with direct I/O and on a file system without it.
func TestJournalRecordSizes(t *testing.T) {
	for _, plain := range []bool{false, true} {
		t.Run(fmt.Sprintf("plain=%v", plain), func(t *testing.T) { testRecordSizes(t, plain) })
	}
}

func testRecordSizes(t *testing.T, plain bool) {
	head := recChunk - recHeaderSize // payload that fills the first chunk
	sizes := []int{head - 2*directAlign, head, head + 2, recChunk, 3*recChunk + 1000, 3*recChunk + head}
	ctx := context.Background()
	dir := t.TempDir()
	// First into a store that cannot write instance files: the records
	// stay in the segments, replayed by the next Open. Then into that one,
	// whose files are written in the background.
	l, err := Open(ctx, dir, Options{FS: brokenFS{plain: plain}})
	if err != nil {
		t.Fatal(err)
	}
	type put struct {
		sop  string
		want []byte
		loc  string
	}
	var replayed, written []put
	store := func(l *Local, kept string) (puts []put) {
		for i, size := range sizes {
			sop := fmt.Sprintf("1.2.3.%s.%d", kept, i)
			ds := sizedDataSet(t, sop, size)
			want := part10(t, sop, ds)
			locate := func(r io.ReaderAt, off, n int64) (string, string, error) {
				got := make([]byte, n)
				if _, err := r.ReadAt(got, 0); err != nil {
					return "", "", fmt.Errorf("locator read: %w", err)
				}
				if !bytes.Equal(got, want) || off != int64(len(want)-len(ds)) {
					return "", "", fmt.Errorf("locator sees other bytes (%d, want %d)", len(got), len(want))
				}
				return study, series, nil
			}
			st, err := l.Put(ctx, bytes.NewReader(ds), meta(sop), locate)
			if err != nil {
				t.Fatalf("size %d: %v", size, err)
			}
			if st.Outcome != Created || st.Size != int64(size) {
				t.Fatalf("size %d: %+v", size, st)
			}
			again, err := l.Put(ctx, bytes.NewReader(ds), meta(sop), locate)
			if err != nil || again.Outcome != Duplicate {
				t.Fatalf("size %d, sent again: %+v %v", size, again, err)
			}
			puts = append(puts, put{sop, want, st.Location})
		}
		return puts
	}
	if got := l.j.all[0].direct != nil; got == plain {
		t.Fatalf("direct I/O %v, want %v", got, !plain)
	}
	replayed = store(l, "9")
	l.Close()
	l2, err := Open(ctx, dir, Options{FS: brokenFS{plain: plain, only: "none"}})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	for _, p := range replayed {
		got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(p.loc)))
		if err != nil || !bytes.Equal(got, p.want) {
			t.Errorf("%s after replay: %d bytes, %v", p.sop, len(got), err)
		}
	}
	written = store(l2, "8")
	for _, p := range written {
		if !bytes.Equal(readStored(t, l2, p.loc), p.want) {
			t.Errorf("%s: stored bytes differ", p.sop)
		}
	}
}

// FuzzRecordWriter writes a payload in fragments of the sizes the input
// gives (as PDVs arrive) into a record and reads it back: from memory and
// the segment through payload, and from the segment alone after finish.
func FuzzRecordWriter(f *testing.F) {
	f.Add(uint32(1000), []byte{1, 2, 3})
	f.Add(uint32(recChunk-recHeaderSize), []byte{0xff, 0xff})
	f.Add(uint32(recChunk), []byte{0x40, 0, 0x10})
	f.Add(uint32(2*recChunk+5), []byte{7})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, size uint32, splits []byte) {
		size %= 3*recChunk + 1
		if len(splits) == 0 {
			splits = []byte{0}
		}
		seg, err := os.CreateTemp(dir, "*.seg")
		if err != nil {
			t.Fatal(err)
		}
		defer os.Remove(seg.Name())
		defer seg.Close()
		var w File = seg
		if d := openDirect(OS{}, seg.Name()); d != nil {
			w = d
			defer d.Close()
		}
		want := make([]byte, size)
		for i := range want {
			want[i] = byte(i*31 + i>>12)
		}
		const off = 2 * directAlign
		rw := newRecordWriter(w, seg, off)
		defer rw.release()
		for p, i := want, 0; len(p) > 0; i++ {
			// Fragments of 1 byte to 64 KiB, from the input's bytes.
			k := min(len(p), 1+int(splits[i%len(splits)])*(int(splits[(i+1)%len(splits)])+1))
			if n, err := rw.Write(p[:k]); err != nil || n != k {
				t.Fatalf("write: %d %v", n, err)
			}
			p = p[k:]
		}
		if err := rw.flushTail(); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, size)
		if _, err := io.ReadFull(rw.payload(), got); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("payload before finish: %v", err)
		}
		hdr := bytes.Repeat([]byte{0xa5}, recHeaderSize)
		if err := rw.finish(hdr); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(seg.Name())
		if err != nil {
			t.Fatal(err)
		}
		end := off + recHeaderSize + int(size)
		if len(b) < end || int64(len(b))%directAlign != 0 && w != File(seg) {
			t.Fatalf("segment is %d bytes, record ends at %d", len(b), end)
		}
		if !bytes.Equal(b[off:off+recHeaderSize], hdr) || !bytes.Equal(b[off+recHeaderSize:end], want) {
			t.Fatal("segment holds other bytes")
		}
		var s segment
		s.f, s.direct = seg, nil
		if w != File(seg) {
			s.direct = w
		}
		buf := alignedBuf(recChunk)
		back, err := io.ReadAll(s.section(off+recHeaderSize, int64(size), buf))
		if err != nil || !bytes.Equal(back, want) {
			t.Fatalf("read back: %d bytes, %v", len(back), err)
		}
	})
}
