package dimse

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// machine is the upper-layer protocol machine of PS3.8 9.2 for one
// transport connection. It is driven by one goroutine: local primitives
// call signal, received PDUs come through receive. Indications are returned
// to the caller rather than queued.
type machine struct {
	conn net.Conn
	br   *bufio.Reader // reads conn; PDU headers would otherwise cost a system call each
	bw   *bufio.Writer // gathers the fragments of one message into fewer writes
	// hold, set while a message has more fragments to come, defers the
	// flush of bw; everything else is flushed as it is written.
	hold      bool
	state     state
	requestor bool

	// maxRecv is our Maximum Length Received (0: only the package bound).
	maxRecv uint32
	rbuf    []byte
	wbuf    []byte

	artim        time.Duration
	artimRunning bool
	artimStart   time.Time
	// readTimeout bounds each PDU read while ARTIM is not running (0: none).
	readTimeout time.Duration

	// acceptable is AE-6's check by the service provider; it returns nil to
	// issue the A-ASSOCIATE indication or the A-ASSOCIATE-RJ to send.
	acceptable func(*AAssociateRQ) *AAssociateRJ

	// cancelled is set when the caller's context ends; deadlines then stay
	// in the past so that blocked I/O returns.
	cancelled atomic.Bool
	// writeTimeout bounds each write (0: none).
	writeTimeout time.Duration

	// trace, if set, sees every transition (for tests and debug logs).
	trace func(e event, from state, a action, to state)
}

// encodedPDU is a PDU already on the wire format (P-DATA-TF fragments are
// built in place to avoid a copy).
type encodedPDU struct {
	typ PDUType
	b   []byte
}

func (p *encodedPDU) Type() PDUType                     { return p.typ }
func (p *encodedPDU) Decode([]byte) error               { return errors.New("dimse: encodedPDU is send-only") }
func (p *encodedPDU) Encode(dst []byte) ([]byte, error) { return append(dst, p.b...), nil }

// errNoTransition is a local primitive issued in a state where Table 9-10
// has no action for it.
var errNoTransition = errors.New("dimse: primitive not allowed in this state")

// signal runs the action of Table 9-10 for event e in the current state. p is
// the PDU that came with the event (received) or is to be sent (local
// primitive). It returns the indication for the caller, if any, or an error
// that ends the association.
func (m *machine) signal(e event, p PDU) (PDU, error) {
	a := transitions[e][m.state]
	if a == noAction {
		return nil, fmt.Errorf("%w: event %d in Sta%d", errNoTransition, e, m.state)
	}
	from := m.state
	next := actionSpecs[a].next
	var ind PDU
	var err error
	switch a {
	case ae1, ae3, dt2, ar2, ar6:
		// The transport connect is done by the caller; the indication is p.
		ind = p
	case ae2, ae7, dt1, ar1, ar7, ar9:
		err = m.write(p)
	case ae4:
		rj := p.(*AAssociateRJ)
		m.close()
		err = &RejectError{Result: rj.Result, Source: rj.Source, Reason: rj.Reason}
	case ae5:
		m.startARTIM()
	case ae6:
		m.stopARTIM()
		rq := p.(*AAssociateRQ)
		if rj := m.acceptable(rq); rj != nil {
			next = sta13
			err = m.write(rj)
			m.startARTIM()
			if err == nil {
				err = &RejectError{Result: rj.Result, Source: rj.Source, Reason: rj.Reason}
			}
		} else {
			next, ind = sta3, p
		}
	case ae8:
		err = m.write(p)
		m.startARTIM()
	case ar3:
		m.close()
		ind = p
	case ar4:
		err = m.write(p)
		m.startARTIM()
	case ar5:
		m.stopARTIM()
		m.close()
	case ar8:
		next = sta10
		if m.requestor {
			next = sta9
		}
		ind = p
	case ar10:
		ind = p
	case aa1:
		// A local abort carries its own PDU; an unexpected PDU in Sta2
		// is answered as the provider.
		ab, ok := p.(*AAbort)
		if !ok || e != evt15 {
			ab = &AAbort{Source: AbortServiceProvider, Reason: AbortUnexpectedPDU}
		}
		_ = m.write(ab)
		m.startARTIM()
		err = &AbortError{Source: ab.Source, Reason: ab.Reason, Local: true}
	case aa2:
		m.stopARTIM()
		m.close()
		if e == evt18 {
			err = ErrARTIMExpired
		}
	case aa3:
		m.close()
		ab, _ := p.(*AAbort)
		if ab == nil {
			ab = &AAbort{}
		}
		err = &AbortError{Source: ab.Source, Reason: ab.Reason}
	case aa4:
		m.close()
		err = &AbortError{Source: AbortServiceProvider, Reason: abortReasonLocal, Err: io.ErrUnexpectedEOF}
	case aa5:
		m.stopARTIM()
		m.close()
		err = io.ErrUnexpectedEOF
	case aa6:
		// Ignore PDU.
	case aa7:
		_ = m.write(&AAbort{Source: AbortServiceProvider, Reason: AbortUnexpectedPDU})
	case aa8:
		reason := AbortUnexpectedPDU
		if e == evt19 {
			reason = AbortUnrecognizedPDU
		}
		_ = m.write(&AAbort{Source: AbortServiceProvider, Reason: reason})
		m.startARTIM()
		err = &AbortError{Source: AbortServiceProvider, Reason: reason, Local: true}
	}
	m.state = next
	if m.trace != nil {
		m.trace(e, from, a, next)
	}
	return ind, err
}

