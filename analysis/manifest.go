package analysis

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ManifestFormat is the manifest version this code reads.
const ManifestFormat = "otonode-model-manifest/1"

// Manifest is the JSON file beside a model's ONNX file: everything about the
// model the analysis must not hard-code (DESIGN.md, "Contracts → Model";
// the schema is documented in analysis/model/README.md). Fields the Go code
// does not use (architecture, training details) stay in Raw for the record.
type Manifest struct {
	Format                     string `json:"format"`
	Name                       string `json:"name"`
	Version                    string `json:"version,omitempty"`
	CreatedUTC                 string `json:"created_utc"`
	IntendedUse                string `json:"intended_use"`
	TrainedOnSyntheticPhantoms bool   `json:"trained_on_synthetic_phantoms"`
	ONNX                       struct {
		File   string `json:"file"`
		SHA256 string `json:"sha256"`
		Bytes  int64  `json:"bytes"`
		Opset  int    `json:"opset"`
	} `json:"onnx"`
	Input struct {
		Name            string   `json:"name"`
		Layout          string   `json:"layout"`
		DType           string   `json:"dtype"`
		Axes            []string `json:"axes"`
		SpatialMultiple int      `json:"spatial_multiple"`
	} `json:"input"`
	Outputs struct {
		Segmentation ManifestOutput `json:"segmentation"`
		Heatmaps     ManifestOutput `json:"heatmaps"`
	} `json:"outputs"`
	Landmarks   []string `json:"landmarks"`
	VoxelSizeMM float64  `json:"voxel_size_mm"`
	Chunk       struct {
		Size    [3]int `json:"size"`
		Overlap int    `json:"overlap"`
	} `json:"chunk"`
	Normalization struct {
		LowQuantile  float64 `json:"low_quantile"`
		HighQuantile float64 `json:"high_quantile"`
		ClipLow      float64 `json:"clip_low"`
		ClipHigh     float64 `json:"clip_high"`
		Mean         float64 `json:"mean"`
		Std          float64 `json:"std"`
	} `json:"normalization"`
	Threshold float64 `json:"threshold"`
	TTA       struct {
		Passes int `json:"passes"`
	} `json:"tta"`
	Uncertainty struct {
		MarginMM float64 `json:"margin_mm"`
		// FlagThreshold is the score above which an ear is flagged; nil
		// when the model was not calibrated (then nothing is flagged for
		// uncertainty, and the log says so).
		FlagThreshold *float64 `json:"flag_threshold"`
	} `json:"uncertainty"`
	// Postprocessing is what the model's figures were measured with.
	Postprocessing struct {
		// LargestComponent: keep each ear's largest connected component
		// (see Options.LargestComponent).
		LargestComponent bool `json:"largest_component"`
	} `json:"postprocessing"`
	PlausibleVolumeMM3 struct {
		Min *float64 `json:"min"`
		Max *float64 `json:"max"`
	} `json:"plausible_volume_mm3"`

	// Dir is the folder the manifest was read from; ONNX.File lies in it.
	Dir string `json:"-"`
	// Raw is the whole document as read.
	Raw json.RawMessage `json:"-"`
}

// ManifestOutput describes one output of the graph.
type ManifestOutput struct {
	Name     string `json:"name"`
	Layout   string `json:"layout"`
	Channels int    `json:"channels"`
	Kind     string `json:"kind"`
}

// ErrManifest marks a manifest that does not satisfy the contract.
var ErrManifest = errors.New("analysis: invalid model manifest")

