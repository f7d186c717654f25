package dimse

// state is a state of the upper-layer protocol machine (PS3.8 Table 9-2 ff).
type state uint8

const (
	sta1  state = iota + 1 // Idle
	sta2                   // Transport connection open (awaiting A-ASSOCIATE-RQ PDU)
	sta3                   // Awaiting local A-ASSOCIATE response primitive
	sta4                   // Awaiting transport connection opening to complete
	sta5                   // Awaiting A-ASSOCIATE-AC or A-ASSOCIATE-RJ PDU
	sta6                   // Association established and ready for data transfer
	sta7                   // Awaiting A-RELEASE-RP PDU
	sta8                   // Awaiting local A-RELEASE response primitive
	sta9                   // Release collision requestor side; awaiting A-RELEASE response primitive
	sta10                  // Release collision acceptor side; awaiting A-RELEASE-RP PDU
	sta11                  // Release collision requestor side; awaiting A-RELEASE-RP PDU
	sta12                  // Release collision acceptor side; awaiting A-RELEASE response primitive
	sta13                  // Awaiting transport connection close indication
)

// event is an event of PS3.8 Table 9-9.
type event uint8

const (
	evt1  event = iota + 1 // A-ASSOCIATE request (local user)
	evt2                   // Transport connect confirmation (local transport service)
	evt3                   // A-ASSOCIATE-AC PDU received
	evt4                   // A-ASSOCIATE-RJ PDU received
	evt5                   // Transport connection indication (local transport service)
	evt6                   // A-ASSOCIATE-RQ PDU received
	evt7                   // A-ASSOCIATE response primitive (accept)
	evt8                   // A-ASSOCIATE response primitive (reject)
	evt9                   // P-DATA request primitive
	evt10                  // P-DATA-TF PDU received
	evt11                  // A-RELEASE request primitive
	evt12                  // A-RELEASE-RQ PDU received
	evt13                  // A-RELEASE-RP PDU received
	evt14                  // A-RELEASE response primitive
	evt15                  // A-ABORT request primitive
	evt16                  // A-ABORT PDU received
	evt17                  // Transport connection closed indication
	evt18                  // ARTIM timer expired
	evt19                  // Unrecognized or invalid PDU received
)

// action is an action of PS3.8 Tables 9-6 to 9-9; 0 is an empty cell.
type action uint8

const (
	noAction action = iota
	ae1
	ae2
	ae3
	ae4
	ae5
	ae6
	ae7
	ae8
	dt1
	dt2
	ar1
	ar2
	ar3
	ar4
	ar5
	ar6
	ar7
	ar8
	ar9
	ar10
	aa1
	aa2
	aa3
	aa4
	aa5
	aa6
	aa7
	aa8
)

// actionSpec names an action and the state it leads to. AE-6 and AR-8 decide
// their next state at run time (next is 0).
type actionSpec struct {
	name string
	next state
}

