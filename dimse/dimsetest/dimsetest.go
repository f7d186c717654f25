// Package dimsetest runs a dimse.Server on a loopback port for tests, in
// the manner of net/http/httptest.
package dimsetest

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/otonode/otonode/dimse"
)

// Server is a dimse.Server listening on 127.0.0.1 on a port the system
// chose.
type Server struct {
	// Addr is host:port of the listener.
	Addr string
	// Server is the server being run; do not change it once started.
	Server *dimse.Server
	done   chan error
}

// NewServer starts s (a zero Server when nil) on 127.0.0.1:0. Call Close
// when done.
func NewServer(s *dimse.Server) *Server {
	if s == nil {
		s = &dimse.Server{}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic("dimsetest: listen: " + err.Error())
	}
	ts := &Server{Addr: l.Addr().String(), Server: s, done: make(chan error, 1)}
	go func() { ts.done <- s.Serve(l) }()
	return ts
}

// Host and Port split Addr for tools that want them apart.
func (ts *Server) Host() string { h, _, _ := net.SplitHostPort(ts.Addr); return h }

// Port returns the port of Addr.
func (ts *Server) Port() string { _, p, _ := net.SplitHostPort(ts.Addr); return p }

// Close shuts the server down, giving associations a second to finish, and
// returns Serve's error if it was anything but dimse.ErrServerClosed.
func (ts *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	ts.Server.Shutdown(ctx)
	if err := <-ts.done; !errors.Is(err, dimse.ErrServerClosed) {
		return err
	}
	return nil
}
