package results

import (
	"math"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/otonode/otonode/analysis"
)

// Code is a coded concept: (CodeValue, CodingSchemeDesignator, CodeMeaning).
type Code struct {
	Value, Scheme, Meaning string
}

// item returns the code as a sequence item (Basic Code Sequence macro).
func (c Code) item() dataSet {
	var d dataSet
	d.set(tag.CodeValue, c.Value)
	d.set(tag.CodingSchemeDesignator, c.Scheme)
	d.set(tag.CodeMeaning, c.Meaning)
	return d
}

// PrivateScheme is the coding scheme of otonode's own concepts, for which
// DICOM has no code (reference §2.5); declared in every object that uses it.
const PrivateScheme = "99OTONODE"

// Codes of the reference (seg_sr_reference.md §2), meanings as in PS3.16.
var (
	codeAnatomicalStructure = Code{"91723000", "SCT", "Anatomical Structure"}
	codeInnerEar            = Code{"22945000", "SCT", "Inner ear"}
	codeCochlea             = Code{"80169004", "SCT", "Cochlea"}
	codeRight               = Code{"24028007", "SCT", "Right"}
	codeLeft                = Code{"7771000", "SCT", "Left"}
	codeHelicotrema         = Code{"10584009", "SCT", "Helicotrema"}
	codeSegmentation        = Code{"113076", "DCM", "Segmentation"}
	codeSourceForProcessing = Code{"121322", "DCM", "Source image for image processing operation"}
	codeArtificialIntell    = Code{"123110", "DCM", "Artificial Intelligence"}
	codeYes                 = Code{"373066001", "SCT", "Yes"}
	codeNo                  = Code{"373067005", "SCT", "No"}

	// Not in PS3.16 or not verified in SNOMED here (reference §2.1, §2.2).
	codeVestibule    = Code{"VEST", PrivateScheme, "Vestibule"}
	codeCanals       = Code{"SSC", PrivateScheme, "Semicircular canals"}
	codeOvalWindow   = Code{"LMK_OW", PrivateScheme, "Oval window"}
	codeRoundWindow  = Code{"LMK_RW", PrivateScheme, "Round window"}
	codeUncertainty  = Code{"OOD001", PrivateScheme, "TTA uncertainty score"}
	codeOODFlag      = Code{"OOD002", PrivateScheme, "Out-of-distribution flag"}
	codeReviewNote   = Code{"OOD003", PrivateScheme, "Review note"}
	codeNotDiagnosis = Code{"NFD001", PrivateScheme, "Not for diagnostic use"}
)

func lateralityCode(l analysis.Laterality) Code {
	if l == analysis.Left {
		return codeLeft
	}
	return codeRight
}

func lateralityWord(l analysis.Laterality) string {
	if l == analysis.Left {
		return "left"
	}
	return "right"
}

// landmarkCode returns the Finding code of a landmark by its analysis name.
func landmarkCode(name string) (Code, bool) {
	switch name {
	case analysis.Helicotrema:
		return codeHelicotrema, true
	case analysis.OvalWindow:
		return codeOvalWindow, true
	case analysis.RoundWindow:
		return codeRoundWindow, true
	}
	return Code{}, false
}

// codingSchemeIdentification declares the private scheme (0008,0110).
func codingSchemeIdentification() dataSet {
	var d dataSet
	d.set(tag.CodingSchemeDesignator, PrivateScheme)
	d.set(tag.CodingSchemeName, "otonode local concepts")
	d.set(tag.CodingSchemeResponsibleOrganization, "otonode")
	return d
}

// Structure is one structure the model outputs, written as one SEG segment
// per ear.
type Structure struct {
	// Values are the label values that belong to the structure; nil means
	// every value above zero.
	Values      []uint8
	Name        string // segment label after the laterality, e.g. "inner ear"
	Description string
	Type        Code
	RGB         [3]uint8
}

func (s Structure) contains(v uint8) bool {
	if s.Values == nil {
		return v > 0
	}
	for _, x := range s.Values {
		if v == x {
			return true
		}
	}
	return false
}

// InnerEar is the one structure of a single-class model: the labyrinth's
// fluid space, in Slicer's inner-ear colour.
var InnerEar = Structure{
	Name:        "inner ear",
	Description: "Labyrinth fluid space (cochlea, vestibule, semicircular canals)",
	Type:        codeInnerEar,
	RGB:         [3]uint8{229, 147, 118},
}

// PerStructure is the segment list of a model whose label volume uses the
// analysis.Label* values.
func PerStructure() []Structure {
	return []Structure{
		{Values: []uint8{analysis.LabelCochlea}, Name: "cochlea", Description: "Cochlear fluid space", Type: codeCochlea, RGB: [3]uint8{229, 147, 118}},
		{Values: []uint8{analysis.LabelVestibule}, Name: "vestibule", Description: "Vestibular fluid space", Type: codeVestibule, RGB: [3]uint8{112, 180, 220}},
		{Values: []uint8{analysis.LabelCanals}, Name: "semicircular canals", Description: "Semicircular canals' fluid space", Type: codeCanals, RGB: [3]uint8{150, 210, 120}},
	}
}

// cieLab converts an sRGB colour to the scaled CIELab triplet of
// RecommendedDisplayCIELabValue (PS3.3 C.10.7.1.1): sRGB linearised, to XYZ
// and Lab with the D65 white, L 0..100 and a, b -128..127 scaled to 0..65535.
func cieLab(rgb [3]uint8) []int {
	var lin [3]float64
	for i, c := range rgb {
		v := float64(c) / 255
		if v <= 0.04045 {
			lin[i] = v / 12.92
		} else {
			lin[i] = math.Pow((v+0.055)/1.055, 2.4)
		}
	}
	x := 0.4124564*lin[0] + 0.3575761*lin[1] + 0.1804375*lin[2]
	y := 0.2126729*lin[0] + 0.7151522*lin[1] + 0.0721750*lin[2]
	z := 0.0193339*lin[0] + 0.1191920*lin[1] + 0.9503041*lin[2]
	f := func(t float64) float64 {
		if t > 216.0/24389 {
			return math.Cbrt(t)
		}
		return (24389.0/27*t + 16) / 116
	}
	fx, fy, fz := f(x/0.95047), f(y/1.0), f(z/1.08883)
	l, a, b := 116*fy-16, 500*(fx-fy), 200*(fy-fz)
	scale := func(v, lo, hi float64) int {
		s := math.Round((v - lo) / (hi - lo) * 65535)
		return int(math.Max(0, math.Min(65535, s)))
	}
	return []int{scale(l, 0, 100), scale(a, -128, 127), scale(b, -128, 127)}
}
