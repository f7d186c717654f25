package index

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/otonode/otonode/store/header"
)

// State is where a series revision stands.
type State string

// Series revision states. A revision starts receiving; completion moves it
// to complete; selection queues it for analysis or marks it not analysed;
// a worker's claim makes it analysing, and the result done or failed. A
// complete or queued revision overtaken by late instances is cancelled.
const (
	Receiving   State = "receiving"
	Complete    State = "complete"
	Queued      State = "queued"
	Analysing   State = "analysing"
	Done        State = "done"
	Failed      State = "failed"
	NotAnalysed State = "not-analysed"
	Cancelled   State = "cancelled"
)

// Instance is what RecordInstance stores about one instance file.
type Instance struct {
	Attrs *header.Attributes
	// Location, Version, Size and SHA256 describe the file (files.Stored).
	Location string
	Version  int
	Size     int64
	SHA256   string
	SourceAE string
	// Result marks objects otonode made (SEG, SR): retention never
	// deletes them.
	Result     bool
	ReceivedAt time.Time
}

// Recorded is what RecordInstance did.
type Recorded struct {
	// Duplicate: this (SOP instance, version) was already indexed; nothing
	// changed (a re-sent instance, or a retry after a crash).
	Duplicate bool
	// Revision is the series revision the instance belongs to; NewRevision
	// reports that it opened one because the series was already complete.
	Revision    int
	NewRevision bool
	// Cancelled is the revision a new one overtook (0 if none).
	Cancelled int
}

