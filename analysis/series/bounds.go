package series

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"

	"github.com/suyashkumar/dicom/pkg/tag"
)

// checkLengths walks the element structure of a Part-10 file and checks
// that no value claims more bytes than the file has left. The DICOM
// library allocates a value's buffer from its declared length before
// reading it, so one corrupt length would cost gigabytes of memory; this
// walk refuses such files first. Deflated data sets are not walked (their
// inflated size is unknown); the file size limit still applies to them.
func checkLengths(path, ts string) error {
	if ts == tsDeflate {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	w := &walker{r: bufio.NewReaderSize(f, 1<<16), left: st.Size()}
	// Preamble, "DICM" and the meta group (explicit VR LE) come first.
	var pre [132]byte
	if _, err := io.ReadFull(w.r, pre[:]); err != nil || string(pre[128:]) != "DICM" {
		// No Part-10 header: the library guesses the syntax from the
		// first bytes. Accept the file only if it walks cleanly as one of
		// the syntaxes it may guess.
		var errs [2]error
		for i, explicit := range []bool{false, true} {
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return err
			}
			w := &walker{r: bufio.NewReaderSize(f, 1<<16), left: st.Size(), order: binary.LittleEndian, explicit: explicit}
			if errs[i] = w.all(); errs[i] == nil {
				return nil
			}
		}
		return fmt.Errorf("no Part-10 header, and not a valid bare data set: %w", errs[0])
	}
	w.left -= 132
	w.order, w.explicit = binary.LittleEndian, true
	for {
		b, err := w.r.Peek(2)
		if err != nil {
			return nil // meta only
		}
		if binary.LittleEndian.Uint16(b) != 0x0002 {
			break
		}
		if _, err := w.element(0); err != nil {
			return err
		}
	}
	w.explicit = ts != tsImplicitLE
	if ts == tsExplicitBE {
		w.order = binary.BigEndian
	}
	return w.all()
}

func (w *walker) all() error {
	for w.left > 0 {
		if _, err := w.element(0); err != nil {
			return err
		}
	}
	return nil
}

type walker struct {
	r        *bufio.Reader
	left     int64
	order    binary.ByteOrder
	explicit bool
}

const undefinedLength = 0xFFFFFFFF

func (w *walker) read(n int) ([]byte, error) {
	if int64(n) > w.left {
		return nil, fmt.Errorf("truncated element header")
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(w.r, b); err != nil {
		return nil, err
	}
	w.left -= int64(n)
	return b, nil
}

func (w *walker) skip(n int64) error {
	if n > w.left {
		return fmt.Errorf("a value claims %d bytes but only %d remain", n, w.left)
	}
	if _, err := w.r.Discard(int(n)); err != nil {
		return err
	}
	w.left -= n
	return nil
}

// element checks one element (recursing into sequences) and returns its
// tag. Items and delimiters are returned without a value.
func (w *walker) element(depth int) (tag.Tag, error) {
	if depth > 64 {
		return tag.Tag{}, fmt.Errorf("sequences nested more than 64 levels deep")
	}
	h, err := w.read(4)
	if err != nil {
		return tag.Tag{}, err
	}
	order := w.order
	t := tag.Tag{Group: order.Uint16(h), Element: order.Uint16(h[2:])}
	if t.Group == 0xFFFE { // item / delimiters: always a 4-byte length, no VR
		l, err := w.read(4)
		if err != nil {
			return t, err
		}
		n := order.Uint32(l)
		if t.Element == 0xE000 && n != undefinedLength {
			return t, w.skip(int64(n))
		}
		if t.Element == 0xE000 {
			return t, w.items(depth, tag.ItemDelimitationItem)
		}
		return t, nil
	}
	var vr string
	var n uint32
	if w.explicit || t.Group == 0x0002 {
		b, err := w.read(2)
		if err != nil {
			return t, err
		}
		vr = string(b)
		switch vr {
		case "OB", "OW", "OF", "OD", "OL", "OV", "SQ", "UC", "UR", "UT", "UN", "SV", "UV":
			l, err := w.read(6)
			if err != nil {
				return t, err
			}
			n = order.Uint32(l[2:])
		default:
			l, err := w.read(2)
			if err != nil {
				return t, err
			}
			n = uint32(order.Uint16(l))
		}
	} else {
		l, err := w.read(4)
		if err != nil {
			return t, err
		}
		n = order.Uint32(l)
		if info, err := tag.Find(t); err == nil && len(info.VRs) > 0 && info.VRs[0] == "SQ" {
			vr = "SQ"
		}
	}
	switch {
	case n == undefinedLength && vr == "UN":
		// PS3.5 6.2.2 (CP-246): a UN of undefined length is a sequence
		// encoded in implicit VR little endian.
		saved, savedOrder := w.explicit, w.order
		w.explicit, w.order = false, binary.LittleEndian
		err := w.items(depth, tag.SequenceDelimitationItem)
		w.explicit, w.order = saved, savedOrder
		return t, err
	case n == undefinedLength:
		// A sequence or encapsulated pixel data: items until the
		// sequence delimiter.
		return t, w.items(depth, tag.SequenceDelimitationItem)
	case vr == "SQ":
		end := w.left - int64(n)
		if end < 0 {
			return t, fmt.Errorf("element %v claims %d bytes but only %d remain", t, n, w.left)
		}
		for w.left > end {
			if _, err := w.element(depth + 1); err != nil {
				return t, err
			}
		}
		if w.left != end {
			return t, fmt.Errorf("sequence %v overruns its length", t)
		}
		return t, nil
	default:
		if int64(n) > w.left {
			return t, fmt.Errorf("element %v claims %d bytes but only %d remain", t, n, w.left)
		}
		return t, w.skip(int64(n))
	}
}

// items reads elements until the given delimiter.
func (w *walker) items(depth int, until tag.Tag) error {
	for {
		t, err := w.element(depth + 1)
		if err != nil {
			return err
		}
		if t == until {
			return nil
		}
		if t == tag.SequenceDelimitationItem && until == tag.ItemDelimitationItem {
			return fmt.Errorf("sequence ended inside an item")
		}
	}
}
