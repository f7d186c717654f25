package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/otonode/otonode/dimse"
)

// qrFlags are the flags find, move and get share.
type qrFlags struct {
	scuFlags
	model string
	level string
	keys  keyList
}

// keyList collects repeated -k Keyword[=value] flags.
type keyList []string

func (k *keyList) String() string     { return strings.Join(*k, " ") }
func (k *keyList) Set(s string) error { *k = append(*k, s); return nil }

func (f *qrFlags) register(fs *flag.FlagSet) {
	f.scuFlags.register(fs)
	fs.StringVar(&f.model, "model", "study", "information model: study (Study Root) or patient (Patient Root)")
	fs.StringVar(&f.level, "level", "STUDY", "Query/Retrieve Level: PATIENT, STUDY, SERIES or IMAGE")
	fs.Var(&f.keys, "k", "a key, Keyword=value or Keyword alone to have it returned (repeatable)")
}

// sopClass returns the model's SOP class for a C-FIND, C-MOVE or C-GET.
func (f *qrFlags) sopClass(op string) (string, error) {
	classes := map[string][3]string{
		"study":   {dimse.StudyRootFind, dimse.StudyRootMove, dimse.StudyRootGet},
		"patient": {dimse.PatientRootFind, dimse.PatientRootMove, dimse.PatientRootGet},
	}
	c, ok := classes[strings.ToLower(f.model)]
	if !ok {
		return "", fmt.Errorf("%w: --model %q: want study or patient", errUsage, f.model)
	}
	return c[map[string]int{"find": 0, "move": 1, "get": 2}[op]], nil
}

// identifier builds the request identifier from --level and the -k keys;
// text that is not ASCII is sent in UTF-8 (ISO_IR 192).
// parse reads the command line of a Q/R command (no positional arguments)
// and returns the SOP class for op and the identifier of the -k keys.
func (f *qrFlags) parse(fs *flag.FlagSet, args []string, op string) (string, *dimse.Identifier, error) {
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return "", nil, err
	}
	if len(pos) != 0 {
		return "", nil, fmt.Errorf("%w: unexpected arguments %q", errUsage, pos)
	}
	class, err := f.sopClass(op)
	if err != nil {
		return "", nil, err
	}
	id, err := f.identifier()
	return class, id, err
}

func (f *qrFlags) identifier() (*dimse.Identifier, error) {
	id := &dimse.Identifier{}
	id.SetString(0x00080052, strings.ToUpper(f.level))
	utf8 := false
	for _, k := range f.keys {
		name, value, _ := strings.Cut(k, "=")
		tag, vr, ok := dimse.LookupKeyword(name)
		if !ok {
			n, err := strconv.ParseUint(strings.ReplaceAll(name, ",", ""), 16, 32)
			if err != nil || len(strings.ReplaceAll(name, ",", "")) != 8 {
				return nil, fmt.Errorf("%w: -k %q: unknown keyword (use a Query/Retrieve keyword or GGGGEEEE)", errUsage, k)
			}
			tag, vr = dimse.Tag(n), ""
		}
		for _, c := range value {
			if c >= 0x80 {
				utf8 = true
			}
		}
		id.Set(tag, vr, []byte(value))
	}
	if utf8 {
		id.SetString(0x00080005, "ISO_IR 192")
	}
	return id, nil
}

// dial opens an association proposing the given abstract syntaxes.
func (f *qrFlags) dial(ctx context.Context, opts dimse.DialOptions, classes ...string) (*dimse.Association, error) {
	for _, c := range classes {
		opts.Proposals = append(opts.Proposals, dimse.Proposal{AbstractSyntax: c,
			TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian, dimse.ImplicitVRLittleEndian}})
	}
	return dimse.Dial(ctx, f.addr(), opts)
}

func runFind(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("find", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f qrFlags
	f.register(fs)
	asJSON := fs.Bool("json", false, "print each match as one JSON object per line")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: otonode find --host HOST --port PORT --called-aet AE [--model study|patient] --level LEVEL -k Keyword[=value]...\n\n"+
			"Query a peer by C-FIND; prints one line per match (keyword=value, tab separated).\n"+
			"Example: otonode find --level STUDY -k PatientName='DOE*' -k StudyDate=20260101- -k StudyInstanceUID")
		fs.PrintDefaults()
	}
	class, id, err := f.parse(fs, args, "find")
	if err != nil {
		return err
	}
	start := time.Now()
	a, err := f.dial(ctx, f.options(), class)
	if err != nil {
		return err
	}
	n := 0
	err = a.Find(ctx, class, id, func(m *dimse.Identifier) error {
		n++
		fmt.Fprintf(stderr, "\r%d matches", n)
		return printMatch(stdout, m, *asJSON)
	})
	if n > 0 {
		fmt.Fprintln(stderr)
	}
	if err != nil {
		a.Abort()
		return err
	}
	if err := a.Release(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "%d matches from %s@%s in %v\n", n, f.calledAET, f.addr(), time.Since(start).Round(time.Millisecond))
	return nil
}

// printMatch writes one match, its text decoded from its character set.
func printMatch(w io.Writer, m *dimse.Identifier, asJSON bool) error {
	cs := m.String(0x00080005)
	obj := map[string]string{}
	var fields []string
	for _, e := range m.Elements() {
		if e.Tag == 0x00080005 {
			continue
		}
		name := e.Tag.Keyword()
		if name == "" {
			name = fmt.Sprintf("%04X%04X", e.Tag.Group(), e.Tag.Element())
		}
		v, err := dimse.DecodeText([]byte(m.String(e.Tag)), cs)
		if err != nil {
			v = m.String(e.Tag)
		}
		if e.VR == "SQ" || e.VR == "US" || e.VR == "UN" || e.VR == "OB" {
			v = fmt.Sprintf("(%d bytes)", len(e.Value))
		}
		obj[name] = v
		fields = append(fields, name+"="+v)
	}
	if asJSON {
		b, err := json.Marshal(obj)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	_, err := fmt.Fprintln(w, strings.Join(fields, "\t"))
	return err
}
