package dimse

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// CommandField is the DIMSE command (PS3.7 E.1, (0000,0100)).
type CommandField uint16

// Command fields of PS3.7 Table E.1-1.
const (
	CStoreRQField  CommandField = 0x0001
	CStoreRSPField CommandField = 0x8001
	CGetRQField    CommandField = 0x0010
	CGetRSPField   CommandField = 0x8010
	CFindRQField   CommandField = 0x0020
	CFindRSPField  CommandField = 0x8020
	CMoveRQField   CommandField = 0x0021
	CMoveRSPField  CommandField = 0x8021
	CEchoRQField   CommandField = 0x0030
	CEchoRSPField  CommandField = 0x8030
	CCancelRQField CommandField = 0x0FFF
)

func (f CommandField) String() string {
	switch f {
	case CStoreRQField:
		return "C-STORE-RQ"
	case CStoreRSPField:
		return "C-STORE-RSP"
	case CGetRQField:
		return "C-GET-RQ"
	case CGetRSPField:
		return "C-GET-RSP"
	case CFindRQField:
		return "C-FIND-RQ"
	case CFindRSPField:
		return "C-FIND-RSP"
	case CMoveRQField:
		return "C-MOVE-RQ"
	case CMoveRSPField:
		return "C-MOVE-RSP"
	case CEchoRQField:
		return "C-ECHO-RQ"
	case CEchoRSPField:
		return "C-ECHO-RSP"
	case CCancelRQField:
		return "C-CANCEL-RQ"
	}
	return fmt.Sprintf("command(0x%04X)", uint16(f))
}

// IsResponse reports whether f is a response (bit 15 set).
func (f CommandField) IsResponse() bool { return f&0x8000 != 0 }

// Priority of a request (PS3.7 E.1, (0000,0700)).
type Priority uint16

const (
	PriorityMedium Priority = 0x0000
	PriorityHigh   Priority = 0x0001
	PriorityLow    Priority = 0x0002
)

// commandDataSetTypeNone is CommandDataSetType (0000,0800) for "no data set";
// any other value means a data set follows (PS3.7 E.1).
const commandDataSetTypeNone = 0x0101

// Command is a decoded command set (PS3.7 Annex E). Field names are the
// standard's keywords. Which fields are encoded depends on CommandField;
// decoding records which were present (see Has).
type Command struct {
	AffectedSOPClassUID                  string
	RequestedSOPClassUID                 string
	CommandField                         CommandField
	MessageID                            uint16
	MessageIDBeingRespondedTo            uint16
	MoveDestination                      string
	Priority                             Priority
	HasDataSet                           bool // CommandDataSetType (0000,0800) != 0x0101
	Status                               Status
	OffendingElement                     []uint32
	ErrorComment                         string
	ErrorID                              uint16
	AffectedSOPInstanceUID               string
	RequestedSOPInstanceUID              string
	NumberOfRemainingSuboperations       uint16
	NumberOfCompletedSuboperations       uint16
	NumberOfFailedSuboperations          uint16
	NumberOfWarningSuboperations         uint16
	MoveOriginatorApplicationEntityTitle string
	MoveOriginatorMessageID              uint16

	present map[uint16]bool // element numbers seen when decoded
}

// Element numbers of group 0000 (PS3.7 Table E.1-1).
const (
	tagCommandGroupLength                   = 0x0000
	tagAffectedSOPClassUID                  = 0x0002
	tagRequestedSOPClassUID                 = 0x0003
	tagCommandField                         = 0x0100
	tagMessageID                            = 0x0110
	tagMessageIDBeingRespondedTo            = 0x0120
	tagMoveDestination                      = 0x0600
	tagPriority                             = 0x0700
	tagCommandDataSetType                   = 0x0800
	tagStatus                               = 0x0900
	tagOffendingElement                     = 0x0901
	tagErrorComment                         = 0x0902
	tagErrorID                              = 0x0903
	tagAffectedSOPInstanceUID               = 0x1000
	tagRequestedSOPInstanceUID              = 0x1001
	tagNumberOfRemainingSuboperations       = 0x1020
	tagNumberOfCompletedSuboperations       = 0x1021
	tagNumberOfFailedSuboperations          = 0x1022
	tagNumberOfWarningSuboperations         = 0x1023
	tagMoveOriginatorApplicationEntityTitle = 0x1030
	tagMoveOriginatorMessageID              = 0x1031
)

