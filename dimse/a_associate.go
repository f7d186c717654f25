package dimse

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// ApplicationContextName is the DICOM application context (PS3.7 A.2.1).
const ApplicationContextName = "1.2.840.10008.3.1.1.1"

// Item types of PS3.8 9.3.2 and 9.3.3.
const (
	itemApplicationContext     = 0x10
	itemPresentationContextRQ  = 0x20
	itemPresentationContextAC  = 0x21
	itemAbstractSyntax         = 0x30
	itemTransferSyntax         = 0x40
	itemUserInformation        = 0x50
	itemMaximumLength          = 0x51
	itemImplementationClassUID = 0x52
	itemAsyncOperationsWindow  = 0x53
	itemRoleSelection          = 0x54
	itemImplementationVersion  = 0x55
	itemExtendedNegotiation    = 0x56
	itemCommonExtNegotiation   = 0x57
	itemUserIdentityRQ         = 0x58
	itemUserIdentityAC         = 0x59
	aeTitleLength              = 16
	associateFixedFieldsLength = 68 // protocol version .. reserved, before the items
	protocolVersion1           = 0x0001
)

// PresentationContextRQ is a presentation context item of an A-ASSOCIATE-RQ
// (PS3.8 9.3.2.2).
type PresentationContextRQ struct {
	ID               uint8
	AbstractSyntax   string
	TransferSyntaxes []string
}

// PresentationContextResult is the Result/Reason of a presentation context
// item of an A-ASSOCIATE-AC (PS3.8 Table 9-18).
type PresentationContextResult byte

const (
	Acceptance                   PresentationContextResult = 0
	UserRejection                PresentationContextResult = 1
	NoReason                     PresentationContextResult = 2
	AbstractSyntaxNotSupported   PresentationContextResult = 3
	TransferSyntaxesNotSupported PresentationContextResult = 4
)

func (r PresentationContextResult) String() string {
	switch r {
	case Acceptance:
		return "acceptance"
	case UserRejection:
		return "user-rejection"
	case NoReason:
		return "no-reason (provider rejection)"
	case AbstractSyntaxNotSupported:
		return "abstract-syntax-not-supported (provider rejection)"
	case TransferSyntaxesNotSupported:
		return "transfer-syntaxes-not-supported (provider rejection)"
	}
	return fmt.Sprintf("result(%d)", byte(r))
}

// PresentationContextAC is a presentation context item of an A-ASSOCIATE-AC
// (PS3.8 9.3.3.2).
type PresentationContextAC struct {
	ID             uint8
	Result         PresentationContextResult
	TransferSyntax string
}

// AAssociateRQ is the A-ASSOCIATE-RQ PDU (PS3.8 9.3.2).
type AAssociateRQ struct {
	ProtocolVersion        uint16 // 0 encodes as version 1
	CalledAETitle          string
	CallingAETitle         string
	ApplicationContextName string // empty encodes as ApplicationContextName
	PresentationContexts   []PresentationContextRQ
	UserInformation        UserInformation
}

// AAssociateAC is the A-ASSOCIATE-AC PDU (PS3.8 9.3.3). The AE titles echo
// the request's; PS3.8 says they are not tested.
type AAssociateAC struct {
	ProtocolVersion        uint16
	CalledAETitle          string
	CallingAETitle         string
	ApplicationContextName string
	PresentationContexts   []PresentationContextAC
	UserInformation        UserInformation
}

func (*AAssociateRQ) Type() PDUType { return TypeAAssociateRQ }
func (*AAssociateAC) Type() PDUType { return TypeAAssociateAC }

// item is one decoded item header and value.
type item struct {
	typ   byte
	value []byte
}

// splitItems cuts b into items of 1-byte type, 1 reserved byte and 2-byte
// length, checking every length against what is left.
func splitItems(t PDUType, parent byte, b []byte, f func(item) error) error {
	for len(b) > 0 {
		if len(b) < 4 {
			return malformed(t, parent, "item header truncated (%d bytes)", len(b))
		}
		n := int(binary.BigEndian.Uint16(b[2:4]))
		if n > len(b)-4 {
			return malformed(t, b[0], "item length %d with %d bytes left", n, len(b)-4)
		}
		if err := f(item{typ: b[0], value: b[4 : 4+n]}); err != nil {
			return err
		}
		b = b[4+n:]
	}
	return nil
}

func appendItem(dst []byte, typ byte, value []byte) ([]byte, error) {
	if len(value) > 0xffff {
		return dst, fmt.Errorf("dimse: item 0x%02x is %d bytes, more than 65535", typ, len(value))
	}
	dst = append(dst, typ, 0)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(value)))
	return append(dst, value...), nil
}

