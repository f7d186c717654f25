package scp

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/otonode/otonode/scp/config"
	"github.com/otonode/otonode/scp/events"
	"github.com/otonode/otonode/store/index"
)

// Rules are the routing rules: which complete series can be analysed.
type Rules struct {
	Modalities        []string
	MaxSliceThickness float64 // mm, 0: no limit
	MaxSliceSpacing   float64
	MinInstances      int
	CallingAE         *regexp.Regexp // nil: any
	Description       *regexp.Regexp // nil: any
	BoneKernels       []string       // upper-case substrings
}

// NewRules compiles the selection settings.
func NewRules(c config.Selection) (Rules, error) {
	r := Rules{Modalities: c.Modalities, MaxSliceThickness: c.MaxSliceThickness, MaxSliceSpacing: c.MaxSliceSpacing,
		MinInstances: c.MinInstances}
	var err error
	if c.CallingAE != "" {
		if r.CallingAE, err = regexp.Compile(c.CallingAE); err != nil {
			return r, fmt.Errorf("scp: selection.calling_ae: %w", err)
		}
	}
	if c.Description != "" {
		if r.Description, err = regexp.Compile("(?i)" + c.Description); err != nil {
			return r, fmt.Errorf("scp: selection.description: %w", err)
		}
	}
	for _, k := range c.BoneKernels {
		r.BoneKernels = append(r.BoneKernels, strings.ToUpper(k))
	}
	return r, nil
}

// Refuse returns why a series cannot be analysed, or "" when it can.
func (r Rules) Refuse(s index.Series) string {
	if len(r.Modalities) > 0 && !slices.ContainsFunc(r.Modalities, func(m string) bool { return strings.EqualFold(m, s.Modality) }) {
		return fmt.Sprintf("modality %q is not analysed", s.Modality)
	}
	if slices.ContainsFunc(s.ImageType, func(v string) bool { return strings.EqualFold(v, "LOCALIZER") }) {
		return "localizer (ImageType LOCALIZER)"
	}
	if r.MaxSliceThickness > 0 && s.SliceThickness != nil && *s.SliceThickness > r.MaxSliceThickness {
		return fmt.Sprintf("slice thickness %g mm above %g mm", *s.SliceThickness, r.MaxSliceThickness)
	}
	if sp := spacing(s); r.MaxSliceSpacing > 0 && sp > r.MaxSliceSpacing {
		return fmt.Sprintf("slice spacing %g mm above %g mm", sp, r.MaxSliceSpacing)
	}
	if s.Instances < r.MinInstances {
		return fmt.Sprintf("%d instances, fewer than %d", s.Instances, r.MinInstances)
	}
	if r.CallingAE != nil && !r.CallingAE.MatchString(s.SourceAE) {
		return fmt.Sprintf("sending AE %q does not match the rule", s.SourceAE)
	}
	if r.Description != nil && !r.Description.MatchString(s.SeriesDescription) {
		return fmt.Sprintf("series description %q does not match the rule", s.SeriesDescription)
	}
	return ""
}

func spacing(s index.Series) float64 {
	if s.SpacingBetweenSlices != nil {
		return *s.SpacingBetweenSlices
	}
	return 0
}

// Bone reports whether the series was reconstructed with a bone kernel.
func (r Rules) Bone(s index.Series) bool {
	for _, k := range s.ConvolutionKernel {
		k = strings.ToUpper(k)
		for _, b := range r.BoneKernels {
			if strings.Contains(k, b) {
				return true
			}
		}
	}
	return false
}

// Better orders two qualifying series of one study, best first: a bone
// kernel, then the thinnest slices, then the longest coverage along the
// scan axis, then the lower series number (the original before its
// reformats), then the UID so that the choice is the same on every node.
func (r Rules) Better(a, b index.Series) int {
	if ab, bb := r.Bone(a), r.Bone(b); ab != bb {
		if ab {
			return -1
		}
		return 1
	}
	if c := cmp.Compare(thickness(a), thickness(b)); c != 0 {
		return c
	}
	if c := cmp.Compare(coverage(b), coverage(a)); c != 0 {
		return c
	}
	if c := cmp.Compare(number(a), number(b)); c != 0 {
		return c
	}
	return strings.Compare(a.SeriesInstanceUID, b.SeriesInstanceUID)
}

func thickness(s index.Series) float64 {
	if s.SliceThickness != nil && *s.SliceThickness > 0 {
		return *s.SliceThickness
	}
	return 1e9 // unknown sorts last
}

func coverage(s index.Series) float64 {
	step := spacing(s)
	if step == 0 && s.SliceThickness != nil {
		step = *s.SliceThickness
	}
	return float64(s.Instances) * step
}

func number(s index.Series) int {
	if s.SeriesNumber != nil {
		return *s.SeriesNumber
	}
	return 1 << 30
}

// Selector decides complete series: after the study settle time, each
// study's qualifying series are ranked and the best one is queued for
// analysis (its outbox row goes to the work subject); the others are
// marked not analysed with the reason. Only identifiers, counts and
// reasons go into the message.
type Selector struct {
	Index    *index.Index
	Rules    Rules
	Settle   time.Duration
	Topology events.Topology
	Source   events.Source
	// OnQueued wakes the publisher.
	OnQueued func()
	Metrics  *Metrics
	Logger   *slog.Logger
	Now      func() time.Time

	waker
}

