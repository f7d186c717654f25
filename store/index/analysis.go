package index

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Errors of the claim protocol, matched with errors.Is.
var (
	// ErrClaimed: another worker holds a live claim on the analysis (or this
	// worker lost its claim to one that took over an expired lease).
	ErrClaimed = errors.New("index: analysis claimed by another worker")
	// ErrFinished: the analysis was finished already; a redelivered job for
	// it is done.
	ErrFinished = errors.New("index: analysis already finished")
)

// Claim outcomes besides the analysis statuses (done, flagged, failed,
// not-analysable) a finished claim records.
const ClaimRunning = "running"

// ClaimKey names one analysis: a series revision analysed by one model.
type ClaimKey struct {
	SeriesInstanceUID string
	Revision          int
	ModelSHA256       string
}

// Claim is a worker's hold on one analysis.
type Claim struct {
	ClaimKey
	Worker     string
	Attempt    int // 1 for the first worker, more after each takeover
	ClaimedAt  time.Time
	LeaseUntil time.Time
	FinishedAt time.Time // zero while running
	Outcome    string
}

// TakeClaim claims an analysis for worker until now+lease, under the series
// lock, and moves the revision from queued to analysing. A claim whose
// lease expired (its worker died) is taken over with the attempt counted
// up; the same worker may take its own claim again. It returns ErrFinished
// when the analysis was finished, ErrClaimed while another worker's lease
// runs, and ErrState when the revision is no longer queued or analysing
// (cancelled, superseded, or failed by the dead-letter mover). With
// ErrClaimed it returns the other worker's claim.
func (x *Index) TakeClaim(ctx context.Context, k ClaimKey, worker string, lease time.Duration, now time.Time) (Claim, error) {
	var c Claim
	err := x.tx(ctx, func(tx *sql.Tx) error {
		if _, err := x.lockSeries(ctx, tx, k.SeriesInstanceUID); err != nil {
			return err
		}
		old, err := x.claim(ctx, tx, k)
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return err
		case !old.FinishedAt.IsZero():
			return fmt.Errorf("%w: %s revision %d (%s)", ErrFinished, k.SeriesInstanceUID, k.Revision, old.Outcome)
		case old.Worker != worker && old.LeaseUntil.After(now):
			c = old
			return fmt.Errorf("%w: %s revision %d by %s until %s", ErrClaimed, k.SeriesInstanceUID, k.Revision,
				old.Worker, old.LeaseUntil.Format(time.RFC3339))
		}
		var cur State
		err = tx.QueryRowContext(ctx, x.q(`SELECT state FROM series_state WHERE series_instance_uid = ? AND revision = ?`),
			k.SeriesInstanceUID, k.Revision).Scan(&cur)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: series %s revision %d", ErrNotFound, k.SeriesInstanceUID, k.Revision)
		}
		if err != nil {
			return fmt.Errorf("index: read state: %w", err)
		}
		if cur != Queued && cur != Analysing {
			return fmt.Errorf("%w: series %s revision %d is %s", ErrState, k.SeriesInstanceUID, k.Revision, cur)
		}
		c = Claim{ClaimKey: k, Worker: worker, Attempt: old.Attempt + 1, ClaimedAt: now.UTC(),
			LeaseUntil: now.Add(lease).UTC(), Outcome: ClaimRunning}
		if old.Attempt == 0 {
			_, err = tx.ExecContext(ctx, x.q(`INSERT INTO claims (series_instance_uid, revision, model_sha256, worker,
				attempt, claimed_at, lease_until, outcome) VALUES (?,?,?,?,?,?,?,?)`),
				k.SeriesInstanceUID, k.Revision, k.ModelSHA256, worker, c.Attempt, micros(now), micros(c.LeaseUntil), ClaimRunning)
		} else {
			_, err = tx.ExecContext(ctx, x.q(`UPDATE claims SET worker = ?, attempt = ?, claimed_at = ?, lease_until = ?
				WHERE series_instance_uid = ? AND revision = ? AND model_sha256 = ?`),
				worker, c.Attempt, micros(now), micros(c.LeaseUntil), k.SeriesInstanceUID, k.Revision, k.ModelSHA256)
		}
		if err != nil {
			return fmt.Errorf("index: write claim: %w", err)
		}
		if cur == Queued {
			return x.setState(ctx, tx, k.SeriesInstanceUID, k.Revision, Analysing, "claimed by "+worker, now)
		}
		return nil
	})
	return c, err
}

