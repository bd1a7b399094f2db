package app

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/adaptflow/adaptflow/store"
)

// leaser is what the background tasks need of a store: a lease per task,
// so that one replica at a time runs it.
type leaser interface {
	TakeLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (store.Lease, error)
	ReleaseLease(ctx context.Context, name, holder string) error
	LiveLeases(ctx context.Context, prefix string, now time.Time) ([]store.Lease, error)
	clockSource
}

// task is a background task of the API: the sweeps, the canary guards,
// pruning. Every replica schedules it; the one that holds its lease runs
// it.
type task struct {
	// name names the task's lease, its metrics and its logs.
	name string
	// first is the wait before the first run, every the wait after each.
	first, every time.Duration
	// ttl is how long a lease lasts unrenewed: how soon another replica
	// takes over from one that died (default leaseTTL(every)).
	ttl time.Duration
	run func(ctx context.Context) error
}

// leaseTTL is how long a task's lease lasts unrenewed: twice its interval
// and half a minute, so that a replica's late tick does not hand the task
// on, and one that died does within that time.
func leaseTTL(every time.Duration) time.Duration { return 2*every + 30*time.Second }

// background runs the API's background tasks under leases held as holder.
type background struct {
	leases leaser
	holder string
	logger *slog.Logger

	// storeClock is the time the leases go by.
	*storeClock

	leader   *prometheus.GaugeVec
	lastOK   *prometheus.GaugeVec
	interval *prometheus.GaugeVec
	runs     *prometheus.CounterVec
	replicas prometheus.Gauge
}

func newBackground(leases leaser, holder string, lg *slog.Logger, reg prometheus.Registerer) *background {
	b := &background{
		leases: leases, holder: holder, logger: lg, storeClock: newStoreClock(leases, lg),
		leader: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "adaptflow_background_task_leader",
			Help: "1 when this replica holds the lease of a background task (it runs it), else 0.",
		}, []string{"task"}),
		lastOK: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "adaptflow_background_task_last_success_timestamp_seconds",
			Help: "When a background task last ran to the end without error in this replica (Unix seconds).",
		}, []string{"task"}),
		interval: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "adaptflow_background_task_interval_seconds",
			Help: "How often a background task runs.",
		}, []string{"task"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "adaptflow_background_task_runs_total",
			Help: "Runs of a background task in this replica, by outcome (ok, failed).",
		}, []string{"task", "outcome"}),
		replicas: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "adaptflow_api_replicas",
			Help: "The API replicas this one counts as live in the store; they share each key's rate limit.",
		}),
	}
	reg.MustRegister(b.leader, b.lastOK, b.interval, b.runs, b.replicas)
	return b
}

// replicaName names this process among the API replicas: its host name
// (a pod's name in Kubernetes) and the address its API listens on. It
// stays the same when the process restarts in place (a container
// restarted in its pod, adaptflow dev run again), so that it takes its
// leases back at once rather than wait for them to expire.
func replicaName(listen string) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "adaptflow"
	}
	return host + "/" + listen
}

// start runs tk after tk.first, then every tk.every after each run ends,
// in this replica whenever it holds tk's lease, until shutdown, which
// waits for a run under way and gives the lease up for another replica
// to take at once (lc stops it as tk.name).
func (b *background) start(ctx context.Context, lc *lifecycle, tk task) {
	if tk.ttl <= 0 {
		tk.ttl = leaseTTL(tk.every)
	}
	b.interval.WithLabelValues(tk.name).Set(tk.every.Seconds())
	b.leader.WithLabelValues(tk.name).Set(0)
	held := false
	// Added before the loop, so run after it has stopped.
	lc.add(tk.name+" lease", func(ctx context.Context) error {
		if !held {
			return nil
		}
		return b.release(ctx, tk.name)
	})
	runEvery(ctx, lc, tk.name, tk.first, tk.every, func(ctx context.Context) {
		now := b.now(ctx)
		l, err := b.leases.TakeLease(ctx, tk.name, b.holder, now, tk.ttl)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				b.logger.Warn("background task: its lease cannot be read; the task waits for the next turn", "task", tk.name, "err", err)
			}
			return
		case !l.HeldBy(b.holder, now):
			if held {
				b.logger.Info("background task handed on to another replica", "task", tk.name, "holder", l.Holder)
			}
			held = false
			b.leader.WithLabelValues(tk.name).Set(0)
			return
		case !held:
			b.logger.Info("background task runs in this replica", "task", tk.name, "replica", b.holder)
		}
		held = true
		b.leader.WithLabelValues(tk.name).Set(1)
		if err := b.runHeld(ctx, tk); err != nil {
			b.runs.WithLabelValues(tk.name, "failed").Inc()
			return
		}
		b.runs.WithLabelValues(tk.name, "ok").Inc()
		b.lastOK.WithLabelValues(tk.name).SetToCurrentTime()
	})
}

// runHeld runs tk while renewing its lease every third of its time; a
// renewal that finds another holder (this replica stalled past the
// lease) stops the run.
func (b *background) runHeld(ctx context.Context, tk task) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	done := make(chan struct{})
	defer close(done)
	wg.Go(func() {
		tick := time.NewTicker(tk.ttl / 3)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			now := b.now(ctx)
			l, err := b.leases.TakeLease(ctx, tk.name, b.holder, now, tk.ttl)
			if err == nil && !l.HeldBy(b.holder, now) {
				b.logger.Warn("background task lost its lease while it ran; stopped", "task", tk.name, "holder", l.Holder)
				cancel()
				return
			}
		}
	})
	return tk.run(ctx)
}

// release gives up this replica's lease name as it stops: within 5 s,
// even though ctx (the shutdown's) may be ending.
func (b *background) release(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return b.leases.ReleaseLease(ctx, name, b.holder)
}

// replicaEvery is how often an API replica says in the store that it is
// alive, and counts the replicas that have.
const replicaEvery = 10 * time.Second

// replicaLeases prefixes the leases by which API replicas say they are
// alive: "replica/" and the replica's name.
const replicaLeases = "replica/"

// countReplicas keeps this replica's lease "replica/NAME" renewed every
// interval (replicaEvery unless given; it lasts three) and tells share how
// many replicas hold one: they share each key's rate limit. It gives the
// lease up when the replica stops, so the others count it out at once; one
// that dies is counted out when its lease expires. While the store does not
// answer, the last count stands.
func (b *background) countReplicas(ctx context.Context, lc *lifecycle, every time.Duration, share func(n int)) {
	if every <= 0 {
		every = replicaEvery
	}
	name := replicaLeases + b.holder
	// Added before the loop, so run after it has stopped.
	lc.add("replica lease", func(ctx context.Context) error { return b.release(ctx, name) })
	last := 0
	runEvery(ctx, lc, "replica count", 0, every, func(ctx context.Context) {
		now := b.now(ctx)
		_, err := b.leases.TakeLease(ctx, name, b.holder, now, 3*every)
		var live []store.Lease
		if err == nil {
			live, err = b.leases.LiveLeases(ctx, replicaLeases, now)
		}
		if err != nil {
			if ctx.Err() == nil {
				b.logger.Warn("API replicas cannot be counted; the last count stands", "replicas", max(1, last), "err", err)
			}
			return
		}
		n := max(1, len(live))
		if n != last {
			b.logger.Info("API replicas share each key's rate limit", "replicas", n)
			last = n
		}
		b.replicas.Set(float64(n))
		share(n)
	})
}
