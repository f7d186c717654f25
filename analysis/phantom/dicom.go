package phantom

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/otonode/otonode/analysis/volume"
)

// DICOM identifiers used by the series writer.
const (
	CTImageStorage      = "1.2.840.10008.5.1.4.1.1.2"
	ExplicitVRLittle    = "1.2.840.10008.1.2.1"
	implementationUID   = "2.25.171905512301548960924306455216713531371"
	implementationName  = "OTONODE_PH1"
	pixelDataTag        = 0x7fe00010
	fileMetaGroupLenTag = 0x00020000
)

// element is one data element of a data set being written.
type element struct {
	tag uint32
	vr  string
	val []byte
}

func str(tag uint32, vr string, s ...string) element {
	v := strings.Join(s, `\`)
	if len(v)%2 == 1 {
		if vr == "UI" {
			v += "\x00"
		} else {
			v += " "
		}
	}
	return element{tag: tag, vr: vr, val: []byte(v)}
}

func us(tag uint32, x uint16) element {
	return element{tag: tag, vr: "US", val: binary.LittleEndian.AppendUint16(nil, x)}
}

// ds formats decimal strings within the 16-byte limit of DS.
func ds(tag uint32, xs ...float64) element {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmtDS(x)
	}
	return str(tag, "DS", s...)
}

func fmtDS(x float64) string {
	if math.Abs(x) < 1e-9 {
		return "0"
	}
	for p := 10; p >= 1; p-- {
		s := strconv.FormatFloat(x, 'f', p, 64)
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
		if len(s) <= 16 {
			return s
		}
	}
	return strconv.FormatFloat(x, 'e', 6, 64)
}

func longVR(vr string) bool {
	switch vr {
	case "OB", "OW", "OF", "OD", "OL", "OV", "SQ", "UT", "UN", "UC", "UR", "SV", "UV":
		return true
	}
	return false
}

func appendElement(b []byte, e element) []byte {
	b = binary.LittleEndian.AppendUint16(b, uint16(e.tag>>16))
	b = binary.LittleEndian.AppendUint16(b, uint16(e.tag))
	b = append(b, e.vr...)
	if longVR(e.vr) {
		b = append(b, 0, 0)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(e.val)))
	} else {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(e.val)))
	}
	return append(b, e.val...)
}

// SeriesOptions control WriteSeries.
type SeriesOptions struct {
	Workers      int
	SeriesNumber int
	Description  string
	// Progress, when set, is called after each file with the number done.
	Progress func(done, total int)
}

// WriteSeries writes the CT as a DICOM CT Image Storage series, one Part 10
// file per slice (explicit VR little endian), into dir. Pixel values are
// 12-bit unsigned with rescale slope 1 and intercept −1024. Every identifier
// comes from info, so the same case always gives the same bytes.
func WriteSeries(ctx context.Context, dir string, ct *volume.Volume[int16], info *Info, opt SeriesOptions) ([]string, error) {
	if err := ct.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("phantom: %w", err)
	}
	nx, ny, nz := ct.Size[0], ct.Size[1], ct.Size[2]
	if nx > 65535 || ny > 65535 {
		return nil, fmt.Errorf("phantom: slice %d×%d too large for DICOM", nx, ny)
	}
	aff := ct.Affine
	sp := aff.Spacing()
	row, col := aff.Direction(0), aff.Direction(1)
	normal := cross(row, col)
	id := info.Identity
	im := info.Imaging
	if opt.SeriesNumber == 0 {
		opt.SeriesNumber = 1
	}
	desc := opt.Description
	if desc == "" {
		desc = "otonode phantom " + info.Tokens
	}
	if len(desc) > 64 {
		desc = desc[:64]
	}
	imageType := []string{"ORIGINAL", "PRIMARY", "AXIAL"}
	rescaleType := "HU"
	if info.Variant.Negative == "localizer" {
		// A projection: its values are not Hounsfield units.
		imageType[2] = "LOCALIZER"
		rescaleType = "US"
	}
	thick := im.SliceThicknessMM
	if thick == 0 {
		thick = sp[2]
	}
	common := []element{
		str(0x00080008, "CS", imageType...),
		str(0x00080016, "UI", CTImageStorage),
		str(0x00080020, "DA", id.StudyDate),
		str(0x00080021, "DA", id.StudyDate),
		str(0x00080023, "DA", id.StudyDate),
		str(0x00080030, "TM", id.StudyTime),
		str(0x00080031, "TM", id.StudyTime),
		str(0x00080033, "TM", id.StudyTime),
		str(0x00080050, "SH", id.AccessionNumber),
		str(0x00080060, "CS", "CT"),
		str(0x00080070, "LO", im.Manufacturer),
		str(0x00080090, "PN", ""),
		str(0x00081030, "LO", "Temporal bone (synthetic phantom)"),
		str(0x0008103e, "LO", desc),
		str(0x00081090, "LO", im.Model),
		str(0x00100010, "PN", id.PatientName),
		str(0x00100020, "LO", id.PatientID),
		str(0x00100030, "DA", id.PatientBirthDate),
		str(0x00100040, "CS", id.PatientSex),
		str(0x00120062, "CS", "YES"), // Patient Identity Removed: it never existed
		str(0x00120063, "LO", "synthetic phantom, no real patient"),
		str(0x00180015, "CS", "HEAD"),
		ds(0x00180050, thick),
		ds(0x00180060, im.KVP),
		str(0x00181020, "LO", Generator),
		str(0x00181210, "SH", im.Kernel),
		str(0x00185100, "CS", "HFS"),
		str(0x0020000d, "UI", id.StudyInstanceUID),
		str(0x0020000e, "UI", id.SeriesUID),
		str(0x00200010, "SH", "1"),
		str(0x00200011, "IS", strconv.Itoa(opt.SeriesNumber)),
		str(0x00200012, "IS", "1"),
		ds(0x00200037, row[0], row[1], row[2], col[0], col[1], col[2]),
		str(0x00200052, "UI", id.FrameOfRefUID),
		str(0x00201040, "LO", ""),
		us(0x00280002, 1),
		str(0x00280004, "CS", "MONOCHROME2"),
		us(0x00280010, uint16(ny)),
		us(0x00280011, uint16(nx)),
		ds(0x00280030, sp[1], sp[0]), // row spacing (between rows), column spacing
		us(0x00280100, 16),
		us(0x00280101, BitsStored),
		us(0x00280102, BitsStored-1),
		us(0x00280103, 0),
		ds(0x00281050, im.WindowCenter),
		ds(0x00281051, im.WindowWidth),
		ds(0x00281052, RescaleIntercept),
		ds(0x00281053, 1),
		str(0x00281054, "LO", rescaleType),
	}
	workers := opt.Workers
	if workers <= 0 {
		workers = 2
	}
	names := make([]string, nz)
	errs := make([]error, nz)
	var mu sync.Mutex
	done := 0
	parallel(nz, workers, func(k int) {
		if ctx.Err() != nil {
			errs[k] = ctx.Err()
			return
		}
		sop := UID(info.Seed, info.Variant, fmt.Sprintf("sop/%d", k))
		ipp := aff.Apply([3]float64{0, 0, float64(k)})
		els := append([]element(nil), common...)
		els = append(els,
			str(0x00080018, "UI", sop),
			str(0x00200013, "IS", strconv.Itoa(k+1)),
			ds(0x00200032, ipp[0], ipp[1], ipp[2]),
		)
		if info.Variant.Negative != "localizer" {
			els = append(els, ds(0x00201041, dot(ipp, normal)))
		}
		sort.Slice(els, func(a, b int) bool { return els[a].tag < els[b].tag })
		meta := []element{
			{tag: 0x00020001, vr: "OB", val: []byte{0, 1}},
			str(0x00020002, "UI", CTImageStorage),
			str(0x00020003, "UI", sop),
			str(0x00020010, "UI", ExplicitVRLittle),
			str(0x00020012, "UI", implementationUID),
			str(0x00020013, "SH", implementationName),
		}
		var mb []byte
		for _, e := range meta {
			mb = appendElement(mb, e)
		}
		buf := make([]byte, 0, 132+len(mb)+12+4096+nx*ny*2+12)
		buf = append(buf, make([]byte, 128)...)
		buf = append(buf, "DICM"...)
		buf = appendElement(buf, element{tag: fileMetaGroupLenTag, vr: "UL", val: binary.LittleEndian.AppendUint32(nil, uint32(len(mb)))})
		buf = append(buf, mb...)
		for _, e := range els {
			buf = appendElement(buf, e)
		}
		// Pixel data, packed directly: stored value = HU − intercept.
		buf = binary.LittleEndian.AppendUint16(buf, 0x7fe0)
		buf = binary.LittleEndian.AppendUint16(buf, 0x0010)
		buf = append(buf, "OW"...)
		buf = append(buf, 0, 0)
		buf = binary.LittleEndian.AppendUint32(buf, uint32(nx*ny*2))
		sl := ct.Data[nx*ny*k : nx*ny*(k+1)]
		off := len(buf)
		buf = buf[:off+2*len(sl)]
		for i, v := range sl {
			binary.LittleEndian.PutUint16(buf[off+2*i:], uint16(int32(v)-RescaleIntercept))
		}
		name := fmt.Sprintf("CT%06d.dcm", k+1)
		if err := os.WriteFile(filepath.Join(dir, name), buf, 0o644); err != nil {
			errs[k] = fmt.Errorf("phantom: %w", err)
			return
		}
		names[k] = name
		if opt.Progress != nil {
			mu.Lock()
			done++
			opt.Progress(done, nz)
			mu.Unlock()
		}
	})
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return names, nil
}
