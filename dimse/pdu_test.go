package dimse

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"testing"
)

// b is a tiny builder for hand-written wire bytes.
type b []byte

func (x b) u8(v ...byte) b     { return append(x, v...) }
func (x b) u16(v uint16) b     { return binary.BigEndian.AppendUint16(x, v) }
func (x b) u32(v uint32) b     { return binary.BigEndian.AppendUint32(x, v) }
func (x b) str(s string) b     { return append(x, s...) }
func (x b) pad(n int) b        { return append(x, make([]byte, n)...) }
func (x b) item(t byte, v b) b { return x.u8(t, 0).u16(uint16(len(v))).u8(v...) }
func pdu(t PDUType, body b) b  { return b{byte(t), 0}.u32(uint32(len(body))).u8(body...) }

func ae(s string) b {
	out := b(s)
	for len(out) < 16 {
		out = append(out, ' ')
	}
	return out
}

// A request as dcmtk's storescu sends it, with every sub-item we know plus
// one unknown item in each list, which decoding must skip.
func rqBytes() b {
	pc := b{}.u8(1, 0, 0, 0).
		item(0x30, b{}.str("1.2.840.10008.5.1.4.1.1.2")).
		item(0x40, b{}.str("1.2.840.10008.1.2.1")).
		item(0x40, b{}.str("1.2.840.10008.1.2\x00")). // NUL-padded UID
		item(0x77, b{}.str("ignored"))
	ui := b{}.item(0x51, b{}.u32(16384)).
		item(0x52, b{}.str("1.2.276.0.7230010.3.0.3.6.7")).
		item(0x53, b{}.u16(1).u16(1)).
		item(0x54, b{}.u16(27).str("1.2.840.10008.5.1.4.1.1.2\x00\x00").u8(1, 0)).
		item(0x55, b{}.str("OFFIS_DCMTK_367")).
		item(0x56, b{}.u16(25).str("1.2.840.10008.5.1.4.1.1.2").u8(1, 0, 1)).
		item(0x57, b{}.u16(3).str("1.2").u16(3).str("1.3").u16(10).u16(3).str("1.4").u16(3).str("1.5")).
		item(0x58, b{}.u8(2, 1).u16(4).str("user").u16(6).str("secret")).
		item(0x5f, b{}.str("unknown sub-item"))
	body := b{}.u16(1).u16(0).u8(ae("STORESCP")...).u8(ae("STORESCU")...).pad(32).
		item(0x10, b{}.str(ApplicationContextName)).
		item(0x20, pc).
		item(0x99, b{}.str("unknown item")).
		item(0x50, ui)
	return pdu(TypeAAssociateRQ, body)
}

func rqWant() *AAssociateRQ {
	return &AAssociateRQ{
		ProtocolVersion: 1, CalledAETitle: "STORESCP", CallingAETitle: "STORESCU",
		ApplicationContextName: ApplicationContextName,
		PresentationContexts: []PresentationContextRQ{{ID: 1, AbstractSyntax: "1.2.840.10008.5.1.4.1.1.2",
			TransferSyntaxes: []string{"1.2.840.10008.1.2.1", "1.2.840.10008.1.2"}}},
		UserInformation: UserInformation{
			MaxLength: 16384, ImplementationClassUID: "1.2.276.0.7230010.3.0.3.6.7",
			ImplementationVersionName: "OFFIS_DCMTK_367",
			AsyncOperationsWindow:     &AsyncOperationsWindow{1, 1},
			RoleSelections:            []RoleSelection{{SOPClassUID: "1.2.840.10008.5.1.4.1.1.2", SCURole: true}},
			ExtendedNegotiations:      []ExtendedNegotiation{{SOPClassUID: "1.2.840.10008.5.1.4.1.1.2", ServiceClassApplicationInfo: []byte{1, 0, 1}}},
			CommonExtendedNegotiations: []CommonExtendedNegotiation{{SOPClassUID: "1.2", ServiceClassUID: "1.3",
				RelatedGeneralSOPClassUIDs: []string{"1.4", "1.5"}}},
			UserIdentityRQ: &UserIdentityRQ{Type: UserIdentityUsernamePasscode, PositiveResponseRequested: true,
				PrimaryField: []byte("user"), SecondaryField: []byte("secret")},
		},
	}
}

