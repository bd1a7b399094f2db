package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
	namespacepb "go.temporal.io/api/namespace/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/adaptflow/adaptflow/activities"
	"github.com/adaptflow/adaptflow/api"
	"github.com/adaptflow/adaptflow/examples"
	"github.com/adaptflow/adaptflow/internal/sdkmetrics"
	"github.com/adaptflow/adaptflow/internal/temporalserver"
	"github.com/adaptflow/adaptflow/internal/tracing"
	"github.com/adaptflow/adaptflow/ml/classify"
	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/store/postgres"
	"github.com/adaptflow/adaptflow/store/sqlite"
	"github.com/adaptflow/adaptflow/workflows"
)

// Mode selects which parts run in this process.
type Mode int

// The modes of the binary.
const (
	ModeDev    Mode = iota // embedded Temporal, worker and API
	ModeServer             // API against an external Temporal
	ModeWorker             // worker against an external Temporal
)

func (m Mode) String() string {
	switch m {
	case ModeDev:
		return "dev"
	case ModeServer:
		return "server"
	case ModeWorker:
		return "worker"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// Run runs the parts of mode until ctx is cancelled, then stops them in
// reverse order of start.
func Run(ctx context.Context, mode Mode, opts Options) (err error) {
	if err := opts.validate(); err != nil {
		return err
	}
	if mode == ModeDev && opts.StoreRetention > 0 && opts.StoreRetention < opts.Retention {
		// An instance pruned from the store could not be retried, though
		// Temporal still keeps its history.
		return fmt.Errorf("--store-retention: must be at least --retention (%s), how long Temporal keeps finished workflows (got %s)", opts.Retention, opts.StoreRetention)
	}
	lg := opts.Logger
	lc := &lifecycle{logger: lg}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opts.ShutdownTimeout)
		defer cancel()
		err = errors.Join(err, lc.stop(sctx))
	}()

	if mode == ModeDev && opts.DataDir != "" {
		unlock, err := lockDataDir(opts.DataDir, opts.Listen)
		if err != nil {
			return err
		}
		lc.add("data directory lock", func(context.Context) error { return unlock() })
	}
	st, err := openStore(ctx, opts)
	if err != nil {
		return err
	}
	lc.add("store", func(context.Context) error { return st.Close() })
	if s, ok := st.(*sqlite.Store); ok && mode == ModeDev && opts.DataDir != "" && opts.DatabaseURL == "" {
		// The data directory is this process's (locked above), and so is
		// its store: its leases are an earlier run's (one that crashed, or
		// a backup's), held by nobody. Waiting for them to expire would
		// hold the sweeps up for a minute or more.
		n, err := s.ClearLeases(ctx)
		if err != nil {
			return err
		}
		if n > 0 {
			lg.Info("leases of an earlier run cleared: this data directory's store is this process's", "leases", n)
		}
	}
	// Claims on reviews and retries, and the background tasks' leases, go
	// by the store's clock, measured now and then every minute.
	clock := newStoreClock(st, lg)
	clock.now(ctx)

	env, err := policies.NewEnv()
	if err != nil {
		return err
	}
	cal, err := loadCalendar(opts.CalendarFile)
	if err != nil {
		return err
	}

	if mode == ModeDev {
		if err := os.MkdirAll(opts.DataDir, 0o755); err != nil {
			return fmt.Errorf("--data-dir: %w", err)
		}
		srv, err := temporalserver.Start(ctx, temporalserver.Options{
			DatabaseFile:    filepath.Join(opts.DataDir, "temporal.db"),
			FrontendAddress: opts.TemporalAddress,
			Namespaces:      []string{opts.Namespace},
			Logger:          lg,
			LogLevel:        slog.LevelWarn,
		})
		if err != nil {
			return err
		}
		lc.add("temporal server", func(context.Context) error { return srv.Stop() })
		lg.Info("embedded Temporal server started", "frontend", srv.Address(), "namespace", opts.Namespace)
		opts.TemporalAddress = srv.Address() // port 0: the one picked
		if opts.OnTemporal != nil {
			opts.OnTemporal(srv.Address())
		}
	}

	// One registry for the worker's, the API's and the Temporal SDK's
	// metrics: in dev all are on the API's /metrics, or on
	// --metrics-listen; a worker alone serves them on --metrics-listen.
	reg := prometheus.NewRegistry()
	copts := client.Options{
		HostPort:  opts.TemporalAddress,
		Namespace: opts.Namespace,
		Logger:    sdklog.NewStructuredLogger(lg.With("component", "temporal-sdk")),
		// Task and schedule-to-start latencies, free worker slots: whether
		// the workers keep up.
		MetricsHandler: sdkmetrics.New(reg),
	}
	if mode != ModeDev {
		if copts.ConnectionOptions.TLS, err = opts.TemporalTLS.config(opts.TemporalAddress); err != nil {
			return err
		}
		if opts.TemporalAPIKey != "" {
			copts.Credentials = client.NewAPIKeyStaticCredentials(opts.TemporalAPIKey)
			if copts.ConnectionOptions.TLS == nil { // an API key never goes out in clear
				copts.ConnectionOptions.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
			}
		}
	}
	if loopback(opts.TemporalAddress) {
		// The SDK gzips every request by default; on the same machine that
		// only costs CPU at both ends (about 3% of a busy dev server's).
		copts.ConnectionOptions.GrpcCompression = &client.GrpcCompressionNone{}
	}
	var tracer trace.Tracer
	if opts.OTLPEndpoint != "" {
		tr, err := tracing.New(ctx, opts.OTLPEndpoint, "adaptflow-"+mode.String())
		if err != nil {
			return err
		}
		// Added before the client, so stopped after it: the last spans go out.
		lc.add("tracing", tr.Shutdown)
		copts.Interceptors = []interceptor.ClientInterceptor{tr.Interceptor}
		tracer = tr.Tracer
		lg.Info("tracing to an OTLP endpoint", "endpoint", opts.OTLPEndpoint)
	}
	tc, err := client.DialContext(ctx, copts)
	if err != nil {
		return fmt.Errorf("connect to Temporal at %s (--temporal-address): %w", opts.TemporalAddress, err)
	}
	lc.add("temporal client", func(context.Context) error { tc.Close(); return nil })
	if mode == ModeDev {
		if err := keepHistories(ctx, tc, opts.Namespace, opts.Retention); err != nil {
			return err
		}
	}

	var llm *classify.LLM
	if opts.LLMBaseURL != "" {
		if llm, err = classify.NewLLM(classify.LLMOptions{BaseURL: opts.LLMBaseURL, Model: opts.LLMModel, APIKey: opts.LLMAPIKey, Timeout: opts.LLMTimeout}); err != nil {
			return err
		}
		lg.Info("classification through an LLM", "base_url", opts.LLMBaseURL, "model", opts.LLMModel)
	}
	embedder := classify.NewEmbedder(llm, opts.EmbeddingModel, st.EmbeddingDim())
	lg.Info("examples embedded", "embedding", embedder.Name(), "dimensions", st.EmbeddingDim())
	embedCalls := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptflow_embeddings_requests_total",
		Help: "Calls to the embeddings provider (--embedding-model) by the API's requests and the worker's classifications, by outcome: ok, failed (an error, or no answer within --embedding-wait), skipped (not asked: it failed, and no probe, every 30 s, has found it answering since); the probes are counted too.",
	}, []string{"caller", "outcome"})
	reg.MustRegister(embedCalls)
	embedObserve := func(caller string) func(string) {
		return func(outcome string) { embedCalls.WithLabelValues(caller, outcome).Inc() }
	}
	// The ends of instances are counted by the worker that saves them, and
	// by the API for those it records itself; in dev, on one registry.
	var finish *activities.FinishMetrics
	// Retries are counted by the API at the request, or by whichever
	// starter runs one queued under a concurrency limit (a worker's end of
	// an instance, an API's sweep).
	retried := api.RetryCounter(reg)
	if mode == ModeDev || mode == ModeWorker {
		tuneGC(lg)
		w := worker.New(tc, TaskQueue, workerOptions(mode))
		w.RegisterWorkflowWithOptions(workflows.Run, workflow.RegisterOptions{Name: workflows.ProcessWorkflow})
		w.RegisterWorkflowWithOptions(workflows.ClassifyPreview, workflow.RegisterOptions{Name: workflows.ClassifyPreviewWorkflow})
		w.RegisterWorkflowWithOptions(workflows.EvaluateClassifier, workflow.RegisterOptions{Name: workflows.EvaluateClassifierWorkflow})
		acts := &activities.Activities{
			Env: env, Policies: st, Decisions: st, Reviews: st, Starts: st, Examples: st, Lessons: st, Detectors: st, States: st, SubProcesses: st, LLM: llm, Embedder: embedder, EmbedWait: opts.EmbeddingWait, EmbedObserve: embedObserve("worker"), Calendar: cal,
			HTTP: &http.Client{Timeout: 5 * time.Minute}, Logger: lg, WebhookSecret: opts.WebhookSecret, Undelivered: st,
			Metrics: activities.NewMetrics(reg), Evaluations: st,
		}
		// An instance of a process with a concurrency limit starts those
		// queued for its slot as it ends.
		acts.StartQueuedFn = func(ctx context.Context, process string) (int, error) {
			return api.StartQueued(ctx, api.SweepOptions{Options: api.Options{
				Instances: st, Definitions: st, Schedules: st, Retries: st, Temporal: tc, TaskQueue: TaskQueue, Namespace: opts.Namespace, Logger: lg, Retried: retried, Clock: clock.read,
			}}, process)
		}
		finish = acts.Metrics.Finish
		w.RegisterActivity(acts)
		if err := w.Start(); err != nil {
			return fmt.Errorf("start worker: %w", err)
		}
		// The worker stops first, then what its activities left running
		// (a classifier's full training), before the store closes.
		lc.add("worker", func(ctx context.Context) error { w.Stop(); return acts.Close(ctx) })
		lg.Info("worker started", "task_queue", TaskQueue)
	}

	if mode == ModeWorker {
		if opts.MetricsListen != "" {
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			addr, err := serveMetrics(lc, opts, reg, st)
			if err != nil {
				return err
			}
			if opts.OnReady != nil {
				opts.OnReady(addr)
			}
		}
		<-ctx.Done()
		return nil
	}

	if opts.LoadExamples {
		if err := loadExamples(ctx, st, env); err != nil {
			return fmt.Errorf("load examples: %w", err)
		}
	}
	if err := ensureAdminKey(ctx, st, opts); err != nil {
		return err
	}
	if finish == nil { // a server alone
		finish = activities.NewFinishMetrics(reg)
	}
	apiOpts := api.Options{
		Keys: st, KeyAdmin: st, Definitions: st, Policies: st, Instances: st, Decisions: st, Reviews: st, Claims: st, Retries: st, Signals: st, Ended: st, AuditLog: st, Webhooks: st, Verdicts: st, Stats: st,
		Lifecycle: st, Schedules: st, Scanner: st, Chains: st, Examples: st, Embedder: embedder, EmbedWait: opts.EmbeddingWait, EmbedObserve: embedObserve("api"), Temporal: tc, TaskQueue: TaskQueue, Namespace: opts.Namespace, Env: env, Logger: lg, ClaimLease: opts.ClaimLease, RateLimit: opts.RateLimit, Metrics: reg, Tracer: tracer,
		Ready: func(ctx context.Context) error { return st.Ping(ctx) }, StartWait: opts.StartWait, MetricsElsewhere: opts.MetricsListen != "",
		Finished: finish.Ended, Retried: retried, Clock: clock.read,
		WebhookSecret: opts.WebhookSecret, Timeout: opts.RequestTimeout,
	}
	handler, err := api.New(apiOpts)
	if err != nil {
		return err
	}
	if opts.MetricsListen != "" { // the API has registered its metrics, the runtime's among them
		if _, err := serveMetrics(lc, opts, reg, st); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", opts.Listen, err)
	}
	// The background tasks run in one API replica at a time: the one that
	// holds each task's lease in the store.
	bg := newBackground(st, replicaName(ln.Addr().String()), lg, reg)
	bg.storeClock = clock
	bg.countReplicas(ctx, lc, opts.ReplicaEvery, handler.SetReplicas)
	runSweeps(ctx, lc, bg, apiOpts, opts.SweepEvery, reg)
	runCanaryGuards(ctx, lc, bg, apiOpts, opts.CanaryGuardEvery, reg)
	runSchedules(ctx, lc, bg, apiOpts, opts.ScheduleEvery, reg)
	// Pruning runs even without a store retention: a definition may have
	// a retention of its own.
	first := opts.PruneFirst
	if first <= 0 {
		first = pruneFirst
	}
	runPrunes(ctx, lc, bg, st, opts.StoreRetention, lg, reg, first)
	// Stopped after the HTTP server (added before it): no request can
	// leave a new start behind by then.
	lc.add("background starts", handler.Drain)
	hs := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	lc.add("http server", hs.Shutdown)
	lg.Info("API listening", "addr", ln.Addr().String(), "web_ui", "http://"+ln.Addr().String()+"/ui/")
	fmt.Fprintf(opts.Out, "adaptflow: web UI on http://%s/ui/ (sign in with an API key)\n", ln.Addr())
	if opts.OnReady != nil {
		opts.OnReady(ln.Addr().String())
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-serveErr:
		return fmt.Errorf("http server: %w", err)
	}
}

