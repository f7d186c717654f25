package dimsetest

import (
	"io"
	"net"

	"github.com/otonode/otonode/dimse"
)

// ResponseRecorder is a dimse.ResponseWriter that remembers what the
// handler answered, for testing handlers without a network.
type ResponseRecorder struct {
	Status       dimse.Status
	ErrorComment string
	Written      bool
}

// NewRecorder returns an empty recorder.
func NewRecorder() *ResponseRecorder { return &ResponseRecorder{} }

// WriteStatus records the first status, as the server does.
func (rr *ResponseRecorder) WriteStatus(s dimse.Status) {
	if !rr.Written {
		rr.Status, rr.Written = s, true
	}
}

// SetErrorComment records the error comment.
func (rr *ResponseRecorder) SetErrorComment(s string) { rr.ErrorComment = s }

// NewStoreRequest builds the C-STORE request a handler would get from a
// peer with AE title callingAE sending body in transfer syntax ts.
func NewStoreRequest(sopClass, sopInstance, ts, callingAE string, body io.Reader) *dimse.Request {
	rq := &dimse.CStoreRQ{MessageID: 1, AffectedSOPClassUID: sopClass, AffectedSOPInstanceUID: sopInstance}
	cmd := rq.Command()
	return &dimse.Request{
		Command: cmd,
		Message: rq,
		PresentationContext: dimse.PresentationContext{ID: 1, AbstractSyntax: sopClass, TransferSyntax: ts,
			Result: dimse.Acceptance, RequestorSCU: true},
		Association: &dimse.AssociationInfo{CallingAETitle: callingAE, CalledAETitle: "DIMSETEST",
			RemoteAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 104}},
		Body: body,
	}
}
