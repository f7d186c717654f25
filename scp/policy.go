package scp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/otonode/otonode/dimse"
)

// StorageSOPClasses are the storage SOP classes (PS3.4 B.5) a node accepts
// when the configuration names none: every image, SR, SEG and key-object
// class a CT workflow or a PACS may send.
var storageSOPClasses = []string{
	"1.2.840.10008.5.1.4.1.1.1",      // Computed Radiography Image
	"1.2.840.10008.5.1.4.1.1.1.1",    // Digital X-Ray Image – For Presentation
	"1.2.840.10008.5.1.4.1.1.1.1.1",  // Digital X-Ray Image – For Processing
	"1.2.840.10008.5.1.4.1.1.2",      // CT Image
	"1.2.840.10008.5.1.4.1.1.2.1",    // Enhanced CT Image
	"1.2.840.10008.5.1.4.1.1.2.2",    // Legacy Converted Enhanced CT Image
	"1.2.840.10008.5.1.4.1.1.3.1",    // Ultrasound Multi-frame Image
	"1.2.840.10008.5.1.4.1.1.4",      // MR Image
	"1.2.840.10008.5.1.4.1.1.4.1",    // Enhanced MR Image
	"1.2.840.10008.5.1.4.1.1.4.4",    // Legacy Converted Enhanced MR Image
	"1.2.840.10008.5.1.4.1.1.6.1",    // Ultrasound Image
	"1.2.840.10008.5.1.4.1.1.7",      // Secondary Capture Image
	"1.2.840.10008.5.1.4.1.1.7.1",    // Multi-frame Single Bit SC
	"1.2.840.10008.5.1.4.1.1.7.2",    // Multi-frame Grayscale Byte SC
	"1.2.840.10008.5.1.4.1.1.7.3",    // Multi-frame Grayscale Word SC
	"1.2.840.10008.5.1.4.1.1.7.4",    // Multi-frame True Color SC
	"1.2.840.10008.5.1.4.1.1.11.1",   // Grayscale Softcopy Presentation State
	"1.2.840.10008.5.1.4.1.1.12.1",   // X-Ray Angiographic Image
	"1.2.840.10008.5.1.4.1.1.12.2",   // X-Ray Radiofluoroscopic Image
	"1.2.840.10008.5.1.4.1.1.13.1.3", // Breast Tomosynthesis Image
	"1.2.840.10008.5.1.4.1.1.20",     // Nuclear Medicine Image
	"1.2.840.10008.5.1.4.1.1.66",     // Raw Data
	"1.2.840.10008.5.1.4.1.1.66.1",   // Spatial Registration
	"1.2.840.10008.5.1.4.1.1.66.4",   // Segmentation
	"1.2.840.10008.5.1.4.1.1.66.7",   // Label Map Segmentation
	"1.2.840.10008.5.1.4.1.1.67",     // Real World Value Mapping
	"1.2.840.10008.5.1.4.1.1.77.1.6", // VL Whole Slide Microscopy Image
	"1.2.840.10008.5.1.4.1.1.88.11",  // Basic Text SR
	"1.2.840.10008.5.1.4.1.1.88.22",  // Enhanced SR
	"1.2.840.10008.5.1.4.1.1.88.33",  // Comprehensive SR
	"1.2.840.10008.5.1.4.1.1.88.34",  // Comprehensive 3D SR
	"1.2.840.10008.5.1.4.1.1.88.35",  // Extensible SR
	"1.2.840.10008.5.1.4.1.1.88.59",  // Key Object Selection Document
	"1.2.840.10008.5.1.4.1.1.88.67",  // X-Ray Radiation Dose SR
	"1.2.840.10008.5.1.4.1.1.88.68",  // Radiopharmaceutical Radiation Dose SR
	"1.2.840.10008.5.1.4.1.1.104.1",  // Encapsulated PDF
	"1.2.840.10008.5.1.4.1.1.128",    // PET Image
	"1.2.840.10008.5.1.4.1.1.128.1",  // Legacy Converted Enhanced PET Image
	"1.2.840.10008.5.1.4.1.1.130",    // Enhanced PET Image
	"1.2.840.10008.5.1.4.1.1.481.1",  // RT Image
	"1.2.840.10008.5.1.4.1.1.481.2",  // RT Dose
	"1.2.840.10008.5.1.4.1.1.481.3",  // RT Structure Set
	"1.2.840.10008.5.1.4.1.1.481.5",  // RT Plan
	"1.2.840.10008.5.1.4.1.1.481.8",  // RT Ion Plan
}