// workerOptions are the SDK's defaults, except in dev: there the worker
// shares the process and its cores with the API and Temporal, and a backlog
// of workflow tasks run a thousand at a time starves the API's requests of
// CPU. Bounding the worker's CPU-bound work (workflow tasks and the local
// activities they run: decisions, state saves) to a few per core keeps the
// API responsive under a backlog. On 2 cores at 100 starts/s: start p99
// 32-36 ms against 38-47 (20-s runs), reads during the backlog p99 7-10 ms
// against 20; the price is throughput, the backlog of a 60-s run worked off
// up to 20 s later. Activities, which wait on other systems, keep the
// default.
func workerOptions(mode Mode) worker.Options {
	if mode != ModeDev {
		return worker.Options{}
	}
	procs := runtime.GOMAXPROCS(0)
	return worker.Options{MaxConcurrentWorkflowTaskExecutionSize: 2 * procs, MaxConcurrentLocalActivityExecutionSize: 4 * procs}
}

// sweepEvery is how often the API finishes the workflow starts left
// pending and records the instances ended outside their workflows (after
// the first sweep, at start).
const sweepEvery = 30 * time.Second

// endedLookBack is how far back the first sweep for instances ended
// outside their workflows looks; later ones look back to the one before.
const endedLookBack = 7 * 24 * time.Hour

