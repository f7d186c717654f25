package dimse

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// DialOptions configure an association requestor. Zero fields take the
// documented defaults.
type DialOptions struct {
	CallingAETitle string // default "OTONODE"
	CalledAETitle  string // default "ANY-SCP"
	// Proposals are the presentation contexts to propose, in order; the
	// default proposes Verification only. See StorageProposals.
	Proposals []Proposal
	// RoleSelections are proposed SCP/SCU roles (PS3.7 D.3.3.4).
	RoleSelections []RoleSelection
	// UserIdentity is sent when set (PS3.7 D.3.3.7).
	UserIdentity *UserIdentityRQ
	// MaxPDULength is our Maximum Length Received; default
	// DefaultMaxPDULength.
	MaxPDULength uint32
	// TLSConfig, when set, makes the connection TLS (PS3.15 B.1).
	TLSConfig *tls.Config
	// ARTIMTimeout bounds waiting for the A-ASSOCIATE-AC and for the
	// transport to close after release; default 30 s.
	ARTIMTimeout time.Duration
	// DIMSETimeout bounds each wait for the peer during an operation;
	// 0 waits as long as the call's context allows.
	DIMSETimeout time.Duration
}

// Association is an established association requested by Dial. Its methods
// must not be called concurrently; cancel a call through its context.
type Association struct {
	association
	msgID uint16
}

// Dial opens a transport connection to addr, requests an association and
// returns it once accepted. A rejection is a *RejectError.
func Dial(ctx context.Context, addr string, opts DialOptions) (*Association, error) {
	if opts.CallingAETitle == "" {
		opts.CallingAETitle = "OTONODE"
	}
	if opts.CalledAETitle == "" {
		opts.CalledAETitle = "ANY-SCP"
	}
	if opts.Proposals == nil {
		opts.Proposals = []Proposal{{AbstractSyntax: VerificationSOPClass, TransferSyntaxes: uncompressedTransferSyntaxes}}
	}
	if opts.MaxPDULength == 0 {
		opts.MaxPDULength = DefaultMaxPDULength
	}
	if opts.ARTIMTimeout == 0 {
		opts.ARTIMTimeout = 30 * time.Second
	}
	pcs, err := buildContexts(opts.Proposals)
	if err != nil {
		return nil, err
	}
	rq := &AAssociateRQ{
		CalledAETitle: opts.CalledAETitle, CallingAETitle: opts.CallingAETitle,
		PresentationContexts: pcs,
		UserInformation: UserInformation{
			MaxLength:                 opts.MaxPDULength,
			ImplementationClassUID:    ImplementationClassUID,
			ImplementationVersionName: ImplementationVersionName,
			RoleSelections:            opts.RoleSelections,
			UserIdentityRQ:            opts.UserIdentity,
		},
	}
	// Encode once up front so that bad AE titles fail before connecting.
	if _, err := rq.Encode(nil); err != nil {
		return nil, err
	}
	m := &machine{state: sta1, requestor: true, maxRecv: opts.MaxPDULength, artim: opts.ARTIMTimeout}
	if _, err := m.signal(evt1, nil); err != nil { // AE-1: transport connect
		return nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	if opts.TLSConfig != nil {
		tconn := tls.Client(conn, opts.TLSConfig)
		if err := tconn.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("dimse: TLS handshake: %w", err)
		}
		conn = tconn
	}
	m.conn = conn
	a := &Association{association: association{m: m, rq: rq}}
	stop := a.watch(ctx)
	defer stop()
	if _, err := m.signal(evt2, rq); err != nil { // AE-2: send A-ASSOCIATE-RQ
		conn.Close()
		return nil, a.ctxErr(ctx, err)
	}
	m.readTimeout = opts.ARTIMTimeout
	p, err := m.receive()
	if err != nil {
		conn.Close()
		return nil, a.ctxErr(ctx, err)
	}
	ac, ok := p.(*AAssociateAC)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("%w: %v while awaiting A-ASSOCIATE-AC", ErrUnexpectedPDU, p.Type())
	}
	negotiated, err := negotiateRequestor(rq, ac)
	if err != nil {
		return nil, a.protocolError(AbortInvalidPDUParameterValue, "%v", err)
	}
	a.ac = ac
	a.peerMax = ac.UserInformation.MaxLength
	a.contexts = make(map[uint8]PresentationContext, len(negotiated))
	for _, pc := range negotiated {
		a.contexts[pc.ID] = pc
	}
	m.readTimeout = opts.DIMSETimeout
	return a, nil
}

