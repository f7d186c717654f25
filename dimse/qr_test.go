package dimse_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/dimse/dimsetest"
)

func TestIdentifierRoundTrip(t *testing.T) {
	for _, ts := range []string{dimse.ExplicitVRLittleEndian, dimse.ImplicitVRLittleEndian} {
		t.Run(ts, func(t *testing.T) {
			id := &dimse.Identifier{}
			id.SetString(0x00100010, "Doe*")
			id.SetString(0x00080052, "STUDY")
			id.SetString(0x0020000D, "1.2.3")
			id.SetString(0x00080020, "")
			b, err := id.Encode(ts)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) >= 100 {
				t.Fatalf("test identifier is %d bytes, want a small one", len(b))
			}
			got, err := dimse.ParseIdentifier(b, ts)
			if err != nil {
				t.Fatal(err)
			}
			if got.Len() != 4 || got.String(0x00100010) != "Doe*" || got.String(0x0020000D) != "1.2.3" || !got.Has(0x00080020) {
				t.Errorf("round trip: %+v", got.Elements())
			}
			if e, _ := got.Get(0x0020000D); len(e.Value) != 6 || e.VR != "UI" {
				t.Errorf("UID element %+v, want padded to 6 bytes", e)
			}
			if _, err := dimse.ParseIdentifier(b[:len(b)-3], ts); !errors.Is(err, dimse.ErrIdentifier) {
				t.Errorf("truncated: %v", err)
			}
		})
	}
}

func TestTextCharsets(t *testing.T) {
	tests := []struct {
		in      []byte
		charset string
		want    string
		wantErr bool
	}{
		{[]byte("Doe^Jane"), "", "Doe^Jane", false},
		{[]byte{'M', 0xFC, 'l', 'l', 'e', 'r'}, "ISO_IR 100", "Müller", false},
		{[]byte("Müller"), "ISO_IR 192", "Müller", false},
		{[]byte{0xFC}, "ISO_IR 192", "", true},
		{[]byte("x"), "ISO 2022 IR 87", "", true},
	}
	for _, tt := range tests {
		got, err := dimse.DecodeText(tt.in, tt.charset)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("DecodeText(%q, %q) = %q, %v", tt.in, tt.charset, got, err)
		}
		if err == nil {
			back, ok := dimse.EncodeText(got, tt.charset)
			if !ok || !bytes.Equal(back, tt.in) {
				t.Errorf("EncodeText(%q, %q) = %q, %v", got, tt.charset, back, ok)
			}
		}
	}
	if _, ok := dimse.EncodeText("日本", "ISO_IR 100"); ok {
		t.Error("Japanese encoded in Latin-1")
	}
}

// qrServer answers C-FIND with n matches, C-MOVE with n progress steps and
// C-GET with n sub-operations, stopping when cancelled.
func qrServer(n int, step time.Duration) *dimse.Server {
	mux := dimse.NewServeMux()
	mux.HandleFunc(dimse.CFindRQField, "", func(w dimse.ResponseWriter, r *dimse.Request) {
		o := w.(dimse.OperationWriter)
		raw, _ := io.ReadAll(r.Body)
		q, err := dimse.ParseIdentifier(raw, r.TransferSyntaxUID())
		if err != nil {
			w.WriteStatus(dimse.StatusIdentifierDoesNotMatch)
			return
		}
		for i := range n {
			if o.Cancelled() {
				w.WriteStatus(dimse.StatusCancel)
				return
			}
			m := &dimse.Identifier{}
			m.SetString(0x00080052, q.String(0x00080052))
			m.SetString(0x0020000D, fmt.Sprintf("1.2.%d", i))
			b, _ := m.Encode(r.TransferSyntaxUID())
			if err := o.WritePending(b); err != nil {
				return
			}
			time.Sleep(step)
		}
		w.WriteStatus(dimse.StatusSuccess)
	})
	mux.HandleFunc(dimse.CGetRQField, "", func(w dimse.ResponseWriter, r *dimse.Request) {
		o := w.(dimse.OperationWriter)
		var s dimse.SubOperations
		s.NumberOfRemainingSuboperations = uint16(n)
		for i := range n {
			if o.Cancelled() {
				o.SetSubOperations(s)
				w.WriteStatus(dimse.StatusCancel)
				return
			}
			ds := []byte{0x08, 0, 0x18, 0, 'U', 'I', 6, 0, '1', '.', '2', '.', byte('0' + i), 0}
			_, err := o.Store(r.Context(), dimse.Instance{SOPClassUID: dimse.CTImageStorage, SOPInstanceUID: fmt.Sprintf("1.2.%d", i),
				TransferSyntaxUID: dimse.ExplicitVRLittleEndian, DataSet: bytes.NewReader(ds)})
			s.NumberOfRemainingSuboperations--
			if err != nil {
				s.NumberOfFailedSuboperations++
			} else {
				s.NumberOfCompletedSuboperations++
			}
			o.WriteProgress(s)
		}
		o.SetSubOperations(s)
		if s.NumberOfFailedSuboperations > 0 {
			w.WriteStatus(dimse.StatusSubOperationsWithFailures)
			return
		}
		w.WriteStatus(dimse.StatusSuccess)
	})
	qr := []string{dimse.StudyRootFind, dimse.StudyRootGet}
	var syn []dimse.Syntax
	for _, c := range qr {
		syn = append(syn, dimse.Syntax{AbstractSyntax: c, TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian, dimse.ImplicitVRLittleEndian}})
	}
	syn = append(syn, dimse.Syntax{AbstractSyntax: dimse.CTImageStorage, TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian, dimse.ImplicitVRLittleEndian}, SCPRole: true})
	return &dimse.Server{Syntaxes: syn, Handler: mux}
}

