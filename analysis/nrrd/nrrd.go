// Package nrrd reads 3-D NRRD volumes (.nrrd with attached data, .nhdr
// with one detached data file), as 3D Slicer and many research data sets
// write them.
//
// Supported: types int8/uint8/int16/uint16/int32/uint32/float/double;
// encodings raw, gzip and ascii; little and big endian; "space" of
// left-posterior-superior (LPS), right-anterior-superior (RAS) or
// left-anterior-superior (LAS), with "space directions" and
// "space origin"; without a space, "spacings" give an axis-aligned grid
// (taken as LPS) at the origin. "byte skip" and "line skip" are honoured
// (byte skip -1 for raw data means "the data is at the end of the file").
// The geometry is returned in DICOM LPS millimetres; NRRD, like otonode,
// places samples at voxel centres for space directions.
package nrrd

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"

	"github.com/otonode/otonode/analysis/volume"
)

// ErrFormat is wrapped by every error about malformed or unsupported input.
var ErrFormat = errors.New("nrrd: invalid or unsupported file")

// maxVoxels bounds what a header may ask us to allocate.
const maxVoxels = 1 << 31

// Header holds the fields that shaped the volume.
type Header struct {
	Type     string // normalised: int8, uint8, int16, uint16, int32, uint32, float32, float64
	Encoding string // raw, gzip or ascii
	Space    string // as written (empty when absent)
	Fields   map[string]string
}

// ReadFile reads path into float32 voxels.
func ReadFile(path string) (*volume.Volume[float32], Header, error) {
	return ReadFileAs[float32](path)
}

// ReadFileAs reads path into voxels of type T; for integer T every value
// must be integral and in range.
func ReadFileAs[T volume.Scalar](path string) (*volume.Volume[T], Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, Header{}, err
	}
	defer f.Close()
	v, h, err := read[T](f, filepath.Dir(path))
	if err != nil {
		return nil, h, fmt.Errorf("%s: %w", path, err)
	}
	return v, h, nil
}

// ReadAs decodes an NRRD stream with attached data.
func ReadAs[T volume.Scalar](r io.Reader) (*volume.Volume[T], Header, error) {
	return read[T](r, "")
}

