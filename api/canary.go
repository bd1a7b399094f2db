package api

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
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

// judgeNow is the verdict of ps's guard on its canary at now (see
// judgeCanary), from the canary's instances and the rest's since it began.
func judgeNow(ctx context.Context, o Options, ps store.PolicyState, now time.Time) (string, string, error) {
	rep, err := computeKPIs(ctx, o.Instances, ps.Process, 0, ps.ChangedAt, now, max(now.Sub(ps.ChangedAt), time.Second), []store.PolicyState{ps}, nil)
	if err != nil {
		return "", "", err
	}
	if len(rep.Canaries) != 1 {
		return "", "no canary to judge", nil
	}
	c := rep.Canaries[0]
	return judgeCanary(*ps.Guard, now.Sub(ps.ChangedAt), c.Canary, c.Rest)
}

// canaryJudgment is what a canary's guard makes of it at a time, as the
// policy's page shows it: watching (with what it waits for), or about to
// roll it back or promote it (at its next pass, within a minute).
type canaryJudgment struct {
	Verdict string    `json:"verdict"`
	Why     string    `json:"why"`
	At      time.Time `json:"at"`
}

// judgment is judgeNow in the words of a canaryJudgment.
func judgment(ctx context.Context, o Options, ps store.PolicyState, now time.Time) (canaryJudgment, error) {
	verdict, why, err := judgeNow(ctx, o, ps, now)
	j := canaryJudgment{Verdict: "watching", Why: why, At: now.UTC()}
	switch verdict {
	case CanaryRolledBack:
		j.Verdict = "rolling_back"
	case CanaryPromoted:
		j.Verdict = "promoting"
	}
	return j, err
}

