package scp

import (
	"bytes"
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
