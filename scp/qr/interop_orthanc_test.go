package qr_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/scp/qr"
	"github.com/otonode/otonode/store/files"
)

// orthanc is a real Orthanc on free ports.
type orthanc struct {
	dicomAddr, url string
}

func startOrthanc(t *testing.T, modalities map[string][]any) *orthanc {
	t.Helper()
	bin := tool(t, "Orthanc")
	if modalities == nil {
		modalities = map[string][]any{}
	}
	dir := t.TempDir()
	dport, hport := freePort(t), freePort(t)
	var dp, hp int
	fmt.Sscan(dport, &dp)
	fmt.Sscan(hport, &hp)
	cfg := map[string]any{"Name": "QRTEST", "StorageDirectory": dir, "IndexDirectory": dir,
		"DicomAet": "ORTHANC", "DicomPort": dp, "HttpPort": hp, "RemoteAccessAllowed": false,
		"AuthenticationEnabled": false, "DicomCheckCalledAet": false, "UnknownSopClassAccepted": true,
		"DicomAlwaysAllowStore": true, "DicomAlwaysAllowFind": true, "DicomAlwaysAllowGet": true, "DicomAlwaysAllowMove": true,
		"DicomModalities": modalities, "Plugins": []string{}, "StableAge": 60}
	b, _ := json.Marshal(cfg)
	cfgPath := filepath.Join(dir, "orthanc.json")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, cfgPath)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("Orthanc output:\n%s", out.String())
		}
	})
	o := &orthanc{dicomAddr: "127.0.0.1:" + dport, url: "http://127.0.0.1:" + hport}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(o.url + "/system")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Orthanc did not come up: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return o
}

// call does one REST call and decodes the JSON answer into v (if not nil).
func (o *orthanc) call(t *testing.T, method, path string, body any, v any) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, o.url+path, rd)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s %s: %s\n%s", method, path, resp.Status, raw)
	}
	if v != nil {
		if err := json.Unmarshal(raw, v); err != nil {
			t.Fatalf("%s %s: %v\n%s", method, path, err, raw)
		}
	}
}

// TestOrthancQueriesAndRetrievesFromUs has Orthanc query our SCP through
// its REST API, then retrieve a study (C-MOVE to itself) and a series
// (the /move route).
func TestOrthancQueriesAndRetrievesFromUs(t *testing.T) {
	n := newNode(t, backends[0].open(t))
	o := startOrthanc(t, map[string][]any{"otonode": {"OTONODE", n.srv.Host(), atoi(n.srv.Port())}})
	n.svc.SetDestination("ORTHANC", qr.Destination{Addr: o.dicomAddr})

	var q struct{ ID string }
	o.call(t, "POST", "/modalities/otonode/query", map[string]any{"Level": "Study",
		"Query": map[string]string{"PatientName": "Müller*", "StudyDate": "", "StudyInstanceUID": ""}}, &q)
	var answers []string
	o.call(t, "GET", "/queries/"+q.ID+"/answers", nil, &answers)
	var uids []string
	for i := range answers {
		var c map[string]string
		o.call(t, "GET", fmt.Sprintf("/queries/%s/answers/%d/content?simplify", q.ID, i), nil, &c)
		uids = append(uids, c["StudyInstanceUID"])
		if c["PatientName"] != "Müller^Jürgen" {
			t.Errorf("Orthanc decoded PatientName %q", c["PatientName"])
		}
	}
	sort.Strings(uids)
	if fmt.Sprint(uids) != "[2.25.1000.1 2.25.1000.2]" {
		t.Fatalf("Orthanc's query found %v", uids)
	}

	// Retrieve the first answer: Orthanc asks us to C-MOVE to itself.
	o.call(t, "POST", "/queries/"+q.ID+"/answers/0/retrieve", map[string]any{"TargetAet": "ORTHANC", "Synchronous": true}, nil)
	// And a series through /modalities/.../move.
	o.call(t, "POST", "/modalities/otonode/move", map[string]any{"Level": "Series", "TargetAet": "ORTHANC", "Synchronous": true,
		"Resources": []map[string]string{{"StudyInstanceUID": "2.25.1000.3", "SeriesInstanceUID": "2.25.1000.3.1"}}}, nil)
	var stats struct{ CountInstances int }
	o.call(t, "GET", "/statistics", nil, &stats)
	// The first answer is one of the two Müller studies (4 or 1
	// instances), plus the two of the MR series.
	if stats.CountInstances != 6 && stats.CountInstances != 3 {
		t.Errorf("Orthanc holds %d instances after the retrieves", stats.CountInstances)
	}
	var found []string
	o.call(t, "POST", "/tools/find", map[string]any{"Level": "Series", "Query": map[string]string{"SeriesInstanceUID": "2.25.1000.3.1"}}, &found)
	if len(found) != 1 {
		t.Fatalf("Orthanc found %d moved series", len(found))
	}
	var series struct{ Instances []string }
	o.call(t, "GET", "/series/"+found[0], nil, &series)
	if len(series.Instances) != 2 {
		t.Errorf("Orthanc holds %d instances of the moved series", len(series.Instances))
	}
}

