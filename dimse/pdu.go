package dimse

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// PDUType is the first byte of every PDU (PS3.8 9.3.1).
type PDUType byte

// PDU types of PS3.8 Table 9-11 ff.
const (
	TypeAAssociateRQ PDUType = 0x01
	TypeAAssociateAC PDUType = 0x02
	TypeAAssociateRJ PDUType = 0x03
	TypePDataTF      PDUType = 0x04
	TypeAReleaseRQ   PDUType = 0x05
	TypeAReleaseRP   PDUType = 0x06
	TypeAAbort       PDUType = 0x07
)

func (t PDUType) String() string {
	switch t {
	case TypeAAssociateRQ:
		return "A-ASSOCIATE-RQ"
	case TypeAAssociateAC:
		return "A-ASSOCIATE-AC"
	case TypeAAssociateRJ:
		return "A-ASSOCIATE-RJ"
	case TypePDataTF:
		return "P-DATA-TF"
	case TypeAReleaseRQ:
		return "A-RELEASE-RQ"
	case TypeAReleaseRP:
		return "A-RELEASE-RP"
	case TypeAAbort:
		return "A-ABORT"
	}
	return fmt.Sprintf("PDU(0x%02x)", byte(t))
}

// pduHeaderLength is the PDU-type, reserved and PDU-length fields.
const pduHeaderLength = 6

// DefaultMaxPDULength is the Maximum Length Received we announce when none is
// configured; dcmtk uses the same default.
const DefaultMaxPDULength = 16384

// maxAssociationPDULength bounds A-ASSOCIATE PDUs, which carry no data set:
// 128 presentation contexts with a dozen transfer syntaxes each stay far below.
const maxAssociationPDULength = 1 << 20

// PDU is one protocol data unit of PS3.8 9.3. Decode reads the variable part
// after the 6-byte header; Encode appends the whole PDU, header included.
type PDU interface {
	Type() PDUType
	Decode(body []byte) error
	Encode(dst []byte) ([]byte, error)
}

// Sentinel errors of the PDU codec; DecodeError wraps one of them.
var (
	ErrMalformedPDU   = errors.New("dimse: malformed PDU")
	ErrUnknownPDUType = errors.New("dimse: unknown PDU type")
	ErrPDUTooLarge    = errors.New("dimse: PDU exceeds the maximum length")
)

// DecodeError says which PDU or item was bad and why.
type DecodeError struct {
	PDU  PDUType
	Item byte // item type (PS3.8 9.3.2), 0 for the PDU itself
	Msg  string
	Err  error // ErrMalformedPDU, ErrUnknownPDUType or ErrPDUTooLarge
}

func (e *DecodeError) Error() string {
	if e.Item != 0 {
		return fmt.Sprintf("%v: %v item 0x%02x: %s", e.Err, e.PDU, e.Item, e.Msg)
	}
	return fmt.Sprintf("%v: %v: %s", e.Err, e.PDU, e.Msg)
}

func (e *DecodeError) Unwrap() error { return e.Err }

func malformed(t PDUType, item byte, format string, args ...any) error {
	return &DecodeError{PDU: t, Item: item, Msg: fmt.Sprintf(format, args...), Err: ErrMalformedPDU}
}

// newPDU returns an empty PDU value for a type byte, or nil.
func newPDU(t PDUType) PDU {
	switch t {
	case TypeAAssociateRQ:
		return new(AAssociateRQ)
	case TypeAAssociateAC:
		return new(AAssociateAC)
	case TypeAAssociateRJ:
		return new(AAssociateRJ)
	case TypePDataTF:
		return new(PDataTF)
	case TypeAReleaseRQ:
		return new(AReleaseRQ)
	case TypeAReleaseRP:
		return new(AReleaseRP)
	case TypeAAbort:
		return new(AAbort)
	}
	return nil
}

