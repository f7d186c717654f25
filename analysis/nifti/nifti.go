// Package nifti reads and writes single-file NIfTI-1 volumes (.nii and
// gzipped .nii.gz), so that segmentations and uncertainty maps can be opened
// in research tools and research data sets can be analysed.
//
// Geometry. A volume.Volume carries an affine in DICOM LPS millimetres;
// NIfTI stores RAS. Writers negate the x and y rows of the affine and store
// it both as the sform (exact, code 2 "aligned") and as the qform (a
// rotation plus per-axis spacing, code 1 "scanner"). Readers prefer the
// sform, then the qform, then the bare pixdim spacings, and convert back to
// LPS. NIfTI, like otonode, addresses voxel centres, so no half-voxel shift
// is involved.
//
// Data. Supported datatypes are uint8, int16, uint16, int32, float32 and
// float64. scl_slope/scl_inter are written when asked for and applied on
// read (a slope of 0 means "no scaling", as the standard says). The first
// three dimensions must hold the image; further dimensions must be 1.
//
// Typical use:
//
//	err := nifti.WriteFile("seg.nii.gz", labels, nifti.Options{Description: "inner ear"})
//	img, hdr, err := nifti.ReadFile("ct.nii.gz")         // float32, scaled
//	lab, _, err := nifti.ReadFileAs[uint8]("seg.nii.gz") // exact or error
package nifti

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"strings"

	"github.com/otonode/otonode/analysis/volume"
)

// NIfTI-1 datatype codes (nifti1.h).
const (
	DTUint8   int16 = 2
	DTInt16   int16 = 4
	DTInt32   int16 = 8
	DTFloat32 int16 = 16
	DTFloat64 int16 = 64
	DTUint16  int16 = 512
)

// Transform codes for qform_code and sform_code.
const (
	XformUnknown     int16 = 0
	XformScannerAnat int16 = 1
	XformAlignedAnat int16 = 2
)

// headerSize is sizeof_hdr of NIfTI-1; the image follows the 4-byte
// extension flag at offset 352 in the files we write.
const (
	headerSize = 348
	voxOffset  = 352
)

// maxVoxels bounds what a header may ask us to allocate (2^31 voxels, 8 GiB
// of float32): larger claims are treated as corrupt input.
const maxVoxels = 1 << 31

// ErrFormat is wrapped by every error about malformed or unsupported input.
var ErrFormat = errors.New("nifti: invalid or unsupported file")

// rawHeader is the on-disk NIfTI-1 header; its fields have no padding, so
// encoding/binary reads and writes it byte for byte.
type rawHeader struct {
	SizeofHdr     int32
	DataType      [10]byte
	DBName        [18]byte
	Extents       int32
	SessionError  int16
	Regular       byte
	DimInfo       byte
	Dim           [8]int16
	IntentP1      float32
	IntentP2      float32
	IntentP3      float32
	IntentCode    int16
	Datatype      int16
	Bitpix        int16
	SliceStart    int16
	Pixdim        [8]float32
	VoxOffset     float32
	SclSlope      float32
	SclInter      float32
	SliceEnd      int16
	SliceCode     byte
	XYZTUnits     byte
	CalMax        float32
	CalMin        float32
	SliceDuration float32
	Toffset       float32
	Glmax         int32
	Glmin         int32
	Descrip       [80]byte
	AuxFile       [24]byte
	QformCode     int16
	SformCode     int16
	QuaternB      float32
	QuaternC      float32
	QuaternD      float32
	QoffsetX      float32
	QoffsetY      float32
	QoffsetZ      float32
	SrowX         [4]float32
	SrowY         [4]float32
	SrowZ         [4]float32
	IntentName    [16]byte
	Magic         [4]byte
}

// Header is what a reader learned from a file beyond the volume itself.
type Header struct {
	Datatype    int16
	Dim         [8]int16
	Pixdim      [8]float32
	SclSlope    float32
	SclInter    float32
	QformCode   int16
	SformCode   int16
	Description string
	// Source names the geometry the affine came from: "sform", "qform"
	// or "pixdim".
	Source    string
	ByteOrder binary.ByteOrder
}