// StorageSOPClasses returns the built-in list of accepted storage SOP
// classes (a copy).
func StorageSOPClasses() []string { return append([]string(nil), storageSOPClasses...) }

// TransferSyntaxes are the encodings the node accepts, in order of
// preference: the ones it can decode (PS3.5 A.2–A.5, A.4.1 process 14),
// so a sender with another encoding transcodes for us. Instances are kept
// in the syntax they arrived in.
func TransferSyntaxes() []string {
	return []string{
		dimse.JPEGLosslessSV1,
		dimse.JPEGLossless,
		dimse.RLELossless,
		dimse.ExplicitVRLittleEndian,
		dimse.ImplicitVRLittleEndian,
		dimse.DeflatedExplicitVRLittleEndian,
	}
}

// Syntaxes builds the acceptor's abstract syntaxes: Verification, and each
// storage SOP class with TransferSyntaxes. An empty list means the built-in
// list; "*" accepts any abstract syntax as storage.
func Syntaxes(sopClasses []string) []dimse.Syntax {
	if len(sopClasses) == 0 {
		sopClasses = storageSOPClasses
	}
	out := []dimse.Syntax{{AbstractSyntax: dimse.VerificationSOPClass,
		TransferSyntaxes: []string{dimse.ExplicitVRLittleEndian, dimse.ImplicitVRLittleEndian}}}
	for _, c := range sopClasses {
		if c == "*" {
			c = ""
		}
		out = append(out, dimse.Syntax{AbstractSyntax: c, TransferSyntaxes: TransferSyntaxes()})
	}
	return out
}

// ParsePeers reads the calling-AE allowlist: "AET" admits the title from
// anywhere, "AET@host" only from that address ("AET@10.0.0.0/8" from a
// network, "AET@ct1.example" from the addresses the name resolves to at
// start-up). Nil in, nil out: every caller is admitted.
func ParsePeers(ctx context.Context, list []string) ([]dimse.PeerRule, error) {
	var out []dimse.PeerRule
	for _, s := range list {
		aet, host, pinned := strings.Cut(s, "@")
		aet = strings.TrimSpace(aet)
		if aet == "" || len(aet) > 16 {
			return nil, fmt.Errorf("scp: allowed caller %q: AE title must have 1 to 16 characters", s)
		}
		if !pinned {
			out = append(out, dimse.PeerRule{AETitle: aet})
			continue
		}
		host = strings.TrimSpace(host)
		if p, err := parsePrefix(host); err == nil {
			out = append(out, dimse.PeerRule{AETitle: aet, Addr: p})
			continue
		}
		addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil || len(addrs) == 0 {
			return nil, fmt.Errorf("scp: allowed caller %q: %q is neither an address, a network nor a resolvable name: %v", s, host, err)
		}
		for _, a := range addrs {
			a = a.Unmap()
			out = append(out, dimse.PeerRule{AETitle: aet, Addr: netip.PrefixFrom(a, a.BitLen())})
		}
	}
	return out, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// admits reports whether a rule list lets the caller in (dimse applies the
// same rules; the node checks first to count and log rejections).
func admits(rules []dimse.PeerRule, callingAET string, addr netip.Addr) bool {
	if rules == nil {
		return true
	}
	callingAET = strings.TrimSpace(callingAET)
	for _, r := range rules {
		if r.AETitle != callingAET {
			continue
		}
		if !r.Addr.IsValid() || r.Addr.Contains(addr.Unmap()) {
			return true
		}
	}
	return false
}
