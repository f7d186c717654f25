//go:build !unix

package dimse

import "net"

func peekSocket(net.Conn) (readable, ok bool) { return false, false }
