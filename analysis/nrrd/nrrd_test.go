package nrrd

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otonode/otonode/analysis/volume"
)

func build(t *testing.T, header string, data []byte, gz bool) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteString(header)
	b.WriteString("\n\n") // the blank line ends the header
	if gz {
		zw := gzip.NewWriter(&b)
		zw.Write(data)
		zw.Close()
	} else {
		b.Write(data)
	}
	return b.Bytes()
}

func affineNear(t *testing.T, got, want volume.Affine) {
	t.Helper()
	for r := range want {
		for c := range want[r] {
			if math.Abs(got[r][c]-want[r][c]) > 1e-12 {
				t.Fatalf("affine\n got %v\nwant %v", got, want)
			}
		}
	}
}

func TestRead(t *testing.T) {
	vals := []float64{-3, 0, 7, 1000, -1024, 5, 6, 120, 2, 9, 11, 13} // 3×2×2
	le16 := func() []byte {
		var b []byte
		for _, v := range vals {
			b = binary.LittleEndian.AppendUint16(b, uint16(int16(v)))
		}
		return b
	}
	beF := func() []byte {
		var b []byte
		for _, v := range vals {
			b = binary.BigEndian.AppendUint32(b, math.Float32bits(float32(v)))
		}
		return b
	}
	cases := []struct {
		name, header string
		data         []byte
		gz           bool
		want         volume.Affine
	}{
		{"raw LPS oblique", "NRRD0004\n# comment\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: 3 2 2\n" +
			"space directions: (0.5,0.1,0) (-0.2,0.6,0) (0,0,1.25)\nkinds: domain domain domain\nendian: little\nencoding: raw\n" +
			"space origin: (-10.5,20,300)\nmy key:=my value",
			le16(), false, volume.Affine{{0.5, -0.2, 0, -10.5}, {0.1, 0.6, 0, 20}, {0, 0, 1.25, 300}}},
		{"gzip big-endian float RAS", "NRRD0005\ntype: float\ndimension: 3\nspace: RAS\nsizes: 3 2 2\n" +
			"space directions: (0.5,0,0) (0,0.6,0) (0,0,2)\nendian: big\nencoding: gzip\nspace origin: (1,2,3)",
			beF(), true, volume.Affine{{-0.5, 0, 0, -1}, {0, -0.6, 0, -2}, {0, 0, 2, 3}}},
		{"LAS", "NRRD0004\ntype: int16\ndimension: 3\nspace: left-anterior-superior\nsizes: 3 2 2\n" +
			"space directions: (1,0,0) (0,1,0) (0,0,1)\nencoding: raw\nendian: little\nspace origin: (1,2,3)",
			le16(), false, volume.Affine{{1, 0, 0, 1}, {0, -1, 0, -2}, {0, 0, 1, 3}}},
		{"spacings only", "NRRD0004\ntype: short\ndimension: 3\nsizes: 3 2 2\nspacings: 0.3 0.4 0.5\nencoding: raw\nendian: little",
			le16(), false, volume.Affine{{0.3, 0, 0, 0}, {0, 0.4, 0, 0}, {0, 0, 0.5, 0}}},
		{"ascii", "NRRD0004\ntype: int\ndimension: 3\nsizes: 3 2 2\nencoding: ascii",
			[]byte("-3 0 7\n1000 -1024 5\n6 120 2\n9 11 13\n"), false, volume.Identity},
		{"gzip byte skip", "NRRD0004\ntype: short\ndimension: 3\nsizes: 3 2 2\nencoding: gzip\nendian: little\nbyte skip: 4",
			append([]byte{9, 9, 9, 9}, le16()...), true, volume.Identity},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, h, err := ReadAs[float32](bytes.NewReader(build(t, c.header, c.data, c.gz)))
			if err != nil {
				t.Fatal(err)
			}
			if v.Size != [3]int{3, 2, 2} {
				t.Fatalf("size %v", v.Size)
			}
			affineNear(t, v.Affine, c.want)
			for i, x := range vals {
				if v.Data[i] != float32(x) {
					t.Fatalf("voxel %d = %v, want %v (%+v)", i, v.Data[i], x, h)
				}
			}
		})
	}
}

