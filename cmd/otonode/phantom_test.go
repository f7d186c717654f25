package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestPhantomCommands(t *testing.T) {
	dir := t.TempDir()
	ds := filepath.Join(dir, "ds")
	var out, errb bytes.Buffer
	ctx := context.Background()
	if code := run(ctx, []string{"phantom", "dataset", "--n", "3", "--size", "48", "--spacing", "0.4", "--variant", "conebeam", "--out", ds}, &out, &errb); code != 0 {
		t.Fatalf("dataset: exit %d\n%s", code, errb.String())
	}
	var idx struct {
		Format string              `json:"format"`
		Splits map[string][]string `json:"splits"`
	}
	b, err := os.ReadFile(filepath.Join(ds, "dataset.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ids := range idx.Splits {
		for _, id := range ids {
			n++
			for _, f := range []string{"ct.nii.gz", "label.nii.gz", "landmarks.mrk.json", "case.json"} {
				if _, err := os.Stat(filepath.Join(ds, id, f)); err != nil {
					t.Error(err)
				}
			}
		}
	}
	if idx.Format != "otonode-dataset/1" || n != 3 || len(idx.Splits["train"]) == 0 {
		t.Fatalf("dataset.json: %s", b)
	}
	png := filepath.Join(dir, "p.png")
	id := idx.Splits["train"][0]
	if code := run(ctx, []string{"phantom", "preview", "--case", filepath.Join(ds, id), "--out", png}, &out, &errb); code != 0 {
		t.Fatalf("preview: exit %d\n%s", code, errb.String())
	}
	if fi, err := os.Stat(png); err != nil || fi.Size() < 1000 {
		t.Fatalf("preview: %v", err)
	}
	for _, bad := range [][]string{
		{"phantom"},
		{"phantom", "case", "--seed", "1"},
		{"phantom", "case", "--out", dir, "--variant", "banana"},
		{"phantom", "dataset", "--n", "0", "--out", dir},
		{"phantom", "case", "--out", dir, "--size", "1,2"},
		{"phantom", "preview", "--out", png},
	} {
		if code := run(ctx, bad, &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2", bad, code)
		}
	}
}
