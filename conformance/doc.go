// Package conformance holds otonode's DICOM Conformance Statement
// (CONFORMANCE.md, in the structure of PS3.2) and the tests that hold it to
// the code: its SOP class, transfer syntax, configuration and code tables
// against what the node accepts and writes, and an end-to-end run against a
// real PACS (Orthanc).
package conformance
