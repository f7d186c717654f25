package dimse

import "fmt"

// Message is a typed DIMSE message (PS3.7 9.3). Command gives its command
// set; ParseMessage goes the other way.
type Message interface {
	Command() *Command
}

// CEchoRQ is the C-ECHO-RQ (PS3.7 9.3.5.1).
type CEchoRQ struct {
	MessageID           uint16
	AffectedSOPClassUID string
}

// CEchoRSP is the C-ECHO-RSP (PS3.7 9.3.5.2).
type CEchoRSP struct {
	MessageIDBeingRespondedTo uint16
	AffectedSOPClassUID       string
	Status                    Status
	ErrorComment              string
}

// CStoreRQ is the C-STORE-RQ (PS3.7 9.3.1.1); a data set always follows.
type CStoreRQ struct {
	MessageID                            uint16
	AffectedSOPClassUID                  string
	AffectedSOPInstanceUID               string
	Priority                             Priority
	MoveOriginatorApplicationEntityTitle string
	MoveOriginatorMessageID              uint16
}

// CStoreRSP is the C-STORE-RSP (PS3.7 9.3.1.2).
type CStoreRSP struct {
	MessageIDBeingRespondedTo uint16
	AffectedSOPClassUID       string
	AffectedSOPInstanceUID    string
	Status                    Status
	OffendingElement          []uint32
	ErrorComment              string
}

// CFindRQ is the C-FIND-RQ (PS3.7 9.3.2.1); an identifier follows.
type CFindRQ struct {
	MessageID           uint16
	AffectedSOPClassUID string
	Priority            Priority
}

// CFindRSP is the C-FIND-RSP (PS3.7 9.3.2.2); pending responses carry an
// identifier.
type CFindRSP struct {
	MessageIDBeingRespondedTo uint16
	AffectedSOPClassUID       string
	Status                    Status
	HasIdentifier             bool
	OffendingElement          []uint32
	ErrorComment              string
}

// CGetRQ is the C-GET-RQ (PS3.7 9.3.3.1); an identifier follows.
type CGetRQ struct {
	MessageID           uint16
	AffectedSOPClassUID string
	Priority            Priority
}

// SubOperations are the counters of C-GET-RSP and C-MOVE-RSP.
type SubOperations struct {
	NumberOfRemainingSuboperations uint16
	NumberOfCompletedSuboperations uint16
	NumberOfFailedSuboperations    uint16
	NumberOfWarningSuboperations   uint16
}

// CGetRSP is the C-GET-RSP (PS3.7 9.3.3.2).
type CGetRSP struct {
	MessageIDBeingRespondedTo uint16
	AffectedSOPClassUID       string
	Status                    Status
	SubOperations
	HasIdentifier bool // failed SOP instance UID list
	ErrorComment  string
}

// CMoveRQ is the C-MOVE-RQ (PS3.7 9.3.4.1); an identifier follows.
type CMoveRQ struct {
	MessageID           uint16
	AffectedSOPClassUID string
	Priority            Priority
	MoveDestination     string
}

// CMoveRSP is the C-MOVE-RSP (PS3.7 9.3.4.2).
type CMoveRSP struct {
	MessageIDBeingRespondedTo uint16
	AffectedSOPClassUID       string
	Status                    Status
	SubOperations
	HasIdentifier bool
	ErrorComment  string
}

// CCancelRQ is the C-CANCEL-RQ (PS3.7 9.3.2.3) for a C-FIND, C-GET or C-MOVE.
type CCancelRQ struct {
	MessageIDBeingRespondedTo uint16
}

func (m *CEchoRQ) Command() *Command {
	return &Command{CommandField: CEchoRQField, MessageID: m.MessageID, AffectedSOPClassUID: m.AffectedSOPClassUID}
}

func (m *CEchoRSP) Command() *Command {
	return &Command{CommandField: CEchoRSPField, MessageIDBeingRespondedTo: m.MessageIDBeingRespondedTo,
		AffectedSOPClassUID: m.AffectedSOPClassUID, Status: m.Status, ErrorComment: m.ErrorComment}
}

