package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/adaptflow/adaptflow/store"
)

// pruneEvery is how often a server with --store-retention prunes (the
// first time a minute after it starts, out of the way of its start).
const (
	pruneEvery = time.Hour
	pruneFirst = time.Minute
)

// pruner is what pruning needs of a store.
type pruner interface {
	Prune(ctx context.Context, before time.Time) (store.Pruned, error)
	PruneProcess(ctx context.Context, process string, before time.Time) (store.Pruned, error)
	Definitions(ctx context.Context) ([]store.DefinitionRecord, error)
}

// runPrunes prunes now and then until shutdown: each process whose latest
// definition has a retention, its own data older than that (see
// store.PruneProcess), then, with a store retention (0: none), what is
// older than it (see store.Prune); it counts the rows removed in
// adaptflow_pruned_rows_total. One API replica at a time prunes (see
// background).
func runPrunes(ctx context.Context, lc *lifecycle, bg *background, st pruner, retention time.Duration, lg *slog.Logger, reg prometheus.Registerer, first time.Duration) {
	rows := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptflow_pruned_rows_total",
		Help: "Rows removed from the store by pruning (--store-retention, or a definition's retention), by table.",
	}, []string{"table"})
	reg.MustRegister(rows)
	bg.start(ctx, lc, task{name: "prune", first: first, every: pruneEvery, run: func(ctx context.Context) error {
		start := time.Now()
		var n store.Pruned
		recs, err := st.Definitions(ctx)
		if err == nil {
			var plan store.PrunePlan
			if plan, err = store.RetentionPlan(recs, retention, start); err == nil {
				n, err = store.PruneByPlan(ctx, st, plan)
			}
		}
		for table, v := range map[string]int64{"instances": n.Instances, "decisions": n.Decisions, "reviews": n.Reviews,
			"verdicts": n.Verdicts, "observations": n.Observations, "audit_log": n.AuditEntries, "undelivered_webhooks": n.Webhooks} {
			rows.WithLabelValues(table).Add(float64(v))
		}
		switch {
		case err != nil && ctx.Err() == nil:
			lg.Warn("prune of the store failed; the next prune goes on", "retention", retention.String(), "err", err)
		case err == nil && n.Total() > 0:
			lg.Info("pruned the store", "retention", retention.String(), "instances", n.Instances, "decisions", n.Decisions, "reviews", n.Reviews,
				"verdicts", n.Verdicts, "observations", n.Observations, "audit_entries", n.AuditEntries, "webhooks", n.Webhooks, "took", time.Since(start).String())
		}
		return err
	}})
}
