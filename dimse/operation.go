package dimse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// OperationWriter is the ResponseWriter a handler gets for C-FIND, C-GET and
// C-MOVE requests (PS3.4 C.4): besides the final status it sends pending
// responses as they are produced, notices C-CANCEL-RQ and, for C-GET,
// performs C-STORE sub-operations on the same association.
//
// A C-CANCEL-RQ is looked for whenever the handler calls one of these
// methods; once seen, Cancelled reports true. The handler then stops and
// writes StatusCancel (with the counts so far, for C-GET and C-MOVE). The
// request's context is deliberately not cancelled by it: a sub-operation
// in flight (a C-STORE to a C-MOVE destination) should finish, not be
// aborted mid-instance.
type OperationWriter interface {
	ResponseWriter
	// WritePending sends a C-FIND-RSP with status pending and one match,
	// encoded in the request's transfer syntax (Identifier.Encode).
	WritePending(identifier []byte) error
	// WriteProgress sends a pending C-GET-RSP or C-MOVE-RSP with counts.
	WriteProgress(SubOperations) error
	// SetSubOperations sets the counts of the final response.
	SetSubOperations(SubOperations)
	// SetIdentifier sets the final response's identifier (the Failed SOP
	// Instance UID List of C-GET and C-MOVE).
	SetIdentifier([]byte)
	// Cancelled reports whether the requestor sent C-CANCEL-RQ.
	Cancelled() bool
	// Store performs a C-STORE sub-operation of a C-GET on this
	// association, on a context where the requestor took the SCP role.
	// Without one for the SOP class and transfer syntax it returns
	// ErrNoContext and sends nothing (AcceptedTransferSyntaxes says which
	// would do).
	Store(ctx context.Context, inst Instance) (*CStoreRSP, error)
	// AcceptedTransferSyntaxes lists the transfer syntaxes in which the
	// requestor takes the SCP role for sopClass (C-GET).
	AcceptedTransferSyntaxes(sopClass string) []string
}

// On a plain TCP connection an operation looks for C-CANCEL-RQ with a
// non-blocking peek at every step. Elsewhere (TLS) the look waits up to
// pollWait, so it happens at most every pollInterval.
const (
	pollInterval = 5 * time.Millisecond
	pollWait     = 200 * time.Microsecond
)

// operation is the OperationWriter of the server.
type operation struct {
	response
	a         *association
	rq        *Command
	pc        PresentationContext
	sub       SubOperations
	ident     []byte
	cancelled bool
	lastPoll  time.Time
	msgID     uint16
}

func (o *operation) SetSubOperations(s SubOperations) { o.sub = s }
func (o *operation) SetIdentifier(b []byte)           { o.ident = b }

func (o *operation) Cancelled() bool {
	o.poll(false)
	return o.cancelled
}

func (o *operation) WritePending(identifier []byte) error {
	if o.rq.CommandField != CFindRQField {
		return fmt.Errorf("dimse: WritePending on %v", o.rq.CommandField)
	}
	if err := o.poll(false); err != nil {
		return err
	}
	rsp := &Command{CommandField: CFindRSPField, MessageIDBeingRespondedTo: o.rq.MessageID,
		AffectedSOPClassUID: o.rq.AffectedSOPClassUID, Status: StatusPending}
	return o.a.sendMessage(o.pc.ID, rsp, bytes.NewReader(identifier))
}

func (o *operation) WriteProgress(s SubOperations) error {
	if o.rq.CommandField != CGetRQField && o.rq.CommandField != CMoveRQField {
		return fmt.Errorf("dimse: WriteProgress on %v", o.rq.CommandField)
	}
	if err := o.poll(false); err != nil {
		return err
	}
	rsp := &Command{CommandField: o.rq.CommandField | 0x8000, MessageIDBeingRespondedTo: o.rq.MessageID,
		AffectedSOPClassUID: o.rq.AffectedSOPClassUID, Status: StatusPending}
	s.put(rsp)
	return o.a.sendMessage(o.pc.ID, rsp, nil)
}

// poll reads whatever the requestor sent meanwhile: only C-CANCEL-RQ is
// allowed during an operation (asynchronous operations are not
// negotiated). force skips the rate limit.
func (o *operation) poll(force bool) error {
	if o.a.err != nil {
		return o.a.err
	}
	for {
		if len(o.a.pending) == 0 && (o.a.m.br == nil || o.a.m.br.Buffered() == 0) {
			if _, ok := o.a.m.conn.(*net.TCPConn); !ok && !force && time.Since(o.lastPoll) < pollInterval {
				// Only a probe with a deadline is possible: rate limit it.
				return nil
			}
			o.lastPoll = time.Now()
			if !o.a.m.readable(pollWait) {
				return nil
			}
		}
		c, _, err := o.a.readCommand()
		if errors.Is(err, errPeerRelease) {
			return o.a.protocolError(AbortUnexpectedPDU, "A-RELEASE-RQ during %v", o.rq.CommandField)
		}
		if err != nil {
			return err
		}
		if err := o.other(c); err != nil {
			return err
		}
	}
}

// other handles a command received during the operation that is not the
// response a sub-operation waits for.
func (o *operation) other(c *Command) error {
	if c.CommandField == CCancelRQField {
		if c.MessageIDBeingRespondedTo == o.rq.MessageID {
			o.cancelled = true
		}
		return nil // a cancel of something else is ignored (PS3.7 9.3.2.3)
	}
	return o.a.protocolError(AbortUnexpectedPDUParameter, "%v during %v", c.CommandField, o.rq.CommandField)
}

