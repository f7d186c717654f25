package dimse_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/dimse/dimsetest"
)

// readRawPDU reads one PDU from a raw connection; io.EOF (or a reset) means
// the server closed it.
func readRawPDU(conn net.Conn, limit time.Duration) (dimse.PDU, error) {
	conn.SetReadDeadline(time.Now().Add(limit))
	var h [6]byte
	if _, err := io.ReadFull(conn, h[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(h[2:])
	if n > 1<<20 {
		return nil, errors.New("huge PDU from the server")
	}
	b := make([]byte, 6+n)
	copy(b, h[:])
	if _, err := io.ReadFull(conn, b[6:]); err != nil {
		return nil, err
	}
	return dimse.DecodePDU(b)
}

// expectEnd waits until the server answers with an A-ABORT or
// A-ASSOCIATE-RJ and/or closes the connection; anything else, or silence
// beyond the limit, fails.
func expectEnd(t *testing.T, conn net.Conn, limit time.Duration) dimse.PDU {
	t.Helper()
	var last dimse.PDU
	deadline := time.Now().Add(limit)
	for {
		p, err := readRawPDU(conn, time.Until(deadline))
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("server neither aborted nor closed within %v (last PDU %v)", limit, last)
			}
			return last // closed
		}
		switch p.(type) {
		case *dimse.AAbort, *dimse.AAssociateRJ:
			last = p
		default:
			t.Fatalf("server sent %v", p.Type())
		}
	}
}

func rawDial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func write(t *testing.T, c net.Conn, b []byte) {
	t.Helper()
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.Write(b) // the server may already have closed; what it does next is the test
}