// TestMovescuToOrthanc moves a study from our SCP to Orthanc with dcmtk's
// movescu.
func TestMovescuToOrthanc(t *testing.T) {
	n := newNode(t, backends[0].open(t))
	o := startOrthanc(t, nil)
	n.svc.SetDestination("ORTHANC", qr.Destination{Addr: o.dicomAddr})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := run(t, ctx, "movescu", "-S", "-aec", "OTONODE", "-aem", "ORTHANC", "-k", "QueryRetrieveLevel=STUDY",
		"-k", "StudyInstanceUID=2.25.1000.1", n.srv.Host(), n.srv.Port())
	if err != nil {
		t.Fatalf("movescu: %v\n%s", err, out)
	}
	var stats struct{ CountInstances int }
	o.call(t, "GET", "/statistics", nil, &stats)
	if stats.CountInstances != 4 {
		t.Errorf("Orthanc holds %d instances, want 4\n%s", stats.CountInstances, out)
	}
}

// TestOursAgainstOrthanc runs our SCU (Find, Get, Move) against Orthanc's
// Q/R SCP.
func TestOursAgainstOrthanc(t *testing.T) {
	mux := dimse.NewServeMux()
	got := map[string][]byte{}
	mux.HandleFunc(dimse.CStoreRQField, "", func(w dimse.ResponseWriter, r *dimse.Request) {
		b, _ := io.ReadAll(r.Body)
		got[r.SOPInstanceUID()] = b
		w.WriteStatus(dimse.StatusSuccess)
	})
	storeAddr := newStorageServer(t, mux)
	host, port := splitAddr(storeAddr)
	o := startOrthanc(t, map[string][]any{"us": {"OTONODE", "127.0.0.1", 1}, "sink": {"SINK", host, atoi(port)}})
	for _, in := range fixture {
		m := files.Meta{SOPClassUID: ctImage, SOPInstanceUID: in.sop, TransferSyntaxUID: dimse.ExplicitVRLittleEndian}
		o.call(t, "POST", "/instances", append(files.AppendMetaHeader(nil, m), dataSet(in)...), nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a := dialQRTo(t, ctx, o.dicomAddr, "ORTHANC")

	var studies []string
	err := a.Find(ctx, dimse.StudyRootFind, query(t, "QueryRetrieveLevel=STUDY", "StudyInstanceUID=", "StudyDate=20260101-"), func(m *dimse.Identifier) error {
		studies = append(studies, m.String(0x0020000D))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(studies)
	if fmt.Sprint(studies) != "[2.25.1000.1 2.25.1000.2]" {
		t.Errorf("Find on Orthanc: %v", studies)
	}
	var images []string
	err = a.Find(ctx, dimse.PatientRootFind, query(t, "QueryRetrieveLevel=IMAGE", "PatientID=P1", "StudyInstanceUID=2.25.1000.1",
		"SeriesInstanceUID=2.25.1000.1.1", "SOPInstanceUID="), func(m *dimse.Identifier) error {
		images = append(images, m.String(0x00080018))
		return nil
	})
	if err != nil || len(images) != 3 {
		t.Errorf("IMAGE find on Orthanc: %v, %v", images, err)
	}

	// C-MOVE to our storage SCP.
	var progress int
	res, err := a.Move(ctx, dimse.StudyRootMove, "SINK", query(t, "QueryRetrieveLevel=SERIES", "StudyInstanceUID=2.25.1000.1",
		"SeriesInstanceUID=2.25.1000.1.1"), func(dimse.SubOperations) { progress++ })
	if err != nil {
		t.Fatal(err)
	}
	if res.NumberOfCompletedSuboperations != 3 || len(got) != 3 {
		t.Errorf("move from Orthanc: %+v, %d received", res, len(got))
	}
	// C-GET onto this association.
	clear(got)
	h := dimse.HandlerFunc(func(w dimse.ResponseWriter, r *dimse.Request) {
		b, _ := io.ReadAll(r.Body)
		got[r.SOPInstanceUID()] = b
		w.WriteStatus(dimse.StatusSuccess)
	})
	res, err = a.Get(ctx, dimse.StudyRootGet, query(t, "QueryRetrieveLevel=SERIES", "StudyInstanceUID=2.25.1000.3",
		"SeriesInstanceUID=2.25.1000.3.1"), h, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.NumberOfCompletedSuboperations != 2 || len(got) != 2 {
		t.Errorf("get from Orthanc: %+v, %d received", res, len(got))
	}
	for _, in := range fixture[5:] {
		if !bytes.Equal(got[in.sop], dataSet(in)) {
			t.Errorf("%s: C-GET data set differs from what Orthanc was given (%d vs %d bytes)", in.sop, len(got[in.sop]), len(dataSet(in)))
		}
	}
}

func dialQRTo(t *testing.T, ctx context.Context, addr, called string) *dimse.Association {
	t.Helper()
	var props []dimse.Proposal
	for _, c := range []string{dimse.PatientRootFind, dimse.StudyRootFind, dimse.StudyRootMove, dimse.StudyRootGet} {
		props = append(props, dimse.Proposal{AbstractSyntax: c, TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian, dimse.ImplicitVRLittleEndian}})
	}
	props = append(props, dimse.Proposal{AbstractSyntax: ctImage, TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian}})
	a, err := dimse.Dial(ctx, addr, dimse.DialOptions{CalledAETitle: called, Proposals: props, RoleSelections: dimse.RetrieveRoles(ctImage)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Release(context.Background()) })
	return a
}

func atoi(s string) int {
	var n int
	fmt.Sscan(s, &n)
	return n
}

func splitAddr(addr string) (string, string) {
	i := strings.LastIndexByte(addr, ':')
	return addr[:i], addr[i+1:]
}