// PresentationContexts returns the negotiated contexts, accepted or not.
func (a *Association) PresentationContexts() []PresentationContext {
	out := make([]PresentationContext, 0, len(a.contexts))
	for _, pc := range a.rq.PresentationContexts {
		if c, ok := a.contexts[pc.ID]; ok {
			out = append(out, c)
		}
	}
	return out
}

// MaxPDULength returns the peer's Maximum Length Received (0: no limit).
func (a *Association) MaxPDULength() uint32 { return a.peerMax }

// context returns the first accepted context for the abstract syntax whose
// transfer syntax is ts, or any transfer syntax when ts is empty.
func (a *Association) context(abstract, ts string) (PresentationContext, error) {
	var offered []string
	for _, p := range a.rq.PresentationContexts {
		pc, ok := a.contexts[p.ID]
		if !ok || !pc.Accepted() || pc.AbstractSyntax != abstract {
			continue
		}
		if ts == "" || pc.TransferSyntax == ts {
			return pc, nil
		}
		offered = append(offered, pc.TransferSyntax)
	}
	if ts == "" {
		return PresentationContext{}, fmt.Errorf("%w for %s", ErrNoContext, abstract)
	}
	return PresentationContext{}, fmt.Errorf("%w for %s in %s (accepted: %v); we do not transcode", ErrNoContext, abstract, ts, offered)
}

func (a *Association) nextMessageID() uint16 {
	a.msgID++
	if a.msgID == 0 {
		a.msgID = 1
	}
	return a.msgID
}

