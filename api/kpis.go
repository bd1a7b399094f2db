package api

import (
	"context"
	"maps"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/workflows"
)

// kpiNote says how the KPIs count.
const kpiNote = "instances count in the period they started; cycle time runs from the start to the first final status (completed, failed or rejected) and leaves out instances still in progress; error_rate is failed over finished; review figures count the reviews raised on those instances"

// kpiReport is a process's KPIs over a window: overall, per period of
// starts, and per definition version.
type kpiReport struct {
	Process string    `json:"process"`
	Version int       `json:"version,omitempty"`
	Since   time.Time `json:"since"`
	Until   time.Time `json:"until"`
	Note    string    `json:"note"`
	Overall kpis      `json:"overall"`
	// Periods are consecutive buckets of the window, oldest first.
	Periods []kpiPeriod `json:"periods"`
	// Versions are the definition versions started in the window.
	Versions []kpiVersion `json:"versions"`
	// PolicyChanges are the changes of the process's live policies in the
	// window, oldest first: compare the periods before and after each.
	PolicyChanges []store.PolicyChange `json:"policy_changes"`
	// Canaries compare, for each policy with a live canary, the instances
	// it applies to with the rest.
	Canaries []kpiCanary `json:"canaries"`
}

// kpiCanary compares the instances started since a policy's canary began
// (its last change, within the window) that the canary applies to with the
// rest: by assignment, whether or not a decision reached the policy.
type kpiCanary struct {
	PolicyID      string    `json:"policy_id"`
	ActiveVersion int       `json:"active_version,omitempty"`
	CanaryVersion int       `json:"canary_version"`
	Percent       int       `json:"percent"`
	Since         time.Time `json:"since"`
	Canary        kpis      `json:"canary"`
	Rest          kpis      `json:"rest"`
}

type kpiPeriod struct {
	Start time.Time `json:"start"`
	kpis
}

type kpiVersion struct {
	Version int `json:"version"`
	kpis
}

// kpis are the figures of a set of instances.
type kpis struct {
	Started    int `json:"started"`
	InProgress int `json:"in_progress"`
	// WaitingReview are the instances in progress that wait for a review.
	WaitingReview int `json:"waiting_review"`
	// WaitingEvent are the instances in progress whose event step waits
	// for another system's event.
	WaitingEvent int `json:"waiting_event"`
	Completed    int `json:"completed"`
	Rejected     int `json:"rejected"`
	Failed       int `json:"failed"`
	Canceled     int `json:"canceled"`
	// ErrorRate is failed over finished (0 when none finished); canceled
	// instances are not counted in.
	ErrorRate float64 `json:"error_rate"`
	// CycleTime is over the finished instances whose finish time is known;
	// nil when there are none.
	CycleTime *durationStats `json:"cycle_time_seconds"`
	// Review load: reviews raised, the share of instances with at least
	// one, reviews per instance, how they ended, and the mean wait of the
	// decided ones for their verdict.
	Reviews            int     `json:"reviews"`
	ReviewRate         float64 `json:"review_rate"`
	ReviewsPerInstance float64 `json:"reviews_per_instance"`
	ReviewsDecided     int     `json:"reviews_decided"`
	ReviewsExpired     int     `json:"reviews_expired"`
	ReviewWaitSeconds  float64 `json:"review_wait_seconds"`
	// SLA counts, among the instances of versions with an SLA, where they
	// stand against it at the end of the window; nil when none has one.
	SLA *slaFigures `json:"sla,omitempty"`
	// cycles are the cycle times summarized in CycleTime, sorted (seconds),
	// for the canary guards.
	cycles []float64
}

// slaFigures are where instances stand against their SLA: ended within
// it (met) or after it (missed), running within it or past it (overdue);
// MetRate is met over met and missed. Canceled instances have no
// standing.
type slaFigures struct {
	Met     int     `json:"met"`
	Missed  int     `json:"missed"`
	OnTrack int     `json:"on_track"`
	Overdue int     `json:"overdue"`
	MetRate float64 `json:"met_rate"`
}

