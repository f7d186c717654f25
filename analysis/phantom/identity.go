package phantom

import (
	"crypto/sha256"
	"fmt"
	"math/big"
	"time"
)

// UID derives a DICOM UID under the 2.25 root (a UUID-derived root that
// needs no registration) from the seed, the variant and a purpose, so that
// the same case always carries the same UIDs.
func UID(seed uint64, v Variant, purpose string) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("otonode-phantom|%d|%s|%s", seed, v.String(), purpose)))
	n := new(big.Int).SetBytes(h[:16])
	return "2.25." + n.String()
}

var namePool = [...]string{"ALPHA", "BETA", "GAMMA", "DELTA", "EPSILON", "ZETA", "ETA", "THETA", "IOTA", "KAPPA", "LAMBDA", "OMICRON", "SIGMA", "OMEGA"}

func identity(seed uint64, v Variant) Identity {
	d := newDraws(seed, 11)
	birth := time.Date(1940, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, d.intn(365*65))
	study := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, d.intn(330))
	sec := 7*3600 + d.intn(11*3600)
	sex := [2]string{"F", "M"}[d.intn(2)]
	return Identity{
		PatientName:      fmt.Sprintf("PHANTOM^%s %s", namePool[d.intn(len(namePool))], namePool[d.intn(len(namePool))]),
		PatientID:        fmt.Sprintf("OTOPH%08d", seed%100000000),
		PatientBirthDate: birth.Format("20060102"),
		PatientSex:       sex,
		StudyDate:        study.Format("20060102"),
		StudyTime:        fmt.Sprintf("%02d%02d%02d", sec/3600, sec/60%60, sec%60),
		AccessionNumber:  fmt.Sprintf("PH%010d", seed%10000000000),
		StudyInstanceUID: UID(seed, v, "study"),
		SeriesUID:        UID(seed, v, "series"),
		FrameOfRefUID:    UID(seed, v, "frame-of-reference"),
	}
}