var actionSpecs = [...]actionSpec{
	ae1:  {"AE-1", sta4},   // Issue TRANSPORT CONNECT request primitive to local transport service
	ae2:  {"AE-2", sta5},   // Send A-ASSOCIATE-RQ-PDU
	ae3:  {"AE-3", sta6},   // Issue A-ASSOCIATE confirmation (accept) primitive
	ae4:  {"AE-4", sta1},   // Issue A-ASSOCIATE confirmation (reject) primitive and close transport connection
	ae5:  {"AE-5", sta2},   // Issue Transport connection response primitive; start ARTIM timer
	ae6:  {"AE-6", 0},      // Stop ARTIM; indication (Sta3) if acceptable, else send A-ASSOCIATE-RJ and start ARTIM (Sta13)
	ae7:  {"AE-7", sta6},   // Send A-ASSOCIATE-AC PDU
	ae8:  {"AE-8", sta13},  // Send A-ASSOCIATE-RJ PDU and start ARTIM timer
	dt1:  {"DT-1", sta6},   // Send P-DATA-TF PDU
	dt2:  {"DT-2", sta6},   // Send P-DATA indication primitive
	ar1:  {"AR-1", sta7},   // Send A-RELEASE-RQ PDU
	ar2:  {"AR-2", sta8},   // Issue A-RELEASE indication primitive
	ar3:  {"AR-3", sta1},   // Issue A-RELEASE confirmation primitive, and close transport connection
	ar4:  {"AR-4", sta13},  // Issue A-RELEASE-RP PDU and start ARTIM timer
	ar5:  {"AR-5", sta1},   // Stop ARTIM timer
	ar6:  {"AR-6", sta7},   // Issue P-DATA indication
	ar7:  {"AR-7", sta8},   // Issue P-DATA-TF PDU
	ar8:  {"AR-8", 0},      // Issue A-RELEASE indication (release collision): requestor Sta9, acceptor Sta10
	ar9:  {"AR-9", sta11},  // Send A-RELEASE-RP PDU
	ar10: {"AR-10", sta12}, // Issue A-RELEASE confirmation primitive
	aa1:  {"AA-1", sta13},  // Send A-ABORT PDU (service-user source) and start (or restart) ARTIM timer
	aa2:  {"AA-2", sta1},   // Stop ARTIM timer if running. Close transport connection
	aa3:  {"AA-3", sta1},   // Issue A-ABORT or A-P-ABORT indication and close transport connection
	aa4:  {"AA-4", sta1},   // Issue A-P-ABORT indication primitive
	aa5:  {"AA-5", sta1},   // Stop ARTIM timer
	aa6:  {"AA-6", sta13},  // Ignore PDU
	aa7:  {"AA-7", sta13},  // Send A-ABORT PDU
	aa8:  {"AA-8", sta13},  // Send A-ABORT PDU (service-provider source), issue an A-P-ABORT indication, and start ARTIM timer
}

func (a action) String() string {
	if int(a) < len(actionSpecs) && a != noAction {
		return actionSpecs[a].name
	}
	return "no action"
}

// transitions is PS3.8 Table 9-10, one row per event, one column per state.
// An empty cell (0) is an event that cannot happen in that state; for local
// primitives that is a programming error, for received PDUs it cannot occur
// because every PDU event has an action in every state where PDUs are read.
var transitions = [20][14]action{
	//          Sta1 Sta2 Sta3 Sta4 Sta5 Sta6 Sta7 Sta8 Sta9 Sta10 Sta11 Sta12 Sta13
	evt1:  {0, ae1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	evt2:  {0, 0, 0, 0, ae2, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	evt3:  {0, 0, aa1, aa8, 0, ae3, aa8, aa8, aa8, aa8, aa8, aa8, aa8, aa6},
	evt4:  {0, 0, aa1, aa8, 0, ae4, aa8, aa8, aa8, aa8, aa8, aa8, aa8, aa6},
	evt5:  {0, ae5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	evt6:  {0, 0, ae6, aa8, 0, aa8, aa8, aa8, aa8, aa8, aa8, aa8, aa8, aa7},
	evt7:  {0, 0, 0, ae7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	evt8:  {0, 0, 0, ae8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	evt9:  {0, 0, 0, 0, 0, 0, dt1, 0, ar7, 0, 0, 0, 0, 0},
	evt10: {0, 0, aa1, aa8, 0, aa8, dt2, ar6, aa8, aa8, aa8, aa8, aa8, aa6},
	evt11: {0, 0, 0, 0, 0, 0, ar1, 0, 0, 0, 0, 0, 0, 0},
	evt12: {0, 0, aa1, aa8, 0, aa8, ar2, ar8, aa8, aa8, aa8, aa8, aa8, aa6},
	evt13: {0, 0, aa1, aa8, 0, aa8, aa8, ar3, aa8, aa8, ar10, ar3, aa8, aa6},
	evt14: {0, 0, 0, 0, 0, 0, 0, 0, ar4, ar9, 0, 0, ar4, 0},
	evt15: {0, 0, 0, aa1, aa2, aa1, aa1, aa1, aa1, aa1, aa1, aa1, aa1, 0},
	evt16: {0, 0, aa2, aa3, 0, aa3, aa3, aa3, aa3, aa3, aa3, aa3, aa3, aa2},
	evt17: {0, 0, aa5, aa4, aa4, aa4, aa4, aa4, aa4, aa4, aa4, aa4, aa4, ar5},
	evt18: {0, 0, aa2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, aa2},
	evt19: {0, 0, aa1, aa8, 0, aa8, aa8, aa8, aa8, aa8, aa8, aa8, aa8, aa7},
}
