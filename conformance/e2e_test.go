package conformance

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otonode/otonode/internal/testenv"
)

// e2eCase is one phantom pushed to the node and what must come back.
type e2eCase struct {
	name    string
	seed    int
	variant string
	size    string
	spacing string
	// What the analysis must find: ears with results, a raised flag, or
	// no inner ear at all (then no SEG, SR or KOS reaches the PACS).
	ears       []string // lateralities, e.g. {"L"}
	flagged    bool
	noInnerEar bool
	// anyFlag leaves the flag to the model: SR, KOS and event must agree
	// with the rows, raised or not. The bilateral head is flagged by the
	// reference model v1 for an implausible volume (it segments 58 and
	// 63 mm³ of phantom labyrinths of 170 and 202 mm³ at 0.38 mm).
	anyFlag bool
	// slow cases run only when named in OTONODE_E2E_CASES (the bilateral
	// head CT: two ears at 0.38 mm resampled to 0.099 mm; with one pass,
	// OTONODE_E2E_TTA=identity, its results were in Orthanc 3m19s after
	// the push on two cores under a load of 12; with the 4 passes of
	// testTTA 11m29s).
	slow bool
}

var e2eCases = []e2eCase{
	{name: "normal", seed: 11, size: "128", ears: []string{"R"}},
	{name: "otosclerosis", seed: 12, variant: "otosclerosis,severe", size: "128", ears: []string{"R"}, flagged: true},
	{name: "negative", seed: 13, variant: "body", size: "128", spacing: "0.5", noInnerEar: true},
	{name: "bilateral", seed: 14, variant: "bilateral", size: "280,160,64", ears: []string{"L", "R"}, anyFlag: true, slow: true},
}

// selectedCases are the cases OTONODE_E2E_CASES names (comma-separated),
// or every case that is not slow.
func selectedCases(t *testing.T) []e2eCase {
	names := strings.Split(os.Getenv("OTONODE_E2E_CASES"), ",")
	var out []e2eCase
	for _, c := range e2eCases {
		if slices.Contains(names, c.name) || (names[0] == "" && !c.slow) {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		t.Fatalf("OTONODE_E2E_CASES=%q names no case", os.Getenv("OTONODE_E2E_CASES"))
	}
	return out
}

// TestEndToEnd is the acceptance run of issue 9 against a real PACS: the
// otonode binary serves with a fresh database, its supervised analysis
// worker and an export destination that is a real Orthanc; phantom series
// pushed to the node come back to Orthanc as SEG and SR (and KOS when
// flagged), and the analysis rows are in the database.
func TestEndToEnd(t *testing.T) {
	start := time.Now()
	bin := buildOtonode(t)
	ortLib := onnxRuntime(t)
	pacs := startOrthanc(t)
	dsn := testenv.Postgres(t, "otonode_conf")
	// OTONODE_E2E_TTA replaces the worker's augmentations (testTTA), e.g.
	// "identity" for a quicker bilateral run (one pass: no uncertainty, so
	// the flagged case then fails).
	node := startServe(t, bin, serveOptions{dsn: dsn, pacs: pacs, ortLib: ortLib, model: calibratedModel(t),
		tta: os.Getenv("OTONODE_E2E_TTA")})
	t.Logf("built and started in %v", time.Since(start).Round(time.Millisecond))

	// The parallel subtests run after this function returns: what they
	// use is released by cleanups, which run after them.
	cases := selectedCases(t)
	// A bound against hangs, not a timing: on two shared cores under a
	// load of 15 one 4-pass analysis of a 128³ phantom took 4.5 min.
	deadline := 15 * time.Minute
	if slices.ContainsFunc(cases, func(c e2eCase) bool { return c.slow }) {
		deadline = 40 * time.Minute // run with -timeout 45m
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	t.Cleanup(cancel)
	// Orthanc knows the node as a modality and reaches it (C-ECHO).
	if err := pacs.call(ctx, "PUT", "/modalities/otonode",
		map[string]any{"AET": node.aet, "Host": "127.0.0.1", "Port": node.dicomPort}, nil); err != nil {
		t.Fatal(err)
	}
	if err := pacs.call(ctx, "POST", "/modalities/otonode/echo", map[string]any{}, nil); err != nil {
		t.Fatalf("Orthanc cannot echo the node: %v", err)
	}

	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })

	// Generate every phantom, then push them one after the other, as a
	// scanner would.
	work := t.TempDir()
	type pushed struct {
		c             e2eCase
		study, series string
		at            time.Time
	}
	var all []pushed
	for _, c := range cases {
		dir := filepath.Join(work, c.name)
		args := []string{"phantom", "case", "--seed", fmt.Sprint(c.seed), "--out", dir, "--size", c.size}
		if c.variant != "" {
			args = append(args, "--variant", c.variant)
		}
		if c.spacing != "" {
			args = append(args, "--spacing", c.spacing)
		}
		run(t, ctx, bin, args...)
		study, series := seriesOf(t, dir)
		for _, p := range all {
			if p.study == study {
				t.Fatalf("cases %s and %s share study %s: study-level selection would analyse only one", p.c.name, c.name, study)
			}
		}
		all = append(all, pushed{c: c, study: study, series: series})
	}
	for i := range all {
		p := &all[i]
		run(t, ctx, bin, "push", "--quiet", "--host", "127.0.0.1", "--port", fmt.Sprint(node.dicomPort),
			"--aet", "SCANNER", "--called-aet", node.aet, filepath.Join(work, p.c.name, "dicom"))
		p.at = time.Now()
	}

	t.Cleanup(func() { t.Logf("whole run %v", time.Since(start).Round(time.Second)) })
	for _, p := range all {
		t.Run(p.c.name, func(t *testing.T) {
			// The cases wait side by side; the node analyses them in turn.
			t.Parallel()
			checkCase(t, ctx, pacs, db, node, p.c, p.study, p.series, p.at)
		})
	}
}

