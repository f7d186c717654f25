// Package scp is the otonode node: the C-ECHO and C-STORE service over
// package store, association policy (AE titles, SOP classes, transfer
// syntaxes, disk watermark), series completion, study-level selection,
// the outbox publisher and its reconciler, and the HTTP API beside the
// operations endpoints. Node puts them together for `otonode serve`.
package scp

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/store"
	"github.com/otonode/otonode/store/files"
)

// Storage is the DIMSE handler of the node: C-ECHO, and C-STORE into a
// store.Ingest. A C-STORE is answered only after Ingest.Store returned, so
// success means durable and indexed; a refusal gets its status and Error
// Comment and a log line that says why, and the association goes on.
type Storage struct {
	Ingest *store.Ingest
	// Releases learns which series each association sent (for completion
	// on release); nil skips that.
	Releases *Releases
	// Expecting is called after an instance whose data announce the
	// series' instance count, so completion by count need not wait for
	// the scheduler's next look; nil skips it.
	Expecting func()
	Metrics   *Metrics
	Logger    *slog.Logger
}

// ServeDIMSE implements dimse.Handler.
func (s *Storage) ServeDIMSE(w dimse.ResponseWriter, r *dimse.Request) {
	switch r.Command.CommandField {
	case dimse.CEchoRQField:
		w.WriteStatus(dimse.StatusSuccess)
	case dimse.CStoreRQField:
		s.store(w, r)
	default:
		w.WriteStatus(dimse.StatusUnrecognizedOperation)
	}
}

func (s *Storage) store(w dimse.ResponseWriter, r *dimse.Request) {
	log := s.Logger.With("calling", r.Association.CallingAETitle, "sop_instance_uid", r.SOPInstanceUID())
	m := files.Meta{
		SOPClassUID:       r.SOPClassUID(),
		SOPInstanceUID:    r.SOPInstanceUID(),
		TransferSyntaxUID: r.TransferSyntaxUID(),
		SourceAETitle:     r.Association.CallingAETitle,
	}
	st, err := s.Ingest.Store(r.Context(), r.Body, m)
	if err != nil {
		var rf *store.Refusal
		if errors.As(err, &rf) {
			reason := refusalReason(rf)
			s.Metrics.Refusals.WithLabelValues(reason).Inc()
			l := log
			if rf.SeriesInstanceUID != "" {
				l = log.With("series_instance_uid", rf.SeriesInstanceUID)
			}
			l.Warn("C-STORE refused", "status", dimse.Status(rf.Status()).String(), "reason", reason,
				"comment", rf.Comment, "err", rf.Err)
			w.SetErrorComment(rf.Comment)
			w.WriteStatus(dimse.Status(rf.Status()))
			return
		}
		s.Metrics.Refusals.WithLabelValues("internal").Inc()
		log.Error("C-STORE failed", "err", err)
		w.SetErrorComment("internal error storing the instance; retry")
		w.WriteStatus(dimse.StatusProcessingFailure)
		return
	}
	series := st.Attrs.SeriesInstanceUID
	if st.Recorded.Duplicate {
		s.Metrics.Duplicates.Inc()
	} else {
		s.Metrics.Instances.Inc()
		s.Metrics.Bytes.Add(float64(st.Size))
	}
	if st.Outcome == files.NewVersion {
		log.Warn("instance re-sent with other bytes, kept as a new version", "series_instance_uid", series,
			"version", st.Version)
	}
	if st.Recorded.Cancelled > 0 {
		log.Info("late instance opened a new revision; the queued one is cancelled", "series_instance_uid", series,
			"revision", st.Recorded.Revision, "cancelled", st.Recorded.Cancelled)
	}
	if s.Releases != nil {
		s.Releases.add(r.Association.RemoteAddr, series)
	}
	if s.Expecting != nil && (st.Attrs.ImagesInAcquisition != nil || st.Attrs.NumberOfSlices != nil) {
		s.Expecting()
	}
	log.Debug("stored", "series_instance_uid", series, "bytes", st.Size)
	w.WriteStatus(dimse.StatusSuccess)
}

