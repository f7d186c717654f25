package qr

import (
	"errors"
	"strings"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/store/index"
)

// serveFind is the C-FIND SCP (PS3.4 C.4.1.3).
func (s *Service) serveFind(w dimse.ResponseWriter, r *dimse.Request) {
	ow, ok := w.(dimse.OperationWriter)
	if !ok {
		w.WriteStatus(dimse.StatusProcessingFailure)
		return
	}
	m, _ := modelOf(r.SOPClassUID())
	q, err := decode(r, m)
	if err != nil {
		writeRefusal(w, err)
		return
	}
	ctx := r.Context()
	iq := index.Query{Level: q.level, Keys: q.keys}
	if s.opt.MaxMatches > 0 {
		iq.Limit = s.opt.MaxMatches + 1
	}
	// Each match goes out as a pending response as the database returns
	// it; stop ends the query early without being an error.
	sent := 0
	stop := errors.New("stop")
	var final dimse.Status
	var comment string
	err = s.idx.FindEach(ctx, iq, func(match index.Match) error {
		if ow.Cancelled() {
			final = dimse.StatusCancel
			return stop
		}
		if s.opt.MaxMatches > 0 && sent == s.opt.MaxMatches {
			final, comment = dimse.StatusOutOfResourcesMatches, "too many matches; narrow the query"
			return stop
		}
		b, err := s.response(q, match).Encode(r.TransferSyntaxUID())
		if err != nil {
			return err
		}
		if err := ow.WritePending(b); err != nil {
			return err // the association is gone
		}
		sent++
		return nil
	})
	switch {
	case errors.Is(err, stop):
		w.WriteStatus(final)
		if comment != "" {
			w.SetErrorComment(comment)
		}
		return
	case errors.Is(err, index.ErrUnsupportedKey):
		writeRefusal(w, refuse(dimse.StatusIdentifierDoesNotMatch, "%v", err))
		return
	case err != nil && sent > 0:
		s.log.Warn("C-FIND ended early", "err", err, "sent", sent)
		writeRefusal(w, err)
		return
	case err != nil:
		s.log.Error("C-FIND", "err", err)
		writeRefusal(w, err)
		return
	}
	s.log.Info("C-FIND", "calling", r.Association.CallingAETitle, "level", string(q.level), "matches", sent)
	if ow.Cancelled() {
		w.WriteStatus(dimse.StatusCancel)
		return
	}
	w.WriteStatus(dimse.StatusSuccess)
}

// response builds one match's identifier: exactly the requested keys,
// with the level's unique key, the Query/Retrieve Level and, when the
// values need one, the Specific Character Set (PS3.4 C.4.1.1.3.2).
func (s *Service) response(q *request, match index.Match) *dimse.Identifier {
	out := &dimse.Identifier{}
	out.SetString(tagQueryRetrieveLevel, string(q.level))
	charset := q.charset
	// The query's character set if every value fits it, else UTF-8.
	fits := true
	for _, v := range match {
		if _, ok := dimse.EncodeText(v, charset); !ok {
			fits = false
			break
		}
	}
	if !fits {
		charset = "ISO_IR 192"
	}
	if charset != "" {
		out.SetString(tagSpecificCharacterSet, charset)
	}
	set := func(t dimse.Tag, vr, v string) {
		b, _ := dimse.EncodeText(v, charset)
		out.Set(t, vr, b)
	}
	for _, e := range q.id.Elements() {
		switch {
		case e.Tag == tagSpecificCharacterSet || e.Tag == tagQueryRetrieveLevel:
			continue
		case e.VR == "SQ":
			out.Set(e.Tag, "SQ", nil) // sequence matching is not supported: returned empty
			continue
		case e.Tag == tagRetrieveAETitle:
			set(e.Tag, e.VR, s.opt.AETitle)
			continue
		}
		v := match[e.Tag.Keyword()] // "" for a key the index does not hold
		set(e.Tag, e.VR, v)
	}
	// The unique key of the level is always returned (PS3.4 C.4.1.1.3.1).
	for _, kw := range []string{uniqueKey(q.level)} {
		t, vr, _ := dimse.LookupKeyword(kw)
		if !out.Has(t) {
			set(t, vr, match[kw])
		}
	}
	return out
}

func uniqueKey(l index.Level) string {
	switch l {
	case index.PatientLevel:
		return "PatientID"
	case index.StudyLevel:
		return "StudyInstanceUID"
	case index.SeriesLevel:
		return "SeriesInstanceUID"
	}
	return "SOPInstanceUID"
}

// splitUIDs splits a UID list value.
func splitUIDs(v string) []string {
	var out []string
	for _, u := range strings.Split(v, `\`) {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}
