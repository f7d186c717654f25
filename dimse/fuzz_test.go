package dimse

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// pduSeeds are hand-built PDUs of every type; testdata/fuzz/FuzzDecodePDU
// holds them too (rewrite with DIMSE_WRITE_SEEDS=1).
func pduSeeds() [][]byte {
	ac, _ := (&AAssociateAC{CalledAETitle: "A", CallingAETitle: "B",
		PresentationContexts: []PresentationContextAC{{1, Acceptance, ExplicitVRLittleEndian}, {3, AbstractSyntaxNotSupported, ""}},
		UserInformation: UserInformation{MaxLength: 16384, ImplementationClassUID: ImplementationClassUID,
			AsyncOperationsWindow: &AsyncOperationsWindow{1, 1}, RoleSelections: []RoleSelection{{CTImageStorage, true, true}},
			UserIdentityAC: &UserIdentityAC{ServerResponse: []byte("ok")}}}).Encode(nil)
	return [][]byte{
		rqBytes(),
		ac,
		pdu(TypeAAssociateRJ, b{}.u8(0, 1, 1, 7)),
		pdu(TypePDataTF, b{}.u32(4).u8(1, 3, 0xaa, 0xbb).u32(3).u8(5, 0, 0xcc)),
		pdu(TypeAReleaseRQ, b{}.pad(4)),
		pdu(TypeAReleaseRP, b{}.pad(4)),
		pdu(TypeAAbort, b{}.u8(0, 0, 2, 6)),
	}
}

func commandSeeds() [][]byte {
	var out [][]byte
	for _, m := range []Message{
		&CEchoRQ{MessageID: 1, AffectedSOPClassUID: VerificationSOPClass},
		&CStoreRQ{MessageID: 2, AffectedSOPClassUID: CTImageStorage, AffectedSOPInstanceUID: "1.2.3", MoveOriginatorApplicationEntityTitle: "M", MoveOriginatorMessageID: 4},
		&CStoreRSP{MessageIDBeingRespondedTo: 2, Status: StatusOutOfResources, OffendingElement: []uint32{0x00100010}, ErrorComment: "full"},
		&CFindRSP{MessageIDBeingRespondedTo: 3, Status: StatusPending, HasIdentifier: true},
		&CMoveRQ{MessageID: 5, AffectedSOPClassUID: "1.2.840.10008.5.1.4.1.2.2.2", MoveDestination: "DEST"},
		&CGetRSP{MessageIDBeingRespondedTo: 6, Status: StatusSuccess, SubOperations: SubOperations{0, 3, 1, 0}},
		&CCancelRQ{MessageIDBeingRespondedTo: 3},
	} {
		b, _ := m.Command().Encode(nil)
		out = append(out, b)
	}
	return out
}

func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("DIMSE_WRITE_SEEDS") == "" {
		t.Skip("set DIMSE_WRITE_SEEDS=1 to rewrite testdata/fuzz")
	}
	write := func(target string, seeds [][]byte) {
		dir := filepath.Join("testdata", "fuzz", target)
		os.MkdirAll(dir, 0o755)
		for i, s := range seeds {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("FuzzDecodePDU", pduSeeds())
	write("FuzzDecodeCommand", commandSeeds())
	meta := &bytes.Buffer{}
	WriteFileMeta(meta, FileMeta{MediaStorageSOPClassUID: CTImageStorage, MediaStorageSOPInstanceUID: "1.2.3", TransferSyntaxUID: ExplicitVRLittleEndian})
	meta.Write([]byte{8, 0, 0x18, 0, 'U', 'I', 2, 0, '1', 0})
	write("FuzzReadFileMeta", [][]byte{meta.Bytes()})
	write("FuzzExplicitToImplicit", transcodeSeeds())
}

// FuzzDecodePDU: decoding never panics, errors are typed, and what decodes
// re-encodes to something that decodes to the same value.
func FuzzDecodePDU(f *testing.F) {
	for _, s := range pduSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		p, err := DecodePDU(in)
		if err != nil {
			if _, ok := err.(*DecodeError); !ok {
				t.Fatalf("untyped error %T: %v", err, err)
			}
			return
		}
		normalize(p)
		enc, err := p.Encode(nil)
		if err != nil {
			return // for example an AE title with characters we refuse to send
		}
		again, err := DecodePDU(enc)
		if err != nil {
			t.Fatalf("re-decoding %x: %v", enc, err)
		}
		if !reflect.DeepEqual(again, p) {
			t.Fatalf("round trip changed\n%#v\nto\n%#v", p, again)
		}
	})
}