func TestDecodePDU(t *testing.T) {
	ac := b{}.u16(1).u16(0).u8(ae("STORESCP")...).u8(ae("STORESCU")...).pad(32).
		item(0x10, b{}.str(ApplicationContextName)).
		item(0x21, b{}.u8(1, 0, 0, 0).item(0x40, b{}.str("1.2.840.10008.1.2.1"))).
		item(0x21, b{}.u8(3, 0, 3, 0).item(0x40, b{})).
		item(0x50, b{}.item(0x51, b{}.u32(0)).item(0x59, b{}.u16(3).str("tok")))
	tests := []struct {
		name string
		in   b
		want PDU
	}{
		{"A-ASSOCIATE-RQ", rqBytes(), rqWant()},
		{"A-ASSOCIATE-AC", pdu(TypeAAssociateAC, ac), &AAssociateAC{
			ProtocolVersion: 1, CalledAETitle: "STORESCP", CallingAETitle: "STORESCU",
			ApplicationContextName: ApplicationContextName,
			PresentationContexts: []PresentationContextAC{
				{ID: 1, Result: Acceptance, TransferSyntax: "1.2.840.10008.1.2.1"},
				{ID: 3, Result: AbstractSyntaxNotSupported}},
			UserInformation: UserInformation{UserIdentityAC: &UserIdentityAC{ServerResponse: []byte("tok")}},
		}},
		{"A-ASSOCIATE-RJ", pdu(TypeAAssociateRJ, b{}.u8(0, 1, 1, 7)),
			&AAssociateRJ{Result: RejectedPermanent, Source: SourceServiceUser, Reason: ReasonCalledAETitleNotRecognized}},
		{"P-DATA-TF two PDVs", pdu(TypePDataTF, b{}.u32(4).u8(1, 3, 0xaa, 0xbb).u32(3).u8(5, 0, 0xcc)),
			&PDataTF{Values: []PDV{{1, 3, []byte{0xaa, 0xbb}}, {5, 0, []byte{0xcc}}}}},
		{"A-RELEASE-RQ", pdu(TypeAReleaseRQ, b{}.pad(4)), &AReleaseRQ{}},
		{"A-RELEASE-RP", pdu(TypeAReleaseRP, b{}.pad(4)), &AReleaseRP{}},
		{"A-ABORT", pdu(TypeAAbort, b{}.u8(0, 0, 2, 6)), &AAbort{Source: AbortServiceProvider, Reason: AbortInvalidPDUParameterValue}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodePDU(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("decoded\n%#v\nwant\n%#v", got, tt.want)
			}
			// Encoding the decoded value and decoding again gives the same value.
			enc, err := got.Encode(nil)
			if err != nil {
				t.Fatal(err)
			}
			again, err := DecodePDU(enc)
			if err != nil {
				t.Fatalf("re-decode: %v", err)
			}
			if !reflect.DeepEqual(again, tt.want) {
				t.Fatalf("round trip\n%#v\nwant\n%#v", again, tt.want)
			}
		})
	}
}