// RecordInstance indexes one stored instance: patient, study and series
// rows on first sight, the instance row, and the series timers. It is
// idempotent. An instance that arrives after its series revision left the
// receiving state opens a new revision (debounced by the same completion
// rules) and cancels the old one if it was not yet being analysed.
func (x *Index) RecordInstance(ctx context.Context, in Instance) (Recorded, error) {
	a := in.Attrs
	if a == nil || a.SeriesInstanceUID == "" || a.StudyInstanceUID == "" || a.SOPInstanceUID == "" {
		return Recorded{}, errors.New("index: record instance: study, series and SOP instance UIDs are required")
	}
	if in.Version < 1 {
		in.Version = 1
	}
	var rec Recorded
	err := x.tx(ctx, func(tx *sql.Tx) error {
		rev, err := x.lockSeries(ctx, tx, a.SeriesInstanceUID)
		if errors.Is(err, ErrNotFound) {
			if err := x.createSeries(ctx, tx, in); err != nil {
				return err
			}
			rev, err = x.lockSeries(ctx, tx, a.SeriesInstanceUID)
		}
		if err != nil {
			return err
		}
		res, err := x.execPrepared(ctx, tx, qInsertInstance,
			a.SOPInstanceUID, in.Version, a.SeriesInstanceUID, a.SOPClassUID, nullInt(a.InstanceNumber),
			nullInt(a.AcquisitionNumber), a.TransferSyntaxUID, join(a.SpecificCharacterSet), join(a.ImageType),
			nullFloat(a.SliceThickness), floats(a.ImagePositionPatient), floats(a.ImageOrientationPatient),
			floats(a.PixelSpacing), nullInt(a.Rows), nullInt(a.Columns), nullInt(a.NumberOfFrames),
			in.Location, in.Size, in.SHA256, in.SourceAE, in.Result, rev, micros(in.ReceivedAt))
		if err != nil {
			return fmt.Errorf("index: insert instance: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			rec = Recorded{Duplicate: true, Revision: rev}
			return nil
		}
		var state State
		if err := x.queryRowPrepared(ctx, tx, qSeriesState,
			a.SeriesInstanceUID, rev).Scan(&state); err != nil {
			return fmt.Errorf("index: read series state: %w", err)
		}
		rec.Revision = rev
		if state != Receiving {
			rec.NewRevision = true
			rec.Revision = rev + 1
			if state == Complete || state == Queued {
				rec.Cancelled = rev
				if err := x.setState(ctx, tx, a.SeriesInstanceUID, rev, Cancelled,
					"superseded by revision "+strconv.Itoa(rev+1), in.ReceivedAt); err != nil {
					return err
				}
			}
			if _, err := tx.ExecContext(ctx, x.q(`INSERT INTO series_state (series_instance_uid, revision, state, reason,
				instance_count, opened_at, last_instance_at, updated_at) VALUES (?,?,?,?,0,?,?,?)`),
				a.SeriesInstanceUID, rec.Revision, Receiving, "late instance", micros(in.ReceivedAt),
				micros(in.ReceivedAt), micros(in.ReceivedAt)); err != nil {
				return fmt.Errorf("index: open revision: %w", err)
			}
			if _, err := tx.ExecContext(ctx, x.q(`UPDATE series SET current_revision = ? WHERE series_instance_uid = ?`),
				rec.Revision, a.SeriesInstanceUID); err != nil {
				return fmt.Errorf("index: open revision: %w", err)
			}
			if _, err := tx.ExecContext(ctx, x.q(`UPDATE instances SET revision = ? WHERE sop_instance_uid = ? AND version = ?`),
				rec.Revision, a.SOPInstanceUID, in.Version); err != nil {
				return fmt.Errorf("index: open revision: %w", err)
			}
		}
		at := micros(in.ReceivedAt)
		if _, err := x.execPrepared(ctx, tx, qCountSeriesState,
			at, at, at, a.SeriesInstanceUID, rec.Revision); err != nil {
			return fmt.Errorf("index: update series state: %w", err)
		}
		// A new version of a known SOP instance does not add to the count.
		newSOP := 1
		if in.Version > 1 {
			newSOP = 0
		}
		if _, err := x.execPrepared(ctx, tx, qCountSeries,
			newSOP, nullInt(expected(a)), a.SeriesInstanceUID); err != nil {
			return fmt.Errorf("index: update series: %w", err)
		}
		return nil
	})
	if err != nil {
		return Recorded{}, err
	}
	return rec, nil
}

// The statements of RecordInstance that every instance runs, prepared
// at open (recordQueries).
const (
	qLockSeries     = `SELECT current_revision FROM series WHERE series_instance_uid = ?`
	qInsertInstance = `INSERT INTO instances (sop_instance_uid, version, series_instance_uid,
			sop_class_uid, instance_number, acquisition_number, transfer_syntax_uid, specific_character_set,
			image_type, slice_thickness, image_position, image_orientation, pixel_spacing, rows_, columns_,
			number_of_frames, location, size, sha256, source_ae, is_result, revision, received_at)
			VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING`
	qSeriesState      = `SELECT state FROM series_state WHERE series_instance_uid = ? AND revision = ?`
	qCountSeriesState = `UPDATE series_state SET instance_count = instance_count + 1,
			last_instance_at = CASE WHEN last_instance_at > ? THEN last_instance_at ELSE ? END, updated_at = ?
			WHERE series_instance_uid = ? AND revision = ?`
	qCountSeries = `UPDATE series SET instance_count = instance_count + ?,
			expected_count = COALESCE(?, expected_count) WHERE series_instance_uid = ?`
)

func (x *Index) recordQueries() []string {
	return []string{qLockSeries + x.d.forUpdate, qInsertInstance, qSeriesState, qCountSeriesState, qCountSeries}
}

// expected is the instance count the data announces, if any.
func expected(a *header.Attributes) *int {
	for _, p := range []*int{a.ImagesInAcquisition, a.NumberOfSlices} {
		if p != nil && *p > 0 {
			return p
		}
	}
	return nil
}

// lockSeries locks the series row and returns its current revision.
func (x *Index) lockSeries(ctx context.Context, tx *sql.Tx, seriesUID string) (int, error) {
	var rev int
	err := x.queryRowPrepared(ctx, tx, qLockSeries+x.d.forUpdate, seriesUID).Scan(&rev)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("%w: series %s", ErrNotFound, seriesUID)
	}
	if err != nil {
		return 0, fmt.Errorf("index: lock series: %w", err)
	}
	return rev, nil
}

