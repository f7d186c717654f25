package header

import (
	"errors"
	"fmt"
)

// Kinds of parse failure, matched with errors.Is on an *Error.
var (
	// ErrTruncated: the data ends inside an element.
	ErrTruncated = errors.New("header: truncated")
	// ErrMalformed: the bytes do not follow PS3.5 encoding rules.
	ErrMalformed = errors.New("header: malformed")
	// ErrLimit: a nesting depth, element count or value size limit was hit.
	ErrLimit = errors.New("header: limit exceeded")
	// ErrMissing: a required attribute (SOP, study or series UID) is absent
	// or not a valid UID.
	ErrMissing = errors.New("header: required attribute missing")
)

// Error is a parse failure: where it happened and why. The SCP puts
// Comment() into the Error Comment (0000,0902) of a 0xC000-range C-STORE
// failure.
type Error struct {
	Offset int64  // byte offset in the input, -1 when not known
	Tag    uint32 // element being read (group<<16|element), 0 when none
	Reason string
	Err    error // one of the sentinels above, or what a reader returned
}

func (e *Error) Error() string {
	s := "header"
	if e.Tag != 0 {
		s += fmt.Sprintf(" (%04X,%04X)", e.Tag>>16, e.Tag&0xffff)
	}
	if e.Offset >= 0 {
		s += fmt.Sprintf(" at byte %d", e.Offset)
	}
	return s + ": " + e.Reason
}

func (e *Error) Unwrap() error { return e.Err }

// Comment is the message shortened to the 64 characters an LO value such
// as Error Comment (0000,0902) may hold, ASCII only.
func (e *Error) Comment() string {
	b := []byte(e.Error())
	for i, c := range b {
		if c < 0x20 || c > 0x7e || c == '\\' {
			b[i] = '?'
		}
	}
	if len(b) > 64 {
		b = append(b[:61], "..."...)
	}
	return string(b)
}
