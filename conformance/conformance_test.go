package conformance

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/results"
	"github.com/otonode/otonode/scp"
	"github.com/otonode/otonode/scp/config"
	"github.com/otonode/otonode/scp/qr"
)

// Columns of the machine-read tables.
const (
	colSOPClassUID = "SOP Class UID"
	colTSUID       = "Transfer Syntax UID"
	colSCU         = "SCU"
	colSCP         = "SCP"
)

var sopTables = map[string][]string{
	"storage-sop-classes":              {colSOPClassUID, colSCU, colSCP},
	"other-sop-classes":                {colSOPClassUID, colSCU, colSCP},
	"storage-transfer-syntaxes":        {colTSUID, "Preference"},
	"query-retrieve-transfer-syntaxes": {colTSUID, "Preference"},
}

// inPreference returns a transfer syntax table's UIDs ordered by its
// Preference column, which must number the rows 1..n.
func inPreference(t *testing.T, tb *table) []string {
	t.Helper()
	out := make([]string, len(tb.rows))
	for i, r := range tb.rows {
		p, err := strconv.Atoi(r["Preference"])
		if err != nil || p < 1 || p > len(out) || out[p-1] != "" {
			t.Fatalf("CONFORMANCE.md line %d: table %s: preference %q is not a unique number 1..%d", tb.lines[i], tb.name, r["Preference"], len(out))
		}
		out[p-1] = r[colTSUID]
	}
	return out
}

// rolesOf returns the UIDs of the rows whose column col says Yes; any other
// value than Yes or No is an error.
func rolesOf(t *testing.T, tb *table, col string) []string {
	t.Helper()
	var out []string
	for i, r := range tb.rows {
		switch v := r[col]; {
		case strings.HasPrefix(v, "Yes"):
			out = append(out, r[colSOPClassUID])
		case strings.HasPrefix(v, "No"):
		default:
			t.Errorf("CONFORMANCE.md line %d: table %s: %s is %q, want Yes or No", tb.lines[i], tb.name, col, v)
		}
	}
	return out
}

// startNode runs an otonode node (scp.New, as `otonode serve` does, with
// embedded NATS and SQLite in a temporary directory) on free ports.
func startNode(t *testing.T) *scp.Node {
	t.Helper()
	c := config.Default()
	c.DataDir = filepath.Join(t.TempDir(), "data")
	c.DICOM.Host = "127.0.0.1"
	c.DICOM.Port = freePort(t)
	c.HTTP.Listen = ""
	c.Storage.MinFreeBytes = 0
	ctx, cancel := context.WithCancel(context.Background())
	n, err := scp.New(ctx, c, slog.New(slog.DiscardHandler))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx, time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node: %v", err)
		}
	})
	return n
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestSOPClassesAndTransferSyntaxes compares the statement's SOP class and
// transfer syntax tables with the abstract syntaxes a running node's DICOM
// server accepts, both ways, and with the lists the code exports.
func TestSOPClassesAndTransferSyntaxes(t *testing.T) {
	tables := loadStatement(t, sopTables)
	storage, other := tables["storage-sop-classes"], tables["other-sop-classes"]
	storageTS := inPreference(t, tables["storage-transfer-syntaxes"])
	qrTS := inPreference(t, tables["query-retrieve-transfer-syntaxes"])

	docStorage := rolesOf(t, storage, colSCP)
	docOther := rolesOf(t, other, colSCP)
	diff(t, "storage SOP classes (scp.StorageSOPClasses)", docStorage, scp.StorageSOPClasses())
	diff(t, "storage transfer syntaxes (scp.TransferSyntaxes)", storageTS, scp.TransferSyntaxes())
	if !slices.Equal(storageTS, scp.TransferSyntaxes()) {
		t.Errorf("storage transfer syntaxes in order of preference: statement %q, code %q", storageTS, scp.TransferSyntaxes())
	}
	var qrClasses []string
	for _, s := range qr.Syntaxes() {
		qrClasses = append(qrClasses, s.AbstractSyntax)
		if !slices.Equal(s.TransferSyntaxes, qrTS) {
			t.Errorf("%s: qr.Syntaxes has transfer syntaxes %q, the statement %q", s.AbstractSyntax, s.TransferSyntaxes, qrTS)
		}
	}
	diff(t, "Query/Retrieve and Verification SOP classes (qr.Syntaxes)", docOther,
		append([]string{dimse.VerificationSOPClass}, qrClasses...))

	// What the node's DICOM server is configured with, as `otonode serve`
	// builds it.
	n := startNode(t)
	var nodeClasses, otherTS []string
	for _, s := range n.DIMSE.Syntaxes {
		c := s.AbstractSyntax
		nodeClasses = append(nodeClasses, c)
		switch {
		case slices.Contains(docStorage, c):
			if !slices.Equal(s.TransferSyntaxes, storageTS) {
				otherTS = append(otherTS, c)
				if len(otherTS) == 1 {
					t.Errorf("node accepts %s in %q, the statement says %q", c, s.TransferSyntaxes, storageTS)
				}
			}
			if !s.SCPRole {
				t.Errorf("node does not let a C-GET SCU take the SCP role for %s, the statement says it does", c)
			}
		case slices.Contains(docOther, c):
			if !slices.Equal(s.TransferSyntaxes, qrTS) {
				t.Errorf("node accepts %s in %q, the statement says %q", c, s.TransferSyntaxes, qrTS)
			}
			if s.SCPRole {
				t.Errorf("node lets the requestor be SCP for %s, the statement says SCU only", c)
			}
		}
	}
	if len(otherTS) > 1 {
		t.Errorf("... and %d more storage SOP classes in other transfer syntaxes than the statement says", len(otherTS)-1)
	}
	diff(t, "abstract syntaxes of the running node", append(slices.Clone(docStorage), docOther...), nodeClasses)

	// The created objects' classes are stored by the node and sent by it.
	scu := rolesOf(t, storage, colSCU)
	for _, c := range []string{results.SegmentationStorage, results.Comprehensive3DSRStorage, results.KeyObjectSelectionStorage} {
		if !slices.Contains(scu, c) || !slices.Contains(docStorage, c) {
			t.Errorf("%s: the node writes and exports it, the statement must list it as SCU and SCP", c)
		}
	}
}