func encode(t *testing.T, p dimse.PDU) []byte {
	t.Helper()
	b, err := p.Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rawAssociate negotiates Verification (1) and CT in explicit VR LE (3).
func rawAssociate(t *testing.T, addr string) net.Conn {
	t.Helper()
	c := rawDial(t, addr)
	write(t, c, encode(t, &dimse.AAssociateRQ{CalledAETitle: "OTONODE", CallingAETitle: "HOSTILE",
		PresentationContexts: []dimse.PresentationContextRQ{
			{ID: 1, AbstractSyntax: dimse.VerificationSOPClass, TransferSyntaxes: []string{dimse.ImplicitVRLittleEndian}},
			{ID: 3, AbstractSyntax: dimse.CTImageStorage, TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian}}},
		UserInformation: dimse.UserInformation{MaxLength: 16384}}))
	p, err := readRawPDU(c, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.(*dimse.AAssociateAC); !ok {
		t.Fatalf("got %v, want A-ASSOCIATE-AC", p.Type())
	}
	return c
}

func pdata(id, mch byte, data []byte) []byte {
	b, _ := (&dimse.PDataTF{Values: []dimse.PDV{{PresentationContextID: id, MessageControlHeader: mch, Data: data}}}).Encode(nil)
	return b
}

func TestHostilePeers(t *testing.T) {
	var stored, bodyErrors atomic.Int64
	mux := dimse.NewServeMux()
	mux.HandleFunc(dimse.CStoreRQField, "", func(w dimse.ResponseWriter, r *dimse.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			bodyErrors.Add(1)
			w.WriteStatus(dimse.StatusProcessingFailure)
			return
		}
		stored.Add(1)
		w.WriteStatus(dimse.StatusSuccess)
	})
	srv := &dimse.Server{AETitle: "OTONODE", Handler: mux, ARTIMTimeout: 300 * time.Millisecond,
		IdleTimeout: 5 * time.Second, DIMSETimeout: 2 * time.Second,
		Syntaxes: []dimse.Syntax{
			{AbstractSyntax: dimse.VerificationSOPClass, TransferSyntaxes: []string{dimse.ImplicitVRLittleEndian}},
			{AbstractSyntax: dimse.CTImageStorage, TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian}}}}
	ts := dimsetest.NewServer(srv)
	defer ts.Close()

	storeCmd, _ := (&dimse.CStoreRQ{MessageID: 1, AffectedSOPClassUID: dimse.CTImageStorage, AffectedSOPInstanceUID: "1.2.3"}).Command().Encode(nil)
	tests := []struct {
		name   string
		run    func(t *testing.T) net.Conn
		wantRJ bool
	}{
		{name: "silent peer (ARTIM)", run: func(t *testing.T) net.Conn { return rawDial(t, ts.Addr) }},
		{name: "unknown PDU type", run: func(t *testing.T) net.Conn {
			c := rawDial(t, ts.Addr)
			write(t, c, []byte{0x0A, 0, 0, 0, 0, 4, 0, 0, 0, 0})
			return c
		}},
		{name: "P-DATA before association", run: func(t *testing.T) net.Conn {
			c := rawDial(t, ts.Addr)
			write(t, c, pdata(1, 3, storeCmd))
			return c
		}},
		{name: "oversized A-ASSOCIATE-RQ (4 GB length)", run: func(t *testing.T) net.Conn {
			c := rawDial(t, ts.Addr)
			write(t, c, []byte{0x01, 0, 0xff, 0xff, 0xff, 0xff, 0, 1})
			return c
		}},
		{name: "truncated A-ASSOCIATE-RQ, then gone", run: func(t *testing.T) net.Conn {
			c := rawDial(t, ts.Addr)
			write(t, c, []byte{0x01, 0, 0, 0, 1, 0, 0, 1, 0, 0})
			c.(*net.TCPConn).CloseWrite()
			return c
		}},
		{name: "A-ASSOCIATE-RQ with an item running past its end", run: func(t *testing.T) net.Conn {
			c := rawDial(t, ts.Addr)
			b := encode(t, &dimse.AAssociateRQ{CalledAETitle: "OTONODE", CallingAETitle: "X",
				PresentationContexts: []dimse.PresentationContextRQ{{ID: 1, AbstractSyntax: "1.2", TransferSyntaxes: []string{"1.2"}}}})
			b[6+68+2] = 0xff // application context item length
			write(t, c, b)
			return c
		}},
		{name: "protocol version 2 only", wantRJ: true, run: func(t *testing.T) net.Conn {
			c := rawDial(t, ts.Addr)
			b := encode(t, &dimse.AAssociateRQ{ProtocolVersion: 2, CalledAETitle: "OTONODE", CallingAETitle: "X",
				PresentationContexts: []dimse.PresentationContextRQ{{ID: 1, AbstractSyntax: "1.2", TransferSyntaxes: []string{"1.2"}}}})
			write(t, c, b)
			return c
		}},
		{name: "oversized P-DATA-TF (1 GB length)", run: func(t *testing.T) net.Conn {
			c := rawAssociate(t, ts.Addr)
			write(t, c, []byte{0x04, 0, 0x40, 0, 0, 0, 0, 0})
			return c
		}},
		{name: "P-DATA on a context never negotiated", run: func(t *testing.T) net.Conn {
			c := rawAssociate(t, ts.Addr)
			write(t, c, pdata(5, 3, storeCmd))
			return c
		}},
		{name: "data set where a command belongs", run: func(t *testing.T) net.Conn {
			c := rawAssociate(t, ts.Addr)
			write(t, c, pdata(3, 2, []byte{1, 2, 3, 4}))
			return c
		}},
		{name: "garbage command set", run: func(t *testing.T) net.Conn {
			c := rawAssociate(t, ts.Addr)
			write(t, c, pdata(3, 3, []byte{0x08, 0, 0x18, 0, 4, 0, 0, 0, 'a', 'b', 'c', 'd'}))
			return c
		}},
		{name: "endless command set (reassembly bound)", run: func(t *testing.T) net.Conn {
			c := rawAssociate(t, ts.Addr)
			chunk := make([]byte, 16000)
			for i := 0; i < 6; i++ {
				write(t, c, pdata(3, 1, chunk))
			}
			return c
		}},
		{name: "vanishes mid-instance", run: func(t *testing.T) net.Conn {
			c := rawAssociate(t, ts.Addr)
			write(t, c, pdata(3, 3, storeCmd))
			write(t, c, pdata(3, 0, make([]byte, 10000)))
			c.Close()
			return c
		}},
		{name: "A-RELEASE-RQ mid-instance", run: func(t *testing.T) net.Conn {
			c := rawAssociate(t, ts.Addr)
			write(t, c, pdata(3, 3, storeCmd))
			write(t, c, pdata(3, 0, make([]byte, 100)))
			write(t, c, []byte{0x05, 0, 0, 0, 0, 4, 0, 0, 0, 0})
			return c
		}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.run(t)
			if tt.name != "vanishes mid-instance" {
				p := expectEnd(t, c, 5*time.Second)
				if _, isRJ := p.(*dimse.AAssociateRJ); isRJ != tt.wantRJ {
					t.Errorf("ended with %v, want rejection %v", p, tt.wantRJ)
				}
			}
			// The server keeps serving others.
			a, err := dimse.Dial(ctx, ts.Addr, dimse.DialOptions{CalledAETitle: "OTONODE",
				Proposals: []dimse.Proposal{{AbstractSyntax: dimse.VerificationSOPClass, TransferSyntaxes: []string{dimse.ImplicitVRLittleEndian}}}})
			if err != nil {
				t.Fatalf("server stopped serving: %v", err)
			}
			if err := a.Echo(ctx); err != nil {
				t.Fatal(err)
			}
			a.Release(ctx)
		})
	}
	if stored.Load() != 0 {
		t.Errorf("%d instances stored from hostile peers", stored.Load())
	}
	if bodyErrors.Load() == 0 {
		t.Error("no handler saw a broken data set")
	}
}

