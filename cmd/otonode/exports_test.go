package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otonode/otonode/scp/config"
	"github.com/otonode/otonode/store/header"
	"github.com/otonode/otonode/store/index"

	"github.com/otonode/otonode/internal/testenv"
)

// exportsDB is a node database with one sent, one pending and one dead
// export; args are the flags that point `otonode exports` at it.
type exportsDB struct {
	args []string
	idx  *index.Index
	dead int64
}

func newExportsDB(t *testing.T, backend string) exportsDB {
	t.Helper()
	ctx := context.Background()
	var db exportsDB
	switch backend {
	case "sqlite":
		dir := t.TempDir()
		x, err := index.OpenSQLite(ctx, filepath.Join(dir, "index.db"))
		if err != nil {
			t.Fatal(err)
		}
		db.idx, db.args = x, []string{"--data_dir", dir}
	case "postgres":
		dsn := testPostgres(t)
		x, err := index.OpenPostgres(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		db.idx, db.args = x, []string{"--database", dsn}
	}
	t.Cleanup(func() { db.idx.Close() })
	now := time.Now()
	for i, sop := range []string{"1.2.3.9.1", "1.2.3.9.2", "1.2.3.9.3"} {
		one := 1
		a := &header.Attributes{TransferSyntaxUID: "1.2.840.10008.1.2.1", PatientID: "P", StudyInstanceUID: "1.2.3",
			SeriesInstanceUID: "1.2.3.9", SOPInstanceUID: sop, SOPClassUID: "1.2.840.10008.5.1.4.1.1.88.34", Modality: "SR", InstanceNumber: &one}
		if err := db.idx.RecordResultObject(ctx, index.ResultObject{SOPInstanceUID: sop, SOPClassUID: a.SOPClassUID,
			Kind: index.KindSR, SeriesInstanceUID: "1.2.3.1", Revision: i + 1, ModelSHA256: "ab", ForDiagnosis: true}, now); err != nil {
			t.Fatal(err)
		}
		if _, err := db.idx.RecordInstance(ctx, index.Instance{Attrs: a, Location: "x/" + sop, Version: 1, Result: true, ReceivedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.idx.PlanExports(ctx, index.ExportPlan{Destination: "pacs"}, now); err != nil {
		t.Fatal(err)
	}
	due, err := db.idx.DueExports(ctx, "pacs", now, time.Minute, 10)
	if err != nil || len(due) != 3 {
		t.Fatalf("due %v, %v", due, err)
	}
	db.idx.MarkExportSent(ctx, due[0].ID, now)
	db.idx.MarkExportFailed(ctx, due[1].ID, "A-ASSOCIATE-RJ: called AE title not recognized", now.Add(time.Minute), 12)
	if st, err := db.idx.MarkExportFailed(ctx, due[2].ID, "connection refused", now, 1); err != nil || st != index.ExportDead {
		t.Fatalf("dead: %s, %v", st, err)
	}
	db.dead = due[2].ID
	return db
}

// testPostgres creates a database for the test, dropped at cleanup, and
// returns its URL.
func testPostgres(t *testing.T) string { return testenv.Postgres(t, "otonode_cli") }

func TestExportsCommand(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			db := newExportsDB(t, backend)
			exports := func(args ...string) (int, string, string) {
				var out, errb bytes.Buffer
				code := run(context.Background(), append(append([]string{"exports"}, args...), db.args...), &out, &errb)
				return code, out.String(), errb.String()
			}
			code, out, errOut := exports()
			if code != 0 || strings.Count(out, "\n") != 4 || !strings.Contains(out, "called AE title not recognized") {
				t.Fatalf("list: %d\n%s%s", code, out, errOut)
			}
			for _, state := range []string{"sent", "pending", "dead"} {
				code, out, errOut := exports("--state", state)
				lines := strings.Split(strings.TrimSpace(out), "\n")
				if code != 0 || len(lines) != 2 || !strings.Contains(lines[1], " "+state+" ") {
					t.Errorf("--state %s: %d\n%s%s", state, code, out, errOut)
				}
			}
			if code, _, errOut := exports("--state", "lost"); code != 2 || !strings.Contains(errOut, "lost") {
				t.Errorf("bad state: %d %s", code, errOut)
			}

			// Retry: a row that is not dead is refused, the dead one comes back.
			pending, _ := db.idx.Exports(context.Background(), index.ExportFilter{State: index.ExportPending})
			if code, _, errOut := exports("retry", "--id", strconv.FormatInt(pending[0].ID, 10)); code != 2 || !strings.Contains(errOut, "not dead") {
				t.Errorf("retry of a pending row: %d %s", code, errOut)
			}
			if code, _, errOut := exports("retry"); code != 2 || !strings.Contains(errOut, "--all-dead") {
				t.Errorf("retry without a choice: %d %s", code, errOut)
			}
			if code, out, errOut := exports("retry", "--id", strconv.FormatInt(db.dead, 10)); code != 0 || !strings.Contains(out, "set back to pending") {
				t.Fatalf("retry --id: %d %s%s", code, out, errOut)
			}
			if code, out, _ := exports("--state", "dead"); code != 0 || strings.Count(out, "\n") != 1 {
				t.Errorf("dead rows after retry:\n%s", out)
			}
			if _, err := db.idx.MarkExportFailed(context.Background(), db.dead, "again", time.Now(), 1); err != nil {
				t.Fatal(err)
			}
			if code, out, errOut := exports("retry", "--all-dead", "--destination", "pacs"); code != 0 || !strings.Contains(out, "1 dead export(s)") {
				t.Errorf("retry --all-dead: %d %s%s", code, out, errOut)
			}
		})
	}
}

func TestExportsCommandNeedsTheNodesDatabase(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"exports", "--data_dir", t.TempDir()}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "no node database") {
		t.Fatalf("%d %s", code, errb.String())
	}
}

