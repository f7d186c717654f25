package index

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Series is a series with its current revision's state: what selection
// and the Q/R series level read.
type Series struct {
	SeriesInstanceUID    string
	StudyInstanceUID     string
	Modality             string
	SeriesNumber         *int
	SeriesDate           string
	SeriesTime           string
	SeriesDescription    string
	BodyPartExamined     string
	FrameOfReferenceUID  string
	ConvolutionKernel    []string
	ImageType            []string
	SliceThickness       *float64
	SpacingBetweenSlices *float64
	PixelSpacing         []float64
	ImageOrientation     []float64
	Rows, Columns        *int
	ExpectedCount        *int
	SourceAE             string
	Instances            int // distinct SOP instances

	Revision       int
	State          State
	Reason         string
	LastInstanceAt time.Time
	ReleasedAt     time.Time
	CompletedAt    time.Time
	UpdatedAt      time.Time
}

const seriesQuery = `SELECT se.series_instance_uid, se.study_instance_uid, se.modality, se.series_number, se.series_date,
	se.series_time, se.series_description, se.body_part_examined, se.frame_of_reference_uid, se.convolution_kernel,
	se.image_type, se.slice_thickness, se.spacing_between_slices, se.pixel_spacing, se.image_orientation, se.rows_,
	se.columns_, se.expected_count, se.source_ae, se.instance_count,
	s.revision, s.state, s.reason, s.last_instance_at, s.released_at, s.completed_at, s.updated_at
	FROM series se JOIN series_state s ON s.series_instance_uid = se.series_instance_uid AND s.revision = se.current_revision`

func scanSeries(sc interface{ Scan(...any) error }) (Series, error) {
	var s Series
	var num, rows, cols, exp sql.NullInt64
	var thick, spacing sql.NullFloat64
	var kernel, itype, ps, orient string
	var last int64
	var rel, comp sql.NullInt64
	var upd int64
	err := sc.Scan(&s.SeriesInstanceUID, &s.StudyInstanceUID, &s.Modality, &num, &s.SeriesDate, &s.SeriesTime,
		&s.SeriesDescription, &s.BodyPartExamined, &s.FrameOfReferenceUID, &kernel, &itype, &thick, &spacing, &ps,
		&orient, &rows, &cols, &exp, &s.SourceAE, &s.Instances,
		&s.Revision, &s.State, &s.Reason, &last, &rel, &comp, &upd)
	if err != nil {
		return s, err
	}
	s.SeriesNumber, s.Rows, s.Columns, s.ExpectedCount = intPtr(num), intPtr(rows), intPtr(cols), intPtr(exp)
	s.SliceThickness, s.SpacingBetweenSlices = floatPtr(thick), floatPtr(spacing)
	s.ConvolutionKernel, s.ImageType = split(kernel), split(itype)
	s.PixelSpacing, s.ImageOrientation = parseFloats(ps), parseFloats(orient)
	s.LastInstanceAt, s.ReleasedAt, s.CompletedAt, s.UpdatedAt = fromMicros(last), fromNullMicros(rel), fromNullMicros(comp), fromMicros(upd)
	return s, nil
}

func intPtr(v sql.NullInt64) *int {
	if !v.Valid {
		return nil
	}
	n := int(v.Int64)
	return &n
}

func floatPtr(v sql.NullFloat64) *float64 {
	if !v.Valid {
		return nil
	}
	return &v.Float64
}

// Series returns one series, ErrNotFound if it is not indexed.
func (x *Index) Series(ctx context.Context, seriesUID string) (Series, error) {
	s, err := scanSeries(x.db.QueryRowContext(ctx, x.q(seriesQuery+` WHERE se.series_instance_uid = ?`), seriesUID))
	if errors.Is(err, sql.ErrNoRows) {
		return s, fmt.Errorf("%w: series %s", ErrNotFound, seriesUID)
	}
	if err != nil {
		return s, fmt.Errorf("index: series: %w", err)
	}
	return s, nil
}

// StudySeries returns the series of a study in series-number order: what
// study-level selection compares.
func (x *Index) StudySeries(ctx context.Context, studyUID string) ([]Series, error) {
	return x.seriesList(ctx, seriesQuery+` WHERE se.study_instance_uid = ? ORDER BY se.series_number, se.series_instance_uid`, studyUID)
}

// SeriesInState returns the series whose current revision is in state and
// last changed before the given time: queued work nobody claimed (for the
// reconciler), complete series waiting for selection.
func (x *Index) SeriesInState(ctx context.Context, state State, changedBefore time.Time) ([]Series, error) {
	return x.seriesList(ctx, seriesQuery+` WHERE s.state = ? AND s.updated_at < ? ORDER BY s.updated_at`, state, micros(changedBefore))
}

