package dimse

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Server is a DIMSE service provider (SCP). The zero value answers C-ECHO
// for any called AE title on Verification; set fields before Serve and do
// not change them afterwards.
type Server struct {
	// Addr is the TCP address ListenAndServe listens on; default ":104".
	Addr string
	// AETitle is the called AE title we answer to; "" answers to any.
	AETitle string
	// Peers, when not nil, admits only these calling AE titles (and
	// addresses); others are rejected with "calling AE title not
	// recognized".
	Peers []PeerRule
	// Syntaxes are the abstract syntaxes we accept, each with its transfer
	// syntaxes in order of preference. Default: Verification in explicit
	// and implicit VR little endian.
	Syntaxes []Syntax
	// Accept, when set, sees each request after the policy above accepted
	// it and may still reject it.
	Accept func(rq *AAssociateRQ, remote net.Addr) *RejectError
	// Handler serves requests; default: a ServeMux with no routes.
	Handler Handler

	// MaxPDULength is our Maximum Length Received; default
	// DefaultMaxPDULength.
	MaxPDULength uint32
	// MaxAssociations limits concurrent associations; more are rejected
	// (transient, local limit exceeded). 0 means no limit.
	MaxAssociations int
	// ARTIMTimeout bounds waiting for an A-ASSOCIATE-RQ after connect and
	// for the close after release or rejection (PS3.8 9.1.5); default 30 s.
	ARTIMTimeout time.Duration
	// IdleTimeout bounds waiting for the next request; 0 means no limit.
	IdleTimeout time.Duration
	// DIMSETimeout bounds each wait for the rest of a message once it has
	// begun; 0 means no limit.
	DIMSETimeout time.Duration
	// WriteTimeout bounds each PDU write; 0 means no limit.
	WriteTimeout time.Duration
	// TLSConfig, when set, makes Serve accept TLS only (PS3.15 B.1). Set
	// ClientAuth to tls.RequireAndVerifyClientCert to verify peers.
	TLSConfig *tls.Config
	// Logger receives one line per association and per failure; default
	// discards.
	Logger *slog.Logger

	mu         sync.Mutex
	listeners  map[net.Listener]struct{}
	conns      map[net.Conn]struct{}
	inShutdown atomic.Bool
	active     atomic.Int64
	wg         sync.WaitGroup
	baseCtx    context.Context
	cancelBase context.CancelFunc
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (s *Server) init() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listeners == nil {
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[net.Conn]struct{}{}
		s.baseCtx, s.cancelBase = context.WithCancel(context.Background())
	}
}

// ListenAndServe listens on s.Addr and serves until ctx ends (then it
// closes the server) or Shutdown/Close is called; it returns
// ErrServerClosed in both cases.
func (s *Server) ListenAndServe(ctx context.Context) error {
	addr := s.Addr
	if addr == "" {
		addr = ":104"
	}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	return s.Serve(l)
}

// Serve accepts connections on l, one goroutine per association, until the
// server is closed. It always returns a non-nil error; after Shutdown or
// Close, ErrServerClosed.
func (s *Server) Serve(l net.Listener) error {
	s.init()
	if s.TLSConfig != nil {
		l = tls.NewListener(l, s.TLSConfig)
	}
	s.mu.Lock()
	if s.inShutdown.Load() {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
	}()
	var delay time.Duration
	for {
		conn, err := l.Accept()
		if err != nil {
			if s.inShutdown.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		s.mu.Lock()
		if s.inShutdown.Load() {
			s.mu.Unlock()
			conn.Close()
			return ErrServerClosed
		}
		s.conns[conn] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, conn)
				s.mu.Unlock()
				conn.Close()
			}()
			s.serveConn(conn)
		}()
	}
}

// Shutdown stops accepting, lets running associations finish (their
// requestors release them) and returns when none is left, or closes them
// when ctx ends and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.inShutdown.Store(true)
	s.closeListeners()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.cancelBase()
		return nil
	case <-ctx.Done():
		s.Close()
		<-done
		return ctx.Err()
	}
}

// Close stops the server at once, closing every connection.
func (s *Server) Close() error {
	s.init()
	s.inShutdown.Store(true)
	s.closeListeners()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.cancelBase()
	return nil
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for l := range s.listeners {
		l.Close()
	}
}