func read[T volume.Scalar](r io.Reader, dir string) (*volume.Volume[T], Header, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	h := Header{Fields: map[string]string{}}
	magic, err := readLine(br)
	if err != nil || !strings.HasPrefix(magic, "NRRD000") {
		return nil, h, fmt.Errorf("%w: no NRRD magic", ErrFormat)
	}
	for n := 0; ; n++ {
		if n > 1000 {
			return nil, h, fmt.Errorf("%w: header too long", ErrFormat)
		}
		line, err := readLine(br)
		if err == io.EOF && line == "" {
			break // detached header without a blank line
		}
		if err != nil && err != io.EOF {
			return nil, h, fmt.Errorf("%w: %v", ErrFormat, err)
		}
		if line == "" {
			break
		}
		if strings.HasPrefix(line, "#") || strings.Contains(line, ":=") {
			continue // comment or key/value pair
		}
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			return nil, h, fmt.Errorf("%w: header line %q", ErrFormat, line)
		}
		h.Fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
		if err == io.EOF {
			break
		}
	}
	f := h.Fields
	var ok bool
	if h.Type, ok = normType(f["type"]); !ok {
		return nil, h, fmt.Errorf("%w: type %q", ErrFormat, f["type"])
	}
	if f["dimension"] != "3" {
		return nil, h, fmt.Errorf("%w: dimension %q (3 supported)", ErrFormat, f["dimension"])
	}
	sizes, err := ints(f["sizes"], 3)
	if err != nil {
		return nil, h, fmt.Errorf("%w: sizes: %v", ErrFormat, err)
	}
	n := 1
	for _, s := range sizes {
		if s <= 0 || s > maxVoxels {
			return nil, h, fmt.Errorf("%w: sizes %v", ErrFormat, sizes)
		}
		n *= s
		if n > maxVoxels {
			return nil, h, fmt.Errorf("%w: %v voxels exceed the limit", ErrFormat, sizes)
		}
	}
	g := volume.Grid{Size: [3]int{sizes[0], sizes[1], sizes[2]}}
	if g.Affine, h.Space, err = geometry(f); err != nil {
		return nil, h, err
	}
	if _, err := g.Affine.Inverse(); err != nil {
		return nil, h, fmt.Errorf("%w: singular space directions", ErrFormat)
	}
	switch enc := strings.ToLower(f["encoding"]); enc {
	case "raw":
		h.Encoding = "raw"
	case "gzip", "gz":
		h.Encoding = "gzip"
	case "ascii", "text", "txt":
		h.Encoding = "ascii"
	default:
		return nil, h, fmt.Errorf("%w: encoding %q", ErrFormat, f["encoding"])
	}
	var order binary.ByteOrder = binary.LittleEndian
	switch strings.ToLower(f["endian"]) {
	case "", "little":
	case "big":
		order = binary.BigEndian
	default:
		return nil, h, fmt.Errorf("%w: endian %q", ErrFormat, f["endian"])
	}

	var data io.Reader = br
	var dataFile *os.File
	if df, ok := f["data file"]; ok {
		if df == "" || strings.HasPrefix(df, "LIST") || strings.Contains(df, "%") {
			return nil, h, fmt.Errorf("%w: only a single detached data file is supported (%q)", ErrFormat, df)
		}
		if dir == "" {
			return nil, h, fmt.Errorf("%w: detached data needs ReadFile", ErrFormat)
		}
		if !filepath.IsAbs(df) {
			df = filepath.Join(dir, df)
		}
		if dataFile, err = os.Open(df); err != nil {
			return nil, h, err
		}
		defer dataFile.Close()
		data = bufio.NewReaderSize(dataFile, 1<<16)
	}
	bpv := bytesPer(h.Type)
	if ls, ok := f["line skip"]; ok {
		k, err := strconv.Atoi(ls)
		if err != nil || k < 0 {
			return nil, h, fmt.Errorf("%w: line skip %q", ErrFormat, ls)
		}
		lr := bufio.NewReader(data)
		for i := 0; i < k; i++ {
			if _, err := lr.ReadString('\n'); err != nil {
				return nil, h, fmt.Errorf("%w: line skip: %v", ErrFormat, err)
			}
		}
		data = lr
	}
	if bs, ok := f["byte skip"]; ok {
		k, err := strconv.Atoi(bs)
		switch {
		case err != nil || k < -1:
			return nil, h, fmt.Errorf("%w: byte skip %q", ErrFormat, bs)
		case k == -1:
			if h.Encoding != "raw" || dataFile == nil {
				return nil, h, fmt.Errorf("%w: byte skip -1 needs raw detached data", ErrFormat)
			}
			st, err := dataFile.Stat()
			if err != nil {
				return nil, h, err
			}
			if _, err := dataFile.Seek(st.Size()-int64(n*bpv), io.SeekStart); err != nil {
				return nil, h, fmt.Errorf("%w: data file too short", ErrFormat)
			}
			data = bufio.NewReaderSize(dataFile, 1<<16)
		case h.Encoding != "gzip":
			if _, err := io.CopyN(io.Discard, data, int64(k)); err != nil {
				return nil, h, fmt.Errorf("%w: byte skip: %v", ErrFormat, err)
			}
		}
	}
	if h.Encoding == "gzip" {
		zr, err := gzip.NewReader(data)
		if err != nil {
			return nil, h, fmt.Errorf("%w: gzip: %v", ErrFormat, err)
		}
		defer zr.Close()
		data = bufio.NewReaderSize(zr, 1<<16)
		if k, _ := strconv.Atoi(f["byte skip"]); k > 0 {
			if _, err := io.CopyN(io.Discard, data, int64(k)); err != nil {
				return nil, h, fmt.Errorf("%w: byte skip: %v", ErrFormat, err)
			}
		}
	}
	v := volume.New[T](g)
	if h.Encoding == "ascii" {
		err = readASCII(data, v.Data)
	} else {
		err = readBinary(data, order, h.Type, v.Data)
	}
	if err != nil {
		return nil, h, err
	}
	return v, h, nil
}

// readLine reads one header line without its line ending.
func readLine(br *bufio.Reader) (string, error) {
	s, err := br.ReadString('\n')
	if len(s) > 1<<16 {
		return "", fmt.Errorf("header line too long")
	}
	return strings.TrimRight(s, "\r\n"), err
}

func normType(t string) (string, bool) {
	switch strings.ToLower(strings.TrimSpace(t)) {
	case "signed char", "int8", "int8_t":
		return "int8", true
	case "uchar", "unsigned char", "uint8", "uint8_t":
		return "uint8", true
	case "short", "short int", "signed short", "signed short int", "int16", "int16_t":
		return "int16", true
	case "ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t":
		return "uint16", true
	case "int", "signed int", "int32", "int32_t":
		return "int32", true
	case "uint", "unsigned int", "uint32", "uint32_t":
		return "uint32", true
	case "float":
		return "float32", true
	case "double":
		return "float64", true
	}
	return "", false
}

func bytesPer(t string) int {
	switch t {
	case "int8", "uint8":
		return 1
	case "int16", "uint16":
		return 2
	case "float64":
		return 8
	}
	return 4
}

func ints(s string, n int) ([]int, error) {
	fs := strings.Fields(s)
	if len(fs) != n {
		return nil, fmt.Errorf("%q has %d values, want %d", s, len(fs), n)
	}
	out := make([]int, n)
	for i, x := range fs {
		v, err := strconv.Atoi(x)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// vector parses "(x,y,z)".
func vector(s string) ([3]float64, error) {
	var v [3]float64
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "(") || !strings.HasSuffix(s, ")") {
		return v, fmt.Errorf("vector %q", s)
	}
	parts := strings.Split(s[1:len(s)-1], ",")
	if len(parts) != 3 {
		return v, fmt.Errorf("vector %q", s)
	}
	for i, p := range parts {
		x, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
			return v, fmt.Errorf("vector %q", s)
		}
		v[i] = x
	}
	return v, nil
}

