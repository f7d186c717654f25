// Package dimse implements the DICOM upper layer (PS3.8) and DIMSE messaging
// (PS3.7) for otonode, with no dependency beyond the standard library.
//
// The layers, each in files named for the standard's concepts:
//
//   - PDUs (PS3.8 9.3): pdu.go, a_associate.go, user_info.go. DecodePDU and
//     the Encode methods; every length is checked, unknown items are
//     skipped, errors are *DecodeError.
//   - The protocol machine (PS3.8 9.2): fsm_table.go holds Table 9-10 as
//     written, fsm.go runs it, with the ARTIM timer and release collision.
//   - Negotiation (negotiate.go): pure functions for acceptor and requestor;
//     the acceptor's transfer syntax order is its preference.
//   - P-DATA and command sets (association.go, command.go, messages.go):
//     fragments sized to the peer's maximum, command sets reassembled
//     within a bound, data sets streamed as io.Reader in both directions.
//   - Server (server.go, serve_mux.go): shaped like net/http. A Handler gets
//     a *Request whose Body streams the data set and answers through a
//     ResponseWriter; ServeMux routes by command and SOP class.
//   - Client (client.go): Dial returns an *Association with Echo, Store,
//     StoreFile, Release and Abort.
//   - Query/Retrieve (operation.go, qr_client.go, identifier.go): a C-FIND,
//     C-GET or C-MOVE handler gets an OperationWriter that streams pending
//     responses, notices C-CANCEL-RQ and performs C-GET sub-operations on
//     the same association; the client has Find, Move and Get. Identifiers
//     are small data sets with their own codec (Identifier), any size,
//     with the character sets ISO_IR 6, 100 and 192.
//
// Errors carry the standard's fields: *RejectError (A-ASSOCIATE-RJ),
// *AbortError (A-ABORT), *StatusError (DIMSE status; errors.Is matches a
// Status or a StatusClass).
//
// Sub-packages: dimsetest runs servers on loopback for tests; storescu
// pushes files and folders.
package dimse