// Round decides every study whose complete series have settled.
func (s *Selector) Round(ctx context.Context) error {
	now := clock(s.Now)
	ready, err := s.Index.SeriesInState(ctx, index.Complete, now.Add(-s.Settle))
	if err != nil {
		return err
	}
	studies := map[string]bool{}
	for _, c := range ready {
		if studies[c.StudyInstanceUID] {
			continue
		}
		studies[c.StudyInstanceUID] = true
		if err := s.study(ctx, c.StudyInstanceUID, now); err != nil {
			return err
		}
	}
	return nil
}

func (s *Selector) study(ctx context.Context, study string, now time.Time) error {
	all, err := s.Index.StudySeries(ctx, study)
	if err != nil {
		return err
	}
	var cands []index.Series
	var active *index.Series
	for i, se := range all {
		switch se.State {
		case index.Receiving:
			// A series still arriving may be the better one: wait for it,
			// unless it cannot be analysed anyway.
			if s.Rules.Refuse(se) == "" || se.Instances < s.Rules.MinInstances {
				return nil
			}
		case index.Complete:
			if now.Sub(se.UpdatedAt) < s.Settle {
				return nil
			}
			cands = append(cands, se)
		case index.Queued, index.Analysing, index.Done:
			active = &all[i]
		}
	}
	var ok []index.Series
	for _, c := range cands {
		if why := s.Rules.Refuse(c); why != "" {
			if err := s.decline(ctx, c, why, now); err != nil {
				return err
			}
			continue
		}
		ok = append(ok, c)
	}
	if len(ok) == 0 {
		return nil
	}
	slices.SortFunc(ok, s.Rules.Better)
	best := ok[0]
	// One analysis per examination: a series that qualifies after another
	// of the study was queued is not analysed, even if it ranks higher
	// (PACS would get two results); a new revision of the chosen series
	// is not "active" here and is queued again.
	if active != nil {
		for _, c := range ok {
			if err := s.decline(ctx, c, "study already analysed with series "+active.SeriesInstanceUID, now); err != nil {
				return err
			}
		}
		return nil
	}
	if err := s.queue(ctx, best, now); err != nil {
		return err
	}
	for _, c := range ok[1:] {
		if err := s.decline(ctx, c, "another series of the study suits better: "+best.SeriesInstanceUID, now); err != nil {
			return err
		}
	}
	return nil
}

// WorkMessage is the work-queue job of a queued revision. It is built
// from the index alone, so the reconciler re-publishes the same bytes.
func WorkMessage(topo events.Topology, src events.Source, se index.Series) (index.Message, error) {
	data, err := json.Marshal(events.SeriesComplete{
		StudyInstanceUID: se.StudyInstanceUID, SeriesInstanceUID: se.SeriesInstanceUID,
		Revision: se.Revision, Instances: se.Instances, Reason: se.Reason, CompletedAt: se.CompletedAt.UTC(),
		Source: src,
	})
	return index.Message{Subject: topo.WorkSubject(), MsgID: events.MsgID(se.SeriesInstanceUID, se.Revision), Data: data}, err
}

func (s *Selector) queue(ctx context.Context, se index.Series, now time.Time) error {
	m, err := WorkMessage(s.Topology, s.Source, se)
	if err != nil {
		return err
	}
	// The queued revision keeps its completion reason; the message says it.
	err = s.Index.Transition(ctx, index.Transition{SeriesInstanceUID: se.SeriesInstanceUID, Revision: se.Revision,
		From: []index.State{index.Complete}, To: index.Queued, Reason: se.Reason, Message: &m}, now)
	if errors.Is(err, index.ErrState) {
		return nil // another node decided, or a late instance overtook it
	}
	if err != nil {
		return err
	}
	s.Metrics.Selections.WithLabelValues("queued").Inc()
	s.Logger.Info("series queued for analysis", "series_instance_uid", se.SeriesInstanceUID, "revision", se.Revision,
		"study_instance_uid", se.StudyInstanceUID, "bone_kernel", s.Rules.Bone(se), "instances", se.Instances)
	if s.OnQueued != nil {
		s.OnQueued()
	}
	return nil
}

func (s *Selector) decline(ctx context.Context, se index.Series, why string, now time.Time) error {
	err := s.Index.Transition(ctx, index.Transition{SeriesInstanceUID: se.SeriesInstanceUID, Revision: se.Revision,
		From: []index.State{index.Complete}, To: index.NotAnalysed, Reason: why}, now)
	if errors.Is(err, index.ErrState) {
		return nil
	}
	if err != nil {
		return err
	}
	s.Metrics.Selections.WithLabelValues("not-analysed").Inc()
	s.Logger.Info("series not analysed", "series_instance_uid", se.SeriesInstanceUID, "revision", se.Revision, "reason", why)
	return nil
}

// Run selects until ctx ends, looking at least every quarter settle time.
func (s *Selector) Run(ctx context.Context) error {
	every := s.Settle / 4
	if every < 100*time.Millisecond {
		every = 100 * time.Millisecond
	}
	if every > time.Second {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-s.c():
		}
		if err := s.Round(ctx); err != nil && ctx.Err() == nil {
			s.Logger.Error("selection round", "err", err)
		}
	}
}
