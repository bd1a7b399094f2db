package api

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/store"
)

func TestJudgeCanary(t *testing.T) {
	f := func(x float64) *float64 { return &x }
	figures := func(started, completed, failed int, reviewRate float64) kpis {
		k := kpis{Started: started, Completed: completed, Failed: failed, ReviewRate: reviewRate}
		if completed+failed > 0 {
			k.ErrorRate = float64(failed) / float64(completed+failed)
		}
		return k
	}
	// timed gives figures cycle times; spread makes n of them around a
	// median, from half to one and a half times it, as skewed processes
	// are not but a rank test does not mind.
	timed := func(k kpis, cycles []float64) kpis { k.cycles = cycles; return k }
	spread := func(median float64, n int) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = median * (0.5 + float64(i)/float64(max(1, n-1)))
		}
		return out
	}
	for _, tc := range []struct {
		name         string
		guard        store.CanaryGuard
		age          time.Duration
		canary, rest kpis
		want, why    string
	}{
		{"too few finished", store.CanaryGuard{MaxErrorRateIncrease: f(0), MinInstances: 10}, time.Hour, figures(30, 5, 4, 0), figures(90, 90, 0, 0), "", "9 of its instances have finished; it is judged once 10 have"},
		{"error rate within", store.CanaryGuard{MaxErrorRateIncrease: f(0.1), MinInstances: 10}, time.Hour, figures(20, 18, 2, 0), figures(90, 90, 0, 0), "", "within its bounds, 20 of its instances finished; it is promoted by hand"},
		{"error rate above", store.CanaryGuard{MaxErrorRateIncrease: f(0.05), MinInstances: 10}, time.Hour, figures(20, 18, 2, 0), figures(90, 90, 0, 0), CanaryRolledBack, "error rate 10.0% of 20 finished instances against 0.0% of the rest's 90, more than 5 points above"},
		{"review rate above", store.CanaryGuard{MaxReviewRateIncrease: f(0.2), MinInstances: 10}, time.Hour, figures(20, 20, 0, 0.5), figures(90, 90, 0, 0.1), CanaryRolledBack, "review rate 50.0% of 20 instances against 10.0% of the rest's 90"},
		{"promoted in time", store.CanaryGuard{MaxErrorRateIncrease: f(0.05), MinInstances: 10, PromoteAfter: "1d"}, 25 * time.Hour, figures(20, 20, 0, 0), figures(90, 89, 1, 0), CanaryPromoted, "1d without a breach"},
		{"not yet", store.CanaryGuard{MinInstances: 10, PromoteAfter: "1d"}, 23 * time.Hour, figures(20, 20, 0, 0), figures(90, 90, 0, 0), "", "within its bounds, 20 of its instances finished; promoted in 1h, 1d after it began"},
		// With a confidence, the rates are samples: 2 failures of 20 may be
		// chance against none of 90, 20 of 100 against 8 of 400 is not.
		{"a breach that may be chance", store.CanaryGuard{MaxErrorRateIncrease: f(0.05), MinInstances: 10, Confidence: 0.95}, time.Hour, figures(20, 18, 2, 0), figures(90, 90, 0, 0), "", ""},
		{"a breach shown", store.CanaryGuard{MaxErrorRateIncrease: f(0.05), MinInstances: 10, Confidence: 0.95}, time.Hour, figures(100, 80, 20, 0), figures(400, 392, 8, 0), CanaryRolledBack,
			"error rate 20.0% of 100 finished instances against 2.0% of the rest's 400, more than 5 points above (at 95.0% confidence, at least 12.1 points above)"},
		{"a review rate shown above", store.CanaryGuard{MaxReviewRateIncrease: f(0.2), MinInstances: 10, Confidence: 0.95}, time.Hour, figures(20, 20, 0, 0.5), figures(90, 90, 0, 0.1), CanaryRolledBack, "at least 21.6 points above"},
		{"not yet shown within to promote", store.CanaryGuard{MaxErrorRateIncrease: f(0.05), MinInstances: 10, PromoteAfter: "1d", Confidence: 0.95}, 25 * time.Hour, figures(20, 20, 0, 0), figures(90, 89, 1, 0), "", "its error rate is not yet shown within its bound at 95.0% confidence (20 of its instances finished); promoted once it is shown"},
		{"shown within, promoted", store.CanaryGuard{MaxErrorRateIncrease: f(0.05), MinInstances: 10, PromoteAfter: "1d", Confidence: 0.95}, 25 * time.Hour, figures(400, 398, 2, 0), figures(1600, 1590, 10, 0), CanaryPromoted, "within the allowed increase at 95.0% confidence"},
		// Cycle times: the medians without a confidence, their ranks with one.
		{"cycle time above", store.CanaryGuard{MaxCycleTimeIncrease: f(0.2), MinInstances: 10}, time.Hour, timed(figures(20, 20, 0, 0), spread(300, 20)), timed(figures(90, 90, 0, 0), spread(200, 90)), CanaryRolledBack,
			"median cycle time 5m0s of 20 finished instances against 3m20s of the rest's 90, more than 20% longer"},
		{"cycle time within", store.CanaryGuard{MaxCycleTimeIncrease: f(0.2), MinInstances: 10, PromoteAfter: "1d"}, 25 * time.Hour, timed(figures(20, 20, 0, 0), spread(230, 20)), timed(figures(90, 90, 0, 0), spread(200, 90)), CanaryPromoted, "1d without a breach"},
		{"cycle time shown above", store.CanaryGuard{MaxCycleTimeIncrease: f(0.2), MinInstances: 10, Confidence: 0.95}, time.Hour, timed(figures(30, 30, 0, 0), spread(400, 30)), timed(figures(90, 90, 0, 0), spread(200, 90)), CanaryRolledBack, "more than 20% longer (at 95.0% confidence)"},
		{"cycle time above by chance", store.CanaryGuard{MaxCycleTimeIncrease: f(0.2), MinInstances: 10, Confidence: 0.95}, time.Hour, timed(figures(12, 12, 0, 0), spread(260, 12)), timed(figures(90, 90, 0, 0), spread(200, 90)), "", ""},
		{"cycle time not yet shown within", store.CanaryGuard{MaxCycleTimeIncrease: f(0.2), MinInstances: 10, PromoteAfter: "1d", Confidence: 0.95}, 25 * time.Hour, timed(figures(12, 12, 0, 0), spread(230, 12)), timed(figures(90, 90, 0, 0), spread(200, 90)), "", ""},
		{"cycle time shown within", store.CanaryGuard{MaxCycleTimeIncrease: f(0.2), MinInstances: 10, PromoteAfter: "1d", Confidence: 0.95}, 25 * time.Hour, timed(figures(90, 90, 0, 0), spread(200, 90)), timed(figures(90, 90, 0, 0), spread(200, 90)), CanaryPromoted, "1d without a breach"},
		// decide_after bounds the wait: too few finished, or a figure not
		// shown either way, rolls the canary back then.
		{"too few finished, decided later", store.CanaryGuard{MaxErrorRateIncrease: f(0), MinInstances: 10, DecideAfter: "7d"}, 3 * 24 * time.Hour, figures(30, 5, 4, 0), figures(90, 90, 0, 0), "",
			"9 of its instances have finished; it is judged once 10 have; rolled back if still unjudged in 4d, 7d after it began"},
		{"too few finished by decide_after", store.CanaryGuard{MaxErrorRateIncrease: f(0), MinInstances: 10, DecideAfter: "7d"}, 7 * 24 * time.Hour, figures(30, 5, 4, 0), figures(90, 90, 0, 0), CanaryRolledBack,
			"still unjudged 7d after it began: 9 of its instances finished, fewer than the 10 it is judged on"},
		{"not shown within, decided later", store.CanaryGuard{MaxErrorRateIncrease: f(0.05), MinInstances: 10, PromoteAfter: "1d", DecideAfter: "3d", Confidence: 0.95}, 25 * time.Hour, figures(20, 20, 0, 0), figures(90, 89, 1, 0), "",
			"(20 of its instances finished); rolled back if still unjudged in 1d 23h, 3d after it began; promoted once it is shown"},
		{"not shown within by decide_after", store.CanaryGuard{MaxErrorRateIncrease: f(0.05), MinInstances: 10, PromoteAfter: "1d", DecideAfter: "3d", Confidence: 0.95}, 72 * time.Hour, figures(20, 20, 0, 0), figures(90, 89, 1, 0), CanaryRolledBack,
			"still unjudged 3d after it began: no breach shown, but its error rate is not shown within its bound at 95.0% confidence (20 of its instances finished)"},
		{"shown within: decide_after does not apply", store.CanaryGuard{MaxErrorRateIncrease: f(0.05), MinInstances: 10, DecideAfter: "3d", Confidence: 0.95}, 96 * time.Hour, figures(400, 398, 2, 0), figures(1600, 1590, 10, 0), "",
			"within its bounds, 400 of its instances finished; it is promoted by hand"},
		{"a breach rather than a promotion", store.CanaryGuard{MaxErrorRateIncrease: f(0), MinInstances: 10, PromoteAfter: "1h"}, 25 * time.Hour, figures(20, 19, 1, 0), figures(90, 90, 0, 0), CanaryRolledBack, "error rate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, why, err := judgeCanary(tc.guard, tc.age, tc.canary, tc.rest)
			if err != nil || got != tc.want || !strings.Contains(why, tc.why) {
				t.Fatalf("got %q (%s), %v; want %q (%s)", got, why, err, tc.want, tc.why)
			}
		})
	}
}

// mannWhitneyZ: U counts, for each of xs, the ys below it and half of
// those equal (U of [1 2 3] against [2 4] is 1.5, as scipy's
// mannwhitneyu has it); scaling ys moves them.
func TestMannWhitneyZ(t *testing.T) {
	for _, tc := range []struct {
		xs, ys  []float64
		k, want float64
	}{
		{[]float64{1, 2, 3}, []float64{2, 4}, 1, (1.5 - 3) / math.Sqrt(3)},
		{[]float64{1, 2, 3}, []float64{1, 2}, 2, (1.5 - 3) / math.Sqrt(3)}, // ys as 2 and 4
		{[]float64{5, 6}, []float64{1, 2, 3}, 1, (6 - 3) / math.Sqrt(3)},
	} {
		if got := mannWhitneyZ(tc.xs, tc.ys, tc.k); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("%v against %v×%g: z %g, want %g", tc.xs, tc.ys, tc.k, got, tc.want)
		}
	}
}
