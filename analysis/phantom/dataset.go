package phantom

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
)

// DatasetOptions control WriteDataset.
type DatasetOptions struct {
	N         int
	FirstSeed uint64 // case i gets seed FirstSeed+i
	// Variant, when set, is used for every case; otherwise each case draws
	// from the default mix (see MixVariant).
	Variant *Variant
	// Size and SpacingMM override the grid of one-ear cases (0: defaults).
	Size                [3]int
	SpacingMM           [3]float64
	DomainRandomisation bool       // for every case
	DICOM               bool       // write dicom/ in every case
	Crop                int        // NIfTI crop, as in WriteOptions
	Split               [3]float64 // train, validation, test fractions (0: 0.7, 0.15, 0.15)
	Jobs                int        // cases in flight (0: all cores)
	Progress            func(done, total int)
	Args                []string // the command line, recorded in dataset.json
}

// DatasetIndex is dataset.json.
type DatasetIndex struct {
	Format      string              `json:"format"`
	Generator   string              `json:"generator"`
	Splits      map[string][]string `json:"splits"`
	Cases       []DatasetCase       `json:"cases"`
	LabelValues map[string]string   `json:"label_values"`
	Landmarks   []string            `json:"landmarks"`
	Options     map[string]any      `json:"options"`
}

// DatasetCase is one entry of dataset.json's case list.
type DatasetCase struct {
	ID       string `json:"id"`
	Seed     uint64 `json:"seed"`
	Variant  string `json:"variant"`
	Labelled bool   `json:"labelled"`
	Split    string `json:"split"`
}

// MixVariant draws the variant of a dataset case from its seed: mostly
// clinical one-ear scans across scanner types, then specimens, lesions,
// bilateral head CTs, field-of-view cuts and a few negatives.
func MixVariant(seed uint64) Variant {
	d := newDraws(seed, 12)
	var v Variant
	switch x := d.uni(0, 1); {
	case x < 0.40:
		v.Scanner = FlatPanel
	case x < 0.55:
		v.Scanner = ConeBeam
	case x < 0.65:
		v.Scanner = MultiSlice
	case x < 0.70:
		v.Scanner = MicroCT
		v.Contrast = []string{"dry", "formalin"}[d.intn(2)]
	case x < 0.78:
		v.Scanner = []string{FlatPanel, ConeBeam, MicroCT}[d.intn(3)]
		v.Rotation = "arbitrary"
		v.Contrast = []string{"fluid", "formalin", "dry"}[d.intn(3)]
	case x < 0.88:
		v.Scanner = []string{FlatPanel, ConeBeam}[d.intn(2)]
		v.Lesion = []string{"fenestral", "cochlear", "both"}[d.intn(3)]
		v.Severity = []string{"mild", "moderate", "severe"}[d.intn(3)]
	case x < 0.92:
		v.Scanner = MultiSlice
		v.Bilateral = true
	case x < 0.95:
		v.Scanner = FlatPanel
		v.FOVCut = true
	default:
		v.Negative = []string{"body", "thickslice", "localizer"}[d.intn(3)]
	}
	if v.Negative == "" && !v.Bilateral {
		v.Side = []string{"R", "L"}[d.intn(2)]
	}
	v.Artefacts = d.uni(0, 1) < 0.15
	if d.uni(0, 1) < 0.2 {
		v.Dose = math.Round(d.uni(0.3, 1)*100) / 100
	}
	return v
}

