package qr_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/scp/qr"
	"github.com/otonode/otonode/store"
	"github.com/otonode/otonode/store/files"
)

// query builds an identifier from keyword=value pairs.
func query(t *testing.T, kv ...string) *dimse.Identifier {
	t.Helper()
	id := &dimse.Identifier{}
	for _, s := range kv {
		k, v, _ := strings.Cut(s, "=")
		tag, vr, ok := dimse.LookupKeyword(k)
		if !ok {
			t.Fatalf("keyword %s", k)
		}
		id.Set(tag, vr, []byte(v))
	}
	return id
}

func dialQR(t *testing.T, ctx context.Context, addr string, ts string, extra ...dimse.Proposal) *dimse.Association {
	t.Helper()
	var props []dimse.Proposal
	for _, c := range []string{dimse.PatientRootFind, dimse.StudyRootFind, dimse.PatientRootMove, dimse.StudyRootMove, dimse.PatientRootGet, dimse.StudyRootGet} {
		props = append(props, dimse.Proposal{AbstractSyntax: c, TransferSyntaxes: []string{ts}})
	}
	props = append(props, extra...)
	a, err := dimse.Dial(ctx, addr, dimse.DialOptions{CalledAETitle: "OTONODE", Proposals: props, RoleSelections: dimse.RetrieveRoles(ctImage)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Release(context.Background()) })
	return a
}

// TestFind runs C-FIND through the SCP on both databases and checks the
// matches and that each response carries exactly the requested keys.
func TestFind(t *testing.T) {
	tests := []struct {
		name  string
		model string
		keys  []string
		want  string // the unique key of each match, sorted, or a status
	}{
		{"patients", dimse.PatientRootFind, []string{"QueryRetrieveLevel=PATIENT", "PatientID=", "PatientName="}, "[P1 P2]"},
		{"patient name wildcard any case (UTF-8)", dimse.PatientRootFind, []string{"SpecificCharacterSet=ISO_IR 192", "QueryRetrieveLevel=PATIENT", "PatientName=müll*"}, "[P1]"},
		{"patient name in Latin-1", dimse.PatientRootFind, []string{"SpecificCharacterSet=ISO_IR 100", "QueryRetrieveLevel=PATIENT", "PatientName=M\xfcller^J\xfcrgen"}, "[P1]"},
		{"studies of a patient, patient root", dimse.PatientRootFind, []string{"QueryRetrieveLevel=STUDY", "PatientID=P1", "StudyInstanceUID="}, "[2.25.1000.1 2.25.1000.2]"},
		{"study date range", dimse.StudyRootFind, []string{"QueryRetrieveLevel=STUDY", "StudyDate=20260101-20261231"}, "[2.25.1000.1 2.25.1000.2]"},
		{"study open range", dimse.StudyRootFind, []string{"QueryRetrieveLevel=STUDY", "StudyDate=-20260105"}, "[2.25.1000.1 2.25.1000.3]"},
		{"study time range", dimse.StudyRootFind, []string{"QueryRetrieveLevel=STUDY", "StudyTime=090000-130000"}, "[2.25.1000.1 2.25.1000.3]"},
		{"accession question mark", dimse.StudyRootFind, []string{"QueryRetrieveLevel=STUDY", "AccessionNumber=ACC?"}, "[2.25.1000.1 2.25.1000.2 2.25.1000.3]"},
		{"UID list", dimse.StudyRootFind, []string{"QueryRetrieveLevel=STUDY", `StudyInstanceUID=2.25.1000.1\2.25.1000.3\9.9`}, "[2.25.1000.1 2.25.1000.3]"},
		{"modalities in study", dimse.StudyRootFind, []string{"QueryRetrieveLevel=STUDY", "ModalitiesInStudy=SEG"}, "[2.25.1000.1]"},
		{"series of a study", dimse.StudyRootFind, []string{"QueryRetrieveLevel=SERIES", "StudyInstanceUID=2.25.1000.1", "Modality="}, "[2.25.1000.1.1 2.25.1000.1.2]"},
		{"series by modality", dimse.PatientRootFind, []string{"QueryRetrieveLevel=SERIES", "PatientID=P1", "StudyInstanceUID=2.25.1000.1", "Modality=CT"}, "[2.25.1000.1.1]"},
		{"images of a series", dimse.StudyRootFind, []string{"QueryRetrieveLevel=IMAGE", "StudyInstanceUID=2.25.1000.1", "SeriesInstanceUID=2.25.1000.1.1", "InstanceNumber="}, "[2.25.1000.1.1.1 2.25.1000.1.1.2 2.25.1000.1.1.3]"},
		{"image by number", dimse.StudyRootFind, []string{"QueryRetrieveLevel=IMAGE", "SeriesInstanceUID=2.25.1000.1.1", "InstanceNumber=2"}, "[2.25.1000.1.1.2]"},
		{"no match", dimse.StudyRootFind, []string{"QueryRetrieveLevel=STUDY", "PatientName=Nobody"}, "[]"},
		{"patient level in study root", dimse.StudyRootFind, []string{"QueryRetrieveLevel=PATIENT", "PatientID="}, "status 0xA900"},
		{"no level", dimse.StudyRootFind, []string{"PatientID="}, "status 0xA900"},
		{"key below level", dimse.StudyRootFind, []string{"QueryRetrieveLevel=STUDY", "SOPInstanceUID=1.2"}, "status 0xA900"},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			n := newNode(t, b.open(t))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for _, ts := range []string{dimse.ExplicitVRLittleEndian, dimse.ImplicitVRLittleEndian} {
				a := dialQR(t, ctx, n.srv.Addr, ts)
				for _, tt := range tests {
					t.Run(tt.name+"/"+ts, func(t *testing.T) {
						q := query(t, tt.keys...)
						var got []string
						err := a.Find(ctx, tt.model, q, func(m *dimse.Identifier) error {
							lv := m.String(0x00080052)
							uk := map[string]dimse.Tag{"PATIENT": 0x00100020, "STUDY": 0x0020000D, "SERIES": 0x0020000E, "IMAGE": 0x00080018}[lv]
							got = append(got, m.String(uk))
							// Exactly the requested keys, plus level, unique
							// key and character set.
							for _, e := range m.Elements() {
								if !q.Has(e.Tag) && e.Tag != uk && e.Tag != 0x00080005 {
									t.Errorf("unrequested %v in response", e.Tag)
								}
							}
							for _, e := range q.Elements() {
								if !m.Has(e.Tag) {
									t.Errorf("requested %v missing from response", e.Tag)
								}
							}
							return nil
						})
						var se *dimse.StatusError
						if errors.As(err, &se) {
							got = []string{fmt.Sprintf("status 0x%04X", uint16(se.Status))}
							if fmt.Sprint(got) != "["+tt.want+"]" {
								t.Errorf("got %v, want %s", got, tt.want)
							}
							return
						}
						if err != nil {
							t.Fatal(err)
						}
						sort.Strings(got)
						if fmt.Sprint(got) != tt.want {
							t.Errorf("got %v, want %s", got, tt.want)
						}
					})
				}
			}
		})
	}
}

