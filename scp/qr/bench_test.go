package qr_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/store"
	"github.com/otonode/otonode/store/files"
	"github.com/otonode/otonode/store/index"
)

// The benchmarks are opt-in: they build large indexes and move hundreds
// of megabytes. Run them with
//
//	OTONODE_QR_BENCH=1 go test -run '^$' -bench Find -benchtime 300x ./scp/qr
//	OTONODE_QR_BENCH=1 go test -run '^$' -bench MoveVsPush -benchtime 5x ./scp/qr
//
// OTONODE_QR_BENCH_STUDIES scales the index (default 10000 studies of
// 2 series × 50 instances = 1,000,000 instances).
func benchEnabled(b *testing.B) {
	if os.Getenv("OTONODE_QR_BENCH") == "" {
		b.Skip("set OTONODE_QR_BENCH=1 to run the Q/R benchmarks")
	}
}

const (
	benchPatientsPerStudy = 2 // each patient has two studies
	benchSeriesPerStudy   = 2
	benchInstPerSeries    = 50
)

func benchStudies() int {
	if n, err := strconv.Atoi(os.Getenv("OTONODE_QR_BENCH_STUDIES")); err == nil && n > 0 {
		return n
	}
	return 10000
}

// populate inserts the rows directly with SQL (recursive CTEs, the same
// text on both databases): patients PATIENT<n>^TEST, studies 2.25.77.<s>,
// series <study>.<1|2>, instances <series>.<1..50>.
func populate(b *testing.B, db *sql.DB, dialect string, studies int) {
	b.Helper()
	patients := studies / benchPatientsPerStudy
	series := studies * benchSeriesPerStudy
	inst := series * benchInstPerSeries
	stmts := []string{
		fmt.Sprintf(`INSERT INTO patients (patient_id, issuer_of_patient_id, patient_name, patient_birth_date, patient_sex)
			WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < %d)
			SELECT 'PID' || i, '', 'PATIENT' || i || '^TEST', '19700101', 'O' FROM n`, patients),
		fmt.Sprintf(`INSERT INTO studies (study_instance_uid, patient_pk, study_date, study_time, accession_number, study_id,
				referring_physician_name, study_description, created_at)
			WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < %d)
			SELECT '2.25.77.' || i, p.pk, '20260101', '120000', 'A' || i, '', '', 'bench', 0
			FROM n JOIN patients p ON p.patient_id = 'PID' || ((i-1) %% %d + 1)`, studies, patients),
		fmt.Sprintf(`INSERT INTO series (series_instance_uid, study_instance_uid, modality, series_number, series_date, series_time,
				series_description, body_part_examined, frame_of_reference_uid, convolution_kernel, image_type, pixel_spacing,
				image_orientation, source_ae, instance_count, current_revision, created_at)
			WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < %d)
			SELECT '2.25.77.' || ((i-1)/%d+1) || '.' || ((i-1) %% %d + 1), '2.25.77.' || ((i-1)/%d+1), 'CT', (i-1) %% %d + 1,
				'', '', '', '', '', '', '', '', '', '', %d, 1, 0 FROM n`,
			series, benchSeriesPerStudy, benchSeriesPerStudy, benchSeriesPerStudy, benchSeriesPerStudy, benchInstPerSeries),
		fmt.Sprintf(`INSERT INTO instances (sop_instance_uid, version, series_instance_uid, sop_class_uid, instance_number,
				transfer_syntax_uid, specific_character_set, image_type, image_position, image_orientation, pixel_spacing,
				location, size, sha256, source_ae, is_result, revision, received_at)
			WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < %d),
				m(i, se) AS (SELECT i, '2.25.77.' || (((i-1)/%d)/%d+1) || '.' || (((i-1)/%d) %% %d + 1) FROM n)
			SELECT se || '.' || ((i-1) %% %d + 1), 1, se, '%s', (i-1) %% %d + 1, '%s', '', '', '', '', '', 'none', 0, '', '',
				FALSE, 1, 0 FROM m`,
			inst, benchInstPerSeries, benchSeriesPerStudy, benchInstPerSeries, benchSeriesPerStudy,
			benchInstPerSeries, ctImage, benchInstPerSeries, dimse.ExplicitVRLittleEndian),
	}
	if dialect == "postgres" {
		// Settle the bulk load as autovacuum eventually would, so that
		// it does not run during the measurements.
		stmts = append(stmts, `VACUUM ANALYZE`)
	} else {
		stmts = append(stmts, `ANALYZE`)
	}
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			b.Fatalf("%v\n%s", err, s)
		}
	}
}

