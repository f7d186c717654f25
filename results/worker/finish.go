package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/otonode/otonode/analysis"
	"github.com/otonode/otonode/scp/events"
	"github.com/otonode/otonode/store/index"
)

// Event is the payload of the analysis done, flagged and failed events:
// identifiers, measurements and reasons, never patient data.
type Event struct {
	StudyInstanceUID  string     `json:"study_instance_uid"`
	SeriesInstanceUID string     `json:"series_instance_uid"`
	Revision          int        `json:"revision"`
	Status            string     `json:"status"` // done, flagged, failed, not-analysable
	Reason            string     `json:"reason,omitempty"`
	Model             string     `json:"model"`
	ModelVersion      string     `json:"model_version"`
	ModelSHA256       string     `json:"model_sha256"`
	ForDiagnosis      bool       `json:"for_diagnosis"`
	Ears              []EarEvent `json:"ears,omitempty"`
	SEG               string     `json:"seg_sop_instance_uid,omitempty"`
	SR                string     `json:"sr_sop_instance_uid,omitempty"`
	KOS               string     `json:"kos_sop_instance_uid,omitempty"`
	Worker            string     `json:"worker"`
	At                time.Time  `json:"at"`
}

// EarEvent is one ear in an Event.
type EarEvent struct {
	Laterality  string  `json:"laterality"`
	VolumeMM3   float64 `json:"volume_mm3"`
	Uncertainty float64 `json:"uncertainty"`
	Flagged     bool    `json:"flagged"`
	FlagReason  string  `json:"flag_reason,omitempty"`
}

// finish records the outcome in one transaction: the analyses rows, the
// claim finished, the revision done or failed, and the events.
func (w *Worker) finish(ctx context.Context, job events.SeriesComplete, key index.ClaimKey, out *outcome) error {
	now := w.Now()
	m := out.res.Model
	if m.SHA256 == "" {
		m = w.Analyzer.Model()
	}
	f := index.Finish{Key: key, Worker: w.ID, Outcome: out.outcome, To: index.Done, Reason: out.reason}
	ev := Event{StudyInstanceUID: job.StudyInstanceUID, SeriesInstanceUID: job.SeriesInstanceUID, Revision: job.Revision,
		Status: out.outcome, Reason: out.reason, Model: m.Name, ModelVersion: m.Version, ModelSHA256: m.SHA256,
		ForDiagnosis: !m.NotForDiagnosis, SEG: out.segUID, SR: out.srUID, KOS: out.kosUID, Worker: w.ID, At: now.UTC()}
	row := index.Analysis{StudyInstanceUID: job.StudyInstanceUID, ModelName: m.Name, ModelVersion: m.Version,
		Status: out.outcome, Reason: out.reason}
	if len(out.res.Ears) == 0 {
		f.To = index.Failed
		row.Timings = timings(out, "")
		f.Analyses = append(f.Analyses, row)
	}
	for n, e := range out.res.Ears {
		r := row
		r.Ear = string(e.Laterality)
		if r.Ear == "" {
			r.Ear = fmt.Sprintf("unknown-%d", n+1)
		}
		r.Status = StatusDone
		r.Reason = ""
		if e.Flag.Raised {
			r.Status, r.Flagged, r.FlagReasons = StatusFlagged, true, e.Flag.Reason
		}
		r.Timings = timings(out, fmt.Sprintf("ear%d/", n+1))
		vol, unc := e.VolumeMM3, e.Uncertainty
		r.VolumeMM3, r.Uncertainty = &vol, &unc
		for _, l := range e.Landmarks {
			p := l.PatientMM[:]
			switch l.Name {
			case analysis.Helicotrema:
				r.Helicotrema = p
			case analysis.OvalWindow:
				r.OvalWindow = p
			case analysis.RoundWindow:
				r.RoundWindow = p
			}
		}
		f.Analyses = append(f.Analyses, r)
		ev.Ears = append(ev.Ears, EarEvent{Laterality: string(e.Laterality), VolumeMM3: vol, Uncertainty: unc,
			Flagged: e.Flag.Raised, FlagReason: e.Flag.Reason})
	}
	subjects := map[string]string{StatusDone: w.Topology.AnalysisDoneSubject()}
	switch out.outcome {
	case StatusFlagged:
		subjects[StatusFlagged] = w.Topology.AnalysisFlaggedSubject()
	case StatusFailed, analysis.StatusNotAnalysable:
		subjects = map[string]string{StatusFailed: w.Topology.AnalysisFailedSubject()}
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	for _, kind := range []string{StatusDone, StatusFlagged, StatusFailed} {
		if subj, ok := subjects[kind]; ok {
			f.Messages = append(f.Messages, index.Message{Subject: subj, Data: data,
				MsgID: fmt.Sprintf("analysis/%s/%d/%s/%s", job.SeriesInstanceUID, job.Revision, short(m.SHA256), kind)})
		}
	}
	return w.Index.FinishAnalysis(ctx, f, now)
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

// timings is the JSON object stage → seconds of one ear: the shared stages
// and those of the ear (named with prefix, which is cut off).
func timings(out *outcome, prefix string) string {
	t := map[string]float64{}
	add := func(s analysis.Stage) {
		name := s.Name
		if i := strings.IndexByte(name, '/'); i >= 0 {
			if prefix == "" || !strings.HasPrefix(name, prefix) {
				return
			}
			name = name[i+1:]
		}
		t[name] += s.Duration.Seconds()
	}
	for _, s := range out.stages {
		add(s)
	}
	if out.res != nil {
		for _, s := range out.res.Stages {
			add(s)
		}
	}
	b, _ := json.Marshal(t)
	return string(b)
}
