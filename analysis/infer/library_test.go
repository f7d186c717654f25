package infer

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestFindLibrary(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv(EnvLibrary, "")
	if _, err := FindLibrary(""); !errors.Is(err, ErrNoLibrary) && !onSystem() {
		t.Fatalf("nothing anywhere: %v, want ErrNoLibrary", err)
	}
	if got, _ := FindLibrary("/opt/ort/libonnxruntime.so"); got != "/opt/ort/libonnxruntime.so" {
		t.Errorf("an explicit path became %q", got)
	}
	t.Setenv(EnvLibrary, "/from/env.so")
	if got, _ := FindLibrary(""); got != "/from/env.so" {
		t.Errorf("$ORT_LIB became %q", got)
	}
	t.Setenv(EnvLibrary, "")
	// Where deploy/fetch-onnxruntime.sh puts it, seen from the checkout.
	lib := filepath.Join(dir, "third_party", "onnxruntime", "libonnxruntime.so.1")
	if err := os.MkdirAll(filepath.Dir(lib), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lib, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := FindLibrary("")
	if err != nil || got != lib {
		t.Errorf("FindLibrary = %q, %v; want %q", got, err, lib)
	}
}

// onSystem reports whether a system folder holds the library (then the
// "nothing anywhere" case cannot be made here).
func onSystem() bool {
	for _, c := range LibraryCandidates()[1:] {
		if _, err := os.Stat(c); err == nil {
			return true
		}
	}
	return false
}
