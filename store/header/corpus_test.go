package header

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// corpusDir is the shared corpus of odd and damaged DICOM files, outside
// the repository; OTONODE_CORPUS overrides it.
func corpusDir(t *testing.T) string {
	dir := os.Getenv("OTONODE_CORPUS")
	if dir == "" {
		dir = "../../../shared/testdata/dicom-corpus"
	}
	if _, err := os.Stat(dir); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("corpus missing: %v", err)
		}
		t.Skipf("corpus missing: %v", err)
	}
	return dir
}

func corpusFiles(t *testing.T) []string {
	var files []string
	err := filepath.WalkDir(corpusDir(t), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestCorpus parses every corpus file: each either yields attributes or a
// typed *Error, never a panic, and memory stays bounded. Where pydicom
// reads the same file, the UIDs and a few values must agree.
func TestCorpus(t *testing.T) {
	files := corpusFiles(t)
	ref := pydicomReference(t, files)
	var ok, failed, agreed int
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var maxHeap uint64
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		a, err := ParseFile(f, Limits{})
		f.Close()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		maxHeap = max(maxHeap, m.HeapAlloc)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Errorf("%s: error %v is not an *Error", p, err)
			} else if strings.Contains(pe.Reason, "internal error") {
				t.Errorf("%s: panic: %v", p, err)
			} else if len(pe.Comment()) > 64 {
				t.Errorf("%s: comment longer than 64: %q", p, pe.Comment())
			}
			failed++
			t.Logf("refused %s: %s", strings.TrimPrefix(p, corpusDir(t)), pe.Comment())
			continue
		}
		ok++
		r, has := ref[p]
		if !has || r.Error != "" {
			continue
		}
		agreed++
		for _, c := range []struct{ name, got, want string }{
			{"SOPInstanceUID", a.SOPInstanceUID, r.SOPInstanceUID},
			{"StudyInstanceUID", a.StudyInstanceUID, r.StudyInstanceUID},
			{"SeriesInstanceUID", a.SeriesInstanceUID, r.SeriesInstanceUID},
			{"Modality", a.Modality, r.Modality},
			{"PatientID", a.PatientID, r.PatientID},
		} {
			if c.got != c.want {
				t.Errorf("%s: %s = %q, pydicom says %q", p, c.name, c.got, c.want)
			}
		}
		if r.Rows != nil && (a.Rows == nil || *a.Rows != *r.Rows) {
			t.Errorf("%s: Rows = %v, pydicom says %d", p, a.Rows, *r.Rows)
		}
	}
	t.Logf("%d files: %d parsed (%d checked against pydicom), %d refused; peak heap %d MiB", len(files), ok, agreed, failed, maxHeap>>20)
	if ok == 0 || agreed < ok/2 {
		t.Errorf("only %d of %d parsed files were checked against pydicom", agreed, ok)
	}
	if maxHeap > 256<<20 {
		t.Errorf("peak heap %d MiB", maxHeap>>20)
	}
}

type pyRef struct {
	Error             string `json:"error"`
	SOPInstanceUID    string `json:"sop"`
	StudyInstanceUID  string `json:"study"`
	SeriesInstanceUID string `json:"series"`
	Modality          string `json:"modality"`
	PatientID         string `json:"patient_id"`
	Rows              *int   `json:"rows"`
}

// pydicomReference reads the files with pydicom (header only) and returns
// its values for files it reads without complaint.
func pydicomReference(t *testing.T, files []string) map[string]pyRef {
	const script = `
import sys, json, warnings
import pydicom
warnings.simplefilter("ignore")
out = {}
for p in sys.stdin.read().split("\n"):
    if not p:
        continue
    try:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        g = lambda k: str(ds.get(k, "") or "").strip()
        rows = ds.get("Rows", None)
        out[p] = {"sop": g("SOPInstanceUID"), "study": g("StudyInstanceUID"),
                  "series": g("SeriesInstanceUID"), "modality": g("Modality"),
                  "patient_id": g("PatientID"), "rows": int(rows) if isinstance(rows, int) else None}
    except Exception as e:
        out[p] = {"error": str(e) or type(e).__name__}
json.dump(out, sys.stdout)
`
	py := "/usr/bin/python3"
	cmd := exec.Command(py, "-c", script)
	cmd.Stdin = strings.NewReader(strings.Join(files, "\n"))
	out, err := cmd.Output()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("pydicom reference: %v", err)
		}
		t.Logf("no pydicom reference: %v", err)
		return nil
	}
	ref := map[string]pyRef{}
	if err := json.Unmarshal(out, &ref); err != nil {
		t.Fatal(err)
	}
	return ref
}