// readResponse waits for the response to message id.
func (a *Association) readResponse(want CommandField, id uint16) (*Command, error) {
	c, pc, err := a.readCommand()
	if errors.Is(err, errPeerRelease) {
		return nil, a.protocolError(AbortUnexpectedPDU, "A-RELEASE-RQ while awaiting %v", want)
	}
	if err != nil {
		return nil, err
	}
	if c.CommandField != want || c.MessageIDBeingRespondedTo != id {
		return nil, a.protocolError(AbortUnexpectedPDUParameter, "got %v for message %d, want %v for %d",
			c.CommandField, c.MessageIDBeingRespondedTo, want, id)
	}
	if c.HasDataSet {
		r := &dataReader{a: &a.association, id: pc.ID}
		if err := r.drain(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Echo performs C-ECHO (PS3.7 9.1.5) on the Verification context.
func (a *Association) Echo(ctx context.Context) error {
	pc, err := a.context(VerificationSOPClass, "")
	if err != nil {
		return err
	}
	stop := a.watch(ctx)
	defer stop()
	id := a.nextMessageID()
	rq := &CEchoRQ{MessageID: id, AffectedSOPClassUID: VerificationSOPClass}
	if err := a.sendMessage(pc.ID, rq.Command(), nil); err != nil {
		return a.ctxErr(ctx, err)
	}
	c, err := a.readResponse(CEchoRSPField, id)
	if err != nil {
		return a.ctxErr(ctx, err)
	}
	if c.Status != StatusSuccess {
		return &StatusError{Command: CEchoRSPField, Status: c.Status, ErrorComment: c.ErrorComment}
	}
	return nil
}

// Instance is one SOP instance to store: its identity, its encoding and
// the data set bytes (without file meta information) in that encoding.
type Instance struct {
	SOPClassUID       string
	SOPInstanceUID    string
	TransferSyntaxUID string
	DataSet           io.Reader
	Priority          Priority
	// MoveOriginatorAETitle and MoveOriginatorMessageID mark a C-STORE
	// sub-operation of a C-MOVE (PS3.7 9.3.1.1).
	MoveOriginatorAETitle   string
	MoveOriginatorMessageID uint16
}

// Store performs C-STORE (PS3.7 9.1.1), streaming inst.DataSet verbatim on
// an accepted context whose transfer syntax is the instance's own. Only
// when the peer took the SOP class in implicit VR little endian alone is an
// explicit VR little endian data set transcoded on the way; compressed data
// is never touched. Without a usable context Store returns ErrNoContext and
// sends nothing. A failure or cancel status is a *StatusError; warnings
// return the response with a nil error.
func (a *Association) Store(ctx context.Context, inst Instance) (*CStoreRSP, error) {
	pc, err := a.context(inst.SOPClassUID, inst.TransferSyntaxUID)
	if err != nil && inst.TransferSyntaxUID == ExplicitVRLittleEndian {
		if ipc, ierr := a.context(inst.SOPClassUID, ImplicitVRLittleEndian); ierr == nil {
			pc, err = ipc, nil
			pr, pw := io.Pipe()
			src, done := inst.DataSet, make(chan struct{})
			go func() {
				defer close(done)
				pw.CloseWithError(ExplicitToImplicitLE(pw, src))
			}()
			defer func() {
				pr.Close() // stops the transcoder if the send ended early
				<-done
			}()
			inst.DataSet = pr
		}
	}
	if err != nil {
		return nil, err
	}
	stop := a.watch(ctx)
	defer stop()
	id := a.nextMessageID()
	rq := &CStoreRQ{MessageID: id, AffectedSOPClassUID: inst.SOPClassUID,
		AffectedSOPInstanceUID: inst.SOPInstanceUID, Priority: inst.Priority,
		MoveOriginatorApplicationEntityTitle: inst.MoveOriginatorAETitle, MoveOriginatorMessageID: inst.MoveOriginatorMessageID}
	if err := a.sendMessage(pc.ID, rq.Command(), inst.DataSet); err != nil {
		return nil, a.ctxErr(ctx, err)
	}
	c, err := a.readResponse(CStoreRSPField, id)
	if err != nil {
		return nil, a.ctxErr(ctx, err)
	}
	return storeResult(c, id)
}

// StoreFile stores a Part-10 file, sending its data set verbatim in the
// file's own transfer syntax.
func (a *Association) StoreFile(ctx context.Context, path string) (*CStoreRSP, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	fm, err := ReadFileMeta(br)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return a.Store(ctx, Instance{SOPClassUID: fm.MediaStorageSOPClassUID, SOPInstanceUID: fm.MediaStorageSOPInstanceUID,
		TransferSyntaxUID: fm.TransferSyntaxUID, DataSet: br})
}

// Release asks the acceptor to release the association (A-RELEASE) and
// waits for its answer, handling a release collision (PS3.8 9.2.2).
func (a *Association) Release(ctx context.Context) error {
	if a.err != nil {
		return a.err
	}
	stop := a.watch(ctx)
	defer stop()
	m := a.m
	if _, err := m.signal(evt11, &AReleaseRQ{}); err != nil { // AR-1
		return a.ctxErr(ctx, a.fail(err))
	}
	m.readTimeout = m.artim
	for m.state != sta1 && m.state != sta13 {
		p, err := m.receive()
		if err != nil {
			return a.ctxErr(ctx, a.fail(err))
		}
		switch p.(type) {
		case *AReleaseRQ: // AR-8: collision; we are the requestor, Sta9
			if _, err := m.signal(evt14, &AReleaseRP{}); err != nil { // AR-9
				return a.fail(err)
			}
		case *AReleaseRP:
			if m.state == sta12 { // AR-10 on the acceptor side of a collision
				if _, err := m.signal(evt14, &AReleaseRP{}); err != nil { // AR-4
					return a.fail(err)
				}
			}
		}
	}
	m.awaitClose()
	a.fail(ErrReleased)
	return nil
}

// Abort sends an A-ABORT and closes the connection.
func (a *Association) Abort() error {
	if a.err != nil && a.m.state == sta1 {
		return nil
	}
	a.abort(AbortServiceUser, 0, errors.New("aborted by the local user"))
	return nil
}
