package files

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ImplementationClassUID identifies files and associations made by otonode
// (PS3.7 D.3.3.2). It is a UUID-derived UID (PS3.5 B.2), so it needs no
// registered organisation root.
const ImplementationClassUID = "2.25.9586412470930494918105703429370675644"

// ImplementationVersionName goes with ImplementationClassUID (SH, ≤ 16 chars).
const ImplementationVersionName = "OTONODE_0"

// preambleLen is the Part 10 preamble (PS3.10 7.1) before "DICM".
const preambleLen = 128

// Meta is what the file meta information (PS3.10 7.1) of a stored instance
// says: it comes from the C-STORE-RQ command and the negotiated transfer
// syntax, never from the data set.
type Meta struct {
	SOPClassUID       string // MediaStorageSOPClassUID (0002,0002)
	SOPInstanceUID    string // MediaStorageSOPInstanceUID (0002,0003)
	TransferSyntaxUID string // TransferSyntaxUID (0002,0010)
	// SourceAETitle is the calling AE (0002,0016); empty leaves it out.
	SourceAETitle string
}

// Clean returns m with its UIDs unpadded and validated, and the AE title
// trimmed and checked against PS3.5 6.2 (≤ 16 characters, no control
// characters or backslash).
func (m Meta) Clean() (Meta, error) {
	var err error
	if m.SOPClassUID, err = CleanUID(m.SOPClassUID); err != nil {
		return m, fmt.Errorf("SOP class: %w", err)
	}
	if m.SOPInstanceUID, err = CleanUID(m.SOPInstanceUID); err != nil {
		return m, fmt.Errorf("SOP instance: %w", err)
	}
	if m.TransferSyntaxUID, err = CleanUID(m.TransferSyntaxUID); err != nil {
		return m, fmt.Errorf("transfer syntax: %w", err)
	}
	ae := []byte(m.SourceAETitle)
	ae = bytes.Trim(ae, " \x00")
	if len(ae) > 16 {
		return m, fmt.Errorf("files: source AE title %q longer than 16 characters", ae)
	}
	for _, c := range ae {
		if c < 0x20 || c == '\\' || c > 0x7e {
			return m, fmt.Errorf("files: source AE title %q has character %#x", ae, c)
		}
	}
	m.SourceAETitle = string(ae)
	return m, nil
}

// AppendMetaHeader appends the preamble, "DICM" and the group 0002 elements
// (explicit VR little endian, PS3.10 7.1) for m to dst. m must be clean.
func AppendMetaHeader(dst []byte, m Meta) []byte {
	var g []byte
	g = appendElem(g, 0x0001, "OB", []byte{0, 1}) // FileMetaInformationVersion
	g = appendElem(g, 0x0002, "UI", padUI(m.SOPClassUID))
	g = appendElem(g, 0x0003, "UI", padUI(m.SOPInstanceUID))
	g = appendElem(g, 0x0010, "UI", padUI(m.TransferSyntaxUID))
	g = appendElem(g, 0x0012, "UI", padUI(ImplementationClassUID))
	g = appendElem(g, 0x0013, "SH", padText(ImplementationVersionName))
	if m.SourceAETitle != "" {
		g = appendElem(g, 0x0016, "AE", padText(m.SourceAETitle))
	}
	dst = append(dst, make([]byte, preambleLen)...)
	dst = append(dst, "DICM"...)
	dst = appendElem(dst, 0x0000, "UL", binary.LittleEndian.AppendUint32(nil, uint32(len(g))))
	return append(dst, g...)
}

func appendElem(dst []byte, elem uint16, vr string, v []byte) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, 0x0002)
	dst = binary.LittleEndian.AppendUint16(dst, elem)
	dst = append(dst, vr...)
	if vr == "OB" {
		dst = append(dst, 0, 0)
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(v)))
	} else {
		dst = binary.LittleEndian.AppendUint16(dst, uint16(len(v)))
	}
	return append(dst, v...)
}

func padUI(s string) []byte {
	b := []byte(s)
	if len(b)%2 == 1 {
		b = append(b, 0)
	}
	return b
}

func padText(s string) []byte {
	b := []byte(s)
	if len(b)%2 == 1 {
		b = append(b, ' ')
	}
	return b
}

// errNotPart10 reports a file without our preamble/DICM/group length layout.
var errNotPart10 = errors.New("files: not a Part 10 file with a group length")

// MetaHeaderLen reads the start of a Part 10 file and returns the offset of
// its data set: preamble, "DICM", the group length element and the group it
// counts. It relies on FileMetaInformationGroupLength, which every file this
// package writes carries.
func MetaHeaderLen(r io.ReaderAt) (int64, error) {
	var b [preambleLen + 4 + 12]byte
	if _, err := r.ReadAt(b[:], 0); err != nil {
		return 0, fmt.Errorf("%w: %w", errNotPart10, err)
	}
	h := b[preambleLen:]
	if string(h[:4]) != "DICM" || binary.LittleEndian.Uint16(h[4:]) != 0x0002 ||
		binary.LittleEndian.Uint16(h[6:]) != 0x0000 || string(h[8:10]) != "UL" ||
		binary.LittleEndian.Uint16(h[10:]) != 4 {
		return 0, errNotPart10
	}
	return int64(len(b)) + int64(binary.LittleEndian.Uint32(h[12:])), nil
}
