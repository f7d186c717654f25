package index

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Level is a Query/Retrieve level (PS3.4 C.6.1.1).
type Level string

// Query/Retrieve levels of the Patient and Study Root models.
const (
	PatientLevel Level = "PATIENT"
	StudyLevel   Level = "STUDY"
	SeriesLevel  Level = "SERIES"
	ImageLevel   Level = "IMAGE"
)

// Query is a C-FIND identifier reduced to keywords: each key is a DICOM
// keyword and its value the matching value as the identifier carries it.
// Matching follows PS3.4 C.2.2.2: an empty value is universal matching
// (return the attribute, no filter); "*" and "?" are wildcards; a
// backslash-separated list of UIDs matches any of them; "a-b", "a-" and
// "-b" are ranges for dates and times; anything else is single value
// matching, case-insensitive for person names.
type Query struct {
	Level Level
	Keys  map[string]string
	// Limit caps the matches (0: no cap); the SCP asks for one more than it
	// will send to know there are more.
	Limit int
}

// Match is one C-FIND response identifier: keyword → value (multiple
// values joined with a backslash), for every key of the query and the
// level's unique key.
type Match map[string]string

// key describes a matchable attribute: its SQL expression and how it
// matches.
type key struct {
	expr   string
	kind   matchKind
	levels []Level // the levels whose rows carry it
}

type matchKind int

const (
	mText matchKind = iota
	mPN             // person name: case-insensitive
	mUID            // list of UIDs
	mDate           // ranges
	mNum            // integer
)

// keys maps keywords to columns of the joined tables p (patients), st
// (studies), se (series) and i (instances).
var keys = map[string]key{
	"PatientID":                      {"p.patient_id", mText, []Level{PatientLevel, StudyLevel, SeriesLevel, ImageLevel}},
	"IssuerOfPatientID":              {"p.issuer_of_patient_id", mText, []Level{PatientLevel, StudyLevel, SeriesLevel, ImageLevel}},
	"PatientName":                    {"p.patient_name", mPN, []Level{PatientLevel, StudyLevel, SeriesLevel, ImageLevel}},
	"PatientBirthDate":               {"p.patient_birth_date", mDate, []Level{PatientLevel, StudyLevel, SeriesLevel, ImageLevel}},
	"PatientSex":                     {"p.patient_sex", mText, []Level{PatientLevel, StudyLevel, SeriesLevel, ImageLevel}},
	"NumberOfPatientRelatedStudies":  {"(SELECT COUNT(*) FROM studies s2 WHERE s2.patient_pk = p.pk)", mNum, []Level{PatientLevel}},
	"StudyInstanceUID":               {"st.study_instance_uid", mUID, []Level{StudyLevel, SeriesLevel, ImageLevel}},
	"StudyDate":                      {"st.study_date", mDate, []Level{StudyLevel, SeriesLevel, ImageLevel}},
	"StudyTime":                      {"st.study_time", mDate, []Level{StudyLevel, SeriesLevel, ImageLevel}},
	"AccessionNumber":                {"st.accession_number", mText, []Level{StudyLevel, SeriesLevel, ImageLevel}},
	"StudyID":                        {"st.study_id", mText, []Level{StudyLevel, SeriesLevel, ImageLevel}},
	"ReferringPhysicianName":         {"st.referring_physician_name", mPN, []Level{StudyLevel, SeriesLevel, ImageLevel}},
	"StudyDescription":               {"st.study_description", mText, []Level{StudyLevel, SeriesLevel, ImageLevel}},
	"NumberOfStudyRelatedSeries":     {"(SELECT COUNT(*) FROM series s2 WHERE s2.study_instance_uid = st.study_instance_uid)", mNum, []Level{StudyLevel}},
	"NumberOfStudyRelatedInstances":  {"(SELECT CAST(COALESCE(SUM(s2.instance_count), 0) AS BIGINT) FROM series s2 WHERE s2.study_instance_uid = st.study_instance_uid)", mNum, []Level{StudyLevel}},
	"ModalitiesInStudy":              {"", mText, []Level{StudyLevel}}, // special: see modalities
	"SeriesInstanceUID":              {"se.series_instance_uid", mUID, []Level{SeriesLevel, ImageLevel}},
	"Modality":                       {"se.modality", mText, []Level{SeriesLevel, ImageLevel}},
	"SeriesNumber":                   {"se.series_number", mNum, []Level{SeriesLevel, ImageLevel}},
	"SeriesDate":                     {"se.series_date", mDate, []Level{SeriesLevel, ImageLevel}},
	"SeriesTime":                     {"se.series_time", mDate, []Level{SeriesLevel, ImageLevel}},
	"SeriesDescription":              {"se.series_description", mText, []Level{SeriesLevel, ImageLevel}},
	"BodyPartExamined":               {"se.body_part_examined", mText, []Level{SeriesLevel, ImageLevel}},
	"NumberOfSeriesRelatedInstances": {"se.instance_count", mNum, []Level{SeriesLevel}},
	"SOPInstanceUID":                 {"i.sop_instance_uid", mUID, []Level{ImageLevel}},
	"SOPClassUID":                    {"i.sop_class_uid", mUID, []Level{ImageLevel}},
	"InstanceNumber":                 {"i.instance_number", mNum, []Level{ImageLevel}},
	"AvailableTransferSyntaxUID":     {"i.transfer_syntax_uid", mUID, []Level{ImageLevel}},
}

