package scp

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/dimse/storescu"
)

func dial(t testing.TB, n *Node, calling string) (*dimse.Association, error) {
	return dimse.Dial(context.Background(), n.DICOMAddr(), dimse.DialOptions{CallingAETitle: calling,
		CalledAETitle: n.Config.DICOM.AETitle, Proposals: dimse.StorageProposals(ctImage), ARTIMTimeout: 5 * time.Second})
}

// TestAssociationPolicy: only allowed calling AE titles (and, when pinned,
// only from their address) get an association; the wrong called AE title
// is rejected too.
func TestAssociationPolicy(t *testing.T) {
	c := testConfig(t)
	c.DICOM.AllowedCallers = []string{"CT1", "PINNED@10.1.2.3", "LOCAL@127.0.0.0/8"}
	n := startNode(t, c)
	tests := []struct {
		calling, called string
		want            error
	}{
		{"CT1", c.DICOM.AETitle, nil},
		{"LOCAL", c.DICOM.AETitle, nil},
		{"INTRUDER", c.DICOM.AETitle, dimse.ErrCallingAETitleNotRecognized},
		{"PINNED", c.DICOM.AETitle, dimse.ErrCallingAETitleNotRecognized},
		{"CT1", "SOMEONE", dimse.ErrCalledAETitleNotRecognized},
	}
	for _, tc := range tests {
		a, err := dimse.Dial(context.Background(), n.DICOMAddr(), dimse.DialOptions{CallingAETitle: tc.calling,
			CalledAETitle: tc.called, ARTIMTimeout: 5 * time.Second})
		if tc.want == nil {
			if err != nil {
				t.Errorf("%s→%s: %v", tc.calling, tc.called, err)
				continue
			}
			if err := a.Echo(context.Background()); err != nil {
				t.Errorf("echo: %v", err)
			}
			a.Release(context.Background())
			continue
		}
		if !errors.Is(err, tc.want) {
			t.Errorf("%s→%s: got %v, want %v", tc.calling, tc.called, err, tc.want)
		}
	}
}

// TestRefusals: a UID that tries to leave the data directory and a data
// set that contradicts its command are refused with their failure status
// and Error Comment, nothing is stored, and the association goes on.
func TestRefusals(t *testing.T) {
	n := startNode(t, testConfig(t))
	a, err := dial(t, n, "CT1")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release(context.Background())
	root := uidRoot()
	s := seriesSpec{Study: root + ".1", Series: root + ".2", Number: 1, N: 1, Thickness: "0.6"}
	_, ds := s.dataSet(0)
	tests := []struct {
		name, sop string
		data      []byte
		want      dimse.Status
	}{
		{"dot-dot UID", "1.2.3/../../etc", ds, dimse.StatusCannotUnderstand},
		{"dot-dot only", "..", ds, dimse.StatusCannotUnderstand},
		{"data set of another instance", root + ".99", ds, dimse.StatusDataSetDoesNotMatchClass},
		{"not a data set", root + ".98", []byte("\xff\xff\xff\xffgarbage"), dimse.StatusCannotUnderstand},
	}
	for _, tc := range tests {
		_, err := a.Store(context.Background(), dimse.Instance{SOPClassUID: ctImage, SOPInstanceUID: tc.sop,
			TransferSyntaxUID: explicit, DataSet: bytes.NewReader(tc.data)})
		var se *dimse.StatusError
		if !errors.As(err, &se) {
			t.Fatalf("%s: got %v, want a failure status", tc.name, err)
		}
		if se.Status.Class() != dimse.ClassFailure || (tc.want != 0 && se.Status&0xff00 != tc.want&0xff00) {
			t.Errorf("%s: status %v, want %v", tc.name, se.Status, tc.want)
		}
		if se.ErrorComment == "" {
			t.Errorf("%s: no Error Comment", tc.name)
		}
	}
	// The same association still stores a good instance.
	sop, ds := s.dataSet(0)
	if _, err := a.Store(context.Background(), dimse.Instance{SOPClassUID: ctImage, SOPInstanceUID: sop,
		TransferSyntaxUID: explicit, DataSet: bytes.NewReader(ds)}); err != nil {
		t.Fatal(err)
	}
	if inst, err := n.Index.Instances(context.Background(), s.Series); err != nil || len(inst) != 1 {
		t.Fatalf("indexed %d, %v", len(inst), err)
	}
	// Instance files follow their durable segment record in the background.
	if err := n.Files.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	matches, _ := filepath.Glob(filepath.Join(n.Files.Dir(), "*", "*", "*"))
	if len(matches) != 1 {
		t.Fatalf("files on disk: %v", matches)
	}
}

