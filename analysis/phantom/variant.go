package phantom

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Scanner types.
const (
	FlatPanel  = "flatpanel"
	ConeBeam   = "conebeam"
	MultiSlice = "multislice"
	MicroCT    = "microct"
)

// Variant selects what kind of case to generate. The zero value is a
// standard clinical flat-panel scan of one ear, in vivo, without lesions.
type Variant struct {
	Scanner   string `json:"scanner"`             // flatpanel, conebeam, multislice, microct
	Side      string `json:"side,omitempty"`      // R, L, or "" to draw
	Bilateral bool   `json:"bilateral,omitempty"` // both ears in one head CT
	Rotation  string `json:"rotation"`            // standard or arbitrary
	Contrast  string `json:"contrast"`            // fluid, formalin or dry
	Lesion    string `json:"lesion,omitempty"`    // "", fenestral, cochlear or both
	Severity  string `json:"severity,omitempty"`  // mild, moderate, severe (with a lesion)
	Negative  string `json:"negative,omitempty"`  // "", body, thickslice, localizer, ossified
	FOVCut    bool   `json:"fov_cut,omitempty"`   // field of view cuts through the labyrinth
	Artefacts bool   `json:"artefacts,omitempty"` // ring and streak artefacts
	// DomainRandomisation draws tissue HU, blur and noise from wide ranges.
	DomainRandomisation bool `json:"domain_randomisation,omitempty"`
	// Size and SpacingMM override the scanner defaults where non-zero.
	Size      [3]int     `json:"size,omitempty"`
	SpacingMM [3]float64 `json:"spacing_mm,omitempty"`
	// Dose scales the noise: noise SD ∝ 1/sqrt(Dose); 0 means 1.
	Dose float64 `json:"dose,omitempty"`
}

// ErrVariant reports a variant string or combination that makes no sense.
var ErrVariant = errors.New("phantom: bad variant")

// VariantTokens documents the words ParseVariant understands.
const VariantTokens = `scanner: flatpanel conebeam multislice microct
side: left right bilateral
orientation: standard rotated
contrast: fluid formalin dry
lesion: otosclerosis (= both) fenestral cochlear; severity: mild moderate severe
negative: body thickslice localizer ossified (labyrinth filled with bone)
other: fovcut artefacts dr (domain randomisation) dose=X`

// ParseVariant reads a comma-separated list of tokens (see VariantTokens).
func ParseVariant(s string) (Variant, error) {
	var v Variant
	for _, tok := range strings.Split(s, ",") {
		tok = strings.ToLower(strings.TrimSpace(tok))
		switch tok {
		case "", "normal", "default":
		case FlatPanel, ConeBeam, MultiSlice, MicroCT:
			v.Scanner = tok
		case "left", "l":
			v.Side = "L"
		case "right", "r":
			v.Side = "R"
		case "bilateral":
			v.Bilateral = true
		case "standard":
			v.Rotation = "standard"
		case "rotated", "arbitrary":
			v.Rotation = "arbitrary"
		case "fluid", "formalin", "dry":
			v.Contrast = tok
		case "otosclerosis", "both":
			v.Lesion = "both"
		case "fenestral", "cochlear":
			v.Lesion = tok
		case "mild", "moderate", "severe":
			v.Severity = tok
		case "body", "thickslice", "localizer", "ossified":
			v.Negative = tok
		case "fovcut":
			v.FOVCut = true
		case "artefacts", "artifacts":
			v.Artefacts = true
		case "dr", "domainrandom", "domain-randomisation":
			v.DomainRandomisation = true
		default:
			if d, ok := strings.CutPrefix(tok, "dose="); ok {
				f, err := strconv.ParseFloat(d, 64)
				if err != nil || f <= 0 {
					return v, fmt.Errorf("%w: dose %q", ErrVariant, d)
				}
				v.Dose = f
				continue
			}
			return v, fmt.Errorf("%w: unknown token %q (known: %s)", ErrVariant, tok, strings.ReplaceAll(VariantTokens, "\n", "; "))
		}
	}
	return v, v.normalise()
}

func (v *Variant) normalise() error {
	if v.Scanner == "" {
		v.Scanner = FlatPanel
		if v.Bilateral || v.Negative == "thickslice" || v.Negative == "body" || v.Negative == "localizer" {
			v.Scanner = MultiSlice
		}
	}
	if v.Rotation == "" {
		v.Rotation = "standard"
	}
	if v.Contrast == "" {
		v.Contrast = "fluid"
	}
	if v.Lesion != "" && v.Severity == "" {
		v.Severity = "moderate"
	}
	if v.Severity != "" && v.Lesion == "" {
		v.Lesion = "both"
	}
	if v.Dose == 0 {
		v.Dose = 1
	}
	switch {
	case v.Negative != "" && (v.Lesion != "" || v.Bilateral || v.FOVCut):
		return fmt.Errorf("%w: a negative case has no labyrinth to alter", ErrVariant)
	case v.Bilateral && v.Side != "":
		return fmt.Errorf("%w: bilateral and one side", ErrVariant)
	case v.Bilateral && v.Scanner != MultiSlice:
		return fmt.Errorf("%w: a bilateral head CT is a multi-slice scan", ErrVariant)
	}
	for c := 0; c < 3; c++ {
		if v.Size[c] < 0 || v.SpacingMM[c] < 0 || v.Size[c] > 4096 {
			return fmt.Errorf("%w: size/spacing out of range", ErrVariant)
		}
	}
	return nil
}

// String gives the variant back as tokens ParseVariant accepts.
func (v Variant) String() string {
	t := []string{v.Scanner}
	switch {
	case v.Bilateral:
		t = append(t, "bilateral")
	case v.Side == "L":
		t = append(t, "left")
	case v.Side == "R":
		t = append(t, "right")
	}
	if v.Rotation == "arbitrary" {
		t = append(t, "rotated")
	}
	if v.Contrast != "fluid" && v.Contrast != "" {
		t = append(t, v.Contrast)
	}
	if v.Lesion != "" {
		l := v.Lesion
		if l == "both" {
			l = "otosclerosis"
		}
		t = append(t, l, v.Severity)
	}
	if v.Negative != "" {
		t = append(t, v.Negative)
	}
	if v.FOVCut {
		t = append(t, "fovcut")
	}
	if v.Artefacts {
		t = append(t, "artefacts")
	}
	if v.DomainRandomisation {
		t = append(t, "dr")
	}
	if v.Dose != 1 && v.Dose != 0 {
		t = append(t, "dose="+strconv.FormatFloat(v.Dose, 'g', -1, 64))
	}
	return strings.Join(t, ",")
}
