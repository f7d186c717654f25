package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestExportFromFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "otonode.yaml")
	os.WriteFile(file, []byte(`
export:
  max_attempts: 5
  destinations:
    pacs:
      ae_title: PACS
      host: pacs.example.org
      port: 104
      tls: {enabled: true, ca_file: ca.pem}
    demo:
      ae_title: ORTHANC
      host: 127.0.0.1
      port: 4242
      objects: all
      allow_not_for_diagnosis: true
    folder:
      folder: /srv/out
`), 0o644)
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	apply := BindFlags(fs) // a map of destinations must not upset the flags
	if err := fs.Parse([]string{"--export.backoff_base", "3s"}); err != nil {
		t.Fatal(err)
	}
	c := Default()
	if err := c.LoadFile(file); err != nil {
		t.Fatal(err)
	}
	if err := c.ApplyEnv([]string{"OTONODE_EXPORT_POLL_INTERVAL=250ms"}); err != nil {
		t.Fatal(err)
	}
	if err := apply(&c); err != nil {
		t.Fatal(err)
	}
	e := c.Export.WithDefaults()
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(e.Names(), []string{"demo", "folder", "pacs"}) || e.MaxAttempts != 5 || e.BackoffBase != 3*time.Second ||
		e.PollInterval != 250*time.Millisecond || e.BatchSize != 50 || e.BackoffMax != time.Hour {
		t.Fatalf("export %+v", e)
	}
	if d := e.Destinations["demo"]; d.Objects != ExportAll || !d.AllowNotForDiagnosis || d.Port != 4242 {
		t.Errorf("demo %+v", d)
	}
	if d := e.Destinations["pacs"]; !d.TLS.Enabled || d.TLS.CAFile != "ca.pem" || d.AllowNotForDiagnosis {
		t.Errorf("pacs %+v", d)
	}
	if err := Default().Export.Validate(); err != nil {
		t.Errorf("no destinations is valid: %v", err)
	}
}

func TestExportValidate(t *testing.T) {
	good := Destination{AETitle: "PACS", Host: "pacs", Port: 104}
	tests := []struct {
		name   string
		change func(*Export, *Destination)
	}{
		{"no AE title", func(_ *Export, d *Destination) { d.AETitle = "" }},
		{"long calling AE", func(_ *Export, d *Destination) { d.CallingAETitle = "ABCDEFGHIJKLMNOPQ" }},
		{"no host", func(_ *Export, d *Destination) { d.Host = "" }},
		{"port", func(_ *Export, d *Destination) { d.Port = 70000 }},
		{"objects", func(_ *Export, d *Destination) { d.Objects = "everything" }},
		{"half client certificate", func(_ *Export, d *Destination) { d.TLS = DestinationTLS{Enabled: true, CertFile: "c.pem"} }},
		{"TLS files while off", func(_ *Export, d *Destination) { d.TLS = DestinationTLS{CAFile: "ca.pem"} }},
		{"negative attempts", func(e *Export, _ *Destination) { e.MaxAttempts = -1 }},
		{"negative lease", func(e *Export, _ *Destination) { e.Lease = -time.Second }},
		{"base above max", func(e *Export, _ *Destination) { e.BackoffBase, e.BackoffMax = time.Hour, time.Minute }},
		{"folder and AE", func(_ *Export, d *Destination) { d.Folder = "/srv/out" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, d := Export{}, good
			tt.change(&e, &d)
			e.Destinations = map[string]Destination{"pacs": d}
			if err := e.Validate(); !errors.Is(err, ErrInvalid) {
				t.Fatalf("err %v, want ErrInvalid", err)
			}
		})
	}
}
