package index

import (
	"context"
	"fmt"
	"testing"
)

func TestSetInstanceSHA256(t *testing.T) {
	each(t, func(t *testing.T, open func() *Index) {
		x := open()
		ctx := context.Background()
		for i := 1; i <= 3; i++ {
			a := attrs("1.9", "1.9.1", fmt.Sprintf("1.9.1.%d", i), i)
			if _, err := x.RecordInstance(ctx, Instance{Attrs: a, Location: "l", Version: 1, ReceivedAt: t0}); err != nil {
				t.Fatal(err)
			}
		}
		missing, err := x.SetInstanceSHA256(ctx, []InstanceHash{
			{SOPInstanceUID: "1.9.1.2", Version: 1, SHA256: "aa"},
			{SOPInstanceUID: "1.9.1.2", Version: 2, SHA256: "bb"}, // not indexed
			{SOPInstanceUID: "1.9.1.3", Version: 1, SHA256: "cc"},
		})
		if err != nil || len(missing) != 1 || missing[0].Version != 2 {
			t.Fatalf("missing %+v %v", missing, err)
		}
		// Paged in key order: only the one still without a hash.
		for _, after := range []string{"", "1.9.1.0"} {
			without, err := x.InstancesWithoutSHA256(ctx, after, 0, 10)
			if err != nil || len(without) != 1 || without[0].SOPInstanceUID != "1.9.1.1" {
				t.Errorf("after %q: without a hash %+v %v", after, without, err)
			}
		}
		if without, err := x.InstancesWithoutSHA256(ctx, "1.9.1.1", 1, 10); err != nil || len(without) != 0 {
			t.Errorf("past the last: %+v %v", without, err)
		}
		ins, err := x.Instances(ctx, "1.9.1")
		if err != nil || len(ins) != 3 || ins[0].SHA256 != "" || ins[1].SHA256 != "aa" || ins[2].SHA256 != "cc" {
			t.Errorf("instances %+v %v", ins, err)
		}
	})
}
