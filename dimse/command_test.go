package dimse

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"testing"
)

// el builds one implicit VR little endian element of group 0000.
func el(elem uint16, v []byte) []byte {
	out := binary.LittleEndian.AppendUint16([]byte{0, 0}, elem)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(v)))
	return append(out, v...)
}

func withGroupLength(elems ...[]byte) []byte {
	body := bytes.Join(elems, nil)
	return append(el(0x0000, binary.LittleEndian.AppendUint32(nil, uint32(len(body)))), body...)
}

func TestDecodeCommandEchoAsDcmtkSendsIt(t *testing.T) {
	in := withGroupLength(
		el(0x0002, []byte("1.2.840.10008.1.1\x00")),
		el(0x0100, []byte{0x30, 0x00}),
		el(0x0110, []byte{0x01, 0x00}),
		el(0x0800, []byte{0x01, 0x01}),
	)
	c, err := DecodeCommand(in)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseMessage(c)
	if err != nil {
		t.Fatal(err)
	}
	want := &CEchoRQ{MessageID: 1, AffectedSOPClassUID: VerificationSOPClass}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("got %#v, want %#v", m, want)
	}
	out, err := want.Command().Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, in) {
		t.Fatalf("encoded\n% x\nwant\n% x", out, in)
	}
}

func TestMessageRoundTrip(t *testing.T) {
	subs := SubOperations{3, 2, 1, 0}
	tests := []Message{
		&CEchoRQ{MessageID: 7, AffectedSOPClassUID: VerificationSOPClass},
		&CEchoRSP{MessageIDBeingRespondedTo: 7, AffectedSOPClassUID: VerificationSOPClass, Status: StatusSuccess},
		&CStoreRQ{MessageID: 1, AffectedSOPClassUID: "1.2.840.10008.5.1.4.1.1.2", AffectedSOPInstanceUID: "1.2.3.4.5",
			Priority: PriorityHigh, MoveOriginatorApplicationEntityTitle: "MOVER", MoveOriginatorMessageID: 9},
		&CStoreRSP{MessageIDBeingRespondedTo: 1, AffectedSOPClassUID: "1.2.840.10008.5.1.4.1.1.2", AffectedSOPInstanceUID: "1.2.3",
			Status: StatusOutOfResources, OffendingElement: []uint32{0x00100010, 0x7fe00010}, ErrorComment: "disk full"},
		&CFindRQ{MessageID: 2, AffectedSOPClassUID: "1.2.840.10008.5.1.4.1.2.2.1", Priority: PriorityLow},
		&CFindRSP{MessageIDBeingRespondedTo: 2, AffectedSOPClassUID: "1.2.840.10008.5.1.4.1.2.2.1", Status: StatusPending, HasIdentifier: true},
		&CGetRQ{MessageID: 3, AffectedSOPClassUID: "1.2.840.10008.5.1.4.1.2.2.3"},
		&CGetRSP{MessageIDBeingRespondedTo: 3, AffectedSOPClassUID: "1.2.840.10008.5.1.4.1.2.2.3", Status: StatusPending, SubOperations: subs},
		&CMoveRQ{MessageID: 4, AffectedSOPClassUID: "1.2.840.10008.5.1.4.1.2.2.2", MoveDestination: "DEST"},
		&CMoveRSP{MessageIDBeingRespondedTo: 4, AffectedSOPClassUID: "1.2.840.10008.5.1.4.1.2.2.2",
			Status: StatusSubOperationsWithFailures, SubOperations: subs, HasIdentifier: true, ErrorComment: "x"},
		&CCancelRQ{MessageIDBeingRespondedTo: 2},
	}
	for _, m := range tests {
		t.Run(fmt.Sprintf("%T", m), func(t *testing.T) {
			b, err := m.Command().Encode(nil)
			if err != nil {
				t.Fatal(err)
			}
			if binary.LittleEndian.Uint32(b[8:]) != uint32(len(b)-12) {
				t.Fatalf("CommandGroupLength %d, %d bytes follow", binary.LittleEndian.Uint32(b[8:]), len(b)-12)
			}
			if len(b)%2 != 0 {
				t.Fatalf("odd length %d", len(b))
			}
			c, err := DecodeCommand(b)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseMessage(c)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("got %#v, want %#v", got, m)
			}
		})
	}
}

