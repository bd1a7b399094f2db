package api

import (
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
	for _, tc := range []struct {
		name         string
		guard        store.CanaryGuard
		age          time.Duration
		canary, rest kpis
		want, why    string
	}{
		{"too few finished", store.CanaryGuard{MaxErrorRateIncrease: f(0), MinInstances: 10}, time.Hour, figures(30, 5, 4, 0), figures(90, 90, 0, 0), "", ""},
		{"error rate within", store.CanaryGuard{MaxErrorRateIncrease: f(0.1), MinInstances: 10}, time.Hour, figures(20, 18, 2, 0), figures(90, 90, 0, 0), "", ""},
		{"error rate above", store.CanaryGuard{MaxErrorRateIncrease: f(0.05), MinInstances: 10}, time.Hour, figures(20, 18, 2, 0), figures(90, 90, 0, 0), CanaryRolledBack, "error rate 10.0% of 20 finished instances against 0.0% of the rest's 90, more than 5 points above"},
		{"review rate above", store.CanaryGuard{MaxReviewRateIncrease: f(0.2), MinInstances: 10}, time.Hour, figures(20, 20, 0, 0.5), figures(90, 90, 0, 0.1), CanaryRolledBack, "review rate 50.0% of 20 instances against 10.0% of the rest's 90"},
		{"promoted in time", store.CanaryGuard{MaxErrorRateIncrease: f(0.05), MinInstances: 10, PromoteAfter: "1d"}, 25 * time.Hour, figures(20, 20, 0, 0), figures(90, 89, 1, 0), CanaryPromoted, "1d without a breach"},
		{"not yet", store.CanaryGuard{MinInstances: 10, PromoteAfter: "1d"}, 23 * time.Hour, figures(20, 20, 0, 0), figures(90, 90, 0, 0), "", ""},
		// With a confidence, the rates are samples: 2 failures of 20 may be
		// chance against none of 90, 20 of 100 against 8 of 400 is not.
		{"a breach that may be chance", store.CanaryGuard{MaxErrorRateIncrease: f(0.05), MinInstances: 10, Confidence: 0.95}, time.Hour, figures(20, 18, 2, 0), figures(90, 90, 0, 0), "", ""},
		{"a breach shown", store.CanaryGuard{MaxErrorRateIncrease: f(0.05), MinInstances: 10, Confidence: 0.95}, time.Hour, figures(100, 80, 20, 0), figures(400, 392, 8, 0), CanaryRolledBack,
			"error rate 20.0% of 100 finished instances against 2.0% of the rest's 400, more than 5 points above (at 95.0% confidence, at least 12.1 points above)"},
		{"a review rate shown above", store.CanaryGuard{MaxReviewRateIncrease: f(0.2), MinInstances: 10, Confidence: 0.95}, time.Hour, figures(20, 20, 0, 0.5), figures(90, 90, 0, 0.1), CanaryRolledBack, "at least 21.6 points above"},
		{"not yet shown within to promote", store.CanaryGuard{MaxErrorRateIncrease: f(0.05), MinInstances: 10, PromoteAfter: "1d", Confidence: 0.95}, 25 * time.Hour, figures(20, 20, 0, 0), figures(90, 89, 1, 0), "", ""},
		{"shown within, promoted", store.CanaryGuard{MaxErrorRateIncrease: f(0.05), MinInstances: 10, PromoteAfter: "1d", Confidence: 0.95}, 25 * time.Hour, figures(400, 398, 2, 0), figures(1600, 1590, 10, 0), CanaryPromoted, "within the allowed increase at 95.0% confidence"},
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
