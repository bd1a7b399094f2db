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
// adaptflow_canary_verdicts_total and logging it. One API replica at a
// time judges (see background); were two to, a canary would still change once,
// the other change being refused as made on a state that is gone.
func runCanaryGuards(ctx context.Context, lc *lifecycle, bg *background, opts api.Options, every time.Duration, reg prometheus.Registerer) {
	if every <= 0 {
		every = canaryGuardEvery
	}
	verdicts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptflow_canary_verdicts_total",
		Help: "Canaries a guard rolled back or promoted, by process, policy and verdict (rolled_back, promoted).",
	}, []string{"process", "policy", "verdict"})
	reg.MustRegister(verdicts)
	bg.start(ctx, lc, task{name: "canary_guard", first: every, every: every, run: func(ctx context.Context) error {
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
		return err
	}})
}
