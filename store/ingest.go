package store

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/otonode/otonode/store/files"
	"github.com/otonode/otonode/store/header"
	"github.com/otonode/otonode/store/index"
)

// Files is where instance files live: the seam between the node and its
// storage. *files.Local (the local file system) is the first
// implementation; a shared store (object store, shared volume) for several
// ingest nodes is the next.
type Files interface {
	// Admit reports files.ErrInsufficientStorage above the watermark.
	Admit(ctx context.Context) error
	// Put makes one instance durable or refuses it, leaving nothing.
	Put(ctx context.Context, r io.Reader, m files.Meta, locate files.Locator) (files.Stored, error)
	Open(ctx context.Context, location string) (files.Reader, error)
	Remove(ctx context.Context, location string) error
	// Walk lists the stored files modified since a time (Reindex).
	Walk(ctx context.Context, since time.Time, fn func(files.FileInfo) error) error
	// Flush waits until every instance Put so far is a file that Walk
	// lists (Put makes an instance durable; its own file may come later).
	Flush(ctx context.Context) error
	// Mark and SetMark keep a time under a name, durably (Reindex).
	Mark(ctx context.Context, name string) (time.Time, error)
	SetMark(ctx context.Context, name string, t time.Time) error
}

// Index is what Ingest and retention need of the index; *index.Index has it.
type Index interface {
	RecordInstance(ctx context.Context, in index.Instance) (index.Recorded, error)
	ExpiredSources(ctx context.Context, endedBefore time.Time, limit int) ([]index.StoredInstance, error)
	MarkDeleted(ctx context.Context, sopInstanceUID string, version int, at time.Time) error
	HasInstance(ctx context.Context, sopInstanceUID string, version int) (bool, error)
}

// Ingest stores instances in the order that makes a success response
// safe: file durable, then indexed, then return.
type Ingest struct {
	Files  Files
	Index  Index
	Limits header.Limits // zero fields: the header.Default… limits
	// IsResult tells objects otonode made (its SEG and SR, coming back
	// from the worker) from source instances; retention never deletes
	// results. Nil: everything is a source.
	IsResult func(files.Meta, *header.Attributes) bool
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Log receives failures of the background hash updates (nil: none).
	Log *slog.Logger

	// early holds data set hashes that came before their index rows
	// (RecordHashes), keyed by hashKey.
	mu    sync.Mutex
	early map[string]string
}

// Stored is what Ingest.Store did with one instance.
type Stored struct {
	files.Stored
	Attrs    *header.Attributes
	Recorded index.Recorded
}

// Store writes the data set read from r (in the transfer syntax m names,
// bytes kept verbatim) as a Part 10 file, makes it durable, indexes it,
// and returns. Only then may the SCP answer success. A *Refusal says why
// an instance was not stored; anything else is an internal failure.
func (g *Ingest) Store(ctx context.Context, r io.Reader, m files.Meta) (Stored, error) {
	m, err := m.Clean()
	if err != nil {
		return Stored{}, refusal(err)
	}
	var attrs, parsed *header.Attributes
	locate := func(ra io.ReaderAt, off, size int64) (string, string, error) {
		a, err := header.ParseDataSet(io.NewSectionReader(ra, off, size-off), m.TransferSyntaxUID, g.Limits)
		if err != nil {
			return "", "", err
		}
		parsed = a
		if a.SOPInstanceUID != m.SOPInstanceUID || a.SOPClassUID != m.SOPClassUID {
			return "", "", &Refusal{Kind: DataSetMismatch, Comment: "SOP class/instance UID differ from the command",
				Err: fmt.Errorf("store: data set has SOP %s/%s, command %s/%s", a.SOPClassUID, a.SOPInstanceUID,
					m.SOPClassUID, m.SOPInstanceUID)}
		}
		attrs = a
		return a.StudyInstanceUID, a.SeriesInstanceUID, nil
	}
	st, err := g.Files.Put(ctx, r, m, locate)
	if err != nil {
		err = refusal(err)
		var rf *Refusal
		if errors.As(err, &rf) && parsed != nil && rf.SeriesInstanceUID == "" {
			rf.SeriesInstanceUID = parsed.SeriesInstanceUID
		}
		return Stored{}, err
	}
	now := time.Now
	if g.Now != nil {
		now = g.Now
	}
	in := index.Instance{
		Attrs: attrs, Location: st.Location, Version: st.Version, Size: st.Size,
		SourceAE: m.SourceAETitle, ReceivedAt: now(),
	}
	if st.DataSetSHA256 != ([32]byte{}) {
		in.SHA256 = hex.EncodeToString(st.DataSetSHA256[:])
	}
	if g.IsResult != nil {
		in.Result = g.IsResult(m, attrs)
	}
	rec, err := g.Index.RecordInstance(ctx, in)
	if err != nil {
		// The file is durable but not indexed: no success for the sender,
		// whose retry finds the file (Duplicate) and indexes it.
		return Stored{}, fmt.Errorf("store: index %s: %w", st.Location, err)
	}
	if in.SHA256 == "" {
		g.lateHash(ctx, m.SOPInstanceUID, st.Version)
	}
	return Stored{Stored: st, Attrs: attrs, Recorded: rec}, nil
}

// RefusalKind classifies why an instance was refused.
type RefusalKind int

const (
	// OutOfResources: the disk watermark or quota (C-STORE 0xA700).
	OutOfResources RefusalKind = iota + 1
	// DataSetMismatch: the data set's SOP class or instance differs from
	// the command (0xA900).
	DataSetMismatch
	// CannotUnderstand: the data set or a UID cannot be decoded (0xC000).
	CannotUnderstand
)

// Refusal is an instance the node will not store, with the reason for the
// Error Comment (0000,0902).
type Refusal struct {
	Kind    RefusalKind
	Comment string // ≤ 64 ASCII characters
	Err     error
	// SeriesInstanceUID is the series the data set names, when its header
	// could be read (for the log line).
	SeriesInstanceUID string
}

func (r *Refusal) Error() string { return "store: refused: " + r.Err.Error() }
func (r *Refusal) Unwrap() error { return r.Err }

// Status is the C-STORE failure status of PS3.4 B.2.3 for the refusal.
func (r *Refusal) Status() uint16 {
	switch r.Kind {
	case OutOfResources:
		return 0xA700
	case DataSetMismatch:
		return 0xA900
	}
	return 0xC000
}

// refusal turns the errors of Put into a *Refusal where the sender is at
// fault or storage is full; other errors stay internal.
func refusal(err error) error {
	var r *Refusal
	var he *header.Error
	switch {
	case errors.As(err, &r):
		return err
	case errors.Is(err, files.ErrInsufficientStorage):
		return &Refusal{Kind: OutOfResources, Comment: "storage above the disk watermark", Err: err}
	case errors.As(err, &he):
		return &Refusal{Kind: CannotUnderstand, Comment: he.Comment(), Err: err}
	case errors.Is(err, files.ErrInvalidUID):
		return &Refusal{Kind: CannotUnderstand, Comment: comment(err.Error()), Err: err}
	}
	return err
}

// comment shortens a message to an Error Comment: LO, 64 characters, no
// backslash or control characters.
func comment(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e || c == '\\' {
			b[i] = '?'
		}
	}
	if len(b) > 64 {
		b = append(b[:61], "..."...)
	}
	return string(b)
}
