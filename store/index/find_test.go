package index

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

func findFixture(t *testing.T, x *Index) {
	type inst struct {
		pid, name, study, date, acc, series, modality, sop string
		n                                                  int
	}
	for _, in := range []inst{
		{"P1", "Müller^Jürgen", "1.10", "20260105", "ACC1", "1.10.1", "CT", "1.10.1.1", 1},
		{"P1", "Müller^Jürgen", "1.10", "20260105", "ACC1", "1.10.1", "CT", "1.10.1.2", 2},
		{"P1", "Müller^Jürgen", "1.10", "20260105", "ACC1", "1.10.2", "SEG", "1.10.2.1", 1},
		{"P1", "Müller^Jürgen", "1.11", "20261127", "ACC2", "1.11.1", "CT", "1.11.1.1", 1},
		{"P2", "Doe^Jane", "1.12", "20250630", "ACC%3", "1.12.1", "MR", "1.12.1.1", 1},
	} {
		a := attrs(in.study, in.series, in.sop, in.n)
		a.PatientID, a.PatientName, a.StudyDate, a.AccessionNumber, a.Modality = in.pid, in.name, in.date, in.acc, in.modality
		record(t, x, a, 1, t0)
	}
}

func TestFind(t *testing.T) {
	tests := []struct {
		name string
		q    Query
		key  string   // the attribute collected from the matches
		want []string // sorted
	}{
		{"all studies", Query{Level: StudyLevel, Keys: map[string]string{"StudyDate": ""}}, "StudyInstanceUID", []string{"1.10", "1.11", "1.12"}},
		{"study by patient", Query{Level: StudyLevel, Keys: map[string]string{"PatientID": "P1"}}, "StudyInstanceUID", []string{"1.10", "1.11"}},
		{"name wildcard, any case", Query{Level: StudyLevel, Keys: map[string]string{"PatientName": "müller*"}}, "StudyInstanceUID", []string{"1.10", "1.11"}},
		{"date range", Query{Level: StudyLevel, Keys: map[string]string{"StudyDate": "20260101-20261231"}}, "StudyInstanceUID", []string{"1.10", "1.11"}},
		{"open range", Query{Level: StudyLevel, Keys: map[string]string{"StudyDate": "-20260105"}}, "StudyInstanceUID", []string{"1.10", "1.12"}},
		{"UID list", Query{Level: StudyLevel, Keys: map[string]string{"StudyInstanceUID": `1.10\1.12\9.9`}}, "StudyInstanceUID", []string{"1.10", "1.12"}},
		{"wildcard is literal for %", Query{Level: StudyLevel, Keys: map[string]string{"AccessionNumber": "ACC%*"}}, "StudyInstanceUID", []string{"1.12"}},
		{"wildcard case-sensitive", Query{Level: StudyLevel, Keys: map[string]string{"AccessionNumber": "acc*"}}, "StudyInstanceUID", nil},
		{"question mark", Query{Level: StudyLevel, Keys: map[string]string{"AccessionNumber": "ACC?"}}, "StudyInstanceUID", []string{"1.10", "1.11"}},
		{"modalities in study", Query{Level: StudyLevel, Keys: map[string]string{"ModalitiesInStudy": "SEG"}}, "StudyInstanceUID", []string{"1.10"}},
		{"modalities returned", Query{Level: StudyLevel, Keys: map[string]string{"StudyInstanceUID": "1.10", "ModalitiesInStudy": ""}}, "ModalitiesInStudy", []string{`CT\SEG`}},
		{"related counts", Query{Level: StudyLevel, Keys: map[string]string{"StudyInstanceUID": "1.10", "NumberOfStudyRelatedInstances": "", "NumberOfStudyRelatedSeries": ""}}, "NumberOfStudyRelatedInstances", []string{"3"}},
		{"series of a study", Query{Level: SeriesLevel, Keys: map[string]string{"StudyInstanceUID": "1.10", "Modality": ""}}, "Modality", []string{"CT", "SEG"}},
		{"series by modality", Query{Level: SeriesLevel, Keys: map[string]string{"Modality": "CT"}}, "SeriesInstanceUID", []string{"1.10.1", "1.11.1"}},
		{"images of a series", Query{Level: ImageLevel, Keys: map[string]string{"SeriesInstanceUID": "1.10.1", "InstanceNumber": ""}}, "InstanceNumber", []string{"1", "2"}},
		{"image by number", Query{Level: ImageLevel, Keys: map[string]string{"SeriesInstanceUID": "1.10.1", "InstanceNumber": "2"}}, "SOPInstanceUID", []string{"1.10.1.2"}},
		{"patients", Query{Level: PatientLevel, Keys: map[string]string{"PatientName": "", "NumberOfPatientRelatedStudies": ""}}, "NumberOfPatientRelatedStudies", []string{"1", "2"}},
		{"unknown key ignored", Query{Level: SeriesLevel, Keys: map[string]string{"Modality": "MR", "OperatorsName": "X"}}, "SeriesInstanceUID", []string{"1.12.1"}},
		{"limit", Query{Level: ImageLevel, Keys: map[string]string{}, Limit: 2}, "SOPInstanceUID", []string{"1.10.1.1", "1.10.1.2"}},
	}
	each(t, func(t *testing.T, open func() *Index) {
		x := open()
		findFixture(t, x)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ms, err := x.Find(context.Background(), tt.q)
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, m := range ms {
					if _, ok := m[uniqueKey[tt.q.Level]]; !ok {
						t.Errorf("match without the unique key: %v", m)
					}
					got = append(got, m[tt.key])
				}
				sort.Strings(got)
				if fmt.Sprint(got) != fmt.Sprint(tt.want) {
					t.Errorf("%s = %q, want %q", tt.key, got, tt.want)
				}
			})
		}
		_, err := x.Find(context.Background(), Query{Level: StudyLevel, Keys: map[string]string{"SOPInstanceUID": "1"}})
		if !errors.Is(err, ErrUnsupportedKey) {
			t.Errorf("image key at study level: %v", err)
		}
		if _, err := x.Find(context.Background(), Query{Level: "WORKLIST"}); !errors.Is(err, ErrUnsupportedKey) || !strings.Contains(err.Error(), "WORKLIST") {
			t.Errorf("unknown level: %v", err)
		}
		// FindEach hands over one match at a time and stops at an error.
		stop := errors.New("stop")
		calls := 0
		err = x.FindEach(context.Background(), Query{Level: ImageLevel, Keys: map[string]string{}}, func(m Match) error {
			calls++
			if calls == 2 {
				return stop
			}
			return nil
		})
		if !errors.Is(err, stop) || calls != 2 {
			t.Errorf("FindEach: %d calls, err %v; want 2 calls and the callback's error", calls, err)
		}
	})
}

func TestOpenSQLiteSynchronous(t *testing.T) {
	dir := t.TempDir()
	for _, mode := range []string{"FULL", "NORMAL", "OFF"} {
		x, err := OpenSQLite(context.Background(), filepath.Join(dir, mode+".db"), Synchronous(mode))
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		x.Close()
	}
	if _, err := OpenSQLite(context.Background(), filepath.Join(dir, "x.db"), Synchronous("SOMETIMES")); err == nil {
		t.Fatal("unknown synchronous mode accepted")
	}
}
