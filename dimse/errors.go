package dimse

import (
	"errors"
	"fmt"
)

// RejectResult is the Result field of an A-ASSOCIATE-RJ (PS3.8 Table 9-21).
type RejectResult byte

const (
	RejectedPermanent RejectResult = 1
	RejectedTransient RejectResult = 2
)

// RejectSource is the Source field of an A-ASSOCIATE-RJ (PS3.8 Table 9-21).
type RejectSource byte

const (
	SourceServiceUser                 RejectSource = 1
	SourceServiceProviderACSE         RejectSource = 2
	SourceServiceProviderPresentation RejectSource = 3
)

// RejectReason is the Reason/Diag. field of an A-ASSOCIATE-RJ; its meaning
// depends on the source (PS3.8 Table 9-21).
type RejectReason byte

const (
	// Source: service-user.
	ReasonNoReasonGiven                     RejectReason = 1
	ReasonApplicationContextNameUnsupported RejectReason = 2
	ReasonCallingAETitleNotRecognized       RejectReason = 3
	ReasonCalledAETitleNotRecognized        RejectReason = 7
	// Source: service-provider (ACSE related function).
	ReasonProtocolVersionNotSupported RejectReason = 2
	// Source: service-provider (presentation related function).
	ReasonTemporaryCongestion RejectReason = 1
	ReasonLocalLimitExceeded  RejectReason = 2
)

// RejectError is an association rejected by the acceptor, with the fields of
// its A-ASSOCIATE-RJ. errors.Is matches another *RejectError whose non-zero
// fields are equal, so ErrCalledAETitleNotRecognized matches any result.
type RejectError struct {
	Result RejectResult
	Source RejectSource
	Reason RejectReason
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("dimse: association rejected (result %d, source %d, reason %d: %s)",
		e.Result, e.Source, e.Reason, e.describe())
}

func (e *RejectError) describe() string {
	switch e.Source {
	case SourceServiceUser:
		switch e.Reason {
		case ReasonNoReasonGiven:
			return "no reason given"
		case ReasonApplicationContextNameUnsupported:
			return "application context name not supported"
		case ReasonCallingAETitleNotRecognized:
			return "calling AE title not recognized"
		case ReasonCalledAETitleNotRecognized:
			return "called AE title not recognized"
		}
	case SourceServiceProviderACSE:
		switch e.Reason {
		case 1:
			return "no reason given"
		case ReasonProtocolVersionNotSupported:
			return "protocol version not supported"
		}
	case SourceServiceProviderPresentation:
		switch e.Reason {
		case ReasonTemporaryCongestion:
			return "temporary congestion"
		case ReasonLocalLimitExceeded:
			return "local limit exceeded"
		}
	}
	return "reserved"
}

func (e *RejectError) Is(target error) bool {
	t, ok := target.(*RejectError)
	if !ok {
		return false
	}
	return (t.Result == 0 || t.Result == e.Result) && (t.Source == 0 || t.Source == e.Source) &&
		(t.Reason == 0 || t.Reason == e.Reason)
}

// Reject errors for errors.Is and for Server.Accept to return.
var (
	ErrCalledAETitleNotRecognized  = &RejectError{Source: SourceServiceUser, Reason: ReasonCalledAETitleNotRecognized}
	ErrCallingAETitleNotRecognized = &RejectError{Source: SourceServiceUser, Reason: ReasonCallingAETitleNotRecognized}
	ErrLocalLimitExceeded          = &RejectError{Source: SourceServiceProviderPresentation, Reason: ReasonLocalLimitExceeded}
)

// AbortSource is the Source field of an A-ABORT (PS3.8 Table 9-26).
type AbortSource byte

const (
	AbortServiceUser     AbortSource = 0
	AbortServiceProvider AbortSource = 2
)

// AbortReason is the Reason/Diag. field of an A-ABORT from the service
// provider (PS3.8 Table 9-26).
type AbortReason byte

const (
	AbortReasonNotSpecified       AbortReason = 0
	AbortUnrecognizedPDU          AbortReason = 1
	AbortUnexpectedPDU            AbortReason = 2
	AbortUnrecognizedPDUParameter AbortReason = 4
	AbortUnexpectedPDUParameter   AbortReason = 5
	AbortInvalidPDUParameterValue AbortReason = 6
	abortReasonLocal              AbortReason = 0xff // not on the wire: we aborted
)

// AbortError is an association that ended in A-ABORT (received, or sent by
// us after a protocol error), or in A-P-ABORT when the transport failed.
type AbortError struct {
	Source AbortSource
	Reason AbortReason
	// Local is true when this side sent the A-ABORT; Err then says why.
	Local bool
	Err   error
}

func (e *AbortError) Error() string {
	who := "peer"
	if e.Local {
		who = "local"
	}
	s := fmt.Sprintf("dimse: association aborted by %s (source %d, reason %d)", who, e.Source, e.Reason)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *AbortError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrAborted) true for every abort.
func (e *AbortError) Is(target error) bool { return target == ErrAborted }

// Sentinel errors of associations and servers.
var (
	ErrAborted         = errors.New("dimse: association aborted")
	ErrServerClosed    = errors.New("dimse: server closed")
	ErrARTIMExpired    = errors.New("dimse: ARTIM timer expired")
	ErrReleased        = errors.New("dimse: association released")
	ErrNoContext       = errors.New("dimse: no accepted presentation context")
	ErrUnexpectedPDU   = errors.New("dimse: unexpected PDU")
	ErrMessageTooLarge = errors.New("dimse: message exceeds the reassembly bound")
	ErrProtocol        = errors.New("dimse: protocol error")
	ErrInvalidAETitle  = errors.New("dimse: invalid AE title")
)
