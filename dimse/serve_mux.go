package dimse

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
)

// Handler serves one DIMSE request. ServeDIMSE reads r.Body (if any) and
// calls w.WriteStatus once; the response goes out after it returns and the
// data set is fully received. A handler that panics or writes no status
// answers with StatusProcessingFailure.
//
// A C-STORE handler may answer success only once the instance is durable:
// the requestor may delete its copy on success (PS3.4 B.2.3).
type Handler interface {
	ServeDIMSE(w ResponseWriter, r *Request)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ResponseWriter, *Request)

// ServeDIMSE calls f(w, r).
func (f HandlerFunc) ServeDIMSE(w ResponseWriter, r *Request) { f(w, r) }

// ResponseWriter records the response to a request.
type ResponseWriter interface {
	// WriteStatus sets the final status of the response.
	WriteStatus(Status)
	// SetErrorComment sets Error Comment (0000,0902), at most 64 characters.
	SetErrorComment(string)
}

// Association facts a handler may look at.
type AssociationInfo struct {
	CallingAETitle string
	CalledAETitle  string
	RemoteAddr     net.Addr
	// TLS is the connection state for associations over TLS, else nil.
	TLS *tls.ConnectionState
	// UserIdentity is the requestor's user identity sub-item, if any.
	UserIdentity *UserIdentityRQ
}

// Request is one received DIMSE request.
type Request struct {
	Command             *Command
	Message             Message // *CEchoRQ, *CStoreRQ, *CFindRQ, ...
	PresentationContext PresentationContext
	Association         *AssociationInfo
	// Body streams the data set (C-STORE) or identifier (C-FIND, C-GET,
	// C-MOVE), encoded in PresentationContext.TransferSyntax; nil when the
	// request has none. It never holds more than one PDU in memory.
	Body io.Reader

	ctx context.Context
}

// Context is cancelled when the server closes. A Request built outside a
// server (in a test) has context.Background.
func (r *Request) Context() context.Context {
	if r.ctx == nil {
		return context.Background()
	}
	return r.ctx
}

// WithContext returns a shallow copy of r with its context set to ctx.
func (r *Request) WithContext(ctx context.Context) *Request {
	r2 := *r
	r2.ctx = ctx
	return &r2
}

// SOPClassUID is the request's Affected SOP Class UID.
func (r *Request) SOPClassUID() string { return r.Command.AffectedSOPClassUID }

// SOPInstanceUID is the request's Affected SOP Instance UID (C-STORE).
func (r *Request) SOPInstanceUID() string { return r.Command.AffectedSOPInstanceUID }

// TransferSyntaxUID is how Body is encoded.
func (r *Request) TransferSyntaxUID() string { return r.PresentationContext.TransferSyntax }

// response is the ResponseWriter of the server.
type response struct {
	status  Status
	comment string
	written bool
}

func (w *response) WriteStatus(s Status) {
	if !w.written {
		w.status, w.written = s, true
	}
}

func (w *response) SetErrorComment(s string) {
	if len(s) > 64 {
		s = s[:64]
	}
	w.comment = s
}

// ServeMux routes requests by command and Affected SOP Class UID. A route
// with an empty SOP class matches every class of its command. Without a
// route, C-ECHO succeeds (every AE answers Verification), C-STORE is
// refused with StatusSOPClassNotSupported and anything else gets
// StatusUnrecognizedOperation.
type ServeMux struct {
	routes map[muxKey]Handler
}

type muxKey struct {
	field    CommandField
	sopClass string
}

// NewServeMux returns an empty mux.
func NewServeMux() *ServeMux { return &ServeMux{routes: map[muxKey]Handler{}} }

// Handle registers h for requests of the command field (a request field
// such as CStoreRQField) and SOP class ("" for all). It panics on a
// duplicate registration, so bad routing fails at start-up.
func (mux *ServeMux) Handle(field CommandField, sopClass string, h Handler) {
	if h == nil || field.IsResponse() {
		panic(fmt.Sprintf("dimse: bad route %v %q", field, sopClass))
	}
	k := muxKey{field, sopClass}
	if mux.routes == nil {
		mux.routes = map[muxKey]Handler{}
	}
	if _, dup := mux.routes[k]; dup {
		panic(fmt.Sprintf("dimse: duplicate route %v %q", field, sopClass))
	}
	mux.routes[k] = h
}

// HandleFunc registers a function.
func (mux *ServeMux) HandleFunc(field CommandField, sopClass string, f func(ResponseWriter, *Request)) {
	mux.Handle(field, sopClass, HandlerFunc(f))
}

// ServeDIMSE dispatches to the most specific route.
func (mux *ServeMux) ServeDIMSE(w ResponseWriter, r *Request) {
	f := r.Command.CommandField
	if h, ok := mux.routes[muxKey{f, r.Command.AffectedSOPClassUID}]; ok {
		h.ServeDIMSE(w, r)
		return
	}
	if h, ok := mux.routes[muxKey{f, ""}]; ok {
		h.ServeDIMSE(w, r)
		return
	}
	switch f {
	case CEchoRQField:
		w.WriteStatus(StatusSuccess)
	case CStoreRQField:
		w.WriteStatus(StatusSOPClassNotSupported)
	default:
		w.WriteStatus(StatusUnrecognizedOperation)
	}
}
