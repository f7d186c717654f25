package dimse

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
)

// A data set leaves in P-DATA-TF PDUs no longer than the peer's maximum,
// one PDV each, the last-fragment bit on the last only.
func TestFragmentationHonoursPeerMaximum(t *testing.T) {
	for _, peerMax := range []uint32{7, 100, 16384, 0} {
		c := &fakeConn{}
		a := &association{m: &machine{conn: c, state: sta6, artim: time.Second}, peerMax: peerMax}
		data := make([]byte, 40000)
		for i := range data {
			data[i] = byte(i * 7)
		}
		cmd := (&CStoreRQ{MessageID: 1, AffectedSOPClassUID: CTImageStorage, AffectedSOPInstanceUID: "1.2"}).Command()
		if err := a.sendMessage(1, cmd, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		var cmdBytes, got []byte
		out := c.out.Bytes()
		lastCmd, lastData := 0, 0
		for len(out) > 0 {
			n := binary.BigEndian.Uint32(out[2:])
			if peerMax != 0 && n > peerMax {
				t.Fatalf("peer max %d: PDU of %d", peerMax, n)
			}
			p, err := DecodePDU(out[:6+n])
			if err != nil {
				t.Fatal(err)
			}
			out = out[6+n:]
			for _, v := range p.(*PDataTF).Values {
				if v.IsCommand() {
					cmdBytes = append(cmdBytes, v.Data...)
					if v.IsLast() {
						lastCmd++
					}
				} else {
					got = append(got, v.Data...)
					if v.IsLast() {
						lastData++
					}
				}
			}
		}
		if lastCmd != 1 || lastData != 1 || !bytes.Equal(got, data) {
			t.Fatalf("peer max %d: last bits %d/%d, data equal %v", peerMax, lastCmd, lastData, bytes.Equal(got, data))
		}
		if _, err := DecodeCommand(cmdBytes); err != nil {
			t.Fatal(err)
		}
	}
}
