package scp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/dimse/storescu"
	"github.com/otonode/otonode/scp/config"
	"github.com/otonode/otonode/scp/events"
	"github.com/otonode/otonode/store/files"
	"github.com/otonode/otonode/store/index"
)

// backends are the database and broker combinations the acceptance runs
// on: SQLite with the embedded NATS server, PostgreSQL with the real NATS
// server at 127.0.0.1:4222.
var backends = []struct {
	name  string
	setup func(t *testing.T, c *config.Config)
}{
	{"sqlite+embedded-nats", func(t *testing.T, c *config.Config) {}},
	{"postgres+nats", func(t *testing.T, c *config.Config) {
		c.Database = newPostgres(t)
		c.NATS.URL = externalNATS(t, events.Topology{Prefix: c.NATS.Prefix})
	}},
}

// TestIngest is the acceptance of the ingest path: dcmtk storescu and our
// SCU send a study of three series (a thin bone-kernel series, its
// soft-tissue twin and a localizer); every data set is stored verbatim and
// indexed; each series revision completes on release and is announced
// exactly once; only the bone series is queued for analysis, the others
// are not analysed with the reason; a late instance opens revision 2, which
// is announced and queued once more; no message carries the patient name.
func TestIngest(t *testing.T) {
	storescuBin := lookTool(t, "storescu")
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			c := testConfig(t)
			b.setup(t, &c)
			n := startNode(t, c)
			ctx := context.Background()
			// A live subscriber beside the stream checks.
			nc, err := n.embeddedConn()
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			var subMu sync.Mutex
			heard := map[string]int{}
			sub, err := nc.Subscribe(n.Topology.SeriesCompleteSubject(), func(m *nats.Msg) {
				var sc events.SeriesComplete
				json.Unmarshal(m.Data, &sc)
				subMu.Lock()
				heard[AnnouncementID(sc.SeriesInstanceUID, sc.Revision)]++
				subMu.Unlock()
			})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()

			root := uidRoot()
			study := root + ".1"
			bone := seriesSpec{Study: study, Series: root + ".2", Number: 2, N: 6, Thickness: "0.6", Kernel: "H70h", Description: "Felsenbein"}
			soft := seriesSpec{Study: study, Series: root + ".3", Number: 3, N: 6, Thickness: "0.6", Kernel: "H30s", Description: "Weichteil"}
			loc := seriesSpec{Study: study, Series: root + ".4", Number: 1, N: 1, Thickness: "0.6", Kernel: "H70h", Localizer: true}
			dir := t.TempDir()
			sent := map[string][]byte{}
			for _, s := range []seriesSpec{bone, soft, loc} {
				for k, v := range s.write(t, filepath.Join(dir, s.Series)) {
					sent[k] = v
				}
			}

			// dcmtk storescu sends the bone series, our SCU the others.
			cmd := exec.Command(storescuBin, "-aec", c.DICOM.AETitle, "-aet", "CT1", "+sd", "+r",
				"127.0.0.1", fmt.Sprint(n.Source.Port), filepath.Join(dir, bone.Series))
			cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("storescu: %v\n%s", err, out)
			}
			fs, _, err := storescu.Scan([]string{filepath.Join(dir, soft.Series), filepath.Join(dir, loc.Series)})
			if err != nil {
				t.Fatal(err)
			}
			res, err := storescu.Push(ctx, n.DICOMAddr(), dimse.DialOptions{CallingAETitle: "CT2", CalledAETitle: c.DICOM.AETitle}, fs, nil)
			if err != nil || len(res.Failed) > 0 || res.Stored != len(fs) {
				t.Fatalf("push: %+v %v", res, err)
			}

			// Stored verbatim and indexed.
			for _, s := range []seriesSpec{bone, soft, loc} {
				inst, err := n.Index.Instances(ctx, s.Series)
				if err != nil {
					t.Fatal(err)
				}
				if len(inst) != s.N {
					t.Fatalf("series %s: %d instances indexed, want %d", s.Series, len(inst), s.N)
				}
				for _, in := range inst {
					got := storedDataSet(t, n, in.Location)
					if !bytes.Equal(got, sent[in.SOPInstanceUID]) {
						t.Fatalf("instance %s not stored verbatim", in.SOPInstanceUID)
					}
					if in.TransferSyntaxUID != explicit || in.SOPClassUID != ctImage {
						t.Fatalf("index row %+v", in)
					}
				}
			}

			// Completion and selection.
			waitState(t, n, bone.Series, 1, index.Queued)
			waitState(t, n, soft.Series, 1, index.NotAnalysed)
			waitState(t, n, loc.Series, 1, index.NotAnalysed)
			for uid, want := range map[string]string{soft.Series: "another series", loc.Series: "localizer"} {
				se, _ := n.Index.Series(ctx, uid)
				if !bytes.Contains([]byte(se.Reason), []byte(want)) {
					t.Errorf("series %s reason %q, want %q", uid, se.Reason, want)
				}
			}

			// A late instance opens revision 2 of the bone series.
			late := bone
			late.N = bone.N + 1
			sop, ds := late.dataSet(bone.N)
			a, err := dimse.Dial(ctx, n.DICOMAddr(), dimse.DialOptions{CallingAETitle: "CT1", CalledAETitle: c.DICOM.AETitle,
				Proposals: dimse.StorageProposals(ctImage)})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := a.Store(ctx, dimse.Instance{SOPClassUID: ctImage, SOPInstanceUID: sop, TransferSyntaxUID: explicit,
				DataSet: bytes.NewReader(ds)}); err != nil {
				t.Fatal(err)
			}
			a.Release(ctx)
			waitState(t, n, bone.Series, 2, index.Queued)

			// Exactly one announcement per completed revision, one job per
			// queued revision, never the patient's name.
			want := map[string]int{
				AnnouncementID(bone.Series, 1): 1, AnnouncementID(bone.Series, 2): 1,
				AnnouncementID(soft.Series, 1): 1, AnnouncementID(loc.Series, 1): 1,
			}
			checkStream(t, n.JS, n.Topology.EventsStream(), AnnouncementID, want)
			subMu.Lock()
			if fmt.Sprint(heard) != fmt.Sprint(want) {
				t.Errorf("subscriber heard %v, want %v", heard, want)
			}
			subMu.Unlock()
			checkStream(t, n.JS, n.Topology.WorkStream(), events.MsgID, map[string]int{
				events.MsgID(bone.Series, 1): 1, events.MsgID(bone.Series, 2): 1})
		})
	}
}

