package dimse

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// association is what client and server share: the protocol machine, the
// negotiated contexts and the P-DATA plumbing. One goroutine uses it.
type association struct {
	m        *machine
	rq       *AAssociateRQ
	ac       *AAssociateAC
	contexts map[uint8]PresentationContext
	peerMax  uint32 // the peer's Maximum Length Received (0: no limit)

	pending []PDV  // undelivered PDVs of the last P-DATA-TF
	cmdBuf  []byte // command set reassembly
	sendBuf []byte // one outgoing P-DATA-TF, built in place

	err error // terminal error; the association is unusable
}

// errPeerRelease is returned by readCommand when the peer asks to release.
var errPeerRelease = errors.New("dimse: peer requested release")

// watch makes I/O fail once ctx ends, so blocked reads and writes return.
// The returned function must be called when the operation is over.
func (a *association) watch(ctx context.Context) func() bool {
	if ctx.Done() == nil {
		return func() bool { return true }
	}
	return context.AfterFunc(ctx, func() {
		a.m.cancelled.Store(true)
		a.m.conn.SetDeadline(time.Unix(1, 0))
	})
}

// ctxErr prefers the context's error when it caused err.
func (a *association) ctxErr(ctx context.Context, err error) error {
	if err != nil && a.m.cancelled.Load() && ctx.Err() != nil {
		return fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return err
}

// fail records a terminal error.
func (a *association) fail(err error) error {
	if a.err == nil {
		a.err = err
	}
	return err
}

// abort sends an A-ABORT (Evt15, AA-1) and closes the connection without
// waiting in Sta13: an aborting side has nothing more to hear.
func (a *association) abort(src AbortSource, reason AbortReason, cause error) error {
	if a.m.state != sta1 && a.m.state != sta13 {
		a.m.conn.SetWriteDeadline(time.Now().Add(time.Second))
		a.m.signal(evt15, &AAbort{Source: src, Reason: reason})
	}
	a.m.close()
	a.m.state = sta1
	return a.fail(&AbortError{Source: src, Reason: reason, Local: true, Err: cause})
}

// protocolError aborts as the service provider.
func (a *association) protocolError(reason AbortReason, format string, args ...any) error {
	return a.abort(AbortServiceProvider, reason, fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...))
}

// nextPDV returns the next received PDV, reading P-DATA-TF PDUs as needed.
// A peer's A-RELEASE-RQ comes back as errPeerRelease.
func (a *association) nextPDV() (PDV, error) {
	if a.err != nil {
		return PDV{}, a.err
	}
	for len(a.pending) == 0 {
		p, err := a.m.receive()
		if err != nil {
			return PDV{}, a.fail(err)
		}
		switch p := p.(type) {
		case *PDataTF:
			a.pending = p.Values
		case *AReleaseRQ:
			return PDV{}, errPeerRelease
		case nil:
			// An ignored PDU (AA-6).
		default:
			return PDV{}, a.protocolError(AbortUnexpectedPDU, "unexpected %v", p.Type())
		}
	}
	v := a.pending[0]
	a.pending = a.pending[1:]
	if pc, ok := a.contexts[v.PresentationContextID]; !ok || !pc.Accepted() {
		return PDV{}, a.protocolError(AbortInvalidPDUParameterValue, "PDV on presentation context %d, which was not accepted", v.PresentationContextID)
	}
	return v, nil
}

// readCommand reassembles the next command set, bounded by
// maxCommandSetLength, and decodes it.
func (a *association) readCommand() (*Command, PresentationContext, error) {
	a.cmdBuf = a.cmdBuf[:0]
	var id uint8
	for {
		v, err := a.nextPDV()
		if err != nil {
			return nil, PresentationContext{}, err
		}
		if !v.IsCommand() {
			return nil, PresentationContext{}, a.protocolError(AbortUnexpectedPDUParameter, "data set fragment where a command was expected")
		}
		if len(a.cmdBuf) > 0 && v.PresentationContextID != id {
			return nil, PresentationContext{}, a.protocolError(AbortInvalidPDUParameterValue, "command fragments on contexts %d and %d", id, v.PresentationContextID)
		}
		id = v.PresentationContextID
		if len(a.cmdBuf)+len(v.Data) > maxCommandSetLength {
			return nil, PresentationContext{}, a.protocolError(AbortInvalidPDUParameterValue, "%v", ErrMessageTooLarge)
		}
		a.cmdBuf = append(a.cmdBuf, v.Data...)
		if v.IsLast() {
			break
		}
	}
	c, err := DecodeCommand(a.cmdBuf)
	if err != nil {
		return nil, PresentationContext{}, a.protocolError(AbortInvalidPDUParameterValue, "%v", err)
	}
	return c, a.contexts[id], nil
}

// dataReader streams a received data set; it holds at most one PDU.
type dataReader struct {
	a    *association
	id   uint8
	cur  []byte
	last bool
	err  error
}

