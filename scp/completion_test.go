package scp

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/scp/events"
	"github.com/otonode/otonode/store/index"
)

// sendSeries stores s over one association; release=false aborts it.
func sendSeries(t testing.TB, n *Node, s seriesSpec, release bool) {
	t.Helper()
	a, err := dial(t, n, "CT1")
	if err != nil {
		t.Fatal(err)
	}
	for i := range s.N {
		sop, ds := s.dataSet(i)
		if _, err := a.Store(context.Background(), dimse.Instance{SOPClassUID: ctImage, SOPInstanceUID: sop,
			TransferSyntaxUID: explicit, DataSet: bytes.NewReader(ds)}); err != nil {
			t.Fatal(err)
		}
	}
	if release {
		if err := a.Release(context.Background()); err != nil {
			t.Fatal(err)
		}
	} else {
		a.Abort()
	}
}

// TestResumeAfterRestart stops the node while two series wait for their
// timers (one released, one aborted); a new node on the same data
// completes both from the database, each with its reason, and announces
// each once.
func TestResumeAfterRestart(t *testing.T) {
	c := testConfig(t)
	c.Completion.QuietPeriod = 1500 * time.Millisecond
	c.Completion.Inactivity = 2500 * time.Millisecond
	root := uidRoot()
	rel := seriesSpec{Study: root + ".1", Series: root + ".2", Number: 1, N: 5, Thickness: "0.6", Kernel: "BONE"}
	abo := seriesSpec{Study: root + ".1", Series: root + ".3", Number: 2, N: 5, Thickness: "0.6", Kernel: "SOFT"}

	ctx, cancel := context.WithCancel(context.Background())
	n, err := New(ctx, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx, time.Second) }()
	sendSeries(t, n, rel, true)
	sendSeries(t, n, abo, false)
	time.Sleep(100 * time.Millisecond) // the release is recorded as the RP goes out
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Nothing completed before the stop.
	x, err := index.OpenSQLite(context.Background(), c.DataPath("index.db"))
	if err != nil {
		t.Fatal(err)
	}
	pend, err := x.Pending(context.Background())
	x.Close()
	if err != nil || len(pend) != 2 {
		t.Fatalf("pending before restart: %+v, %v", pend, err)
	}

	n2 := startNode(t, c)
	waitState(t, n2, rel.Series, 1, index.Queued)
	waitState(t, n2, abo.Series, 1, index.NotAnalysed)
	for uid, want := range map[string]string{rel.Series: index.ReasonReleased} {
		if se, _ := n2.Index.Series(context.Background(), uid); se.Reason != want {
			t.Errorf("%s completed by %q, want %q", uid, se.Reason, want)
		}
	}
	checkStream(t, n2.JS, n2.Topology.EventsStream(), AnnouncementID, map[string]int{
		AnnouncementID(rel.Series, 1): 1, AnnouncementID(abo.Series, 1): 1})
	msgs := streamMessages(t, n2.JS, n2.Topology.EventsStream())
	for _, m := range msgs {
		var sc events.SeriesComplete
		json.Unmarshal(m.Data, &sc)
		if sc.SeriesInstanceUID == abo.Series && sc.Reason != index.ReasonInactivity {
			t.Errorf("aborted series completed by %q", sc.Reason)
		}
	}
}

