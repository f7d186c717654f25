package dimse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// fakeConn records what the machine writes and whether it closed.
type fakeConn struct {
	out    bytes.Buffer
	closed bool
}

func (c *fakeConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (c *fakeConn) Write(b []byte) (int, error)      { return c.out.Write(b) }
func (c *fakeConn) Close() error                     { c.closed = true; return nil }
func (c *fakeConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *fakeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *fakeConn) SetDeadline(time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }

// pduFor is the PDU that comes with an event in the walk below.
func pduFor(e event) PDU {
	switch e {
	case evt2, evt6:
		return rqWant()
	case evt3, evt7:
		return &AAssociateAC{}
	case evt4, evt8:
		return &AAssociateRJ{Result: RejectedPermanent, Source: SourceServiceUser, Reason: ReasonNoReasonGiven}
	case evt9:
		b, _ := (&PDataTF{Values: []PDV{{1, 3, []byte{1, 2}}}}).Encode(nil)
		return &encodedPDU{typ: TypePDataTF, b: b}
	case evt10:
		return &PDataTF{Values: []PDV{{1, 3, []byte{1, 2}}}}
	case evt11, evt12:
		return &AReleaseRQ{}
	case evt13, evt14:
		return &AReleaseRP{}
	case evt15, evt16:
		return &AAbort{}
	}
	return nil
}

// Every cell of Table 9-10, walked against what each action must do: the
// next state, the PDU it sends, whether it closes the transport and what
// it leaves the ARTIM timer doing.
func TestStateMachineTable(t *testing.T) {
	sends := map[action]PDUType{ae2: TypeAAssociateRQ, ae7: TypeAAssociateAC, ae8: TypeAAssociateRJ,
		dt1: TypePDataTF, ar7: TypePDataTF, ar1: TypeAReleaseRQ, ar4: TypeAReleaseRP, ar9: TypeAReleaseRP,
		aa1: TypeAAbort, aa7: TypeAAbort, aa8: TypeAAbort}
	closes := map[action]bool{ae4: true, ar3: true, ar5: true, aa2: true, aa3: true, aa4: true, aa5: true}
	artimOn := map[action]bool{ae5: true, ae8: true, ar4: true, aa1: true, aa8: true}
	artimOff := map[action]bool{ae6: true, ar5: true, aa2: true, aa5: true}
	cells := 0
	for e := evt1; e <= evt19; e++ {
		for s := sta1; s <= sta13; s++ {
			a := transitions[e][s]
			for _, requestor := range []bool{false, true} {
				name := fmt.Sprintf("Evt%d/Sta%d/requestor=%v", e, s, requestor)
				c := &fakeConn{}
				m := &machine{conn: c, state: s, requestor: requestor, artim: time.Second,
					acceptable: func(*AAssociateRQ) *AAssociateRJ { return nil }}
				// Start with ARTIM running where the action must stop it.
				m.artimRunning = artimOff[a]
				_, err := m.signal(e, pduFor(e))
				if a == noAction {
					if !errors.Is(err, errNoTransition) || m.state != s {
						t.Errorf("%s: empty cell gave state Sta%d, err %v", name, m.state, err)
					}
					continue
				}
				if !requestor {
					cells++
				}
				want := actionSpecs[a].next
				switch a {
				case ae6:
					want = sta3
				case ar8:
					want = sta10
					if requestor {
						want = sta9
					}
				}
				if m.state != want {
					t.Errorf("%s: %v led to Sta%d, want Sta%d", name, a, m.state, want)
				}
				if typ, ok := sends[a]; ok {
					p, derr := DecodePDU(c.out.Bytes())
					if derr != nil || p.Type() != typ {
						t.Errorf("%s: %v sent %v (%v), want %v", name, a, p, derr, typ)
					}
				} else if c.out.Len() != 0 {
					t.Errorf("%s: %v sent %d bytes, want none", name, a, c.out.Len())
				}
				if c.closed != closes[a] {
					t.Errorf("%s: %v closed=%v", name, a, c.closed)
				}
				if artimOn[a] && !m.artimRunning || artimOff[a] && m.artimRunning {
					t.Errorf("%s: %v left ARTIM running=%v", name, a, m.artimRunning)
				}
			}
		}
	}
	// Every event that stands for something received has an action in
	// every state with a transport connection (all but Sta1 and Sta4).
	for _, e := range []event{evt3, evt4, evt6, evt10, evt12, evt13, evt16, evt17, evt19} {
		for s := sta2; s <= sta13; s++ {
			if s != sta4 && transitions[e][s] == noAction {
				t.Errorf("Evt%d has no action in Sta%d", e, s)
			}
		}
	}
	if cells == 0 {
		t.Fatal("no cells walked")
	}
	t.Logf("%d non-empty cells of 247 walked, for both roles", cells)
}

func TestAE6RejectsUnknownProtocolVersion(t *testing.T) {
	c := &fakeConn{}
	m := &machine{conn: c, state: sta2, acceptable: providerAcceptable, artim: time.Second}
	rq := rqWant()
	rq.ProtocolVersion = 2
	_, err := m.signal(evt6, rq)
	var rj *RejectError
	if !errors.As(err, &rj) || rj.Source != SourceServiceProviderACSE || rj.Reason != ReasonProtocolVersionNotSupported {
		t.Fatalf("err = %v", err)
	}
	if m.state != sta13 || !m.artimRunning {
		t.Fatalf("state Sta%d, ARTIM %v", m.state, m.artimRunning)
	}
	p, _ := DecodePDU(c.out.Bytes())
	if _, ok := p.(*AAssociateRJ); !ok {
		t.Fatalf("sent %v", p)
	}
}

// Both sides ask to release at once (PS3.8 9.2.2 and Figure 9-5): the
// requestor answers first, the acceptor after the requestor's A-RELEASE-RP.
func TestReleaseCollision(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	req := &machine{conn: cc, state: sta6, requestor: true, artim: 2 * time.Second}
	acc := &machine{conn: sc, state: sta6, artim: 2 * time.Second}
	var reqStates, accStates []state
	req.trace = func(_ event, _ state, _ action, to state) { reqStates = append(reqStates, to) }
	acc.trace = func(_ event, _ state, _ action, to state) { accStates = append(accStates, to) }

	done := make(chan error, 1)
	go func() {
		// Acceptor: A-RELEASE-RQ out, the requestor's RQ in (AR-8, Sta10),
		// its RP in (AR-10, Sta12), our RP out (AR-4, Sta13), then close.
		if _, err := acc.signal(evt11, &AReleaseRQ{}); err != nil {
			done <- err
			return
		}
		for acc.state != sta12 {
			if _, err := acc.receive(); err != nil {
				done <- err
				return
			}
		}
		_, err := acc.signal(evt14, &AReleaseRP{})
		acc.awaitClose()
		done <- err
	}()
	if _, err := req.signal(evt11, &AReleaseRQ{}); err != nil {
		t.Fatal(err)
	}
	for req.state != sta1 {
		p, err := req.receive()
		if err != nil {
			t.Fatalf("requestor in Sta%d: %v", req.state, err)
		}
		if _, ok := p.(*AReleaseRQ); ok && req.state == sta9 {
			if _, err := req.signal(evt14, &AReleaseRP{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	wantReq := []state{sta7, sta9, sta11, sta1}
	wantAcc := []state{sta7, sta10, sta12, sta13, sta1}
	if fmt.Sprint(reqStates) != fmt.Sprint(wantReq) || fmt.Sprint(accStates) != fmt.Sprint(wantAcc) {
		t.Fatalf("requestor went %v (want %v), acceptor %v (want %v)", reqStates, wantReq, accStates, wantAcc)
	}
}
