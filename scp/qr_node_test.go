package scp

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestNodeQueryRetrieve checks that `otonode serve` answers Q/R on its DICOM
// port: dcmtk findscu finds a stored study and getscu retrieves its series.
func TestNodeQueryRetrieve(t *testing.T) {
	storescu, findscu, getscu := lookTool(t, "storescu"), lookTool(t, "findscu"), lookTool(t, "getscu")
	c := testConfig(t)
	startNode(t, c)
	root := uidRoot()
	s := seriesSpec{Study: root + ".1", Series: root + ".2", Number: 1, N: 3, Thickness: "0.6", Kernel: "BONE"}
	src := filepath.Join(t.TempDir(), "src")
	s.write(t, src)
	port := fmt.Sprint(c.DICOM.Port)
	env := []string{"TCP_NODELAY=1"}
	run := func(name string, args ...string) string {
		cmd := exec.Command(name, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", filepath.Base(name), err, out)
		}
		return string(out)
	}
	run(storescu, "-aec", c.DICOM.AETitle, "-aet", "SENDER", "+sd", "+r", "127.0.0.1", port, src)
	out := run(findscu, "-v", "-S", "-aec", c.DICOM.AETitle, "-aet", "VIEWER",
		"-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID", "-k", "NumberOfStudyRelatedInstances", "127.0.0.1", port)
	if !strings.Contains(out, s.Study) {
		t.Fatalf("findscu did not find study %s:\n%s", s.Study, out)
	}
	dst := t.TempDir()
	run(getscu, "-S", "-aec", c.DICOM.AETitle, "-aet", "VIEWER", "-od", dst,
		"-k", "QueryRetrieveLevel=SERIES", "-k", "StudyInstanceUID="+s.Study, "-k", "SeriesInstanceUID="+s.Series, "127.0.0.1", port)
	got, _ := filepath.Glob(filepath.Join(dst, "*"))
	if len(got) != s.N {
		t.Fatalf("getscu retrieved %d files, want %d", len(got), s.N)
	}
}

func TestMoveDestinations(t *testing.T) {
	d, err := moveDestinations([]string{"PACS=10.1.2.3:104", " VIEWER = viewer.example:11112"})
	if err != nil || d["PACS"].Addr != "10.1.2.3:104" || d["VIEWER"].Addr != "viewer.example:11112" {
		t.Fatalf("%v %v", d, err)
	}
	for _, bad := range []string{"PACS", "=host:104", "PACS=host", "ABCDEFGHIJKLMNOPQ=h:1"} {
		if _, err := moveDestinations([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