// TestFindCharacterSet checks that names come back in the query's
// character set when they fit, else in UTF-8 with ISO_IR 192 declared.
func TestFindCharacterSet(t *testing.T) {
	n := newNode(t, backends[0].open(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := dialQR(t, ctx, n.srv.Addr, dimse.ExplicitVRLittleEndian)
	for _, tt := range []struct{ charset, wantCS, wantName string }{
		{"ISO_IR 100", "ISO_IR 100", "M\xfcller^J\xfcrgen"},
		{"", "ISO_IR 192", "Müller^Jürgen"},
		{"ISO_IR 192", "ISO_IR 192", "Müller^Jürgen"},
	} {
		kv := []string{"QueryRetrieveLevel=PATIENT", "PatientID=P1", "PatientName="}
		if tt.charset != "" {
			kv = append(kv, "SpecificCharacterSet="+tt.charset)
		}
		var got []*dimse.Identifier
		if err := a.Find(ctx, dimse.PatientRootFind, query(t, kv...), func(m *dimse.Identifier) error { got = append(got, m); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].String(0x00080005) != tt.wantCS || got[0].String(0x00100010) != tt.wantName {
			t.Errorf("charset %q: got %d matches, %q %q", tt.charset, len(got), got[0].String(0x00080005), got[0].String(0x00100010))
		}
	}
}

// TestGetOurs retrieves a series with our C-GET SCU, and checks the
// received data sets are the stored bytes.
func TestGetOurs(t *testing.T) {
	n := newNode(t, backends[0].open(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := dialQR(t, ctx, n.srv.Addr, dimse.ExplicitVRLittleEndian, dimse.StorageProposals(ctImage)...)
	got := map[string][]byte{}
	h := dimse.HandlerFunc(func(w dimse.ResponseWriter, r *dimse.Request) {
		b, _ := io.ReadAll(r.Body)
		got[r.SOPInstanceUID()] = b
		w.WriteStatus(dimse.StatusSuccess)
	})
	var progress []dimse.SubOperations
	res, err := a.Get(ctx, dimse.StudyRootGet, query(t, "QueryRetrieveLevel=SERIES", "StudyInstanceUID=2.25.1000.1", "SeriesInstanceUID=2.25.1000.1.1"), h,
		func(s dimse.SubOperations) { progress = append(progress, s) })
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != dimse.StatusSuccess || res.NumberOfCompletedSuboperations != 3 || len(got) != 3 {
		t.Fatalf("result %+v, received %d", res, len(got))
	}
	if len(progress) != 2 || progress[0].NumberOfRemainingSuboperations != 2 || progress[1].NumberOfCompletedSuboperations != 2 {
		t.Errorf("progress %+v", progress)
	}
	for _, in := range fixture[:3] {
		if string(got[in.sop]) != string(dataSet(in)) {
			t.Errorf("%s: data set differs from the stored one", in.sop)
		}
	}
	// A retrieve without a unique key is refused.
	_, err = a.Get(ctx, dimse.StudyRootGet, query(t, "QueryRetrieveLevel=STUDY", "PatientName=*"), h, nil)
	if !errors.Is(err, dimse.StatusIdentifierDoesNotMatch) {
		t.Errorf("get without unique key: %v", err)
	}
}

// TestMoveOurs moves a study to our own storage SCP and checks counts,
// progress and the move originator; then to an unknown and to a dead
// destination.
func TestMoveOurs(t *testing.T) {
	n := newNode(t, backends[0].open(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type stored struct{ origAE string }
	got := map[string]stored{}
	mux := dimse.NewServeMux()
	mux.HandleFunc(dimse.CStoreRQField, "", func(w dimse.ResponseWriter, r *dimse.Request) {
		rq := r.Message.(*dimse.CStoreRQ)
		io.Copy(io.Discard, r.Body)
		got[r.SOPInstanceUID()] = stored{rq.MoveOriginatorApplicationEntityTitle}
		w.WriteStatus(dimse.StatusSuccess)
	})
	dest := newStorageServer(t, mux)
	n.svc.SetDestination("DEST", qr.Destination{Addr: dest})
	n.svc.SetDestination("DEAD", qr.Destination{Addr: "127.0.0.1:" + freePort(t)})
	a := dialQR(t, ctx, n.srv.Addr, dimse.ImplicitVRLittleEndian)
	var progress int
	res, err := a.Move(ctx, dimse.StudyRootMove, "DEST", query(t, "QueryRetrieveLevel=STUDY", "StudyInstanceUID=2.25.1000.1"),
		func(dimse.SubOperations) { progress++ })
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != dimse.StatusSuccess || res.NumberOfCompletedSuboperations != 4 || len(got) != 4 || progress != 3 {
		t.Errorf("result %+v, received %d, %d progress responses", res, len(got), progress)
	}
	for uid, s := range got {
		if s.origAE != "OTONODE" {
			t.Errorf("%s: move originator %q, want the requestor's AE", uid, s.origAE)
		}
	}
	_, err = a.Move(ctx, dimse.StudyRootMove, "NOWHERE", query(t, "QueryRetrieveLevel=STUDY", "StudyInstanceUID=2.25.1000.1"), nil)
	if !errors.Is(err, dimse.StatusMoveDestinationUnknown) {
		t.Errorf("unknown destination: %v", err)
	}
	res, err = a.Move(ctx, dimse.StudyRootMove, "DEAD", query(t, "QueryRetrieveLevel=SERIES", "SeriesInstanceUID=2.25.1000.3.1"), nil)
	if !errors.Is(err, dimse.StatusOutOfResourcesSubOps) || res.NumberOfFailedSuboperations != 2 || len(res.FailedSOPInstanceUIDs) != 2 {
		t.Errorf("dead destination: %+v, %v", res, err)
	}
}

func newStorageServer(t *testing.T, h dimse.Handler) string {
	t.Helper()
	srv := &dimse.Server{Syntaxes: []dimse.Syntax{{AbstractSyntax: "", TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian, dimse.ImplicitVRLittleEndian}}}, Handler: h}
	l, err := netListen()
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// TestRetrieveCancel cancels a C-GET and a C-MOVE after their first
// sub-operation: the SCP stops, answers Cancel with its counts, and the
// association goes on.
func TestRetrieveCancel(t *testing.T) {
	n := newNode(t, backends[0].open(t))
	const many = 40
	ctx := context.Background()
	g := &store.Ingest{Files: n.fs, Index: n.idx}
	for i := 1; i <= many; i++ {
		in := inst{"P7", "Cancel^Me", "19700101", "2.25.1000.7", "20260101", "120000", "C7", "2.25.1000.7.1", "CT", fmt.Sprintf("2.25.1000.7.1.%d", i), i}
		if _, err := g.Store(ctx, bytes.NewReader(dataSet(in)), files.Meta{SOPClassUID: ctImage, SOPInstanceUID: in.sop,
			TransferSyntaxUID: dimse.ExplicitVRLittleEndian}); err != nil {
			t.Fatal(err)
		}
	}
	q := func() *dimse.Identifier {
		return query(t, "QueryRetrieveLevel=SERIES", "StudyInstanceUID=2.25.1000.7", "SeriesInstanceUID=2.25.1000.7.1")
	}
	tctx, done := context.WithTimeout(ctx, 30*time.Second)
	defer done()
	a := dialQR(t, tctx, n.srv.Addr, dimse.ExplicitVRLittleEndian, dimse.StorageProposals(ctImage)...)

	gctx, cancel := context.WithCancel(tctx)
	got := 0
	h := dimse.HandlerFunc(func(w dimse.ResponseWriter, r *dimse.Request) {
		io.Copy(io.Discard, r.Body)
		got++
		if got == 1 {
			cancel()
		}
		time.Sleep(2 * time.Millisecond) // leave the cancel time to arrive
		w.WriteStatus(dimse.StatusSuccess)
	})
	_, err := a.Get(gctx, dimse.StudyRootGet, q(), h, nil)
	if !errors.Is(err, context.Canceled) || got >= many {
		t.Errorf("cancelled C-GET: %v after %d of %d sub-operations", err, got, many)
	}

	t.Logf("C-GET stopped after %d of %d", got, many)
	// C-MOVE to a slow destination, cancelled at the first progress.
	mux := dimse.NewServeMux()
	mux.HandleFunc(dimse.CStoreRQField, "", func(w dimse.ResponseWriter, r *dimse.Request) {
		io.Copy(io.Discard, r.Body)
		time.Sleep(5 * time.Millisecond)
		w.WriteStatus(dimse.StatusSuccess)
	})
	n.svc.SetDestination("SLOW", qr.Destination{Addr: newStorageServer(t, mux)})
	mctx, mcancel := context.WithCancel(tctx)
	var last dimse.SubOperations
	_, err = a.Move(mctx, dimse.StudyRootMove, "SLOW", q(), func(s dimse.SubOperations) { last = s; mcancel() })
	if !errors.Is(err, context.Canceled) || last.NumberOfCompletedSuboperations >= many-1 {
		t.Errorf("cancelled C-MOVE: %v, last progress %+v", err, last)
	}
	t.Logf("C-MOVE: last progress %+v", last)
	// The association is still good.
	var studies int
	if err := a.Find(tctx, dimse.StudyRootFind, query(t, "QueryRetrieveLevel=STUDY", "StudyInstanceUID=2.25.1000.7"),
		func(*dimse.Identifier) error { studies++; return nil }); err != nil || studies != 1 {
		t.Errorf("find after the cancels: %d, %v", studies, err)
	}
}

// TestFindMaxMatches: beyond the cap the SCP sends what it may and ends
// with "out of resources" (0xA701) rather than flooding the requestor.
func TestFindMaxMatches(t *testing.T) {
	n := newNode(t, backends[0].open(t))
	svc := qr.New(n.idx, n.fs, qr.Options{MaxMatches: 2})
	mux := dimse.NewServeMux()
	svc.Register(mux)
	srv := newStorageServerWith(t, mux, qr.Syntaxes())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a := dialQR(t, ctx, srv, dimse.ExplicitVRLittleEndian)
	got := 0
	err := a.Find(ctx, dimse.StudyRootFind, query(t, "QueryRetrieveLevel=IMAGE", "SOPInstanceUID="), func(*dimse.Identifier) error { got++; return nil })
	if !errors.Is(err, dimse.StatusOutOfResourcesMatches) || got != 2 {
		t.Errorf("capped find: %d matches, %v", got, err)
	}
}

func newStorageServerWith(t *testing.T, h dimse.Handler, syn []dimse.Syntax) string {
	t.Helper()
	srv := &dimse.Server{Syntaxes: syn, Handler: h}
	l, err := netListen()
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}