// benchIndex opens a populated index of the dialect.
func benchIndex(b *testing.B, dialect string) *index.Index {
	b.Helper()
	ctx := context.Background()
	studies := benchStudies()
	start := time.Now()
	var idx *index.Index
	var db *sql.DB
	var err error
	switch dialect {
	case "sqlite":
		path := filepath.Join(b.TempDir(), "index.db")
		if idx, err = index.OpenSQLite(ctx, path); err != nil {
			b.Fatal(err)
		}
		db, err = sql.Open("sqlite", path)
	default:
		dsn := newPostgresB(b)
		if idx, err = index.OpenPostgres(ctx, dsn); err != nil {
			b.Fatal(err)
		}
		db, err = sql.Open("pgx", dsn)
	}
	if err != nil {
		b.Fatal(err)
	}
	populate(b, db, dialect, studies)
	db.Close()
	b.Cleanup(func() { idx.Close() })
	b.Logf("%s: %d instances in %d studies inserted in %v", dialect, studies*benchSeriesPerStudy*benchInstPerSeries, studies,
		time.Since(start).Round(time.Millisecond))
	return idx
}

// percentiles reports p50 and p95 of the latencies.
func percentiles(b *testing.B, name string, lat []time.Duration) {
	slices.Sort(lat)
	p := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	b.ReportMetric(float64(p(0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p(0.95).Microseconds())/1000, "p95-ms")
	fmt.Printf("%s: %d queries, p50 %v, p95 %v, max %v\n", name, len(lat), p(0.50), p(0.95), lat[len(lat)-1])
}

// BenchmarkFind runs, over one open association, IMAGE-level queries
// within a random series and STUDY-level queries with a PatientName
// wildcard, on SQLite and PostgreSQL.
func BenchmarkFind(b *testing.B) {
	benchEnabled(b)
	for _, dialect := range []string{"sqlite", "postgres"} {
		b.Run(dialect, func(b *testing.B) {
			idx := benchIndex(b, dialect)
			n := serve(b, idx, nil)
			ctx := context.Background()
			a, err := dimse.Dial(ctx, n.srv.Addr, dimse.DialOptions{CalledAETitle: "OTONODE", Proposals: []dimse.Proposal{
				{AbstractSyntax: dimse.StudyRootFind, TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian}}}})
			if err != nil {
				b.Fatal(err)
			}
			defer a.Release(ctx)
			studies := benchStudies()
			rng := rand.New(rand.NewPCG(1, 2))
			queries := []struct {
				name  string
				build func() (*dimse.Identifier, int)
			}{
				{"IMAGE in series", func() (*dimse.Identifier, int) {
					s := rng.IntN(studies) + 1
					q := &dimse.Identifier{}
					q.SetString(0x00080052, "IMAGE")
					q.SetString(0x0020000D, fmt.Sprintf("2.25.77.%d", s))
					q.SetString(0x0020000E, fmt.Sprintf("2.25.77.%d.%d", s, rng.IntN(benchSeriesPerStudy)+1))
					q.SetString(0x00080018, "")
					q.SetString(0x00200013, "")
					return q, benchInstPerSeries
				}},
				{"STUDY PatientName wildcard", func() (*dimse.Identifier, int) {
					// PATIENT<k>* matches PATIENT<k> and PATIENT<k>0..9:
					// 11 patients, 22 studies (k below a tenth of them).
					k := rng.IntN(studies/benchPatientsPerStudy/10-1) + 1
					q := &dimse.Identifier{}
					q.SetString(0x00080052, "STUDY")
					q.SetString(0x00100010, fmt.Sprintf("patient%d*", k))
					q.SetString(0x0020000D, "")
					q.SetString(0x00080020, "")
					q.SetString(0x00201208, "")
					return q, -1
				}},
			}
			for _, qq := range queries {
				b.Run(qq.name, func(b *testing.B) {
					lat := make([]time.Duration, 0, b.N)
					for b.Loop() {
						q, want := qq.build()
						start := time.Now()
						got := 0
						if err := a.Find(ctx, dimse.StudyRootFind, q, func(*dimse.Identifier) error { got++; return nil }); err != nil {
							b.Fatal(err)
						}
						lat = append(lat, time.Since(start))
						if (want >= 0 && got != want) || got == 0 {
							b.Fatalf("%d matches, want %d", got, want)
						}
					}
					percentiles(b, dialect+" "+qq.name, lat)
				})
			}
		})
	}
}