// otherTransferSyntaxes are encodings the node must refuse: every one in
// PS3.6 Annex A that a CT sender may propose and the statement does not list.
var otherTransferSyntaxes = []string{
	dimse.ExplicitVRBigEndian,
	dimse.JPEGBaseline8Bit,
	"1.2.840.10008.1.2.4.51", // JPEG Extended (Process 2 & 4)
	dimse.JPEGLSLossless,
	"1.2.840.10008.1.2.4.81", // JPEG-LS Lossy (Near-Lossless)
	dimse.JPEG2000Lossless,
	"1.2.840.10008.1.2.4.91",  // JPEG 2000
	"1.2.840.10008.1.2.4.201", // High-Throughput JPEG 2000 (Lossless Only)
	"1.2.840.10008.1.2.4.100", // MPEG2 Main Profile / Main Level
	"1.2.840.10008.1.2.1.98",  // Encapsulated Uncompressed Explicit VR Little Endian
}

// otherSOPClasses are SOP classes the node must refuse.
var otherSOPClasses = []string{
	"1.2.840.10008.5.1.4.31",        // Modality Worklist Information Model - FIND
	"1.2.840.10008.3.1.2.3.3",       // Modality Performed Procedure Step
	"1.2.840.10008.1.20.1",          // Storage Commitment Push Model
	"1.2.840.10008.5.1.4.1.1.481.4", // RT Beams Treatment Record Storage
	"1.2.840.10008.5.1.4.1.2.3.1",   // Patient/Study Only Query/Retrieve - FIND (retired)
}

