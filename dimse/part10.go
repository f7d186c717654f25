package dimse

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// FileMeta is the file meta information of a DICOM file (PS3.10 7.1) that a
// C-STORE needs: what the data set is and how it is encoded.
type FileMeta struct {
	MediaStorageSOPClassUID      string
	MediaStorageSOPInstanceUID   string
	TransferSyntaxUID            string
	SourceApplicationEntityTitle string
}

// ErrNotPart10 is returned for input without the "DICM" prefix.
var ErrNotPart10 = errors.New("dimse: not a DICOM Part-10 file")

// maxMetaLength bounds the file meta group; real ones are a few hundred bytes.
const maxMetaLength = 64 << 10

// ReadFileMeta reads the preamble, prefix and group 0002 of a Part-10
// stream, leaving r at the first byte of the data set.
func ReadFileMeta(r *bufio.Reader) (FileMeta, error) {
	var fm FileMeta
	head := make([]byte, 132)
	if _, err := io.ReadFull(r, head); err != nil {
		return fm, fmt.Errorf("%w: %v", ErrNotPart10, err)
	}
	if string(head[128:]) != "DICM" {
		return fm, ErrNotPart10
	}
	read := 0
	for {
		h, err := r.Peek(2)
		if err == io.EOF {
			break // a file with meta information only
		}
		if err != nil {
			return fm, fmt.Errorf("%w: %v", ErrNotPart10, err)
		}
		if binary.LittleEndian.Uint16(h) != 0x0002 {
			break
		}
		var eh [8]byte
		if _, err := io.ReadFull(r, eh[:]); err != nil {
			return fm, fmt.Errorf("%w: meta element truncated", ErrNotPart10)
		}
		elem := binary.LittleEndian.Uint16(eh[2:])
		vr := string(eh[4:6])
		n := uint32(binary.LittleEndian.Uint16(eh[6:]))
		switch vr {
		case "OB", "OW", "OF", "SQ", "UT", "UN", "UC", "UR", "OD", "OL", "OV", "SV", "UV":
			var l [4]byte
			if _, err := io.ReadFull(r, l[:]); err != nil {
				return fm, fmt.Errorf("%w: meta element truncated", ErrNotPart10)
			}
			n = binary.LittleEndian.Uint32(l[:])
		}
		read += 12 + int(n)
		if n == 0xFFFFFFFF || read > maxMetaLength {
			return fm, fmt.Errorf("%w: file meta information too long", ErrNotPart10)
		}
		v := make([]byte, n)
		if _, err := io.ReadFull(r, v); err != nil {
			return fm, fmt.Errorf("%w: meta element (0002,%04X) truncated", ErrNotPart10, elem)
		}
		s := strings.TrimRight(string(v), "\x00 ")
		switch elem {
		case 0x0002:
			fm.MediaStorageSOPClassUID = s
		case 0x0003:
			fm.MediaStorageSOPInstanceUID = s
		case 0x0010:
			fm.TransferSyntaxUID = s
		case 0x0016:
			fm.SourceApplicationEntityTitle = strings.TrimSpace(s)
		}
	}
	if fm.MediaStorageSOPClassUID == "" || fm.MediaStorageSOPInstanceUID == "" || fm.TransferSyntaxUID == "" {
		return fm, fmt.Errorf("%w: file meta information lacks SOP class, instance or transfer syntax", ErrNotPart10)
	}
	return fm, nil
}

// WriteFileMeta writes the preamble, "DICM" and group 0002 for a data set
// received by C-STORE (PS3.10 7.1), so that preamble + meta + the received
// bytes is a valid file.
func WriteFileMeta(w io.Writer, fm FileMeta) error {
	var g []byte
	el := func(elem uint16, vr string, v []byte) {
		g = binary.LittleEndian.AppendUint16(g, 0x0002)
		g = binary.LittleEndian.AppendUint16(g, elem)
		g = append(g, vr...)
		if vr == "OB" {
			g = append(g, 0, 0)
			g = binary.LittleEndian.AppendUint32(g, uint32(len(v)))
		} else {
			g = binary.LittleEndian.AppendUint16(g, uint16(len(v)))
		}
		g = append(g, v...)
	}
	el(0x0001, "OB", []byte{0, 1})
	el(0x0002, "UI", padUID(fm.MediaStorageSOPClassUID))
	el(0x0003, "UI", padUID(fm.MediaStorageSOPInstanceUID))
	el(0x0010, "UI", padUID(fm.TransferSyntaxUID))
	el(0x0012, "UI", padUID(ImplementationClassUID))
	el(0x0013, "SH", padText(ImplementationVersionName))
	if fm.SourceApplicationEntityTitle != "" {
		el(0x0016, "AE", padText(fm.SourceApplicationEntityTitle))
	}
	var buf bytes.Buffer
	buf.Grow(132 + 12 + len(g))
	buf.Write(make([]byte, 128))
	buf.WriteString("DICM")
	buf.Write([]byte{0x02, 0, 0, 0, 'U', 'L', 4, 0})
	binary.Write(&buf, binary.LittleEndian, uint32(len(g)))
	buf.Write(g)
	_, err := w.Write(buf.Bytes())
	return err
}
