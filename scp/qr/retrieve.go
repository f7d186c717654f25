package qr

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/store/index"
)

// instances resolves a retrieve identifier to the stored instances it
// names: the unique keys from the patient down to the request's level
// (PS3.4 C.4.2.2.1), in series then instance order.
func (s *Service) instances(ctx context.Context, q *request) ([]index.StoredInstance, error) {
	keys := map[string]string{"SeriesInstanceUID": ""}
	any := false
	for _, kw := range []string{"PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"} {
		if v := q.keys[kw]; v != "" {
			if strings.ContainsAny(v, "*?") {
				return nil, refuse(dimse.StatusIdentifierDoesNotMatch, "wildcard in unique key %s", kw)
			}
			keys[kw] = v
			any = true
		}
	}
	if !any {
		return nil, refuse(dimse.StatusIdentifierDoesNotMatch, "no unique key for level %s", q.level)
	}
	if q.keys[uniqueKey(q.level)] == "" {
		return nil, refuse(dimse.StatusIdentifierDoesNotMatch, "no %s for level %s", uniqueKey(q.level), q.level)
	}
	matches, err := s.idx.Find(ctx, index.Query{Level: index.ImageLevel, Keys: keys})
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	var series []string
	for _, m := range matches {
		want[m["SOPInstanceUID"]] = true
		if se := m["SeriesInstanceUID"]; !slices.Contains(series, se) {
			series = append(series, se)
		}
	}
	var out []index.StoredInstance
	for _, se := range series {
		ins, err := s.idx.Instances(ctx, se)
		if err != nil {
			return nil, err
		}
		for _, in := range ins {
			if want[in.SOPInstanceUID] {
				out = append(out, in)
			}
		}
	}
	return out, nil
}

// storer is one C-STORE sub-operation target: the C-MOVE destination's
// association or the C-GET requestor's.
type storer interface {
	Store(ctx context.Context, inst dimse.Instance) (*dimse.CStoreRSP, error)
}

// retrieval counts the sub-operations of one C-MOVE or C-GET.
type retrieval struct {
	sub    dimse.SubOperations
	failed []string
}

// send performs the sub-operations, reporting progress after each.
// It stops early when the requestor cancels or the target association
// fails; the remaining count then says how many were not attempted.
func (s *Service) send(ctx context.Context, ow dimse.OperationWriter, to storer, ins []index.StoredInstance, orig func(*dimse.Instance)) (*retrieval, bool) {
	rt := &retrieval{}
	rt.sub.NumberOfRemainingSuboperations = uint16(min(len(ins), 0xFFFF))
	for i, in := range ins {
		if ow.Cancelled() {
			return rt, true
		}
		err := s.sendOne(ctx, to, in, orig)
		rt.sub.NumberOfRemainingSuboperations = uint16(min(len(ins)-i-1, 0xFFFF))
		var se *dimse.StatusError
		switch {
		case err == nil:
			rt.sub.NumberOfCompletedSuboperations++
		case errors.As(err, &se) && se.Status.Class() == dimse.ClassWarning:
			rt.sub.NumberOfWarningSuboperations++
		default:
			s.log.Warn("sub-operation failed", "sop_instance", in.SOPInstanceUID, "err", err)
			rt.sub.NumberOfFailedSuboperations++
			rt.failed = append(rt.failed, in.SOPInstanceUID)
			if errors.Is(err, dimse.ErrAborted) || errors.Is(err, dimse.ErrReleased) {
				// The target is gone: the rest fail without trying.
				for _, rest := range ins[i+1:] {
					rt.failed = append(rt.failed, rest.SOPInstanceUID)
				}
				rt.sub.NumberOfFailedSuboperations += uint16(min(len(ins)-i-1, 0xFFFF))
				rt.sub.NumberOfRemainingSuboperations = 0
				return rt, false
			}
		}
		if i < len(ins)-1 {
			if err := ow.WriteProgress(rt.sub); err != nil {
				return rt, false
			}
		}
	}
	return rt, false
}

// sendOne stores one instance as it is stored, or, when the target takes
// its SOP class only in other syntaxes, decompressed to explicit VR little
// endian.
func (s *Service) sendOne(ctx context.Context, to storer, in index.StoredInstance, orig func(*dimse.Instance)) error {
	f, err := s.files.Open(ctx, in.Location)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	fm, err := dimse.ReadFileMeta(br)
	if err != nil {
		return fmt.Errorf("%s: %w", in.Location, err)
	}
	inst := dimse.Instance{SOPClassUID: fm.MediaStorageSOPClassUID, SOPInstanceUID: fm.MediaStorageSOPInstanceUID,
		TransferSyntaxUID: fm.TransferSyntaxUID, DataSet: br}
	if orig != nil {
		orig(&inst)
	}
	rsp, err := to.Store(ctx, inst)
	if errors.Is(err, dimse.ErrNoContext) && fm.TransferSyntaxUID != dimse.ExplicitVRLittleEndian {
		var native io.Reader
		native, err = Decompress(br, fm.TransferSyntaxUID)
		if err != nil {
			return err
		}
		inst.TransferSyntaxUID, inst.DataSet = dimse.ExplicitVRLittleEndian, native
		rsp, err = to.Store(ctx, inst)
	}
	if err == nil && rsp != nil && rsp.Status.Class() == dimse.ClassWarning {
		return &dimse.StatusError{Command: dimse.CStoreRSPField, Status: rsp.Status, ErrorComment: rsp.ErrorComment}
	}
	return err
}