func TestExportOptions(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, []byte("not a certificate"), 0o644)
	cfg := config.Default()
	cfg.DICOM.AETitle = "OTONODE1"
	cfg.Export.Destinations = map[string]config.Destination{
		"pacs": {AETitle: "PACS", Host: "pacs.example.org", Port: 104},
		"demo": {AETitle: "ORTHANC", Host: "::1", Port: 4242, CallingAETitle: "DEMO", Objects: config.ExportAll, AllowNotForDiagnosis: true,
			TLS: config.DestinationTLS{Enabled: true}},
	}
	opt, err := exportOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(opt.Destinations) != 2 || opt.MaxAttempts != 12 || opt.PollInterval != time.Second || opt.Decompress == nil {
		t.Fatalf("options %+v", opt)
	}
	demo, pacs := opt.Destinations[0], opt.Destinations[1]
	if demo.Name != "demo" || demo.Addr != "[::1]:4242" || demo.CallingAETitle != "DEMO" || !demo.Sources || !demo.AllowNotForDiagnosis ||
		demo.TLS == nil || demo.TLS.ServerName != "::1" {
		t.Errorf("demo %+v", demo)
	}
	if pacs.Addr != "pacs.example.org:104" || pacs.CallingAETitle != "OTONODE1" || pacs.Sources || pacs.AllowNotForDiagnosis || pacs.TLS != nil {
		t.Errorf("pacs %+v", pacs)
	}
	cfg.Export.Destinations["out"] = config.Destination{Folder: dir, Objects: config.ExportAll}
	if opt, err := exportOptions(cfg); err != nil || opt.Destinations[1].Folder != dir || opt.Destinations[1].Addr != "" || !opt.Destinations[1].Sources {
		t.Errorf("folder destination %+v, %v", opt.Destinations, err)
	}
	delete(cfg.Export.Destinations, "out")
	cfg.Export.Destinations["pacs"] = config.Destination{AETitle: "PACS", Host: "pacs", Port: 104, TLS: config.DestinationTLS{Enabled: true, CAFile: ca}}
	if _, err := exportOptions(cfg); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("bad CA file: %v", err)
	}
	cfg.Export.Destinations["pacs"] = config.Destination{Host: "pacs", Port: 104}
	if _, err := exportOptions(cfg); err == nil {
		t.Error("a destination without an AE title was accepted")
	}
}
