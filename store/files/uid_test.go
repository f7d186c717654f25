package files

import (
	"errors"
	"strings"
	"testing"
)

func TestCleanUID(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1", true},
		{"1.2.3\x00", "1.2.3", true},
		{" 1.2.3 ", "1.2.3", true},
		{"1.0.3", "1.0.3", true},
		{"0", "0", true},
		{"2.25." + strings.Repeat("9", 59), "2.25." + strings.Repeat("9", 59), true},
		{"2.25." + strings.Repeat("9", 60), "", false}, // 65 characters
		{"", "", false},
		{"\x00", "", false},
		{"1..2", "", false},
		{".1.2", "", false},
		{"1.2.", "", false},
		{"1.02", "", false},
		{"../1.2", "", false},
		{"1.2/3", "", false},
		{"1.2\\3", "", false},
		{"1.2 3", "", false},
		{"1.2.3\x00\x00x", "", false},
		{"1.2.a", "", false},
	}
	for _, tt := range tests {
		got, err := CleanUID(tt.in)
		if tt.ok != (err == nil) || got != tt.want {
			t.Errorf("CleanUID(%q) = %q, %v; want %q, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidUID) {
			t.Errorf("CleanUID(%q) error %v does not wrap ErrInvalidUID", tt.in, err)
		}
	}
}

func FuzzCleanUID(f *testing.F) {
	for _, s := range []string{"1.2.3", "../..", "1.02", "1.2.3\x00", "/etc/passwd"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := CleanUID(s)
		if err != nil {
			return
		}
		if len(u) > 64 || strings.ContainsAny(u, "/\\") || strings.Contains(u, "..") || u == "." {
			t.Fatalf("CleanUID(%q) accepted %q", s, u)
		}
	})
}
