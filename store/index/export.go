package index

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ExportState is where one object stands with one destination.
type ExportState string

// Export states: pending until a C-STORE succeeds (sent) or the attempts
// run out (dead, until an operator retries it); suppressed when a newer
// analysis of the series superseded the object before it was sent.
const (
	ExportPending    ExportState = "pending"
	ExportSent       ExportState = "sent"
	ExportDead       ExportState = "dead"
	ExportSuppressed ExportState = "suppressed"
)

// Export is one row of the export outbox, with what the sender needs of the
// stored instance (empty when the instance is no longer stored).
type Export struct {
	ID             int64
	Destination    string
	SOPInstanceUID string
	// SeriesInstanceUID is the analysed (source) series the object belongs
	// to, so every log line about the export can name it.
	SeriesInstanceUID string
	State             ExportState
	Attempts          int
	NextAttemptAt     time.Time
	LastError         string
	CreatedAt         time.Time
	SentAt            time.Time

	SOPClassUID       string
	TransferSyntaxUID string
	Location          string
	// Kind is the result_objects kind (seg, sr, kos-flag, kos-rejection),
	// or "source" for an instance of the analysed series.
	Kind string
}

// ExportPlan says what one destination receives.
type ExportPlan struct {
	Destination string
	// AllowNotForDiagnosis also sends results of a model whose manifest
	// says it is not for diagnosis.
	AllowNotForDiagnosis bool
	// Sources also sends the analysed source series of every result sent.
	Sources bool
}

// KindSource marks an exported instance of an analysed source series.
const KindSource = "source"

// PlanExports writes a pending row for every stored result that has no row
// for the destination yet and, with Sources, first one for every instance of
// the analysed series of such a result (so that the source reaches the
// destination before the objects that reference it). Results are known by
// the instance's is_result and their result_objects row; a result without
// that row is never planned, since nothing says whether it may be used for
// diagnosis. It returns the number of rows written.
//
// Both statements look only at results without a row for the destination,
// so a planner that runs every second stays cheap once everything is
// planned.
func (x *Index) PlanExports(ctx context.Context, p ExportPlan, now time.Time) (int, error) {
	at := micros(now)
	// unplanned are the eligible stored results with no row for the
	// destination: (sop_instance_uid, analysed series).
	const unplanned = `SELECT ro.sop_instance_uid, ro.series_instance_uid FROM result_objects ro
		JOIN instances ri ON ri.sop_instance_uid = ro.sop_instance_uid AND ri.is_result AND ri.deleted_at IS NULL
		WHERE (ro.for_diagnosis OR ?)
		AND NOT EXISTS (SELECT 1 FROM exports e WHERE e.destination = ? AND e.sop_instance_uid = ro.sop_instance_uid)`
	const insert = `INSERT INTO exports (destination, sop_instance_uid, series_instance_uid,
		state, attempts, next_attempt_at, last_error, created_at)
		SELECT ?, s.sop_instance_uid, s.series_instance_uid, ?, 0, ?, '', ? FROM `
	// "WHERE true" keeps SQLite from reading ON CONFLICT as a join's ON.
	var total int64
	err := x.tx(ctx, func(tx *sql.Tx) error {
		if p.Sources {
			res, err := tx.ExecContext(ctx, x.q(insert+`(SELECT DISTINCT i.sop_instance_uid, i.series_instance_uid
				FROM instances i WHERE NOT i.is_result AND i.deleted_at IS NULL
				AND i.series_instance_uid IN (SELECT u.series_instance_uid FROM (`+unplanned+`) u)
				AND NOT EXISTS (SELECT 1 FROM exports e WHERE e.destination = ? AND e.sop_instance_uid = i.sop_instance_uid)) s
				WHERE true ON CONFLICT DO NOTHING`),
				p.Destination, ExportPending, at, at, p.AllowNotForDiagnosis, p.Destination, p.Destination)
			if err != nil {
				return fmt.Errorf("index: plan source exports: %w", err)
			}
			n, _ := res.RowsAffected()
			total += n
		}
		res, err := tx.ExecContext(ctx, x.q(insert+`(SELECT DISTINCT u.sop_instance_uid, u.series_instance_uid FROM (`+
			unplanned+`) u) s WHERE true ON CONFLICT DO NOTHING`),
			p.Destination, ExportPending, at, at, p.AllowNotForDiagnosis, p.Destination)
		if err != nil {
			return fmt.Errorf("index: plan exports: %w", err)
		}
		n, _ := res.RowsAffected()
		total += n
		return nil
	})
	return int(total), err
}