func TestDecodeCommandErrors(t *testing.T) {
	cf := el(0x0100, []byte{0x30, 0})
	ds := el(0x0800, []byte{1, 1})
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"truncated header", []byte{0, 0, 0, 1}},
		{"length past end", append(el(0x0100, []byte{0x30, 0}), 0, 0, 0x10, 0x01, 0xff, 0xff, 0xff, 0xff)},
		{"group length wrong", append(el(0x0000, []byte{99, 0, 0, 0}), append(cf, ds...)...)},
		{"group length of 2 bytes", append(el(0x0000, []byte{0, 0}), append(cf, ds...)...)},
		{"group 0008 element", append(append(cf, ds...), 0x08, 0, 0x18, 0, 0, 0, 0, 0)},
		{"out of order", append(ds, cf...)},
		{"duplicate element", append(append(cf, cf...), ds...)},
		{"US of 3 bytes", append(el(0x0100, []byte{0x30, 0, 0}), ds...)},
		{"no CommandField", ds},
		{"no CommandDataSetType", cf},
		{"OffendingElement of 3 bytes", append(append(cf, ds...), el(0x0901, []byte{1, 2, 3})...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c, err := DecodeCommand(tt.in); !errors.Is(err, ErrMalformedCommand) {
				t.Fatalf("DecodeCommand = %+v, %v; want ErrMalformedCommand", c, err)
			}
		})
	}
	// Required elements are checked per message.
	c, err := DecodeCommand(withGroupLength(el(0x0100, []byte{0x01, 0}), el(0x0110, []byte{1, 0}), el(0x0800, []byte{0, 0})))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseMessage(c); !errors.Is(err, ErrMalformedCommand) {
		t.Fatalf("C-STORE-RQ without SOP UIDs: %v", err)
	}
	// Present but empty is no better (found by FuzzDecodeCommand).
	c, err = DecodeCommand(withGroupLength(el(0x0002, []byte("1.2\x00")), el(0x0100, []byte{0x01, 0}), el(0x0110, []byte{1, 0}),
		el(0x0800, []byte{0, 0}), el(0x1000, []byte("\x00\x00"))))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseMessage(c); !errors.Is(err, ErrMalformedCommand) {
		t.Fatalf("C-STORE-RQ with an empty SOP instance UID: %v", err)
	}
}

func TestStatusErrorMatching(t *testing.T) {
	tests := []struct {
		status Status
		class  StatusClass
	}{
		{StatusSuccess, ClassSuccess},
		{StatusPending, ClassPending},
		{StatusPendingWarning, ClassPending},
		{StatusCancel, ClassCancel},
		{StatusCoercionOfDataElements, ClassWarning},
		{StatusDataSetDoesNotMatchWarning, ClassWarning},
		{StatusAttributeListError, ClassWarning},
		{StatusOutOfResources, ClassFailure},
		{0xA7FF, ClassFailure},
		{StatusCannotUnderstand, ClassFailure},
		{StatusSOPClassNotSupported, ClassFailure},
		{StatusProcessingFailure, ClassFailure},
	}
	for _, tt := range tests {
		if got := tt.status.Class(); got != tt.class {
			t.Errorf("%v.Class() = %v, want %v", tt.status, got, tt.class)
		}
		err := fmt.Errorf("store: %w", &StatusError{Command: CStoreRSPField, Status: tt.status})
		if !errors.Is(err, tt.status) || !errors.Is(err, tt.class) {
			t.Errorf("errors.Is(%v, %v / %v) = false", err, tt.status, tt.class)
		}
		var se *StatusError
		if !errors.As(err, &se) || se.Status != tt.status {
			t.Errorf("errors.As: %v", se)
		}
	}
	if errors.Is(&StatusError{Status: StatusOutOfResources}, StatusCannotUnderstand) {
		t.Error("different codes matched")
	}
}
