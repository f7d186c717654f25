package dimse_test

import (
	"context"
	"log"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/otonode/otonode/dimse"
)

// A storage SCP that answers success only once the instance is durable.
func ExampleServer() {
	dir := os.TempDir()
	mux := dimse.NewServeMux()
	mux.HandleFunc(dimse.CStoreRQField, "", func(w dimse.ResponseWriter, r *dimse.Request) {
		tmp, err := os.CreateTemp(dir, "incoming-*")
		if err != nil {
			w.WriteStatus(dimse.StatusOutOfResources)
			return
		}
		defer os.Remove(tmp.Name()) // a no-op once renamed
		err = dimse.WriteFileMeta(tmp, dimse.FileMeta{
			MediaStorageSOPClassUID:      r.SOPClassUID(),
			MediaStorageSOPInstanceUID:   r.SOPInstanceUID(),
			TransferSyntaxUID:            r.TransferSyntaxUID(),
			SourceApplicationEntityTitle: r.Association.CallingAETitle,
		})
		if err == nil {
			_, err = tmp.ReadFrom(r.Body) // streams; never the whole instance in memory
		}
		if err == nil {
			err = tmp.Sync()
		}
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), filepath.Join(dir, r.SOPInstanceUID()+".dcm"))
		}
		if err != nil {
			w.SetErrorComment(err.Error())
			w.WriteStatus(dimse.StatusOutOfResources)
			return
		}
		w.WriteStatus(dimse.StatusSuccess)
	})
	srv := &dimse.Server{
		Addr:    "127.0.0.1:11112",
		AETitle: "OTONODE",
		Syntaxes: []dimse.Syntax{
			{AbstractSyntax: dimse.VerificationSOPClass, TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian, dimse.ImplicitVRLittleEndian}},
			{AbstractSyntax: dimse.CTImageStorage, TransferSyntaxes: []string{dimse.JPEGLosslessSV1, dimse.ExplicitVRLittleEndian, dimse.ImplicitVRLittleEndian}},
		},
		Handler:         mux,
		MaxAssociations: 32,
		Logger:          slog.Default(),
	}
	_ = srv.ListenAndServe // srv.ListenAndServe(ctx) serves until ctx ends
}

// Storing a file on a peer, in the file's own transfer syntax.
func ExampleDial() {
	ctx := context.Background()
	path := "ct.dcm"
	a, err := dimse.Dial(ctx, "pacs.example:104", dimse.DialOptions{
		CallingAETitle: "OTONODE",
		CalledAETitle:  "PACS",
		Proposals:      dimse.StorageProposals(dimse.CTImageStorage, dimse.JPEGLosslessSV1),
	})
	if err != nil {
		log.Print(err) // a *dimse.RejectError when the peer says no
		return
	}
	if _, err := a.StoreFile(ctx, path); err != nil {
		log.Print(err) // a *dimse.StatusError carries the peer's status
	}
	a.Release(ctx)
}