// checkCase waits for the analysis row of one pushed series and for its
// results in Orthanc, and checks them against the case.
func checkCase(t *testing.T, ctx context.Context, pacs *orthanc, db *sql.DB, node *serveProc, c e2eCase, study, series string, pushedAt time.Time) {
	rows := waitAnalysis(t, ctx, db, series)
	t.Logf("analysis rows after %v: %+v", time.Since(pushedAt).Round(time.Second), rows)
	// `otonode status` shows the same rows.
	listed := node.status(t, ctx, series)
	if len(listed) != len(rows) {
		t.Errorf("otonode status lists %d rows for the series, the database has %d", len(listed), len(rows))
	}
	for i := range min(len(listed), len(rows)) {
		l, r := listed[i], rows[i]
		if l.ear != r.ear || l.status != r.status || l.flagged != r.flagged || l.reason != r.reason {
			t.Errorf("otonode status row %+v, database row %+v", listed[i], rows[i])
		}
	}
	if c.noInnerEar {
		if len(rows) != 1 || !strings.Contains(rows[0].reason, "no inner ear found") {
			t.Fatalf("want one row with reason \"no inner ear found\", got %+v", rows)
		}
		// Results of other cases reach Orthanc within seconds of theirs;
		// give this one the same time to (wrongly) show up.
		time.Sleep(5 * time.Second)
		got, err := pacs.studySeries(ctx, study)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range got {
			if m := s.MainDicomTags["Modality"]; m == "SEG" || m == "SR" || m == "KO" {
				t.Errorf("a %s series reached Orthanc for a series without an inner ear", m)
			}
		}
		return
	}
	flagged := c.flagged
	if c.anyFlag {
		flagged = slices.ContainsFunc(rows, func(r analysisRow) bool { return r.flagged })
		t.Logf("flagged by the model: %v", flagged)
	}
	var ears []string
	for _, r := range rows {
		ears = append(ears, r.ear)
		if !c.anyFlag && r.flagged != c.flagged {
			t.Errorf("ear %s: flagged=%v (%s), want %v", r.ear, r.flagged, r.flagReasons, c.flagged)
		}
		if r.volume <= 0 {
			t.Errorf("ear %s: no inner-ear volume", r.ear)
		}
	}
	slices.Sort(ears)
	if !slices.Equal(ears, c.ears) {
		t.Errorf("analysed ears %q, want %q", ears, c.ears)
	}

	want := []string{"SEG", "SR"}
	if flagged {
		want = append(want, "KO")
	}
	found := waitResults(t, ctx, pacs, study, want)
	t.Logf("%s in Orthanc %v after the push", strings.Join(want, " + "), time.Since(pushedAt).Round(time.Second))

	// The node holds the results too: Orthanc's C-FIND to the node lists
	// the source and every result series of the study.
	var q struct{ ID string }
	if err := pacs.call(ctx, "POST", "/modalities/otonode/query", map[string]any{"Level": "Series",
		"Query": map[string]string{"StudyInstanceUID": study, "Modality": "", "SeriesInstanceUID": ""}}, &q); err != nil {
		t.Fatal(err)
	}
	var answers []map[string]any
	if err := pacs.call(ctx, "GET", "/queries/"+q.ID+"/answers?expand&simplify", nil, &answers); err != nil {
		t.Fatal(err)
	}
	var atNode []string
	for _, a := range answers {
		atNode = append(atNode, str(a, "Modality"))
	}
	slices.Sort(atNode)
	if wantAtNode := append([]string{"CT"}, want...); !sameSet(atNode, wantAtNode) {
		t.Errorf("C-FIND at the node lists series of modalities %q, want %q", atNode, wantAtNode)
	}

	seg := found["SEG"]
	if refs := referencedSeries(seg, "ReferencedSeriesSequence"); !slices.Contains(refs, series) {
		t.Errorf("SEG references series %q, not the pushed %s", refs, series)
	}
	if n := len(sequence(seg, "SegmentSequence")); n != len(c.ears) {
		t.Errorf("SEG has %d segments, want one per ear (%d)", n, len(c.ears))
	}
	if got := segmentSides(seg); !slices.Equal(got, c.ears) {
		t.Errorf("SEG segments are of the ears %q, want %q", got, c.ears)
	}
	sr := found["SR"]
	if refs := evidenceSeries(sr); !slices.Contains(refs, series) {
		t.Errorf("SR evidence names series %q, not the pushed %s", refs, series)
	}
	if got := srSides(sr); !slices.Equal(got, c.ears) {
		t.Errorf("SR findings are of the ears %q, want %q", got, c.ears)
	}
	if got := srFlag(sr); got != flagged {
		t.Errorf("SR report-level out-of-distribution flag %v, want %v", got, flagged)
	}
	if flagged {
		kos := found["KO"]
		if refs := evidenceSeries(kos); !slices.Contains(refs, series) {
			t.Errorf("KOS selects series %q, not the pushed %s", refs, series)
		}
		if title := conceptValue(kos); title != "113008" {
			t.Errorf("KOS title %q, want 113008 (For Peer Review)", title)
		}
		if !node.flaggedEvent(t, ctx, series) {
			t.Errorf("no analysis flagged event on NATS for %s", series)
		}
	}
}

