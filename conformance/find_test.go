package conformance

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/otonode/otonode/analysis/phantom"
	"github.com/otonode/otonode/dimse"
)

// levels of the find-keys table, with the information model to ask at each.
var findLevels = []struct{ level, model string }{
	{"PATIENT", dimse.PatientRootFind},
	{"STUDY", dimse.StudyRootFind},
	{"SERIES", dimse.StudyRootFind},
	{"IMAGE", dimse.StudyRootFind},
}

// noMatch is a value of the key's VR that no stored instance has: a key
// the node really matches must then return nothing, while a key it
// ignores would still return the instance.
func noMatch(vr string) string {
	switch vr {
	case "UI":
		return "1.2.3.999999"
	case "DA":
		return "18000101"
	case "TM":
		return "000000.001"
	case "IS", "US", "UL":
		return "65001"
	case "PN":
		return "ZZNOMATCH^ZZ"
	case "CS":
		return "ZZNOMATCH"
	}
	return "ZZNOMATCH-*"
}

// TestFindKeys queries a running node holding one small CT series with
// every key of the statement's find-keys table at every level: "unique" and
// "yes" keys must be matched (universal matching finds the series, a value
// it does not have finds nothing) and returned, "empty" keys accepted and
// returned empty, "refused" keys refused with A900.
func TestFindKeys(t *testing.T) {
	tb := loadStatement(t, map[string][]string{"find-keys": {"Keyword", "PATIENT", "STUDY", "SERIES", "IMAGE"}})["find-keys"]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	v, err := phantom.ParseVariant("")
	if err != nil {
		t.Fatal(err)
	}
	v.Size = [3]int{16, 16, 4}
	c, err := phantom.Generate(ctx, 1, v, phantom.Options{Workers: 1, NoSupersample: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "dicom")
	names, err := phantom.WriteSeries(ctx, dir, c.CT, &c.Info, phantom.SeriesOptions{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t)
	dial := func(props []dimse.Proposal) *dimse.Association {
		a, err := dimse.Dial(ctx, n.DICOMAddr(), dimse.DialOptions{CallingAETitle: "CONFTEST", CalledAETitle: n.Config.DICOM.AETitle, Proposals: props})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Release(ctx) })
		return a
	}
	st := dial(dimse.StorageProposals(dimse.CTImageStorage))
	for _, name := range names {
		if _, err := st.StoreFile(ctx, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	a := dial([]dimse.Proposal{
		{AbstractSyntax: dimse.PatientRootFind, TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian}},
		{AbstractSyntax: dimse.StudyRootFind, TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian}},
	})
	find := func(model, level string, tag dimse.Tag, vr, value string) (matches []*dimse.Identifier, err error) {
		id := &dimse.Identifier{}
		id.SetString(0x00080052, level)
		id.Set(tag, vr, []byte(value))
		err = a.Find(ctx, model, id, func(m *dimse.Identifier) error {
			matches = append(matches, m)
			return nil
		})
		return matches, err
	}

	for i, r := range tb.rows {
		kw := r["Keyword"]
		tag, vr, ok := dimse.LookupKeyword(kw)
		if !ok {
			t.Errorf("CONFORMANCE.md line %d: %s is not a keyword the node decodes", tb.lines[i], kw)
			continue
		}
		for _, l := range findLevels {
			want := r[l.level]
			all, err := find(l.model, l.level, tag, vr, "")
			var se *dimse.StatusError
			switch want {
			case "refused":
				if !errors.As(err, &se) || se.Status != dimse.StatusIdentifierDoesNotMatch {
					t.Errorf("%s at %s: %d matches, err %v; the statement says refused (A900)", kw, l.level, len(all), err)
				}
				continue
			case "unique", "yes", "empty":
			default:
				t.Errorf("CONFORMANCE.md line %d: %s at %s is %q; want unique, yes, empty or refused", tb.lines[i], kw, l.level, want)
				continue
			}
			if err != nil || len(all) == 0 {
				t.Errorf("%s at %s: %d matches, err %v; want the stored series", kw, l.level, len(all), err)
				continue
			}
			got := all[0].String(tag)
			if want == "empty" {
				if got != "" {
					t.Errorf("%s at %s returned %q; the statement says it is returned empty", kw, l.level, got)
				}
				continue
			}
			if !all[0].Has(tag) {
				t.Errorf("%s at %s: not returned", kw, l.level)
			}
			none, err := find(l.model, l.level, tag, vr, noMatch(vr))
			if err != nil || len(none) != 0 {
				t.Errorf("%s at %s = %q: %d matches, err %v; a matched key finds nothing with a value no instance has",
					kw, l.level, noMatch(vr), len(none), err)
			}
		}
	}
}