// finish writes the final response of a C-MOVE or C-GET (PS3.4
// C.4.2.1.5): cancel, success, warning when some sub-operations failed or
// warned, failure when all failed.
func finish(ow dimse.OperationWriter, ts string, rt *retrieval, cancelled bool) {
	ow.SetSubOperations(rt.sub)
	if len(rt.failed) > 0 {
		id := &dimse.Identifier{}
		id.Set(tagFailedSOPInstanceUIDs, "UI", []byte(strings.Join(rt.failed, `\`)))
		if b, err := id.Encode(ts); err == nil {
			ow.SetIdentifier(b)
		}
	}
	switch {
	case cancelled:
		ow.WriteStatus(dimse.StatusCancel)
	case rt.sub.NumberOfFailedSuboperations > 0 && rt.sub.NumberOfCompletedSuboperations == 0 && rt.sub.NumberOfWarningSuboperations == 0:
		ow.WriteStatus(dimse.StatusOutOfResourcesSubOps)
		ow.SetErrorComment("all sub-operations failed")
	case rt.sub.NumberOfFailedSuboperations > 0 || rt.sub.NumberOfWarningSuboperations > 0:
		ow.WriteStatus(dimse.StatusSubOperationsWithFailures)
	default:
		ow.WriteStatus(dimse.StatusSuccess)
	}
}

// serveMove is the C-MOVE SCP (PS3.4 C.4.2.3): one association to the
// destination carries every sub-operation.
func (s *Service) serveMove(w dimse.ResponseWriter, r *dimse.Request) {
	ow, ok := w.(dimse.OperationWriter)
	if !ok {
		w.WriteStatus(dimse.StatusProcessingFailure)
		return
	}
	rq := r.Message.(*dimse.CMoveRQ)
	dest, ok := s.destination(rq.MoveDestination)
	if !ok {
		w.WriteStatus(dimse.StatusMoveDestinationUnknown)
		w.SetErrorComment("unknown move destination " + rq.MoveDestination)
		return
	}
	m, _ := modelOf(r.SOPClassUID())
	q, err := decode(r, m)
	if err != nil {
		writeRefusal(w, err)
		return
	}
	ctx := r.Context()
	ins, err := s.instances(ctx, q)
	if err != nil {
		writeRefusal(w, err)
		return
	}
	if len(ins) == 0 {
		w.WriteStatus(dimse.StatusSuccess)
		return
	}
	a, err := dimse.Dial(ctx, dest.Addr, dimse.DialOptions{CallingAETitle: s.opt.AETitle, CalledAETitle: rq.MoveDestination,
		Proposals: proposals(ins), TLSConfig: dest.TLSConfig})
	if err != nil {
		s.log.Warn("C-MOVE destination", "ae", rq.MoveDestination, "err", err)
		rt := &retrieval{}
		rt.sub.NumberOfFailedSuboperations = uint16(min(len(ins), 0xFFFF))
		for _, in := range ins {
			rt.failed = append(rt.failed, in.SOPInstanceUID)
		}
		finish(ow, r.TransferSyntaxUID(), rt, false)
		w.SetErrorComment("cannot reach " + rq.MoveDestination)
		return
	}
	orig := func(inst *dimse.Instance) {
		inst.MoveOriginatorAETitle = r.Association.CallingAETitle
		inst.MoveOriginatorMessageID = rq.MessageID
	}
	rt, cancelled := s.send(ctx, ow, a, ins, orig)
	if err := a.Release(ctx); err != nil {
		a.Abort()
	}
	s.log.Info("C-MOVE", "calling", r.Association.CallingAETitle, "destination", rq.MoveDestination,
		"completed", rt.sub.NumberOfCompletedSuboperations, "failed", rt.sub.NumberOfFailedSuboperations, "cancelled", cancelled)
	finish(ow, r.TransferSyntaxUID(), rt, cancelled)
}

// proposals offers each SOP class in each stored transfer syntax, plus
// the native ones for the decompressed fallback.
func proposals(ins []index.StoredInstance) []dimse.Proposal {
	pairs := make([][2]string, len(ins))
	for i, in := range ins {
		pairs[i] = [2]string{in.SOPClassUID, in.TransferSyntaxUID}
	}
	return dimse.StorageProposalsFor(pairs)
}

// serveGet is the C-GET SCP (PS3.4 C.4.3.3): sub-operations go back on
// the requestor's own association.
func (s *Service) serveGet(w dimse.ResponseWriter, r *dimse.Request) {
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
	ins, err := s.instances(ctx, q)
	if err != nil {
		writeRefusal(w, err)
		return
	}
	rt, cancelled := s.send(ctx, ow, ow, ins, nil)
	s.log.Info("C-GET", "calling", r.Association.CallingAETitle,
		"completed", rt.sub.NumberOfCompletedSuboperations, "failed", rt.sub.NumberOfFailedSuboperations, "cancelled", cancelled)
	finish(ow, r.TransferSyntaxUID(), rt, cancelled)
}
