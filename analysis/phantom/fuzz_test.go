package phantom

import (
	"errors"
	"testing"
)

// FuzzParseVariant: any string is either a variant that survives a round
// trip through String or an ErrVariant, never a panic.
func FuzzParseVariant(f *testing.F) {
	for _, s := range []string{"", "flatpanel,left", "bilateral", "otosclerosis,severe,rotated", "dose=0.5,dr", "body", "x,,y", "dose=", "dose=1e400"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVariant(s)
		if err != nil {
			if !errors.Is(err, ErrVariant) {
				t.Fatalf("%q: error %v is not ErrVariant", s, err)
			}
			return
		}
		v2, err := ParseVariant(v.String())
		if err != nil || v2 != v {
			t.Fatalf("%q: round trip via %q gave %+v, %v", s, v.String(), v2, err)
		}
	})
}
