package qr_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/scp/qr"
)

// Compressed corpus files: C-MOVE must decompress them for a storescp
// that takes only uncompressed syntaxes.
const (
	jpegLL70 = "pydicom-data/data_store/data/JPGLosslessP14SV1_1s_1f_8b.dcm"
	rleMR    = "pydicom/src/pydicom/data/test_files/MR_small_RLE.dcm"
	jpegLL57 = "dicomParser/testImages/encapsulated/multi-frame/CT0012.fragmented_no_bot_jpeg_lossless.57.dcm"
)

// findscuUIDs runs findscu with -X and returns the unique key of each
// extracted response, sorted, and the responses.
func findscu(t *testing.T, ctx context.Context, n *node, args ...string) ([]*dimse.Identifier, string) {
	t.Helper()
	dir := t.TempDir()
	all := append([]string{"-aec", "OTONODE", "-X", "-od", dir}, args...)
	all = append(all, n.srv.Host(), n.srv.Port())
	out, err := run(t, ctx, "findscu", all...)
	if err != nil {
		t.Fatalf("findscu %v: %v\n%s", args, err, out)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "rsp*.dcm"))
	sort.Strings(names)
	var ids []*dimse.Identifier
	for _, p := range names {
		ids = append(ids, readIdentifierFile(t, p))
	}
	return ids, out
}

