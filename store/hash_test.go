package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/otonode/otonode/store/files"
	"github.com/otonode/otonode/store/index"
)

func instanceHash(t *testing.T, x *index.Index, series, sop string) string {
	t.Helper()
	ins, err := x.Instances(context.Background(), series)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range ins {
		if in.SOPInstanceUID == sop {
			return in.SHA256
		}
	}
	t.Fatalf("%s not indexed", sop)
	return ""
}

// The C-STORE path indexes an instance without its hash; the index gets
// the SHA-256 of the data set once the background writer made its file
// durable.
func TestIndexGetsHashAfterMaterialisation(t *testing.T) {
	ctx := context.Background()
	fs, err := files.Open(ctx, t.TempDir(), files.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	x := openIndex(t)
	g := &Ingest{Files: fs, Index: x}
	fs.SetHashSink(g.RecordHashes)
	var want []string
	for _, sop := range []string{"1.7.1.1", "1.7.1.2"} {
		ds := dataSet("1.7", "1.7.1", sop, 1)
		st, err := g.Store(ctx, bytes.NewReader(ds), meta(sop))
		if err != nil {
			t.Fatal(err)
		}
		if st.DataSetSHA256 != ([32]byte{}) {
			t.Error("the data set was hashed before the response")
		}
		sum := sha256.Sum256(ds)
		want = append(want, hex.EncodeToString(sum[:]))
	}
	if err := fs.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for k, sop := range []string{"1.7.1.1", "1.7.1.2"} {
		if got := instanceHash(t, x, "1.7.1", sop); got != want[k] {
			t.Errorf("%s: SHA-256 %q, want %q", sop, got, want[k])
		}
	}
}

// stuckFS never lets an instance file into place: records stay in their
// segments, so nothing is hashed in the background.
type stuckFS struct{ files.OS }

func (stuckFS) Rename(oldname, newname string) error {
	if strings.HasSuffix(newname, ".dcm") {
		return errors.New("stuck")
	}
	return files.OS{}.Rename(oldname, newname)
}

// A hash that arrives before its instance's index row waits for the row.
func TestHashBeforeIndexRow(t *testing.T) {
	ctx := context.Background()
	fs, err := files.Open(ctx, t.TempDir(), files.Options{FS: stuckFS{}})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	x := openIndex(t)
	g := &Ingest{Files: fs, Index: x}
	early := files.Hashed{Location: "1.8/1.8.1/1.8.1.1.dcm", SOPInstanceUID: "1.8.1.1", Version: 1}
	early.DataSetSHA256[0] = 0xab
	g.RecordHashes(ctx, []files.Hashed{early})
	if _, err := g.Store(ctx, bytes.NewReader(dataSet("1.8", "1.8.1", "1.8.1.1", 1)), meta("1.8.1.1")); err != nil {
		t.Fatal(err)
	}
	if got := instanceHash(t, x, "1.8.1", "1.8.1.1"); got != hex.EncodeToString(early.DataSetSHA256[:]) {
		t.Errorf("SHA-256 %q: the early hash was lost", got)
	}
	if len(g.early) != 0 {
		t.Errorf("%d early hashes left", len(g.early))
	}
}