// Options control writing.
type Options struct {
	Description string  // descrip, at most 79 bytes are kept
	SclSlope    float32 // 0 writes no scaling (slope 0 means "none" in NIfTI)
	SclInter    float32
	Gzip        bool // used by Write; WriteFile decides by the file name
}

func datatypeOf[T volume.Scalar]() (code, bitpix int16) {
	switch reflect.TypeFor[T]().Kind() {
	case reflect.Uint8:
		return DTUint8, 8
	case reflect.Int16:
		return DTInt16, 16
	case reflect.Uint16:
		return DTUint16, 16
	case reflect.Int32:
		return DTInt32, 32
	case reflect.Float32:
		return DTFloat32, 32
	default:
		return DTFloat64, 64
	}
}

func bytesPer(code int16) int {
	switch code {
	case DTUint8:
		return 1
	case DTInt16, DTUint16:
		return 2
	case DTInt32, DTFloat32:
		return 4
	case DTFloat64:
		return 8
	}
	return 0
}

// WriteFile writes v to path, gzipped when the name ends in ".gz".
// The file is written to a temporary name first and renamed, so a failed
// write leaves no half-written file behind.
func WriteFile[T volume.Scalar](path string, v *volume.Volume[T], opts Options) (err error) {
	opts.Gzip = strings.HasSuffix(path, ".gz")
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	if err = Write(bw, v, opts); err != nil {
		return err
	}
	if err = bw.Flush(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Write encodes v as a single-file NIfTI-1 image (gzipped if opts.Gzip).
func Write[T volume.Scalar](w io.Writer, v *volume.Volume[T], opts Options) error {
	if err := v.Validate(); err != nil {
		return fmt.Errorf("nifti: %w", err)
	}
	if len(v.Data) != v.Len() {
		return fmt.Errorf("nifti: volume has %d values for %d voxels", len(v.Data), v.Len())
	}
	for _, n := range v.Size {
		if n > math.MaxInt16 {
			return fmt.Errorf("nifti: dimension %d exceeds NIfTI-1's limit of %d", n, math.MaxInt16)
		}
	}
	h := headerFor[T](v.Grid, opts)
	if opts.Gzip {
		zw := gzip.NewWriter(w)
		if err := writeBody(zw, &h, v.Data); err != nil {
			return err
		}
		return zw.Close()
	}
	return writeBody(w, &h, v.Data)
}

func writeBody[T volume.Scalar](w io.Writer, h *rawHeader, data []T) error {
	if err := binary.Write(w, binary.LittleEndian, h); err != nil {
		return err
	}
	if _, err := w.Write([]byte{0, 0, 0, 0}); err != nil { // no extensions
		return err
	}
	// Encode in chunks: one full-size copy of a large volume is memory we
	// need not spend.
	const chunk = 1 << 16
	var buf []byte
	for off := 0; off < len(data); off += chunk {
		end := min(off+chunk, len(data))
		var err error
		buf, err = binary.Append(buf[:0], binary.LittleEndian, data[off:end])
		if err != nil {
			return err
		}
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	return nil
}

func headerFor[T volume.Scalar](g volume.Grid, opts Options) rawHeader {
	var h rawHeader
	h.SizeofHdr = headerSize
	h.Regular = 'r'
	h.Dim = [8]int16{3, int16(g.Size[0]), int16(g.Size[1]), int16(g.Size[2]), 1, 1, 1, 1}
	h.Datatype, h.Bitpix = datatypeOf[T]()
	h.VoxOffset = voxOffset
	h.SclSlope, h.SclInter = opts.SclSlope, opts.SclInter
	h.XYZTUnits = 2 // NIFTI_UNITS_MM
	copy(h.Descrip[:79], opts.Description)
	copy(h.Magic[:], "n+1\x00")

	ras := lpsToRAS(g.Affine)
	h.SformCode = XformAlignedAnat
	h.SrowX = rowF32(ras[0])
	h.SrowY = rowF32(ras[1])
	h.SrowZ = rowF32(ras[2])

	sp := g.Affine.Spacing()
	q := toQuatern(ras, sp)
	h.QformCode = XformScannerAnat
	h.QuaternB, h.QuaternC, h.QuaternD = float32(q.b), float32(q.c), float32(q.d)
	h.QoffsetX, h.QoffsetY, h.QoffsetZ = float32(ras[0][3]), float32(ras[1][3]), float32(ras[2][3])
	h.Pixdim = [8]float32{float32(q.qfac), float32(sp[0]), float32(sp[1]), float32(sp[2]), 1, 1, 1, 1}
	return h
}

func rowF32(r [4]float64) [4]float32 {
	return [4]float32{float32(r[0]), float32(r[1]), float32(r[2]), float32(r[3])}
}

// lpsToRAS flips the x and y rows; the same operation maps RAS back to LPS.
func lpsToRAS(a volume.Affine) volume.Affine {
	for c := 0; c < 4; c++ {
		a[0][c], a[1][c] = -a[0][c], -a[1][c]
	}
	return a
}

// ReadFile reads a .nii or .nii.gz file (gzip is detected from the content)
// into float32, with scl_slope/scl_inter applied.
func ReadFile(path string) (*volume.Volume[float32], Header, error) {
	return ReadFileAs[float32](path)
}

// ReadFileAs reads a file into voxels of type T. Scaled values must fit T:
// for integer T every value must be integral and in range (a label map
// stored as float32 0/1 reads fine as uint8; a CT in HU does not).
func ReadFileAs[T volume.Scalar](path string) (*volume.Volume[T], Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, Header{}, err
	}
	defer f.Close()
	v, h, err := ReadAs[T](f)
	if err != nil {
		return nil, h, fmt.Errorf("%s: %w", path, err)
	}
	return v, h, nil
}

// ReadAs decodes a NIfTI-1 stream (plain or gzipped) into voxels of type T.
func ReadAs[T volume.Scalar](r io.Reader) (*volume.Volume[T], Header, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, Header{}, fmt.Errorf("%w: gzip: %v", ErrFormat, err)
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, 1<<16)
	}
	var hdrBytes [headerSize]byte
	if _, err := io.ReadFull(br, hdrBytes[:]); err != nil {
		return nil, Header{}, fmt.Errorf("%w: short header: %v", ErrFormat, err)
	}
	var order binary.ByteOrder = binary.LittleEndian
	switch {
	case binary.LittleEndian.Uint32(hdrBytes[:4]) == headerSize:
	case binary.BigEndian.Uint32(hdrBytes[:4]) == headerSize:
		order = binary.BigEndian
	default:
		return nil, Header{}, fmt.Errorf("%w: sizeof_hdr is not 348 (not NIfTI-1)", ErrFormat)
	}
	var h rawHeader
	if err := binary.Read(bytes.NewReader(hdrBytes[:]), order, &h); err != nil {
		return nil, Header{}, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	if string(h.Magic[:]) != "n+1\x00" {
		return nil, Header{}, fmt.Errorf("%w: magic %q: only single-file n+1 images are supported", ErrFormat, h.Magic[:3])
	}
	hdr := Header{
		Datatype: h.Datatype, Dim: h.Dim, Pixdim: h.Pixdim,
		SclSlope: h.SclSlope, SclInter: h.SclInter,
		QformCode: h.QformCode, SformCode: h.SformCode,
		Description: strings.TrimRight(string(h.Descrip[:]), "\x00"),
		ByteOrder:   order,
	}
	g, src, err := gridOf(&h)
	if err != nil {
		return nil, hdr, err
	}
	hdr.Source = src
	bpv := bytesPer(h.Datatype)
	if bpv == 0 {
		return nil, hdr, fmt.Errorf("%w: datatype %d", ErrFormat, h.Datatype)
	}
	if int(h.Bitpix) != 8*bpv {
		return nil, hdr, fmt.Errorf("%w: bitpix %d does not match datatype %d", ErrFormat, h.Bitpix, h.Datatype)
	}
	if h.VoxOffset < headerSize || h.VoxOffset > 1<<24 || float32(int64(h.VoxOffset)) != h.VoxOffset {
		return nil, hdr, fmt.Errorf("%w: vox_offset %v", ErrFormat, h.VoxOffset)
	}
	if _, err := io.CopyN(io.Discard, br, int64(h.VoxOffset)-headerSize); err != nil {
		return nil, hdr, fmt.Errorf("%w: truncated before image data: %v", ErrFormat, err)
	}
	slope, inter := float64(h.SclSlope), float64(h.SclInter)
	if slope == 0 || math.IsNaN(slope) || math.IsInf(slope, 0) || math.IsNaN(inter) || math.IsInf(inter, 0) {
		slope, inter = 1, 0
	}
	v := volume.New[T](g)
	if err := readData(br, order, h.Datatype, slope, inter, v.Data); err != nil {
		return nil, hdr, err
	}
	return v, hdr, nil
}

// gridOf derives the grid from dim and the preferred transform.
func gridOf(h *rawHeader) (volume.Grid, string, error) {
	nd := int(h.Dim[0])
	if nd < 1 || nd > 7 {
		return volume.Grid{}, "", fmt.Errorf("%w: dim[0]=%d", ErrFormat, nd)
	}
	var g volume.Grid
	g.Size = [3]int{1, 1, 1}
	n := 1
	for d := 1; d <= nd; d++ {
		if h.Dim[d] <= 0 {
			return g, "", fmt.Errorf("%w: dim[%d]=%d", ErrFormat, d, h.Dim[d])
		}
		if d > 3 && h.Dim[d] != 1 {
			return g, "", fmt.Errorf("%w: dimension %d has size %d; only 3-D images are supported", ErrFormat, d, h.Dim[d])
		}
		if d <= 3 {
			g.Size[d-1] = int(h.Dim[d])
		}
		n *= int(h.Dim[d])
	}
	if n > maxVoxels {
		return g, "", fmt.Errorf("%w: %d voxels is more than the %d allowed", ErrFormat, n, maxVoxels)
	}
	var ras volume.Affine
	var src string
	switch {
	case h.SformCode > 0:
		src = "sform"
		for c := 0; c < 4; c++ {
			ras[0][c], ras[1][c], ras[2][c] = float64(h.SrowX[c]), float64(h.SrowY[c]), float64(h.SrowZ[c])
		}
	case h.QformCode > 0:
		src = "qform"
		ras = fromQuatern(h)
	default:
		src = "pixdim"
		for c := 0; c < 3; c++ {
			s := float64(h.Pixdim[c+1])
			if s <= 0 || math.IsNaN(s) || math.IsInf(s, 0) {
				s = 1
			}
			ras[c][c] = s
		}
	}
	g.Affine = lpsToRAS(ras)
	for r := range g.Affine {
		for _, x := range g.Affine[r] {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return g, src, fmt.Errorf("%w: non-finite %s", ErrFormat, src)
			}
		}
	}
	if _, err := g.Affine.Inverse(); err != nil {
		return g, src, fmt.Errorf("%w: %s is singular", ErrFormat, src)
	}
	return g, src, nil
}