func refusalReason(rf *store.Refusal) string {
	switch rf.Kind {
	case store.OutOfResources:
		return "out-of-resources"
	case store.DataSetMismatch:
		return "dataset-mismatch"
	case store.CannotUnderstand:
		if errors.Is(rf.Err, files.ErrInvalidUID) {
			return "invalid-uid"
		}
		return "cannot-understand"
	}
	return "other"
}

// Releases tracks, per transport connection, the series its association
// stored instances of, and reports them when the association is released
// (A-RELEASE-RP sent): the start of their quiet period. An aborted
// association reports nothing; its series complete by inactivity.
//
// dimse.Server has no release hook, so Releases wraps the listener and
// recognises the 10-byte A-RELEASE-RP (PS3.8 9.3.7) the server writes.
type Releases struct {
	// OnRelease is called with the series of a released association.
	OnRelease func(series []string, at time.Time)

	mu    sync.Mutex
	conns map[string]map[string]struct{}
}

func (rs *Releases) add(remote net.Addr, series string) {
	if remote == nil {
		return
	}
	k := remote.String()
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.conns == nil {
		rs.conns = map[string]map[string]struct{}{}
	}
	set := rs.conns[k]
	if set == nil {
		set = map[string]struct{}{}
		rs.conns[k] = set
	}
	set[series] = struct{}{}
}

func (rs *Releases) take(k string) []string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	set := rs.conns[k]
	delete(rs.conns, k)
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	return out
}

// Listener wraps l so that releases are seen; gauge counts open
// connections (nil: none).
func (rs *Releases) Listener(l net.Listener, m *Metrics) net.Listener {
	return &relListener{Listener: l, rs: rs, m: m}
}

type relListener struct {
	net.Listener
	rs *Releases
	m  *Metrics
}

func (l *relListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if l.m != nil {
		l.m.ActiveAssociations.Inc()
	}
	return &relConn{Conn: c, l: l, key: c.RemoteAddr().String()}, nil
}

type relConn struct {
	net.Conn
	l        *relListener
	key      string
	once     sync.Once
	released bool
}

// Write passes b on; the A-RELEASE-RP is a PDU of its own, type 6, length 4.
func (c *relConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err == nil && len(b) == 10 && b[0] == byte(dimse.TypeAReleaseRP) && b[5] == 4 && !c.released {
		c.released = true
		if series := c.l.rs.take(c.key); len(series) > 0 && c.l.rs.OnRelease != nil {
			c.l.rs.OnRelease(series, time.Now())
		}
	}
	return n, err
}

func (c *relConn) Close() error {
	c.once.Do(func() {
		c.l.rs.take(c.key) // aborted or rejected: forget, no release
		if c.l.m != nil {
			c.l.m.ActiveAssociations.Dec()
		}
	})
	return c.Conn.Close()
}

// Admission is the association policy the dimse policy does not cover:
// the calling-AE allowlist (checked here to count and log rejections) and
// the disk watermark, which refuses new associations when the store would
// refuse their instances anyway.
type Admission struct {
	Peers   []dimse.PeerRule
	Files   store.Files
	Metrics *Metrics
	Logger  *slog.Logger
}

// Accept is dimse.Server.Accept.
func (a *Admission) Accept(rq *dimse.AAssociateRQ, remote net.Addr) *dimse.RejectError {
	var addr netip.Addr
	if ap, err := netip.ParseAddrPort(remote.String()); err == nil {
		addr = ap.Addr()
	}
	if !admits(a.Peers, rq.CallingAETitle, addr) {
		a.Metrics.Associations.WithLabelValues("rejected").Inc()
		a.Logger.Warn("A-ASSOCIATE-RJ: calling AE title not allowed", "calling", rq.CallingAETitle, "remote", remote.String())
		return dimse.ErrCallingAETitleNotRecognized
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Files.Admit(ctx); err != nil {
		a.Metrics.Associations.WithLabelValues("rejected").Inc()
		a.Logger.Warn("A-ASSOCIATE-RJ: storage above the watermark", "calling", rq.CallingAETitle, "err", err)
		return &dimse.RejectError{Result: dimse.RejectedTransient, Source: dimse.SourceServiceProviderPresentation,
			Reason: dimse.ReasonTemporaryCongestion}
	}
	a.Metrics.Associations.WithLabelValues("accepted").Inc()
	return nil
}