// guardCanary judges the canary of ps, and rolls it back or promotes it.
func guardCanary(ctx context.Context, o Options, name string, ps store.PolicyState, now time.Time) (*CanaryVerdict, error) {
	verdict, why, err := judgeNow(ctx, o, ps, now)
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
// go on watching, with why in words (for watching: what it waits for).
func judgeCanary(g store.CanaryGuard, age time.Duration, canary, rest kpis) (string, string, error) {
	minimum := g.MinInstances
	if minimum <= 0 {
		minimum = defaultGuardMinInstances
	}
	decideAfter, err := guardDuration("decide_after", g.DecideAfter)
	if err != nil {
		return "", "", err
	}
	finished := canary.Completed + canary.Rejected + canary.Failed
	if finished < minimum {
		if decideAfter > 0 && age >= decideAfter {
			return CanaryRolledBack, fmt.Sprintf("still unjudged %s after it began: %d of its instances finished, fewer than the %d it is judged on", g.DecideAfter, finished, minimum), nil
		}
		return "", fmt.Sprintf("%d of its instances have finished; it is judged once %d have%s", finished, minimum, decidedIn(g, decideAfter, age)), nil
	}
	restFinished := rest.Completed + rest.Rejected + rest.Failed
	var z float64 // the one-sided normal quantile of the confidence
	if g.Confidence > 0 {
		z = math.Sqrt2 * math.Erfinv(2*g.Confidence-1)
	}
	unsure := "" // a watched rate not yet shown to be within its bound
	for _, r := range []struct {
		what     string
		max      *float64
		c, r     float64
		nc, nr   int
		instance string
	}{
		{"error rate", g.MaxErrorRateIncrease, canary.ErrorRate, rest.ErrorRate, finished, restFinished, " finished instances"},
		{"review rate", g.MaxReviewRateIncrease, canary.ReviewRate, rest.ReviewRate, canary.Started, rest.Started, " instances"},
	} {
		if r.max == nil {
			continue
		}
		lo, hi := r.c-r.r, r.c-r.r
		if z > 0 {
			lo, hi = rateDifference(r.c, r.nc, r.r, r.nr, z)
		}
		if lo > *r.max+1e-9 {
			why := fmt.Sprintf("%s %s of %d%s against %s of the rest's %d, more than %s above",
				r.what, pct(r.c), r.nc, r.instance, pct(r.r), r.nr, points(*r.max))
			if z > 0 {
				why += fmt.Sprintf(" (at %s confidence, at least %s above)", pct(g.Confidence), points(lo))
			}
			return CanaryRolledBack, why, nil
		}
		if hi > *r.max+1e-9 && unsure == "" {
			unsure = r.what
		}
	}
	if g.MaxCycleTimeIncrease != nil && len(canary.cycles) > 0 && len(rest.cycles) > 0 {
		verdict, why := judgeCycleTimes(*g.MaxCycleTimeIncrease, z, canary.cycles, rest.cycles)
		switch {
		case verdict > 0:
			if z > 0 {
				why += fmt.Sprintf(" (at %s confidence)", pct(g.Confidence))
			}
			return CanaryRolledBack, why, nil
		case verdict == 0 && unsure == "":
			unsure = "cycle time"
		}
	}
	within := fmt.Sprintf("within its bounds, %d of its instances finished", finished)
	if unsure != "" {
		within = fmt.Sprintf("no breach shown, but its %s is not yet shown within its bound at %s confidence (%d of its instances finished)", unsure, pct(g.Confidence), finished)
	}
	if unsure != "" && decideAfter > 0 && age >= decideAfter {
		return CanaryRolledBack, fmt.Sprintf("still unjudged %s after it began: no breach shown, but its %s is not shown within its bound at %s confidence (%d of its instances finished)",
			g.DecideAfter, unsure, pct(g.Confidence), finished), nil
	}
	if unsure != "" {
		within += decidedIn(g, decideAfter, age)
	}
	if g.PromoteAfter == "" {
		return "", within + "; it is promoted by hand", nil
	}
	after, err := guardDuration("promote_after", g.PromoteAfter)
	if err != nil {
		return "", "", err
	}
	if age < after {
		return "", fmt.Sprintf("%s; promoted in %s, %s after it began", within, roughly(after-age), g.PromoteAfter), nil
	}
	if unsure != "" {
		return "", within + "; promoted once it is shown", nil
	}
	why := fmt.Sprintf("%s without a breach, %d of its instances finished (error rate %s against %s of the rest)",
		g.PromoteAfter, finished, pct(canary.ErrorRate), pct(rest.ErrorRate))
	if z > 0 {
		why += fmt.Sprintf("; within the allowed increase at %s confidence", pct(g.Confidence))
	}
	return CanaryPromoted, why, nil
}

// guardDuration reads a duration of a guard: 0 when it is not set.
func guardDuration(name, d string) (time.Duration, error) {
	if d == "" {
		return 0, nil
	}
	v, err := process.ParseDuration(d)
	if err != nil {
		return 0, fmt.Errorf("%s %q: %w", name, d, err)
	}
	return v, nil
}

// decidedIn says when a canary still unjudged is rolled back, if its
// guard bounds the wait.
func decidedIn(g store.CanaryGuard, decideAfter, age time.Duration) string {
	if decideAfter <= 0 {
		return ""
	}
	return fmt.Sprintf("; rolled back if still unjudged in %s, %s after it began", roughly(decideAfter-age), g.DecideAfter)
}

// judgeCycleTimes compares the canary's cycle times with the rest's made
// longer by the allowed increase: 1 when the canary's are longer (a
// breach, with why in words), -1 when they are not (shown, at quantile
// z), 0 when that is not shown. With no confidence (z 0) it compares the
// medians. With one, it is a one-sided Mann-Whitney test of the canary's
// times against the rest's times scaled by 1+increase (normal
// approximation, ties at mid-ranks): cycle times are skewed and long
// tailed, so ranks, not means.
func judgeCycleTimes(increase, z float64, canary, rest []float64) (int, string) {
	median := func(xs []float64) float64 { n := len(xs); return (xs[(n-1)/2] + xs[n/2]) / 2 }
	mc, mr := median(canary), median(rest)
	why := fmt.Sprintf("median cycle time %s of %d finished instances against %s of the rest's %d, more than %s longer",
		seconds(mc), len(canary), seconds(mr), len(rest), pctShort(increase))
	if z <= 0 {
		if mc > mr*(1+increase)+1e-9 {
			return 1, why
		}
		return -1, ""
	}
	switch u := mannWhitneyZ(canary, rest, 1+increase); {
	case u > z:
		return 1, why
	case u < -z:
		return -1, ""
	}
	return 0, ""
}

// mannWhitneyZ is the z-score of the Mann-Whitney U of xs against ys
// scaled by k (both sorted ascending): positive when xs tend to be the
// larger.
func mannWhitneyZ(xs, ys []float64, k float64) float64 {
	n1, n2 := float64(len(xs)), float64(len(ys))
	// U of xs: for each x, the ys below it, and half those equal.
	var u float64
	lo, hi := 0, 0
	for _, x := range xs {
		for lo < len(ys) && ys[lo]*k < x {
			lo++
		}
		hi = max(hi, lo)
		for hi < len(ys) && ys[hi]*k <= x {
			hi++
		}
		u += float64(lo) + float64(hi-lo)/2
	}
	sd := math.Sqrt(n1 * n2 * (n1 + n2 + 1) / 12)
	if sd == 0 {
		return 0
	}
	return (u - n1*n2/2) / sd
}

// roughly is d in days, hours and minutes (2d 3h, 1h 5m, 59m).
func roughly(d time.Duration) string {
	d = d.Round(time.Minute)
	days, hours, minutes := d/(24*time.Hour), d%(24*time.Hour)/time.Hour, d%time.Hour/time.Minute
	var parts []string
	if days > 0 {
		parts = append(parts, fmt.Sprintf("%dd", days))
	}
	if hours > 0 {
		parts = append(parts, fmt.Sprintf("%dh", hours))
	}
	if minutes > 0 && days == 0 {
		parts = append(parts, fmt.Sprintf("%dm", minutes))
	}
	if len(parts) == 0 {
		return "under a minute"
	}
	return strings.Join(parts, " ")
}

func seconds(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(time.Second).String()
}

func pctShort(x float64) string { return fmt.Sprintf("%g%%", math.Round(1000*x)/10) }

// rateDifference is the interval of the difference of two rates, p1 of n1
// and p2 of n2, whose each bound holds with the one-sided confidence of
// the normal quantile z: Newcombe's hybrid score interval, built from the
// Wilson intervals of the two rates, which stays sound for rates near 0
// and for small samples (a rate of no sample is anywhere in [0, 1]).
func rateDifference(p1 float64, n1 int, p2 float64, n2 int, z float64) (lo, hi float64) {
	l1, u1 := wilson(p1, n1, z)
	l2, u2 := wilson(p2, n2, z)
	d := p1 - p2
	return d - math.Hypot(p1-l1, u2-p2), d + math.Hypot(u1-p1, p2-l2)
}

// wilson is the Wilson score interval of a rate p of n at quantile z.
func wilson(p float64, n int, z float64) (lo, hi float64) {
	if n <= 0 {
		return 0, 1
	}
	nf, z2 := float64(n), z*z
	centre := (p + z2/(2*nf)) / (1 + z2/nf)
	half := z / (1 + z2/nf) * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf))
	return max(0, centre-half), min(1, centre+half)
}

func pct(x float64) string { return fmt.Sprintf("%.1f%%", 100*x) }

func points(x float64) string {
	return fmt.Sprintf("%g points", math.Round(1000*x)/10)
}
