package phantom

import (
	"errors"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"

	"github.com/otonode/otonode/analysis/volume"
)

// PreviewOptions control Preview.
type PreviewOptions struct {
	WindowCenter, WindowWidth float64 // 0,0: a temporal-bone window (L 700, W 4000)
	Centre                    *[3]int // voxel the three planes pass through; nil: the labyrinth
	MaxPanel                  int     // pixels along a panel's longer side (default 512)
	Landmarks                 [][3]float64
	FOVMM                     float64 // >0: show only this extent (mm) around the centre
}

var labelColours = [4]color.RGBA{{}, {255, 64, 64, 255}, {64, 230, 64, 255}, {80, 140, 255, 255}}

// Preview writes a PNG with the axial, coronal and sagittal slices through
// a point of the labyrinth, the label outline drawn over them (cochlea red,
// vestibule green, canals blue) and landmarks as yellow crosses.
func Preview(w io.Writer, ct *volume.Volume[int16], lab *volume.Volume[uint8], opt PreviewOptions) error {
	if ct == nil || ct.Len() == 0 {
		return errors.New("phantom: empty volume")
	}
	if opt.WindowWidth <= 0 {
		opt.WindowCenter, opt.WindowWidth = 700, 4000
	}
	if opt.MaxPanel <= 0 {
		opt.MaxPanel = 512
	}
	n := ct.Size
	c := [3]int{n[0] / 2, n[1] / 2, n[2] / 2}
	if opt.Centre != nil {
		c = *opt.Centre
	} else if lab != nil {
		// The most cochlear voxel column: the centroid of the cochlea, or of
		// the whole label.
		var s [3]float64
		var cnt float64
		for k := 0; k < n[2]; k++ {
			for j := 0; j < n[1]; j++ {
				for i := 0; i < n[0]; i++ {
					if l := lab.Data[i+n[0]*(j+n[1]*k)]; l == LabelVestibule {
						s[0] += float64(i)
						s[1] += float64(j)
						s[2] += float64(k)
						cnt++
					}
				}
			}
		}
		if cnt > 0 {
			for a := 0; a < 3; a++ {
				c[a] = int(math.Round(s[a] / cnt))
			}
		}
	}
	sp := ct.Affine.Spacing()
	type panel struct {
		u, v   int     // volume axes along the panel's x and y
		flipV  bool    // y runs against the axis (superior at top)
		fixed  int     // the axis held constant
		pw, ph int     // pixels
		pix    float64 // mm per pixel
		ou, ov float64 // index of the panel's first pixel along u and v
	}
	mk := func(u, v, fixed int, flip bool) panel {
		eu, ev := float64(n[u])*sp[u], float64(n[v])*sp[v]
		ou, ov := 0.0, 0.0
		if opt.FOVMM > 0 {
			eu, ev = math.Min(eu, opt.FOVMM), math.Min(ev, opt.FOVMM)
			ou = float64(c[u]) - eu/2/sp[u]
			ov = float64(c[v]) - ev/2/sp[v]
			if flip {
				ov = float64(n[v]-1-c[v]) - ev/2/sp[v]
			}
		}
		pix := math.Max(eu, ev) / float64(opt.MaxPanel)
		return panel{u: u, v: v, fixed: fixed, flipV: flip, pw: max(1, int(eu/pix)), ph: max(1, int(ev/pix)), pix: pix, ou: ou, ov: ov}
	}
	ps := []panel{mk(0, 1, 2, false), mk(0, 2, 1, true), mk(1, 2, 0, true)}
	W, H := 0, 0
	for _, p := range ps {
		W += p.pw + 4
		H = max(H, p.ph)
	}
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	lo := opt.WindowCenter - opt.WindowWidth/2
	x0 := 0
	for _, p := range ps {
		idx := func(px, py int) (int, bool) {
			var a [3]int
			a[p.fixed] = c[p.fixed]
			a[p.u] = int(math.Floor(p.ou + float64(px)*p.pix/sp[p.u]))
			vv := int(math.Floor(p.ov + float64(py)*p.pix/sp[p.v]))
			if p.flipV {
				vv = n[p.v] - 1 - vv
			}
			a[p.v] = vv
			if !ct.Contains(a[0], a[1], a[2]) {
				return 0, false
			}
			return ct.Index(a[0], a[1], a[2]), true
		}
		labAt := func(px, py int) uint8 {
			if lab == nil || px < 0 || py < 0 || px >= p.pw || py >= p.ph {
				return 0
			}
			if o, ok := idx(px, py); ok {
				return lab.Data[o]
			}
			return 0
		}
		for py := 0; py < p.ph; py++ {
			for px := 0; px < p.pw; px++ {
				o, ok := idx(px, py)
				if !ok {
					continue
				}
				g := uint8(clamp((float64(ct.Data[o])-lo)/opt.WindowWidth*255, 0, 255))
				col := color.RGBA{g, g, g, 255}
				if l := labAt(px, py); l != 0 {
					if labAt(px-1, py) != l || labAt(px+1, py) != l || labAt(px, py-1) != l || labAt(px, py+1) != l {
						col = labelColours[min(int(l), 3)]
					}
				}
				img.SetRGBA(x0+px, py, col)
			}
		}
		// Landmarks within two voxels of the plane.
		for _, lm := range opt.Landmarks {
			if math.Abs(lm[p.fixed]-float64(c[p.fixed])) > 2.5 {
				continue
			}
			px := int((lm[p.u] + 0.5 - p.ou) * sp[p.u] / p.pix)
			vv := lm[p.v]
			if p.flipV {
				vv = float64(n[p.v]-1) - vv
			}
			py := int((vv + 0.5 - p.ov) * sp[p.v] / p.pix)
			for t := -6; t <= 6; t++ {
				if t > -2 && t < 2 {
					continue
				}
				for _, q := range [][2]int{{px + t, py}, {px, py + t}} {
					if q[0] >= 0 && q[0] < p.pw && q[1] >= 0 && q[1] < p.ph {
						img.SetRGBA(x0+q[0], q[1], color.RGBA{255, 230, 0, 255})
					}
				}
			}
		}
		x0 += p.pw + 4
	}
	return png.Encode(w, img)
}

// LandmarkVoxels lists the voxel coordinates of every landmark of a case.
func (c *Case) LandmarkVoxels() [][3]float64 {
	var out [][3]float64
	for _, e := range c.Info.Ears {
		for _, n := range LandmarkNames {
			out = append(out, e.Landmarks[n].Voxel)
		}
	}
	return out
}
