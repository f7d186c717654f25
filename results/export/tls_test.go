package export

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"maps"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/otonode/otonode/store/index"
)

// testPKI writes a CA and two certificates it signed (server for
// 127.0.0.1, client) as PEM files under dir.
type testPKI struct {
	ca                    *x509.CertPool
	caFile                string
	serverCert, serverKey string
	client                tls.Certificate
}

func newPKI(t *testing.T, dir string) testPKI {
	t.Helper()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "otonode test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p := testPKI{ca: x509.NewCertPool(), caFile: write("ca.pem", "CERTIFICATE", caDER)}
	p.ca.AddCert(ca)
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, ips ...net.IP) ([]byte, *ecdsa.PrivateKey) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn}, IPAddresses: ips,
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	der, key := issue(2, "pacs", x509.ExtKeyUsageServerAuth, net.ParseIP("127.0.0.1"))
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	p.serverCert, p.serverKey = write("server.pem", "CERTIFICATE", der), write("server.key", "PRIVATE KEY", kder)
	der, key = issue(3, "otonode", x509.ExtKeyUsageClientAuth)
	p.client = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return p
}

// TestExportOverTLS: results reach a storescp that requires TLS and a
// client certificate signed by its CA (PS3.15 B.1).
func TestExportOverTLS(t *testing.T) {
	ctx := context.Background()
	idx := openIndex(t, "sqlite")()
	n := newNode(t, idx)
	s := n.scene("1.2.826.0.1.7.5")
	pki := newPKI(t, t.TempDir())
	scp := newStoreSCP(t, "SECUREPACS", freePort(t))
	// storescp's default (-rc) requires our certificate, signed by its CA.
	scp.start("+tls", pki.serverKey, pki.serverCert, "+cf", pki.caFile)

	dueNow := func() {
		rows, _ := idx.Exports(ctx, index.ExportFilter{State: index.ExportPending})
		ids := make([]int64, 0, len(rows))
		for _, r := range rows {
			ids = append(ids, r.ID)
		}
		if err := idx.DeferExports(ctx, ids, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		tls  *tls.Config
		want map[string]int
	}{
		{"plain", nil, map[string]int{}},
		{"no client certificate", &tls.Config{RootCAs: pki.ca, ServerName: "127.0.0.1"}, map[string]int{}},
		{"mutual TLS", &tls.Config{RootCAs: pki.ca, Certificates: []tls.Certificate{pki.client}, ServerName: "127.0.0.1",
			MinVersion: tls.VersionTLS12}, counts(s.seg)},
	}
	for _, tt := range tests {
		d := dest("secure", scp)
		d.TLS = tt.tls
		ex, err := New(idx, n.files, Options{Destinations: []Destination{d}, Timeout: 5 * time.Second}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		dueNow() // earlier failures set a backoff
		if err := ex.Pass(ctx); err != nil {
			t.Fatal(err)
		}
		if got := scp.received(); !maps.Equal(got, tt.want) {
			t.Errorf("%s: received %v, want %v", tt.name, got, tt.want)
		}
	}
	rows, _ := idx.Exports(ctx, index.ExportFilter{})
	if len(rows) != 1 || rows[0].State != index.ExportSent || rows[0].Attempts != 3 {
		t.Errorf("rows %+v", rows)
	}
}