func appendStringItem(dst []byte, typ byte, s string) ([]byte, error) {
	return appendItem(dst, typ, []byte(s))
}

// trimUID drops the NUL padding some peers put after UIDs, and spaces.
func trimUID(b []byte) string { return strings.TrimRight(string(b), "\x00 ") }

// decodeAETitle trims the space padding; leading and trailing spaces are not
// significant (PS3.5 Table 6.2-1, AE).
func decodeAETitle(b []byte) string { return strings.Trim(string(b), " \x00") }

func appendAETitle(dst []byte, ae string) ([]byte, error) {
	if len(ae) > aeTitleLength {
		return dst, fmt.Errorf("%w: %q is longer than 16 characters", ErrInvalidAETitle, ae)
	}
	for i := 0; i < len(ae); i++ {
		if c := ae[i]; c < 0x20 || c > 0x7e || c == '\\' {
			return dst, fmt.Errorf("%w: %q has a forbidden character", ErrInvalidAETitle, ae)
		}
	}
	dst = append(dst, ae...)
	for i := len(ae); i < aeTitleLength; i++ {
		dst = append(dst, ' ')
	}
	return dst, nil
}

// associateHeader is what RQ and AC share.
type associateHeader struct {
	version                uint16
	called, calling, appCx string
}

func decodeAssociateFixed(t PDUType, b []byte) (associateHeader, []byte, error) {
	if len(b) < associateFixedFieldsLength {
		return associateHeader{}, nil, malformed(t, 0, "%d bytes, fixed fields need %d", len(b), associateFixedFieldsLength)
	}
	h := associateHeader{
		version: binary.BigEndian.Uint16(b[0:2]),
		called:  decodeAETitle(b[4:20]),
		calling: decodeAETitle(b[20:36]),
	}
	return h, b[associateFixedFieldsLength:], nil
}

func appendAssociateFixed(dst []byte, version uint16, called, calling string) ([]byte, error) {
	if version == 0 {
		version = protocolVersion1
	}
	dst = binary.BigEndian.AppendUint16(dst, version)
	dst = append(dst, 0, 0)
	var err error
	if dst, err = appendAETitle(dst, called); err != nil {
		return dst, err
	}
	if dst, err = appendAETitle(dst, calling); err != nil {
		return dst, err
	}
	return append(dst, make([]byte, 32)...), nil
}

func (p *AAssociateRQ) Decode(b []byte) error {
	h, rest, err := decodeAssociateFixed(TypeAAssociateRQ, b)
	if err != nil {
		return err
	}
	*p = AAssociateRQ{ProtocolVersion: h.version, CalledAETitle: h.called, CallingAETitle: h.calling}
	var sawAppCx, sawUser bool
	err = splitItems(TypeAAssociateRQ, 0, rest, func(it item) error {
		switch it.typ {
		case itemApplicationContext:
			p.ApplicationContextName, sawAppCx = trimUID(it.value), true
		case itemPresentationContextRQ:
			pc, err := decodePresentationContextRQ(it.value)
			if err != nil {
				return err
			}
			p.PresentationContexts = append(p.PresentationContexts, pc)
		case itemUserInformation:
			sawUser = true
			return p.UserInformation.decode(TypeAAssociateRQ, it.value)
		}
		return nil // PS3.8 9.3.1: unknown items are ignored
	})
	if err != nil {
		return err
	}
	if !sawAppCx {
		return malformed(TypeAAssociateRQ, itemApplicationContext, "missing")
	}
	if len(p.PresentationContexts) == 0 {
		return malformed(TypeAAssociateRQ, itemPresentationContextRQ, "none proposed")
	}
	if !sawUser {
		return malformed(TypeAAssociateRQ, itemUserInformation, "missing")
	}
	return nil
}

func decodePresentationContextRQ(b []byte) (PresentationContextRQ, error) {
	const t = TypeAAssociateRQ
	if len(b) < 4 {
		return PresentationContextRQ{}, malformed(t, itemPresentationContextRQ, "%d bytes, need 4", len(b))
	}
	pc := PresentationContextRQ{ID: b[0]}
	var sawAbstract bool
	err := splitItems(t, itemPresentationContextRQ, b[4:], func(it item) error {
		switch it.typ {
		case itemAbstractSyntax:
			if sawAbstract {
				return malformed(t, itemAbstractSyntax, "more than one in context %d", pc.ID)
			}
			pc.AbstractSyntax, sawAbstract = trimUID(it.value), true
		case itemTransferSyntax:
			pc.TransferSyntaxes = append(pc.TransferSyntaxes, trimUID(it.value))
		}
		return nil
	})
	if err != nil {
		return pc, err
	}
	if !sawAbstract {
		return pc, malformed(t, itemAbstractSyntax, "missing in context %d", pc.ID)
	}
	if len(pc.TransferSyntaxes) == 0 {
		return pc, malformed(t, itemTransferSyntax, "missing in context %d", pc.ID)
	}
	return pc, nil
}

