package config

import (
	"errors"
	"testing"
	"time"
)

func TestWorkerSettings(t *testing.T) {
	c := Default()
	err := c.ApplyEnv([]string{"OTONODE_WORKER_MAX_DELIVER=6", "OTONODE_WORKER_NODE=OTONODE@node.example:11112",
		"OTONODE_WORKER_ACK_WAIT=45s"})
	if err != nil {
		t.Fatal(err)
	}
	w := c.Worker.WithDefaults()
	if w.MaxDeliver != 6 || w.AckWait != 45*time.Second || w.Concurrency != 1 || w.AETitle != "OTONODE_WORKER" {
		t.Errorf("%+v", w)
	}
	ae, host, port, err := w.NodeAddress()
	if err != nil || ae != "OTONODE" || host != "node.example" || port != 11112 {
		t.Errorf("node %q %q %d %v", ae, host, port, err)
	}
	if err := w.Validate(); err != nil {
		t.Error(err)
	}
	bad := []Worker{
		{Node: "node.example"},
		{AckWait: time.Second},
		{Provider: "tpu"},
		{MaxDeliver: -1},
		{AETitle: "A_VERY_LONG_AE_TITLE"},
	}
	for _, b := range bad {
		if err := b.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v", b, err)
		}
	}
}