func (m *CStoreRQ) Command() *Command {
	return &Command{CommandField: CStoreRQField, MessageID: m.MessageID, AffectedSOPClassUID: m.AffectedSOPClassUID,
		AffectedSOPInstanceUID: m.AffectedSOPInstanceUID, Priority: m.Priority, HasDataSet: true,
		MoveOriginatorApplicationEntityTitle: m.MoveOriginatorApplicationEntityTitle,
		MoveOriginatorMessageID:              m.MoveOriginatorMessageID}
}

func (m *CStoreRSP) Command() *Command {
	return &Command{CommandField: CStoreRSPField, MessageIDBeingRespondedTo: m.MessageIDBeingRespondedTo,
		AffectedSOPClassUID: m.AffectedSOPClassUID, AffectedSOPInstanceUID: m.AffectedSOPInstanceUID,
		Status: m.Status, OffendingElement: m.OffendingElement, ErrorComment: m.ErrorComment}
}

func (m *CFindRQ) Command() *Command {
	return &Command{CommandField: CFindRQField, MessageID: m.MessageID, AffectedSOPClassUID: m.AffectedSOPClassUID,
		Priority: m.Priority, HasDataSet: true}
}

func (m *CFindRSP) Command() *Command {
	return &Command{CommandField: CFindRSPField, MessageIDBeingRespondedTo: m.MessageIDBeingRespondedTo,
		AffectedSOPClassUID: m.AffectedSOPClassUID, Status: m.Status, HasDataSet: m.HasIdentifier,
		OffendingElement: m.OffendingElement, ErrorComment: m.ErrorComment}
}

func (m *CGetRQ) Command() *Command {
	return &Command{CommandField: CGetRQField, MessageID: m.MessageID, AffectedSOPClassUID: m.AffectedSOPClassUID,
		Priority: m.Priority, HasDataSet: true}
}

func (m *CGetRSP) Command() *Command {
	c := &Command{CommandField: CGetRSPField, MessageIDBeingRespondedTo: m.MessageIDBeingRespondedTo,
		AffectedSOPClassUID: m.AffectedSOPClassUID, Status: m.Status, HasDataSet: m.HasIdentifier, ErrorComment: m.ErrorComment}
	m.SubOperations.put(c)
	return c
}

func (m *CMoveRQ) Command() *Command {
	return &Command{CommandField: CMoveRQField, MessageID: m.MessageID, AffectedSOPClassUID: m.AffectedSOPClassUID,
		Priority: m.Priority, MoveDestination: m.MoveDestination, HasDataSet: true}
}

func (m *CMoveRSP) Command() *Command {
	c := &Command{CommandField: CMoveRSPField, MessageIDBeingRespondedTo: m.MessageIDBeingRespondedTo,
		AffectedSOPClassUID: m.AffectedSOPClassUID, Status: m.Status, HasDataSet: m.HasIdentifier, ErrorComment: m.ErrorComment}
	m.SubOperations.put(c)
	return c
}

func (m *CCancelRQ) Command() *Command {
	return &Command{CommandField: CCancelRQField, MessageIDBeingRespondedTo: m.MessageIDBeingRespondedTo}
}

func (s SubOperations) put(c *Command) {
	c.NumberOfRemainingSuboperations = s.NumberOfRemainingSuboperations
	c.NumberOfCompletedSuboperations = s.NumberOfCompletedSuboperations
	c.NumberOfFailedSuboperations = s.NumberOfFailedSuboperations
	c.NumberOfWarningSuboperations = s.NumberOfWarningSuboperations
}

func subOperations(c *Command) SubOperations {
	return SubOperations{c.NumberOfRemainingSuboperations, c.NumberOfCompletedSuboperations,
		c.NumberOfFailedSuboperations, c.NumberOfWarningSuboperations}
}

