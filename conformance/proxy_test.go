package conformance

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// cutProxy forwards TCP connections to a DICOM peer. Its first
// association is cut in the middle: after passing the peer's A-ASSOCIATE-AC
// and the first `pass` P-DATA-TF PDUs (C-STORE responses), it stops passing
// the peer's PDUs, so the peer stores what it is sent while the sender
// never learns it; stalled is closed then. Later connections pass freely.
type cutProxy struct {
	port    int
	stalled chan struct{}

	pass  int
	armed atomic.Bool
	l     net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func startCutProxy(t *testing.T, target int, pass int) *cutProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{port: l.Addr().(*net.TCPAddr).Port, stalled: make(chan struct{}), pass: pass, l: l}
	p.armed.Store(true)
	p.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.serve(c, fmt.Sprintf("127.0.0.1:%d", target)) })
		}
	})
	t.Cleanup(func() {
		l.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) serve(c net.Conn, target string) {
	up, err := net.Dial("tcp", target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, c, up)
	p.mu.Unlock()
	defer c.Close()
	defer up.Close()
	go func() {
		io.Copy(up, c)
		up.Close()
	}()
	if !p.armed.CompareAndSwap(true, false) {
		io.Copy(c, up)
		return
	}
	passed := 0
	for {
		var h [6]byte // PDU type, reserved, length (PS3.8 9.3)
		if _, err := io.ReadFull(up, h[:]); err != nil {
			return
		}
		body := make([]byte, binary.BigEndian.Uint32(h[2:]))
		if _, err := io.ReadFull(up, body); err != nil {
			return
		}
		if h[0] == 0x04 {
			if passed == p.pass {
				close(p.stalled)
				io.Copy(io.Discard, up) // the sender waits for this response in vain
				return
			}
			passed++
		}
		if _, err := c.Write(append(h[:], body...)); err != nil {
			return
		}
	}
}