func (o *operation) AcceptedTransferSyntaxes(sopClass string) []string {
	var out []string
	for _, p := range o.a.rq.PresentationContexts {
		pc := o.a.contexts[p.ID]
		if pc.Accepted() && pc.AbstractSyntax == sopClass && pc.RequestorSCP {
			out = append(out, pc.TransferSyntax)
		}
	}
	return out
}

func (o *operation) Store(ctx context.Context, inst Instance) (*CStoreRSP, error) {
	if o.rq.CommandField != CGetRQField {
		return nil, fmt.Errorf("dimse: sub-operation Store on %v", o.rq.CommandField)
	}
	if err := o.poll(false); err != nil {
		return nil, err
	}
	ctxs := o.AcceptedTransferSyntaxes(inst.SOPClassUID)
	pick := func(ts string) (uint8, bool) {
		for _, p := range o.a.rq.PresentationContexts {
			pc := o.a.contexts[p.ID]
			if pc.Accepted() && pc.AbstractSyntax == inst.SOPClassUID && pc.RequestorSCP && pc.TransferSyntax == ts {
				return pc.ID, true
			}
		}
		return 0, false
	}
	id, ok := pick(inst.TransferSyntaxUID)
	if !ok && inst.TransferSyntaxUID == ExplicitVRLittleEndian {
		if id, ok = pick(ImplicitVRLittleEndian); ok {
			var done func()
			inst.DataSet, done = transcodeToImplicit(inst.DataSet)
			defer done()
		}
	}
	if !ok {
		return nil, fmt.Errorf("%w for %s in %s as SCP (accepted: %v)", ErrNoContext, inst.SOPClassUID, inst.TransferSyntaxUID, ctxs)
	}
	// ctx bounds only the wait for the C-STORE-RSP: a cancelled ctx
	// aborts, as it would on any association.
	stop := o.a.watch(ctx)
	defer stop()
	o.msgID++
	if o.msgID == 0 {
		o.msgID = 1
	}
	rq := &CStoreRQ{MessageID: o.msgID, AffectedSOPClassUID: inst.SOPClassUID,
		AffectedSOPInstanceUID: inst.SOPInstanceUID, Priority: inst.Priority}
	if err := o.a.sendMessage(id, rq.Command(), inst.DataSet); err != nil {
		return nil, o.a.ctxErr(ctx, err)
	}
	for {
		c, pc, err := o.a.readCommand()
		if errors.Is(err, errPeerRelease) {
			return nil, o.a.protocolError(AbortUnexpectedPDU, "A-RELEASE-RQ while awaiting C-STORE-RSP")
		}
		if err != nil {
			return nil, o.a.ctxErr(ctx, err)
		}
		if c.CommandField == CStoreRSPField && c.MessageIDBeingRespondedTo == o.msgID {
			if c.HasDataSet {
				if err := (&dataReader{a: o.a, id: pc.ID}).drain(); err != nil {
					return nil, err
				}
			}
			return storeResult(c, o.msgID)
		}
		if err := o.other(c); err != nil {
			return nil, err
		}
	}
}

// storeResult turns a C-STORE-RSP into Store's results.
func storeResult(c *Command, id uint16) (*CStoreRSP, error) {
	rsp := &CStoreRSP{MessageIDBeingRespondedTo: id, AffectedSOPClassUID: c.AffectedSOPClassUID,
		AffectedSOPInstanceUID: c.AffectedSOPInstanceUID, Status: c.Status,
		OffendingElement: c.OffendingElement, ErrorComment: c.ErrorComment}
	switch c.Status.Class() {
	case ClassSuccess, ClassWarning:
		return rsp, nil
	}
	return rsp, &StatusError{Command: CStoreRSPField, Status: c.Status, ErrorComment: c.ErrorComment}
}

// transcodeToImplicit streams src through ExplicitToImplicitLE; done must
// be called when the send is over.
func transcodeToImplicit(src io.Reader) (io.Reader, func()) {
	pr, pw := io.Pipe()
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		pw.CloseWithError(ExplicitToImplicitLE(pw, src))
	}()
	return pr, func() {
		pr.Close() // stops the transcoder if the send ended early
		<-finished
	}
}

// readable reports whether a PDU has begun to arrive, waiting at most
// wait. It peeks, so a PDU that arrives in pieces is never split.
func (m *machine) readable(wait time.Duration) bool {
	if m.br == nil {
		return false
	}
	if m.br.Buffered() > 0 {
		return true
	}
	if r, ok := peekSocket(m.conn); ok {
		return r
	}
	m.conn.SetReadDeadline(time.Now().Add(wait))
	_, err := m.br.Peek(1)
	m.conn.SetReadDeadline(time.Time{})
	var ne net.Error
	if err != nil && (errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())) {
		return false
	}
	return true // data, or an error the next receive reports
}

// readIdentifier reads a request's whole identifier, bounded.
func readIdentifier(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxIdentifierLength+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxIdentifierLength {
		return nil, fmt.Errorf("%w: identifier over %d bytes", ErrMessageTooLarge, maxIdentifierLength)
	}
	return b, nil
}