// TestExplicitCompletion drives POST /series/{uid}/complete.
func TestExplicitCompletion(t *testing.T) {
	c := testConfig(t)
	c.Completion.Inactivity = time.Hour
	c.Completion.QuietPeriod = time.Hour
	n := startNode(t, c)
	root := uidRoot()
	s := seriesSpec{Study: root + ".1", Series: root + ".2", Number: 1, N: 4, Thickness: "0.6", Kernel: "BONE"}
	sendSeries(t, n, s, true)
	post := func(uid string) int {
		resp, err := http.Post("http://"+n.HTTPAddr()+"/series/"+uid+"/complete", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		uid  string
		want int
	}{
		{s.Series, http.StatusOK},
		{s.Series, http.StatusConflict},
		{root + ".77", http.StatusNotFound},
		{"1.2.3..4", http.StatusBadRequest},
	} {
		if got := post(tc.uid); got != tc.want {
			t.Errorf("POST complete %s: %d, want %d", tc.uid, got, tc.want)
		}
	}
	waitState(t, n, s.Series, 1, index.Queued)
	se, _ := n.Index.Series(context.Background(), s.Series)
	if se.Reason != index.ReasonExplicit {
		t.Errorf("reason %q", se.Reason)
	}
	resp, err := http.Get("http://" + n.HTTPAddr() + "/series/" + s.Series)
	if err != nil {
		t.Fatal(err)
	}
	var st SeriesState
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if st.State != string(index.Queued) || st.Instances != s.N {
		t.Errorf("GET series: %+v", st)
	}
	checkStream(t, n.JS, n.Topology.WorkStream(), events.MsgID, map[string]int{events.MsgID(s.Series, 1): 1})
}

// TestReconciler purges the work stream (a broker that lost the job): the
// reconciler publishes the queued revision again, once.
func TestReconciler(t *testing.T) {
	c := testConfig(t)
	c.Completion.ReconcileAfter = 500 * time.Millisecond
	n := startNode(t, c)
	root := uidRoot()
	s := seriesSpec{Study: root + ".1", Series: root + ".2", Number: 1, N: 4, Thickness: "0.6", Kernel: "BONE"}
	sendSeries(t, n, s, true)
	waitState(t, n, s.Series, 1, index.Queued)
	eventually(t, 10*time.Second, func() error {
		if len(streamMessages(t, n.JS, n.Topology.WorkStream())) == 0 {
			return fmt.Errorf("job not published")
		}
		return nil
	})
	st, err := n.JS.Stream(context.Background(), n.Topology.WorkStream())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(context.Background()); err != nil {
		t.Fatal(err)
	}
	prefix := events.MsgID(s.Series, 1) + "/retry-"
	eventually(t, 10*time.Second, func() error {
		msgs := streamMessages(t, n.JS, n.Topology.WorkStream())
		if len(msgs) == 0 {
			return fmt.Errorf("no job after the purge")
		}
		for _, m := range msgs {
			var sc events.SeriesComplete
			if err := json.Unmarshal(m.Data, &sc); err != nil || sc.SeriesInstanceUID != s.Series || sc.Revision != 1 ||
				!strings.HasPrefix(m.Header.Get("Nats-Msg-Id"), prefix) {
				return fmt.Errorf("unexpected job %s %s", m.Header.Get("Nats-Msg-Id"), m.Data)
			}
		}
		return nil
	})
	if got := promValue(n.Metrics.Republished); got < 1 {
		t.Fatalf("republished %v", got)
	}
}

// TestExpectedCount: a series whose data announce its instance count
// completes when the count arrived, while the association stays open.
func TestExpectedCount(t *testing.T) {
	c := testConfig(t)
	c.Completion.Inactivity = time.Hour
	n := startNode(t, c)
	root := uidRoot()
	s := seriesSpec{Study: root + ".1", Series: root + ".2", Number: 1, N: 5, Thickness: "0.6", Kernel: "BONE", Expected: 5}
	a, err := dial(t, n, "CT1")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release(context.Background())
	for i := range s.N {
		sop, ds := s.dataSet(i)
		if _, err := a.Store(context.Background(), dimse.Instance{SOPClassUID: ctImage, SOPInstanceUID: sop,
			TransferSyntaxUID: explicit, DataSet: bytes.NewReader(ds)}); err != nil {
			t.Fatal(err)
		}
		if i == s.N-2 {
			time.Sleep(300 * time.Millisecond)
			if se, _ := n.Index.Series(context.Background(), s.Series); se.State != index.Receiving {
				t.Fatalf("complete before the count: %s %s", se.State, se.Reason)
			}
		}
	}
	waitState(t, n, s.Series, 1, index.Queued)
	if se, _ := n.Index.Series(context.Background(), s.Series); se.Reason != index.ReasonExpectedCount {
		t.Fatalf("reason %q", se.Reason)
	}
}

// TestSkipResultsAndNonImage: the node's own SEG coming back from its
// worker and a series of a non-image modality end not analysed at
// completion time, with no series-complete event and a counted reason,
// while a CT series beside them completes and is announced as before.
func TestSkipResultsAndNonImage(t *testing.T) {
	c := testConfig(t)
	n := startNode(t, c)
	root := uidRoot()
	ct := seriesSpec{Study: root + ".1", Series: root + ".2", Number: 1, N: 4, Thickness: "0.6", Kernel: "BONE"}
	const segStorage = "1.2.840.10008.5.1.4.1.1.66.4"
	seg := seriesSpec{Study: root + ".1", Series: root + ".3", Number: 90, N: 1, Modality: "SEG", SOPClass: segStorage}
	sr := seriesSpec{Study: root + ".1", Series: root + ".4", Number: 91, N: 1, Modality: "SR"}
	// The worker records its objects before it sends them.
	segSOP, _ := seg.dataSet(0)
	if err := n.Index.RecordResultObject(context.Background(), index.ResultObject{SOPInstanceUID: segSOP,
		SOPClassUID: segStorage, Kind: index.KindSEG, SeriesInstanceUID: ct.Series, Revision: 1}, time.Now()); err != nil {
		t.Fatal(err)
	}
	sendSeries(t, n, ct, true)
	for _, s := range []seriesSpec{seg, sr} {
		class := cmp.Or(s.SOPClass, ctImage)
		a, err := dimse.Dial(context.Background(), n.DICOMAddr(), dimse.DialOptions{CallingAETitle: "CT1",
			CalledAETitle: n.Config.DICOM.AETitle, Proposals: dimse.StorageProposals(class), ARTIMTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		sop, ds := s.dataSet(0)
		if _, err := a.Store(context.Background(), dimse.Instance{SOPClassUID: class, SOPInstanceUID: sop,
			TransferSyntaxUID: explicit, DataSet: bytes.NewReader(ds)}); err != nil {
			t.Fatal(err)
		}
		if err := a.Release(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	waitState(t, n, ct.Series, 1, index.Queued)
	waitState(t, n, seg.Series, 1, index.NotAnalysed)
	waitState(t, n, sr.Series, 1, index.NotAnalysed)
	for uid, want := range map[string]string{seg.Series: "otonode result (SEG)", sr.Series: "non-image modality SR"} {
		if se, _ := n.Index.Series(context.Background(), uid); se.Reason != want {
			t.Errorf("series %s: reason %q, want %q", uid, se.Reason, want)
		}
	}
	checkStream(t, n.JS, n.Topology.EventsStream(), AnnouncementID, map[string]int{AnnouncementID(ct.Series, 1): 1})
	for label, want := range map[string]float64{SkipResult: 1, SkipNonImage: 1} {
		if got := promValue(n.Metrics.Skipped.WithLabelValues(label)); got != want {
			t.Errorf("otonode_series_skipped_total{reason=%q} = %v, want %v", label, got, want)
		}
	}
	if got := promValue(n.Metrics.Selections.WithLabelValues("not-analysed")); got != 0 {
		t.Errorf("selection declined %v series; the skipped ones must not reach it", got)
	}
}
