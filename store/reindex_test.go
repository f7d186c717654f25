package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/otonode/otonode/store/files"
	"github.com/otonode/otonode/store/index"
)

// failingIndex fails the index step, as a crash between the durable file
// and the index commit would.
type failingIndex struct{ Index }

func (failingIndex) RecordInstance(context.Context, index.Instance) (index.Recorded, error) {
	return index.Recorded{}, errors.New("power cut")
}

func TestReindex(t *testing.T) {
	ctx := context.Background()
	fs, _ := files.Open(ctx, t.TempDir(), files.Options{})
	x := openIndex(t)
	g := &Ingest{Files: fs, Index: x}
	if _, err := g.Store(ctx, bytes.NewReader(dataSet("1.6", "1.6.1", "1.6.1.1", 1)), meta("1.6.1.1")); err != nil {
		t.Fatal(err)
	}
	crashed := &Ingest{Files: fs, Index: failingIndex{x}}
	for _, sop := range []string{"1.6.1.2", "1.6.1.3"} {
		if _, err := crashed.Store(ctx, bytes.NewReader(dataSet("1.6", "1.6.1", sop, 2)), meta(sop)); err == nil {
			t.Fatal("store with a failing index succeeded")
		}
	}
	rep, err := g.Reindex(ctx, time.Time{})
	// The first instance was indexed with no hash sink: Reindex hashes it.
	if err != nil || rep != (ReindexReport{Checked: 3, Indexed: 2, Hashed: 1}) {
		t.Fatalf("%+v %v", rep, err)
	}
	s, err := x.Series(ctx, "1.6.1")
	if err != nil || s.Instances != 3 {
		t.Fatalf("%+v %v", s, err)
	}
	ins, _ := x.Instances(ctx, "1.6.1")
	if len(ins) != 3 || ins[1].SOPInstanceUID != "1.6.1.2" {
		t.Fatalf("instances %+v", ins)
	}
	for k, in := range ins {
		sum := sha256.Sum256(dataSet("1.6", "1.6.1", in.SOPInstanceUID, min(k+1, 2)))
		if in.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("%s: SHA-256 %q", in.SOPInstanceUID, in.SHA256)
		}
	}
	if rep, _ := g.Reindex(ctx, time.Time{}); rep.Indexed != 0 || rep.Hashed != 0 {
		t.Errorf("second reindex: %+v", rep)
	}
	if rep, _ := g.Reindex(ctx, time.Now().Add(time.Hour)); rep.Checked != 0 {
		t.Errorf("reindex since the future checked %d", rep.Checked)
	}
}
