package results

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/suyashkumar/dicom/pkg/tag"
)

// writeObjects writes the SEG and SR of a case beside its CT files.
func writeObjects(t *testing.T, bc *builtCase) (segPath, srPath string, seg *SEG, sr *SR) {
	t.Helper()
	seg, sr, err := bc.writer.Write(bc.src, bc.res, bc.extras)
	if err != nil {
		t.Fatal(err)
	}
	segPath, srPath = filepath.Join(bc.dir, "seg.dcm"), filepath.Join(bc.dir, "sr.dcm")
	if err := os.WriteFile(segPath, seg.File, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(srPath, sr.File, 0o644); err != nil {
		t.Fatal(err)
	}
	if keep := os.Getenv("RESULTS_KEEP"); keep != "" {
		// For looking at the objects by hand: RESULTS_KEEP=/tmp/x go test.
		d := filepath.Join(keep, strings.ReplaceAll(t.Name(), "/", "_"))
		os.MkdirAll(d, 0o755)
		for _, p := range append(bc.paths, segPath, srPath) {
			b, _ := os.ReadFile(p)
			os.WriteFile(filepath.Join(d, filepath.Base(p)), b, 0o644)
		}
	}
	return segPath, srPath, seg, sr
}

// run runs a tool and returns its combined output and exit code.
func run(t *testing.T, name string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(need(t, name), args...)
	cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return out.String(), code
}

// messages returns the lines of a validator's output that contain word.
func messages(out, word string) []string {
	var m []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, word) {
			m = append(m, strings.TrimSpace(l))
		}
	}
	return m
}

// TestValidators runs dciodvfy on the SEG and SR, dsrdump on the SR,
// dcentvfy across CT + SEG + SR, and pydicom on both.
func TestValidators(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bc := tc.build(t)
			segPath, srPath, seg, _ := writeObjects(t, bc)
			for _, p := range []string{segPath, srPath} {
				out, code := run(t, "dciodvfy", "-new", p)
				if errs := messages(out, "Error"); code != 0 || len(errs) > 0 {
					t.Errorf("dciodvfy %s: rc %d\n%s", filepath.Base(p), code, out)
				}
				logWarnings(t, "dciodvfy "+filepath.Base(p), messages(out, "Warning"))
			}
			out, code := run(t, "dsrdump", "+Pc", "+Pt", "+Pu", srPath)
			if code != 0 || !strings.Contains(out, "Imaging Measurement Report") || !strings.Contains(out, "SCOORD3D") {
				t.Errorf("dsrdump: rc %d\n%s", code, out)
			}
			for _, w := range messages(out, "W: ") {
				// dcmtk 3.6.7 cannot check VRs under UTF-8 and says so
				// (reference §1.2); any other warning is a failure.
				if !strings.Contains(w, "does not support this Specific Character Set: ISO_IR 192") {
					t.Errorf("dsrdump: %s", w)
				}
			}
			out, code = run(t, "dsrdump", "-q", srPath)
			if code != 0 {
				t.Errorf("dsrdump -q: rc %d\n%s", code, out)
			}
			ent := append(append([]string{}, bc.paths...), segPath, srPath)
			out, code = run(t, "dcentvfy", ent...)
			if errs := messages(out, "Error"); code != 0 || len(errs) > 0 {
				t.Errorf("dcentvfy: rc %d\n%s", code, out)
			}
			logWarnings(t, "dcentvfy", messages(out, "Warning"))
			checkPydicom(t, bc, segPath, srPath, seg)
		})
	}
}

// logWarnings logs each distinct warning once with its count; the element
// path or file names (in <...>) are left out of the grouping.
func logWarnings(t *testing.T, tool string, lines []string) {
	t.Helper()
	count := make(map[string]int)
	var order []string
	for _, l := range lines {
		key := l
		if i := strings.Index(l, "</"); i >= 0 {
			if j := strings.Index(l[i:], "> - "); j >= 0 {
				key = l[:i] + "<path>" + l[i+j+1:]
			}
		}
		if i := strings.Index(key, " for file <"); i >= 0 {
			key = key[:i]
		}
		if count[key] == 0 {
			order = append(order, key)
		}
		count[key]++
	}
	for _, k := range order {
		t.Logf("%s: %d x %s", tool, count[k], k)
	}
}

// pydicomCheck reads both objects with pydicom, decodes the SEG with
// pydicom's own bit unpacking and compares it with the frames the Go side
// expects (written to a file, one byte per pixel).
const pydicomCheck = `
import sys, numpy as np, pydicom
seg = pydicom.dcmread(sys.argv[1])
sr = pydicom.dcmread(sys.argv[2])
want = np.fromfile(sys.argv[3], dtype=np.uint8)
assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4", seg.SOPClassUID
assert seg.file_meta.MediaStorageSOPInstanceUID == seg.SOPInstanceUID
assert sr.file_meta.MediaStorageSOPInstanceUID == sr.SOPInstanceUID
n, r, c = int(seg.NumberOfFrames), seg.Rows, seg.Columns
arr = seg.pixel_array.reshape(n, r, c)
assert arr.shape == (n, r, c), arr.shape
got = arr.astype(np.uint8).ravel()
assert got.shape == want.shape, (got.shape, want.shape)
bad = int((got != want).sum())
assert bad == 0, "%d pixels differ" % bad
assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
assert sr.ConceptNameCodeSequence[0].CodeValue == "126000"
print("pydicom ok", n, "frames", len(sr.ContentSequence), "root items", seg.PatientName)
`

func checkPydicom(t *testing.T, bc *builtCase, segPath, srPath string, seg *SEG) {
	t.Helper()
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		need(t, "python3-with-pydicom (/usr/bin/python3)")
	}
	// The frames as the Go side means them, one byte per pixel.
	var want []byte
	plane := bc.src.Rows * bc.src.Columns
	_, ds := parseFile(t, seg.File)
	raw := pixelBytes(t, ds.el(tag.PixelData).Value.GetValue())
	nframes := len(ds.items(tag.PerFrameFunctionalGroupsSequence))
	for i := 0; i < nframes*plane; i++ {
		if unpack(raw, i) {
			want = append(want, 1)
		} else {
			want = append(want, 0)
		}
	}
	wantPath := filepath.Join(bc.dir, "want.u8")
	if err := os.WriteFile(wantPath, want, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "-c", pydicomCheck, segPath, srPath, wantPath)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "No module named") && os.Getenv("CI") != "true" {
			t.Skipf("pydicom not available: %s", out)
		}
		t.Fatalf("pydicom: %v\n%s", err, out)
	}
	t.Logf("%s", bytes.TrimSpace(out))
}
