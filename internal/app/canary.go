package app

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/adaptflow/adaptflow/api"
)

// canaryGuardEvery is how often the API judges guarded canaries.
const canaryGuardEvery = time.Minute

// runCanaryGuards judges the canaries that have a guard now and then until
// shutdown (see api.GuardCanaries), counting what the guards did in
// adaptflow_canary_verdicts_total and logging it. Every API replica
// judges; a canary is changed once, the others' changes being refused as
// made on a state that is gone.
func runCanaryGuards(ctx context.Context, lc *lifecycle, opts api.Options, every time.Duration, reg prometheus.Registerer) {
	if every <= 0 {
		every = canaryGuardEvery
	}
	verdicts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptflow_canary_verdicts_total",
		Help: "Canaries a guard rolled back or promoted, by process, policy and verdict (rolled_back, promoted).",
	}, []string{"process", "policy", "verdict"})
	reg.MustRegister(verdicts)
	runEvery(ctx, lc, "canary guard", every, every, func(ctx context.Context) {
		vs, err := api.GuardCanaries(ctx, opts, time.Now())
		for _, v := range vs {
			verdicts.WithLabelValues(v.Process, v.PolicyID, v.Verdict).Inc()
			log := opts.Logger.Info
			if v.Verdict == api.CanaryRolledBack {
				log = opts.Logger.Warn
			}
			log("canary guard", "process", v.Process, "policy", v.PolicyID, "version", v.Version, "verdict", v.Verdict, "why", v.Why)
		}
		if err != nil && ctx.Err() == nil {
			opts.Logger.Warn("canary guard", "err", err)
		}
	})
}