func readData[T volume.Scalar](r io.Reader, order binary.ByteOrder, dt int16, slope, inter float64, out []T) error {
	dec, err := volume.NewSampleDecoder[T](volume.Stored{Kind: kindOf(dt), Order: order, Slope: slope, Inter: inter})
	if err != nil {
		return fmt.Errorf("%w: datatype %d", ErrFormat, dt)
	}
	const chunk = 1 << 16 // voxels per read
	bpv := bytesPer(dt)
	buf := make([]byte, bpv*min(chunk, len(out)))
	for off := 0; off < len(out); {
		n := min(chunk, len(out)-off)
		b := buf[:n*bpv]
		if _, err := io.ReadFull(r, b); err != nil {
			return fmt.Errorf("%w: image data truncated at voxel %d of %d: %v", ErrFormat, off, len(out), err)
		}
		if err := dec.Decode(out[off:off+n], b); err != nil {
			var ve *volume.ValueError
			if errors.As(err, &ve) {
				ve.Index += off
				return fmt.Errorf("nifti: voxel %d: %w", ve.Index, ve)
			}
			return err
		}
		off += n
	}
	return nil
}

// kindOf is the Go kind of a NIfTI datatype code.
func kindOf(dt int16) reflect.Kind {
	switch dt {
	case DTUint8:
		return reflect.Uint8
	case DTInt16:
		return reflect.Int16
	case DTUint16:
		return reflect.Uint16
	case DTInt32:
		return reflect.Int32
	case DTFloat32:
		return reflect.Float32
	case DTFloat64:
		return reflect.Float64
	}
	return reflect.Invalid
}
