package scp

import (
	"context"
	"net/netip"
	"testing"

	"github.com/otonode/otonode/dimse"
)

func TestParsePeers(t *testing.T) {
	rules, err := ParsePeers(context.Background(), []string{"CT1", "PACS@10.0.0.5", "WS@192.168.0.0/16", "LOCAL@localhost"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		aet, addr string
		want      bool
	}{
		{"CT1", "203.0.113.9", true},
		{"PACS", "10.0.0.5", true},
		{"PACS", "10.0.0.6", false},
		{"WS", "192.168.4.4", true},
		{"WS", "10.0.0.5", false},
		{"LOCAL", "127.0.0.1", true},
		{"OTHER", "10.0.0.5", false},
		{"CT1 ", "::ffff:10.1.1.1", true},
	}
	for _, tc := range tests {
		if got := admits(rules, tc.aet, netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("%q from %s: %v, want %v", tc.aet, tc.addr, got, tc.want)
		}
	}
	for _, bad := range []string{"", "@10.0.0.1", "TOOLONGAETITLE123", "X@no.such.host.invalid"} {
		if _, err := ParsePeers(context.Background(), []string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if admits(nil, "ANY", netip.Addr{}) != true {
		t.Error("empty allowlist must admit everyone")
	}
	if len(Syntaxes(nil)) < 40 || Syntaxes([]string{"*"})[1].AbstractSyntax != "" || Syntaxes(nil)[0].AbstractSyntax != dimse.VerificationSOPClass {
		t.Error("syntaxes")
	}
}
