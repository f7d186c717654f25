package dimse_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/otonode/otonode/dimse"
	"github.com/otonode/otonode/dimse/dimsetest"
)

// pki is a throw-away certificate authority with one server and one client
// certificate, written as PEM files for dcmtk.
type pki struct {
	dir                   string
	pool                  *x509.CertPool
	server, client        tls.Certificate
	serverKey, serverCert string
	clientKey, clientCert string
	caCert                string
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir(), pool: x509.NewCertPool()}
	caKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p.pool.AddCert(ca)
	p.caCert = p.write(t, "ca.crt", "CERTIFICATE", caDER)
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage) (tls.Certificate, string, string) {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		certPath := p.write(t, cn+".crt", "CERTIFICATE", der)
		keyPath := p.write(t, cn+".key", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key))
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, keyPath, certPath
	}
	p.server, p.serverKey, p.serverCert = leaf(2, "server", x509.ExtKeyUsageServerAuth)
	p.client, p.clientKey, p.clientCert = leaf(3, "client", x509.ExtKeyUsageClientAuth)
	return p
}

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTLSStorescuToOurs(t *testing.T) {
	requireTool(t, "storescu")
	p := newPKI(t, "ours")
	rec := &recorder{}
	srv := storageServer(rec)
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{p.server}, ClientCAs: p.pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	ts := dimsetest.NewServer(srv)
	defer ts.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	f := corpus(t, signedCT)
	runTool(t, ctx, "storescu", "+tls", p.clientKey, p.clientCert, "-pw", "+cf", p.caCert,
		"-aec", "OTONODE", ts.Host(), ts.Port(), f)
	checkReceived(t, rec, f)
	if got, _ := dataSetOf(t, f); true {
		if r, _ := rec.get(got.MediaStorageSOPInstanceUID); r.CallingAETitle == "" {
			t.Error("no calling AE recorded")
		}
	}

	// A client certificate from another CA is refused in the handshake.
	other := newPKI(t, "other")
	cmd := exec.CommandContext(ctx, requireTool(t, "storescu"), "+tls", other.clientKey, other.clientCert, "-pw",
		"+cf", p.caCert, "-aec", "OTONODE", ts.Host(), ts.Port(), corpus(t, issue141))
	cmd.Env = peerEnv()
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("storescu with a foreign client certificate succeeded:\n%s", out)
	}
	if fm, _ := dataSetOf(t, corpus(t, issue141)); true {
		if _, ok := rec.get(fm.MediaStorageSOPInstanceUID); ok {
			t.Fatal("instance from an unverified client was stored")
		}
	}
}

func TestTLSOursToStorescp(t *testing.T) {
	p := newPKI(t, "dcmtk")
	addr, dir := startStorescp(t, "+tls", p.serverKey, p.serverCert, "-pw", "+cf", p.caCert)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := corpus(t, ctExplicit)
	pushFiles(t, ctx, addr, dimse.DialOptions{CalledAETitle: "STORESCP", TLSConfig: &tls.Config{
		RootCAs: p.pool, Certificates: []tls.Certificate{p.client}, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}}, f)
	fm, ds := dataSetOf(t, f)
	got, ok := storedFiles(t, dir)[fm.MediaStorageSOPInstanceUID]
	if !ok || !bytes.Equal(got.Data, ds) {
		t.Fatalf("storescp over TLS: stored=%v, identical=%v", ok, ok && bytes.Equal(got.Data, ds))
	}
	// Without a client certificate storescp (which requires one) refuses.
	_, err := dimse.Dial(ctx, addr, dimse.DialOptions{CalledAETitle: "STORESCP",
		TLSConfig: &tls.Config{RootCAs: p.pool, ServerName: "127.0.0.1"}})
	if err == nil {
		t.Fatal("association without a client certificate succeeded")
	}
}

// startOrthanc runs a real Orthanc on free ports and returns its DICOM
// address and HTTP base URL.
func startOrthanc(t *testing.T) (dicomAddr, httpURL string) {
	t.Helper()
	bin := requireTool(t, "Orthanc")
	dir := t.TempDir()
	dport, hport := freePort(t), freePort(t)
	var dp, hp int
	fmt.Sscan(dport, &dp)
	fmt.Sscan(hport, &hp)
	cfg := map[string]any{"Name": "OTONODETEST", "StorageDirectory": dir, "IndexDirectory": dir,
		"DicomAet": "ORTHANC", "DicomPort": dp, "HttpPort": hp, "RemoteAccessAllowed": false,
		"AuthenticationEnabled": false, "DicomCheckCalledAet": true, "UnknownSopClassAccepted": true,
		"DicomAlwaysAllowStore": true, "Plugins": []string{}, "StableAge": 60}
	b, _ := json.Marshal(cfg)
	cfgPath := filepath.Join(dir, "orthanc.json")
	os.WriteFile(cfgPath, b, 0o600)
	cmd := exec.Command(bin, cfgPath)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("Orthanc output:\n%s", out.String())
		}
	})
	httpURL = "http://127.0.0.1:" + hport
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(httpURL + "/system")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Orthanc did not come up: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "127.0.0.1:" + dport, httpURL
}

func TestOursToOrthanc(t *testing.T) {
	addr, base := startOrthanc(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	a, err := dimse.Dial(ctx, addr, dimse.DialOptions{CalledAETitle: "ORTHANC"})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Echo(ctx); err != nil {
		t.Fatal(err)
	}
	a.Release(ctx)

	files := []string{corpus(t, ctExplicit), corpus(t, mrImplicit), corpus(t, jpegLossless), corpus(t, signedCT)}
	pushFiles(t, ctx, addr, dimse.DialOptions{CalledAETitle: "ORTHANC"}, files...)

	for _, f := range files {
		fm, _ := dataSetOf(t, f)
		body, _ := json.Marshal(map[string]any{"Level": "Instance", "Query": map[string]string{"SOPInstanceUID": fm.MediaStorageSOPInstanceUID}})
		resp, err := http.Post(base+"/tools/find", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		json.NewDecoder(resp.Body).Decode(&ids)
		resp.Body.Close()
		if len(ids) != 1 {
			t.Errorf("%s: Orthanc has %d instances with UID %s", filepath.Base(f), len(ids), fm.MediaStorageSOPInstanceUID)
			continue
		}
		resp, err = http.Get(base + "/instances/" + ids[0] + "/metadata/TransferSyntax")
		if err != nil {
			t.Fatal(err)
		}
		var ts bytes.Buffer
		ts.ReadFrom(resp.Body)
		resp.Body.Close()
		if ts.String() != fm.TransferSyntaxUID {
			t.Errorf("%s: Orthanc stored it as %q, sent %s", filepath.Base(f), ts.String(), fm.TransferSyntaxUID)
		}
	}
}