// WriteDataset generates N cases into dir and writes dataset.json. Cases
// are made in parallel, one per core; each case is the same bytes whatever
// the parallelism.
func WriteDataset(ctx context.Context, dir string, opt DatasetOptions) (*DatasetIndex, error) {
	if opt.N <= 0 {
		return nil, errors.New("phantom: dataset needs at least one case")
	}
	if opt.Split == ([3]float64{}) {
		opt.Split = [3]float64{0.7, 0.15, 0.15}
	}
	if s := opt.Split[0] + opt.Split[1] + opt.Split[2]; s <= 0 || opt.Split[0] < 0 || opt.Split[1] < 0 || opt.Split[2] < 0 {
		return nil, fmt.Errorf("phantom: bad split %v", opt.Split)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("phantom: %w", err)
	}
	jobs := opt.Jobs
	if jobs <= 0 {
		jobs = runtime.GOMAXPROCS(0)
	}
	cases := make([]DatasetCase, opt.N)
	variants := make([]Variant, opt.N)
	for i := range cases {
		seed := opt.FirstSeed + uint64(i)
		var v Variant
		if opt.Variant != nil {
			v = *opt.Variant
		} else {
			v = MixVariant(seed)
		}
		if opt.DomainRandomisation {
			v.DomainRandomisation = true
		}
		if v.Negative == "" && !v.Bilateral {
			for c := 0; c < 3; c++ {
				if opt.Size[c] > 0 {
					v.Size[c] = opt.Size[c]
				}
				if opt.SpacingMM[c] > 0 {
					v.SpacingMM[c] = opt.SpacingMM[c]
				}
			}
		}
		if err := v.normalise(); err != nil {
			return nil, err
		}
		variants[i] = v
		cases[i] = DatasetCase{ID: fmt.Sprintf("case%05d", i), Seed: seed, Variant: v.String(), Labelled: v.Negative == ""}
	}
	assignSplits(cases, opt.Split, opt.FirstSeed)

	var (
		mu   sync.Mutex
		done int
		errs = make([]error, opt.N)
		wg   sync.WaitGroup
		next = make(chan int)
	)
	for w := 0; w < jobs; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				errs[i] = func() error {
					c, err := Generate(ctx, cases[i].Seed, variants[i], Options{Workers: 1})
					if err != nil {
						return err
					}
					return WriteCase(ctx, filepath.Join(dir, cases[i].ID), cases[i].ID, c, WriteOptions{DICOM: opt.DICOM, Crop: opt.Crop, Workers: 1})
				}()
				mu.Lock()
				done++
				if opt.Progress != nil {
					opt.Progress(done, opt.N)
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < opt.N && ctx.Err() == nil; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("phantom: %s (seed %d, %s): %w", cases[i].ID, cases[i].Seed, cases[i].Variant, err)
		}
	}
	idx := &DatasetIndex{
		Format: "otonode-dataset/1", Generator: Generator,
		Splits:      map[string][]string{"train": {}, "validation": {}, "test": {}},
		Cases:       cases,
		LabelValues: map[string]string{"0": "background", "1": "cochlea", "2": "vestibule", "3": "semicircular_canals"},
		Landmarks:   LandmarkNames[:],
		Options: map[string]any{"n": opt.N, "first_seed": opt.FirstSeed, "size": opt.Size, "spacing_mm": opt.SpacingMM,
			"dicom": opt.DICOM, "crop": opt.Crop, "split": opt.Split, "domain_randomisation": opt.DomainRandomisation,
			"fixed_variant": opt.Variant != nil, "args": opt.Args},
	}
	for _, c := range cases {
		idx.Splits[c.Split] = append(idx.Splits[c.Split], c.ID)
	}
	return idx, writeJSON(filepath.Join(dir, "dataset.json"), idx)
}

// assignSplits shuffles the cases by a seed-keyed order and cuts the order
// by the fractions; train always gets at least one case.
func assignSplits(cases []DatasetCase, frac [3]float64, seed uint64) {
	n := len(cases)
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	key := func(i int) uint64 { return hash64(seed ^ 0x5b1 ^ uint64(i)*0x9e3779b97f4a7c15) }
	sort.Slice(order, func(a, b int) bool { return key(order[a]) < key(order[b]) })
	s := frac[0] + frac[1] + frac[2]
	nv := int(math.Round(float64(n) * frac[1] / s))
	nt := int(math.Round(float64(n) * frac[2] / s))
	for nv+nt >= n && nv+nt > 0 {
		if nt >= nv {
			nt--
		} else {
			nv--
		}
	}
	for r, i := range order {
		switch {
		case r < nv:
			cases[i].Split = "validation"
		case r < nv+nt:
			cases[i].Split = "test"
		default:
			cases[i].Split = "train"
		}
	}
}
