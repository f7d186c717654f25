package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/otonode/otonode/results/export"
	"github.com/otonode/otonode/scp"
	"github.com/otonode/otonode/scp/config"
	"github.com/otonode/otonode/scp/qr"
)

// addExporter registers the exporter (results/export) with the node: it
// sends the results the node stores to the configured destinations.
func addExporter(ctx context.Context, cfg config.Config, n *scp.Node) error {
	opt, err := exportOptions(cfg)
	if err != nil {
		return err
	}
	log := n.Logger().With("component", "export")
	if len(opt.Destinations) == 0 {
		log.Info("no export destinations configured: results stay on the node (export.destinations)")
		return nil
	}
	if len(cfg.Export.Destinations) == 0 {
		log.Warn("no export destinations configured: results, including those of models not for diagnosis, are written to the demo folder (set export.destinations, or export.demo_folder: off)",
			"folder", opt.Destinations[0].Folder)
	}
	ex, err := export.New(n.Index, n.Files, opt, n.Ops.Registry, log)
	if err != nil {
		return err
	}
	// Before Run: the node's C-STORE SCP then wakes the exporter for
	// each result it indexes.
	n.Ingest.Index = ex.WakeOnResults(n.Ingest.Index)
	n.AddService("export", ex.Run)
	return nil
}

// exportOptions turns the export section into the exporter's options.
func exportOptions(cfg config.Config) (export.Options, error) {
	ec := cfg.Export.WithDefaults()
	if err := ec.Validate(); err != nil {
		return export.Options{}, fmt.Errorf("%w: %w", errUsage, err)
	}
	opt := export.Options{PollInterval: ec.PollInterval, BatchSize: ec.BatchSize, MaxAttempts: ec.MaxAttempts,
		BackoffBase: ec.BackoffBase, BackoffMax: ec.BackoffMax, Timeout: ec.Timeout, Lease: ec.Lease, Decompress: qr.Decompress}
	if len(ec.Destinations) == 0 && ec.DemoFolder != "off" {
		dir := ec.DemoFolder
		if !filepath.IsAbs(dir) {
			dir = cfg.DataPath(dir)
		}
		opt.Destinations = append(opt.Destinations, export.Destination{Name: "demo-folder", Folder: dir, AllowNotForDiagnosis: true})
	}
	for _, name := range ec.Names() {
		d := ec.Destinations[name]
		calling := d.CallingAETitle
		if calling == "" {
			calling = cfg.DICOM.AETitle
		}
		tc, err := destinationTLS(d)
		if err != nil {
			return export.Options{}, fmt.Errorf("export.destinations.%s.tls: %w", name, err)
		}
		x := export.Destination{Name: name, Folder: d.Folder, Sources: d.Objects == config.ExportAll,
			AllowNotForDiagnosis: d.AllowNotForDiagnosis}
		if d.Folder == "" {
			x.AETitle, x.Addr, x.CallingAETitle, x.TLS = d.AETitle, net.JoinHostPort(d.Host, strconv.Itoa(d.Port)), calling, tc
		}
		opt.Destinations = append(opt.Destinations, x)
	}
	return opt, nil
}

// destinationTLS is the client side of DICOM over TLS (PS3.15 B.1): the
// destination's certificate verified against the CA file (or the system's
// roots), our certificate offered when one is configured.
func destinationTLS(d config.Destination) (*tls.Config, error) {
	if !d.TLS.Enabled {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: d.TLS.ServerName}
	if c.ServerName == "" {
		c.ServerName = d.Host
	}
	if d.TLS.CAFile != "" {
		pem, err := os.ReadFile(d.TLS.CAFile)
		if err != nil {
			return nil, err
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", d.TLS.CAFile)
		}
	}
	if d.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(d.TLS.CertFile, d.TLS.KeyFile)
		if err != nil {
			return nil, err
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