func (r *dataReader) next() error {
	for len(r.cur) == 0 {
		if r.err != nil {
			return r.err
		}
		if r.last {
			return io.EOF
		}
		v, err := r.a.nextPDV()
		switch {
		case errors.Is(err, errPeerRelease):
			r.err = r.a.protocolError(AbortUnexpectedPDU, "A-RELEASE-RQ in the middle of a data set")
		case err != nil:
			r.err = err
		case v.IsCommand():
			r.err = r.a.protocolError(AbortUnexpectedPDUParameter, "command fragment in the middle of a data set")
		case v.PresentationContextID != r.id:
			r.err = r.a.protocolError(AbortInvalidPDUParameterValue, "data set fragments on contexts %d and %d", r.id, v.PresentationContextID)
		default:
			r.cur, r.last = v.Data, v.IsLast()
		}
	}
	return nil
}

func (r *dataReader) Read(p []byte) (int, error) {
	if err := r.next(); err != nil {
		return 0, err
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// WriteTo hands each fragment to w without an intermediate copy.
func (r *dataReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if err := r.next(); err == io.EOF {
			return total, nil
		} else if err != nil {
			return total, err
		}
		n, err := w.Write(r.cur)
		total += int64(n)
		r.cur = r.cur[n:]
		if err != nil {
			return total, err
		}
	}
}

// drain reads what the handler left of the data set.
func (r *dataReader) drain() error {
	_, err := r.WriteTo(io.Discard)
	return err
}

// pdvWriter fragments a command or data set into P-DATA-TF PDUs of one PDV
// each, no larger than the peer accepts. The last fragment is held back
// until Close so that it can carry the last-fragment bit.
type pdvWriter struct {
	a    *association
	id   uint8
	mch  byte
	buf  []byte
	n    int // data bytes in buf
	max  int // data bytes per PDV
	sent bool
}

// P-DATA-TF header (6) plus PDV item header (4 length, 1 ID, 1 MCH).
const pdataOverhead = 12

// maxFragment caps our fragments when the peer sets no limit.
const maxFragment = 256 << 10

func (a *association) newWriter(id uint8, command bool) *pdvWriter {
	max := maxFragment
	if a.peerMax != 0 && int64(a.peerMax)-6 < int64(max) {
		max = int(a.peerMax) - 6
	}
	if max < 1 {
		max = 1
	}
	if cap(a.sendBuf) < pdataOverhead+max {
		a.sendBuf = make([]byte, pdataOverhead+max)
	}
	w := &pdvWriter{a: a, id: id, buf: a.sendBuf[:pdataOverhead+max], max: max}
	if command {
		w.mch = pdvCommand
	}
	return w
}

func (w *pdvWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		if w.n == w.max {
			if err := w.flush(false); err != nil {
				return total - len(p), err
			}
		}
		c := copy(w.buf[pdataOverhead+w.n:], p)
		w.n += c
		p = p[c:]
	}
	return total, nil
}

// ReadFrom reads straight into the PDU buffer.
func (w *pdvWriter) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		if w.n == w.max {
			if err := w.flush(false); err != nil {
				return total, err
			}
		}
		k, err := r.Read(w.buf[pdataOverhead+w.n:])
		w.n += k
		total += int64(k)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Close sends the last fragment.
func (w *pdvWriter) Close() error { return w.flush(true) }

func (w *pdvWriter) flush(last bool) error {
	b := w.buf[:pdataOverhead+w.n]
	b[0], b[1] = byte(TypePDataTF), 0
	binary.BigEndian.PutUint32(b[2:], uint32(w.n+6))
	binary.BigEndian.PutUint32(b[6:], uint32(w.n+2))
	b[10] = w.id
	b[11] = w.mch
	if last {
		b[11] |= pdvLast
	}
	w.n = 0
	w.a.m.hold = !last
	_, err := w.a.m.signal(evt9, &encodedPDU{typ: TypePDataTF, b: b})
	w.a.m.hold = false
	if err != nil {
		return w.a.fail(err)
	}
	return nil
}

// sendMessage sends a command set and, when data is not nil, the data set
// streamed from it.
func (a *association) sendMessage(id uint8, cmd *Command, data io.Reader) error {
	if a.err != nil {
		return a.err
	}
	cmd.HasDataSet = data != nil
	b, err := cmd.Encode(nil)
	if err != nil {
		return err
	}
	w := a.newWriter(id, true)
	if _, err := w.Write(b); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	if data == nil {
		return nil
	}
	w = a.newWriter(id, false)
	if _, err := w.ReadFrom(data); err != nil {
		if a.err == nil {
			// A local read error mid-instance leaves the peer with a
			// half data set; only an A-ABORT ends that cleanly.
			return a.abort(AbortServiceUser, 0, fmt.Errorf("reading the data set: %w", err))
		}
		return err
	}
	return w.Close()
}

// remoteAddr returns the peer's address.
func (a *association) remoteAddr() net.Addr { return a.m.conn.RemoteAddr() }
