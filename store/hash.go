package store

import (
	"context"
	"encoding/hex"
	"strconv"

	"github.com/otonode/otonode/store/files"
	"github.com/otonode/otonode/store/index"
)

// hashIndex is the part of the index that records data set hashes after
// the instances were indexed; *index.Index has it.
type hashIndex interface {
	SetInstanceSHA256(ctx context.Context, hs []index.InstanceHash) ([]index.InstanceHash, error)
}

// maxEarly bounds the hashes kept for rows that are not indexed yet: an
// instance whose indexing failed keeps its entry until its sender retries;
// past the bound, Reindex computes the hash instead.
const maxEarly = 4096

func hashKey(sop string, version int) string { return sop + "/" + strconv.Itoa(version) }

// RecordHashes records the SHA-256 of data sets whose files the store has
// just made durable (files.Local.SetHashSink). The C-STORE path indexes an
// instance without it (the column is empty until then), so that no hash
// is computed before the response.
//
// A file can become durable before its row is indexed (Store indexes after
// Put returns). Such hashes wait in early, and are tried once more after
// they were put there; Store looks there after it indexed a row. Either
// the second try finds the row, or the row was indexed after it, and so
// after the hash was waiting, where Store finds it.
func (g *Ingest) RecordHashes(ctx context.Context, hs []files.Hashed) {
	x, ok := g.Index.(hashIndex)
	if !ok {
		return
	}
	in := make([]index.InstanceHash, len(hs))
	for i, h := range hs {
		in[i] = index.InstanceHash{SOPInstanceUID: h.SOPInstanceUID, Version: h.Version, SHA256: hex.EncodeToString(h.DataSetSHA256[:])}
	}
	missing, err := x.SetInstanceSHA256(ctx, in)
	if err != nil {
		g.logHashFailure(err)
		return
	}
	if len(missing) == 0 {
		return
	}
	g.mu.Lock()
	if g.early == nil {
		g.early = map[string]string{}
	}
	for _, h := range missing {
		if len(g.early) < maxEarly {
			g.early[hashKey(h.SOPInstanceUID, h.Version)] = h.SHA256
		}
	}
	g.mu.Unlock()
	still, err := x.SetInstanceSHA256(ctx, missing)
	if err != nil {
		g.logHashFailure(err)
		return
	}
	left := map[string]bool{}
	for _, h := range still {
		left[hashKey(h.SOPInstanceUID, h.Version)] = true
	}
	g.mu.Lock()
	for _, h := range missing {
		if k := hashKey(h.SOPInstanceUID, h.Version); !left[k] {
			delete(g.early, k)
		}
	}
	g.mu.Unlock()
}

// lateHash records a hash that came before the row Store just indexed.
func (g *Ingest) lateHash(ctx context.Context, sop string, version int) {
	k := hashKey(sop, version)
	g.mu.Lock()
	sum, ok := g.early[k]
	delete(g.early, k)
	g.mu.Unlock()
	x, isHash := g.Index.(hashIndex)
	if !ok || !isHash {
		return
	}
	if _, err := x.SetInstanceSHA256(ctx, []index.InstanceHash{{SOPInstanceUID: sop, Version: version, SHA256: sum}}); err != nil {
		g.logHashFailure(err)
	}
}

func (g *Ingest) logHashFailure(err error) {
	if g.Log != nil {
		g.Log.Warn("store: recording data set hashes failed; a reindex computes them", "err", err)
	}
}