// runSweeps runs api.SweepStarts and api.SweepEnded now and then every
// interval (sweepEvery unless given) until shutdown.
func runSweeps(ctx context.Context, lc *lifecycle, bg *background, opts api.Options, every time.Duration, reg prometheus.Registerer) {
	if every <= 0 {
		every = sweepEvery
	}
	swept := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptflow_swept_instances_total",
		Help: "Instances the sweeper set right, by what it found: ended_outside (terminated or timed out in Temporal), lost (Temporal no longer has their workflow: ended failed), lost_unconfirmed (Temporal has neither their workflow nor any older history of this store's: left as they are, for a person), recovered (the store had lost them; brought back from their workflow), caught_up (the store held them as they were before: their state and reviews brought up to their workflow's) or unknown_unconfirmed (workflows Temporal runs that the store does not know, with no older history of this store's in Temporal: not brought back). Counted each time a sweep finds them.",
	}, []string{"found"})
	reg.MustRegister(swept)
	for _, found := range []string{"ended_outside", "lost", "lost_unconfirmed", "caught_up", "recovered", "unknown_unconfirmed"} {
		swept.WithLabelValues(found) // from 0, for the alerts' increase
	}
	takenBack := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "adaptflow_decisions_taken_back_total",
		Help: "Decision records the sweeper wrote back into the store from the workflows' histories: the store, restored from an older backup, had lost them (with the instances caught_up or recovered).",
	})
	reg.MustRegister(takenBack)
	embedded := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "adaptflow_examples_embedded_late_total",
		Help: "Labeled examples the example_embedder task embedded after they were stored without an embedding (reviewers' lessons, and examples added through the API, kept while the embeddings provider did not answer).",
	})
	reg.MustRegister(embedded)
	since := time.Now().Add(-endedLookBack)
	lost := &api.LostSweep{Budget: lostBudget, MinAge: lostMinAge}
	recovered := &api.RecoverSweep{Budget: recoverBudget, MinAge: lostMinAge}
	bg.start(ctx, lc, task{name: "sweeper", every: every, run: func(ctx context.Context) error {
		n, errStarts := api.SweepStarts(ctx, api.SweepOptions{Options: opts})
		if errStarts != nil && ctx.Err() == nil {
			opts.Logger.Warn("start sweep", "started", n, "err", errStarts)
		}
		// A minute of overlap: a workflow closed just before a pass may
		// reach Temporal's visibility store just after it.
		next := time.Now().Add(-time.Minute)
		n, errEnded := api.SweepEnded(ctx, opts, since)
		swept.WithLabelValues("ended_outside").Add(float64(n))
		if errEnded != nil && ctx.Err() == nil {
			opts.Logger.Warn("sweep of instances ended outside their workflows", "ended", n, "err", errEnded)
		} else if errEnded == nil {
			since = next
		}
		lc, errLost := lost.Run(ctx, opts)
		swept.WithLabelValues("lost").Add(float64(lc.Ended))
		swept.WithLabelValues("lost_unconfirmed").Add(float64(lc.Unconfirmed))
		swept.WithLabelValues("caught_up").Add(float64(lc.CaughtUp))
		if errLost != nil && ctx.Err() == nil {
			opts.Logger.Warn("sweep of instances whose workflow Temporal lost", "ended", lc.Ended, "err", errLost)
		}
		rc, errRecover := recovered.Run(ctx, opts)
		if lc.CaughtUp > 0 || rc.Recovered > 0 {
			// Signs of a store restored from an older backup: the
			// instances that started and ended since are missing too.
			recovered.LookAtClosed()
		}
		swept.WithLabelValues("recovered").Add(float64(rc.Recovered))
		takenBack.Add(float64(lc.Decisions + rc.Decisions))
		swept.WithLabelValues("unknown_unconfirmed").Add(float64(rc.Unconfirmed))
		if errRecover != nil && ctx.Err() == nil {
			opts.Logger.Warn("sweep of instances the store lost", "recovered", rc.Recovered, "err", errRecover)
		}
		return errors.Join(errStarts, errEnded, errLost, errRecover)
	}})
	// A task of its own: an embeddings provider that does not answer
	// holds up its pass (up to --llm-timeout), never the sweeper's. Its
	// being down is no failure of the task's (whose staleness is alerted
	// on): logged, and tried next pass; AdaptflowEmbeddingsFailing alerts.
	bg.start(ctx, lc, task{name: "example_embedder", every: every, run: func(ctx context.Context) error {
		m, err := api.EmbedExamples(ctx, opts)
		embedded.Add(float64(m))
		if err != nil && ctx.Err() == nil {
			opts.Logger.Warn("examples kept without their embedding wait for the provider", "embedded", m, "err", err)
		}
		return nil
	}})
}