func TestFindscu(t *testing.T) {
	n := newNode(t, backends[0].open(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tests := []struct {
		name string
		args []string
		key  dimse.Tag
		want string
	}{
		{"patient root PATIENT", []string{"-P", "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID", "-k", "PatientName", "-k", "PatientBirthDate"}, 0x00100020, "[P1 P2]"},
		{"patient root STUDY", []string{"-P", "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=P1", "-k", "StudyInstanceUID", "-k", "StudyDate"}, 0x0020000D, "[2.25.1000.1 2.25.1000.2]"},
		{"patient root SERIES", []string{"-P", "-k", "QueryRetrieveLevel=SERIES", "-k", "PatientID=P1", "-k", "StudyInstanceUID=2.25.1000.1", "-k", "SeriesInstanceUID", "-k", "Modality"}, 0x00080060, "[CT SEG]"},
		{"patient root IMAGE", []string{"-P", "-k", "QueryRetrieveLevel=IMAGE", "-k", "PatientID=P2", "-k", "StudyInstanceUID=2.25.1000.3", "-k", "SeriesInstanceUID=2.25.1000.3.1", "-k", "SOPInstanceUID"}, 0x00080018, "[2.25.1000.3.1.1 2.25.1000.3.1.2]"},
		{"study root STUDY wildcard", []string{"-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientName=Doe*", "-k", "StudyInstanceUID"}, 0x0020000D, "[2.25.1000.3]"},
		{"study root STUDY date range", []string{"-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyDate=20260101-", "-k", "StudyInstanceUID"}, 0x0020000D, "[2.25.1000.1 2.25.1000.2]"},
		{"study root SERIES", []string{"-S", "-k", "QueryRetrieveLevel=SERIES", "-k", "StudyInstanceUID=2.25.1000.1", "-k", "SeriesInstanceUID", "-k", "NumberOfSeriesRelatedInstances"}, 0x00201209, "[1 3]"},
		{"study root IMAGE number range", []string{"-S", "-k", "QueryRetrieveLevel=IMAGE", "-k", "SeriesInstanceUID=2.25.1000.1.1", "-k", "InstanceNumber", "-k", "SOPInstanceUID=*"}, 0x00200013, "[1 2 3]"},
		{"study root STUDY question mark", []string{"-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "AccessionNumber=ACC?", "-k", "ModalitiesInStudy"}, 0x00080061, `[CT CT\SEG MR]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ids, out := findscu(t, ctx, n, tt.args...)
			var got []string
			for _, id := range ids {
				got = append(got, id.String(tt.key))
			}
			sort.Strings(got)
			if fmt.Sprint(got) != tt.want {
				t.Errorf("got %v, want %s\n%s", got, tt.want, out)
			}
		})
	}
}

// TestFindscuCancel cancels after the first response of a query with many
// matches: the SCP stops early and answers Cancel.
func TestFindscuCancel(t *testing.T) {
	idx := backends[0].open(t)
	const many = 1000
	addRows(t, idx, "2.25.1000.9", many)
	n := newNode(t, idx)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ids, out := findscu(t, ctx, n, "-v", "-S", "--cancel", "1", "-k", "QueryRetrieveLevel=IMAGE", "-k", "SeriesInstanceUID=2.25.1000.9.1", "-k", "SOPInstanceUID")
	if len(ids) >= many || !strings.Contains(out, "Final Find Response (Cancel") {
		t.Errorf("%d of %d responses after cancelling at 1\n%s", len(ids), many, lastLines(out, 5))
	}
	// The association went on: a second query on a new one works.
	if ids, _ := findscu(t, ctx, n, "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=2.25.1000.9"); len(ids) != 1 {
		t.Errorf("after cancel: %d matches", len(ids))
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

func TestMovescuToStorescp(t *testing.T) {
	jl := corpus(t, jpegLL70)
	rl := corpus(t, rleMR)
	jl57 := corpus(t, jpegLL57)
	n := newNode(t, backends[0].open(t), jl, rl, jl57)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addr, dir := storescp(t, "STORESCP")
	n.svc.SetDestination("STORESCP", qr.Destination{Addr: addr})
	out, err := run(t, ctx, "movescu", "-S", "-aec", "OTONODE", "-aem", "STORESCP", "-k", "QueryRetrieveLevel=STUDY",
		"-k", "StudyInstanceUID=2.25.1000.1", n.srv.Host(), n.srv.Port())
	if err != nil {
		t.Fatalf("movescu: %v\n%s", err, out)
	}
	got := received(t, dir)
	if fmt.Sprint(keys(got)) != "[2.25.1000.1.1.1 2.25.1000.1.1.2 2.25.1000.1.1.3 2.25.1000.1.2.1]" {
		t.Errorf("storescp received %v\n%s", keys(got), out)
	}
	// The compressed instances arrive decompressed, their pixels equal to
	// dcmtk's own decompression.
	for i, p := range []string{jl, rl, jl57} {
		fm, _ := metaOf(t, p)
		dir2 := t.TempDir()
		dest2 := fmt.Sprintf("D%d", i)
		addr2, _ := storescp(t, dest2, "-od", dir2)
		n.svc.SetDestination(dest2, qr.Destination{Addr: addr2})
		out, err := run(t, ctx, "movescu", "-P", "-aec", "OTONODE", "-aem", dest2, "-k", "QueryRetrieveLevel=IMAGE",
			"-k", "PatientID="+patientOf(t, n, fm.MediaStorageSOPInstanceUID), "-k", "StudyInstanceUID="+studyOf(t, n, fm.MediaStorageSOPInstanceUID),
			"-k", "SeriesInstanceUID="+seriesOf(t, n, fm.MediaStorageSOPInstanceUID), "-k", "SOPInstanceUID="+fm.MediaStorageSOPInstanceUID,
			n.srv.Host(), n.srv.Port())
		if err != nil {
			t.Fatalf("movescu %s: %v\n%s", p, err, out)
		}
		got := received(t, dir2)
		if got[fm.MediaStorageSOPInstanceUID] != dimse.ExplicitVRLittleEndian {
			t.Errorf("%s: received %v, want it in explicit VR little endian\n%s", filepath.Base(p), got, out)
			continue
		}
		samePixels(t, ctx, p, filepath.Join(dir2, onlyFile(t, dir2)))
	}
}

// samePixels compares the pixel data of our decompressed file with
// dcmtk's decompression of the original.
func samePixels(t *testing.T, ctx context.Context, orig, ours string) {
	t.Helper()
	ref := filepath.Join(t.TempDir(), "ref.dcm")
	tool := "dcmdjpeg"
	if strings.Contains(orig, "RLE") {
		tool = "dcmdrle"
	}
	if out, err := run(t, ctx, tool, orig, ref); err != nil {
		t.Fatalf("%s: %v\n%s", tool, err, out)
	}
	pa := pixelDump(t, ctx, ref)
	pb := pixelDump(t, ctx, ours)
	if !bytes.Equal(pa, pb) || len(pa) == 0 {
		t.Errorf("%s: pixel data differs from %s's (%d vs %d bytes)", filepath.Base(orig), tool, len(pa), len(pb))
	}
}

// pixelDump writes the pixel data of a file to bytes with dcmdump +W.
func pixelDump(t *testing.T, ctx context.Context, path string) []byte {
	t.Helper()
	dir := t.TempDir()
	if out, err := run(t, ctx, "dcmdump", "+W", dir, path); err != nil {
		t.Fatalf("dcmdump: %v\n%s", err, out)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*.raw"))
	if len(names) != 1 {
		t.Fatalf("dcmdump +W wrote %v", names)
	}
	b, err := os.ReadFile(names[0])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func onlyFile(t *testing.T, dir string) string {
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("%s holds %d files", dir, len(ents))
	}
	return ents[0].Name()
}

func metaOf(t *testing.T, path string) (dimse.FileMeta, []byte) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br := newBufReader(f)
	fm, err := dimse.ReadFileMeta(br)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(br)
	return fm, b
}

// imageKey looks up one key of an instance through the index.
func imageKey(t *testing.T, n *node, sop, key string) string {
	t.Helper()
	ms, err := n.idx.Find(context.Background(), indexQuery(sop, key))
	if err != nil || len(ms) != 1 {
		t.Fatalf("instance %s: %v, %d matches", sop, err, len(ms))
	}
	return ms[0][key]
}

func patientOf(t *testing.T, n *node, sop string) string { return imageKey(t, n, sop, "PatientID") }
func studyOf(t *testing.T, n *node, sop string) string {
	return imageKey(t, n, sop, "StudyInstanceUID")
}
func seriesOf(t *testing.T, n *node, sop string) string {
	return imageKey(t, n, sop, "SeriesInstanceUID")
}

func TestGetscu(t *testing.T) {
	rl := corpus(t, rleMR)
	n := newNode(t, backends[0].open(t), rl)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	out, err := run(t, ctx, "getscu", "-S", "-aec", "OTONODE", "-od", dir, "-k", "QueryRetrieveLevel=SERIES",
		"-k", "StudyInstanceUID=2.25.1000.3", "-k", "SeriesInstanceUID=2.25.1000.3.1", n.srv.Host(), n.srv.Port())
	if err != nil {
		t.Fatalf("getscu: %v\n%s", err, out)
	}
	got := received(t, dir)
	if fmt.Sprint(keys(got)) != "[2.25.1000.3.1.1 2.25.1000.3.1.2]" {
		t.Errorf("getscu received %v\n%s", keys(got), out)
	}
	for _, in := range fixture[5:] {
		_, ds := metaOf(t, filepath.Join(dir, onlyMatching(t, dir, in.sop)))
		if !bytes.Equal(ds, dataSet(in)) {
			t.Errorf("%s: data set differs from the stored one", in.sop)
		}
	}
	// An RLE instance: getscu proposes uncompressed syntaxes only, so it
	// comes back decompressed, with dcmdrle's pixels.
	fm, _ := metaOf(t, rl)
	dir2 := t.TempDir()
	out, err = run(t, ctx, "getscu", "-P", "-aec", "OTONODE", "-od", dir2, "-k", "QueryRetrieveLevel=IMAGE",
		"-k", "PatientID="+patientOf(t, n, fm.MediaStorageSOPInstanceUID), "-k", "StudyInstanceUID="+studyOf(t, n, fm.MediaStorageSOPInstanceUID),
		"-k", "SeriesInstanceUID="+seriesOf(t, n, fm.MediaStorageSOPInstanceUID), "-k", "SOPInstanceUID="+fm.MediaStorageSOPInstanceUID,
		n.srv.Host(), n.srv.Port())
	if err != nil {
		t.Fatalf("getscu: %v\n%s", err, out)
	}
	if ts := received(t, dir2)[fm.MediaStorageSOPInstanceUID]; ts != dimse.ExplicitVRLittleEndian && ts != dimse.ImplicitVRLittleEndian {
		t.Fatalf("RLE instance came back in %q\n%s", ts, out)
	}
	samePixels(t, ctx, rl, filepath.Join(dir2, onlyFile(t, dir2)))
}

func onlyMatching(t *testing.T, dir, sop string) string {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), sop) {
			return e.Name()
		}
	}
	t.Fatalf("no file for %s in %s", sop, dir)
	return ""
}
