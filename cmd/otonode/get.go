package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/scp"
	"github.com/otonode/otonode/store/files"
)

func runGet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f qrFlags
	f.register(fs)
	out := fs.String("out", ".", "folder the retrieved instances are written to (SOPInstanceUID.dcm)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: otonode get --host HOST --port PORT --called-aet AE --out DIR [--model study|patient] --level LEVEL -k Keyword=value...\n\n"+
			"Retrieve the matching instances by C-GET over the same association and write them as files.\n"+
			"Example: otonode get --out series/ --level SERIES -k StudyInstanceUID=1.2.3 -k SeriesInstanceUID=1.2.3.4")
		fs.PrintDefaults()
	}
	class, id, err := f.parse(fs, args, "get")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	opts := f.options()
	storage := scp.StorageSOPClasses()
	if len(storage) > 120 {
		storage = storage[:120]
	}
	for _, c := range storage {
		// One context per class with every syntax we can keep: the peer
		// picks, and sends the rest decompressed.
		opts.Proposals = append(opts.Proposals, dimse.Proposal{AbstractSyntax: c, TransferSyntaxes: []string{
			dimse.ExplicitVRLittleEndian, dimse.ImplicitVRLittleEndian, dimse.JPEGLosslessSV1, dimse.JPEGLossless, dimse.RLELossless}})
	}
	opts.RoleSelections = dimse.RetrieveRoles(storage...)
	start := time.Now()
	a, err := f.dial(ctx, opts, class)
	if err != nil {
		return err
	}
	var writeErr error
	h := dimse.HandlerFunc(func(w dimse.ResponseWriter, r *dimse.Request) {
		if err := writeInstance(*out, r); err != nil {
			writeErr = err
			w.WriteStatus(dimse.StatusOutOfResources)
			w.SetErrorComment("cannot write the file")
			return
		}
		w.WriteStatus(dimse.StatusSuccess)
	})
	res, err := a.Get(ctx, class, id, h, func(s dimse.SubOperations) { retrieveBar(stderr, s) })
	if err != nil {
		a.Abort()
		if res != nil {
			printRetrieve(stdout, "got", res, *out, time.Since(start))
		}
		return err
	}
	if err := a.Release(ctx); err != nil {
		return err
	}
	printRetrieve(stdout, "got", res, *out, time.Since(start))
	if writeErr != nil {
		return writeErr
	}
	if res.NumberOfFailedSuboperations > 0 {
		return fmt.Errorf("%d sub-operations failed", res.NumberOfFailedSuboperations)
	}
	return nil
}

// writeInstance writes a received C-STORE as a Part-10 file named for its
// SOP instance UID, through a temporary name so no partial file remains.
func writeInstance(dir string, r *dimse.Request) error {
	uid, err := files.CleanUID(r.SOPInstanceUID())
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".get-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	fm := dimse.FileMeta{MediaStorageSOPClassUID: r.SOPClassUID(), MediaStorageSOPInstanceUID: r.SOPInstanceUID(),
		TransferSyntaxUID: r.TransferSyntaxUID(), SourceApplicationEntityTitle: r.Association.CalledAETitle}
	err = dimse.WriteFileMeta(tmp, fm)
	if err == nil {
		_, err = io.Copy(tmp, r.Body)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, uid+".dcm"))
}
