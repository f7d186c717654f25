// Package qr is otonode's Query/Retrieve SCP (PS3.4 Annex C): C-FIND,
// C-MOVE and C-GET for the Patient Root and Study Root information models
// over the instance index and the stored files.
//
// Wiring into a dimse.Server:
//
//	svc := qr.New(idx, local, qr.Options{AETitle: "OTONODE", Destinations: dests})
//	svc.Register(mux)                          // the ServeMux of the server
//	srv.Syntaxes = append(qr.WithGetRole(storageSyntaxes), qr.Syntaxes()...)
package qr

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/store/files"
	"github.com/otonode/otonode/store/index"
)

// Index is what the service reads of the instance index
// (*index.Index).
type Index interface {
	Find(ctx context.Context, q index.Query) ([]index.Match, error)
	FindEach(ctx context.Context, q index.Query, fn func(index.Match) error) error
	Instances(ctx context.Context, seriesUID string) ([]index.StoredInstance, error)
}

// Files opens stored instance files by their index location
// (*files.Local).
type Files interface {
	Open(ctx context.Context, location string) (files.Reader, error)
}

// Destination is where C-MOVE sends instances for one AE title.
type Destination struct {
	Addr      string      // host:port
	TLSConfig *tls.Config // nil: plain TCP
}

// Options configure the service.
type Options struct {
	// AETitle is our AE title: the calling AE of C-MOVE sub-operation
	// associations and the Retrieve AE Title in C-FIND responses.
	AETitle string
	// Destinations maps C-MOVE destination AE titles to addresses.
	Destinations map[string]Destination
	// MaxMatches caps the responses of one C-FIND (0: no cap); beyond it
	// the SCP ends with "out of resources" (0xA700).
	MaxMatches int
	// Logger gets one line per operation; nil discards.
	Logger *slog.Logger
}

// Service serves Query/Retrieve requests.
type Service struct {
	idx   Index
	files Files
	opt   Options
	log   *slog.Logger

	mu    sync.Mutex
	dests map[string]Destination
}

// New returns the service over an index and the files it points to.
func New(idx Index, fs Files, opt Options) *Service {
	if opt.AETitle == "" {
		opt.AETitle = "OTONODE"
	}
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dests := make(map[string]Destination, len(opt.Destinations))
	for ae, d := range opt.Destinations {
		dests[ae] = d
	}
	return &Service{idx: idx, files: fs, opt: opt, log: log, dests: dests}
}

// SetDestination adds or replaces a C-MOVE destination while serving
// (a configuration reload); an empty Addr removes it.
func (s *Service) SetDestination(ae string, d Destination) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d.Addr == "" {
		delete(s.dests, ae)
		return
	}
	s.dests[ae] = d
}

func (s *Service) destination(ae string) (Destination, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.dests[ae]
	return d, ok
}

// model is one information model's SOP classes.
type model struct {
	name            string
	find, move, get string
	patientLevel    bool
}

var models = []model{
	{"Patient Root", dimse.PatientRootFind, dimse.PatientRootMove, dimse.PatientRootGet, true},
	{"Study Root", dimse.StudyRootFind, dimse.StudyRootMove, dimse.StudyRootGet, false},
}

func modelOf(sopClass string) (model, bool) {
	for _, m := range models {
		if sopClass == m.find || sopClass == m.move || sopClass == m.get {
			return m, true
		}
	}
	return model{}, false
}

// Syntaxes are the Query/Retrieve abstract syntaxes to add to the
// server's, in explicit and implicit VR little endian.
func Syntaxes() []dimse.Syntax {
	ts := []string{dimse.ExplicitVRLittleEndian, dimse.ImplicitVRLittleEndian}
	var out []dimse.Syntax
	for _, m := range models {
		for _, c := range []string{m.find, m.move, m.get} {
			out = append(out, dimse.Syntax{AbstractSyntax: c, TransferSyntaxes: ts})
		}
	}
	return out
}

// WithGetRole returns a copy of storage syntaxes that lets a C-GET SCU
// take the SCP role for them (role selection, PS3.7 D.3.3.4), so that
// C-GET can send those classes back.
func WithGetRole(storage []dimse.Syntax) []dimse.Syntax {
	out := make([]dimse.Syntax, len(storage))
	for i, s := range storage {
		s.SCPRole = s.AbstractSyntax != dimse.VerificationSOPClass
		out[i] = s
	}
	return out
}