func qrDial(t *testing.T, ctx context.Context, addr string, ts string) *dimse.Association {
	t.Helper()
	props := []dimse.Proposal{
		{AbstractSyntax: dimse.StudyRootFind, TransferSyntaxes: []string{ts}},
		{AbstractSyntax: dimse.StudyRootGet, TransferSyntaxes: []string{ts}},
		{AbstractSyntax: dimse.CTImageStorage, TransferSyntaxes: []string{ts}},
	}
	a, err := dimse.Dial(ctx, addr, dimse.DialOptions{Proposals: props, RoleSelections: dimse.RetrieveRoles(dimse.CTImageStorage)})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestFindOursToOurs(t *testing.T) {
	for _, ts := range []string{dimse.ExplicitVRLittleEndian, dimse.ImplicitVRLittleEndian} {
		t.Run(ts, func(t *testing.T) {
			srv := dimsetest.NewServer(qrServer(5, 0))
			defer srv.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			a := qrDial(t, ctx, srv.Addr, ts)
			q := &dimse.Identifier{}
			q.SetString(0x00080052, "STUDY")
			q.SetString(0x0020000D, "")
			var got []string
			err := a.Find(ctx, dimse.StudyRootFind, q, func(m *dimse.Identifier) error {
				got = append(got, m.String(0x0020000D))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != "[1.2.0 1.2.1 1.2.2 1.2.3 1.2.4]" {
				t.Errorf("matches %v", got)
			}
			// The association is still usable after the operation.
			if err := a.Echo(ctx); err == nil {
				t.Error("echo without a Verification context succeeded")
			}
			if err := a.Release(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestFindCancel(t *testing.T) {
	srv := dimsetest.NewServer(qrServer(1000, 2*time.Millisecond))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a := qrDial(t, ctx, srv.Addr, dimse.ExplicitVRLittleEndian)
	q := &dimse.Identifier{}
	q.SetString(0x00080052, "STUDY")
	stop := errors.New("enough")
	n := 0
	err := a.Find(ctx, dimse.StudyRootFind, q, func(*dimse.Identifier) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("Find = %v, want the callback's error", err)
	}
	if n != 3 {
		t.Errorf("callback ran %d times after asking to stop at 3", n)
	}
	// Cancel by context too, then the association still works.
	cctx, ccancel := context.WithCancel(ctx)
	n = 0
	err = a.Find(cctx, dimse.StudyRootFind, q, func(*dimse.Identifier) error {
		n++
		if n == 2 {
			ccancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Find = %v, want context.Canceled", err)
	}
	var got int
	if err := a.Find(ctx, dimse.StudyRootFind, q, func(*dimse.Identifier) error {
		got++
		if got == 1 {
			return stop
		}
		return nil
	}); !errors.Is(err, stop) {
		t.Fatalf("third Find = %v", err)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestGetOursToOurs(t *testing.T) {
	srv := dimsetest.NewServer(qrServer(4, 0))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a := qrDial(t, ctx, srv.Addr, dimse.ImplicitVRLittleEndian)
	var received []string
	h := dimse.HandlerFunc(func(w dimse.ResponseWriter, r *dimse.Request) {
		b, _ := io.ReadAll(r.Body)
		if len(b) != 14 {
			w.WriteStatus(dimse.StatusCannotUnderstand)
			return
		}
		received = append(received, r.SOPInstanceUID())
		if len(received) == 2 {
			w.WriteStatus(dimse.StatusOutOfResources) // one failure
			return
		}
		w.WriteStatus(dimse.StatusSuccess)
	})
	var progress int
	q := &dimse.Identifier{}
	q.SetString(0x00080052, "STUDY")
	res, err := a.Get(ctx, dimse.StudyRootGet, q, h, func(dimse.SubOperations) { progress++ })
	if err != nil {
		t.Fatal(err)
	}
	if len(received) != 4 || progress != 4 {
		t.Errorf("received %v, %d progress responses", received, progress)
	}
	if res.Status != dimse.StatusSubOperationsWithFailures || res.NumberOfCompletedSuboperations != 3 || res.NumberOfFailedSuboperations != 1 {
		t.Errorf("result %+v", res)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// FuzzParseIdentifier: any input is an identifier or an ErrIdentifier, and
// what parses re-encodes to something that parses to the same elements.
func FuzzParseIdentifier(f *testing.F) {
	id := &dimse.Identifier{}
	id.SetString(0x00080052, "STUDY")
	id.SetString(0x00100010, "Doe*")
	id.Set(0x00081110, "SQ", nil)
	for _, ts := range []string{dimse.ExplicitVRLittleEndian, dimse.ImplicitVRLittleEndian} {
		b, _ := id.Encode(ts)
		f.Add(b, ts == dimse.ExplicitVRLittleEndian)
	}
	f.Add([]byte{0x08, 0x00, 0x52, 0x00, 'C', 'S', 0xFF, 0xFF}, true)
	f.Add([]byte{0x08, 0x00, 0x11, 0x11, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF}, false)
	f.Fuzz(func(t *testing.T, b []byte, explicit bool) {
		ts := dimse.ImplicitVRLittleEndian
		if explicit {
			ts = dimse.ExplicitVRLittleEndian
		}
		got, err := dimse.ParseIdentifier(b, ts)
		if err != nil {
			if !errors.Is(err, dimse.ErrIdentifier) {
				t.Fatalf("error %v is not ErrIdentifier", err)
			}
			return
		}
		enc, err := got.Encode(ts)
		if err != nil {
			return // e.g. a long value under a short VR
		}
		again, err := dimse.ParseIdentifier(enc, ts)
		if err != nil {
			t.Fatalf("re-encoded identifier does not parse: %v", err)
		}
		if again.Len() != got.Len() {
			t.Fatalf("%d elements, %d after a round trip", got.Len(), again.Len())
		}
	})
}

// TestQROverTLS runs Find with a cancel and Get over TLS, where C-CANCEL
// is looked for with a short read deadline instead of a socket peek.
func TestQROverTLS(t *testing.T) {
	p := newPKI(t, "qr")
	srv := qrServer(1000, time.Millisecond)
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{p.server}}
	ts := dimsetest.NewServer(srv)
	defer ts.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	props := []dimse.Proposal{
		{AbstractSyntax: dimse.StudyRootFind, TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian}},
		{AbstractSyntax: dimse.StudyRootGet, TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian}},
		{AbstractSyntax: dimse.CTImageStorage, TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian}},
	}
	a, err := dimse.Dial(ctx, ts.Addr, dimse.DialOptions{Proposals: props, RoleSelections: dimse.RetrieveRoles(dimse.CTImageStorage),
		TLSConfig: &tls.Config{RootCAs: p.pool, ServerName: "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	q := &dimse.Identifier{}
	q.SetString(0x00080052, "STUDY")
	stop := errors.New("enough")
	n := 0
	if err := a.Find(ctx, dimse.StudyRootFind, q, func(*dimse.Identifier) error {
		n++
		if n == 5 {
			return stop
		}
		return nil
	}); !errors.Is(err, stop) {
		t.Fatalf("Find over TLS = %v", err)
	}
	got := 0
	res, err := a.Get(ctx, dimse.StudyRootGet, q, dimse.HandlerFunc(func(w dimse.ResponseWriter, r *dimse.Request) {
		io.Copy(io.Discard, r.Body)
		got++
		w.WriteStatus(dimse.StatusSuccess)
	}), nil)
	if err != nil || got != 1000 || res.NumberOfCompletedSuboperations != 1000 {
		t.Fatalf("Get over TLS: %+v, %d received, %v", res, got, err)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
}