// receive reads the next PDU and runs its event. Received PDUs map onto
// Evt3-Evt19; read errors onto Evt17 (closed), Evt18 (ARTIM) or Evt19
// (invalid PDU). receive returns the indication the action issues.
func (m *machine) receive() (PDU, error) {
	m.setReadDeadline()
	if m.br == nil {
		m.br = bufio.NewReaderSize(m.conn, 64<<10)
	}
	p, err := readPDU(m.br, &m.rbuf, m.maxRecv)
	if err != nil {
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout() && m.artimRunning:
			return m.signal(evt18, nil)
		case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, os.ErrDeadlineExceeded):
			// An idle or read timeout of ours: a local A-ABORT request.
			_, aerr := m.signal(evt15, &AAbort{Source: AbortServiceUser})
			return nil, wrapAbort(aerr, fmt.Errorf("read timeout: %w", err))
		case errors.Is(err, ErrMalformedPDU), errors.Is(err, ErrUnknownPDUType), errors.Is(err, ErrPDUTooLarge):
			_, aerr := m.signal(evt19, nil)
			return nil, wrapAbort(aerr, err)
		default:
			_, aerr := m.signal(evt17, nil)
			if aerr == nil {
				aerr = err
			}
			return nil, wrapAbort(aerr, err)
		}
	}
	var e event
	switch p.Type() {
	case TypeAAssociateRQ:
		e = evt6
	case TypeAAssociateAC:
		e = evt3
	case TypeAAssociateRJ:
		e = evt4
	case TypePDataTF:
		e = evt10
	case TypeAReleaseRQ:
		e = evt12
	case TypeAReleaseRP:
		e = evt13
	case TypeAAbort:
		e = evt16
	}
	return m.signal(e, p)
}

// wrapAbort puts the cause into an AbortError that has none.
func wrapAbort(err, cause error) error {
	var ae *AbortError
	if errors.As(err, &ae) && ae.Err == nil {
		ae.Err = cause
		return err
	}
	if err == nil {
		return cause
	}
	return err
}

// awaitClose is Sta13: it reads (and ignores or answers) PDUs until the peer
// closes the connection or ARTIM expires, per the Sta13 column.
func (m *machine) awaitClose() {
	for m.state == sta13 {
		if _, err := m.receive(); errors.Is(err, errNoTransition) {
			// A timeout of ours without ARTIM: stop waiting.
			m.close()
			m.state = sta1
		}
	}
}

func (m *machine) write(p PDU) error {
	var b []byte
	if e, ok := p.(*encodedPDU); ok {
		b = e.b
	} else {
		var err error
		if m.wbuf, err = p.Encode(m.wbuf[:0]); err != nil {
			return err
		}
		b = m.wbuf
	}
	if m.writeTimeout > 0 && !m.cancelled.Load() {
		m.conn.SetWriteDeadline(time.Now().Add(m.writeTimeout))
	}
	if m.bw == nil {
		m.bw = bufio.NewWriterSize(m.conn, 64<<10)
	}
	if _, err := m.bw.Write(b); err != nil {
		return err
	}
	if m.hold {
		return nil
	}
	return m.bw.Flush()
}

func (m *machine) startARTIM() {
	m.artimRunning = true
	m.artimStart = time.Now()
}

func (m *machine) stopARTIM() { m.artimRunning = false }

func (m *machine) setReadDeadline() {
	switch {
	case m.cancelled.Load():
		m.conn.SetReadDeadline(time.Unix(1, 0))
	case m.artimRunning && m.artim > 0:
		m.conn.SetReadDeadline(m.artimStart.Add(m.artim))
	case m.readTimeout > 0:
		m.conn.SetReadDeadline(time.Now().Add(m.readTimeout))
	default:
		m.conn.SetReadDeadline(time.Time{})
	}
}

func (m *machine) close() { m.conn.Close() }
