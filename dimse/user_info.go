package dimse

import (
	"encoding/binary"
)

// UserInformation is the user information item (PS3.8 9.3.2.3) with the
// sub-items of PS3.8 Annex D and PS3.7 Annex D.3.3.
type UserInformation struct {
	// MaxLength is the Maximum Length Received of P-DATA-TF PDUs (PS3.8
	// D.1); 0 means no limit.
	MaxLength                  uint32
	ImplementationClassUID     string
	ImplementationVersionName  string
	AsyncOperationsWindow      *AsyncOperationsWindow
	RoleSelections             []RoleSelection
	ExtendedNegotiations       []ExtendedNegotiation
	CommonExtendedNegotiations []CommonExtendedNegotiation
	UserIdentityRQ             *UserIdentityRQ
	UserIdentityAC             *UserIdentityAC
}

// AsyncOperationsWindow is the asynchronous operations window sub-item
// (PS3.7 D.3.3.3); 0 means unlimited.
type AsyncOperationsWindow struct {
	MaxOperationsInvoked   uint16
	MaxOperationsPerformed uint16
}

// RoleSelection is the SCP/SCU role selection sub-item (PS3.7 D.3.3.4).
type RoleSelection struct {
	SOPClassUID string
	SCURole     bool
	SCPRole     bool
}

// ExtendedNegotiation is the SOP class extended negotiation sub-item (PS3.7
// D.3.3.5); the application information is service specific.
type ExtendedNegotiation struct {
	SOPClassUID                 string
	ServiceClassApplicationInfo []byte
}

// CommonExtendedNegotiation is the SOP class common extended negotiation
// sub-item (PS3.7 D.3.3.6).
type CommonExtendedNegotiation struct {
	SOPClassUID                string
	ServiceClassUID            string
	RelatedGeneralSOPClassUIDs []string
}

// UserIdentityType is the User-Identity-Type of PS3.7 Table D.3-14.
type UserIdentityType byte

const (
	UserIdentityUsername         UserIdentityType = 1
	UserIdentityUsernamePasscode UserIdentityType = 2
	UserIdentityKerberos         UserIdentityType = 3
	UserIdentitySAML             UserIdentityType = 4
	UserIdentityJWT              UserIdentityType = 5
)

// UserIdentityRQ is the user identity negotiation sub-item of the request
// (PS3.7 D.3.3.7.1).
type UserIdentityRQ struct {
	Type                      UserIdentityType
	PositiveResponseRequested bool
	PrimaryField              []byte
	SecondaryField            []byte
}

// UserIdentityAC is the user identity negotiation sub-item of the accept
// (PS3.7 D.3.3.7.2).
type UserIdentityAC struct {
	ServerResponse []byte
}

func (u *UserInformation) decode(t PDUType, b []byte) error {
	return splitItems(t, itemUserInformation, b, func(it item) error {
		v := it.value
		switch it.typ {
		case itemMaximumLength:
			if len(v) != 4 {
				return malformed(t, it.typ, "length %d, want 4", len(v))
			}
			u.MaxLength = binary.BigEndian.Uint32(v)
		case itemImplementationClassUID:
			u.ImplementationClassUID = trimUID(v)
		case itemImplementationVersion:
			u.ImplementationVersionName = trimUID(v)
		case itemAsyncOperationsWindow:
			if len(v) != 4 {
				return malformed(t, it.typ, "length %d, want 4", len(v))
			}
			u.AsyncOperationsWindow = &AsyncOperationsWindow{
				MaxOperationsInvoked:   binary.BigEndian.Uint16(v),
				MaxOperationsPerformed: binary.BigEndian.Uint16(v[2:]),
			}
		case itemRoleSelection:
			uid, rest, err := cutUID(t, it.typ, v)
			if err != nil {
				return err
			}
			if len(rest) != 2 {
				return malformed(t, it.typ, "%d role bytes, want 2", len(rest))
			}
			u.RoleSelections = append(u.RoleSelections, RoleSelection{SOPClassUID: uid, SCURole: rest[0] == 1, SCPRole: rest[1] == 1})
		case itemExtendedNegotiation:
			uid, rest, err := cutUID(t, it.typ, v)
			if err != nil {
				return err
			}
			u.ExtendedNegotiations = append(u.ExtendedNegotiations, ExtendedNegotiation{SOPClassUID: uid, ServiceClassApplicationInfo: append([]byte(nil), rest...)})
		case itemCommonExtNegotiation:
			sop, rest, err := cutUID(t, it.typ, v)
			if err != nil {
				return err
			}
			svc, rest, err := cutUID(t, it.typ, rest)
			if err != nil {
				return err
			}
			related, rest, err := cutField(t, it.typ, rest)
			if err != nil {
				return err
			}
			if len(rest) != 0 {
				return malformed(t, it.typ, "%d bytes after the related SOP classes", len(rest))
			}
			c := CommonExtendedNegotiation{SOPClassUID: sop, ServiceClassUID: svc}
			for len(related) > 0 {
				var uid string
				if uid, related, err = cutUID(t, it.typ, related); err != nil {
					return err
				}
				c.RelatedGeneralSOPClassUIDs = append(c.RelatedGeneralSOPClassUIDs, uid)
			}
			u.CommonExtendedNegotiations = append(u.CommonExtendedNegotiations, c)
		case itemUserIdentityRQ:
			if len(v) < 2 {
				return malformed(t, it.typ, "%d bytes, need 2", len(v))
			}
			id := &UserIdentityRQ{Type: UserIdentityType(v[0]), PositiveResponseRequested: v[1] == 1}
			primary, rest, err := cutField(t, it.typ, v[2:])
			if err != nil {
				return err
			}
			secondary, rest, err := cutField(t, it.typ, rest)
			if err != nil {
				return err
			}
			if len(rest) != 0 {
				return malformed(t, it.typ, "%d trailing bytes", len(rest))
			}
			id.PrimaryField = append([]byte(nil), primary...)
			id.SecondaryField = append([]byte(nil), secondary...)
			u.UserIdentityRQ = id
		case itemUserIdentityAC:
			resp, rest, err := cutField(t, it.typ, v)
			if err != nil {
				return err
			}
			if len(rest) != 0 {
				return malformed(t, it.typ, "%d trailing bytes", len(rest))
			}
			u.UserIdentityAC = &UserIdentityAC{ServerResponse: append([]byte(nil), resp...)}
		}
		return nil
	})
}