func (x *Index) seriesList(ctx context.Context, q string, args ...any) ([]Series, error) {
	rows, err := x.db.QueryContext(ctx, x.q(q), args...)
	if err != nil {
		return nil, fmt.Errorf("index: series: %w", err)
	}
	defer rows.Close()
	var out []Series
	for rows.Next() {
		s, err := scanSeries(rows)
		if err != nil {
			return nil, fmt.Errorf("index: series: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// StoredInstance is an indexed instance file.
type StoredInstance struct {
	SOPInstanceUID       string
	Version              int
	SeriesInstanceUID    string
	SOPClassUID          string
	InstanceNumber       *int
	TransferSyntaxUID    string
	ImagePositionPatient []float64
	Location             string
	Size                 int64
	SHA256               string
	Result               bool
	Revision             int
	ReceivedAt           time.Time
}

const instanceQuery = `SELECT sop_instance_uid, version, series_instance_uid, sop_class_uid, instance_number,
	transfer_syntax_uid, image_position, location, size, sha256, is_result, revision, received_at FROM instances`

func scanInstance(sc interface{ Scan(...any) error }) (StoredInstance, error) {
	var in StoredInstance
	var num sql.NullInt64
	var pos string
	var at int64
	err := sc.Scan(&in.SOPInstanceUID, &in.Version, &in.SeriesInstanceUID, &in.SOPClassUID, &num,
		&in.TransferSyntaxUID, &pos, &in.Location, &in.Size, &in.SHA256, &in.Result, &in.Revision, &at)
	in.InstanceNumber, in.ImagePositionPatient, in.ReceivedAt = intPtr(num), parseFloats(pos), fromMicros(at)
	return in, err
}

// Instances returns the latest version of every instance of a series that
// retention has not deleted, by instance number.
func (x *Index) Instances(ctx context.Context, seriesUID string) ([]StoredInstance, error) {
	return x.instanceList(ctx, instanceQuery+` i WHERE series_instance_uid = ? AND deleted_at IS NULL
		AND version = (SELECT MAX(version) FROM instances v WHERE v.sop_instance_uid = i.sop_instance_uid)
		ORDER BY instance_number, sop_instance_uid`, seriesUID)
}

func (x *Index) instanceList(ctx context.Context, q string, args ...any) ([]StoredInstance, error) {
	rows, err := x.db.QueryContext(ctx, x.q(q), args...)
	if err != nil {
		return nil, fmt.Errorf("index: instances: %w", err)
	}
	defer rows.Close()
	var out []StoredInstance
	for rows.Next() {
		in, err := scanInstance(rows)
		if err != nil {
			return nil, fmt.Errorf("index: instances: %w", err)
		}
		out = append(out, in)
	}
	return out, rows.Err()
}

// ExpiredSources returns up to limit source instance files (never results)
// of series whose current revision ended (done, failed or not analysed)
// before the given time, for the retention policy.
func (x *Index) ExpiredSources(ctx context.Context, endedBefore time.Time, limit int) ([]StoredInstance, error) {
	return x.instanceList(ctx, instanceQuery+` i WHERE NOT is_result AND deleted_at IS NULL AND EXISTS (
		SELECT 1 FROM series se JOIN series_state s ON s.series_instance_uid = se.series_instance_uid
			AND s.revision = se.current_revision
		WHERE se.series_instance_uid = i.series_instance_uid AND s.state IN (?, ?, ?) AND s.updated_at < ?)
		ORDER BY received_at LIMIT ?`, Done, Failed, NotAnalysed, micros(endedBefore), limit)
}

// MarkDeleted records that retention removed an instance file.
func (x *Index) MarkDeleted(ctx context.Context, sopInstanceUID string, version int, at time.Time) error {
	_, err := x.db.ExecContext(ctx, x.q(`UPDATE instances SET deleted_at = ? WHERE sop_instance_uid = ? AND version = ?`),
		micros(at), sopInstanceUID, version)
	if err != nil {
		return fmt.Errorf("index: mark deleted: %w", err)
	}
	return nil
}

// HasInstance reports whether a version of an instance is indexed.
func (x *Index) HasInstance(ctx context.Context, sopInstanceUID string, version int) (bool, error) {
	var one int
	err := x.db.QueryRowContext(ctx, x.q(`SELECT 1 FROM instances WHERE sop_instance_uid = ? AND version = ?`),
		sopInstanceUID, version).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("index: has instance: %w", err)
	}
	return true, nil
}
