package main

import (
	"path/filepath"
	"testing"

	"github.com/otonode/otonode/scp/config"
)

func TestExportOptionsDemoFolder(t *testing.T) {
	pacs := map[string]config.Destination{"pacs": {AETitle: "PACS", Host: "127.0.0.1", Port: 104}}
	abs := filepath.Join(t.TempDir(), "out")
	tests := []struct {
		name         string
		destinations map[string]config.Destination
		demo         string
		want         []string // destination name and folder ("" for C-STORE)
	}{
		{"nothing configured", nil, "", []string{"demo-folder", filepath.Join("data", "results")}},
		{"absolute demo folder", nil, abs, []string{"demo-folder", abs}},
		{"demo off", nil, "off", nil},
		{"a PACS configured", pacs, "", []string{"pacs", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.DataDir = "data"
			cfg.Export.Destinations = tt.destinations
			cfg.Export.DemoFolder = tt.demo
			opt, err := exportOptions(cfg)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range opt.Destinations {
				got = append(got, d.Name, d.Folder)
				if d.Name == "demo-folder" && !d.AllowNotForDiagnosis {
					t.Error("the demo folder holds back the reference model's results")
				}
				if d.Name == "pacs" && d.AllowNotForDiagnosis {
					t.Error("a configured PACS takes results not for diagnosis without being told to")
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("destinations %q, want %q", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("destinations %q, want %q", got, tt.want)
				}
			}
		})
	}
}
