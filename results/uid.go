package results

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"math/big"
	"strings"
)

// UIDGenerator makes the UIDs of the objects the writers produce. Key names
// what the UID is for ("seg.instance", "sr.landmark.R.helicotrema"); a
// deterministic generator returns the same UID for the same key, so writing
// the results of one analysis twice gives the same objects.
type UIDGenerator interface {
	UID(key string) string
}

// HashUIDs derives UIDs from a seed and the key with SHA-256. With an empty
// Root they are UUID-derived UIDs under 2.25 (PS3.5 Annex B.2): the first 128
// bits of the hash, marked as a name-based version 8 UUID, in decimal. With a
// Root (an organisation's registered prefix) the hash fills the remaining
// digits up to the 64-character limit.
type HashUIDs struct {
	Root string
	// Seed makes UIDs unique per analysis; use the source series UID, its
	// revision and the model hash.
	Seed string
}

// UID implements UIDGenerator.
func (h HashUIDs) UID(key string) string {
	sum := sha256.Sum256([]byte(h.Seed + "\x00" + key))
	return uidFromBytes(h.Root, sum[:])
}

// RandomUIDs makes a fresh 2.25 UID (or one under Root) on every call.
type RandomUIDs struct{ Root string }

// UID implements UIDGenerator.
func (r RandomUIDs) UID(string) string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on supported platforms (Go 1.24+ panics
		// itself); keep the signature simple.
		panic(fmt.Sprintf("results: crypto/rand: %v", err))
	}
	return uidFromBytes(r.Root, b[:])
}

func uidFromBytes(root string, b []byte) string {
	root = strings.TrimSuffix(root, ".")
	if root == "" || root == "2.25" {
		u := make([]byte, 16)
		copy(u, b[:16])
		u[6] = u[6]&0x0f | 0x80 // version 8 (custom, here name-based SHA-256)
		u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
		return "2.25." + new(big.Int).SetBytes(u).String()
	}
	digits := 64 - len(root) - 1
	if digits > 38 {
		digits = 38 // 128 bits of the hash are plenty
	}
	if digits < 1 {
		return root // a root of 63+ characters leaves no room; caller error
	}
	n := new(big.Int).SetBytes(b)
	mod := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(digits)), nil)
	n.Mod(n, mod)
	if n.Sign() == 0 {
		n.SetInt64(1)
	}
	return root + "." + n.String()
}