// TestNegotiationMatchesStatement proposes to a running node every SOP
// class of the statement in every transfer syntax the statement lists for
// it (each must be accepted), and other transfer syntaxes and SOP classes
// (each must be refused).
func TestNegotiationMatchesStatement(t *testing.T) {
	tables := loadStatement(t, sopTables)
	storageTS := inPreference(t, tables["storage-transfer-syntaxes"])
	qrTS := inPreference(t, tables["query-retrieve-transfer-syntaxes"])
	type want struct {
		abstract, ts string
		accept       bool
	}
	var cases []want
	for _, c := range rolesOf(t, tables["storage-sop-classes"], colSCP) {
		for _, ts := range storageTS {
			cases = append(cases, want{c, ts, true})
		}
	}
	for _, c := range rolesOf(t, tables["other-sop-classes"], colSCP) {
		for _, ts := range qrTS {
			cases = append(cases, want{c, ts, true})
		}
		for _, ts := range storageTS {
			if !slices.Contains(qrTS, ts) {
				cases = append(cases, want{c, ts, false})
			}
		}
	}
	for _, ts := range otherTransferSyntaxes {
		if slices.Contains(storageTS, ts) {
			t.Fatalf("%s is in the statement's storage transfer syntaxes; remove it from otherTransferSyntaxes", ts)
		}
		cases = append(cases, want{dimse.CTImageStorage, ts, false})
	}
	for _, c := range otherSOPClasses {
		cases = append(cases, want{c, dimse.ExplicitVRLittleEndian, false})
	}

	n := startNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Offered all at once in the reverse order, the node picks its first
	// preference.
	reversed := slices.Clone(storageTS)
	slices.Reverse(reversed)
	a, err := dimse.Dial(ctx, n.DICOMAddr(), dimse.DialOptions{CallingAETitle: "CONFTEST", CalledAETitle: n.Config.DICOM.AETitle,
		Proposals: []dimse.Proposal{{AbstractSyntax: dimse.CTImageStorage, TransferSyntaxes: reversed}}})
	if err != nil {
		t.Fatal(err)
	}
	if pcs := a.PresentationContexts(); len(pcs) != 1 || pcs[0].TransferSyntax != storageTS[0] {
		t.Errorf("offered %q, the node chose %+v; the statement's first preference is %s", reversed, pcs, storageTS[0])
	}
	if err := a.Release(ctx); err != nil {
		t.Error(err)
	}
	const perAssociation = 120
	for start := 0; start < len(cases); start += perAssociation {
		batch := cases[start:min(start+perAssociation, len(cases))]
		props := make([]dimse.Proposal, len(batch))
		for i, c := range batch {
			props[i] = dimse.Proposal{AbstractSyntax: c.abstract, TransferSyntaxes: []string{c.ts}}
		}
		a, err := dimse.Dial(ctx, n.DICOMAddr(), dimse.DialOptions{CallingAETitle: "CONFTEST", CalledAETitle: n.Config.DICOM.AETitle, Proposals: props})
		if err != nil {
			t.Fatal(err)
		}
		pcs := a.PresentationContexts()
		if len(pcs) != len(batch) {
			t.Fatalf("%d presentation contexts answered, %d proposed", len(pcs), len(batch))
		}
		for i, pc := range pcs {
			c := batch[i]
			if pc.Accepted() != c.accept {
				t.Errorf("%s in %s: accepted=%v, the statement says %v (result %v)", c.abstract, c.ts, pc.Accepted(), c.accept, pc.Result)
			}
		}
		if err := a.Release(ctx); err != nil {
			t.Error(err)
		}
	}
}

// TestImplementationIdentity checks the statement's implementation
// identifying information against the constants the code sends.
func TestImplementationIdentity(t *testing.T) {
	tb := loadStatement(t, map[string][]string{"implementation": {"Item", "Value"}})["implementation"]
	want := map[string]string{
		"Implementation Class UID (A-ASSOCIATE)":                       dimse.ImplementationClassUID,
		"Implementation Version Name":                                  dimse.ImplementationVersionName,
		"Implementation Class UID in the file meta of created objects": results.DefaultImplementationClassUID,
	}
	got := map[string]string{}
	for _, r := range tb.rows {
		got[r["Item"]] = r["Value"]
	}
	for item, v := range want {
		if got[item] != v {
			t.Errorf("%s: statement %q, code %q", item, got[item], v)
		}
	}
	for item := range got {
		if _, ok := want[item]; !ok {
			t.Errorf("implementation table row %q is not checked against the code; add it to this test", item)
		}
	}
}

