package app

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/adaptflow/adaptflow/api"
)

// scheduleEvery is how often the API starts what the processes' schedules
// are due for: a start comes at most this late.
const scheduleEvery = 10 * time.Second

// runSchedules starts the instances the schedules of the latest process
// definitions are due for, now and then until shutdown (see
// api.Scheduler), in one API replica at a time (see background).
func runSchedules(ctx context.Context, lc *lifecycle, bg *background, opts api.Options, every time.Duration, reg prometheus.Registerer) {
	if every <= 0 {
		every = scheduleEvery
	}
	starts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptflow_scheduled_starts_total",
		Help: "Instances the processes' schedules started, by process and schedule.",
	}, []string{"process", "schedule"})
	reg.MustRegister(starts)
	sc := api.NewScheduler(opts)
	bg.start(ctx, lc, task{name: "scheduler", every: every, run: func(ctx context.Context) error {
		started, err := sc.Run(ctx, time.Now())
		for _, s := range started {
			starts.WithLabelValues(s.Process, s.Schedule).Inc()
			opts.Logger.Info("scheduled start", "process", s.Process, "schedule", s.Schedule, "instance", s.InstanceID, "due", s.Due)
		}
		if err != nil && ctx.Err() == nil {
			opts.Logger.Warn("scheduled starts; the next pass tries again", "err", err)
		}
		return err
	}})
}
