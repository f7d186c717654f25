package series

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
)

// Transfer syntaxes otonode decodes, and the named refusals for the rest.
const (
	tsImplicitLE = "1.2.840.10008.1.2"
	tsExplicitLE = "1.2.840.10008.1.2.1"
	tsDeflate    = "1.2.840.10008.1.2.1.99"
	tsExplicitBE = "1.2.840.10008.1.2.2"
	tsJPEGLL57   = "1.2.840.10008.1.2.4.57"
	tsJPEGLL70   = "1.2.840.10008.1.2.4.70"
	tsRLE        = "1.2.840.10008.1.2.5"
)

// syntaxSupport says whether a transfer syntax can be decoded and, if not,
// why not in words a user can act on.
func syntaxSupport(ts string) (ok bool, why string) {
	switch ts {
	case tsImplicitLE, tsExplicitLE, tsDeflate, tsExplicitBE, tsJPEGLL57, tsJPEGLL70, tsRLE:
		return true, ""
	case "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51":
		return false, "lossy JPEG " + ts + " is refused: it alters Hounsfield units"
	case "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81":
		return false, "JPEG-LS " + ts + " has no correct pure-Go decoder; transcode the series (e.g. dcmdjpls or gdcmconv --raw)"
	case "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.92", "1.2.840.10008.1.2.4.93":
		return false, "JPEG 2000 " + ts + " has no pure-Go decoder; transcode the series (e.g. gdcmconv --raw)"
	case "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203",
		"1.2.840.10008.1.2.4.204", "1.2.840.10008.1.2.4.205":
		return false, "High-Throughput JPEG 2000 " + ts + " has no pure-Go decoder; transcode the series"
	}
	if strings.HasPrefix(ts, "1.2.840.10008.1.2.4.") {
		return false, "compressed transfer syntax " + ts + " is not decoded"
	}
	return false, "unknown transfer syntax " + ts
}

// errNoMeta means the file has no Part-10 header (no "DICM" at 128).
var errNoMeta = errors.New("no DICOM file meta information")

// readTransferSyntax reads (0002,0010) from a Part-10 file meta group
// without the DICOM library, which panics on transfer syntaxes it does not
// know: we must be able to refuse those by name.
func readTransferSyntax(r io.Reader) (string, error) {
	br := bufio.NewReader(r)
	var pre [132]byte
	if _, err := io.ReadFull(br, pre[:]); err != nil {
		return "", errNoMeta
	}
	if string(pre[128:]) != "DICM" {
		return "", errNoMeta
	}
	// Group 0002 is always explicit VR little endian.
	for n := 0; n < 64; n++ {
		var h [8]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return "", err
		}
		group := binary.LittleEndian.Uint16(h[0:])
		elem := binary.LittleEndian.Uint16(h[2:])
		if group != 0x0002 {
			return "", errors.New("file meta has no transfer syntax")
		}
		vr := string(h[4:6])
		var length uint32
		switch vr {
		case "OB", "OW", "OF", "SQ", "UT", "UN", "UC", "UR", "OD", "OL", "OV", "SV", "UV":
			var l [4]byte
			if _, err := io.ReadFull(br, l[:]); err != nil {
				return "", err
			}
			length = binary.LittleEndian.Uint32(l[:])
		default:
			length = uint32(binary.LittleEndian.Uint16(h[6:]))
		}
		if length > 1<<16 {
			return "", errors.New("implausible file meta element length")
		}
		val := make([]byte, length)
		if _, err := io.ReadFull(br, val); err != nil {
			return "", err
		}
		if elem == 0x0010 {
			return strings.TrimRight(string(bytes.TrimRight(val, "\x00")), " "), nil
		}
	}
	return "", errors.New("file meta too long")
}
