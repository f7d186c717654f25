package phantom

import (
	"context"
	"math"
	"runtime"
	"sync"

	"github.com/otonode/otonode/analysis/volume"
)

// Stored-value range of a 12-bit CT with rescale intercept −1024.
const (
	RescaleIntercept = -1024
	BitsStored       = 12
	minHU            = RescaleIntercept
	maxHU            = RescaleIntercept + (1 << BitsStored) - 1
)

// Imaging records the drawn acquisition and reconstruction of a case.
type Imaging struct {
	Scanner          string     `json:"scanner"`
	Manufacturer     string     `json:"manufacturer"`
	Model            string     `json:"model"`
	KVP              float64    `json:"kvp"`
	ExposureMAs      float64    `json:"exposure_mas"`
	Kernel           string     `json:"kernel"`
	SpacingMM        [3]float64 `json:"spacing_mm"`
	SliceThicknessMM float64    `json:"slice_thickness_mm"`
	PSFSigmaMM       [3]float64 `json:"psf_sigma_mm"`
	NoiseSDHU        float64    `json:"noise_sd_hu"`
	NoiseGrain       float64    `json:"noise_white_fraction"` // of the variance; the rest is shaped by the PSF
	NoiseBoneGain    float64    `json:"noise_bone_gain"`      // extra noise SD per 1000 HU (fewer photons through bone)
	TextureHU        float64    `json:"bone_texture_hu"`      // amplitude of the density texture of bone
	TextureMM        float64    `json:"bone_texture_mm"`      // its correlation length
	Dose             float64    `json:"dose"`
	Gain             float64    `json:"hu_gain"`
	OffsetHU         float64    `json:"hu_offset"`
	Rings            []Ring     `json:"rings,omitempty"`
	Streaks          []Streak   `json:"streaks,omitempty"`
	WindowCenter     float64    `json:"window_center"`
	WindowWidth      float64    `json:"window_width"`
	RescaleSlope     float64    `json:"rescale_slope"`
	RescaleIntercept float64    `json:"rescale_intercept"`
	BitsStored       int        `json:"bits_stored"`
	DomainRandomised bool       `json:"domain_randomised"`
}

// Ring is a concentric ring artefact about the grid's central axis.
type Ring struct {
	RadiusMM    float64 `json:"radius_mm"`
	AmplitudeHU float64 `json:"amplitude_hu"`
}

// Streak is a line artefact through a point in the axial plane.
type Streak struct {
	AngleDeg    float64    `json:"angle_deg"`
	ThroughMM   [2]float64 `json:"through_xy_mm"`
	AmplitudeHU float64    `json:"amplitude_hu"`
	WidthMM     float64    `json:"width_mm"`
}