// serveConn runs one association from transport connect to close.
func (s *Server) serveConn(conn net.Conn) {
	log := s.logger().With("remote", conn.RemoteAddr().String())
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	maxPDU := s.MaxPDULength
	if maxPDU == 0 {
		maxPDU = DefaultMaxPDULength
	}
	artim := s.ARTIMTimeout
	if artim == 0 {
		artim = 30 * time.Second
	}
	m := &machine{conn: conn, state: sta1, maxRecv: maxPDU, artim: artim, writeTimeout: s.WriteTimeout,
		acceptable: providerAcceptable}
	var tlsState *tls.ConnectionState
	if tc, ok := conn.(*tls.Conn); ok {
		tc.SetDeadline(time.Now().Add(artim))
		if err := tc.Handshake(); err != nil {
			log.Warn("TLS handshake failed", "err", err)
			return
		}
		tc.SetDeadline(time.Time{})
		st := tc.ConnectionState()
		tlsState = &st
	}
	m.signal(evt5, nil) // AE-5: start ARTIM, Sta2
	p, err := m.receive()
	if err != nil {
		log.Info("no association", "err", err)
		m.awaitClose()
		return
	}
	rq, ok := p.(*AAssociateRQ)
	if !ok {
		m.awaitClose()
		return
	}
	log = log.With("calling", rq.CallingAETitle, "called", rq.CalledAETitle)
	n := s.active.Add(1)
	defer s.active.Add(-1)

	ac, pcs, rj := s.decide(rq, conn.RemoteAddr(), n)
	if rj != nil {
		log.Warn("association rejected", "reason", rj.describe())
		m.signal(evt8, &AAssociateRJ{Result: rj.Result, Source: rj.Source, Reason: rj.Reason}) // AE-8
		m.awaitClose()
		return
	}
	if _, err := m.signal(evt7, ac); err != nil { // AE-7
		log.Warn("sending A-ASSOCIATE-AC", "err", err)
		return
	}
	a := &association{m: m, rq: rq, ac: ac, peerMax: rq.UserInformation.MaxLength,
		contexts: make(map[uint8]PresentationContext, len(pcs))}
	accepted := 0
	for _, pc := range pcs {
		a.contexts[pc.ID] = pc
		if pc.Accepted() {
			accepted++
		}
	}
	log.Info("association accepted", "contexts", len(pcs), "accepted", accepted)
	info := &AssociationInfo{CallingAETitle: rq.CallingAETitle, CalledAETitle: rq.CalledAETitle,
		RemoteAddr: conn.RemoteAddr(), TLS: tlsState, UserIdentity: rq.UserInformation.UserIdentityRQ}
	h := s.Handler
	if h == nil {
		h = NewServeMux()
	}
	for {
		m.readTimeout = s.IdleTimeout
		c, pc, err := a.readCommand()
		if errors.Is(err, errPeerRelease) {
			m.signal(evt14, &AReleaseRP{}) // AR-4
			log.Info("association released")
			m.awaitClose()
			return
		}
		if err != nil {
			log.Warn("association ended", "err", err)
			return
		}
		m.readTimeout = s.DIMSETimeout
		if err := s.serveRequest(a, h, info, c, pc, log); err != nil {
			log.Warn("association ended", "err", err)
			return
		}
	}
}

// providerAcceptable is AE-6's check by the service provider: the
// protocol version must include version 1 (PS3.8 9.3.2).
func providerAcceptable(rq *AAssociateRQ) *AAssociateRJ {
	if rq.ProtocolVersion&protocolVersion1 == 0 {
		return &AAssociateRJ{Result: RejectedPermanent, Source: SourceServiceProviderACSE, Reason: ReasonProtocolVersionNotSupported}
	}
	return nil
}

// decide applies the server's policy to an A-ASSOCIATE-RQ; n counts this
// association among the active ones.
func (s *Server) decide(rq *AAssociateRQ, remote net.Addr, n int64) (*AAssociateAC, []PresentationContext, *RejectError) {
	if s.inShutdown.Load() || (s.MaxAssociations > 0 && n > int64(s.MaxAssociations)) {
		return nil, nil, &RejectError{Result: RejectedTransient, Source: SourceServiceProviderPresentation, Reason: ReasonLocalLimitExceeded}
	}
	syntaxes := s.Syntaxes
	if syntaxes == nil {
		syntaxes = []Syntax{{AbstractSyntax: VerificationSOPClass, TransferSyntaxes: uncompressedTransferSyntaxes}}
	}
	maxPDU := s.MaxPDULength
	if maxPDU == 0 {
		maxPDU = DefaultMaxPDULength
	}
	var addr netip.Addr
	if ap, err := netip.ParseAddrPort(remote.String()); err == nil {
		addr = ap.Addr()
	}
	pol := &AcceptorPolicy{AETitle: s.AETitle, Peers: s.Peers, Syntaxes: syntaxes, MaxPDULength: maxPDU}
	ac, pcs, rj := negotiateAcceptor(pol, rq, addr)
	if rj == nil && s.Accept != nil {
		rj = s.Accept(rq, remote)
	}
	return ac, pcs, rj
}

