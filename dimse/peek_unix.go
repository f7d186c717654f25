//go:build unix

package dimse

import (
	"net"
	"syscall"
)

// peekSocket reports, without blocking, whether the kernel holds unread
// bytes (or the end of the stream) on a plain TCP connection; ok is false
// when the connection is not one, or the probe failed.
func peekSocket(c net.Conn) (readable, ok bool) {
	sc, isSC := c.(syscall.Conn)
	if !isSC {
		return false, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false, false
	}
	var n int
	var rerr error
	var b [1]byte
	if err := rc.Read(func(fd uintptr) bool {
		n, _, rerr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true // never wait
	}); err != nil {
		return false, false
	}
	switch {
	case rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK || rerr == syscall.EINTR:
		return false, true
	case rerr != nil, n >= 0:
		// Data, end of stream (n == 0) or an error: the next receive
		// reports it.
		return true, true
	}
	return false, true
}