// storedDataSet reads an instance file and returns its data set bytes.
func storedDataSet(t testing.TB, n *Node, loc string) []byte {
	t.Helper()
	r, err := n.Files.Open(context.Background(), loc)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	off, err := files.MetaHeaderLen(r)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(io.NewSectionReader(r, off, 1<<30))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func waitState(t testing.TB, n *Node, series string, rev int, want index.State) {
	t.Helper()
	eventually(t, 15*time.Second, func() error {
		se, err := n.Index.Series(context.Background(), series)
		if err != nil {
			return err
		}
		if se.Revision != rev || se.State != want {
			return fmt.Errorf("series %s is revision %d %s (%s), want revision %d %s", series, se.Revision, se.State, se.Reason, rev, want)
		}
		return nil
	})
}

// checkStream waits until the stream holds the wanted messages by id, then
// makes sure no more arrive in the next moment.
func checkStream(t testing.TB, js jetstream.JetStream, stream string, msgID func(string, int) string, want map[string]int) {
	t.Helper()
	count := func() (map[string]int, error) {
		got := map[string]int{}
		for _, m := range streamMessages(t, js, stream) {
			if bytes.Contains(m.Data, []byte("Doe")) || bytes.Contains(m.Data, []byte("PID-1")) {
				return nil, fmt.Errorf("message %s carries patient data: %s", m.Subject, m.Data)
			}
			var sc events.SeriesComplete
			if err := json.Unmarshal(m.Data, &sc); err != nil {
				return nil, fmt.Errorf("message %s: %w", m.Subject, err)
			}
			id := msgID(sc.SeriesInstanceUID, sc.Revision)
			if h := m.Header.Get("Nats-Msg-Id"); h != id {
				return nil, fmt.Errorf("message id %q, want %q", h, id)
			}
			got[id]++
		}
		return got, nil
	}
	same := func(got map[string]int) error {
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("stream %s: got %v, want %v", stream, got, want)
		}
		return nil
	}
	eventually(t, 10*time.Second, func() error {
		got, err := count()
		if err != nil {
			return err
		}
		return same(got)
	})
	time.Sleep(500 * time.Millisecond)
	got, err := count()
	if err == nil {
		err = same(got)
	}
	if err != nil {
		t.Fatal(err)
	}
}