func TestDecodePDUErrors(t *testing.T) {
	rq := rqBytes()
	fixed := b{}.u16(1).u16(0).u8(ae("A")...).u8(ae("B")...).pad(32)
	tests := []struct {
		name string
		in   b
		want error
	}{
		{"empty", b{}, ErrMalformedPDU},
		{"header only, length says more", b{1, 0, 0, 0, 0, 9}, ErrMalformedPDU},
		{"unknown PDU type", pdu(0x09, b{}.pad(4)), ErrUnknownPDUType},
		{"RQ truncated fixed fields", pdu(TypeAAssociateRQ, b{}.pad(20)), ErrMalformedPDU},
		{"RQ truncated by one byte", append(b{1, 0}.u32(uint32(len(rq)-7)), rq[6:len(rq)-1]...), ErrMalformedPDU},
		{"RQ item length past end", pdu(TypeAAssociateRQ, fixed.u8(0x10, 0, 0xff, 0xff).str("1.2")), ErrMalformedPDU},
		{"RQ without presentation context", pdu(TypeAAssociateRQ, fixed.item(0x10, b{}.str("1")).item(0x50, b{}.item(0x51, b{}.u32(0)))), ErrMalformedPDU},
		{"RQ context without transfer syntax", pdu(TypeAAssociateRQ, fixed.item(0x10, b{}.str("1")).
			item(0x20, b{}.u8(1, 0, 0, 0).item(0x30, b{}.str("1.2"))).item(0x50, b{})), ErrMalformedPDU},
		{"RQ without user information", pdu(TypeAAssociateRQ, fixed.item(0x10, b{}.str("1")).
			item(0x20, b{}.u8(1, 0, 0, 0).item(0x30, b{}.str("1.2")).item(0x40, b{}.str("1.2")))), ErrMalformedPDU},
		{"max length sub-item of 3 bytes", pdu(TypeAAssociateRQ, fixed.item(0x10, b{}.str("1")).
			item(0x20, b{}.u8(1, 0, 0, 0).item(0x30, b{}.str("1.2")).item(0x40, b{}.str("1.2"))).
			item(0x50, b{}.item(0x51, b{}.u8(0, 0, 1)))), ErrMalformedPDU},
		{"role selection UID length past end", pdu(TypeAAssociateRQ, fixed.item(0x10, b{}.str("1")).
			item(0x20, b{}.u8(1, 0, 0, 0).item(0x30, b{}.str("1.2")).item(0x40, b{}.str("1.2"))).
			item(0x50, b{}.item(0x54, b{}.u16(200).str("1.2")))), ErrMalformedPDU},
		{"user identity secondary past end", pdu(TypeAAssociateRQ, fixed.item(0x10, b{}.str("1")).
			item(0x20, b{}.u8(1, 0, 0, 0).item(0x30, b{}.str("1.2")).item(0x40, b{}.str("1.2"))).
			item(0x50, b{}.item(0x58, b{}.u8(1, 0).u16(1).str("u").u16(9)))), ErrMalformedPDU},
		{"AC accepted without transfer syntax", pdu(TypeAAssociateAC, fixed.item(0x21, b{}.u8(1, 0, 0, 0)).item(0x50, b{})), ErrMalformedPDU},
		{"RJ of 5 bytes", pdu(TypeAAssociateRJ, b{}.pad(5)), ErrMalformedPDU},
		{"P-DATA-TF empty", pdu(TypePDataTF, b{}), ErrMalformedPDU},
		{"PDV length 1", pdu(TypePDataTF, b{}.u32(1).u8(1, 3)), ErrMalformedPDU},
		{"PDV length past end", pdu(TypePDataTF, b{}.u32(10).u8(1, 3, 0)), ErrMalformedPDU},
		{"PDV even context ID", pdu(TypePDataTF, b{}.u32(3).u8(2, 3, 0)), ErrMalformedPDU},
		{"A-ABORT of 2 bytes", pdu(TypeAAbort, b{}.pad(2)), ErrMalformedPDU},
		{"A-RELEASE-RQ of 0 bytes", pdu(TypeAReleaseRQ, b{}), ErrMalformedPDU},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := DecodePDU(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("DecodePDU = %v, %v; want %v", p, err, tt.want)
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("%v is not a *DecodeError", err)
			}
		})
	}
}

func TestReadPDUBounds(t *testing.T) {
	big := pdu(TypePDataTF, b{}.u32(102).u8(1, 2).pad(100))
	var buf []byte
	if _, err := readPDU(bytes.NewReader(big), &buf, 50); !errors.Is(err, ErrPDUTooLarge) {
		t.Fatalf("P-DATA over our maximum: err = %v, want ErrPDUTooLarge", err)
	}
	if _, err := readPDU(bytes.NewReader(big), &buf, 200); err != nil {
		t.Fatalf("P-DATA under our maximum: %v", err)
	}
	huge := b{byte(TypeAAssociateRQ), 0}.u32(maxAssociationPDULength + 1)
	if _, err := readPDU(bytes.NewReader(huge), &buf, 0); !errors.Is(err, ErrPDUTooLarge) {
		t.Fatalf("4 GB association PDU: err = %v, want ErrPDUTooLarge (and no allocation)", err)
	}
	if _, err := readPDU(bytes.NewReader(big[:50]), &buf, 0); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated: err = %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestEncodeRejectsLongAETitle(t *testing.T) {
	rq := rqWant()
	rq.CalledAETitle = "AN-AE-TITLE-OF-17"
	if _, err := rq.Encode(nil); !errors.Is(err, ErrInvalidAETitle) {
		t.Fatalf("err = %v, want ErrInvalidAETitle", err)
	}
}