// Has reports whether a decoded command carried the element (0000,elem).
func (c *Command) Has(elem uint16) bool { return c.present[elem] }

// ErrMalformedCommand is wrapped by every command-set decoding error.
var ErrMalformedCommand = errors.New("dimse: malformed command set")

// maxCommandSetLength bounds reassembly of a command set; real ones are a
// few hundred bytes.
const maxCommandSetLength = 64 << 10

// fieldsFor lists the elements each message carries, in ascending order,
// after PS3.7 Tables 9.3-1 ff. Optional elements are written when non-zero.
func fieldsFor(f CommandField) []uint16 {
	switch f {
	case CEchoRQField:
		return []uint16{tagAffectedSOPClassUID, tagCommandField, tagMessageID, tagCommandDataSetType}
	case CEchoRSPField:
		return []uint16{tagAffectedSOPClassUID, tagCommandField, tagMessageIDBeingRespondedTo, tagCommandDataSetType, tagStatus, tagErrorComment}
	case CStoreRQField:
		return []uint16{tagAffectedSOPClassUID, tagCommandField, tagMessageID, tagPriority, tagCommandDataSetType,
			tagAffectedSOPInstanceUID, tagMoveOriginatorApplicationEntityTitle, tagMoveOriginatorMessageID}
	case CStoreRSPField:
		return []uint16{tagAffectedSOPClassUID, tagCommandField, tagMessageIDBeingRespondedTo, tagCommandDataSetType,
			tagStatus, tagOffendingElement, tagErrorComment, tagAffectedSOPInstanceUID}
	case CFindRQField, CGetRQField:
		return []uint16{tagAffectedSOPClassUID, tagCommandField, tagMessageID, tagPriority, tagCommandDataSetType}
	case CMoveRQField:
		return []uint16{tagAffectedSOPClassUID, tagCommandField, tagMessageID, tagMoveDestination, tagPriority, tagCommandDataSetType}
	case CFindRSPField:
		return []uint16{tagAffectedSOPClassUID, tagCommandField, tagMessageIDBeingRespondedTo, tagCommandDataSetType,
			tagStatus, tagOffendingElement, tagErrorComment}
	case CGetRSPField, CMoveRSPField:
		return []uint16{tagAffectedSOPClassUID, tagCommandField, tagMessageIDBeingRespondedTo, tagCommandDataSetType,
			tagStatus, tagOffendingElement, tagErrorComment, tagNumberOfRemainingSuboperations,
			tagNumberOfCompletedSuboperations, tagNumberOfFailedSuboperations, tagNumberOfWarningSuboperations}
	case CCancelRQField:
		return []uint16{tagCommandField, tagMessageIDBeingRespondedTo, tagCommandDataSetType}
	}
	return nil
}

// optional elements are left out when empty; the rest are always written.
func optional(elem uint16) bool {
	switch elem {
	case tagOffendingElement, tagErrorComment, tagMoveOriginatorApplicationEntityTitle, tagMoveOriginatorMessageID,
		tagAffectedSOPClassUID, tagAffectedSOPInstanceUID:
		return true
	}
	return false
}