func drawImaging(v Variant, d *draws, sp [3]float64, thick float64) Imaging {
	im := Imaging{Scanner: v.Scanner, SpacingMM: sp, SliceThicknessMM: thick, Dose: v.Dose,
		Gain: 1, RescaleSlope: 1, RescaleIntercept: RescaleIntercept, BitsStored: BitsStored,
		WindowCenter: 700, WindowWidth: 4000, DomainRandomised: v.DomainRandomisation}
	var k, noise float64
	switch v.Scanner {
	case FlatPanel:
		im.Manufacturer, im.Model, im.Kernel = "otonode phantom", "flat-panel volume CT", "HU sharp"
		im.KVP, im.ExposureMAs = 109, 73.5
		k, noise = d.uni(0.9, 1.2), d.uni(70, 120)
	case ConeBeam:
		im.Manufacturer, im.Model, im.Kernel = "otonode phantom", "cone-beam CT", "bone"
		im.KVP, im.ExposureMAs = 90, 40
		k, noise = d.uni(0.8, 1.1), d.uni(40, 90)
	case MultiSlice:
		im.Manufacturer, im.Model, im.Kernel = "otonode phantom", "multi-slice CT", "U70u"
		im.KVP, im.ExposureMAs = 120, 250
		k, noise = d.uni(0.7, 1.0), d.uni(25, 55)
	case MicroCT:
		im.Manufacturer, im.Model, im.Kernel = "otonode phantom", "micro-CT", "FDK"
		im.KVP, im.ExposureMAs = 80, 10
		k, noise = d.uni(0.8, 1.2), d.uni(40, 90)
	}
	for c := 0; c < 3; c++ {
		im.PSFSigmaMM[c] = k * sp[c]
	}
	if thick > sp[2] {
		// The slice profile: a box of the slice thickness, as a Gaussian.
		im.PSFSigmaMM[2] = math.Max(im.PSFSigmaMM[2], thick/2.355)
	}
	im.NoiseGrain = d.uni(0.05, 0.2)
	im.NoiseBoneGain = d.uni(0.2, 0.5)
	im.TextureHU = d.uni(100, 220)
	im.TextureMM = d.uni(0.5, 0.9)
	if v.DomainRandomisation {
		f := d.uni(0.5, 1.8)
		for c := range im.PSFSigmaMM {
			im.PSFSigmaMM[c] *= f
		}
		noise = d.uni(10, 220)
		im.NoiseGrain = d.uni(0, 0.8)
		im.Gain = d.uni(0.75, 1.25)
		im.NoiseBoneGain = d.uni(0, 1)
		im.TextureHU = d.uni(0, 350)
		im.OffsetHU = d.uni(-150, 150)
	}
	im.NoiseSDHU = noise / math.Sqrt(v.Dose)
	if v.Artefacts {
		n := 2 + d.intn(5)
		for i := 0; i < n; i++ {
			im.Rings = append(im.Rings, Ring{RadiusMM: d.uni(1, 25), AmplitudeHU: d.jit(90)})
		}
		n = 1 + d.intn(4)
		for i := 0; i < n; i++ {
			im.Streaks = append(im.Streaks, Streak{AngleDeg: d.uni(0, 180), ThroughMM: [2]float64{d.jit(3), d.jit(3)}, AmplitudeHU: d.jit(250), WidthMM: d.uni(0.3, 1.2)})
		}
	}
	return im
}

// gaussKernel returns normalised taps for sigma in voxels (nil: no blur).
func gaussKernel(sigma float64) []float32 {
	if sigma < 0.25 {
		return nil
	}
	r := int(math.Ceil(3 * sigma))
	w := make([]float32, 2*r+1)
	var s float64
	for i := -r; i <= r; i++ {
		x := math.Exp(-float64(i*i) / (2 * sigma * sigma))
		w[i+r] = float32(x)
		s += x
	}
	for i := range w {
		w[i] = float32(float64(w[i]) / s)
	}
	return w
}

func sumSq(w []float32) float64 {
	if w == nil {
		return 1
	}
	var s float64
	for _, x := range w {
		s += float64(x) * float64(x)
	}
	return s
}

// applyPhysics turns rendered HU into the reconstructed image: calibration,
// noise shaped by the point spread, blur, white noise, artefacts, 12-bit
// quantisation. Randomness is keyed by voxel position and seed only.
func applyPhysics(ctx context.Context, hu []float32, g volume.Grid, im Imaging, seed uint64, workers int) (*volume.Volume[int16], error) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	nx, ny, nz := g.Size[0], g.Size[1], g.Size[2]
	sp := g.Affine.Spacing()
	var ks [3][]float32
	amp := 1.0
	for c := 0; c < 3; c++ {
		ks[c] = gaussKernel(im.PSFSigmaMM[c] / sp[c])
		amp *= sumSq(ks[c])
	}
	sdC := im.NoiseSDHU * math.Sqrt(1-im.NoiseGrain) / math.Sqrt(amp)
	sdW := im.NoiseSDHU * math.Sqrt(im.NoiseGrain)
	gain, off := float32(im.Gain), float32(im.OffsetHU)
	tex := newTexture(g, im.TextureMM, seed)
	bone := float32(im.NoiseBoneGain / 1000)
	parallel(nz, workers, func(k int) {
		trow := make([]float32, nx)
		for j := 0; j < ny; j++ {
			row := hu[nx*(j+ny*k) : nx*(j+ny*k)+nx]
			if im.TextureHU > 0 {
				tex.row(trow, j, k)
				addTexture(row, trow, float32(im.TextureHU))
			}
			addNoise(row, float32(sdC), bone, hash64(seed^0x5eed^uint64(k*ny+j)*0x9e37), gain, off)
		}
	})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	blur3(hu, g.Size, ks, workers)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	art := artefactMap(g, im)
	out := volume.New[int16](g)
	parallel(nz, workers, func(k int) {
		for j := 0; j < ny; j++ {
			o := nx * (j + ny*k)
			row := hu[o : o+nx]
			if sdW > 0 {
				addNoise(row, float32(sdW), 0, hash64(seed^0xa11ce^uint64(k*ny+j)*0x51ed), 1, 0)
			}
			dst := out.Data[o : o+nx]
			var am []float32
			if art != nil {
				am = art[nx*j : nx*j+nx]
			}
			for i, x := range row {
				if am != nil {
					x += am[i]
				}
				v := math.Round(float64(x))
				if v < minHU {
					v = minHU
				} else if v > maxHU {
					v = maxHU
				}
				dst[i] = int16(v)
			}
		}
	})
	return out, ctx.Err()
}