const claimQuery = `SELECT series_instance_uid, revision, model_sha256, worker, attempt, claimed_at, lease_until,
	finished_at, outcome FROM claims`

func scanClaim(sc interface{ Scan(...any) error }) (Claim, error) {
	var c Claim
	var claimed, lease int64
	var fin sql.NullInt64
	err := sc.Scan(&c.SeriesInstanceUID, &c.Revision, &c.ModelSHA256, &c.Worker, &c.Attempt, &claimed, &lease, &fin, &c.Outcome)
	c.ClaimedAt, c.LeaseUntil, c.FinishedAt = fromMicros(claimed), fromMicros(lease), fromNullMicros(fin)
	return c, err
}

func (x *Index) claim(ctx context.Context, tx *sql.Tx, k ClaimKey) (Claim, error) {
	c, err := scanClaim(tx.QueryRowContext(ctx, x.q(claimQuery+` WHERE series_instance_uid = ? AND revision = ? AND model_sha256 = ?`),
		k.SeriesInstanceUID, k.Revision, k.ModelSHA256))
	if errors.Is(err, sql.ErrNoRows) {
		return Claim{}, ErrNotFound
	}
	if err != nil {
		return Claim{}, fmt.Errorf("index: read claim: %w", err)
	}
	return c, nil
}

// GetClaim returns the claim of an analysis, ErrNotFound if none.
func (x *Index) GetClaim(ctx context.Context, k ClaimKey) (Claim, error) {
	var c Claim
	err := x.tx(ctx, func(tx *sql.Tx) error {
		var err error
		c, err = x.claim(ctx, tx, k)
		return err
	})
	return c, err
}

// RenewClaim extends the lease of worker's running claim to now+lease. It
// returns ErrClaimed when the worker no longer holds it.
func (x *Index) RenewClaim(ctx context.Context, k ClaimKey, worker string, lease time.Duration, now time.Time) error {
	res, err := x.db.ExecContext(ctx, x.q(`UPDATE claims SET lease_until = ? WHERE series_instance_uid = ? AND revision = ?
		AND model_sha256 = ? AND worker = ? AND finished_at IS NULL`),
		micros(now.Add(lease)), k.SeriesInstanceUID, k.Revision, k.ModelSHA256, worker)
	if err != nil {
		return fmt.Errorf("index: renew claim: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: %s revision %d is no longer held by %s", ErrClaimed, k.SeriesInstanceUID, k.Revision, worker)
	}
	return nil
}

// ReleaseClaim ends worker's lease at once (a transient error: the retry,
// on any worker, may take the claim without waiting for the lease).
func (x *Index) ReleaseClaim(ctx context.Context, k ClaimKey, worker string, now time.Time) error {
	_, err := x.db.ExecContext(ctx, x.q(`UPDATE claims SET lease_until = ? WHERE series_instance_uid = ? AND revision = ?
		AND model_sha256 = ? AND worker = ? AND finished_at IS NULL`),
		micros(now), k.SeriesInstanceUID, k.Revision, k.ModelSHA256, worker)
	if err != nil {
		return fmt.Errorf("index: release claim: %w", err)
	}
	return nil
}

