package dimse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Query/Retrieve SOP classes of the Patient Root and Study Root
// information models (PS3.4 C.6.1 and C.6.2).
const (
	PatientRootFind = "1.2.840.10008.5.1.4.1.2.1.1"
	PatientRootMove = "1.2.840.10008.5.1.4.1.2.1.2"
	PatientRootGet  = "1.2.840.10008.5.1.4.1.2.1.3"
	StudyRootFind   = "1.2.840.10008.5.1.4.1.2.2.1"
	StudyRootMove   = "1.2.840.10008.5.1.4.1.2.2.2"
	StudyRootGet    = "1.2.840.10008.5.1.4.1.2.2.3"
)

// RetrieveResult is the final response of a C-MOVE or C-GET.
type RetrieveResult struct {
	Status Status
	SubOperations
	// FailedSOPInstanceUIDs is the Failed SOP Instance UID List
	// (0008,0058) of the final response, if any.
	FailedSOPInstanceUIDs []string
	ErrorComment          string
}

// cancelGrace bounds the wait for the final response once C-CANCEL-RQ is
// sent; a peer that does not answer by then is aborted.
const cancelGrace = 30 * time.Second

// RetrieveRoles proposes the SCP role for each storage SOP class, as a
// C-GET SCU must (PS3.4 C.4.3.1): pass it as DialOptions.RoleSelections
// together with StorageProposals for the same classes.
func RetrieveRoles(sopClasses ...string) []RoleSelection {
	out := make([]RoleSelection, len(sopClasses))
	for i, c := range sopClasses {
		out[i] = RoleSelection{SOPClassUID: c, SCURole: false, SCPRole: true}
	}
	return out
}

// Find performs C-FIND (PS3.4 C.4.1) with the identifier and calls fn for
// each match, in order. When fn returns an error or ctx ends, Find sends
// C-CANCEL-RQ, reads the responses up to the final one and returns that
// error (or ctx's). A failure status is a *StatusError.
func (a *Association) Find(ctx context.Context, sopClass string, id *Identifier, fn func(*Identifier) error) error {
	pc, err := a.context(sopClass, "")
	if err != nil {
		return err
	}
	b, err := id.Encode(pc.TransferSyntax)
	if err != nil {
		return err
	}
	msgID := a.nextMessageID()
	rq := &CFindRQ{MessageID: msgID, AffectedSOPClassUID: sopClass}
	final, _, err := a.operation(ctx, pc, rq.Command(), b, func(c *Command, body *dataReader) error {
		if c.CommandField != CFindRSPField || !c.HasDataSet {
			return nil
		}
		raw, err := readIdentifier(body)
		if err != nil {
			return err
		}
		m, err := ParseIdentifier(raw, pc.TransferSyntax)
		if err != nil {
			return err
		}
		return fn(m)
	})
	if err != nil {
		return err
	}
	switch final.Status.Class() {
	case ClassSuccess, ClassWarning:
		return nil
	}
	return &StatusError{Command: CFindRSPField, Status: final.Status, ErrorComment: final.ErrorComment}
}

