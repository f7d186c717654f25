package dimse

// Query/Retrieve attributes by keyword (PS3.6 Table 6-1): the keys of the
// Patient Root and Study Root information models (PS3.4 C.6.1.1 and
// C.6.2.1) and the few others identifiers carry.
var qrDictionary = []struct {
	Tag     Tag
	VR      string
	Keyword string
}{
	{0x00080005, "CS", "SpecificCharacterSet"},
	{0x00080016, "UI", "SOPClassUID"},
	{0x00080018, "UI", "SOPInstanceUID"},
	{0x00080020, "DA", "StudyDate"},
	{0x00080021, "DA", "SeriesDate"},
	{0x00080030, "TM", "StudyTime"},
	{0x00080031, "TM", "SeriesTime"},
	{0x00080050, "SH", "AccessionNumber"},
	{0x00080052, "CS", "QueryRetrieveLevel"},
	{0x00080054, "AE", "RetrieveAETitle"},
	{0x00080056, "CS", "InstanceAvailability"},
	{0x00080058, "UI", "FailedSOPInstanceUIDList"},
	{0x00080060, "CS", "Modality"},
	{0x00080061, "CS", "ModalitiesInStudy"},
	{0x00080062, "UI", "SOPClassesInStudy"},
	{0x00080090, "PN", "ReferringPhysicianName"},
	{0x00081030, "LO", "StudyDescription"},
	{0x0008103E, "LO", "SeriesDescription"},
	{0x00083002, "UI", "AvailableTransferSyntaxUID"},
	{0x00100010, "PN", "PatientName"},
	{0x00100020, "LO", "PatientID"},
	{0x00100021, "LO", "IssuerOfPatientID"},
	{0x00100030, "DA", "PatientBirthDate"},
	{0x00100040, "CS", "PatientSex"},
	{0x00180015, "CS", "BodyPartExamined"},
	{0x0020000D, "UI", "StudyInstanceUID"},
	{0x0020000E, "UI", "SeriesInstanceUID"},
	{0x00200010, "SH", "StudyID"},
	{0x00200011, "IS", "SeriesNumber"},
	{0x00200013, "IS", "InstanceNumber"},
	{0x00201200, "IS", "NumberOfPatientRelatedStudies"},
	{0x00201202, "IS", "NumberOfPatientRelatedSeries"},
	{0x00201204, "IS", "NumberOfPatientRelatedInstances"},
	{0x00201206, "IS", "NumberOfStudyRelatedSeries"},
	{0x00201208, "IS", "NumberOfStudyRelatedInstances"},
	{0x00201209, "IS", "NumberOfSeriesRelatedInstances"},
	{0x00280010, "US", "Rows"},
	{0x00280011, "US", "Columns"},
}

// LookupKeyword returns the tag and VR of a Query/Retrieve keyword.
func LookupKeyword(keyword string) (Tag, string, bool) {
	for _, d := range qrDictionary {
		if d.Keyword == keyword {
			return d.Tag, d.VR, true
		}
	}
	return 0, "", false
}

// Keyword returns the keyword of t when the Query/Retrieve dictionary has
// it, else "".
func (t Tag) Keyword() string {
	for _, d := range qrDictionary {
		if d.Tag == t {
			return d.Keyword
		}
	}
	return ""
}

// lookupVR is the VR for implicit VR decoding: the dictionary's, UL for
// group lengths, else UN.
func lookupVR(t Tag) string {
	if t.Element() == 0 {
		return "UL"
	}
	for _, d := range qrDictionary {
		if d.Tag == t {
			return d.VR
		}
	}
	return "UN"
}
