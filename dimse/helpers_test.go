package dimse_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/otonode/otonode/dimse"
)

// corpus returns the path of a file of the shared test corpus.
func corpus(t testing.TB, rel string) string {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(here), "..", "..", "shared", "testdata", "dicom-corpus", rel)
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("corpus file missing: %v", err)
		}
		t.Skipf("corpus file missing: %v", err)
	}
	return p
}

// Files of the corpus used across tests, with their transfer syntaxes.
var (
	ctExplicit   = "pydicom/src/pydicom/data/test_files/CT_small.dcm"
	mrImplicit   = "pydicom/src/pydicom/data/test_files/MR_small_implicit.dcm"
	ctBig        = "dicomParser/testImages/CT1_UNC.explicit_little_endian.dcm"
	rtplan       = "pydicom/src/pydicom/data/test_files/rtplan.dcm"
	jpegLossless = "pydicom-data/data_store/data/JPGLosslessP14SV1_1s_1f_8b.dcm"
	jpegLL57     = "dicomParser/testImages/encapsulated/multi-frame/CT0012.fragmented_no_bot_jpeg_lossless.57.dcm"
	rleMR        = "pydicom/src/pydicom/data/test_files/MR_small_RLE.dcm"
	jpegLL70     = "dicomParser/testImages/encapsulated/multi-frame/CT0012.fragmented_no_bot_jpeg_lossless.70.dcm"

	// Files dcmtk's storescu sends without re-encoding (it drops trailing
	// padding and rewrites implicit VR files, so not every file qualifies).
	signedCT  = "orthanc-tests/Database/SignedCT.dcm"
	issue141  = "orthanc-tests/Database/Issue141.dcm"
	emriSmall = "pydicom-data/data_store/data/emri_small.dcm"
	testSR    = "pydicom/src/pydicom/data/test_files/test-SR.dcm"
	scYBR     = "pydicom/src/pydicom/data/test_files/SC_ybr_full_422_uncompressed.dcm"
	overlayMR = "pydicom/src/pydicom/data/test_files/examples_overlay.dcm"
	scJPEGLL  = "pydicom/src/pydicom/data/test_files/SC_rgb_jpeg_gdcm.dcm"
)

// dataSetOf returns a Part-10 file's meta and the bytes after its meta.
func dataSetOf(t testing.TB, path string) (dimse.FileMeta, []byte) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	fm, err := dimse.ReadFileMeta(br)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	return fm, b
}

// requireTool finds a peer program: a skip outside CI, a failure under CI.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required under CI=true: %v", name, err)
		}
		t.Skipf("%s not installed: %v", name, err)
	}
	return p
}

// peerEnv is the environment for dcmtk tools: without TCP_NODELAY every
// message waits on Nagle's algorithm.
func peerEnv() []string { return append(os.Environ(), "TCP_NODELAY=1") }

// received is what a recording C-STORE handler saw.
type received struct {
	SOPClassUID, SOPInstanceUID, TransferSyntaxUID, CallingAETitle string
	Data                                                           []byte
}

// recorder is a C-STORE handler keeping every instance in memory (tests
// only; the node streams to disk).
type recorder struct {
	mu  sync.Mutex
	got map[string]received
}

func (rec *recorder) ServeDIMSE(w dimse.ResponseWriter, r *dimse.Request) {
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, r.Body); err != nil {
		w.WriteStatus(dimse.StatusProcessingFailure)
		return
	}
	rec.mu.Lock()
	if rec.got == nil {
		rec.got = map[string]received{}
	}
	rec.got[r.SOPInstanceUID()] = received{r.SOPClassUID(), r.SOPInstanceUID(), r.TransferSyntaxUID(),
		r.Association.CallingAETitle, buf.Bytes()}
	rec.mu.Unlock()
	w.WriteStatus(dimse.StatusSuccess)
}

func (rec *recorder) get(uid string) (received, bool) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	r, ok := rec.got[uid]
	return r, ok
}

func (rec *recorder) count() int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return len(rec.got)
}

// allTransferSyntaxes is a storage SCP's list, uncompressed preferred.
var allTransferSyntaxes = []string{
	dimse.ExplicitVRLittleEndian, dimse.ImplicitVRLittleEndian, dimse.ExplicitVRBigEndian,
	dimse.DeflatedExplicitVRLittleEndian, dimse.JPEGLosslessSV1, dimse.JPEGLossless, dimse.JPEGBaseline8Bit,
	"1.2.840.10008.1.2.4.51", dimse.JPEGLSLossless, "1.2.840.10008.1.2.4.81", dimse.JPEG2000Lossless,
	"1.2.840.10008.1.2.4.91", dimse.RLELossless,
}

// storageServer returns a server accepting every SOP class in every
// listed transfer syntax, recording what it receives.
func storageServer(rec *recorder) *dimse.Server {
	mux := dimse.NewServeMux()
	mux.Handle(dimse.CStoreRQField, "", rec)
	return &dimse.Server{
		AETitle:  "OTONODE",
		Syntaxes: []dimse.Syntax{{AbstractSyntax: "", TransferSyntaxes: allTransferSyntaxes}},
		Handler:  mux,
	}
}

func netListen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

func splitHostPort(s string) (string, string, error) { return net.SplitHostPort(s) }

// waitListening waits until addr accepts connections.
func waitListening(t testing.TB, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s", addr)
}