// Move performs C-MOVE (PS3.4 C.4.2): the peer sends the matching
// instances to the AE title destination. progress, if not nil, sees each
// pending response's counts. Warnings (some sub-operations failed) return
// the result and a nil error; a failure or a cancel the peer decided is a
// *StatusError along with the result.
func (a *Association) Move(ctx context.Context, sopClass, destination string, id *Identifier, progress func(SubOperations)) (*RetrieveResult, error) {
	pc, err := a.context(sopClass, "")
	if err != nil {
		return nil, err
	}
	b, err := id.Encode(pc.TransferSyntax)
	if err != nil {
		return nil, err
	}
	rq := &CMoveRQ{MessageID: a.nextMessageID(), AffectedSOPClassUID: sopClass, MoveDestination: destination}
	final, raw, err := a.operation(ctx, pc, rq.Command(), b, func(c *Command, body *dataReader) error {
		if c.CommandField == CMoveRSPField && progress != nil {
			progress(subOperations(c))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return a.retrieveResult(final, raw, pc.TransferSyntax, CMoveRSPField)
}

// Get performs C-GET (PS3.4 C.4.3): the peer sends the matching instances
// as C-STORE sub-operations on this association, each served by h as a
// storage SCP would. The association must have been dialled with
// RetrieveRoles and storage proposals for the SOP classes expected.
func (a *Association) Get(ctx context.Context, sopClass string, id *Identifier, h Handler, progress func(SubOperations)) (*RetrieveResult, error) {
	pc, err := a.context(sopClass, "")
	if err != nil {
		return nil, err
	}
	b, err := id.Encode(pc.TransferSyntax)
	if err != nil {
		return nil, err
	}
	info := &AssociationInfo{CallingAETitle: a.rq.CallingAETitle, CalledAETitle: a.rq.CalledAETitle, RemoteAddr: a.remoteAddr()}
	rq := &CGetRQ{MessageID: a.nextMessageID(), AffectedSOPClassUID: sopClass}
	final, raw, err := a.operation(ctx, pc, rq.Command(), b, func(c *Command, body *dataReader) error {
		switch c.CommandField {
		case CGetRSPField:
			if progress != nil {
				progress(subOperations(c))
			}
			return nil
		case CStoreRQField:
			return a.serveSubStore(ctx, h, info, c, body)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return a.retrieveResult(final, raw, pc.TransferSyntax, CGetRSPField)
}

// serveSubStore answers one C-STORE sub-operation of a C-GET.
func (a *Association) serveSubStore(ctx context.Context, h Handler, info *AssociationInfo, c *Command, body *dataReader) error {
	msg, err := ParseMessage(c)
	if err != nil {
		return a.protocolError(AbortUnrecognizedPDUParameter, "%v", err)
	}
	pc := a.contexts[body.id]
	w := &response{}
	switch {
	case c.AffectedSOPClassUID != pc.AbstractSyntax:
		w.WriteStatus(StatusSOPClassNotSupported)
	case !pc.RequestorSCP:
		w.WriteStatus(StatusNotAuthorized)
		w.SetErrorComment("SCP role not negotiated for this context")
	default:
		r := &Request{Command: c, Message: msg, PresentationContext: pc, Association: info, Body: body, ctx: ctx}
		func() {
			defer func() {
				if p := recover(); p != nil {
					w.status, w.written, w.comment = StatusProcessingFailure, true, "internal error"
				}
			}()
			h.ServeDIMSE(w, r)
		}()
	}
	if err := body.drain(); err != nil {
		return err
	}
	if !w.written {
		w.status = StatusProcessingFailure
	}
	rsp := &Command{CommandField: CStoreRSPField, MessageIDBeingRespondedTo: c.MessageID,
		AffectedSOPClassUID: c.AffectedSOPClassUID, AffectedSOPInstanceUID: c.AffectedSOPInstanceUID,
		Status: w.status, ErrorComment: w.comment}
	return a.sendMessage(body.id, rsp, nil)
}

func (a *Association) retrieveResult(c *Command, raw []byte, ts string, f CommandField) (*RetrieveResult, error) {
	res := &RetrieveResult{Status: c.Status, SubOperations: subOperations(c), ErrorComment: c.ErrorComment}
	if len(raw) > 0 {
		if id, err := ParseIdentifier(raw, ts); err == nil {
			if s := id.String(0x00080058); s != "" {
				res.FailedSOPInstanceUIDs = strings.Split(s, `\`)
			}
		}
	}
	switch c.Status.Class() {
	case ClassSuccess, ClassWarning:
		return res, nil
	}
	return res, &StatusError{Command: f, Status: c.Status, ErrorComment: c.ErrorComment}
}

// operation sends a C-FIND, C-GET or C-MOVE request and reads what comes
// back until the final response, which it returns. each sees every pending
// response and every C-STORE-RQ of a C-GET, with its data set (if any)
// as body; what it leaves of the data set is drained. The final response's
// data set, if any, is kept in the returned command's raw field.
func (a *Association) operation(ctx context.Context, pc PresentationContext, rq *Command, identifier []byte,
	each func(*Command, *dataReader) error) (*Command, []byte, error) {
	if err := a.sendMessage(pc.ID, rq, bytes.NewReader(identifier)); err != nil {
		return nil, nil, err
	}
	want := rq.CommandField | 0x8000
	var cause error // why we cancelled
	cancelled := false
	sendCancel := func(err error) error {
		if cancelled {
			return nil
		}
		cancelled, cause = true, err
		return a.sendMessage(pc.ID, (&CCancelRQ{MessageIDBeingRespondedTo: rq.MessageID}).Command(), nil)
	}
	for {
		if err := a.waitReadable(ctx, cancelled); err != nil {
			if ctx.Err() != nil && !cancelled {
				if err := sendCancel(ctx.Err()); err != nil {
					return nil, nil, err
				}
				continue
			}
			if cancelled {
				a.abort(AbortServiceUser, 0, err)
				return nil, nil, fmt.Errorf("no final response after C-CANCEL-RQ: %w", cause)
			}
			return nil, nil, err
		}
		c, cpc, err := a.readCommand()
		if errors.Is(err, errPeerRelease) {
			return nil, nil, a.protocolError(AbortUnexpectedPDU, "A-RELEASE-RQ during %v", rq.CommandField)
		}
		if err != nil {
			return nil, nil, err
		}
		var body *dataReader
		if c.HasDataSet {
			body = &dataReader{a: &a.association, id: cpc.ID}
		}
		switch {
		case c.CommandField == want && c.MessageIDBeingRespondedTo == rq.MessageID:
			if c.Status.Class() != ClassPending {
				if body != nil {
					raw, err := readIdentifier(body)
					if err != nil {
						return nil, nil, err
					}
					return c, raw, cancelErr(cancelled, cause)
				}
				return c, nil, cancelErr(cancelled, cause)
			}
		case c.CommandField == CStoreRQField && rq.CommandField == CGetRQField:
		default:
			return nil, nil, a.protocolError(AbortUnexpectedPDUParameter, "%v for message %d during %v %d",
				c.CommandField, c.MessageIDBeingRespondedTo, rq.CommandField, rq.MessageID)
		}
		if !cancelled || c.CommandField == CStoreRQField {
			if err := each(c, body); err != nil {
				if a.err != nil {
					return nil, nil, err
				}
				if err := sendCancel(err); err != nil {
					return nil, nil, err
				}
			}
		}
		if body != nil {
			if err := body.drain(); err != nil {
				return nil, nil, err
			}
		}
		if ctx.Err() != nil && !cancelled {
			if err := sendCancel(ctx.Err()); err != nil {
				return nil, nil, err
			}
		}
	}
}

// waitReadable waits for the next PDU to begin without consuming it, so
// that an interrupt by ctx never splits a PDU. It returns ctx's error when
// ctx ends first (unless ignoreCtx, when the wait is bounded by
// cancelGrace instead).
func (a *Association) waitReadable(ctx context.Context, ignoreCtx bool) error {
	m := a.m
	if len(a.pending) > 0 || (m.br != nil && m.br.Buffered() > 0) {
		return nil
	}
	if a.err != nil {
		return a.err
	}
	if !ignoreCtx && ctx.Err() != nil {
		return ctx.Err()
	}
	switch {
	case ignoreCtx:
		m.conn.SetReadDeadline(time.Now().Add(cancelGrace))
	case m.readTimeout > 0:
		m.conn.SetReadDeadline(time.Now().Add(m.readTimeout))
	default:
		m.conn.SetReadDeadline(time.Time{})
	}
	fired := make(chan struct{})
	stop := func() bool { return true }
	if !ignoreCtx {
		stop = context.AfterFunc(ctx, func() {
			m.conn.SetReadDeadline(time.Unix(1, 0))
			close(fired)
		})
	}
	_, err := m.br.Peek(1)
	if !stop() {
		<-fired
	}
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		if !ignoreCtx && ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	return nil // data, or an error the next receive reports
}

func cancelErr(cancelled bool, cause error) error {
	if cancelled {
		return cause
	}
	return nil
}