// SuppressSuperseded ends, for one destination, the pending rows of SEG, SR
// and peer-review KOS objects whose analysed series has SEG or SR of a
// later revision stored at the node: PACS must not receive results that
// are already replaced (the newer analysis's rejection note, which is not
// suppressed, would hide them at once). The reason names the revision. It
// returns the suppressed rows. Rows a sender holds in flight are pending
// too; if their C-STORE then succeeds they become sent, which is the truth.
func (x *Index) SuppressSuperseded(ctx context.Context, destination string) ([]Export, error) {
	var out []Export
	err := x.tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, x.q(`SELECT e.id, e.sop_instance_uid, e.series_instance_uid, ro.kind, ro.revision,
			(SELECT MAX(n.revision) FROM result_objects n
				JOIN instances ni ON ni.sop_instance_uid = n.sop_instance_uid AND ni.is_result
				WHERE n.series_instance_uid = ro.series_instance_uid AND n.kind IN (?, ?))
			FROM exports e JOIN result_objects ro ON ro.sop_instance_uid = e.sop_instance_uid
			WHERE e.destination = ? AND e.state = ? AND ro.kind IN (?, ?, ?)
			ORDER BY e.id`), KindSEG, KindSR, destination, ExportPending, KindSEG, KindSR, KindKOSFlag)
		if err != nil {
			return err
		}
		type row struct {
			e        Export
			rev, max int
		}
		var cand []row
		for rows.Next() {
			var r row
			var max sql.NullInt64
			if err := rows.Scan(&r.e.ID, &r.e.SOPInstanceUID, &r.e.SeriesInstanceUID, &r.e.Kind, &r.rev, &max); err != nil {
				rows.Close()
				return err
			}
			if r.max = int(max.Int64); r.max > r.rev {
				cand = append(cand, r)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, r := range cand {
			r.e.Destination, r.e.State = destination, ExportSuppressed
			r.e.LastError = "superseded by revision " + strconv.Itoa(r.max) + " (not sent)"
			res, err := tx.ExecContext(ctx, x.q(`UPDATE exports SET state = ?, last_error = ? WHERE id = ? AND state = ?`),
				ExportSuppressed, r.e.LastError, r.e.ID, ExportPending)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 1 {
				out = append(out, r.e)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index: suppress superseded exports: %w", err)
	}
	return out, nil
}

// HeldExport is a stored result that PlanExports leaves out for a
// destination, and why.
type HeldExport struct {
	SOPInstanceUID    string
	SeriesInstanceUID string // the analysed series; the result's own when unknown
	Kind              string
	Reason            string
	ReceivedAt        time.Time
}

// Reasons a result is held.
const (
	HeldNotForDiagnosis = "not for diagnosis"
	HeldUnknownResult   = "no result_objects row"
)

// HeldExports lists up to limit stored results, newest first, that have no
// row for the destination because the plan does not allow them: results of
// a model not for diagnosis (unless allowed) and results whose
// result_objects row is missing.
func (x *Index) HeldExports(ctx context.Context, p ExportPlan, limit int) ([]HeldExport, error) {
	rows, err := x.db.QueryContext(ctx, x.q(`SELECT i.sop_instance_uid,
		COALESCE(ro.series_instance_uid, i.series_instance_uid), COALESCE(ro.kind, ''), ro.sop_instance_uid IS NULL,
		i.received_at FROM instances i LEFT JOIN result_objects ro ON ro.sop_instance_uid = i.sop_instance_uid
		WHERE i.is_result AND i.deleted_at IS NULL AND (ro.sop_instance_uid IS NULL OR NOT (ro.for_diagnosis OR ?))
		AND NOT EXISTS (SELECT 1 FROM exports e WHERE e.destination = ? AND e.sop_instance_uid = i.sop_instance_uid)
		ORDER BY i.received_at DESC, i.sop_instance_uid LIMIT ?`), p.AllowNotForDiagnosis, p.Destination, limit)
	if err != nil {
		return nil, fmt.Errorf("index: held exports: %w", err)
	}
	defer rows.Close()
	var out []HeldExport
	seen := map[string]bool{}
	for rows.Next() {
		var h HeldExport
		var unknown bool
		var at int64
		if err := rows.Scan(&h.SOPInstanceUID, &h.SeriesInstanceUID, &h.Kind, &unknown, &at); err != nil {
			return nil, fmt.Errorf("index: held exports: %w", err)
		}
		h.ReceivedAt = fromMicros(at)
		if seen[h.SOPInstanceUID] { // another version of one instance
			continue
		}
		seen[h.SOPInstanceUID] = true
		h.Reason = HeldNotForDiagnosis
		if unknown {
			h.Reason = HeldUnknownResult
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

const exportColumns = `e.id, e.destination, e.sop_instance_uid, e.series_instance_uid, e.state, e.attempts,
	e.next_attempt_at, e.last_error, e.created_at, e.sent_at,
	COALESCE(i.sop_class_uid, ''), COALESCE(i.transfer_syntax_uid, ''), COALESCE(i.location, ''), COALESCE(ro.kind, CASE WHEN i.is_result THEN '' ELSE 'source' END, '')`

// exportJoins attach the latest stored version of the instance and its
// result_objects row.
const exportJoins = ` FROM exports e
	LEFT JOIN instances i ON i.sop_instance_uid = e.sop_instance_uid AND i.deleted_at IS NULL
		AND i.version = (SELECT MAX(v.version) FROM instances v WHERE v.sop_instance_uid = e.sop_instance_uid)
	LEFT JOIN result_objects ro ON ro.sop_instance_uid = e.sop_instance_uid`

func scanExport(sc interface{ Scan(...any) error }) (Export, error) {
	var e Export
	var next, created int64
	var sent sql.NullInt64
	err := sc.Scan(&e.ID, &e.Destination, &e.SOPInstanceUID, &e.SeriesInstanceUID, &e.State, &e.Attempts,
		&next, &e.LastError, &created, &sent, &e.SOPClassUID, &e.TransferSyntaxUID, &e.Location, &e.Kind)
	e.NextAttemptAt, e.CreatedAt, e.SentAt = fromMicros(next), fromMicros(created), fromNullMicros(sent)
	return e, err
}

// DueExports hands out up to limit pending rows of a destination whose
// next attempt is due, oldest first, and moves their next attempt lease
// ahead so that a sender on another node skips them. A sender that dies
// leaves them to the next one after the lease; only those rows can then
// be sent twice.
func (x *Index) DueExports(ctx context.Context, destination string, now time.Time, lease time.Duration, limit int) ([]Export, error) {
	var out []Export
	err := x.tx(ctx, func(tx *sql.Tx) error {
		lock := ""
		if x.d.name == "postgres" {
			lock = " FOR UPDATE OF e SKIP LOCKED"
		}
		rows, err := tx.QueryContext(ctx, x.q(`SELECT `+exportColumns+exportJoins+`
			WHERE e.destination = ? AND e.state = ? AND e.next_attempt_at <= ?
			ORDER BY e.next_attempt_at, e.id LIMIT ?`+lock), destination, ExportPending, micros(now), limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			e, err := scanExport(rows)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows.Close()
		return x.setNextAttempt(ctx, tx, ids(out), now.Add(lease))
	})
	if err != nil {
		return nil, fmt.Errorf("index: due exports: %w", err)
	}
	return out, nil
}

func ids(es []Export) []int64 {
	out := make([]int64, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

// setNextAttempt moves pending rows' next attempt to at.
func (x *Index) setNextAttempt(ctx context.Context, tx *sql.Tx, ids []int64, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	args := []any{micros(at), ExportPending}
	for _, id := range ids {
		args = append(args, id)
	}
	_, err := tx.ExecContext(ctx, x.q(`UPDATE exports SET next_attempt_at = ? WHERE state = ? AND id IN (?`+
		strings.Repeat(",?", len(ids)-1)+`)`), args...)
	return err
}

// DeferExports moves pending rows' next attempt to at without counting an
// attempt: rows handed out but not tried (the association broke first).
func (x *Index) DeferExports(ctx context.Context, ids []int64, at time.Time) error {
	err := x.tx(ctx, func(tx *sql.Tx) error { return x.setNextAttempt(ctx, tx, ids, at) })
	if err != nil {
		return fmt.Errorf("index: defer exports: %w", err)
	}
	return nil
}

// MarkExportSent records that the destination answered the C-STORE with
// success (or a warning).
func (x *Index) MarkExportSent(ctx context.Context, id int64, at time.Time) error {
	_, err := x.db.ExecContext(ctx, x.q(`UPDATE exports SET state = ?, attempts = attempts + 1, sent_at = ?, last_error = ''
		WHERE id = ?`), ExportSent, micros(at), id)
	if err != nil {
		return fmt.Errorf("index: mark export sent: %w", err)
	}
	return nil
}

// MarkExportFailed counts a failed attempt. The row stays pending with its
// next attempt at next, or becomes dead when this was attempt maxAttempts
// (or later). It returns the row's new state.
func (x *Index) MarkExportFailed(ctx context.Context, id int64, reason string, next time.Time, maxAttempts int) (ExportState, error) {
	var st ExportState
	err := x.db.QueryRowContext(ctx, x.q(`UPDATE exports SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?,
		state = CASE WHEN attempts + 1 >= ? THEN ? ELSE ? END
		WHERE id = ? AND state = ? RETURNING state`),
		reason, micros(next), maxAttempts, ExportDead, ExportPending, id, ExportPending).Scan(&st)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("index: mark export %d failed: %w", id, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("index: mark export failed: %w", err)
	}
	return st, nil
}

// MarkExportDead ends a row at once: an attempt can never succeed (the
// instance is no longer stored).
func (x *Index) MarkExportDead(ctx context.Context, id int64, reason string) error {
	_, err := x.db.ExecContext(ctx, x.q(`UPDATE exports SET state = ?, last_error = ? WHERE id = ? AND state = ?`),
		ExportDead, reason, id, ExportPending)
	if err != nil {
		return fmt.Errorf("index: mark export dead: %w", err)
	}
	return nil
}

// ExportFilter selects rows for Exports; zero fields select all.
type ExportFilter struct {
	State       ExportState
	Destination string
	Limit       int // 0: 1000
}

// Exports lists outbox rows, newest first.
func (x *Index) Exports(ctx context.Context, f ExportFilter) ([]Export, error) {
	q := `SELECT ` + exportColumns + exportJoins + ` WHERE 1 = 1`
	var args []any
	if f.State != "" {
		q += ` AND e.state = ?`
		args = append(args, f.State)
	}
	if f.Destination != "" {
		q += ` AND e.destination = ?`
		args = append(args, f.Destination)
	}
	if f.Limit <= 0 {
		f.Limit = 1000
	}
	rows, err := x.db.QueryContext(ctx, x.q(q+` ORDER BY e.id DESC LIMIT ?`), append(args, f.Limit)...)
	if err != nil {
		return nil, fmt.Errorf("index: exports: %w", err)
	}
	defer rows.Close()
	var out []Export
	for rows.Next() {
		e, err := scanExport(rows)
		if err != nil {
			return nil, fmt.Errorf("index: exports: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// RetryExport sets one dead row back to pending with fresh attempts, due
// now. ErrNotFound: no such row; ErrState: the row is not dead.
func (x *Index) RetryExport(ctx context.Context, id int64, now time.Time) error {
	return x.tx(ctx, func(tx *sql.Tx) error {
		var st ExportState
		err := tx.QueryRowContext(ctx, x.q(`SELECT state FROM exports WHERE id = ?`+x.d.forUpdate), id).Scan(&st)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("index: export %d: %w", id, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("index: retry export: %w", err)
		}
		if st != ExportDead {
			return fmt.Errorf("index: export %d is %s, not dead: %w", id, st, ErrState)
		}
		_, err = tx.ExecContext(ctx, x.q(`UPDATE exports SET state = ?, attempts = 0, next_attempt_at = ? WHERE id = ?`),
			ExportPending, micros(now), id)
		if err != nil {
			return fmt.Errorf("index: retry export: %w", err)
		}
		return nil
	})
}

// RetryDeadExports sets every dead row (of one destination, or all when
// destination is empty) back to pending, due now, and returns how many.
func (x *Index) RetryDeadExports(ctx context.Context, destination string, now time.Time) (int, error) {
	q := `UPDATE exports SET state = ?, attempts = 0, next_attempt_at = ? WHERE state = ?`
	args := []any{ExportPending, micros(now), ExportDead}
	if destination != "" {
		q += ` AND destination = ?`
		args = append(args, destination)
	}
	res, err := x.db.ExecContext(ctx, x.q(q), args...)
	if err != nil {
		return 0, fmt.Errorf("index: retry dead exports: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// ExportCounts returns the number of pending and dead rows per destination
// (sent rows only grow; the state index answers this without reading them).
func (x *Index) ExportCounts(ctx context.Context) (map[string]map[ExportState]int, error) {
	rows, err := x.db.QueryContext(ctx, x.q(`SELECT destination, state, COUNT(*) FROM exports WHERE state IN (?, ?)
		GROUP BY destination, state`), ExportPending, ExportDead)
	if err != nil {
		return nil, fmt.Errorf("index: export counts: %w", err)
	}
	defer rows.Close()
	out := map[string]map[ExportState]int{}
	for rows.Next() {
		var d string
		var st ExportState
		var n int
		if err := rows.Scan(&d, &st, &n); err != nil {
			return nil, fmt.Errorf("index: export counts: %w", err)
		}
		if out[d] == nil {
			out[d] = map[ExportState]int{}
		}
		out[d][st] = n
	}
	return out, rows.Err()
}