// lostBudget is how many instances in progress a sweep asks Temporal
// about, looking for workflows it lost (400 a minute: a round over
// 100,000 instances in progress takes about 4 hours); lostMinAge is how
// long an instance runs before it is asked about.
const lostBudget = 200

// recoverBudget is how many running workflows a sweep reads from
// Temporal's list, looking for instances the store lost (one store read
// each): 2,000 a minute.
const recoverBudget = 1000

var lostMinAge = 2 * time.Minute

// runEvery runs fn after first, then every interval after each run ends,
// until shutdown, which waits for a run under way (lc stops it as name).
func runEvery(ctx context.Context, lc *lifecycle, name string, first, every time.Duration, fn func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		wait := first
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = every
			fn(ctx)
		}
	}()
	lc.add(name, func(context.Context) error { cancel(); <-done; return nil })
}

// serveMetrics serves /metrics and /healthz on --metrics-listen: a
// worker's, or those of a server kept apart from its API, and returns the
// address.
func serveMetrics(lc *lifecycle, opts Options, reg *prometheus.Registry, st Store) (string, error) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if err := st.Ping(r.Context()); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"status":"starting"}`))
			return
		}
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	ln, err := net.Listen("tcp", opts.MetricsListen)
	if err != nil {
		return "", fmt.Errorf("--metrics-listen %s: %w", opts.MetricsListen, err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	lc.add("metrics server", hs.Shutdown)
	opts.Logger.Info("metrics listening", "addr", ln.Addr().String())
	return ln.Addr().String(), nil
}

// Store is the store a process runs on.
type Store interface {
	api.KeyStore
	api.KeyAdmin
	api.DefinitionStore
	api.PolicyStore
	api.InstanceStore
	api.DecisionReader
	api.ReviewReader
	api.ReviewClaims
	api.RetryClaims
	api.SignalHistories
	api.EndedStore
	api.AuditLog
	api.VerdictStore
	api.ReviewStats
	activities.ReviewBook
	activities.DecisionLog
	activities.StartCounter
	activities.ExampleSource
	activities.EvaluationKeeper
	activities.DetectorStore
	activities.StateProjection
	activities.SubProcesses
	activities.WebhookLetters
	api.WebhookStore
	api.ExampleStore
	api.PolicyLifecycle
	api.ScheduleSwitches
	api.DecisionScanner
	store.ChainReader
	pruner
	leaser
	PolicyStamp(ctx context.Context, process string) (int64, error)
	Ping(ctx context.Context) error
	Close() error
}

var (
	_ Store = (*sqlite.Store)(nil)
	_ Store = (*postgres.Store)(nil)
)

func isPostgres(u string) bool {
	return strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://")
}

func storePath(opts Options) (string, error) {
	u := opts.DatabaseURL
	switch {
	case u == "":
		if err := os.MkdirAll(opts.DataDir, 0o755); err != nil {
			return "", fmt.Errorf("--data-dir: %w", err)
		}
		return filepath.Join(opts.DataDir, "adaptflow.db"), nil
	case strings.HasPrefix(u, "sqlite:"):
		return strings.TrimPrefix(strings.TrimPrefix(u, "sqlite:"), "//"), nil
	}
	return u, nil
}

// openStore opens the store --database-url names: PostgreSQL for a
// postgres:// URL, else a SQLite file. Migrations run unless disabled.
func openStore(ctx context.Context, opts Options) (Store, error) {
	if isPostgres(opts.DatabaseURL) {
		st, err := postgres.Open(ctx, opts.DatabaseURL, postgres.Options{Migrate: !opts.SkipMigrate, EmbeddingDim: opts.EmbeddingDim})
		if err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		return st, nil
	}
	path, err := storePath(opts)
	if err != nil {
		return nil, err
	}
	st, err := sqlite.OpenWith(ctx, path, sqlite.Options{EmbeddingDim: opts.EmbeddingDim})
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	return st, nil
}

// Migrate applies the store's pending migrations and returns.
func Migrate(ctx context.Context, opts Options) error {
	opts.SkipMigrate = false
	if err := opts.validate(); err != nil {
		return err
	}
	st, err := openStore(ctx, opts) // opening applies pending migrations
	if err != nil {
		return err
	}
	return st.Close()
}

// MigrationStatus lists the store's migrations and when each was applied.
func MigrationStatus(ctx context.Context, opts Options) ([]store.Migration, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if isPostgres(opts.DatabaseURL) {
		st, err := postgres.Open(ctx, opts.DatabaseURL, postgres.Options{})
		if err != nil {
			return nil, err
		}
		defer st.Close()
		return st.MigrationStatus(ctx)
	}
	path, err := storePath(opts)
	if err != nil {
		return nil, err
	}
	return sqlite.MigrationStatus(ctx, path)
}

func ensureAdminKey(ctx context.Context, st api.KeyStore, opts Options) error {
	now := time.Now()
	if opts.APIKey != "" {
		k, _ := api.NewKey("admin", store.RoleAdmin, now)
		k.Hash = api.HashKey(opts.APIKey)
		if err := st.PutKey(ctx, k); err != nil {
			return fmt.Errorf("store API key: %w", err)
		}
		return nil
	}
	k, secret := api.NewKey("admin", store.RoleAdmin, now)
	if err := st.PutKey(ctx, k); err != nil {
		return fmt.Errorf("store API key: %w", err)
	}
	fmt.Fprintf(opts.Out, "adaptflow: admin API key (shown once, stored hashed): %s\n", secret)
	return nil
}

func loadExamples(ctx context.Context, st Store, env *policies.Env) error {
	for _, dir := range []string{"processes", "policies"} {
		names, err := fs.Glob(examples.FS, dir+"/*.yaml")
		if err != nil {
			return err
		}
		sort.Strings(names)
		for _, name := range names {
			body, err := fs.ReadFile(examples.FS, name)
			if err != nil {
				return err
			}
			if dir == "processes" {
				_, _, err = api.RegisterDefinition(ctx, st, env, body, "examples")
			} else {
				_, _, err = api.RegisterPolicy(ctx, st, st, env, body, "examples", "example policy", store.ModeActive)
			}
			if err != nil && !errors.Is(err, store.ErrConflict) {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	return nil
}

type calendarFile struct {
	Timezone string            `yaml:"timezone"`
	Default  string            `yaml:"default"`
	Seasons  []policies.Season `yaml:"seasons"`
}

func loadCalendar(path string) (policies.Calendar, error) {
	var body []byte
	var err error
	if path == "" {
		body, err = fs.ReadFile(examples.FS, "calendar.yaml")
	} else {
		body, err = os.ReadFile(path)
	}
	if err != nil {
		return policies.Calendar{}, fmt.Errorf("calendar: %w", err)
	}
	var cf calendarFile
	if err := process.DecodeStrict(body, &cf); err != nil {
		return policies.Calendar{}, fmt.Errorf("calendar %s: %w", path, err)
	}
	cal := policies.Calendar{Seasons: cf.Seasons, Default: cf.Default, Location: time.UTC}
	if cf.Timezone != "" {
		if cal.Location, err = time.LoadLocation(cf.Timezone); err != nil {
			return cal, fmt.Errorf("calendar %s: timezone: %w", path, err)
		}
	}
	if err := cal.Validate(); err != nil {
		return cal, fmt.Errorf("calendar %s: %w", path, err)
	}
	return cal, nil
}

// WorkerGCPercent is the garbage collector's target a worker runs with
// unless GOGC is set. Decisions allocate short-lived garbage; collecting
// less often keeps their tail latency down (p99 of a 50-policy decision,
// BenchmarkDecide on 2 cores: about 290 µs at Go's default of 100, about
// 80 µs at 400) for a larger heap, which a worker has room for.
const WorkerGCPercent = 400

func tuneGC(lg *slog.Logger) {
	if _, set := os.LookupEnv("GOGC"); set {
		return
	}
	debug.SetGCPercent(WorkerGCPercent)
	lg.Debug("garbage collector target set for a worker", "gogc", WorkerGCPercent)
}

// loopback reports whether hostport names this machine.
func loopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// keepHistories sets how long the embedded server keeps the history of a
// finished workflow (a failed instance can be retried, and Temporal's UI
// shows it, until then): on a new data directory and on one made before.
func keepHistories(ctx context.Context, tc client.Client, namespace string, retention time.Duration) error {
	svc := tc.WorkflowService()
	ns, err := svc.DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: namespace})
	if err != nil {
		return fmt.Errorf("temporal: describe namespace %s: %w", namespace, err)
	}
	if ns.GetConfig().GetWorkflowExecutionRetentionTtl().AsDuration() == retention {
		return nil
	}
	_, err = svc.UpdateNamespace(ctx, &workflowservice.UpdateNamespaceRequest{Namespace: namespace,
		Config: &namespacepb.NamespaceConfig{WorkflowExecutionRetentionTtl: durationpb.New(retention)}})
	if err != nil {
		return fmt.Errorf("temporal: keep histories of namespace %s for %s: %w", namespace, retention, err)
	}
	return nil
}
