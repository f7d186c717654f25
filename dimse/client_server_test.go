package dimse_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/dimse/dimsetest"
)

func TestEchoOursToOurs(t *testing.T) {
	ts := dimsetest.NewServer(nil)
	defer ts.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := dimse.Dial(ctx, ts.Addr, dimse.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := a.Echo(ctx); err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestStoreOursToOurs(t *testing.T) {
	files := []string{ctExplicit, mrImplicit, ctBig, rtplan, jpegLossless, jpegLL57, rleMR}
	rec := &recorder{}
	srv := storageServer(rec)
	// A small maximum PDU on the server side forces many fragments.
	srv.MaxPDULength = 4096
	ts := dimsetest.NewServer(srv)
	defer ts.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var props []dimse.Proposal
	want := map[string][]byte{}
	var paths []string
	for _, f := range files {
		p := corpus(t, f)
		fm, ds := dataSetOf(t, p)
		props = append(props, dimse.StorageProposals(fm.MediaStorageSOPClassUID, fm.TransferSyntaxUID)...)
		want[fm.MediaStorageSOPInstanceUID] = ds
		paths = append(paths, p)
	}
	a, err := dimse.Dial(ctx, ts.Addr, dimse.DialOptions{CalledAETitle: "OTONODE", CallingAETitle: "PUSHER", Proposals: props})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if _, err := a.StoreFile(ctx, p); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	for uid, ds := range want {
		got, ok := rec.get(uid)
		if !ok {
			t.Errorf("%s not received", uid)
			continue
		}
		if !bytes.Equal(got.Data, ds) {
			t.Errorf("%s: received %d bytes, differ from the file's %d", uid, len(got.Data), len(ds))
		}
		if got.CallingAETitle != "PUSHER" {
			t.Errorf("calling AE %q", got.CallingAETitle)
		}
	}
}

func TestRejections(t *testing.T) {
	srv := &dimse.Server{AETitle: "OTONODE", Peers: []dimse.PeerRule{{AETitle: "FRIEND"}}}
	ts := dimsetest.NewServer(srv)
	defer ts.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tests := []struct {
		name    string
		opts    dimse.DialOptions
		wantErr error
	}{
		{"wrong called AE", dimse.DialOptions{CalledAETitle: "OTHER", CallingAETitle: "FRIEND"}, dimse.ErrCalledAETitleNotRecognized},
		{"unknown calling AE", dimse.DialOptions{CalledAETitle: "OTONODE", CallingAETitle: "STRANGER"}, dimse.ErrCallingAETitleNotRecognized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := dimse.Dial(ctx, ts.Addr, tt.opts)
			if !errors.Is(err, tt.wantErr) {
				if a != nil {
					a.Abort()
				}
				t.Fatalf("Dial = %v, want %v", err, tt.wantErr)
			}
			var rj *dimse.RejectError
			if !errors.As(err, &rj) || rj.Result != dimse.RejectedPermanent {
				t.Fatalf("want a permanent *RejectError, got %v", err)
			}
		})
	}
	a, err := dimse.Dial(ctx, ts.Addr, dimse.DialOptions{CalledAETitle: "OTONODE", CallingAETitle: "FRIEND"})
	if err != nil {
		t.Fatalf("admitted peer: %v", err)
	}
	// C-STORE of a SOP class that was not accepted fails before sending.
	if _, err := a.Store(ctx, dimse.Instance{SOPClassUID: dimse.CTImageStorage, SOPInstanceUID: "1.2.3",
		TransferSyntaxUID: dimse.ExplicitVRLittleEndian, DataSet: bytes.NewReader(nil)}); !errors.Is(err, dimse.ErrNoContext) {
		t.Fatalf("store without context: %v", err)
	}
	if err := a.Echo(ctx); err != nil {
		t.Fatal(err)
	}
	a.Release(ctx)
}