// Register routes the six SOP classes' requests on mux.
func (s *Service) Register(mux *dimse.ServeMux) {
	for _, m := range models {
		mux.Handle(dimse.CFindRQField, m.find, dimse.HandlerFunc(s.serveFind))
		mux.Handle(dimse.CMoveRQField, m.move, dimse.HandlerFunc(s.serveMove))
		mux.Handle(dimse.CGetRQField, m.get, dimse.HandlerFunc(s.serveGet))
	}
}

// Tags the service reads or writes itself.
const (
	tagSpecificCharacterSet  dimse.Tag = 0x00080005
	tagQueryRetrieveLevel    dimse.Tag = 0x00080052
	tagRetrieveAETitle       dimse.Tag = 0x00080054
	tagFailedSOPInstanceUIDs dimse.Tag = 0x00080058
	tagPatientID             dimse.Tag = 0x00100020
	tagStudyInstanceUID      dimse.Tag = 0x0020000D
	tagSeriesInstanceUID     dimse.Tag = 0x0020000E
	tagSOPInstanceUID        dimse.Tag = 0x00080018
)

// request is a decoded identifier: level, character set and keys as
// UTF-8 keyword → value.
type request struct {
	id      *dimse.Identifier
	level   index.Level
	charset string
	keys    map[string]string
}

// errIdentifier is a request the SCP refuses with 0xA900 (identifier does
// not match SOP class) or, for character sets, 0xC000.
type refusal struct {
	status  dimse.Status
	comment string
}

func (r *refusal) Error() string { return r.comment }

func refuse(status dimse.Status, format string, args ...any) error {
	return &refusal{status: status, comment: fmt.Sprintf(format, args...)}
}

// writeRefusal answers err, a *refusal or an internal error.
func writeRefusal(w dimse.ResponseWriter, err error) {
	var rf *refusal
	if errors.As(err, &rf) {
		w.WriteStatus(rf.status)
		w.SetErrorComment(rf.comment)
		return
	}
	w.WriteStatus(dimse.StatusUnableToProcess)
	w.SetErrorComment(err.Error())
}

// decode reads and checks a request's identifier for the model.
func decode(r *dimse.Request, m model) (*request, error) {
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	id, err := dimse.ParseIdentifier(raw, r.TransferSyntaxUID())
	if err != nil {
		return nil, refuse(dimse.StatusIdentifierDoesNotMatch, "%v", err)
	}
	q := &request{id: id, charset: id.String(tagSpecificCharacterSet), keys: map[string]string{}}
	lv := index.Level(strings.ToUpper(strings.TrimSpace(id.String(tagQueryRetrieveLevel))))
	switch lv {
	case index.PatientLevel:
		if !m.patientLevel {
			return nil, refuse(dimse.StatusIdentifierDoesNotMatch, "level PATIENT is not in the %s model", m.name)
		}
	case index.StudyLevel, index.SeriesLevel, index.ImageLevel:
	case "":
		return nil, refuse(dimse.StatusIdentifierDoesNotMatch, "no Query/Retrieve Level (0008,0052)")
	default:
		return nil, refuse(dimse.StatusIdentifierDoesNotMatch, "unknown Query/Retrieve Level %q", lv)
	}
	q.level = lv
	for _, e := range id.Elements() {
		if e.Tag == tagSpecificCharacterSet || e.Tag == tagQueryRetrieveLevel || e.VR == "SQ" {
			continue
		}
		kw := e.Tag.Keyword()
		if kw == "" {
			continue
		}
		v, err := dimse.DecodeText(trimValue(e), q.charset)
		if err != nil {
			return nil, refuse(dimse.StatusCannotUnderstand, "%v", err)
		}
		q.keys[kw] = v
	}
	return q, nil
}

// trimValue removes padding: trailing spaces and NULs, and for text VRs
// other than UT, leading spaces too (PS3.5 6.2).
func trimValue(e dimse.Element) []byte {
	v := e.Value
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == 0) {
		v = v[:len(v)-1]
	}
	switch e.VR {
	case "UT", "UI", "UN", "OB", "OW":
	default:
		for len(v) > 0 && v[0] == ' ' {
			v = v[1:]
		}
	}
	return v
}