// durationStats summarizes durations, in seconds.
type durationStats struct {
	Count int     `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// kpiAcc accumulates the kpis of instances.
type kpiAcc struct {
	k        kpis
	reviewed int
	wait     time.Duration
	cycles   []float64
	sla      *slaFigures
}

// add counts an instance's outcome, and where it stands against its SLA
// ("" for none).
func (a *kpiAcc) add(o store.InstanceOutcome, standing string) {
	if standing != "" {
		if a.sla == nil {
			a.sla = &slaFigures{}
		}
		switch standing {
		case store.SLAMet:
			a.sla.Met++
		case store.SLAMissed:
			a.sla.Missed++
		case store.SLAOnTrack:
			a.sla.OnTrack++
		case store.SLAOverdue:
			a.sla.Overdue++
		}
	}
	a.k.Started++
	switch o.Status {
	case store.InstanceCompleted:
		a.k.Completed++
	case store.InstanceRejected:
		a.k.Rejected++
	case store.InstanceFailed:
		a.k.Failed++
	case store.InstanceCanceled:
		a.k.Canceled++
	default:
		a.k.InProgress++
		switch o.Status {
		case workflows.StatusWaitingReview:
			a.k.WaitingReview++
		case workflows.StatusWaitingEvent:
			a.k.WaitingEvent++
		}
	}
	if !o.FinishedAt.IsZero() && o.Status != store.InstanceCanceled { // a cancel cuts the cycle short
		a.cycles = append(a.cycles, max(0, o.FinishedAt.Sub(o.CreatedAt).Seconds()))
	}
	a.k.Reviews += o.Reviews
	a.k.ReviewsDecided += o.Decided
	a.k.ReviewsExpired += o.Expired
	a.wait += o.ReviewWait
	if o.Reviews > 0 {
		a.reviewed++
	}
}

func (a *kpiAcc) figures() kpis {
	k := a.k
	if finished := k.Completed + k.Rejected + k.Failed; finished > 0 {
		k.ErrorRate = float64(k.Failed) / float64(finished)
	}
	if k.Started > 0 {
		k.ReviewRate = float64(a.reviewed) / float64(k.Started)
		k.ReviewsPerInstance = float64(k.Reviews) / float64(k.Started)
	}
	if k.ReviewsDecided > 0 {
		k.ReviewWaitSeconds = a.wait.Seconds() / float64(k.ReviewsDecided)
	}
	k.CycleTime = summarize(a.cycles)
	k.cycles = a.cycles
	if a.sla != nil {
		sla := *a.sla
		if ended := sla.Met + sla.Missed; ended > 0 {
			sla.MetRate = float64(sla.Met) / float64(ended)
		}
		k.SLA = &sla
	}
	return k
}

// summarize sorts xs and summarizes them (nearest-rank percentiles).
func summarize(xs []float64) *durationStats {
	if len(xs) == 0 {
		return nil
	}
	slices.Sort(xs)
	var sum float64
	for _, x := range xs {
		sum += x
	}
	rank := func(p float64) float64 { return xs[max(0, int(math.Ceil(p*float64(len(xs))))-1)] }
	return &durationStats{Count: len(xs), Mean: sum / float64(len(xs)), P50: rank(0.5), P90: rank(0.9), P99: rank(0.99), Max: xs[len(xs)-1]}
}

// windowParams reads the since and bucket query parameters (with their
// defaults): a report's window and the length of its periods.
func windowParams(c *gin.Context, window, bucket time.Duration) (time.Duration, time.Duration, error) {
	for _, q := range []struct {
		name string
		into *time.Duration
	}{{"since", &window}, {"bucket", &bucket}} {
		if v := c.Query(q.name); v != "" {
			d, err := process.ParseDuration(v)
			if err != nil || d <= 0 {
				return 0, 0, badRequest(q.name, "must be a duration such as 7d or 12h (got %q)", v)
			}
			*q.into = d
		}
	}
	if window/bucket > 366 {
		return 0, 0, badRequest("bucket", "makes more than 366 periods of the window; choose a longer one")
	}
	return window, bucket, nil
}

// processKPIs reports a process's cycle time, error rate and review load
// over a window, overall, per period and per definition version.
func (s *server) processKPIs(c *gin.Context) {
	window, bucket, err := windowParams(c, 30*24*time.Hour, 24*time.Hour)
	if err != nil {
		fail(c, err)
		return
	}
	def, _, version, ok := s.routeDefinition(c)
	if !ok {
		return
	}
	name := def.Name
	ctx := c.Request.Context()
	until := time.Now().UTC()
	states, err := s.Lifecycle.PolicyStates(ctx, name)
	if err != nil {
		fail(c, err)
		return
	}
	slas, err := s.processSLAs(ctx, name)
	if err != nil {
		fail(c, err)
		return
	}
	rep, err := computeKPIs(ctx, s.Instances, name, version, until.Add(-window), until, bucket, states, slas)
	if err == nil {
		rep.PolicyChanges, err = s.Lifecycle.PolicyChanges(ctx, name, rep.Since, until)
	}
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, rep)
}

// computeKPIs reads the outcomes of the instances of a process (of one
// definition version, unless 0) started in [since, until) and sums them up,
// splitting those of the policies with a live canary (among states) by
// whether the canary applies to them; slas (by version) say where each
// stands against its SLA at until.
func computeKPIs(ctx context.Context, st InstanceStore, name string, version int, since, until time.Time, bucket time.Duration, states []store.PolicyState, slas map[int]time.Duration) (kpiReport, error) {
	n := int((until.Sub(since) + bucket - 1) / bucket)
	var overall kpiAcc
	periods := make([]kpiAcc, n)
	versions := map[int]*kpiAcc{}
	type cohorts struct {
		st       store.PolicyState
		since    time.Time
		in, rest kpiAcc
	}
	var canaries []*cohorts
	for _, ps := range states {
		if ps.Shadow > 0 && ps.ShadowPercent > 0 {
			canaries = append(canaries, &cohorts{st: ps, since: maxTime(since, ps.ChangedAt)})
		}
	}
	err := st.Outcomes(ctx, name, since, until, func(o store.InstanceOutcome) error {
		if version != 0 && o.Version != version {
			return nil
		}
		standing := store.SLAStanding(slas[o.Version], o.Status, o.CreatedAt, o.FinishedAt, until)
		for _, c := range canaries {
			switch {
			case o.CreatedAt.Before(c.since):
			case policies.InCanary(o.ID, c.st.ID, c.st.ShadowPercent):
				c.in.add(o, standing)
			default:
				c.rest.add(o, standing)
			}
		}
		overall.add(o, standing)
		periods[min(n-1, int(o.CreatedAt.Sub(since)/bucket))].add(o, standing)
		if versions[o.Version] == nil {
			versions[o.Version] = &kpiAcc{}
		}
		versions[o.Version].add(o, standing)
		return nil
	})
	if err != nil {
		return kpiReport{}, err
	}
	rep := kpiReport{Process: name, Version: version, Since: since, Until: until, Note: kpiNote, Overall: overall.figures(),
		Periods: make([]kpiPeriod, n), Versions: []kpiVersion{}}
	for i := range periods {
		rep.Periods[i] = kpiPeriod{Start: since.Add(time.Duration(i) * bucket), kpis: periods[i].figures()}
	}
	for _, v := range slices.Sorted(maps.Keys(versions)) {
		rep.Versions = append(rep.Versions, kpiVersion{Version: v, kpis: versions[v].figures()})
	}
	rep.Canaries = make([]kpiCanary, 0, len(canaries))
	for _, c := range canaries {
		rep.Canaries = append(rep.Canaries, kpiCanary{PolicyID: c.st.ID, ActiveVersion: c.st.Active, CanaryVersion: c.st.Shadow, Percent: c.st.ShadowPercent,
			Since: c.since, Canary: c.in.figures(), Rest: c.rest.figures()})
	}
	return rep, nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
