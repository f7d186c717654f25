package dimse

import (
	"fmt"
	"net/netip"
	"slices"
)

// Syntax is an abstract syntax an acceptor supports, with the transfer
// syntaxes it accepts in order of preference: of those the requestor
// proposes, the first in this list wins.
type Syntax struct {
	// AbstractSyntax is a SOP class UID; "" matches any abstract syntax not
	// listed by another Syntax (a promiscuous storage SCP).
	AbstractSyntax   string
	TransferSyntaxes []string
	// SCPRole lets the requestor take the SCP role when it asks by SCP/SCU
	// role selection (PS3.7 D.3.3.4), as a C-GET SCU must for C-STORE.
	SCPRole bool
}

// PeerRule admits a calling AE title, optionally only from some addresses.
type PeerRule struct {
	AETitle string
	Addr    netip.Prefix // the zero Prefix admits any address
}

// AcceptorPolicy is what an acceptor decides an A-ASSOCIATE-RQ by.
type AcceptorPolicy struct {
	AETitle      string     // our called AE title; "" answers to any
	Peers        []PeerRule // admitted calling AE titles; nil admits all
	Syntaxes     []Syntax
	MaxPDULength uint32
}

// PresentationContext is a negotiated presentation context.
type PresentationContext struct {
	ID             uint8
	AbstractSyntax string
	TransferSyntax string // empty unless accepted
	Result         PresentationContextResult
	// Roles of the association requestor; by default it is SCU only.
	RequestorSCU bool
	RequestorSCP bool
}

// Accepted reports whether the context can carry messages.
func (pc PresentationContext) Accepted() bool { return pc.Result == Acceptance }

// negotiateAcceptor decides an A-ASSOCIATE-RQ: either the A-ASSOCIATE-AC to
// send, with one result per proposed context, or the rejection.
func negotiateAcceptor(pol *AcceptorPolicy, rq *AAssociateRQ, remote netip.Addr) (*AAssociateAC, []PresentationContext, *RejectError) {
	if rq.ApplicationContextName != ApplicationContextName {
		return nil, nil, &RejectError{Result: RejectedPermanent, Source: SourceServiceUser, Reason: ReasonApplicationContextNameUnsupported}
	}
	if pol.AETitle != "" && rq.CalledAETitle != pol.AETitle {
		return nil, nil, &RejectError{Result: RejectedPermanent, Source: SourceServiceUser, Reason: ReasonCalledAETitleNotRecognized}
	}
	if pol.Peers != nil && !peerAdmitted(pol.Peers, rq.CallingAETitle, remote) {
		return nil, nil, &RejectError{Result: RejectedPermanent, Source: SourceServiceUser, Reason: ReasonCallingAETitleNotRecognized}
	}
	roles := make(map[string]RoleSelection, len(rq.UserInformation.RoleSelections))
	for _, r := range rq.UserInformation.RoleSelections {
		if _, dup := roles[r.SOPClassUID]; !dup {
			roles[r.SOPClassUID] = r
		}
	}
	ac := &AAssociateAC{
		CalledAETitle: rq.CalledAETitle, CallingAETitle: rq.CallingAETitle,
		UserInformation: UserInformation{
			MaxLength:                 pol.MaxPDULength,
			ImplementationClassUID:    ImplementationClassUID,
			ImplementationVersionName: ImplementationVersionName,
		},
	}
	if rq.UserInformation.AsyncOperationsWindow != nil {
		// We perform one operation at a time (PS3.7 D.3.3.3).
		ac.UserInformation.AsyncOperationsWindow = &AsyncOperationsWindow{1, 1}
	}
	seen := map[uint8]bool{}
	answered := map[string]bool{}
	var pcs []PresentationContext
	for _, p := range rq.PresentationContexts {
		pc := PresentationContext{ID: p.ID, AbstractSyntax: p.AbstractSyntax, RequestorSCU: true}
		syn := findSyntax(pol.Syntaxes, p.AbstractSyntax)
		switch {
		case seen[p.ID]:
			pc.Result = NoReason // a duplicate ID cannot be answered twice
		case syn == nil:
			pc.Result = AbstractSyntaxNotSupported
		default:
			pc.Result = TransferSyntaxesNotSupported
			for _, ts := range syn.TransferSyntaxes {
				if slices.Contains(p.TransferSyntaxes, ts) {
					pc.Result, pc.TransferSyntax = Acceptance, ts
					break
				}
			}
		}
		seen[p.ID] = true
		if r, ok := roles[p.AbstractSyntax]; ok && pc.Accepted() {
			pc.RequestorSCU, pc.RequestorSCP = r.SCURole, r.SCPRole && syn.SCPRole
			if !answered[p.AbstractSyntax] {
				answered[p.AbstractSyntax] = true
				ac.UserInformation.RoleSelections = append(ac.UserInformation.RoleSelections,
					RoleSelection{SOPClassUID: p.AbstractSyntax, SCURole: pc.RequestorSCU, SCPRole: pc.RequestorSCP})
			}
		}
		ac.PresentationContexts = append(ac.PresentationContexts,
			PresentationContextAC{ID: p.ID, Result: pc.Result, TransferSyntax: pc.TransferSyntax})
		pcs = append(pcs, pc)
	}
	return ac, pcs, nil
}

