package api

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
)

// CanaryGuardAuthor is who the policy changes a canary's guard makes are
// by, in a policy's history and the KPI report's policy changes.
const CanaryGuardAuthor = "canary-guard"

// Canary guard verdicts.
const (
	CanaryRolledBack = "rolled_back"
	CanaryPromoted   = "promoted"
)

// defaultGuardMinInstances is how many of a canary's instances must have
// finished before its guard judges it, unless the guard says.
const defaultGuardMinInstances = 20

// CanaryVerdict is what a guard did to a canary, and why.
type CanaryVerdict struct {
	Process  string
	PolicyID string
	Version  int
	Verdict  string // CanaryRolledBack or CanaryPromoted
	Why      string
}

// GuardCanaries judges every canary that has a guard, by the figures the
// KPI report shows for it (its instances against the rest, both started
// since it began): it rolls back a canary whose error rate or review rate
// exceeds the rest's by more than its guard allows, once enough of its
// instances have finished, and promotes one whose guard's promote_after
// has passed without that. The change is made only if the policy has not
// changed since it was read, so an engineer's change in the meantime
// stands. It returns what it did; an error of one canary does not keep
// the others from being judged.
func GuardCanaries(ctx context.Context, o Options, now time.Time) ([]CanaryVerdict, error) {
	o.defaults()
	if o.Lifecycle == nil || o.Instances == nil {
		return nil, errors.New("canary guard: no policy or instance store")
	}
	ids, err := o.Lifecycle.GuardedCanaries(ctx)
	if err != nil {
		return nil, fmt.Errorf("canary guard: %w", err)
	}
	var out []CanaryVerdict
	var errs []error
	for _, id := range ids {
		ps, err := o.Lifecycle.PolicyState(ctx, id)
		if err == nil && (ps.Guard == nil || ps.Shadow == 0 || ps.ShadowPercent == 0) {
			continue // ended since it was listed
		}
		var v *CanaryVerdict
		if err == nil {
			v, err = guardCanary(ctx, o, ps.Process, ps, now)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("canary guard of policy %s: %w", id, err))
		}
		if v != nil {
			out = append(out, *v)
		}
	}
	return out, errors.Join(errs...)
}

// guardCanary judges the canary of ps, and rolls it back or promotes it.
func guardCanary(ctx context.Context, o Options, name string, ps store.PolicyState, now time.Time) (*CanaryVerdict, error) {
	rep, err := computeKPIs(ctx, o.Instances, name, 0, ps.ChangedAt, now, max(now.Sub(ps.ChangedAt), time.Second), []store.PolicyState{ps})
	if err != nil {
		return nil, err
	}
	if len(rep.Canaries) != 1 {
		return nil, nil
	}
	c := rep.Canaries[0]
	verdict, why, err := judgeCanary(*ps.Guard, now.Sub(ps.ChangedAt), c.Canary, c.Rest)
	if err != nil || verdict == "" {
		return nil, err
	}
	mode, what := store.ModeShadow, fmt.Sprintf("canary v%d (%d%%) rolled back by its guard: %s; v%d stays as a shadow", ps.Shadow, ps.ShadowPercent, why, ps.Shadow)
	if verdict == CanaryPromoted {
		mode, what = store.ModeActive, fmt.Sprintf("canary v%d (%d%%) promoted by its guard: %s", ps.Shadow, ps.ShadowPercent, why)
	}
	_, err = o.Lifecycle.ChangePolicyMode(ctx, ps.ID, store.PolicyModeChange{Version: ps.Shadow, Mode: mode, Expect: &ps.ChangedAt, Author: CanaryGuardAuthor, Note: what})
	if errors.Is(err, store.ErrConflict) {
		return nil, nil // changed meanwhile: the next pass judges what is live then
	}
	if err != nil {
		return nil, err
	}
	return &CanaryVerdict{Process: name, PolicyID: ps.ID, Version: ps.Shadow, Verdict: verdict, Why: what}, nil
}

// judgeCanary is a guard's verdict on a canary that has run for age, from
// its figures and the rest's: CanaryRolledBack, CanaryPromoted, or "" to
// go on watching, with why in words.
func judgeCanary(g store.CanaryGuard, age time.Duration, canary, rest kpis) (string, string, error) {
	minimum := g.MinInstances
	if minimum <= 0 {
		minimum = defaultGuardMinInstances
	}
	finished := canary.Completed + canary.Rejected + canary.Failed
	if finished < minimum {
		return "", "", nil
	}
	restFinished := rest.Completed + rest.Rejected + rest.Failed
	if g.MaxErrorRateIncrease != nil && canary.ErrorRate-rest.ErrorRate > *g.MaxErrorRateIncrease+1e-9 {
		return CanaryRolledBack, fmt.Sprintf("error rate %s of %d finished instances against %s of the rest's %d, more than %s above",
			pct(canary.ErrorRate), finished, pct(rest.ErrorRate), restFinished, points(*g.MaxErrorRateIncrease)), nil
	}
	if g.MaxReviewRateIncrease != nil && canary.ReviewRate-rest.ReviewRate > *g.MaxReviewRateIncrease+1e-9 {
		return CanaryRolledBack, fmt.Sprintf("review rate %s of %d instances against %s of the rest's %d, more than %s above",
			pct(canary.ReviewRate), canary.Started, pct(rest.ReviewRate), rest.Started, points(*g.MaxReviewRateIncrease)), nil
	}
	if g.PromoteAfter == "" {
		return "", "", nil
	}
	after, err := process.ParseDuration(g.PromoteAfter)
	if err != nil {
		return "", "", fmt.Errorf("promote_after %q: %w", g.PromoteAfter, err)
	}
	if age < after {
		return "", "", nil
	}
	return CanaryPromoted, fmt.Sprintf("%s without a breach, %d of its instances finished (error rate %s against %s of the rest)",
		g.PromoteAfter, finished, pct(canary.ErrorRate), pct(rest.ErrorRate)), nil
}

func pct(x float64) string { return fmt.Sprintf("%.1f%%", 100*x) }

func points(x float64) string {
	return fmt.Sprintf("%g points", math.Round(1000*x)/10)
}