func (p *AAssociateRQ) Encode(dst []byte) ([]byte, error) {
	dst, at := appendHeader(dst, TypeAAssociateRQ)
	dst, err := appendAssociateFixed(dst, p.ProtocolVersion, p.CalledAETitle, p.CallingAETitle)
	if err != nil {
		return dst, err
	}
	appCx := p.ApplicationContextName
	if appCx == "" {
		appCx = ApplicationContextName
	}
	if dst, err = appendStringItem(dst, itemApplicationContext, appCx); err != nil {
		return dst, err
	}
	for _, pc := range p.PresentationContexts {
		v := []byte{pc.ID, 0, 0, 0}
		if v, err = appendStringItem(v, itemAbstractSyntax, pc.AbstractSyntax); err != nil {
			return dst, err
		}
		for _, ts := range pc.TransferSyntaxes {
			if v, err = appendStringItem(v, itemTransferSyntax, ts); err != nil {
				return dst, err
			}
		}
		if dst, err = appendItem(dst, itemPresentationContextRQ, v); err != nil {
			return dst, err
		}
	}
	if dst, err = p.UserInformation.append(dst); err != nil {
		return dst, err
	}
	return finishPDU(dst, at), nil
}

func (p *AAssociateAC) Decode(b []byte) error {
	h, rest, err := decodeAssociateFixed(TypeAAssociateAC, b)
	if err != nil {
		return err
	}
	*p = AAssociateAC{ProtocolVersion: h.version, CalledAETitle: h.called, CallingAETitle: h.calling}
	var sawUser bool
	err = splitItems(TypeAAssociateAC, 0, rest, func(it item) error {
		switch it.typ {
		case itemApplicationContext:
			p.ApplicationContextName = trimUID(it.value)
		case itemPresentationContextAC:
			if len(it.value) < 4 {
				return malformed(TypeAAssociateAC, itemPresentationContextAC, "%d bytes, need 4", len(it.value))
			}
			pc := PresentationContextAC{ID: it.value[0], Result: PresentationContextResult(it.value[2])}
			err := splitItems(TypeAAssociateAC, itemPresentationContextAC, it.value[4:], func(sub item) error {
				if sub.typ == itemTransferSyntax {
					pc.TransferSyntax = trimUID(sub.value)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if pc.Result == Acceptance && pc.TransferSyntax == "" {
				return malformed(TypeAAssociateAC, itemTransferSyntax, "accepted context %d has none", pc.ID)
			}
			p.PresentationContexts = append(p.PresentationContexts, pc)
		case itemUserInformation:
			sawUser = true
			return p.UserInformation.decode(TypeAAssociateAC, it.value)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !sawUser {
		return malformed(TypeAAssociateAC, itemUserInformation, "missing")
	}
	return nil
}

func (p *AAssociateAC) Encode(dst []byte) ([]byte, error) {
	dst, at := appendHeader(dst, TypeAAssociateAC)
	dst, err := appendAssociateFixed(dst, p.ProtocolVersion, p.CalledAETitle, p.CallingAETitle)
	if err != nil {
		return dst, err
	}
	appCx := p.ApplicationContextName
	if appCx == "" {
		appCx = ApplicationContextName
	}
	if dst, err = appendStringItem(dst, itemApplicationContext, appCx); err != nil {
		return dst, err
	}
	for _, pc := range p.PresentationContexts {
		v := []byte{pc.ID, 0, byte(pc.Result), 0}
		// PS3.8 9.3.3.2: a rejected context still carries a transfer
		// syntax sub-item, whose value is not significant.
		if v, err = appendStringItem(v, itemTransferSyntax, pc.TransferSyntax); err != nil {
			return dst, err
		}
		if dst, err = appendItem(dst, itemPresentationContextAC, v); err != nil {
			return dst, err
		}
	}
	if dst, err = p.UserInformation.append(dst); err != nil {
		return dst, err
	}
	return finishPDU(dst, at), nil
}