func findSyntax(syns []Syntax, abstract string) *Syntax {
	var wildcard *Syntax
	for i := range syns {
		switch syns[i].AbstractSyntax {
		case abstract:
			return &syns[i]
		case "":
			if wildcard == nil {
				wildcard = &syns[i]
			}
		}
	}
	return wildcard
}

func peerAdmitted(rules []PeerRule, ae string, addr netip.Addr) bool {
	for _, r := range rules {
		if r.AETitle == ae && (!r.Addr.IsValid() || r.Addr.Contains(addr.Unmap())) {
			return true
		}
	}
	return false
}

// negotiateRequestor checks an A-ASSOCIATE-AC against what we proposed and
// returns every context with its result.
func negotiateRequestor(rq *AAssociateRQ, ac *AAssociateAC) ([]PresentationContext, error) {
	proposed := make(map[uint8]PresentationContextRQ, len(rq.PresentationContexts))
	for _, p := range rq.PresentationContexts {
		proposed[p.ID] = p
	}
	roles := map[string]RoleSelection{}
	for _, r := range ac.UserInformation.RoleSelections {
		roles[r.SOPClassUID] = r
	}
	asked := map[string]bool{}
	for _, r := range rq.UserInformation.RoleSelections {
		asked[r.SOPClassUID] = true
	}
	var pcs []PresentationContext
	for _, a := range ac.PresentationContexts {
		p, ok := proposed[a.ID]
		if !ok {
			return nil, fmt.Errorf("%w: A-ASSOCIATE-AC answers context %d, which was not proposed", ErrProtocol, a.ID)
		}
		pc := PresentationContext{ID: a.ID, AbstractSyntax: p.AbstractSyntax, Result: a.Result, RequestorSCU: true}
		if a.Result == Acceptance {
			if !slices.Contains(p.TransferSyntaxes, a.TransferSyntax) {
				return nil, fmt.Errorf("%w: context %d accepted with transfer syntax %s, which was not proposed", ErrProtocol, a.ID, a.TransferSyntax)
			}
			pc.TransferSyntax = a.TransferSyntax
			if r, ok := roles[p.AbstractSyntax]; ok && asked[p.AbstractSyntax] {
				pc.RequestorSCU, pc.RequestorSCP = r.SCURole, r.SCPRole
			}
		}
		pcs = append(pcs, pc)
	}
	return pcs, nil
}

// Proposal is one presentation context a requestor proposes.
type Proposal struct {
	AbstractSyntax   string
	TransferSyntaxes []string
}

// MaxPresentationContexts is how many presentation contexts one
// A-ASSOCIATE-RQ can carry (odd context IDs 1–255).
const MaxPresentationContexts = 128

// StorageProposalsFor proposes StorageProposals for every SOP class of a set
// of stored instances, given as (SOP class, transfer syntax) pairs, classes
// in first-seen order, cut at MaxPresentationContexts; an instance whose
// class did not fit goes in a later association.
func StorageProposalsFor(pairs [][2]string) []Proposal {
	var classes []string
	byClass := map[string][]string{}
	for _, p := range pairs {
		c, ts := p[0], p[1]
		if _, ok := byClass[c]; !ok {
			classes = append(classes, c)
		}
		if !slices.Contains(byClass[c], ts) {
			byClass[c] = append(byClass[c], ts)
		}
	}
	var out []Proposal
	for _, c := range classes {
		out = append(out, StorageProposals(c, byClass[c]...)...)
	}
	return out[:min(len(out), MaxPresentationContexts)]
}

// StorageProposals proposes, for one SOP class, each given transfer syntax
// in a context of its own, plus explicit and implicit VR little endian
// each in a context of its own, so that every instance can go verbatim in
// its own encoding whichever subset the acceptor takes.
func StorageProposals(sopClass string, transferSyntaxes ...string) []Proposal {
	var out []Proposal
	seen := map[string]bool{}
	for _, ts := range append(slices.Clone(transferSyntaxes), uncompressedTransferSyntaxes...) {
		if ts == "" || seen[ts] {
			continue
		}
		seen[ts] = true
		out = append(out, Proposal{AbstractSyntax: sopClass, TransferSyntaxes: []string{ts}})
	}
	return out
}

// maxPresentationContexts is the number of odd IDs 1..255 (PS3.8 9.3.2.2).
const maxPresentationContexts = 128

func buildContexts(props []Proposal) ([]PresentationContextRQ, error) {
	if len(props) > maxPresentationContexts {
		return nil, fmt.Errorf("dimse: %d presentation contexts proposed, at most %d fit", len(props), maxPresentationContexts)
	}
	pcs := make([]PresentationContextRQ, len(props))
	for i, p := range props {
		pcs[i] = PresentationContextRQ{ID: uint8(2*i + 1), AbstractSyntax: p.AbstractSyntax, TransferSyntaxes: p.TransferSyntaxes}
	}
	return pcs, nil
}
