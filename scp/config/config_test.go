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

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "otonode.yaml")
	yamlText := `
data_dir: /srv/otonode
dicom:
  ae_title: FROMFILE
  port: 104
  allowed_callers: [CT1, "CT2@10.0.0.5"]
completion:
  quiet_period: 3s
`
	if err := os.WriteFile(file, []byte(yamlText), 0o644); err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	apply := BindFlags(fs)
	if err := fs.Parse([]string{"--dicom.port", "11113", "--storage.fsync=false"}); err != nil {
		t.Fatal(err)
	}
	c := Default()
	if err := c.LoadFile(file); err != nil {
		t.Fatal(err)
	}
	env := []string{"OTONODE_DICOM_AE_TITLE=FROMENV", "OTONODE_DICOM_PORT=2000", "OTONODE_COMPLETION_INACTIVITY=45s", "HOME=/root"}
	if err := c.ApplyEnv(env); err != nil {
		t.Fatal(err)
	}
	if err := apply(&c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"data dir from file", c.DataDir, "/srv/otonode"},
		{"AE from env over file", c.DICOM.AETitle, "FROMENV"},
		{"port from flag over env and file", c.DICOM.Port, 11113},
		{"quiet period from file", c.Completion.QuietPeriod, 3 * time.Second},
		{"inactivity from env", c.Completion.Inactivity, 45 * time.Second},
		{"fsync from flag", c.Storage.Fsync, false},
		{"default kept", c.DICOM.MaxAssociations, 64},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s: %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	if !slices.Equal(c.DICOM.AllowedCallers, []string{"CT1", "CT2@10.0.0.5"}) {
		t.Errorf("allowed callers %v", c.DICOM.AllowedCallers)
	}
}

func TestLoadFileRejectsUnknownKeys(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte("dicom:\n  aetitle: X\n"), 0o644)
	c := Default()
	if err := c.LoadFile(file); err == nil {
		t.Fatal("misspelt key accepted")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
	}{
		{"long AE title", func(c *Config) { c.DICOM.AETitle = "ABCDEFGHIJKLMNOPQ" }},
		{"port zero", func(c *Config) { c.DICOM.Port = 0 }},
		{"half TLS", func(c *Config) { c.DICOM.TLS.CertFile = "cert.pem" }},
		{"tiny PDU", func(c *Config) { c.DICOM.MaxPDULength = 100 }},
		{"no quiet period", func(c *Config) { c.Completion.QuietPeriod = 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.change(&c)
			if err := c.Validate(); !errors.Is(err, ErrInvalid) {
				t.Fatalf("err %v, want ErrInvalid", err)
			}
		})
	}
	d := Default()
	if err := d.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
}

func TestEnvNamesAreUnique(t *testing.T) {
	c := Default()
	seen := map[string]bool{}
	for _, s := range c.Settings() {
		if seen[s.Env] {
			t.Fatalf("two settings share %s", s.Env)
		}
		seen[s.Env] = true
	}
	if !seen["OTONODE_COMPLETION_QUIET_PERIOD"] || !seen["OTONODE_DICOM_TLS_CLIENT_CA_FILE"] {
		t.Fatalf("settings %v", seen)
	}
}

func TestFloatAndListSettings(t *testing.T) {
	c := Default()
	err := c.ApplyEnv([]string{
		"OTONODE_SELECTION_MAX_SLICE_THICKNESS=0.75",
		"OTONODE_DICOM_SOP_CLASSES=1.2.840.10008.5.1.4.1.1.2, 1.2.840.10008.5.1.4.1.1.7",
		"OTONODE_STORAGE_MAX_BYTES=4096",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Selection.MaxSliceThickness != 0.75 || len(c.DICOM.SOPClasses) != 2 || c.Storage.MaxBytes != 4096 {
		t.Fatalf("got %v %v %v", c.Selection.MaxSliceThickness, c.DICOM.SOPClasses, c.Storage.MaxBytes)
	}
	if err := c.ApplyEnv([]string{"OTONODE_SELECTION_MAX_SLICE_THICKNESS=thin"}); err == nil {
		t.Fatal("bad float accepted")
	}
	c.Selection.Description = "(["
	if err := c.Validate(); err == nil {
		t.Fatal("bad pattern accepted")
	}
}