// uniqueKey is the key every response of a level carries.
var uniqueKey = map[Level]string{
	PatientLevel: "PatientID",
	StudyLevel:   "StudyInstanceUID",
	SeriesLevel:  "SeriesInstanceUID",
	ImageLevel:   "SOPInstanceUID",
}

// ErrUnsupportedKey is returned for a level or key the index cannot match.
var ErrUnsupportedKey = fmt.Errorf("index: unsupported query")

// Find runs a C-FIND query and returns every match. Keys the index does
// not hold are ignored and not returned, as PS3.4 C.2.2.1.3 allows for
// optional keys; keys of a lower level than the query's are refused with
// ErrUnsupportedKey.
func (x *Index) Find(ctx context.Context, q Query) ([]Match, error) {
	var out []Match
	err := x.FindEach(ctx, q, func(m Match) error {
		out = append(out, m)
		return nil
	})
	return out, err
}

// FindEach runs a C-FIND query like Find and calls fn with each match as
// the database returns it, so an SCP can send each pending response
// without holding all matches. An error from fn stops the query and is
// returned.
func (x *Index) FindEach(ctx context.Context, q Query, fn func(Match) error) error {
	uk, ok := uniqueKey[q.Level]
	if !ok {
		return fmt.Errorf("%w: level %q", ErrUnsupportedKey, q.Level)
	}
	from := map[Level]string{
		PatientLevel: `patients p`,
		StudyLevel:   `studies st JOIN patients p ON p.pk = st.patient_pk`,
		SeriesLevel: `series se JOIN studies st ON st.study_instance_uid = se.study_instance_uid
			JOIN patients p ON p.pk = st.patient_pk`,
		ImageLevel: `instances i JOIN series se ON se.series_instance_uid = i.series_instance_uid
			JOIN studies st ON st.study_instance_uid = se.study_instance_uid JOIN patients p ON p.pk = st.patient_pk`,
	}[q.Level]
	names := []string{uk}
	for k := range q.Keys {
		if k != uk {
			names = append(names, k)
		}
	}
	sort.Strings(names[1:])
	var cols []string
	var ret []string
	var where []string
	var args []any
	if q.Level == ImageLevel {
		where = append(where, `i.deleted_at IS NULL`,
			`i.version = (SELECT MAX(v.version) FROM instances v WHERE v.sop_instance_uid = i.sop_instance_uid)`)
	}
	for _, k := range names {
		d, ok := keys[k]
		if !ok {
			continue
		}
		if !hasLevel(d.levels, q.Level) {
			if levelRank(d.levels[0]) > levelRank(q.Level) {
				return fmt.Errorf("%w: key %s below level %s", ErrUnsupportedKey, k, q.Level)
			}
			continue
		}
		v := q.Keys[k]
		if k == "ModalitiesInStudy" {
			cols = append(cols, modalitiesExpr(x.d.name))
			ret = append(ret, k)
			if v != "" {
				vals := strings.Split(v, `\`)
				where = append(where, `EXISTS (SELECT 1 FROM series s3 WHERE s3.study_instance_uid = st.study_instance_uid
					AND s3.modality IN (?`+strings.Repeat(",?", len(vals)-1)+`))`)
				for _, m := range vals {
					args = append(args, m)
				}
			}
			continue
		}
		cols = append(cols, d.expr)
		ret = append(ret, k)
		w, a, err := condition(d, v, x.d.name)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrUnsupportedKey, k, err)
		}
		if w != "" {
			where = append(where, w)
			args = append(args, a...)
		}
	}
	sqlq := `SELECT ` + strings.Join(cols, ", ") + ` FROM ` + from
	if len(where) > 0 {
		sqlq += ` WHERE ` + strings.Join(where, ` AND `)
	}
	sqlq += ` ORDER BY 1`
	if q.Limit > 0 {
		sqlq += ` LIMIT ` + strconv.Itoa(q.Limit)
	}
	rows, err := x.db.QueryContext(ctx, x.q(sqlq), args...)
	if err != nil {
		return fmt.Errorf("index: find: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return fmt.Errorf("index: find: %w", err)
		}
		m := Match{}
		for i, k := range ret {
			m[k] = text(vals[i])
		}
		if err := fn(m); err != nil {
			return err
		}
	}
	return rows.Err()
}

func hasLevel(ls []Level, l Level) bool {
	for _, x := range ls {
		if x == l {
			return true
		}
	}
	return false
}

func levelRank(l Level) int {
	return map[Level]int{PatientLevel: 0, StudyLevel: 1, SeriesLevel: 2, ImageLevel: 3}[l]
}

// modalitiesExpr lists the distinct modalities of a study, backslash
// separated.
func modalitiesExpr(dialect string) string {
	if dialect == "postgres" {
		return `(SELECT COALESCE(STRING_AGG(DISTINCT s3.modality, '\'), '') FROM series s3 WHERE s3.study_instance_uid = st.study_instance_uid)`
	}
	return `(SELECT COALESCE(GROUP_CONCAT(m, '\'), '') FROM (SELECT DISTINCT s3.modality AS m FROM series s3 WHERE s3.study_instance_uid = st.study_instance_uid ORDER BY m))`
}

// condition builds the SQL filter for one key. Wildcards use GLOB on
// SQLite, whose LIKE ignores case, and LIKE on PostgreSQL, so both match
// case-sensitively (person names are lowered on both sides first).
func condition(d key, v string, dialect string) (string, []any, error) {
	if v == "" || v == "*" {
		return "", nil, nil
	}
	switch d.kind {
	case mUID:
		uids := strings.Split(v, `\`)
		return d.expr + ` IN (?` + strings.Repeat(",?", len(uids)-1) + `)`, toAny(uids), nil
	case mNum:
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return "", nil, fmt.Errorf("not a number: %q", v)
		}
		return d.expr + ` = ?`, []any{n}, nil
	case mDate:
		if lo, hi, ok := strings.Cut(v, "-"); ok {
			var w []string
			var a []any
			if lo != "" {
				w, a = append(w, d.expr+` >= ?`), append(a, lo)
			}
			if hi != "" {
				// "20261127" as upper bound of a time or date includes the
				// whole of it: compare with the next string up.
				w, a = append(w, d.expr+` <= ?`), append(a, hi+"~")
			}
			if len(w) == 0 {
				return "", nil, nil
			}
			return strings.Join(w, " AND "), a, nil
		}
	}
	expr := d.expr
	if d.kind == mPN {
		expr, v = `LOWER(`+expr+`)`, strings.ToLower(v)
	}
	if strings.ContainsAny(v, "*?") {
		if dialect == "sqlite" {
			return expr + ` GLOB ?`, []any{strings.ReplaceAll(v, "[", "[[]")}, nil
		}
		return expr + ` LIKE ? ESCAPE '!'`, []any{likePattern(v)}, nil
	}
	return expr + ` = ?`, []any{v}, nil
}

// likePattern turns a DICOM wildcard into a LIKE pattern with '!' as the
// escape character.
func likePattern(v string) string {
	var b strings.Builder
	for _, r := range v {
		switch r {
		case '*':
			b.WriteByte('%')
		case '?':
			b.WriteByte('_')
		case '%', '_', '!':
			b.WriteByte('!')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func toAny(s []string) []any {
	a := make([]any, len(s))
	for i, v := range s {
		a[i] = v
	}
	return a
}

func text(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case []byte:
		return string(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	return fmt.Sprint(v)
}