// analysisRow is one row of the analyses table.
type analysisRow struct {
	ear, status, reason string
	volume              float64
	flagged             bool
	flagReasons         string
	timings             string // JSON: stage -> seconds
}

// waitAnalysis polls the database until the series has analysis rows.
func waitAnalysis(t *testing.T, ctx context.Context, db *sql.DB, series string) []analysisRow {
	t.Helper()
	for {
		rs, err := db.QueryContext(ctx, `SELECT ear, status, reason, COALESCE(volume_mm3, 0), flagged, flag_reasons, timings
			FROM analyses WHERE series_instance_uid = $1 ORDER BY ear`, series)
		var rows []analysisRow
		if err == nil {
			for rs.Next() {
				var r analysisRow
				if err = rs.Scan(&r.ear, &r.status, &r.reason, &r.volume, &r.flagged, &r.flagReasons, &r.timings); err != nil {
					break
				}
				rows = append(rows, r)
			}
			rs.Close()
		}
		if len(rows) > 0 {
			return rows
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no analysis row for series %s: %v (last query error: %v)", series, ctx.Err(), err)
		case <-time.After(time.Second):
		}
	}
}

// waitResults polls Orthanc until the study holds a series of each wanted
// modality, and returns the tags of the first instance of each.
func waitResults(t *testing.T, ctx context.Context, pacs *orthanc, study string, modalities []string) map[string]map[string]any {
	t.Helper()
	for {
		series, err := pacs.studySeries(ctx, study)
		found := map[string]map[string]any{}
		for _, s := range series {
			m := s.MainDicomTags["Modality"]
			if !slices.Contains(modalities, m) || len(s.Instances) == 0 {
				continue
			}
			if _, dup := found[m]; dup {
				t.Errorf("two %s series in Orthanc for one analysis", m)
				continue
			}
			if found[m], err = pacs.tags(ctx, s.Instances[0]); err != nil {
				t.Fatal(err)
			}
		}
		if len(found) == len(modalities) {
			return found
		}
		select {
		case <-ctx.Done():
			var have []string
			for m := range found {
				have = append(have, m)
			}
			t.Fatalf("Orthanc holds %q of %q for study %s: %v (last error %v)", have, modalities, study, ctx.Err(), err)
		case <-time.After(time.Second):
		}
	}
}