// Encode appends the command set in implicit VR little endian, group length
// first (PS3.7 6.3.1).
func (c *Command) Encode(dst []byte) ([]byte, error) {
	elems := fieldsFor(c.CommandField)
	if elems == nil {
		return dst, fmt.Errorf("dimse: cannot encode %v", c.CommandField)
	}
	start := len(dst)
	dst = appendElement(dst, tagCommandGroupLength, []byte{0, 0, 0, 0})
	body := len(dst)
	for _, e := range elems {
		var v []byte
		switch e {
		case tagAffectedSOPClassUID:
			v = padUID(c.AffectedSOPClassUID)
		case tagRequestedSOPClassUID:
			v = padUID(c.RequestedSOPClassUID)
		case tagCommandField:
			v = le16(uint16(c.CommandField))
		case tagMessageID:
			v = le16(c.MessageID)
		case tagMessageIDBeingRespondedTo:
			v = le16(c.MessageIDBeingRespondedTo)
		case tagMoveDestination:
			v = padText(c.MoveDestination)
		case tagPriority:
			v = le16(uint16(c.Priority))
		case tagCommandDataSetType:
			v = le16(commandDataSetTypeNone)
			if c.HasDataSet {
				v = le16(0x0000)
			}
		case tagStatus:
			v = le16(uint16(c.Status))
		case tagOffendingElement:
			for _, t := range c.OffendingElement {
				v = binary.LittleEndian.AppendUint16(v, uint16(t>>16))
				v = binary.LittleEndian.AppendUint16(v, uint16(t))
			}
		case tagErrorComment:
			v = padText(c.ErrorComment)
		case tagAffectedSOPInstanceUID:
			v = padUID(c.AffectedSOPInstanceUID)
		case tagNumberOfRemainingSuboperations:
			v = le16(c.NumberOfRemainingSuboperations)
		case tagNumberOfCompletedSuboperations:
			v = le16(c.NumberOfCompletedSuboperations)
		case tagNumberOfFailedSuboperations:
			v = le16(c.NumberOfFailedSuboperations)
		case tagNumberOfWarningSuboperations:
			v = le16(c.NumberOfWarningSuboperations)
		case tagMoveOriginatorApplicationEntityTitle:
			v = padText(c.MoveOriginatorApplicationEntityTitle)
		case tagMoveOriginatorMessageID:
			if c.MoveOriginatorApplicationEntityTitle != "" {
				v = le16(c.MoveOriginatorMessageID)
			}
		}
		if len(v) == 0 && optional(e) {
			continue
		}
		dst = appendElement(dst, e, v)
	}
	binary.LittleEndian.PutUint32(dst[start+8:], uint32(len(dst)-body))
	return dst, nil
}

func appendElement(dst []byte, elem uint16, v []byte) []byte {
	dst = append(dst, 0, 0)
	dst = binary.LittleEndian.AppendUint16(dst, elem)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(v)))
	return append(dst, v...)
}

func le16(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }

// padUID pads a UID to even length with NUL (PS3.5 9.1).
func padUID(s string) []byte {
	b := []byte(s)
	if len(b)%2 == 1 {
		b = append(b, 0)
	}
	return b
}

// padText pads AE and LO values to even length with a space.
func padText(s string) []byte {
	b := []byte(s)
	if len(b)%2 == 1 {
		b = append(b, ' ')
	}
	return b
}

// DecodeCommand decodes a command set. Every element must be in group 0000
// and in ascending order; unknown elements of group 0000 are skipped. The
// group length, when present, must match.
func DecodeCommand(b []byte) (*Command, error) {
	c := &Command{present: make(map[uint16]bool, 8)}
	var last int = -1
	total := len(b)
	for off := 0; off < total; {
		if total-off < 8 {
			return nil, fmt.Errorf("%w: element header truncated at offset %d", ErrMalformedCommand, off)
		}
		group := binary.LittleEndian.Uint16(b[off:])
		elem := binary.LittleEndian.Uint16(b[off+2:])
		n := binary.LittleEndian.Uint32(b[off+4:])
		off += 8
		if group != 0x0000 {
			return nil, fmt.Errorf("%w: element (%04X,%04X) outside group 0000", ErrMalformedCommand, group, elem)
		}
		if int(elem) <= last {
			return nil, fmt.Errorf("%w: element (0000,%04X) out of order", ErrMalformedCommand, elem)
		}
		last = int(elem)
		if uint64(n) > uint64(total-off) {
			return nil, fmt.Errorf("%w: element (0000,%04X) length %d with %d bytes left", ErrMalformedCommand, elem, n, total-off)
		}
		v := b[off : off+int(n)]
		off += int(n)
		if err := c.set(elem, v); err != nil {
			return nil, err
		}
		if elem == tagCommandGroupLength {
			if gl := binary.LittleEndian.Uint32(v); uint64(gl) != uint64(total-off) {
				return nil, fmt.Errorf("%w: CommandGroupLength %d, %d bytes follow", ErrMalformedCommand, gl, total-off)
			}
		}
		c.present[elem] = true
	}
	if !c.present[tagCommandField] {
		return nil, fmt.Errorf("%w: no CommandField", ErrMalformedCommand)
	}
	if !c.present[tagCommandDataSetType] {
		return nil, fmt.Errorf("%w: no CommandDataSetType", ErrMalformedCommand)
	}
	return c, nil
}