// cutField splits a 2-byte big-endian length and its value off b.
func cutField(t PDUType, typ byte, b []byte) (field, rest []byte, err error) {
	if len(b) < 2 {
		return nil, nil, malformed(t, typ, "length field truncated")
	}
	n := int(binary.BigEndian.Uint16(b))
	if n > len(b)-2 {
		return nil, nil, malformed(t, typ, "field length %d with %d bytes left", n, len(b)-2)
	}
	return b[2 : 2+n], b[2+n:], nil
}

func cutUID(t PDUType, typ byte, b []byte) (string, []byte, error) {
	f, rest, err := cutField(t, typ, b)
	return trimUID(f), rest, err
}

func appendField(dst, f []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(f)))
	return append(dst, f...)
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

func (u *UserInformation) append(dst []byte) ([]byte, error) {
	var v []byte
	var err error
	v = append(v, itemMaximumLength, 0, 0, 4)
	v = binary.BigEndian.AppendUint32(v, u.MaxLength)
	if u.ImplementationClassUID != "" {
		if v, err = appendStringItem(v, itemImplementationClassUID, u.ImplementationClassUID); err != nil {
			return dst, err
		}
	}
	if w := u.AsyncOperationsWindow; w != nil {
		v = append(v, itemAsyncOperationsWindow, 0, 0, 4)
		v = binary.BigEndian.AppendUint16(v, w.MaxOperationsInvoked)
		v = binary.BigEndian.AppendUint16(v, w.MaxOperationsPerformed)
	}
	for _, r := range u.RoleSelections {
		f := appendField(nil, []byte(r.SOPClassUID))
		f = append(f, boolByte(r.SCURole), boolByte(r.SCPRole))
		if v, err = appendItem(v, itemRoleSelection, f); err != nil {
			return dst, err
		}
	}
	if u.ImplementationVersionName != "" {
		if v, err = appendStringItem(v, itemImplementationVersion, u.ImplementationVersionName); err != nil {
			return dst, err
		}
	}
	for _, e := range u.ExtendedNegotiations {
		f := appendField(nil, []byte(e.SOPClassUID))
		f = append(f, e.ServiceClassApplicationInfo...)
		if v, err = appendItem(v, itemExtendedNegotiation, f); err != nil {
			return dst, err
		}
	}
	for _, c := range u.CommonExtendedNegotiations {
		f := appendField(nil, []byte(c.SOPClassUID))
		f = appendField(f, []byte(c.ServiceClassUID))
		var rel []byte
		for _, uid := range c.RelatedGeneralSOPClassUIDs {
			rel = appendField(rel, []byte(uid))
		}
		f = appendField(f, rel)
		if v, err = appendItem(v, itemCommonExtNegotiation, f); err != nil {
			return dst, err
		}
	}
	if id := u.UserIdentityRQ; id != nil {
		f := []byte{byte(id.Type), boolByte(id.PositiveResponseRequested)}
		f = appendField(f, id.PrimaryField)
		f = appendField(f, id.SecondaryField)
		if v, err = appendItem(v, itemUserIdentityRQ, f); err != nil {
			return dst, err
		}
	}
	if id := u.UserIdentityAC; id != nil {
		if v, err = appendItem(v, itemUserIdentityAC, appendField(nil, id.ServerResponse)); err != nil {
			return dst, err
		}
	}
	return appendItem(dst, itemUserInformation, v)
}
