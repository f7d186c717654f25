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
//
// The walk also finds the top-level Pixel Data element, so that the
// header parse can stop before it and the pixels can later be read
// straight from the file (see pixelData); it returns the zero pixelData
// when there is none or the file is deflated.
func checkLengths(path, ts string) (pixelData, error) {
	if ts == tsDeflate {
		return pixelData{}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return pixelData{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return pixelData{}, err
	}
	w := &walker{r: bufio.NewReaderSize(f, 1<<16), file: f, size: st.Size(), left: st.Size()}
	// Preamble, "DICM" and the meta group (explicit VR LE) come first.
	var pre [132]byte
	if _, err := io.ReadFull(w.r, pre[:]); err != nil || string(pre[128:]) != "DICM" {
		// No Part-10 header: the library guesses the syntax from the
		// first bytes. Accept the file only if it walks cleanly as one of
		// the syntaxes it may guess.
		var errs [2]error
		for i, explicit := range []bool{false, true} {
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return pixelData{}, err
			}
			w := &walker{r: bufio.NewReaderSize(f, 1<<16), file: f, size: st.Size(), left: st.Size(), order: binary.LittleEndian, explicit: explicit}
			if errs[i] = w.all(); errs[i] == nil {
				return w.pixel, nil
			}
		}
		return pixelData{}, fmt.Errorf("no Part-10 header, and not a valid bare data set: %w", errs[0])
	}
	w.left -= 132
	w.order, w.explicit = binary.LittleEndian, true
	for {
		b, err := w.r.Peek(2)
		if err != nil {
			return pixelData{}, nil // meta only
		}
		if binary.LittleEndian.Uint16(b) != 0x0002 {
			break
		}
		if _, err := w.element(0); err != nil {
			return pixelData{}, err
		}
	}
	w.explicit = ts != tsImplicitLE
	if ts == tsExplicitBE {
		w.order = binary.BigEndian
	}
	if err := w.all(); err != nil {
		return pixelData{}, err
	}
	return w.pixel, nil
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
	file     io.ReadSeeker // under r: long values are skipped by seeking
	size     int64         // of the file
	left     int64         // bytes after the read position
	order    binary.ByteOrder
	explicit bool
	pixel    pixelData // the top-level Pixel Data, once walked
}

// pos is the file offset of the next byte to be read.
func (w *walker) pos() int64 { return w.size - w.left }

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
	// Pixel Data is most of the file: seek over long values instead of
	// reading them through the buffer.
	if b := int64(w.r.Buffered()); n > b && w.file != nil {
		if _, err := w.file.Seek(n-b, io.SeekCurrent); err != nil {
			return err
		}
		w.r.Reset(w.file)
	} else if _, err := w.r.Discard(int(n)); err != nil {
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
	start := w.pos()
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
	if depth == 0 && t == tag.PixelData {
		return t, w.pixelData(start, n)
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

// pixelData is where the top-level Pixel Data (7FE0,0010) lies in a file:
// native pixels as one value, encapsulated ones as fragments (PS3.5 A.4).
type pixelData struct {
	found        bool
	tagOffset    int64 // of the element's tag: the header ends here
	encapsulated bool
	value        span   // native: the value
	fragments    []span // encapsulated: the items after the Basic Offset Table
}

// span is a run of bytes in a file.
type span struct{ off, n int64 }

// maxFragments bounds the items of encapsulated Pixel Data, so a file of
// empty items cannot make the walk hold millions of spans.
const maxFragments = 1 << 20

// pixelData records the Pixel Data element whose tag starts at start and
// whose length is n, and walks past its value.
func (w *walker) pixelData(start int64, n uint32) error {
	if w.pixel.found {
		return fmt.Errorf("two Pixel Data elements")
	}
	w.pixel = pixelData{found: true, tagOffset: start}
	if n != undefinedLength {
		w.pixel.value = span{w.pos(), int64(n)}
		return w.skip(int64(n))
	}
	w.pixel.encapsulated = true
	for items := 0; ; items++ {
		h, err := w.read(8)
		if err != nil {
			return fmt.Errorf("encapsulated Pixel Data: %w", err)
		}
		t := tag.Tag{Group: w.order.Uint16(h), Element: w.order.Uint16(h[2:])}
		l := w.order.Uint32(h[4:])
		switch {
		case t == tag.SequenceDelimitationItem:
			return nil
		case t != tag.Item || l == undefinedLength:
			return fmt.Errorf("encapsulated Pixel Data: %v of length %#x where a fragment item belongs", t, l)
		case items > maxFragments:
			return fmt.Errorf("encapsulated Pixel Data: more than %d items", maxFragments)
		}
		if items > 0 { // the first item is the Basic Offset Table
			w.pixel.fragments = append(w.pixel.fragments, span{w.pos(), int64(l)})
		}
		if err := w.skip(int64(l)); err != nil {
			return err
		}
	}
}