// addNoise adds approximately normal noise (Irwin–Hall of four uniforms
// from one 64-bit draw) with SD sd·(1 + bone·max(x, 0)), after
// x ← gain·x + off: dense bone lets fewer photons through.
func addNoise(row []float32, sd, bone float32, state uint64, gain, off float32) {
	const inv = 1.0 / 65535
	s0 := sd * float32(math.Sqrt(3))
	for i := range row {
		s := s0
		if x := row[i]; x > 0 {
			s += s0 * bone * x
		}
		state += 0x9e3779b97f4a7c15
		z := state
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		z ^= z >> 31
		u := float32(z&0xffff) + float32((z>>16)&0xffff) + float32((z>>32)&0xffff) + float32(z>>48)
		row[i] = gain*row[i] + off + s*(u*inv-2)
	}
}

// artefactMap is the per-slice additive pattern of rings and streaks
// (identical for every slice, as for a detector defect), or nil.
func artefactMap(g volume.Grid, im Imaging) []float32 {
	if len(im.Rings) == 0 && len(im.Streaks) == 0 {
		return nil
	}
	nx, ny := g.Size[0], g.Size[1]
	sp := g.Affine.Spacing()
	m := make([]float32, nx*ny)
	cx, cy := float64(nx-1)/2*sp[0], float64(ny-1)/2*sp[1]
	for j := 0; j < ny; j++ {
		for i := 0; i < nx; i++ {
			x, y := float64(i)*sp[0]-cx, float64(j)*sp[1]-cy
			r := math.Hypot(x, y)
			var v float64
			for _, rg := range im.Rings {
				w := 0.6 * sp[0]
				v += rg.AmplitudeHU * math.Exp(-sq(r-rg.RadiusMM)/(2*w*w))
			}
			for _, st := range im.Streaks {
				a := st.AngleDeg * math.Pi / 180
				dd := (x-st.ThroughMM[0])*math.Sin(a) - (y-st.ThroughMM[1])*math.Cos(a)
				// A dark core flanked by bright bands, as beam hardening does.
				t := dd / st.WidthMM
				v += st.AmplitudeHU * (1 - 2*t*t) * math.Exp(-t*t)
			}
			m[i+nx*j] = float32(v)
		}
	}
	return m
}

// parallel runs f(0..n-1) on workers goroutines (all cores when ≤ 0).
func parallel(n, workers int, f func(int)) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	var wg sync.WaitGroup
	ch := make(chan int, n)
	for i := 0; i < n; i++ {
		ch <- i
	}
	close(ch)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ch {
				f(i)
			}
		}()
	}
	wg.Wait()
}

// blur3 convolves in place with separable kernels (edges clamped).
func blur3(v []float32, size [3]int, ks [3][]float32, workers int) {
	nx, ny, nz := size[0], size[1], size[2]
	if w := ks[0]; w != nil {
		parallel(nz, workers, func(k int) {
			tmp := make([]float32, nx)
			for j := 0; j < ny; j++ {
				row := v[nx*(j+ny*k) : nx*(j+ny*k)+nx]
				conv1(tmp, row, w)
				copy(row, tmp)
			}
		})
	}
	if w := ks[1]; w != nil {
		parallel(nz, workers, func(k int) {
			sl := v[nx*ny*k : nx*ny*(k+1)]
			tmp := make([]float32, nx*ny)
			convRows(tmp, sl, nx, ny, w)
			copy(sl, tmp)
		})
	}
	if w := ks[2]; w != nil {
		// Along k: gather one j-row of every slice, convolve, scatter.
		parallel(ny, workers, func(j int) {
			src := make([]float32, nx*nz)
			dst := make([]float32, nx*nz)
			for k := 0; k < nz; k++ {
				copy(src[nx*k:nx*k+nx], v[nx*(j+ny*k):nx*(j+ny*k)+nx])
			}
			convRows(dst, src, nx, nz, w)
			for k := 0; k < nz; k++ {
				copy(v[nx*(j+ny*k):nx*(j+ny*k)+nx], dst[nx*k:nx*k+nx])
			}
		})
	}
}

