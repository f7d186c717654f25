package scp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/store/index"
)

// TestTLS stores a series over DICOM TLS; the release is still seen, so
// the series completes by the quiet period.
func TestTLS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "otonode test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)

	c := testConfig(t)
	c.DICOM.TLS.CertFile, c.DICOM.TLS.KeyFile = certFile, keyFile
	n := startNode(t, c)
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	ctx := context.Background()
	root := uidRoot()
	s := seriesSpec{Study: root + ".1", Series: root + ".2", Number: 1, N: 4, Thickness: "0.6", Kernel: "BONE"}
	a, err := dimse.Dial(ctx, n.DICOMAddr(), dimse.DialOptions{CallingAETitle: "CT1", CalledAETitle: c.DICOM.AETitle,
		Proposals: dimse.StorageProposals(ctImage), TLSConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range s.N {
		sop, ds := s.dataSet(i)
		if _, err := a.Store(ctx, dimse.Instance{SOPClassUID: ctImage, SOPInstanceUID: sop, TransferSyntaxUID: explicit,
			DataSet: bytes.NewReader(ds)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	waitState(t, n, s.Series, 1, index.Queued)
	if se, _ := n.Index.Series(ctx, s.Series); se.Reason != index.ReasonReleased {
		t.Fatalf("completed by %q over TLS", se.Reason)
	}
	// A plain-TCP association is not served on the TLS port.
	if _, err := dimse.Dial(ctx, n.DICOMAddr(), dimse.DialOptions{CallingAETitle: "CT1", CalledAETitle: c.DICOM.AETitle,
		ARTIMTimeout: 2 * time.Second}); err == nil {
		t.Fatal("plain association accepted on the TLS port")
	}
}
