package dimse

import "fmt"

// Status is a DIMSE status code (PS3.7 Annex C, service specific codes in
// PS3.4). It is an error value so that errors.Is(err, StatusOutOfResources)
// works on a *StatusError.
type Status uint16

// General and service specific status codes.
const (
	StatusSuccess Status = 0x0000 // PS3.7 C.1.1

	StatusPending        Status = 0xFF00 // PS3.7 C.1.3, PS3.4 C.4.1.1.4
	StatusPendingWarning Status = 0xFF01 // PS3.4 C.4.1.1.4: optional keys not supported
	StatusCancel         Status = 0xFE00 // PS3.7 C.1.4

	StatusAttributeListError         Status = 0x0107 // PS3.7 C.4.2 (warning)
	StatusAttributeValueOutOfRange   Status = 0x0116 // PS3.7 C.4.7 (warning)
	StatusCoercionOfDataElements     Status = 0xB000 // PS3.4 B.2.3 (C-STORE warning)
	StatusSubOperationsWithFailures  Status = 0xB000 // PS3.4 C.4.2.1.5 (C-MOVE/C-GET warning)
	StatusElementsDiscarded          Status = 0xB006 // PS3.4 B.2.3
	StatusDataSetDoesNotMatchWarning Status = 0xB007 // PS3.4 B.2.3

	StatusNoSuchAttribute          Status = 0x0105 // PS3.7 C.5.1
	StatusInvalidAttributeValue    Status = 0x0106 // PS3.7 C.5.2
	StatusProcessingFailure        Status = 0x0110 // PS3.7 C.5.5
	StatusDuplicateSOPInstance     Status = 0x0111 // PS3.7 C.5.6
	StatusNoSuchSOPInstance        Status = 0x0112 // PS3.7 C.5.7
	StatusNoSuchEventType          Status = 0x0113 // PS3.7 C.5.8
	StatusNoSuchArgument           Status = 0x0114 // PS3.7 C.5.9
	StatusInvalidArgumentValue     Status = 0x0115 // PS3.7 C.5.10
	StatusInvalidObjectInstance    Status = 0x0117 // PS3.7 C.5.12
	StatusNoSuchSOPClass           Status = 0x0118 // PS3.7 C.5.13
	StatusClassInstanceConflict    Status = 0x0119 // PS3.7 C.5.14
	StatusMissingAttribute         Status = 0x0120 // PS3.7 C.5.15
	StatusMissingAttributeValue    Status = 0x0121 // PS3.7 C.5.16
	StatusSOPClassNotSupported     Status = 0x0122 // PS3.7 C.5.17
	StatusNoSuchAction             Status = 0x0123 // PS3.7 C.5.18
	StatusNotAuthorized            Status = 0x0124 // PS3.7 C.5.19
	StatusDuplicateInvocation      Status = 0x0210 // PS3.7 C.5.20
	StatusUnrecognizedOperation    Status = 0x0211 // PS3.7 C.5.21
	StatusMistypedArgument         Status = 0x0212 // PS3.7 C.5.22
	StatusResourceLimitation       Status = 0x0213 // PS3.7 C.5.23
	StatusOutOfResources           Status = 0xA700 // PS3.4 B.2.3 (A7xx)
	StatusOutOfResourcesMatches    Status = 0xA701 // PS3.4 C.4.2.1.5
	StatusOutOfResourcesSubOps     Status = 0xA702 // PS3.4 C.4.2.1.5
	StatusMoveDestinationUnknown   Status = 0xA801 // PS3.4 C.4.2.1.5
	StatusIdentifierDoesNotMatch   Status = 0xA900 // PS3.4 C.4.1.1.4
	StatusDataSetDoesNotMatchClass Status = 0xA900 // PS3.4 B.2.3 (A9xx)
	StatusCannotUnderstand         Status = 0xC000 // PS3.4 B.2.3 (Cxxx)
	StatusUnableToProcess          Status = 0xC001 // PS3.4 C.4.1.1.4 (Cxxx)
)

// StatusClass is the category of a status (PS3.7 C.1).
type StatusClass uint8

const (
	ClassSuccess StatusClass = iota + 1
	ClassWarning
	ClassFailure
	ClassCancel
	ClassPending
)

func (c StatusClass) Error() string { return c.String() }

func (c StatusClass) String() string {
	switch c {
	case ClassSuccess:
		return "success"
	case ClassWarning:
		return "warning"
	case ClassFailure:
		return "failure"
	case ClassCancel:
		return "cancel"
	case ClassPending:
		return "pending"
	}
	return "unknown"
}

// Class says whether s is success, warning, failure, cancel or pending.
func (s Status) Class() StatusClass {
	switch {
	case s == StatusSuccess:
		return ClassSuccess
	case s == StatusPending || s == StatusPendingWarning:
		return ClassPending
	case s == StatusCancel:
		return ClassCancel
	case s == 0x0001 || s == StatusAttributeListError || s == StatusAttributeValueOutOfRange || s&0xF000 == 0xB000:
		return ClassWarning
	}
	return ClassFailure
}

func (s Status) Error() string { return s.String() }

func (s Status) String() string {
	name := ""
	switch s {
	case StatusSuccess:
		name = "success"
	case StatusPending:
		name = "pending"
	case StatusPendingWarning:
		name = "pending, optional keys not supported"
	case StatusCancel:
		name = "cancel"
	case StatusCoercionOfDataElements:
		name = "warning: coercion of data elements / sub-operations with failures"
	case StatusElementsDiscarded:
		name = "warning: elements discarded"
	case StatusDataSetDoesNotMatchWarning:
		name = "warning: data set does not match SOP class"
	case StatusProcessingFailure:
		name = "processing failure"
	case StatusDuplicateSOPInstance:
		name = "duplicate SOP instance"
	case StatusNoSuchSOPClass:
		name = "no such SOP class"
	case StatusSOPClassNotSupported:
		name = "SOP class not supported"
	case StatusNotAuthorized:
		name = "not authorized"
	case StatusUnrecognizedOperation:
		name = "unrecognized operation"
	case StatusResourceLimitation:
		name = "resource limitation"
	case StatusOutOfResources:
		name = "refused: out of resources"
	case StatusOutOfResourcesMatches:
		name = "refused: out of resources, unable to calculate number of matches"
	case StatusOutOfResourcesSubOps:
		name = "refused: out of resources, unable to perform sub-operations"
	case StatusMoveDestinationUnknown:
		name = "refused: move destination unknown"
	case StatusDataSetDoesNotMatchClass:
		name = "error: data set does not match SOP class / identifier"
	case StatusCannotUnderstand:
		name = "error: cannot understand"
	case StatusUnableToProcess:
		name = "error: unable to process"
	default:
		name = s.Class().String()
	}
	return fmt.Sprintf("0x%04X (%s)", uint16(s), name)
}

// StatusError is a DIMSE response whose status is not success. errors.Is
// matches a Status (the exact code) or a StatusClass (for example
// ClassFailure); errors.As gives the response's fields.
type StatusError struct {
	Command      CommandField
	Status       Status
	ErrorComment string
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("dimse: %v status %v", e.Command, e.Status)
	if e.ErrorComment != "" {
		s += ": " + e.ErrorComment
	}
	return s
}

func (e *StatusError) Is(target error) bool {
	switch t := target.(type) {
	case Status:
		return t == e.Status
	case StatusClass:
		return t == e.Status.Class()
	}
	return false
}
