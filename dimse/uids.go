package dimse

// UIDs this package needs by name (PS3.6 Annex A).
const (
	VerificationSOPClass = "1.2.840.10008.1.1"

	ImplicitVRLittleEndian         = "1.2.840.10008.1.2"
	ExplicitVRLittleEndian         = "1.2.840.10008.1.2.1"
	DeflatedExplicitVRLittleEndian = "1.2.840.10008.1.2.1.99"
	ExplicitVRBigEndian            = "1.2.840.10008.1.2.2"
	JPEGBaseline8Bit               = "1.2.840.10008.1.2.4.50"
	JPEGLossless                   = "1.2.840.10008.1.2.4.57"
	JPEGLosslessSV1                = "1.2.840.10008.1.2.4.70"
	JPEGLSLossless                 = "1.2.840.10008.1.2.4.80"
	JPEG2000Lossless               = "1.2.840.10008.1.2.4.90"
	RLELossless                    = "1.2.840.10008.1.2.5"

	CTImageStorage = "1.2.840.10008.5.1.4.1.1.2"

	// ImplementationClassUID identifies otonode's upper layer in
	// A-ASSOCIATE PDUs (PS3.7 D.3.3.2). The root is a UUID-derived UID
	// (PS3.5 B.2), so it needs no registration.
	ImplementationClassUID    = "2.25.246894711652098453120927434218416318937"
	ImplementationVersionName = "OTONODE_1"
)

// UncompressedTransferSyntaxes are the native encodings, explicit first.
var uncompressedTransferSyntaxes = []string{ExplicitVRLittleEndian, ImplicitVRLittleEndian}

// isUncompressed reports whether ts is a native (not encapsulated) encoding
// that every peer can be asked to accept.
func isUncompressed(ts string) bool {
	return ts == ImplicitVRLittleEndian || ts == ExplicitVRLittleEndian || ts == ExplicitVRBigEndian
}
