package index

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// OutboxMessage is an unsent outbox row. Its fields match what the
// publisher in scp/events takes.
type OutboxMessage struct {
	ID      int64
	Subject string
	MsgID   string
	Data    []byte
}

// addOutbox writes a message in the caller's transaction. A message id
// already in the outbox is not written twice.
func (x *Index) addOutbox(ctx context.Context, tx *sql.Tx, m Message, now time.Time) (int64, error) {
	var id int64
	err := tx.QueryRowContext(ctx, x.q(`INSERT INTO outbox (subject, msg_id, payload, created_at) VALUES (?,?,?,?)
		ON CONFLICT (msg_id) DO UPDATE SET msg_id = excluded.msg_id RETURNING id`),
		m.Subject, m.MsgID, string(m.Data), micros(now)).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("index: write outbox: %w", err)
	}
	return id, nil
}

// OutboxLease is how long a row handed out by PendingOutbox is kept from
// other publishers.
const OutboxLease = 30 * time.Second

// PendingOutbox hands out up to limit unsent rows, oldest first, and
// leases them for OutboxLease so that publishers on other nodes skip them;
// a publisher that dies leaves them to the next one after the lease. A row
// may still be published twice; the message id de-duplicates it.
func (x *Index) PendingOutbox(ctx context.Context, limit int) ([]OutboxMessage, error) {
	now := time.Now()
	var out []OutboxMessage
	err := x.tx(ctx, func(tx *sql.Tx) error {
		lock := ""
		if x.d.name == "postgres" {
			lock = " FOR UPDATE SKIP LOCKED"
		}
		rows, err := tx.QueryContext(ctx, x.q(`SELECT id, subject, msg_id, payload FROM outbox
			WHERE sent_at IS NULL AND (lease_until IS NULL OR lease_until < ?) ORDER BY id LIMIT ?`+lock), micros(now), limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var m OutboxMessage
			var data string
			if err := rows.Scan(&m.ID, &m.Subject, &m.MsgID, &data); err != nil {
				return err
			}
			m.Data = []byte(data)
			out = append(out, m)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows.Close()
		for _, m := range out {
			if _, err := tx.ExecContext(ctx, x.q(`UPDATE outbox SET lease_until = ? WHERE id = ?`),
				micros(now.Add(OutboxLease)), m.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index: pending outbox: %w", err)
	}
	return out, nil
}

// MarkOutboxSent records that the broker acknowledged these rows.
func (x *Index) MarkOutboxSent(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	args := []any{micros(time.Now())}
	for _, id := range ids {
		args = append(args, id)
	}
	q := `UPDATE outbox SET sent_at = ? WHERE id IN (?` + strings.Repeat(",?", len(ids)-1) + `)`
	if _, err := x.db.ExecContext(ctx, x.q(q), args...); err != nil {
		return fmt.Errorf("index: mark outbox sent: %w", err)
	}
	return nil
}
