package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/scp/events"
	"github.com/otonode/otonode/store/files"
)

// CT storage SOP classes a worker retrieves (the analysis reads CT).
var retrieveClasses = []string{
	dimse.CTImageStorage,
	"1.2.840.10008.5.1.4.1.1.2.1", // Enhanced CT Image Storage
	"1.2.840.10008.5.1.4.1.1.2.2", // Legacy Converted Enhanced CT Image Storage
}

// input returns the files of the job's series revision: the node's own
// files when this worker can read them, else a C-GET from the node into a
// temporary folder that cleanup removes.
func (w *Worker) input(ctx context.Context, job events.SeriesComplete, log *slog.Logger) (paths []string, cleanup func(), err error) {
	if local, ok := w.localFiles(ctx, job); ok {
		log.Debug("reading the node's files", "files", len(local))
		return local, func() {}, nil
	}
	dir, err := os.MkdirTemp(w.TempDir, "otonode-get-*")
	if err != nil {
		return nil, nil, fmt.Errorf("worker: temporary folder: %w", err)
	}
	cleanup = func() { os.RemoveAll(dir) }
	paths, err = w.retrieve(ctx, job, dir)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	log.Info("series retrieved by C-GET", "files", len(paths), "node", w.nodeAddr(job.Source))
	return paths, cleanup, nil
}

// localFiles lists the revision's source instances from the index and
// reports whether every file is readable here. The node makes an
// instance's file shortly after it acknowledged the instance (files are
// durable in a segment first), so a missing file is waited for a little
// before the worker falls back to C-GET.
func (w *Worker) localFiles(ctx context.Context, job events.SeriesComplete) ([]string, bool) {
	dir := job.Source.DataDir
	if w.DataDir != "" {
		dir = w.DataDir
	}
	if dir == "" || dir == "-" {
		return nil, false
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, false
	}
	ins, err := w.Index.Instances(ctx, job.SeriesInstanceUID)
	if err != nil || len(ins) == 0 {
		return nil, false
	}
	var out []string
	deadline := time.Now().Add(localWait)
	for _, in := range ins {
		if in.Result || in.Revision > job.Revision {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(in.Location))
		for {
			st, err := os.Stat(p)
			if err == nil && st.Mode().IsRegular() {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return nil, false
			}
			time.Sleep(50 * time.Millisecond)
		}
		out = append(out, p)
	}
	return out, len(out) > 0
}

// localWait is how long the worker waits for the node's files to appear.
const localWait = 5 * time.Second

// node returns the node's DICOM address: the job's, with the worker's
// overrides.
func (w *Worker) node(src events.Source) events.Source {
	if w.Node.AETitle != "" {
		src.AETitle = w.Node.AETitle
	}
	if w.Node.Host != "" {
		src.Host = w.Node.Host
	}
	if w.Node.Port != 0 {
		src.Port = w.Node.Port
	}
	return src
}

func (w *Worker) nodeAddr(src events.Source) string {
	n := w.node(src)
	return net.JoinHostPort(n.Host, strconv.Itoa(n.Port))
}

// retrieve fetches the series by C-GET (Study Root, SERIES level) into dir.
func (w *Worker) retrieve(ctx context.Context, job events.SeriesComplete, dir string) ([]string, error) {
	n := w.node(job.Source)
	if n.Host == "" || n.Port == 0 {
		return nil, fmt.Errorf("%w: the job names no readable data directory and no DICOM address", ErrPermanent)
	}
	opts := dimse.DialOptions{CallingAETitle: w.AETitle, CalledAETitle: n.AETitle,
		Proposals:      []dimse.Proposal{{AbstractSyntax: dimse.StudyRootGet, TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian, dimse.ImplicitVRLittleEndian}}},
		RoleSelections: dimse.RetrieveRoles(retrieveClasses...)}
	for _, c := range retrieveClasses {
		// Uncompressed only: the node decompresses what it stored otherwise.
		opts.Proposals = append(opts.Proposals, dimse.Proposal{AbstractSyntax: c,
			TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian, dimse.ImplicitVRLittleEndian}})
	}
	a, err := dimse.Dial(ctx, w.nodeAddr(job.Source), opts)
	if err != nil {
		return nil, fmt.Errorf("worker: C-GET from %s: %w", w.nodeAddr(job.Source), err)
	}
	id := &dimse.Identifier{}
	id.SetString(0x00080052, "SERIES")
	id.SetString(0x0020000D, job.StudyInstanceUID)
	id.SetString(0x0020000E, job.SeriesInstanceUID)
	var paths []string
	var writeErr error
	h := dimse.HandlerFunc(func(rw dimse.ResponseWriter, r *dimse.Request) {
		p, err := saveInstance(dir, r)
		if err != nil {
			writeErr = err
			rw.WriteStatus(dimse.StatusOutOfResources)
			return
		}
		paths = append(paths, p)
		rw.WriteStatus(dimse.StatusSuccess)
	})
	res, err := a.Get(ctx, dimse.StudyRootGet, id, h, nil)
	if err != nil {
		a.Abort()
		return nil, fmt.Errorf("worker: C-GET: %w", err)
	}
	if err := a.Release(ctx); err != nil {
		return nil, fmt.Errorf("worker: C-GET release: %w", err)
	}
	if err := errors.Join(writeErr); err != nil {
		return nil, fmt.Errorf("worker: C-GET: %w", err)
	}
	if res.NumberOfFailedSuboperations > 0 {
		return nil, fmt.Errorf("worker: C-GET: %d sub-operations failed", res.NumberOfFailedSuboperations)
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("%w: the node returned no instance of series %s", ErrPermanent, job.SeriesInstanceUID)
	}
	return paths, nil
}

// saveInstance writes a C-STORE sub-operation as a Part 10 file named for
// its SOP Instance UID.
func saveInstance(dir string, r *dimse.Request) (string, error) {
	uid, err := files.CleanUID(r.SOPInstanceUID())
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, uid+".dcm")
	f, err := os.Create(p)
	if err != nil {
		return "", err
	}
	err = dimse.WriteFileMeta(f, dimse.FileMeta{MediaStorageSOPClassUID: r.SOPClassUID(),
		MediaStorageSOPInstanceUID: r.SOPInstanceUID(), TransferSyntaxUID: r.TransferSyntaxUID()})
	if err == nil {
		_, err = io.Copy(f, r.Body)
	}
	return p, errors.Join(err, f.Close())
}
