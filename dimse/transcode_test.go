package dimse_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/otonode/otonode/dimse"
)

// Our explicit → implicit VR transcoding gives exactly the bytes dcmconv
// writes for the same file with undefined-length sequences and items.
func TestExplicitToImplicitMatchesDcmconv(t *testing.T) {
	dcmconv := requireTool(t, "dcmconv")
	for _, f := range []string{emriSmall, testSR, issue141, overlayMR, scYBR, ctExplicit} {
		p := corpus(t, f)
		t.Run(filepath.Base(p), func(t *testing.T) {
			_, ds := dataSetOf(t, p)
			var got bytes.Buffer
			if err := dimse.ExplicitToImplicitLE(&got, bytes.NewReader(ds)); err != nil {
				t.Fatal(err)
			}
			ref := filepath.Join(t.TempDir(), "ref.ds")
			if out, err := exec.Command(dcmconv, "+ti", "-e", "-F", p, ref).CombinedOutput(); err != nil {
				t.Fatalf("dcmconv: %v\n%s", err, out)
			}
			want, err := os.ReadFile(ref)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Fatalf("ours %d bytes, dcmconv %d bytes", got.Len(), len(want))
			}
		})
	}
}

func TestExplicitToImplicitRejectsBadInput(t *testing.T) {
	for name, in := range map[string][]byte{
		"truncated header":    {0x08, 0x00, 0x16},
		"truncated value":     {0x08, 0x00, 0x16, 0x00, 'U', 'I', 10, 0, '1'},
		"item outside a SQ":   {0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0},
		"encapsulated pixels": {0xE0, 0x7F, 0x10, 0x00, 'O', 'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF},
		"SQ item past its end": {0x08, 0x00, 0x15, 0x11, 'S', 'Q', 0, 0, 8, 0, 0, 0,
			0xFE, 0xFF, 0x00, 0xE0, 20, 0, 0, 0},
	} {
		if err := dimse.ExplicitToImplicitLE(&bytes.Buffer{}, bytes.NewReader(in)); !errors.Is(err, dimse.ErrTranscode) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// A peer that takes a SOP class only in implicit VR still gets an explicit
// VR file, transcoded on the way (and a compressed one is never touched).
func TestStoreFallsBackToImplicit(t *testing.T) {
	addr, dir := startStorescp(t, "+xi")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := corpus(t, emriSmall)
	pushFiles(t, ctx, addr, dimse.DialOptions{CalledAETitle: "STORESCP"}, p)
	fm, _ := dataSetOf(t, p)
	got, ok := storedFiles(t, dir)[fm.MediaStorageSOPInstanceUID]
	if !ok || got.TransferSyntaxUID != dimse.ImplicitVRLittleEndian {
		t.Fatalf("stored=%v in %q", ok, got.TransferSyntaxUID)
	}
	ref := filepath.Join(t.TempDir(), "ref.ds")
	if out, err := exec.Command(requireTool(t, "dcmconv"), "+ti", "-e", "-F", p, ref).CombinedOutput(); err != nil {
		t.Fatalf("dcmconv: %v\n%s", err, out)
	}
	want, _ := os.ReadFile(ref)
	if !bytes.Equal(got.Data, want) {
		t.Fatalf("storescp holds %d bytes, dcmconv's implicit version has %d", len(got.Data), len(want))
	}

	jfm, _ := dataSetOf(t, corpus(t, jpegLossless))
	a, err := dimse.Dial(ctx, addr, dimse.DialOptions{CalledAETitle: "STORESCP",
		Proposals: dimse.StorageProposals(jfm.MediaStorageSOPClassUID, jfm.TransferSyntaxUID)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release(ctx)
	if _, err := a.StoreFile(ctx, corpus(t, jpegLossless)); !errors.Is(err, dimse.ErrNoContext) {
		t.Fatalf("JPEG lossless file to an implicit-only peer: %v, want ErrNoContext", err)
	}
}