// DecodePDU decodes one complete PDU, header included. The P-DATA-TF it
// returns refers to b's memory.
func DecodePDU(b []byte) (PDU, error) {
	if len(b) < pduHeaderLength {
		return nil, &DecodeError{Msg: fmt.Sprintf("%d bytes, header needs 6", len(b)), Err: ErrMalformedPDU}
	}
	t := PDUType(b[0])
	n := binary.BigEndian.Uint32(b[2:6])
	if uint64(n) != uint64(len(b)-pduHeaderLength) {
		return nil, malformed(t, 0, "length field %d, %d bytes follow", n, len(b)-pduHeaderLength)
	}
	p := newPDU(t)
	if p == nil {
		return nil, &DecodeError{PDU: t, Msg: "no such PDU type", Err: ErrUnknownPDUType}
	}
	if err := p.Decode(b[pduHeaderLength:]); err != nil {
		return nil, err
	}
	return p, nil
}

// readPDU reads one PDU from r into buf (grown as needed) and decodes it.
// maxData bounds a P-DATA-TF's length (our Maximum Length Received, 0 for no
// bound beyond maxAssociationPDULength); other PDUs are bounded by
// maxAssociationPDULength. An unknown type is read past and reported with
// ErrUnknownPDUType so the caller can answer it (Evt19). The returned PDU may
// refer to buf.
func readPDU(r io.Reader, buf *[]byte, maxData uint32) (PDU, error) {
	var h [pduHeaderLength]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	t := PDUType(h[0])
	n := binary.BigEndian.Uint32(h[2:6])
	limit := uint32(maxAssociationPDULength)
	if t == TypePDataTF && maxData != 0 {
		limit = maxData
	}
	if n > limit {
		return nil, &DecodeError{PDU: t, Msg: fmt.Sprintf("length %d > %d", n, limit), Err: ErrPDUTooLarge}
	}
	if cap(*buf) < int(n) {
		*buf = make([]byte, n)
	}
	body := (*buf)[:n]
	if _, err := io.ReadFull(r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	p := newPDU(t)
	if p == nil {
		return nil, &DecodeError{PDU: t, Msg: "no such PDU type", Err: ErrUnknownPDUType}
	}
	if err := p.Decode(body); err != nil {
		return nil, err
	}
	return p, nil
}

// appendHeader appends a PDU header with a length placeholder and returns the
// offset of the length field, to be fixed by finishPDU.
func appendHeader(dst []byte, t PDUType) ([]byte, int) {
	dst = append(dst, byte(t), 0, 0, 0, 0, 0)
	return dst, len(dst) - 4
}

func finishPDU(dst []byte, at int) []byte {
	binary.BigEndian.PutUint32(dst[at:], uint32(len(dst)-at-4))
	return dst
}

// AAssociateRJ is the A-ASSOCIATE-RJ PDU (PS3.8 9.3.4).
type AAssociateRJ struct {
	Result RejectResult
	Source RejectSource
	Reason RejectReason
}

func (*AAssociateRJ) Type() PDUType { return TypeAAssociateRJ }

func (p *AAssociateRJ) Decode(b []byte) error {
	if len(b) != 4 {
		return malformed(TypeAAssociateRJ, 0, "length %d, want 4", len(b))
	}
	p.Result, p.Source, p.Reason = RejectResult(b[1]), RejectSource(b[2]), RejectReason(b[3])
	return nil
}

func (p *AAssociateRJ) Encode(dst []byte) ([]byte, error) {
	return append(dst, byte(TypeAAssociateRJ), 0, 0, 0, 0, 4, 0, byte(p.Result), byte(p.Source), byte(p.Reason)), nil
}

// AReleaseRQ is the A-RELEASE-RQ PDU (PS3.8 9.3.6).
type AReleaseRQ struct{}

func (*AReleaseRQ) Type() PDUType { return TypeAReleaseRQ }

func (*AReleaseRQ) Decode(b []byte) error {
	if len(b) != 4 {
		return malformed(TypeAReleaseRQ, 0, "length %d, want 4", len(b))
	}
	return nil
}

func (*AReleaseRQ) Encode(dst []byte) ([]byte, error) {
	return append(dst, byte(TypeAReleaseRQ), 0, 0, 0, 0, 4, 0, 0, 0, 0), nil
}

// AReleaseRP is the A-RELEASE-RP PDU (PS3.8 9.3.7).
type AReleaseRP struct{}

func (*AReleaseRP) Type() PDUType { return TypeAReleaseRP }

func (*AReleaseRP) Decode(b []byte) error {
	if len(b) != 4 {
		return malformed(TypeAReleaseRP, 0, "length %d, want 4", len(b))
	}
	return nil
}

func (*AReleaseRP) Encode(dst []byte) ([]byte, error) {
	return append(dst, byte(TypeAReleaseRP), 0, 0, 0, 0, 4, 0, 0, 0, 0), nil
}

// AAbort is the A-ABORT PDU (PS3.8 9.3.8).
type AAbort struct {
	Source AbortSource
	Reason AbortReason
}

func (*AAbort) Type() PDUType { return TypeAAbort }

func (p *AAbort) Decode(b []byte) error {
	if len(b) != 4 {
		return malformed(TypeAAbort, 0, "length %d, want 4", len(b))
	}
	p.Source, p.Reason = AbortSource(b[2]), AbortReason(b[3])
	return nil
}

func (p *AAbort) Encode(dst []byte) ([]byte, error) {
	return append(dst, byte(TypeAAbort), 0, 0, 0, 0, 4, 0, 0, byte(p.Source), byte(p.Reason)), nil
}

// PDV is one presentation data value item of a P-DATA-TF (PS3.8 9.3.5.1 and
// Annex E): the context ID, the message control header and a fragment.
type PDV struct {
	PresentationContextID uint8
	MessageControlHeader  uint8
	Data                  []byte
}

// Message control header bits (PS3.8 E.2).
const (
	pdvCommand = 0x01 // fragment of a command set, else of a data set
	pdvLast    = 0x02 // last fragment of the command or data set
)

// IsCommand reports whether the fragment belongs to a command set.
func (v PDV) IsCommand() bool { return v.MessageControlHeader&pdvCommand != 0 }

// IsLast reports whether the fragment ends its command or data set.
func (v PDV) IsLast() bool { return v.MessageControlHeader&pdvLast != 0 }

// PDataTF is the P-DATA-TF PDU (PS3.8 9.3.5). Decoded values refer to the
// decoded bytes.
type PDataTF struct {
	Values []PDV
}

func (*PDataTF) Type() PDUType { return TypePDataTF }

func (p *PDataTF) Decode(b []byte) error {
	p.Values = p.Values[:0]
	if len(b) == 0 {
		return malformed(TypePDataTF, 0, "no PDV item")
	}
	for len(b) > 0 {
		if len(b) < 6 {
			return malformed(TypePDataTF, 0, "PDV item header truncated (%d bytes)", len(b))
		}
		n := binary.BigEndian.Uint32(b)
		if n < 2 || uint64(n) > uint64(len(b)-4) {
			return malformed(TypePDataTF, 0, "PDV item length %d with %d bytes left", n, len(b)-4)
		}
		id := b[4]
		if id == 0 || id%2 == 0 {
			return malformed(TypePDataTF, 0, "presentation context ID %d is not odd", id)
		}
		// PS3.8 E.2 wants bits 2-7 zero; like dcmtk we ignore them.
		p.Values = append(p.Values, PDV{PresentationContextID: id, MessageControlHeader: b[5] & 0x03, Data: b[6 : 4+n]})
		b = b[4+n:]
	}
	return nil
}

func (p *PDataTF) Encode(dst []byte) ([]byte, error) {
	dst, at := appendHeader(dst, TypePDataTF)
	for _, v := range p.Values {
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(v.Data)+2))
		dst = append(dst, v.PresentationContextID, v.MessageControlHeader)
		dst = append(dst, v.Data...)
	}
	return finishPDU(dst, at), nil
}