func TestDetached(t *testing.T) {
	dir := t.TempDir()
	data := []byte("junk header of another format\n")
	for i := 0; i < 8; i++ {
		data = append(data, byte(i*30))
	}
	os.WriteFile(filepath.Join(dir, "img.raw"), data, 0o644)
	hdr := "NRRD0004\ntype: uchar\ndimension: 3\nsizes: 2 2 2\nencoding: raw\nbyte skip: -1\ndata file: img.raw\n"
	os.WriteFile(filepath.Join(dir, "img.nhdr"), []byte(hdr), 0o644)
	v, _, err := ReadFileAs[uint8](filepath.Join(dir, "img.nhdr"))
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range v.Data {
		if x != byte(i*30) {
			t.Fatalf("voxel %d = %d", i, x)
		}
	}
	hdr = "NRRD0004\ntype: uchar\ndimension: 3\nsizes: 2 2 2\nencoding: raw\nline skip: 1\ndata file: img.raw\n"
	os.WriteFile(filepath.Join(dir, "img2.nhdr"), []byte(hdr), 0o644)
	if v, _, err = ReadFileAs[uint8](filepath.Join(dir, "img2.nhdr")); err != nil || v.Data[7] != 210 {
		t.Fatalf("line skip: %v", err)
	}
}

func TestLabelsMustFit(t *testing.T) {
	hdr := "NRRD0004\ntype: short\ndimension: 3\nsizes: 1 1 2\nencoding: raw\nendian: little"
	b := build(t, hdr, []byte{1, 0, 0xFF, 0xFF}, false) // 1, -1
	if _, _, err := ReadAs[uint8](bytes.NewReader(b)); err == nil {
		t.Fatal("-1 read as uint8")
	}
	if v, _, err := ReadAs[int16](bytes.NewReader(b)); err != nil || v.Data[1] != -1 {
		t.Fatalf("int16: %v", err)
	}
}

func TestBadInput(t *testing.T) {
	ok := "NRRD0004\ntype: uchar\ndimension: 3\nsizes: 2 2 2\nencoding: raw"
	data := make([]byte, 8)
	cases := map[string][]byte{
		"empty":          nil,
		"no magic":       build(t, strings.Replace(ok, "NRRD0004", "NRRX0004", 1), data, false),
		"4-D":            build(t, strings.Replace(ok, "dimension: 3\nsizes: 2 2 2", "dimension: 4\nsizes: 2 2 2 1", 1), data, false),
		"truncated":      build(t, ok, data[:7], false),
		"type":           build(t, strings.Replace(ok, "uchar", "block", 1), data, false),
		"encoding":       build(t, strings.Replace(ok, "raw", "bzip2", 1), data, false),
		"huge":           build(t, strings.Replace(ok, "2 2 2", "100000 100000 100000", 1), data, false),
		"singular":       build(t, ok+"\nspace: LPS\nspace directions: (1,0,0) (1,0,0) (0,0,1)", data, false),
		"space":          build(t, ok+"\nspace: scanner-xyz\nspace directions: (1,0,0) (0,1,0) (0,0,1)", data, false),
		"bad vector":     build(t, ok+"\nspace: LPS\nspace directions: (1,0) (0,1,0) (0,0,1)", data, false),
		"bad gzip":       build(t, strings.Replace(ok, "raw", "gzip", 1), data, false),
		"ascii short":    build(t, strings.Replace(ok, "raw", "ascii", 1), []byte("1 2 3"), false),
		"sizes":          build(t, strings.Replace(ok, "2 2 2", "2 x 2", 1), data, false),
		"detached in rd": build(t, ok+"\ndata file: x.raw", data, false),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			_, _, err := ReadAs[float32](bytes.NewReader(b))
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
		})
	}
}

func FuzzRead(f *testing.F) {
	f.Add([]byte("NRRD0004\ntype: short\ndimension: 3\nsizes: 2 1 1\nencoding: raw\nendian: big\nspace: RAS\nspace directions: (1,0,0) (0,1,0) (0,0,1)\n\n\x00\x01\x00\x02"))
	f.Add([]byte("NRRD0004\ntype: uchar\ndimension: 3\nsizes: 1 1 3\nencoding: ascii\n\n1 2 3"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		v, _, err := ReadAs[float32](bytes.NewReader(b))
		if err == nil && len(v.Data) != v.Len() {
			t.Fatal("inconsistent volume")
		}
	})
}