func (c *Command) set(elem uint16, v []byte) error {
	us := func() (uint16, error) {
		if len(v) != 2 {
			return 0, fmt.Errorf("%w: (0000,%04X) US of %d bytes", ErrMalformedCommand, elem, len(v))
		}
		return binary.LittleEndian.Uint16(v), nil
	}
	text := func() string { return strings.TrimRight(string(v), "\x00 ") }
	// AE titles: leading and trailing spaces are not significant; some
	// peers pad with NUL as well.
	ae := func() string {
		return strings.TrimFunc(string(v), func(r rune) bool { return r == 0 || unicode.IsSpace(r) })
	}
	var err error
	var x uint16
	switch elem {
	case tagCommandGroupLength:
		if len(v) != 4 {
			return fmt.Errorf("%w: CommandGroupLength of %d bytes", ErrMalformedCommand, len(v))
		}
	case tagAffectedSOPClassUID:
		c.AffectedSOPClassUID = text()
	case tagRequestedSOPClassUID:
		c.RequestedSOPClassUID = text()
	case tagCommandField:
		x, err = us()
		c.CommandField = CommandField(x)
	case tagMessageID:
		c.MessageID, err = us()
	case tagMessageIDBeingRespondedTo:
		c.MessageIDBeingRespondedTo, err = us()
	case tagMoveDestination:
		c.MoveDestination = ae()
	case tagPriority:
		x, err = us()
		c.Priority = Priority(x)
	case tagCommandDataSetType:
		x, err = us()
		c.HasDataSet = x != commandDataSetTypeNone
	case tagStatus:
		x, err = us()
		c.Status = Status(x)
	case tagOffendingElement:
		if len(v)%4 != 0 {
			return fmt.Errorf("%w: OffendingElement of %d bytes", ErrMalformedCommand, len(v))
		}
		for i := 0; i < len(v); i += 4 {
			c.OffendingElement = append(c.OffendingElement,
				uint32(binary.LittleEndian.Uint16(v[i:]))<<16|uint32(binary.LittleEndian.Uint16(v[i+2:])))
		}
	case tagErrorComment:
		c.ErrorComment = text()
	case tagErrorID:
		c.ErrorID, err = us()
	case tagAffectedSOPInstanceUID:
		c.AffectedSOPInstanceUID = text()
	case tagRequestedSOPInstanceUID:
		c.RequestedSOPInstanceUID = text()
	case tagNumberOfRemainingSuboperations:
		c.NumberOfRemainingSuboperations, err = us()
	case tagNumberOfCompletedSuboperations:
		c.NumberOfCompletedSuboperations, err = us()
	case tagNumberOfFailedSuboperations:
		c.NumberOfFailedSuboperations, err = us()
	case tagNumberOfWarningSuboperations:
		c.NumberOfWarningSuboperations, err = us()
	case tagMoveOriginatorApplicationEntityTitle:
		c.MoveOriginatorApplicationEntityTitle = ae()
	case tagMoveOriginatorMessageID:
		c.MoveOriginatorMessageID, err = us()
	}
	return err
}
