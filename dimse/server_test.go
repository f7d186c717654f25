package dimse_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/dimse/dimsetest"
)

func storeOne(ctx context.Context, a *dimse.Association, uid string) (*dimse.CStoreRSP, error) {
	return a.Store(ctx, dimse.Instance{SOPClassUID: dimse.CTImageStorage, SOPInstanceUID: uid,
		TransferSyntaxUID: dimse.ExplicitVRLittleEndian, DataSet: bytes.NewReader(make([]byte, 5000))})
}

func dialCT(t *testing.T, ctx context.Context, addr string) *dimse.Association {
	t.Helper()
	a, err := dimse.Dial(ctx, addr, dimse.DialOptions{Proposals: append(dimse.StorageProposals(dimse.CTImageStorage),
		dimse.Proposal{AbstractSyntax: dimse.VerificationSOPClass, TransferSyntaxes: []string{dimse.ImplicitVRLittleEndian}})})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func ctServer(mux *dimse.ServeMux) *dimse.Server {
	return &dimse.Server{Handler: mux, Syntaxes: []dimse.Syntax{
		{AbstractSyntax: dimse.CTImageStorage, TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian}},
		{AbstractSyntax: dimse.VerificationSOPClass, TransferSyntaxes: []string{dimse.ImplicitVRLittleEndian}}}}
}

func TestHandlerFailuresBecomeStatuses(t *testing.T) {
	mux := dimse.NewServeMux()
	mux.HandleFunc(dimse.CStoreRQField, dimse.CTImageStorage, func(w dimse.ResponseWriter, r *dimse.Request) {
		switch r.SOPInstanceUID() {
		case "1.1":
			panic("handler bug")
		case "1.2":
			// Writes no status and leaves the data set unread.
		case "1.3":
			io.Copy(io.Discard, r.Body)
			w.SetErrorComment("disk full")
			w.WriteStatus(dimse.StatusOutOfResources)
		case "1.4":
			io.Copy(io.Discard, r.Body)
			w.WriteStatus(dimse.StatusCoercionOfDataElements)
		default:
			w.WriteStatus(dimse.StatusSuccess)
		}
	})
	ts := dimsetest.NewServer(ctServer(mux))
	defer ts.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a := dialCT(t, ctx, ts.Addr)
	defer a.Release(ctx)
	tests := []struct {
		uid     string
		wantErr error
		comment string
	}{
		{"1.1", dimse.StatusProcessingFailure, "internal error"},
		{"1.2", dimse.StatusProcessingFailure, ""},
		{"1.3", dimse.StatusOutOfResources, "disk full"},
		{"1.4", nil, ""},
		{"1.5", nil, ""},
	}
	for _, tt := range tests {
		rsp, err := storeOne(ctx, a, tt.uid)
		if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
			t.Fatalf("%s: err = %v, want %v", tt.uid, err, tt.wantErr)
		}
		if rsp.ErrorComment != tt.comment || rsp.AffectedSOPInstanceUID != tt.uid {
			t.Fatalf("%s: response %+v", tt.uid, rsp)
		}
		if err != nil && !errors.Is(err, dimse.ClassFailure) {
			t.Fatalf("%s: not a failure: %v", tt.uid, err)
		}
	}
	if err := a.Echo(ctx); err != nil {
		t.Fatalf("association unusable after handler failures: %v", err)
	}
}

func TestMaxAssociationsAndShutdown(t *testing.T) {
	release := make(chan struct{})
	mux := dimse.NewServeMux()
	mux.HandleFunc(dimse.CStoreRQField, "", func(w dimse.ResponseWriter, r *dimse.Request) {
		<-release
		w.WriteStatus(dimse.StatusSuccess)
	})
	srv := ctServer(mux)
	srv.MaxAssociations = 1
	ts := dimsetest.NewServer(srv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	a := dialCT(t, ctx, ts.Addr)
	_, err := dimse.Dial(ctx, ts.Addr, dimse.DialOptions{})
	var rj *dimse.RejectError
	if !errors.As(err, &rj) || rj.Result != dimse.RejectedTransient || !errors.Is(err, dimse.ErrLocalLimitExceeded) {
		t.Fatalf("second association: %v, want a transient local-limit rejection", err)
	}

	// Shutdown waits for the running store, which then completes.
	done := make(chan error, 1)
	go func() { _, err := storeOne(ctx, a, "2.1"); done <- err }()
	time.Sleep(100 * time.Millisecond)
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned while an association was open: %v", err)
	default:
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("store during shutdown: %v", err)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := ts.Close(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := dimse.Dial(ctx, ts.Addr, dimse.DialOptions{}); err == nil {
		t.Fatal("server still accepts after Shutdown")
	}
}

func TestClientContextCancel(t *testing.T) {
	stall := make(chan struct{})
	mux := dimse.NewServeMux()
	mux.HandleFunc(dimse.CStoreRQField, "", func(w dimse.ResponseWriter, r *dimse.Request) {
		<-stall
		w.WriteStatus(dimse.StatusSuccess)
	})
	ts := dimsetest.NewServer(ctServer(mux))
	defer ts.Close()
	defer close(stall)
	a := dialCT(t, context.Background(), ts.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := storeOne(ctx, a, "3.1")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("cancel took %v", d)
	}
	if err := a.Echo(context.Background()); !errors.Is(err, dimse.ErrAborted) {
		t.Fatalf("after a cancelled operation: %v, want ErrAborted", err)
	}
}