// serve runs the Q/R SCP over idx and fs.
func serve(b *testing.B, idx *index.Index, fs *files.Local) *node {
	n := &node{idx: idx, fs: fs}
	n.srv = newServer(b, idx, fs, &n.svc)
	return n
}

// BenchmarkMoveVsPush moves a 400-slice series (512×512, 16 bits) to
// dcmtk's storescp and, in the same run, pushes the same files with a
// plain C-STORE over one association; it prints move/push.
func BenchmarkMoveVsPush(b *testing.B) {
	benchEnabled(b)
	const nSlices = 400
	ctx := context.Background()
	dir := b.TempDir()
	idx, err := index.OpenSQLite(ctx, filepath.Join(dir, "index.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer idx.Close()
	fs, err := files.Open(ctx, filepath.Join(dir, "data"), files.Options{})
	if err != nil {
		b.Fatal(err)
	}
	g := &store.Ingest{Files: fs, Index: idx}
	var paths []string
	for i := 1; i <= nSlices; i++ {
		in := inst{"PB", "Bench^Move", "19700101", "2.25.88", "20260101", "120000", "B1", "2.25.88.1", "CT", fmt.Sprintf("2.25.88.1.%d", i), i}
		ds := bigSlice(in, 512)
		st, err := g.Store(ctx, bytes.NewReader(ds), files.Meta{SOPClassUID: ctImage, SOPInstanceUID: in.sop, TransferSyntaxUID: dimse.ExplicitVRLittleEndian})
		if err != nil {
			b.Fatal(err)
		}
		paths = append(paths, filepath.Join(fs.Dir(), st.Location))
	}
	n := serve(b, idx, fs)
	addr, _ := storescpB(b, "STORESCP", "--ignore")
	n.svc.SetDestination("STORESCP", destination(addr))
	move := func() time.Duration {
		start := time.Now()
		a, err := dimse.Dial(ctx, n.srv.Addr, dimse.DialOptions{CalledAETitle: "OTONODE", Proposals: []dimse.Proposal{
			{AbstractSyntax: dimse.StudyRootMove, TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian}}}})
		if err != nil {
			b.Fatal(err)
		}
		q := &dimse.Identifier{}
		q.SetString(0x00080052, "SERIES")
		q.SetString(0x0020000D, "2.25.88")
		q.SetString(0x0020000E, "2.25.88.1")
		res, err := a.Move(ctx, dimse.StudyRootMove, "STORESCP", q, nil)
		if err != nil || res.NumberOfCompletedSuboperations != nSlices {
			b.Fatalf("move: %+v %v", res, err)
		}
		a.Release(ctx)
		return time.Since(start)
	}
	push := func() time.Duration {
		start := time.Now()
		a, err := dimse.Dial(ctx, addr, dimse.DialOptions{CalledAETitle: "STORESCP", Proposals: dimse.StorageProposals(ctImage)})
		if err != nil {
			b.Fatal(err)
		}
		for _, p := range paths {
			if _, err := a.StoreFile(ctx, p); err != nil {
				b.Fatal(err)
			}
		}
		a.Release(ctx)
		return time.Since(start)
	}
	var mv, pu []time.Duration
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			mv, pu = append(mv, move()), append(pu, push())
		} else {
			pu, mv = append(pu, push()), append(mv, move())
		}
	}
	med := func(d []time.Duration) time.Duration { s := slices.Clone(d); slices.Sort(s); return s[len(s)/2] }
	ratio := float64(med(mv)) / float64(med(pu))
	b.ReportMetric(ratio, "move/push")
	fmt.Printf("C-MOVE of %d slices (512×512×16 bit) to storescp: median %v; C-STORE push of the same files: median %v; ratio %.2f (%d runs each)\n",
		nSlices, med(mv), med(pu), ratio, len(mv))
}

// bigSlice is a fixture instance with a size×size 16-bit image.
func bigSlice(in inst, size int) []byte {
	ds := dataSet(in)
	// Replace the 4×4 image and its dimensions.
	ds = ds[:len(ds)-(12+32)]
	for _, off := range []uint32{0x00280010, 0x00280011} {
		key := binary.LittleEndian.AppendUint32(nil, off<<16|off>>16)
		i := bytes.Index(ds, key)
		binary.LittleEndian.PutUint16(ds[i+8:], uint16(size))
	}
	ds = append(ds, 0xE0, 0x7F, 0x10, 0x00, 'O', 'W', 0, 0)
	ds = binary.LittleEndian.AppendUint32(ds, uint32(2*size*size))
	pix := make([]byte, 2*size*size)
	for i := range pix {
		pix[i] = byte(i * 7)
	}
	return append(ds, pix...)
}
