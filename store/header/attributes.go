package header

// Attributes are the values of one instance that the index and
// Query/Retrieve need: the PS3.4 C.6.1.1 required and unique keys of the
// patient, study, series and image levels, plus what series completion
// and selection look at. All are top-level attributes of the data set;
// text is UTF-8 with padding removed. Optional numbers are nil when absent.
type Attributes struct {
	TransferSyntaxUID string // from the file meta information
	// SourceApplicationEntityTitle (0002,0016) from the file meta, if any.
	SourceApplicationEntityTitle string
	SpecificCharacterSet         []string

	// Patient level.
	PatientName       string
	PatientID         string
	IssuerOfPatientID string
	PatientBirthDate  string
	PatientSex        string

	// Study level.
	StudyInstanceUID       string
	StudyDate              string
	StudyTime              string
	AccessionNumber        string
	StudyID                string
	ReferringPhysicianName string
	StudyDescription       string

	// Series level.
	SeriesInstanceUID   string
	SeriesNumber        *int
	Modality            string
	SeriesDate          string
	SeriesTime          string
	SeriesDescription   string
	BodyPartExamined    string
	FrameOfReferenceUID string
	ConvolutionKernel   []string
	ImagesInAcquisition *int // an expected instance count, when the sender says it
	NumberOfSlices      *int // the same for NM/PET (0054,0081)

	// Image (instance) level.
	SOPClassUID             string
	SOPInstanceUID          string
	InstanceNumber          *int
	AcquisitionNumber       *int
	ImageType               []string
	SliceThickness          *float64
	SpacingBetweenSlices    *float64
	ImagePositionPatient    []float64 // 3 values or nil
	ImageOrientationPatient []float64 // 6 values or nil
	PixelSpacing            []float64 // 2 values or nil
	Rows                    *int
	Columns                 *int
	NumberOfFrames          *int

	// Invalid lists the tags (group<<16|element) whose values could not be
	// decoded and were left out, so the caller can log them.
	Invalid []uint32
}

// kind says how a wanted value is decoded.
type kind uint8

const (
	kText   kind = iota // one string (UI, CS, DA, TM, SH, LO, PN, …)
	kTexts              // backslash-separated strings
	kInt                // IS, one value
	kUS                 // binary unsigned short
	kFloat              // DS, one value
	kFloats             // DS, several values
)

type field struct {
	vr   string // for implicit VR data sets
	kind kind
	n    int // number of values for kFloats
	set  func(a *Attributes) any
}

// wanted maps (group<<16 | element) to where the value goes.
var wanted = map[uint32]field{
	0x00080005: {"CS", kTexts, 0, func(a *Attributes) any { return &a.SpecificCharacterSet }},
	0x00080008: {"CS", kTexts, 0, func(a *Attributes) any { return &a.ImageType }},
	0x00080016: {"UI", kText, 0, func(a *Attributes) any { return &a.SOPClassUID }},
	0x00080018: {"UI", kText, 0, func(a *Attributes) any { return &a.SOPInstanceUID }},
	0x00080020: {"DA", kText, 0, func(a *Attributes) any { return &a.StudyDate }},
	0x00080021: {"DA", kText, 0, func(a *Attributes) any { return &a.SeriesDate }},
	0x00080030: {"TM", kText, 0, func(a *Attributes) any { return &a.StudyTime }},
	0x00080031: {"TM", kText, 0, func(a *Attributes) any { return &a.SeriesTime }},
	0x00080050: {"SH", kText, 0, func(a *Attributes) any { return &a.AccessionNumber }},
	0x00080060: {"CS", kText, 0, func(a *Attributes) any { return &a.Modality }},
	0x00080090: {"PN", kText, 0, func(a *Attributes) any { return &a.ReferringPhysicianName }},
	0x00081030: {"LO", kText, 0, func(a *Attributes) any { return &a.StudyDescription }},
	0x0008103e: {"LO", kText, 0, func(a *Attributes) any { return &a.SeriesDescription }},
	0x00100010: {"PN", kText, 0, func(a *Attributes) any { return &a.PatientName }},
	0x00100020: {"LO", kText, 0, func(a *Attributes) any { return &a.PatientID }},
	0x00100021: {"LO", kText, 0, func(a *Attributes) any { return &a.IssuerOfPatientID }},
	0x00100030: {"DA", kText, 0, func(a *Attributes) any { return &a.PatientBirthDate }},
	0x00100040: {"CS", kText, 0, func(a *Attributes) any { return &a.PatientSex }},
	0x00180015: {"CS", kText, 0, func(a *Attributes) any { return &a.BodyPartExamined }},
	0x00180050: {"DS", kFloat, 0, func(a *Attributes) any { return &a.SliceThickness }},
	0x00180088: {"DS", kFloat, 0, func(a *Attributes) any { return &a.SpacingBetweenSlices }},
	0x00181210: {"SH", kTexts, 0, func(a *Attributes) any { return &a.ConvolutionKernel }},
	0x0020000d: {"UI", kText, 0, func(a *Attributes) any { return &a.StudyInstanceUID }},
	0x0020000e: {"UI", kText, 0, func(a *Attributes) any { return &a.SeriesInstanceUID }},
	0x00200010: {"SH", kText, 0, func(a *Attributes) any { return &a.StudyID }},
	0x00200011: {"IS", kInt, 0, func(a *Attributes) any { return &a.SeriesNumber }},
	0x00200012: {"IS", kInt, 0, func(a *Attributes) any { return &a.AcquisitionNumber }},
	0x00200013: {"IS", kInt, 0, func(a *Attributes) any { return &a.InstanceNumber }},
	0x00200032: {"DS", kFloats, 3, func(a *Attributes) any { return &a.ImagePositionPatient }},
	0x00200037: {"DS", kFloats, 6, func(a *Attributes) any { return &a.ImageOrientationPatient }},
	0x00200052: {"UI", kText, 0, func(a *Attributes) any { return &a.FrameOfReferenceUID }},
	0x00201002: {"IS", kInt, 0, func(a *Attributes) any { return &a.ImagesInAcquisition }},
	0x00280008: {"IS", kInt, 0, func(a *Attributes) any { return &a.NumberOfFrames }},
	0x00280010: {"US", kUS, 0, func(a *Attributes) any { return &a.Rows }},
	0x00280011: {"US", kUS, 0, func(a *Attributes) any { return &a.Columns }},
	0x00280030: {"DS", kFloats, 2, func(a *Attributes) any { return &a.PixelSpacing }},
	0x00540081: {"US", kUS, 0, func(a *Attributes) any { return &a.NumberOfSlices }},
}
