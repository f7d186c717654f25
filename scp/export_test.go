package scp

import "github.com/nats-io/nats.go"

// embeddedConn opens a client connection to the node's broker (tests).
func (n *Node) embeddedConn() (*nats.Conn, error) {
	if n.embedded != nil {
		return n.embedded.Connect()
	}
	return nats.Connect(n.Config.NATS.URL)
}