// TestSettings compares the statement's configuration table with every
// setting of scp/config: YAML path, environment variable and default.
func TestSettings(t *testing.T) {
	tb := loadStatement(t, map[string][]string{"settings": {"Setting", "Environment variable", "Default"}})["settings"]
	def := config.Default()
	var code, doc []string
	scratch := config.Default()
	for i, s := range def.Settings() {
		code = append(code, s.Path)
		v := s.String()
		if v == "" || v == "map[]" {
			v = "(empty)"
		}
		// A setting that cannot be read from text (a map of destinations)
		// has no environment variable or flag: the statement says "—".
		env := s.Env
		if err := scratch.Settings()[i].Set(s.String()); err != nil {
			env = "—"
		}
		for i, r := range tb.rows {
			if r["Setting"] != s.Path {
				continue
			}
			if r["Environment variable"] != env {
				t.Errorf("CONFORMANCE.md line %d: %s: environment variable %q, code %q", tb.lines[i], s.Path, r["Environment variable"], env)
			}
			if r["Default"] != v {
				t.Errorf("CONFORMANCE.md line %d: %s: default %q, code %q", tb.lines[i], s.Path, r["Default"], v)
			}
		}
	}
	doc = tb.column("Setting")
	diff(t, "settings (config.Settings)", doc, code)
}

// TestCodes compares the statement's table of coded concepts with every
// Code literal in package results (the writers of SEG, SR and KOS).
func TestCodes(t *testing.T) {
	tb := loadStatement(t, map[string][]string{"codes": {"Code Value", "Coding Scheme", "Code Meaning"}})["codes"]
	code, err := resultCodes(filepath.Join("..", "results"))
	if err != nil {
		t.Fatal(err)
	}
	var doc []string
	for _, r := range tb.rows {
		doc = append(doc, fmt.Sprintf("(%s, %s, %q)", r["Code Value"], r["Coding Scheme"], r["Code Meaning"]))
	}
	diff(t, "coded concepts of package results", doc, code)
}

// resultCodes parses the non-test Go files of dir and returns every
// composite literal Code{"value", scheme, "meaning"} as "(value, scheme,
// "meaning")", with the PrivateScheme constant spelt out.
func resultCodes(dir string) ([]string, error) {
	fset := token.NewFileSet()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, 0)
		if err != nil {
			return nil, err
		}
		var perr error
		ast.Inspect(f, func(n ast.Node) bool {
			cl, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			if id, ok := cl.Type.(*ast.Ident); !ok || id.Name != "Code" || len(cl.Elts) != 3 {
				return true
			}
			var parts [3]string
			for i, el := range cl.Elts {
				switch v := el.(type) {
				case *ast.BasicLit:
					s, err := strconv.Unquote(v.Value)
					if err != nil {
						perr = err
					}
					parts[i] = s
				case *ast.Ident:
					if v.Name != "PrivateScheme" {
						perr = fmt.Errorf("%s: Code with field %s: extend resultCodes", fset.Position(v.Pos()), v.Name)
					}
					parts[i] = results.PrivateScheme
				default:
					perr = fmt.Errorf("%s: Code literal that is not three constants: extend resultCodes", fset.Position(el.Pos()))
				}
			}
			if s := fmt.Sprintf("(%s, %s, %q)", parts[0], parts[1], parts[2]); !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
			return true
		})
		if perr != nil {
			return nil, perr
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no Code literals found in " + dir)
	}
	return out, nil
}

// qrClassNames are the dimse constants of the non-storage SOP classes.
var qrClassNames = map[string]string{
	"VerificationSOPClass": dimse.VerificationSOPClass,
	"PatientRootFind":      dimse.PatientRootFind,
	"PatientRootMove":      dimse.PatientRootMove,
	"PatientRootGet":       dimse.PatientRootGet,
	"StudyRootFind":        dimse.StudyRootFind,
	"StudyRootMove":        dimse.StudyRootMove,
	"StudyRootGet":         dimse.StudyRootGet,
}

// TestSCURoles compares the SCU column of the statement's Verification and
// Query/Retrieve table with the classes the node's initiating parts (the
// worker and the exporter, package results and below) use: every
// dimse.<class> they name is an SCU role, and nothing else is.
func TestSCURoles(t *testing.T) {
	tb := loadStatement(t, sopTables)["other-sop-classes"]
	doc := rolesOf(t, tb, colSCU)
	used := map[string]bool{}
	err := filepath.WalkDir(filepath.Join("..", "results"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if se, ok := n.(*ast.SelectorExpr); ok {
				if x, ok := se.X.(*ast.Ident); ok && x.Name == "dimse" {
					if uid, ok := qrClassNames[se.Sel.Name]; ok {
						used[uid] = true
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var code []string
	for uid := range used {
		code = append(code, uid)
	}
	diff(t, "SCU roles of the worker and exporter (dimse classes named in package results)", doc, code)
}