// createSeries inserts the patient, study and series rows and revision 1,
// leaving rows another transaction made first as they are.
func (x *Index) createSeries(ctx context.Context, tx *sql.Tx, in Instance) error {
	a := in.Attrs
	at := micros(in.ReceivedAt)
	if _, err := tx.ExecContext(ctx, x.q(`INSERT INTO patients (patient_id, issuer_of_patient_id, patient_name,
		patient_birth_date, patient_sex) VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING`),
		a.PatientID, a.IssuerOfPatientID, a.PatientName, a.PatientBirthDate, a.PatientSex); err != nil {
		return fmt.Errorf("index: insert patient: %w", err)
	}
	var patient int64
	if err := tx.QueryRowContext(ctx, x.q(`SELECT pk FROM patients WHERE patient_id = ? AND issuer_of_patient_id = ?`),
		a.PatientID, a.IssuerOfPatientID).Scan(&patient); err != nil {
		return fmt.Errorf("index: read patient: %w", err)
	}
	if _, err := tx.ExecContext(ctx, x.q(`INSERT INTO studies (study_instance_uid, patient_pk, study_date, study_time,
		accession_number, study_id, referring_physician_name, study_description, created_at)
		VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING`),
		a.StudyInstanceUID, patient, a.StudyDate, a.StudyTime, a.AccessionNumber, a.StudyID,
		a.ReferringPhysicianName, a.StudyDescription, at); err != nil {
		return fmt.Errorf("index: insert study: %w", err)
	}
	res, err := tx.ExecContext(ctx, x.q(`INSERT INTO series (series_instance_uid, study_instance_uid, modality,
		series_number, series_date, series_time, series_description, body_part_examined, frame_of_reference_uid,
		convolution_kernel, image_type, slice_thickness, spacing_between_slices, pixel_spacing, image_orientation,
		rows_, columns_, expected_count, source_ae, instance_count, current_revision, created_at)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0,1,?) ON CONFLICT DO NOTHING`),
		a.SeriesInstanceUID, a.StudyInstanceUID, a.Modality, nullInt(a.SeriesNumber), a.SeriesDate, a.SeriesTime,
		a.SeriesDescription, a.BodyPartExamined, a.FrameOfReferenceUID, join(a.ConvolutionKernel), join(a.ImageType),
		nullFloat(a.SliceThickness), nullFloat(a.SpacingBetweenSlices), floats(a.PixelSpacing),
		floats(a.ImageOrientationPatient), nullInt(a.Rows), nullInt(a.Columns), nullInt(expected(a)), in.SourceAE, at)
	if err != nil {
		return fmt.Errorf("index: insert series: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, x.q(`INSERT INTO series_state (series_instance_uid, revision, state, reason,
		instance_count, opened_at, last_instance_at, updated_at) VALUES (?,1,?,'',0,?,?,?)`),
		a.SeriesInstanceUID, Receiving, at, at, at); err != nil {
		return fmt.Errorf("index: insert series state: %w", err)
	}
	return nil
}

// setState changes the state of one revision; the caller holds the lock.
func (x *Index) setState(ctx context.Context, tx *sql.Tx, seriesUID string, rev int, s State, reason string, at time.Time) error {
	_, err := tx.ExecContext(ctx, x.q(`UPDATE series_state SET state = ?, reason = ?, updated_at = ?
		WHERE series_instance_uid = ? AND revision = ?`), s, reason, micros(at), seriesUID, rev)
	if err != nil {
		return fmt.Errorf("index: set state %s: %w", s, err)
	}
	return nil
}

// MarkReleased records that an association which sent instances of these
// series was released at the given time: the start of the quiet period.
func (x *Index) MarkReleased(ctx context.Context, seriesUIDs []string, at time.Time) error {
	for _, uid := range seriesUIDs {
		err := x.tx(ctx, func(tx *sql.Tx) error {
			rev, err := x.lockSeries(ctx, tx, uid)
			if err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, x.q(`UPDATE series_state SET released_at = ?, updated_at = ?
				WHERE series_instance_uid = ? AND revision = ? AND state = ?`), micros(at), micros(at), uid, rev, Receiving)
			return err
		})
		if err != nil {
			return fmt.Errorf("index: mark released %s: %w", uid, err)
		}
	}
	return nil
}

func nullInt(p *int) sql.NullInt64 {
	if p == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: int64(*p), Valid: true}
}

func nullFloat(p *float64) sql.NullFloat64 {
	if p == nil {
		return sql.NullFloat64{}
	}
	return sql.NullFloat64{Float64: *p, Valid: true}
}

// join keeps multi-valued strings as DICOM writes them, backslash-separated.
func join(v []string) string { return strings.Join(v, `\`) }

func floats(v []float64) string {
	s := make([]string, len(v))
	for i, f := range v {
		s[i] = strconv.FormatFloat(f, 'g', -1, 64)
	}
	return strings.Join(s, `\`)
}

func parseFloats(s string) []float64 {
	if s == "" {
		return nil
	}
	parts := strings.Split(s, `\`)
	out := make([]float64, 0, len(parts))
	for _, p := range parts {
		f, err := strconv.ParseFloat(p, 64)
		if err != nil {
			return nil
		}
		out = append(out, f)
	}
	return out
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, `\`)
}