// sides maps SNOMED CT laterality codes to the analyses' ear names.
var sides = map[string]string{"24028007": "R", "7771000": "L"}

// segmentSides lists the lateralities of a SEG's segments (the modifier of
// each segment's property type), sorted, each once.
func segmentSides(seg map[string]any) []string {
	var out []string
	for _, s := range sequence(seg, "SegmentSequence") {
		for _, typ := range sequence(s, "SegmentedPropertyTypeCodeSequence") {
			for _, m := range sequence(typ, "SegmentedPropertyTypeModifierCodeSequence") {
				out = append(out, cmp.Or(sides[str(m, "CodeValue")], "?"+str(m, "CodeValue")))
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// srSides lists the values of every Laterality (272741003) content item
// of an SR's tree, sorted, each once.
func srSides(sr map[string]any) []string {
	var out []string
	var walk func(items []map[string]any)
	walk = func(items []map[string]any) {
		for _, it := range items {
			if conceptValue(it) == "272741003" {
				for _, v := range sequence(it, "ConceptCodeSequence") {
					out = append(out, cmp.Or(sides[str(v, "CodeValue")], "?"+str(v, "CodeValue")))
				}
			}
			walk(sequence(it, "ContentSequence"))
		}
	}
	walk(sequence(sr, "ContentSequence"))
	slices.Sort(out)
	return slices.Compact(out)
}

// sequence returns the items of a sequence in Orthanc's simplified JSON.
func sequence(d map[string]any, keyword string) []map[string]any {
	items, _ := d[keyword].([]any)
	var out []map[string]any
	for _, it := range items {
		if m, ok := it.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func str(d map[string]any, keyword string) string {
	s, _ := d[keyword].(string)
	return s
}

func referencedSeries(d map[string]any, keyword string) []string {
	var out []string
	for _, it := range sequence(d, keyword) {
		out = append(out, str(it, "SeriesInstanceUID"))
	}
	return out
}

// evidenceSeries lists the series of the Current Requested Procedure
// Evidence Sequence (SR and KOS).
func evidenceSeries(d map[string]any) []string {
	var out []string
	for _, st := range sequence(d, "CurrentRequestedProcedureEvidenceSequence") {
		out = append(out, referencedSeries(st, "ReferencedSeriesSequence")...)
	}
	return out
}

// conceptValue is the CodeValue of an SR content item's (or document's)
// Concept Name.
func conceptValue(d map[string]any) string {
	if c := sequence(d, "ConceptNameCodeSequence"); len(c) > 0 {
		return str(c[0], "CodeValue")
	}
	return ""
}

// srFlag reads the report-level out-of-distribution flag: the CODE item
// (OOD002) directly under the Qualitative Evaluations container.
func srFlag(sr map[string]any) bool {
	for _, it := range sequence(sr, "ContentSequence") {
		if conceptValue(it) != "C0034375" {
			continue
		}
		for _, q := range sequence(it, "ContentSequence") {
			if conceptValue(q) == "OOD002" {
				v := sequence(q, "ConceptCodeSequence")
				return len(v) > 0 && str(v[0], "CodeValue") == "373066001"
			}
		}
	}
	return false
}

// seriesOf reads the study and series UIDs of a phantom case folder.
func seriesOf(t *testing.T, dir string) (study, series string) {
	t.Helper()
	var info struct {
		Identity struct {
			Study  string `json:"study_instance_uid"`
			Series string `json:"series_instance_uid"`
		} `json:"identity"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "case.json"))
	if err == nil {
		err = json.Unmarshal(b, &info)
	}
	if err != nil || info.Identity.Study == "" || info.Identity.Series == "" {
		t.Fatalf("%s: no study/series UID in case.json: %v", dir, err)
	}
	return info.Identity.Study, info.Identity.Series
}

// sameSet reports whether a and b hold the same strings, in any order.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
