package dimsetest_test

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/dimse/dimsetest"
)

func TestRecorderAndServer(t *testing.T) {
	var got []byte
	h := dimse.HandlerFunc(func(w dimse.ResponseWriter, r *dimse.Request) {
		got, _ = io.ReadAll(r.Body)
		if r.TransferSyntaxUID() != dimse.ExplicitVRLittleEndian || r.Association.CallingAETitle != "CT1" {
			w.WriteStatus(dimse.StatusCannotUnderstand)
			return
		}
		w.WriteStatus(dimse.StatusSuccess)
	})
	rr := dimsetest.NewRecorder()
	h.ServeDIMSE(rr, dimsetest.NewStoreRequest(dimse.CTImageStorage, "1.2.3", dimse.ExplicitVRLittleEndian, "CT1", bytes.NewReader([]byte{1, 2})))
	if !rr.Written || rr.Status != dimse.StatusSuccess || !bytes.Equal(got, []byte{1, 2}) {
		t.Fatalf("recorder %+v, body %v", rr, got)
	}

	mux := dimse.NewServeMux()
	mux.Handle(dimse.CStoreRQField, "", h)
	ts := dimsetest.NewServer(&dimse.Server{Handler: mux, Syntaxes: []dimse.Syntax{{TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian}}}})
	defer ts.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := dimse.Dial(ctx, ts.Addr, dimse.DialOptions{CallingAETitle: "CT1", Proposals: dimse.StorageProposals(dimse.CTImageStorage)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release(ctx)
	if _, err := a.Store(ctx, dimse.Instance{SOPClassUID: dimse.CTImageStorage, SOPInstanceUID: "1.2.4",
		TransferSyntaxUID: dimse.ExplicitVRLittleEndian, DataSet: bytes.NewReader([]byte{3, 4})}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, []byte{3, 4}) {
		t.Fatalf("server handler got %v", got)
	}
}
