package analysis

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"

	"github.com/otonode/otonode/analysis/volume"
)

// Preview layout: one row per landmark, three index planes through it
// (k: axial-like, j, i), the CT in a bone window with the segmentation's
// outline and the landmark marked; a last row shows the uncertainty map
// through the first landmark. Each tile covers tileMM around the landmark.
const (
	tilePx      = 192
	tileMM      = 16.0
	windowLevel = 700.0
	windowWidth = 4000.0
)

func writePreview[T volume.Scalar](path string, ct *volume.Volume[T], e Ear) error {
	rows := len(e.Landmarks)
	if e.UncertaintyMap != nil {
		rows++
	}
	img := image.NewRGBA(image.Rect(0, 0, 3*tilePx, max(rows, 1)*tilePx))
	for r, l := range e.Landmarks {
		for plane := range 3 {
			drawTile(img, plane*tilePx, r*tilePx, ct, e.Label, l.PatientMM, plane, ctColour)
		}
	}
	if u := e.UncertaintyMap; u != nil && len(e.Landmarks) > 0 {
		var hi float32
		for _, v := range u.Data {
			hi = max(hi, v)
		}
		heat := func(v float32) color.RGBA { return heatColour(v, hi) }
		for plane := range 3 {
			drawTile(img, plane*tilePx, len(e.Landmarks)*tilePx, u, nil, e.Landmarks[0].PatientMM, plane, heat)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("analysis: preview: %w", err)
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return fmt.Errorf("analysis: preview: %w", err)
	}
	return f.Close()
}

func ctColour(hu float32) color.RGBA {
	g := (float64(hu) - (windowLevel - windowWidth/2)) / windowWidth
	c := uint8(255 * math.Max(0, math.Min(1, g)))
	return color.RGBA{c, c, c, 255}
}

// heatColour maps 0..hi to black-red-yellow.
func heatColour(v, hi float32) color.RGBA {
	if hi <= 0 {
		return color.RGBA{0, 0, 0, 255}
	}
	t := math.Max(0, math.Min(1, float64(v/hi)))
	return color.RGBA{uint8(255 * math.Min(1, 2*t)), uint8(255 * math.Max(0, 2*t-1)), 0, 255}
}

// drawTile samples v (nearest voxel) on a square through p (patient mm)
// spanned by the two index directions other than plane, and outlines the
// label's border in green and p in red.
func drawTile[T volume.Scalar](img *image.RGBA, x0, y0 int, v *volume.Volume[T], label *volume.Volume[uint8], p [3]float64, plane int, colour func(float32) color.RGBA) {
	inv, err := v.Affine.Inverse()
	if err != nil {
		return
	}
	u, w := (plane+1)%3, (plane+2)%3
	if plane == 2 { // the axial-like plane: i across, j down
		u, w = 0, 1
	}
	du, dw := v.Affine.Direction(u), v.Affine.Direction(w)
	step := tileMM / tilePx
	var lab func(q [3]float64) bool
	if label != nil {
		linv, err := label.Affine.Inverse()
		if err == nil {
			lab = func(q [3]float64) bool {
				ijk := linv.Apply(q)
				i, j, k := int(math.Round(ijk[0])), int(math.Round(ijk[1])), int(math.Round(ijk[2]))
				return label.Contains(i, j, k) && label.At(i, j, k) != 0
			}
		}
	}
	at := func(px, py int) [3]float64 {
		a := (float64(px) - tilePx/2) * step
		b := (float64(py) - tilePx/2) * step
		return [3]float64{p[0] + a*du[0] + b*dw[0], p[1] + a*du[1] + b*dw[1], p[2] + a*du[2] + b*dw[2]}
	}
	for py := range tilePx {
		for px := range tilePx {
			q := at(px, py)
			ijk := inv.Apply(q)
			i, j, k := int(math.Round(ijk[0])), int(math.Round(ijk[1])), int(math.Round(ijk[2]))
			c := color.RGBA{0, 0, 40, 255}
			if v.Contains(i, j, k) {
				c = colour(float32(v.At(i, j, k)))
			}
			if lab != nil && lab(q) && (!lab(at(px-1, py)) || !lab(at(px+1, py)) || !lab(at(px, py-1)) || !lab(at(px, py+1))) {
				c = color.RGBA{40, 230, 60, 255}
			}
			img.SetRGBA(x0+px, y0+py, c)
		}
	}
	for d := -6; d <= 6; d++ {
		if d > -2 && d < 2 {
			continue
		}
		img.SetRGBA(x0+tilePx/2+d, y0+tilePx/2, color.RGBA{255, 40, 40, 255})
		img.SetRGBA(x0+tilePx/2, y0+tilePx/2+d, color.RGBA{255, 40, 40, 255})
	}
}
