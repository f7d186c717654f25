package series

import "testing"

func FuzzTmpNothing(f *testing.F) {
	f.Add([]byte("x"))
	f.Fuzz(func(t *testing.T, b []byte) {})
}