// TestWatermark: above the configured quota C-STOREs get 0xA700 (nothing
// half-written); below the free-space watermark new associations are
// rejected, transiently.
func TestWatermark(t *testing.T) {
	c := testConfig(t)
	root := uidRoot()
	s := seriesSpec{Study: root + ".1", Series: root + ".2", Number: 1, N: 20, Thickness: "0.6"}
	_, one := s.dataSet(0)
	c.Storage.MaxBytes = int64(3*len(one) + 3*400) // room for about three instance files
	n := startNode(t, c)
	a, err := dial(t, n, "CT1")
	if err != nil {
		t.Fatal(err)
	}
	stored, refused := 0, 0
	for i := range s.N {
		sop, ds := s.dataSet(i)
		_, err := a.Store(context.Background(), dimse.Instance{SOPClassUID: ctImage, SOPInstanceUID: sop,
			TransferSyntaxUID: explicit, DataSet: bytes.NewReader(ds)})
		switch {
		case err == nil:
			stored++
		case errors.Is(err, dimse.StatusOutOfResources):
			refused++
		default:
			t.Fatalf("instance %d: %v", i, err)
		}
	}
	a.Release(context.Background())
	if stored == 0 || refused == 0 || stored > 4 {
		t.Fatalf("stored %d, refused %d", stored, refused)
	}
	inst, _ := n.Index.Instances(context.Background(), s.Series)
	if len(inst) != stored {
		t.Fatalf("%d indexed, %d acknowledged", len(inst), stored)
	}

	// Past the free-space watermark, associations are refused outright.
	c2 := testConfig(t)
	c2.Storage.MinFreeBytes = 1 << 60
	n2 := startNode(t, c2)
	if _, err := dial(t, n2, "CT1"); !errors.Is(err, &dimse.RejectError{Result: dimse.RejectedTransient}) {
		t.Fatalf("association above the watermark: %v", err)
	}
}

// TestCorpus pushes every file of the shared corpus: each is stored or
// refused with a failure status (or its SOP class or encoding is not
// accepted at negotiation), the push never loses its association, and the
// node answers C-ECHO afterwards.
func TestCorpus(t *testing.T) {
	const corpus = "/work/shared/testdata/dicom-corpus"
	fs, _, err := storescu.Scan([]string{corpus})
	need(t, "the DICOM corpus", err)
	if len(fs) == 0 {
		need(t, "the DICOM corpus", errors.New("no DICOM files"))
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			c := testConfig(t)
			b.setup(t, &c)
			c.DICOM.MaxPDULength = 256 << 10
			n := startNode(t, c)
			res, err := storescu.Push(context.Background(), n.DICOMAddr(), dimse.DialOptions{CallingAETitle: "CORPUS",
				CalledAETitle: c.DICOM.AETitle, ARTIMTimeout: 10 * time.Second, DIMSETimeout: 60 * time.Second}, fs, nil)
			if err != nil {
				t.Fatalf("push broke off: %v (%+v)", err, res)
			}
			if res.Stored+res.Warnings+len(res.Failed) != len(fs) && res.Stored+len(res.Failed) != len(fs) {
				t.Fatalf("%d files, %d stored, %d warnings, %d failed", len(fs), res.Stored, res.Warnings, len(res.Failed))
			}
			kinds := map[string]int{}
			for _, e := range res.Failed {
				var se *dimse.StatusError
				switch {
				case errors.As(e, &se) && se.Status.Class() == dimse.ClassFailure:
					kinds[se.Status.String()]++
				case errors.Is(e, dimse.ErrNoContext):
					kinds["not negotiated"]++
				default:
					t.Errorf("not a refusal: %v", e)
				}
			}
			t.Logf("%d files: %d stored, refused %v", len(fs), res.Stored, kinds)
			if res.Stored < len(fs)/2 {
				t.Errorf("only %d of %d stored", res.Stored, len(fs))
			}
			a, err := dimse.Dial(context.Background(), n.DICOMAddr(), dimse.DialOptions{CallingAETitle: "CT1", CalledAETitle: c.DICOM.AETitle})
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Echo(context.Background()); err != nil {
				t.Fatal(err)
			}
			a.Release(context.Background())
		})
	}
}