// Analysis is one row of the analyses table: one ear of an analysed
// revision, or (Ear "") the reason a revision could not be analysed.
type Analysis struct {
	ID                int64
	SeriesInstanceUID string
	StudyInstanceUID  string
	Revision          int
	Ear               string // "R", "L", "" (not analysed) or "unknown"
	ModelName         string
	ModelVersion      string
	ModelSHA256       string
	Status            string // done, flagged, failed, not-analysable
	Reason            string
	Timings           string // JSON object: stage -> seconds
	VolumeMM3         *float64
	// Landmarks in patient coordinates (LPS, mm); nil when absent.
	Helicotrema, OvalWindow, RoundWindow []float64
	Uncertainty                          *float64
	Flagged                              bool
	FlagReasons                          string // "; "-separated
	Worker                               string
	CreatedAt                            time.Time
}

// Finish is what a worker writes when an analysis ends: the rows, the
// claim's outcome, the revision's new state and the events, in one
// transaction.
type Finish struct {
	Key     ClaimKey
	Worker  string
	Outcome string // done, flagged, failed, not-analysable
	// To is the revision's new state (Done or Failed), Reason its reason.
	To       State
	Reason   string
	Analyses []Analysis
	Messages []Message
}

// FinishAnalysis records the end of a claimed analysis: analyses rows, the
// claim finished, the revision analysing→f.To, and outbox rows for the
// events, all or nothing. It returns ErrClaimed when f.Worker no longer
// holds the claim (another worker took it over) and ErrFinished when it
// was finished already.
func (x *Index) FinishAnalysis(ctx context.Context, f Finish, now time.Time) error {
	k := f.Key
	return x.tx(ctx, func(tx *sql.Tx) error {
		if _, err := x.lockSeries(ctx, tx, k.SeriesInstanceUID); err != nil {
			return err
		}
		c, err := x.claim(ctx, tx, k)
		if err != nil {
			return err
		}
		if !c.FinishedAt.IsZero() {
			return fmt.Errorf("%w: %s revision %d", ErrFinished, k.SeriesInstanceUID, k.Revision)
		}
		if c.Worker != f.Worker {
			return fmt.Errorf("%w: %s revision %d was taken over by %s", ErrClaimed, k.SeriesInstanceUID, k.Revision, c.Worker)
		}
		for _, a := range f.Analyses {
			if _, err := tx.ExecContext(ctx, x.q(`INSERT INTO analyses (series_instance_uid, study_instance_uid, revision,
				ear, model_name, model_version, model_sha256, status, reason, timings, volume_mm3, helicotrema, oval_window,
				round_window, uncertainty, flagged, flag_reasons, worker, created_at)
				VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`),
				k.SeriesInstanceUID, a.StudyInstanceUID, k.Revision, a.Ear, a.ModelName, a.ModelVersion, k.ModelSHA256,
				a.Status, a.Reason, a.Timings, nullFloat(a.VolumeMM3), floats(a.Helicotrema), floats(a.OvalWindow),
				floats(a.RoundWindow), nullFloat(a.Uncertainty), a.Flagged, a.FlagReasons, f.Worker, micros(now)); err != nil {
				return fmt.Errorf("index: insert analysis: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, x.q(`UPDATE claims SET finished_at = ?, outcome = ?
			WHERE series_instance_uid = ? AND revision = ? AND model_sha256 = ?`),
			micros(now), f.Outcome, k.SeriesInstanceUID, k.Revision, k.ModelSHA256); err != nil {
			return fmt.Errorf("index: finish claim: %w", err)
		}
		var cur State
		if err := tx.QueryRowContext(ctx, x.q(`SELECT state FROM series_state WHERE series_instance_uid = ? AND revision = ?`),
			k.SeriesInstanceUID, k.Revision).Scan(&cur); err != nil {
			return fmt.Errorf("index: read state: %w", err)
		}
		if cur != Analysing {
			return fmt.Errorf("%w: series %s revision %d is %s, not analysing", ErrState, k.SeriesInstanceUID, k.Revision, cur)
		}
		if err := x.setState(ctx, tx, k.SeriesInstanceUID, k.Revision, f.To, f.Reason, now); err != nil {
			return err
		}
		for _, m := range f.Messages {
			if _, err := x.addOutbox(ctx, tx, m, now); err != nil {
				return err
			}
		}
		return nil
	})
}

const analysisQuery = `SELECT id, series_instance_uid, study_instance_uid, revision, ear, model_name, model_version,
	model_sha256, status, reason, timings, volume_mm3, helicotrema, oval_window, round_window, uncertainty, flagged,
	flag_reasons, worker, created_at FROM analyses`

func (x *Index) analysisList(ctx context.Context, q string, args ...any) ([]Analysis, error) {
	rows, err := x.db.QueryContext(ctx, x.q(q), args...)
	if err != nil {
		return nil, fmt.Errorf("index: analyses: %w", err)
	}
	defer rows.Close()
	var out []Analysis
	for rows.Next() {
		var a Analysis
		var vol, unc sql.NullFloat64
		var hel, ow, rw string
		var at int64
		if err := rows.Scan(&a.ID, &a.SeriesInstanceUID, &a.StudyInstanceUID, &a.Revision, &a.Ear, &a.ModelName,
			&a.ModelVersion, &a.ModelSHA256, &a.Status, &a.Reason, &a.Timings, &vol, &hel, &ow, &rw, &unc, &a.Flagged,
			&a.FlagReasons, &a.Worker, &at); err != nil {
			return nil, fmt.Errorf("index: analyses: %w", err)
		}
		a.VolumeMM3, a.Uncertainty = floatPtr(vol), floatPtr(unc)
		a.Helicotrema, a.OvalWindow, a.RoundWindow = parseFloats(hel), parseFloats(ow), parseFloats(rw)
		a.CreatedAt = fromMicros(at)
		out = append(out, a)
	}
	return out, rows.Err()
}

// Analyses returns the analysis rows of a series, oldest first.
func (x *Index) Analyses(ctx context.Context, seriesUID string) ([]Analysis, error) {
	return x.analysisList(ctx, analysisQuery+` WHERE series_instance_uid = ? ORDER BY id`, seriesUID)
}

// RecentAnalyses returns up to limit analysis rows, newest first; with
// flaggedOnly only flagged ones.
func (x *Index) RecentAnalyses(ctx context.Context, limit int, flaggedOnly bool) ([]Analysis, error) {
	where := ""
	if flaggedOnly {
		where = ` WHERE flagged`
	}
	return x.analysisList(ctx, analysisQuery+where+` ORDER BY created_at DESC, id DESC LIMIT ?`, limit)
}

// Kinds of result objects.
const (
	KindSEG          = "seg"
	KindSR           = "sr"
	KindKOSFlag      = "kos-flag"
	KindKOSRejection = "kos-rejection"
)

// ResultObject is a DICOM object a worker made for a series revision.
type ResultObject struct {
	SOPInstanceUID    string
	SOPClassUID       string
	Kind              string // KindSEG, KindSR, KindKOSFlag, KindKOSRejection
	SeriesInstanceUID string // the analysed (source) series
	Revision          int
	ModelSHA256       string
	ForDiagnosis      bool
	CreatedAt         time.Time
}

// RecordResultObject records an object before it is sent to the node, so
// the node indexes it as a result. Recording it again (a re-run after a
// crash makes the same UIDs) changes nothing.
func (x *Index) RecordResultObject(ctx context.Context, o ResultObject, now time.Time) error {
	_, err := x.db.ExecContext(ctx, x.q(`INSERT INTO result_objects (sop_instance_uid, sop_class_uid, kind,
		series_instance_uid, revision, model_sha256, for_diagnosis, created_at) VALUES (?,?,?,?,?,?,?,?)
		ON CONFLICT DO NOTHING`),
		o.SOPInstanceUID, o.SOPClassUID, o.Kind, o.SeriesInstanceUID, o.Revision, o.ModelSHA256, o.ForDiagnosis, micros(now))
	if err != nil {
		return fmt.Errorf("index: record result object: %w", err)
	}
	return nil
}

const resultObjectQuery = `SELECT sop_instance_uid, sop_class_uid, kind, series_instance_uid, revision, model_sha256,
	for_diagnosis, created_at FROM result_objects`

func (x *Index) resultObjectList(ctx context.Context, q string, args ...any) ([]ResultObject, error) {
	rows, err := x.db.QueryContext(ctx, x.q(q), args...)
	if err != nil {
		return nil, fmt.Errorf("index: result objects: %w", err)
	}
	defer rows.Close()
	var out []ResultObject
	for rows.Next() {
		var o ResultObject
		var at int64
		if err := rows.Scan(&o.SOPInstanceUID, &o.SOPClassUID, &o.Kind, &o.SeriesInstanceUID, &o.Revision,
			&o.ModelSHA256, &o.ForDiagnosis, &at); err != nil {
			return nil, fmt.Errorf("index: result objects: %w", err)
		}
		o.CreatedAt = fromMicros(at)
		out = append(out, o)
	}
	return out, rows.Err()
}

// ResultObjects returns the objects made for a series, all revisions, by
// revision and kind.
func (x *Index) ResultObjects(ctx context.Context, seriesUID string) ([]ResultObject, error) {
	return x.resultObjectList(ctx, resultObjectQuery+` WHERE series_instance_uid = ? ORDER BY revision, kind, sop_instance_uid`, seriesUID)
}

// ResultObject returns the result object with this SOP Instance UID, or
// ErrNotFound: the node's test whether an incoming instance is a result.
func (x *Index) ResultObject(ctx context.Context, sopInstanceUID string) (ResultObject, error) {
	list, err := x.resultObjectList(ctx, resultObjectQuery+` WHERE sop_instance_uid = ?`, sopInstanceUID)
	if err != nil {
		return ResultObject{}, err
	}
	if len(list) == 0 {
		return ResultObject{}, fmt.Errorf("%w: result object %s", ErrNotFound, sopInstanceUID)
	}
	return list[0], nil
}

// StoredResult is a result object the node has stored, with the study and
// series it lies in (the result's own series, not the analysed one).
type StoredResult struct {
	ResultObject
	StudyInstanceUID string
	ResultSeriesUID  string
}

// SupersededResults returns the SEG and SR objects made for revisions of a
// series before revision that reached the node: what a newer analysis
// rejects (IOCM) and its SR names as replaced.
func (x *Index) SupersededResults(ctx context.Context, seriesUID string, revision int) ([]StoredResult, error) {
	rows, err := x.db.QueryContext(ctx, x.q(`SELECT DISTINCT r.sop_instance_uid, r.sop_class_uid, r.kind, r.revision,
		r.model_sha256, r.for_diagnosis, r.created_at, i.series_instance_uid, se.study_instance_uid
		FROM result_objects r JOIN instances i ON i.sop_instance_uid = r.sop_instance_uid
		JOIN series se ON se.series_instance_uid = i.series_instance_uid
		WHERE r.series_instance_uid = ? AND r.revision < ? AND r.kind IN (?, ?)
		ORDER BY r.revision, r.kind, r.sop_instance_uid`), seriesUID, revision, KindSEG, KindSR)
	if err != nil {
		return nil, fmt.Errorf("index: superseded results: %w", err)
	}
	defer rows.Close()
	var out []StoredResult
	for rows.Next() {
		var s StoredResult
		var at int64
		if err := rows.Scan(&s.SOPInstanceUID, &s.SOPClassUID, &s.Kind, &s.Revision, &s.ModelSHA256, &s.ForDiagnosis,
			&at, &s.ResultSeriesUID, &s.StudyInstanceUID); err != nil {
			return nil, fmt.Errorf("index: superseded results: %w", err)
		}
		s.SeriesInstanceUID, s.CreatedAt = seriesUID, fromMicros(at)
		out = append(out, s)
	}
	return out, rows.Err()
}