// normalize applies the encoder's defaults to a decoded PDU.
func normalize(p PDU) {
	switch p := p.(type) {
	case *AAssociateRQ:
		if p.ProtocolVersion == 0 {
			p.ProtocolVersion = protocolVersion1
		}
		if p.ApplicationContextName == "" {
			p.ApplicationContextName = ApplicationContextName
		}
	case *AAssociateAC:
		if p.ProtocolVersion == 0 {
			p.ProtocolVersion = protocolVersion1
		}
		if p.ApplicationContextName == "" {
			p.ApplicationContextName = ApplicationContextName
		}
	}
}

// FuzzDecodeCommand: decoding never panics, and a parsed message encodes
// to bytes that decode and re-encode identically.
func FuzzDecodeCommand(f *testing.F) {
	for _, s := range commandSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := DecodeCommand(in)
		if err != nil {
			return
		}
		m, err := ParseMessage(c)
		if err != nil {
			return
		}
		enc, err := m.Command().Encode(nil)
		if err != nil {
			t.Fatalf("encoding %T: %v", m, err)
		}
		c2, err := DecodeCommand(enc)
		if err != nil {
			t.Fatalf("re-decoding: %v", err)
		}
		m2, err := ParseMessage(c2)
		if err != nil {
			t.Fatalf("re-parsing: %v", err)
		}
		enc2, _ := m2.Command().Encode(nil)
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable:\n% x\n% x", enc, enc2)
		}
	})
}

// transcodeSeeds are explicit VR little endian data sets with defined and
// undefined length sequences, nested items and an undefined-length UN.
func transcodeSeeds() [][]byte {
	el := func(g, e uint16, vr string, v []byte) []byte {
		b := binary.LittleEndian.AppendUint16(nil, g)
		b = binary.LittleEndian.AppendUint16(b, e)
		b = append(b, vr...)
		if longVR(vr) {
			b = append(b, 0, 0)
			return append(binary.LittleEndian.AppendUint32(b, uint32(len(v))), v...)
		}
		return append(binary.LittleEndian.AppendUint16(b, uint16(len(v))), v...)
	}
	item := func(content []byte) []byte {
		return append(binary.LittleEndian.AppendUint32([]byte{0xFE, 0xFF, 0x00, 0xE0}, uint32(len(content))), content...)
	}
	inner := el(0x0008, 0x0100, "SH", []byte("CODE12"))
	defined := el(0x0008, 0x1115, "SQ", append(item(inner), item(el(0x0008, 0x1150, "UI", []byte("1.2\x00")))...))
	undef := append([]byte{0x40, 0x00, 0x60, 0xA7, 'S', 'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
		0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF}, inner...)
	undef = append(undef, 0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0, 0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0)
	un := []byte{0x09, 0x00, 0x10, 0x10, 'U', 'N', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
		0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF, 0x08, 0x00, 0x00, 0x01, 2, 0, 0, 0, 'A', 'B',
		0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0, 0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0}
	pixels := el(0x7FE0, 0x0010, "OW", make([]byte, 16))
	all := append(append(append(append(el(0x0008, 0x0016, "UI", []byte("1.2\x00")), defined...), undef...), un...), pixels...)
	return [][]byte{all, defined, undef, un}
}

// FuzzExplicitToImplicit: the transcoder never panics, and what it accepts
// decodes as an implicit VR data set of the same elements.
func FuzzExplicitToImplicit(f *testing.F) {
	for _, s := range transcodeSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		if err := ExplicitToImplicitLE(&out, bytes.NewReader(in)); err != nil {
			if !errors.Is(err, ErrTranscode) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		if out.Len() > 4*len(in)+64 {
			t.Fatalf("%d bytes in, %d out", len(in), out.Len())
		}
	})
}

// FuzzReadFileMeta: file meta parsing never panics or over-reads.
func FuzzReadFileMeta(f *testing.F) {
	f.Add(append(make([]byte, 128), "DICM"...))
	f.Fuzz(func(t *testing.T, in []byte) {
		ReadFileMeta(bufio.NewReader(bytes.NewReader(in)))
	})
}