// geometry builds the LPS affine from space, space directions, space
// origin or spacings.
func geometry(f map[string]string) (volume.Affine, string, error) {
	var a volume.Affine
	space := f["space"]
	var flip [3]float64 // sign that turns the file's space into LPS
	switch strings.ToLower(space) {
	case "left-posterior-superior", "lps", "":
		flip = [3]float64{1, 1, 1}
	case "right-anterior-superior", "ras":
		flip = [3]float64{-1, -1, 1}
	case "left-anterior-superior", "las":
		flip = [3]float64{1, -1, 1}
	default:
		return a, space, fmt.Errorf("%w: space %q (LPS, RAS or LAS supported)", ErrFormat, space)
	}
	if sd, ok := f["space directions"]; ok {
		if space == "" {
			if sd2, ok := f["space dimension"]; !ok || sd2 != "3" {
				return a, space, fmt.Errorf("%w: space directions without a space", ErrFormat)
			}
		}
		fs := strings.Fields(sd)
		if len(fs) != 3 {
			return a, space, fmt.Errorf("%w: space directions %q (three vectors needed)", ErrFormat, sd)
		}
		for c, s := range fs {
			v, err := vector(s)
			if err != nil {
				return a, space, fmt.Errorf("%w: space directions: %v", ErrFormat, err)
			}
			for r := 0; r < 3; r++ {
				a[r][c] = flip[r] * v[r]
			}
		}
		if so, ok := f["space origin"]; ok {
			v, err := vector(so)
			if err != nil {
				return a, space, fmt.Errorf("%w: space origin: %v", ErrFormat, err)
			}
			for r := 0; r < 3; r++ {
				a[r][3] = flip[r] * v[r]
			}
		}
		return a, space, nil
	}
	sp := [3]float64{1, 1, 1}
	if s, ok := f["spacings"]; ok {
		fs := strings.Fields(s)
		if len(fs) != 3 {
			return a, space, fmt.Errorf("%w: spacings %q", ErrFormat, s)
		}
		for i, x := range fs {
			v, err := strconv.ParseFloat(x, 64)
			if err == nil && v > 0 && !math.IsInf(v, 0) {
				sp[i] = v
			}
		}
	}
	for c := 0; c < 3; c++ {
		a[c][c] = flip[c] * sp[c]
	}
	return a, space, nil
}

func readBinary[T volume.Scalar](r io.Reader, order binary.ByteOrder, typ string, out []T) error {
	dec, err := volume.NewSampleDecoder[T](volume.Stored{Kind: kindOf(typ), Order: order, Slope: 1})
	if err != nil {
		return fmt.Errorf("%w: type %q", ErrFormat, typ)
	}
	const chunk = 1 << 16 // voxels per read
	bpv := bytesPer(typ)
	buf := make([]byte, bpv*min(chunk, len(out)))
	for off := 0; off < len(out); {
		n := min(chunk, len(out)-off)
		b := buf[:n*bpv]
		if _, err := io.ReadFull(r, b); err != nil {
			return fmt.Errorf("%w: data truncated at voxel %d of %d: %v", ErrFormat, off, len(out), err)
		}
		if err := dec.Decode(out[off:off+n], b); err != nil {
			var ve *volume.ValueError
			if errors.As(err, &ve) {
				ve.Index += off
				return fmt.Errorf("nrrd: voxel %d: %w", ve.Index, ve)
			}
			return err
		}
		off += n
	}
	return nil
}

// kindOf is the Go kind of a normalised NRRD type.
func kindOf(typ string) reflect.Kind {
	switch typ {
	case "int8":
		return reflect.Int8
	case "uint8":
		return reflect.Uint8
	case "int16":
		return reflect.Int16
	case "uint16":
		return reflect.Uint16
	case "int32":
		return reflect.Int32
	case "uint32":
		return reflect.Uint32
	case "float32":
		return reflect.Float32
	case "float64":
		return reflect.Float64
	}
	return reflect.Invalid
}

func readASCII[T volume.Scalar](r io.Reader, out []T) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	sc.Split(bufio.ScanWords)
	kind := reflect.TypeFor[T]().Kind()
	lo, hi, isInt := volume.RangeOfKind(kind)
	i := 0
	for i < len(out) && sc.Scan() {
		for _, w := range strings.FieldsFunc(sc.Text(), func(r rune) bool { return r == ',' }) {
			x, err := strconv.ParseFloat(w, 64)
			if err != nil {
				return fmt.Errorf("%w: ascii value %q", ErrFormat, w)
			}
			if isInt && (x != math.Trunc(x) || x < lo || x > hi) {
				return fmt.Errorf("nrrd: voxel %d: %w", i, &volume.ValueError{Index: i, Value: x, Kind: kind})
			}
			if i < len(out) {
				out[i] = T(x)
				i++
			}
		}
	}
	if i < len(out) {
		return fmt.Errorf("%w: ascii data has %d of %d values", ErrFormat, i, len(out))
	}
	return nil
}