// conv1 convolves one contiguous line.
func conv1(dst, src []float32, w []float32) {
	r := len(w) / 2
	n := len(src)
	for i := 0; i < n; i++ {
		var s float32
		if i >= r && i+r < n {
			seg := src[i-r : i+r+1]
			for t, x := range seg {
				s += w[t] * x
			}
		} else {
			for t := -r; t <= r; t++ {
				ii := min(max(i+t, 0), n-1)
				s += w[t+r] * src[ii]
			}
		}
		dst[i] = s
	}
}

// convRows convolves across rows: dst row y = Σ w[t]·src row (y+t).
func convRows(dst, src []float32, nx, nrow int, w []float32) {
	r := len(w) / 2
	for y := 0; y < nrow; y++ {
		d := dst[nx*y : nx*y+nx]
		for i := range d {
			d[i] = 0
		}
		for t := -r; t <= r; t++ {
			yy := min(max(y+t, 0), nrow-1)
			s := src[nx*yy : nx*yy+nx]
			wt := w[t+r]
			for i, x := range s {
				d[i] += wt * x
			}
		}
	}
}

// texture is smooth random density variation of bone: values on a coarse
// lattice, interpolated trilinearly.
type texture struct {
	nx, ny, nz int     // coarse lattice size
	step       float64 // voxels per lattice cell along i, j, k (isotropic in mm)
	steps      [3]float64
	v          []float32
	gx         int // fine size along i
}

func newTexture(g volume.Grid, mm float64, seed uint64) *texture {
	sp := g.Affine.Spacing()
	if mm <= 0 {
		mm = 0.7
	}
	t := &texture{gx: g.Size[0]}
	for c := 0; c < 3; c++ {
		t.steps[c] = math.Max(mm/sp[c], 1)
	}
	t.nx = int(float64(g.Size[0])/t.steps[0]) + 2
	t.ny = int(float64(g.Size[1])/t.steps[1]) + 2
	t.nz = int(float64(g.Size[2])/t.steps[2]) + 2
	t.v = make([]float32, t.nx*t.ny*t.nz)
	for i := range t.v {
		h := hash64(seed ^ 0x7e47 ^ uint64(i)*0x9e3779b97f4a7c15)
		t.v[i] = float32(h>>40)/float32(1<<24)*2 - 1
	}
	return t
}

// row fills dst with the texture along row (j, k).
func (t *texture) row(dst []float32, j, k int) {
	fy, fz := float64(j)/t.steps[1], float64(k)/t.steps[2]
	y0, z0 := int(fy), int(fz)
	wy, wz := float32(fy-float64(y0)), float32(fz-float64(z0))
	at := func(x, y, z int) float32 { return t.v[x+t.nx*(y+t.ny*z)] }
	// The coarse row, interpolated in y and z first.
	var prev float32
	px := -1
	var cur, next float32
	for i := range dst {
		fx := float64(i) / t.steps[0]
		x0 := int(fx)
		if x0 != px {
			if x0 == px+1 && px >= 0 {
				cur = next
			} else {
				cur = lerp2(at(x0, y0, z0), at(x0, y0+1, z0), at(x0, y0, z0+1), at(x0, y0+1, z0+1), wy, wz)
			}
			next = lerp2(at(x0+1, y0, z0), at(x0+1, y0+1, z0), at(x0+1, y0, z0+1), at(x0+1, y0+1, z0+1), wy, wz)
			px = x0
		}
		wx := float32(fx - float64(x0))
		dst[i] = cur + (next-cur)*wx
	}
	_ = prev
}

func lerp2(a, b, c, d, wy, wz float32) float32 {
	ab := a + (b-a)*wy
	cd := c + (d-c)*wy
	return ab + (cd-ab)*wz
}

// addTexture modulates bone (weight rising from 300 to 1500 HU) by amp·tex.
func addTexture(row, tex []float32, amp float32) {
	for i, x := range row {
		if x > 300 {
			w := (x - 300) / 1200
			if w > 1 {
				w = 1
			}
			row[i] = x + amp*w*tex[i]
		}
	}
}