// ParseMessage turns a decoded command set into its typed message, checking
// the elements PS3.7 requires.
func ParseMessage(c *Command) (Message, error) {
	need := func(elems ...uint16) error {
		for _, e := range elems {
			if !c.Has(e) {
				return fmt.Errorf("%w: %v without (0000,%04X)", ErrMalformedCommand, c.CommandField, e)
			}
			// A required UID or AE title must also have a value (type 1).
			empty := false
			switch e {
			case tagAffectedSOPClassUID:
				empty = c.AffectedSOPClassUID == ""
			case tagAffectedSOPInstanceUID:
				empty = c.AffectedSOPInstanceUID == ""
			case tagMoveDestination:
				empty = c.MoveDestination == ""
			}
			if empty {
				return fmt.Errorf("%w: %v with an empty (0000,%04X)", ErrMalformedCommand, c.CommandField, e)
			}
		}
		return nil
	}
	var m Message
	var req []uint16
	switch c.CommandField {
	case CEchoRQField:
		req = []uint16{tagMessageID}
		m = &CEchoRQ{MessageID: c.MessageID, AffectedSOPClassUID: c.AffectedSOPClassUID}
	case CEchoRSPField:
		req = []uint16{tagMessageIDBeingRespondedTo, tagStatus}
		m = &CEchoRSP{c.MessageIDBeingRespondedTo, c.AffectedSOPClassUID, c.Status, c.ErrorComment}
	case CStoreRQField:
		req = []uint16{tagMessageID, tagAffectedSOPClassUID, tagAffectedSOPInstanceUID}
		m = &CStoreRQ{c.MessageID, c.AffectedSOPClassUID, c.AffectedSOPInstanceUID, c.Priority,
			c.MoveOriginatorApplicationEntityTitle, c.MoveOriginatorMessageID}
	case CStoreRSPField:
		req = []uint16{tagMessageIDBeingRespondedTo, tagStatus}
		m = &CStoreRSP{c.MessageIDBeingRespondedTo, c.AffectedSOPClassUID, c.AffectedSOPInstanceUID, c.Status,
			c.OffendingElement, c.ErrorComment}
	case CFindRQField:
		req = []uint16{tagMessageID, tagAffectedSOPClassUID}
		m = &CFindRQ{c.MessageID, c.AffectedSOPClassUID, c.Priority}
	case CFindRSPField:
		req = []uint16{tagMessageIDBeingRespondedTo, tagStatus}
		m = &CFindRSP{c.MessageIDBeingRespondedTo, c.AffectedSOPClassUID, c.Status, c.HasDataSet, c.OffendingElement, c.ErrorComment}
	case CGetRQField:
		req = []uint16{tagMessageID, tagAffectedSOPClassUID}
		m = &CGetRQ{c.MessageID, c.AffectedSOPClassUID, c.Priority}
	case CGetRSPField:
		req = []uint16{tagMessageIDBeingRespondedTo, tagStatus}
		m = &CGetRSP{c.MessageIDBeingRespondedTo, c.AffectedSOPClassUID, c.Status, subOperations(c), c.HasDataSet, c.ErrorComment}
	case CMoveRQField:
		req = []uint16{tagMessageID, tagAffectedSOPClassUID, tagMoveDestination}
		m = &CMoveRQ{c.MessageID, c.AffectedSOPClassUID, c.Priority, c.MoveDestination}
	case CMoveRSPField:
		req = []uint16{tagMessageIDBeingRespondedTo, tagStatus}
		m = &CMoveRSP{c.MessageIDBeingRespondedTo, c.AffectedSOPClassUID, c.Status, subOperations(c), c.HasDataSet, c.ErrorComment}
	case CCancelRQField:
		req = []uint16{tagMessageIDBeingRespondedTo}
		m = &CCancelRQ{c.MessageIDBeingRespondedTo}
	default:
		return nil, fmt.Errorf("%w: unsupported %v", ErrMalformedCommand, c.CommandField)
	}
	if err := need(req...); err != nil {
		return nil, err
	}
	return m, nil
}