// ReadManifest reads and validates a manifest, and checks that the ONNX file
// beside it is the one the manifest describes (size and SHA-256), so a
// swapped or truncated model never runs under another model's name.
func ReadManifest(path string) (*Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("analysis: read manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrManifest, path, err)
	}
	m.Raw = b
	m.Dir = filepath.Dir(path)
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := m.checkONNX(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &m, nil
}

// ONNXPath is the path of the model file.
func (m *Manifest) ONNXPath() string { return filepath.Join(m.Dir, m.ONNX.File) }

// Validate checks the fields the analysis relies on.
func (m *Manifest) Validate() error {
	var errs []string
	bad := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	if m.Format != ManifestFormat {
		bad("format %q, want %q", m.Format, ManifestFormat)
	}
	if m.Name == "" {
		bad("no name")
	}
	if m.ONNX.File == "" || strings.ContainsAny(m.ONNX.File, `/\`) {
		bad("onnx.file must name a file beside the manifest")
	}
	if len(m.ONNX.SHA256) != 64 {
		bad("onnx.sha256 must be 64 hex digits")
	}
	if m.Input.Name == "" || m.Input.Layout != "NCDHW" || m.Input.DType != "float32" {
		bad("input must be a named float32 NCDHW tensor")
	}
	if !slices.Equal(m.Input.Axes, []string{"k", "j", "i"}) {
		bad("input.axes must be [k j i]")
	}
	if sm := m.Input.SpatialMultiple; sm < 1 || sm&(sm-1) != 0 {
		bad("input.spatial_multiple %d is not a power of two", sm)
	}
	if o := m.Outputs.Segmentation; o.Name == "" || o.Channels != 1 || o.Layout != "NCDHW" || o.Kind != "logits" {
		bad("outputs.segmentation must be one channel of NCDHW logits")
	}
	if o := m.Outputs.Heatmaps; o.Name == "" || o.Channels != len(LandmarkOrder) || o.Layout != "NCDHW" {
		bad("outputs.heatmaps must be %d NCDHW channels", len(LandmarkOrder))
	}
	if !slices.Equal(m.Landmarks, LandmarkOrder[:]) {
		bad("landmarks %v, want %v", m.Landmarks, LandmarkOrder)
	}
	if !(m.VoxelSizeMM > 0 && m.VoxelSizeMM < 10) {
		bad("voxel_size_mm %g out of range", m.VoxelSizeMM)
	}
	for _, s := range m.Chunk.Size {
		if s <= 0 || (m.Input.SpatialMultiple > 0 && s%m.Input.SpatialMultiple != 0) {
			bad("chunk.size %v must be positive multiples of input.spatial_multiple", m.Chunk.Size)
			break
		}
	}
	if m.Chunk.Overlap < 0 || m.Chunk.Overlap >= slices.Min(m.Chunk.Size[:]) {
		bad("chunk.overlap %d must be in [0, chunk size)", m.Chunk.Overlap)
	}
	n := m.Normalization
	if !(n.Std > 0) || !(n.ClipLow < n.ClipHigh) {
		bad("normalization needs std > 0 and clip_low < clip_high")
	}
	if !(m.Threshold > 0 && m.Threshold < 1) {
		bad("threshold %g must be a probability in (0, 1)", m.Threshold)
	}
	if m.Uncertainty.MarginMM < 0 {
		bad("uncertainty.margin_mm must be >= 0")
	}
	if lo, hi := m.PlausibleVolumeMM3.Min, m.PlausibleVolumeMM3.Max; lo != nil && hi != nil && !(0 <= *lo && *lo < *hi) {
		bad("plausible_volume_mm3 must have 0 <= min < max")
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrManifest, strings.Join(errs, "; "))
	}
	return nil
}

func (m *Manifest) checkONNX() error {
	f, err := os.Open(m.ONNXPath())
	if err != nil {
		return fmt.Errorf("%w: model file: %v", ErrManifest, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("analysis: read model file: %w", err)
	}
	if m.ONNX.Bytes > 0 && n != m.ONNX.Bytes {
		return fmt.Errorf("%w: %s has %d bytes, the manifest says %d", ErrManifest, m.ONNX.File, n, m.ONNX.Bytes)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != m.ONNX.SHA256 {
		return fmt.Errorf("%w: %s has SHA-256 %s, the manifest says %s", ErrManifest, m.ONNX.File, sum, m.ONNX.SHA256)
	}
	return nil
}

// ModelInfo is the identification that results carry. A manifest without a
// version is identified by the start of its ONNX file's hash, which changes
// whenever the weights do.
func (m *Manifest) ModelInfo() Model {
	version := m.Version
	if version == "" && len(m.ONNX.SHA256) >= 12 {
		version = "sha256:" + m.ONNX.SHA256[:12]
	}
	return Model{
		Name:            m.Name,
		Version:         version,
		SHA256:          m.ONNX.SHA256,
		NotForDiagnosis: m.TrainedOnSyntheticPhantoms || strings.Contains(strings.ToLower(m.IntendedUse), "not for diagnosis") || strings.Contains(strings.ToLower(m.IntendedUse), "must not be used for diagnosis"),
		Statement:       m.IntendedUse,
	}
}
