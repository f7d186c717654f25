// Package store holds what otonode keeps: durable instance files (package
// files), the bounded header reader that feeds the index (package header),
// the index and series state in SQL (package index), and the glue that puts
// them in the order the C-STORE SCP needs (Ingest) plus the retention policy
// for source instances.
//
// The order of one C-STORE is fixed here, not in the SCP: the data set is
// written to a staging file and fsynced, its header is read with limits, the
// file is linked to its final name and the directory fsynced, the instance
// is recorded in the index, and only then does Ingest.Store return, so the
// SCP may send success. A refusal (disk watermark, undecodable data set,
// invalid UID) leaves nothing behind.
package store