// serveRequest runs the handler for one request and sends its response.
func (s *Server) serveRequest(a *association, h Handler, info *AssociationInfo, c *Command, pc PresentationContext, log *slog.Logger) error {
	msg, err := ParseMessage(c)
	if err != nil {
		return a.protocolError(AbortUnrecognizedPDUParameter, "%v", err)
	}
	if _, ok := msg.(*CCancelRQ); ok {
		return nil // nothing of ours is in progress to cancel
	}
	if c.CommandField.IsResponse() {
		return a.protocolError(AbortUnexpectedPDUParameter, "%v without a request", c.CommandField)
	}
	var body *dataReader
	r := &Request{Command: c, Message: msg, PresentationContext: pc, Association: info, ctx: s.baseCtx}
	if c.HasDataSet {
		body = &dataReader{a: a, id: pc.ID}
		r.Body = body
	}
	switch c.CommandField {
	case CFindRQField, CGetRQField, CMoveRQField:
		return s.serveOperation(a, h, r, body, log)
	}
	w := &response{}
	if c.AffectedSOPClassUID != "" && c.AffectedSOPClassUID != pc.AbstractSyntax {
		// A request's SOP class is its context's abstract
		// syntax; the handler must not see, say, a CT on an MR context.
		w.WriteStatus(StatusSOPClassNotSupported)
		w.SetErrorComment("SOP class differs from the presentation context's")
	} else {
		func() {
			defer func() {
				if p := recover(); p != nil {
					log.Error("handler panic", "command", c.CommandField.String(), "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
					w.status, w.written = StatusProcessingFailure, true
					w.comment = "internal error"
				}
			}()
			h.ServeDIMSE(w, r)
		}()
	}
	if body != nil {
		if err := body.drain(); err != nil {
			return err
		}
	}
	if !w.written {
		log.Error("handler wrote no status", "command", c.CommandField.String())
		w.status = StatusProcessingFailure
	}
	if w.status.Class() == ClassFailure {
		log.Warn("request failed", "command", c.CommandField.String(), "sop_instance", c.AffectedSOPInstanceUID, "status", w.status.String(), "comment", w.comment)
	}
	rsp := &Command{CommandField: c.CommandField | 0x8000, MessageIDBeingRespondedTo: c.MessageID,
		AffectedSOPClassUID: c.AffectedSOPClassUID, Status: w.status, ErrorComment: w.comment}
	if c.CommandField == CStoreRQField {
		rsp.AffectedSOPInstanceUID = c.AffectedSOPInstanceUID
	}
	return a.sendMessage(pc.ID, rsp, nil)
}

// serveOperation runs a C-FIND, C-GET or C-MOVE: the identifier is read
// whole first, so that the association is free for pending responses,
// C-CANCEL-RQ and sub-operations while the handler runs.
func (s *Server) serveOperation(a *association, h Handler, r *Request, body *dataReader, log *slog.Logger) error {
	c, pc := r.Command, r.PresentationContext
	o := &operation{a: a, rq: c, pc: pc}
	if body != nil {
		b, err := readIdentifier(body)
		if errors.Is(err, ErrMessageTooLarge) {
			if err := body.drain(); err != nil {
				return err
			}
			o.WriteStatus(StatusOutOfResources)
			o.SetErrorComment("identifier too large")
			b = nil
		} else if err != nil {
			return err
		}
		r.Body = bytes.NewReader(b)
	}
	switch {
	case o.written:
	case c.AffectedSOPClassUID != pc.AbstractSyntax:
		o.WriteStatus(StatusSOPClassNotSupported)
		o.SetErrorComment("SOP class differs from the presentation context's")
	case body == nil:
		o.WriteStatus(StatusIdentifierDoesNotMatch)
		o.SetErrorComment("no identifier")
	default:
		func() {
			defer func() {
				if p := recover(); p != nil {
					log.Error("handler panic", "command", c.CommandField.String(), "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
					o.status, o.written = StatusProcessingFailure, true
					o.comment = "internal error"
				}
			}()
			h.ServeDIMSE(o, r)
		}()
	}
	if a.err != nil {
		return a.err
	}
	// A cancel that arrived after the handler's last look still ends the
	// operation as cancelled only if the handler saw it; look once more so
	// that it is not left in the input.
	if err := o.poll(true); err != nil {
		return err
	}
	if !o.written {
		log.Error("handler wrote no status", "command", c.CommandField.String())
		o.status = StatusProcessingFailure
	}
	if o.cancelled && o.status == StatusSuccess && c.CommandField == CFindRQField {
		// Every match went out before the cancel was read; the final
		// response still acknowledges it (PS3.4 C.4.1.2.3).
		o.status = StatusCancel
	}
	if o.status.Class() == ClassFailure {
		log.Warn("request failed", "command", c.CommandField.String(), "status", o.status.String(), "comment", o.comment)
	}
	rsp := &Command{CommandField: c.CommandField | 0x8000, MessageIDBeingRespondedTo: c.MessageID,
		AffectedSOPClassUID: c.AffectedSOPClassUID, Status: o.status, ErrorComment: o.comment}
	if c.CommandField != CFindRQField {
		o.sub.put(rsp)
	}
	var data io.Reader
	if o.ident != nil && c.CommandField != CFindRQField {
		data = bytes.NewReader(o.ident)
	}
	return a.sendMessage(pc.ID, rsp, data)
}
