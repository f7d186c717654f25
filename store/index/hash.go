package index

import (
	"context"
	"database/sql"
	"fmt"
)

// InstanceHash is the SHA-256 (hex) of the data set of one instance
// version.
//
// The instances.sha256 column is empty until it is known: the node does
// not hash a data set before the C-STORE-RSP; its file writer hashes it
// moments later, and a reindex computes what a crash left out. Readers of
// the column treat "" as "not yet computed".
type InstanceHash struct {
	SOPInstanceUID string
	Version        int
	SHA256         string
}

// SetInstanceSHA256 records data set hashes computed after their instances
// were indexed, in one transaction, and returns those whose rows are not
// (yet) indexed.
func (x *Index) SetInstanceSHA256(ctx context.Context, hs []InstanceHash) (missing []InstanceHash, err error) {
	if len(hs) == 0 {
		return nil, nil
	}
	err = x.tx(ctx, func(tx *sql.Tx) error {
		missing = missing[:0]
		st, err := tx.PrepareContext(ctx, x.q(`UPDATE instances SET sha256 = ? WHERE sop_instance_uid = ? AND version = ?`))
		if err != nil {
			return err
		}
		defer st.Close()
		for _, h := range hs {
			res, err := st.ExecContext(ctx, h.SHA256, h.SOPInstanceUID, h.Version)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				missing = append(missing, h)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index: set instance SHA-256: %w", err)
	}
	return missing, nil
}

// InstancesWithoutSHA256 returns up to limit instances, not deleted, whose
// data set hash is not recorded yet, after the given (SOP instance UID,
// version) in key order, so that a caller can page through them.
func (x *Index) InstancesWithoutSHA256(ctx context.Context, afterSOP string, afterVersion, limit int) ([]StoredInstance, error) {
	return x.instanceList(ctx, instanceQuery+` WHERE sha256 = '' AND deleted_at IS NULL
		AND (sop_instance_uid > ? OR (sop_instance_uid = ? AND version > ?))
		ORDER BY sop_instance_uid, version LIMIT ?`, afterSOP, afterSOP, afterVersion, limit)
}
