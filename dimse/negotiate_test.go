package dimse

import (
	"net/netip"
	"reflect"
	"testing"
)

func TestNegotiateAcceptor(t *testing.T) {
	const ct, mr = CTImageStorage, "1.2.840.10008.5.1.4.1.1.4"
	pol := &AcceptorPolicy{
		AETitle: "OTONODE",
		Peers:   []PeerRule{{AETitle: "CT1"}, {AETitle: "WARD", Addr: netip.MustParsePrefix("10.0.0.0/8")}},
		Syntaxes: []Syntax{
			{AbstractSyntax: ct, TransferSyntaxes: []string{JPEGLosslessSV1, ExplicitVRLittleEndian, ImplicitVRLittleEndian}},
			{AbstractSyntax: VerificationSOPClass, TransferSyntaxes: []string{ImplicitVRLittleEndian}},
			{AbstractSyntax: mr, TransferSyntaxes: []string{ExplicitVRLittleEndian}, SCPRole: true},
		},
		MaxPDULength: 32768,
	}
	rq := func(calling, called string, pcs ...PresentationContextRQ) *AAssociateRQ {
		return &AAssociateRQ{CalledAETitle: called, CallingAETitle: calling, ApplicationContextName: ApplicationContextName,
			PresentationContexts: pcs}
	}
	local := netip.MustParseAddr("127.0.0.1")
	tests := []struct {
		name    string
		rq      *AAssociateRQ
		addr    netip.Addr
		want    []PresentationContextAC
		wantRJ  *RejectError
		roles   []RoleSelection
		propose []RoleSelection
	}{
		{name: "acceptor's order wins over the requestor's",
			rq:   rq("CT1", "OTONODE", PresentationContextRQ{1, ct, []string{ImplicitVRLittleEndian, ExplicitVRLittleEndian, JPEGLosslessSV1}}),
			want: []PresentationContextAC{{1, Acceptance, JPEGLosslessSV1}}},
		{name: "several contexts per SOP class, unsupported ones refused",
			rq: rq("CT1", "OTONODE",
				PresentationContextRQ{1, ct, []string{JPEG2000Lossless}},
				PresentationContextRQ{3, ct, []string{ImplicitVRLittleEndian}},
				PresentationContextRQ{5, "1.2.3.4", []string{ImplicitVRLittleEndian}},
				PresentationContextRQ{7, VerificationSOPClass, []string{ExplicitVRLittleEndian}}),
			want: []PresentationContextAC{{1, TransferSyntaxesNotSupported, ""}, {3, Acceptance, ImplicitVRLittleEndian},
				{5, AbstractSyntaxNotSupported, ""}, {7, TransferSyntaxesNotSupported, ""}}},
		{name: "duplicate context ID",
			rq:   rq("CT1", "OTONODE", PresentationContextRQ{1, ct, []string{ImplicitVRLittleEndian}}, PresentationContextRQ{1, ct, []string{ImplicitVRLittleEndian}}),
			want: []PresentationContextAC{{1, Acceptance, ImplicitVRLittleEndian}, {1, NoReason, ""}}},
		{name: "role selection: SCP role only where allowed",
			rq: rq("CT1", "OTONODE", PresentationContextRQ{1, ct, []string{ExplicitVRLittleEndian}},
				PresentationContextRQ{3, mr, []string{ExplicitVRLittleEndian}}),
			propose: []RoleSelection{{ct, true, true}, {mr, false, true}},
			want:    []PresentationContextAC{{1, Acceptance, ExplicitVRLittleEndian}, {3, Acceptance, ExplicitVRLittleEndian}},
			roles:   []RoleSelection{{ct, true, false}, {mr, false, true}}},
		{name: "called AE title", rq: rq("CT1", "OTHER", PresentationContextRQ{1, ct, []string{ImplicitVRLittleEndian}}),
			wantRJ: &RejectError{RejectedPermanent, SourceServiceUser, ReasonCalledAETitleNotRecognized}},
		{name: "calling AE title", rq: rq("EVIL", "OTONODE", PresentationContextRQ{1, ct, []string{ImplicitVRLittleEndian}}),
			wantRJ: &RejectError{RejectedPermanent, SourceServiceUser, ReasonCallingAETitleNotRecognized}},
		{name: "calling AE title from the wrong address", rq: rq("WARD", "OTONODE", PresentationContextRQ{1, ct, []string{ImplicitVRLittleEndian}}),
			addr: local, wantRJ: &RejectError{RejectedPermanent, SourceServiceUser, ReasonCallingAETitleNotRecognized}},
		{name: "calling AE title from its address", rq: rq("WARD", "OTONODE", PresentationContextRQ{1, ct, []string{ImplicitVRLittleEndian}}),
			addr: netip.MustParseAddr("10.1.2.3"), want: []PresentationContextAC{{1, Acceptance, ImplicitVRLittleEndian}}},
		{name: "application context", rq: &AAssociateRQ{CalledAETitle: "OTONODE", CallingAETitle: "CT1", ApplicationContextName: "1.2.3"},
			wantRJ: &RejectError{RejectedPermanent, SourceServiceUser, ReasonApplicationContextNameUnsupported}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.rq.UserInformation.RoleSelections = tt.propose
			addr := tt.addr
			if !addr.IsValid() {
				addr = local
			}
			ac, pcs, rj := negotiateAcceptor(pol, tt.rq, addr)
			if !reflect.DeepEqual(rj, tt.wantRJ) {
				t.Fatalf("reject = %v, want %v", rj, tt.wantRJ)
			}
			if rj != nil {
				return
			}
			if !reflect.DeepEqual(ac.PresentationContexts, tt.want) {
				t.Fatalf("contexts %+v, want %+v", ac.PresentationContexts, tt.want)
			}
			if !reflect.DeepEqual(ac.UserInformation.RoleSelections, tt.roles) {
				t.Fatalf("roles %+v, want %+v", ac.UserInformation.RoleSelections, tt.roles)
			}
			if ac.UserInformation.MaxLength != 32768 || len(pcs) != len(tt.want) {
				t.Fatalf("max length %d, %d contexts", ac.UserInformation.MaxLength, len(pcs))
			}
			// The requestor side reads the answer back consistently.
			back, err := negotiateRequestor(tt.rq, ac)
			if err != nil && tt.name != "duplicate context ID" {
				t.Fatal(err)
			}
			for i, pc := range back {
				if pc.Result != tt.want[i].Result || pc.TransferSyntax != tt.want[i].TransferSyntax {
					t.Fatalf("requestor sees %+v", pc)
				}
			}
		})
	}
}

func TestNegotiateRequestorRejectsBadAC(t *testing.T) {
	rq := &AAssociateRQ{PresentationContexts: []PresentationContextRQ{{1, CTImageStorage, []string{ExplicitVRLittleEndian}}}}
	for name, ac := range map[string]*AAssociateAC{
		"unproposed ID": {PresentationContexts: []PresentationContextAC{{3, Acceptance, ExplicitVRLittleEndian}}},
		"unproposed TS": {PresentationContexts: []PresentationContextAC{{1, Acceptance, JPEGLosslessSV1}}},
	} {
		if _, err := negotiateRequestor(rq, ac); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestStorageProposals(t *testing.T) {
	got := StorageProposals(CTImageStorage, JPEGLosslessSV1)
	want := []Proposal{{CTImageStorage, []string{JPEGLosslessSV1}}, {CTImageStorage, []string{ExplicitVRLittleEndian}},
		{CTImageStorage, []string{ImplicitVRLittleEndian}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v", got)
	}
	if got := StorageProposals(CTImageStorage, ImplicitVRLittleEndian); len(got) != 2 {
		t.Fatalf("uncompressed file: %v", got)
	}
}