// A 64 MB instance goes through the server while the heap stays small: the
// data set streams, it is never held.
func TestStoreMemoryBounded(t *testing.T) {
	const size = 64 << 20
	var got atomic.Int64
	var peak atomic.Uint64
	mux := dimse.NewServeMux()
	mux.HandleFunc(dimse.CStoreRQField, "", func(w dimse.ResponseWriter, r *dimse.Request) {
		buf := make([]byte, 32<<10)
		var ms runtime.MemStats
		for i := 0; ; i++ {
			n, err := r.Body.Read(buf)
			got.Add(int64(n))
			if i%256 == 0 {
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				w.WriteStatus(dimse.StatusProcessingFailure)
				return
			}
		}
		w.WriteStatus(dimse.StatusSuccess)
	})
	ts := dimsetest.NewServer(&dimse.Server{Handler: mux, Syntaxes: []dimse.Syntax{{TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian}}}})
	defer ts.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	a, err := dimse.Dial(ctx, ts.Addr, dimse.DialOptions{Proposals: dimse.StorageProposals(dimse.CTImageStorage)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Store(ctx, dimse.Instance{SOPClassUID: dimse.CTImageStorage, SOPInstanceUID: "1.2.3.4",
		TransferSyntaxUID: dimse.ExplicitVRLittleEndian, DataSet: io.LimitReader(zeros{}, size)})
	if err != nil {
		t.Fatal(err)
	}
	a.Release(ctx)
	if got.Load() != size {
		t.Fatalf("received %d bytes, want %d", got.Load(), size)
	}
	growth := int64(peak.Load()) - int64(before.HeapInuse)
	t.Logf("heap in use grew by %d KiB while streaming %d MiB", growth>>10, size>>20)
	if growth > 16<<20 {
		t.Fatalf("heap grew by %d MiB for a %d MiB instance", growth>>20, size>>20)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// A C-STORE whose SOP class is not its context's abstract syntax is refused
// without reaching the handler, and the association goes on.
func TestStoreOnAnotherClassesContext(t *testing.T) {
	var called atomic.Int64
	mux := dimse.NewServeMux()
	mux.HandleFunc(dimse.CStoreRQField, "", func(w dimse.ResponseWriter, r *dimse.Request) {
		called.Add(1)
		w.WriteStatus(dimse.StatusSuccess)
	})
	ts := dimsetest.NewServer(&dimse.Server{AETitle: "OTONODE", Handler: mux, Syntaxes: []dimse.Syntax{
		{AbstractSyntax: dimse.VerificationSOPClass, TransferSyntaxes: []string{dimse.ImplicitVRLittleEndian}},
		{AbstractSyntax: dimse.CTImageStorage, TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian}}}})
	defer ts.Close()
	c := rawAssociate(t, ts.Addr)
	cmd, _ := (&dimse.CStoreRQ{MessageID: 7, AffectedSOPClassUID: "1.2.840.10008.5.1.4.1.1.4", AffectedSOPInstanceUID: "9.9"}).Command().Encode(nil)
	write(t, c, pdata(3, 3, cmd))
	write(t, c, pdata(3, 2, []byte{8, 0, 0x16, 0, 'U', 'I', 2, 0, '1', 0}))
	var rsp []byte
	for {
		p, err := readRawPDU(c, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		v := p.(*dimse.PDataTF).Values[0]
		rsp = append(rsp, v.Data...)
		if v.IsLast() {
			break
		}
	}
	got, err := dimse.DecodeCommand(rsp)
	if err != nil {
		t.Fatal(err)
	}
	if got.CommandField != dimse.CStoreRSPField || got.Status != dimse.StatusSOPClassNotSupported || got.MessageIDBeingRespondedTo != 7 {
		t.Fatalf("response %+v", got)
	}
	if called.Load() != 0 {
		t.Fatal("handler saw a request on another class's context")
	}
}

// An association that falls silent is aborted after IdleTimeout.
func TestIdleTimeoutAborts(t *testing.T) {
	ts := dimsetest.NewServer(&dimse.Server{AETitle: "OTONODE", IdleTimeout: 200 * time.Millisecond,
		ARTIMTimeout: 200 * time.Millisecond, Syntaxes: []dimse.Syntax{
			{AbstractSyntax: dimse.VerificationSOPClass, TransferSyntaxes: []string{dimse.ImplicitVRLittleEndian}},
			{AbstractSyntax: dimse.CTImageStorage, TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian}}}})
	defer ts.Close()
	c := rawAssociate(t, ts.Addr)
	start := time.Now()
	p := expectEnd(t, c, 3*time.Second)
	if _, ok := p.(*dimse.AAbort); !ok {
		t.Fatalf("ended with %v, want an A-ABORT", p)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("aborted after %v, before the idle timeout", d)
	}
}
