// Package api is adaptflow's HTTP API (gin): authentication by API key with
// roles, the routes business systems, reviewers and process engineers use,
// and the mapping of errors to statuses.
package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.temporal.io/sdk/client"
	"golang.org/x/time/rate"

	"github.com/adaptflow/adaptflow/ml/classify"
	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
)

var sprintf = fmt.Sprintf

// KeyStore stores API keys by the hash of their secret.
type KeyStore interface {
	KeyByHash(ctx context.Context, hash string) (store.APIKey, error)
	PutKey(ctx context.Context, k store.APIKey) error
}

// KeyAdmin lists, rotates and revokes API keys.
type KeyAdmin interface {
	Keys(ctx context.Context) ([]store.APIKey, error)
	RevokeKey(ctx context.Context, id string, at time.Time) (store.APIKey, error)
	RotateKey(ctx context.Context, id, hash string, at time.Time) (store.APIKey, error)
}

// DefinitionStore stores process definitions.
type DefinitionStore interface {
	PutDefinition(ctx context.Context, d store.DefinitionRecord) (bool, error)
	Definition(ctx context.Context, name string, version int) (store.DefinitionRecord, error)
	Definitions(ctx context.Context) ([]store.DefinitionRecord, error)
	DefinitionVersions(ctx context.Context, name string) ([]int, error)
	// ExampleLabels are the labels of a classifier's stored examples.
	ExampleLabels(ctx context.Context, classifier string) (map[string]bool, error)
}

// PolicyStore stores policy versions and which of them are live.
type PolicyStore interface {
	PutPolicy(ctx context.Context, p store.PolicyRecord, mode string) (store.PolicyRecord, bool, error)
	ActivePolicies(ctx context.Context, process string) ([]store.PolicyRecord, int64, error)
}

// InstanceStore records started instances.
type InstanceStore interface {
	CreateInstance(ctx context.Context, in store.Instance) (store.Instance, bool, error)
	Instance(ctx context.Context, id string) (store.Instance, error)
	MarkStarted(ctx context.Context, ids []string) error
	PendingStarts(ctx context.Context, before time.Time, limit int) ([]store.Instance, error)
	Admit(ctx context.Context, id string, limit int) (bool, error)
	QueuedStarts(ctx context.Context, process string, limit int) ([]store.Instance, error)
	QueuedCounts(ctx context.Context) (map[string]int, error)
	ProcessLoads(ctx context.Context, failedSince time.Time) (map[string]store.ProcessLoad, error)
	Outcomes(ctx context.Context, process string, from, to time.Time, fn func(store.InstanceOutcome) error) error
	InstanceStates(ctx context.Context, process string, version int, from, to time.Time, fn func(store.StateRow) error) error
	Instances(ctx context.Context, f store.InstanceFilter) ([]store.InstanceSummary, error)
	CountInstances(ctx context.Context, f store.InstanceFilter) (int, error)
}

// DecisionReader reads decision records.
type DecisionReader interface {
	Decisions(ctx context.Context, instanceID string) ([]process.Decision, error)
	Decision(ctx context.Context, id string) (process.Decision, error)
}

// ReviewReader reads reviews.
type ReviewReader interface {
	// Review is the review with the id as it reads at now (a claim run
	// out is gone).
	Review(ctx context.Context, id string, now time.Time) (store.Review, error)
	Reviews(ctx context.Context, f store.ReviewFilter) ([]store.Review, error)
	QueueSummaries(ctx context.Context, f store.QueueFilter) ([]store.QueueSummary, error)
}

// VerdictStore keeps what reviewers said about classifications.
type VerdictStore interface {
	PutVerdict(ctx context.Context, v store.Verdict) error
	Verdicts(ctx context.Context, classifier string, since time.Time) ([]store.Verdict, error)
}

// AuditLog keeps every change made through the API.
type AuditLog interface {
	AppendAudit(ctx context.Context, e store.AuditEntry) (int64, error)
	SettleAudit(ctx context.Context, seq int64, status int, target string) error
	Audit(ctx context.Context, f store.AuditFilter) ([]store.AuditEntry, error)
}

// ReviewStats reads per-queue review counts and durations, for metrics.
type ReviewStats interface {
	ReviewStats(ctx context.Context, now time.Time) ([]store.QueueStats, error)
}

// SignalHistories read the history of a process's signals.
type SignalHistories interface {
	SignalHistory(ctx context.Context, q store.SignalQuery) (store.SignalHistory, error)
	ObservationPage(ctx context.Context, f store.ObservationFilter) ([]store.Observation, error)
}

// RetryClaims let one retry of a failed run of an instance go ahead.
type RetryClaims interface {
	ClaimRetry(ctx context.Context, id, run string, now time.Time, stale time.Duration, limit int) (bool, error)
	ReleaseRetry(ctx context.Context, id, run string) error
	QueueRetry(ctx context.Context, id, reason string) (bool, error)
	TakeQueuedRetry(ctx context.Context, id string, now time.Time) (bool, error)
	DropQueuedRetry(ctx context.Context, id string) (bool, error)
}

// ScheduleSwitches pause and resume processes' schedules.
type ScheduleSwitches interface {
	SetScheduleState(ctx context.Context, st store.ScheduleState) error
	ScheduleStates(ctx context.Context, process string) ([]store.ScheduleState, error)
	KeepScheduleStates(ctx context.Context, process string, keep []string) error
	SetProcessState(ctx context.Context, st store.ProcessState) error
	ProcessStates(ctx context.Context, process string) ([]store.ProcessState, error)
}

// ReviewClaims holds reviews for one reviewer at a time.
type ReviewClaims interface {
	ClaimReview(ctx context.Context, id, reviewer string, now, until time.Time) (store.Review, error)
	ReleaseReview(ctx context.Context, id, reviewer string, now time.Time) (store.Review, error)
}

// DefaultTimeout bounds a request unless Options.Timeout says otherwise.
const DefaultTimeout = 30 * time.Second

// Options are the API's dependencies.
type Options struct {
	Keys        KeyStore
	KeyAdmin    KeyAdmin
	Definitions DefinitionStore
	Policies    PolicyStore
	Instances   InstanceStore
	Decisions   DecisionReader
	Reviews     ReviewReader
	Claims      ReviewClaims
	Retries     RetryClaims
	Signals     SignalHistories
	// Ended records the end of instances their workflows could not
	// record (SweepEnded).
	Ended EndedStore
	// Finished, when set, is told of each instance's end the API records
	// (SweepEnded), for the metrics of ended instances.
	Finished func(*store.Finish)
	// Retried, when set, counts a failed instance run again, by process:
	// at the request, or when a retry queued under the process's
	// concurrency limit runs (by whichever starter runs it). Unset, the
	// API counts its own in adaptflow_instance_retries_total.
	Retried  func(process string)
	AuditLog AuditLog
	// Webhooks lists the webhooks given up and records their
	// redeliveries.
	Webhooks WebhookStore
	// WebhookSecret signs redelivered webhooks, as the workers sign them.
	WebhookSecret string
	// WebhookClient sends redeliveries (default http.DefaultClient).
	WebhookClient *http.Client
	Verdicts      VerdictStore
	Stats         ReviewStats
	Lifecycle     PolicyLifecycle
	// Schedules pause and resume the schedules of processes.
	Schedules ScheduleSwitches
	Scanner   DecisionScanner
	Chains    store.ChainReader
	Examples  ExampleStore
	// Embedder embeds the texts of examples and the queries for similar
	// cases (nil: the hashing embedding at the store's dimension).
	Embedder *classify.Embedder
	// EmbedWait is how long a request waits for the embeddings provider
	// (default DefaultEmbedWait); after a failure, requests do not ask it
	// until a probe finds it answers again (classify.Gate), and go on
	// without an embedding where they can.
	EmbedWait time.Duration
	// EmbedObserve, when set, is told how each request's call to the
	// embeddings provider went (classify.Gate's Observe).
	EmbedObserve func(outcome string)
	Temporal     client.Client
	TaskQueue    string
	// Namespace is the Temporal namespace of the instances' workflows
	// (default "default"), for the requests the client does not fill in
	// (a retry's reset).
	Namespace string
	Env       *policies.Env
	Logger    *slog.Logger
	// Ready reports whether the server is ready to serve (for /healthz).
	Ready func(ctx context.Context) error
	// RateLimit is how many requests per second one key may make (bursts
	// of twice that); 0 means DefaultRateLimit, negative means no limit.
	RateLimit float64
	// ClaimLease is how long a claim on a review lasts unless the reviewer
	// asks for another lease (default 30 min).
	ClaimLease time.Duration
	// Clock is the time claims on reviews and retries go by (default
	// time.Now): the store's, as the replica reckons it, so that replicas
	// whose clocks differ judge a claim alike.
	Clock func() time.Time
	// KeyCacheTTL is how long a key record read from the store is trusted
	// (default DefaultKeyCacheTTL; negative reads the store on every
	// request). Revocations made through this server apply at once, those
	// made elsewhere within the TTL.
	KeyCacheTTL time.Duration
	// Tracer, when set, makes a server span per request (continuing a
	// traceparent the caller sends); the Temporal client's tracing
	// interceptor carries it into the workflow.
	Tracer trace.Tracer
	// Metrics is the registry /metrics serves; the API adds its own
	// metrics to it (nil: a registry of the API's own). Sharing one with the
	// worker puts both on /metrics.
	Metrics *prometheus.Registry
	// MetricsElsewhere leaves /metrics out of the API's routes: the
	// registry is served on another listener (--metrics-listen), away from
	// the API's clients.
	MetricsElsewhere bool
	// MaxBody bounds request bodies (default 1 MiB).
	MaxBody int64
	// Timeout bounds each request (default DefaultTimeout).
	Timeout time.Duration
	// StartWait is how long a start request waits for Temporal to create
	// the workflow before it answers with the instance stored and leaves the
	// start to finish in the background (default DefaultStartWait; negative
	// always waits). See SweepStarts.
	StartWait time.Duration
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxBody <= 0 {
		o.MaxBody = 1 << 20
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.ClaimLease <= 0 {
		o.ClaimLease = DefaultClaimLease
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.EmbedWait <= 0 {
		o.EmbedWait = DefaultEmbedWait
	}
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	if o.StartWait == 0 {
		o.StartWait = DefaultStartWait
	}
}

func (o *Options) validate() error {
	var missing []string
	for name, ok := range map[string]bool{
		"Keys": o.Keys != nil, "KeyAdmin": o.KeyAdmin != nil, "Definitions": o.Definitions != nil, "Policies": o.Policies != nil,
		"Instances": o.Instances != nil, "Decisions": o.Decisions != nil, "Reviews": o.Reviews != nil, "Claims": o.Claims != nil, "Retries": o.Retries != nil, "Signals": o.Signals != nil, "Ended": o.Ended != nil, "AuditLog": o.AuditLog != nil, "Verdicts": o.Verdicts != nil, "Stats": o.Stats != nil,
		"Lifecycle": o.Lifecycle != nil, "Schedules": o.Schedules != nil, "Scanner": o.Scanner != nil, "Chains": o.Chains != nil, "Examples": o.Examples != nil,
		"Temporal": o.Temporal != nil, "Env": o.Env != nil, "TaskQueue": o.TaskQueue != "",
	} {
		if !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("api: options missing %s", strings.Join(missing, ", "))
	}
	return nil
}

type server struct {
	Options
	metrics  *metrics
	limits   *limiters
	finished *finishedStates
	contract *contract
	// authCache holds the key records requests authenticated with.
	authCache *keyCache
	starts    *starter
	// seeds keeps the embeddings of definitions' seed examples.
	seeds classify.EmbeddingCache
	// embedGate keeps requests from waiting on an embeddings provider
	// that does not answer.
	embedGate *classify.Gate
	// slas keeps the SLAs of the definition versions read.
	slas slaCache
}

const (
	ctxRequestID = "request_id"
	ctxKey       = "api_key"
	ctxLogger    = "logger"
)

// New builds the HTTP handler.
func New(opts Options) (*Handler, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	contract, err := theContract()
	if err != nil {
		return nil, err
	}
	opts.defaults()
	s := &server{Options: opts, metrics: newMetrics(opts.Metrics, opts.Stats, opts.Timeout), finished: newFinishedStates(finishedStatesKept), contract: contract,
		authCache: newKeyCache(opts.KeyCacheTTL)}
	if s.Retried == nil {
		s.Retried = RetryCounter(s.metrics.registry)
	}
	s.starts = &starter{opts: &s.Options, metrics: s.metrics}
	s.metrics.registry.MustRegister(&overdueCollector{s: s})
	if s.Examples != nil {
		s.Embedder = s.examplesEmbedder()
	}
	s.embedGate = &classify.Gate{Pause: embedPause, Now: s.Clock, Observe: s.EmbedObserve, Probe: s.Embedder.Probe}
	if opts.RateLimit == 0 {
		s.RateLimit = DefaultRateLimit
	}
	if s.RateLimit > 0 {
		s.limits = &limiters{perSecond: s.RateLimit, byKey: map[string]*rate.Limiter{}}
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.ContextWithFallback = true
	r.HandleMethodNotAllowed = true
	r.Use(s.requestContext, s.recover)
	r.NoRoute(func(c *gin.Context) {
		fail(c, &httpError{status: http.StatusNotFound, code: "not_found", msg: "no route " + c.Request.Method + " " + c.Request.URL.Path})
	})
	r.NoMethod(func(c *gin.Context) {
		fail(c, &httpError{status: http.StatusMethodNotAllowed, code: "method_not_allowed", msg: "method " + c.Request.Method + " is not allowed on " + c.Request.URL.Path})
	})
	r.GET("/healthz", s.healthz)
	if !s.MetricsElsewhere {
		r.GET("/metrics", s.metrics.handler())
	}
	if err := uiRoutes(r); err != nil {
		return nil, err
	}
	r.GET("/openapi.json", func(c *gin.Context) {
		c.Header("Cache-Control", "public, max-age=300")
		c.Data(http.StatusOK, "application/json", s.contract.json)
	})

	v1 := r.Group("/v1", s.authenticate, s.rateLimit, s.audit)
	anyRole := []string{store.RoleSystem, store.RoleEngineer, store.RoleReviewer}
	engineer := []string{store.RoleEngineer}
	readers := []string{store.RoleSystem, store.RoleEngineer}
	v1.POST("/processes", s.allow(engineer), s.putProcess)
	v1.GET("/processes", s.allow(readers), s.listProcesses)
	v1.GET("/processes/:name", s.allow(readers), processScoped, s.getProcess)
	v1.POST("/processes/:name/instances", s.allow([]string{store.RoleSystem}), processScoped, s.startInstance)
	v1.POST("/processes/:name/instances/batch", s.allow([]string{store.RoleSystem}), processScoped, s.startInstances)
	v1.POST("/processes/:name/schedules/:schedule/pause", s.allow([]string{store.RoleEngineer}), processScoped, s.switchSchedule(true))
	v1.POST("/processes/:name/schedules/:schedule/resume", s.allow([]string{store.RoleEngineer}), processScoped, s.switchSchedule(false))
	v1.POST("/processes/:name/pause", s.allow([]string{store.RoleEngineer}), processScoped, s.switchProcess(true))
	v1.POST("/processes/:name/resume", s.allow([]string{store.RoleEngineer}), processScoped, s.switchProcess(false))
	v1.GET("/processes/:name/instances", s.allow(readers), processScoped, s.listInstances)
	v1.GET("/processes/:name/diff", s.allow([]string{store.RoleEngineer}), processScoped, s.diffProcess)
	v1.GET("/instances", s.allow(readers), s.findInstances)
	v1.GET("/processes/:name/kpis", s.allow(engineer), processScoped, s.processKPIs)
	v1.GET("/processes/:name/steps", s.allow(engineer), processScoped, s.processSteps)
	v1.GET("/processes/:name/signals", s.allow(engineer), processScoped, s.processSignals)
	v1.GET("/processes/:name/signals/:signal/observations", s.allow(engineer), processScoped, s.listObservations)
	v1.POST("/processes/:name/classify", s.allow(engineer), processScoped, s.classifyPreview)
	v1.POST("/processes/:name/classify/evaluate", s.allow(engineer), processScoped, s.classifierEvaluation)
	v1.GET("/processes/:name/classify/evaluation", s.allow(engineer), processScoped, s.lastEvaluation)
	v1.POST("/policies", s.allow(engineer), s.putPolicy)
	v1.GET("/policies", s.allow(engineer), processScoped, s.listPolicies)
	v1.GET("/instances/:id", s.allow(readers), s.getInstance)
	v1.POST("/instances/:id/cancel", s.allow(readers), s.cancelInstance)
	v1.POST("/instances/:id/retry", s.allow(readers), s.retryInstance)
	v1.POST("/instances/:id/events", s.allow(readers), s.sendEvent)
	v1.GET("/instances/:id/decisions", s.allow(readers), s.listDecisions)
	v1.GET("/instances/:id/timeline", s.allow(readers), s.instanceTimeline)
	v1.GET("/decisions/:id/explanation", s.allow(readers), s.explain)
	v1.GET("/reviews", s.allow([]string{store.RoleReviewer}), processScoped, s.listReviews)
	v1.GET("/queues", s.allow([]string{store.RoleReviewer, store.RoleEngineer}), processScoped, s.listQueues)
	v1.GET("/reviews/:id", s.allow([]string{store.RoleReviewer}), s.getReview)
	v1.POST("/reviews/:id/claim", s.allow([]string{store.RoleReviewer}), s.claimReview)
	v1.POST("/reviews/:id/release", s.allow([]string{store.RoleReviewer}), s.releaseReview)
	v1.POST("/reviews/:id/reassign", s.allow([]string{store.RoleReviewer}), s.reassignReview)
	v1.POST("/reviews/:id/decision", s.allow([]string{store.RoleReviewer}), s.decideReview)
	v1.POST("/reviews/decisions", s.allow([]string{store.RoleReviewer}), s.decideReviews)
	v1.POST("/keys", s.allow(nil), s.createKey)
	v1.GET("/keys", s.allow(nil), s.listKeys)
	v1.GET("/audit", s.allow(nil), s.listAudit)
	v1.POST("/keys/:id/rotate", s.allow(nil), s.rotateKey)
	v1.POST("/keys/:id/revoke", s.allow(nil), s.revokeKey)
	s.lifecycleRoutes(v1, engineer, nil)
	v1.POST("/classifiers/:name/examples", s.allow([]string{store.RoleEngineer, store.RoleReviewer}), s.allowClassifier, s.addExample)
	v1.POST("/classifiers/:name/examples/batch", s.allow(engineer), s.allowClassifier, s.addExamples)
	v1.GET("/classifiers/:name/examples", s.allow([]string{store.RoleEngineer, store.RoleReviewer}), s.allowClassifier, s.listExamples)
	v1.DELETE("/classifiers/:name/examples/:id", s.allow(engineer), s.allowClassifier, s.deleteExample)
	v1.DELETE("/classifiers/:name/examples", s.allow(engineer), s.allowClassifier, s.deleteExamples)
	v1.GET("/classifiers/:name/quality", s.allow([]string{store.RoleEngineer, store.RoleReviewer}), s.allowClassifier, s.classifierQuality)
	v1.GET("/webhooks/undelivered", s.allow(readers), processScoped, s.listUndeliveredWebhooks)
	v1.GET("/webhooks/undelivered/:id", s.allow(readers), s.getUndeliveredWebhook)
	v1.POST("/webhooks/undelivered/:id/redeliver", s.allow(readers), s.redeliverWebhook)
	v1.GET("/whoami", s.allow(anyRole), s.whoami)
	return &Handler{Handler: r, starts: s.starts, limits: s.limits}, nil
}

// Handler is the API's HTTP handler.
type Handler struct {
	http.Handler
	starts *starter
	limits *limiters
}

// Drain waits, until ctx ends, for the workflow starts that requests left
// to finish in the background. Call it after the HTTP server has stopped
// taking requests; a start still running when ctx ends stays pending in the
// store, for the next start sweep.
func (h *Handler) Drain(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		n := h.starts.inflight.Load()
		if n == 0 {
			h.starts.flushMarks()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d workflow starts still running: %w", n, ctx.Err())
		case <-t.C:
		}
	}
}

func loggerFrom(c *gin.Context) *slog.Logger {
	if l, ok := c.Get(ctxLogger); ok {
		return l.(*slog.Logger)
	}
	return slog.New(slog.DiscardHandler)
}

func (s *server) requestContext(c *gin.Context) {
	id := c.GetHeader("X-Request-Id")
	if id == "" || len(id) > 64 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	c.Set(ctxRequestID, id)
	c.Header("X-Request-Id", id)
	logger := s.Logger.With("request_id", id)
	// A caller waits for the answer: the store serves its writes first.
	ctx, cancel := context.WithTimeout(store.Interactive(c.Request.Context()), s.Timeout)
	defer cancel()
	if s.Tracer != nil {
		var span trace.Span
		ctx, span = s.startSpan(ctx, c)
		defer func() { endSpan(span, c) }()
		logger = logger.With("trace_id", span.SpanContext().TraceID().String())
	}
	c.Set(ctxLogger, logger)
	c.Request = c.Request.WithContext(ctx)
	if c.Request.Body != nil {
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, s.MaxBody)
	}
	start := time.Now()
	c.Next()
	s.metrics.observe(c, time.Since(start))
	loggerFrom(c).Info("request", "method", c.Request.Method, "path", c.Request.URL.Path, "status", c.Writer.Status(), "duration", time.Since(start))
}

// recover turns a handler panic into a logged 500 instead of a dropped
// connection; a panic is a bug, never an answer to bad input.
func (s *server) recover(c *gin.Context) {
	defer func() {
		if p := recover(); p != nil {
			fail(c, fmt.Errorf("panic: %v", p))
		}
	}()
	c.Next()
}

func (s *server) healthz(c *gin.Context) {
	if s.Ready != nil {
		if err := s.Ready(c.Request.Context()); err != nil {
			c.Header("Retry-After", "1")
			c.JSON(http.StatusServiceUnavailable, gin.H{"status": "starting", "error": err.Error()})
			return
		}
	}
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// HashKey is how API key secrets are stored.
func HashKey(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// NewKey makes a key with a fresh secret; only the hash goes to the store.
func NewKey(name, role string, now time.Time) (store.APIKey, string) {
	var b [24]byte
	_, _ = rand.Read(b[:])
	secret := "af_" + hex.EncodeToString(b[:])
	var id [6]byte
	_, _ = rand.Read(id[:])
	return store.APIKey{ID: "key_" + hex.EncodeToString(id[:]), Name: name, Role: role, Hash: HashKey(secret), CreatedAt: now.UTC()}, secret
}

func (s *server) authenticate(c *gin.Context) {
	h := c.GetHeader("Authorization")
	secret, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || strings.TrimSpace(secret) == "" {
		c.Header("WWW-Authenticate", `Bearer realm="adaptflow"`)
		fail(c, &httpError{status: http.StatusUnauthorized, code: "unauthenticated", msg: "missing API key: send Authorization: Bearer <key>"})
		return
	}
	hash := HashKey(strings.TrimSpace(secret))
	now := time.Now()
	k, cached := s.authCache.get(hash, now)
	var err error
	if !cached {
		if k, err = s.Keys.KeyByHash(c.Request.Context(), hash); err == nil {
			s.authCache.put(hash, k, now)
		}
	}
	if errors.Is(err, store.ErrNotFound) {
		c.Header("WWW-Authenticate", `Bearer realm="adaptflow", error="invalid_token"`)
		fail(c, &httpError{status: http.StatusUnauthorized, code: "unauthenticated", msg: "unknown API key"})
		return
	}
	if err != nil {
		fail(c, err)
		return
	}
	if err := k.Usable(now); err != nil {
		c.Header("WWW-Authenticate", `Bearer realm="adaptflow", error="invalid_token"`)
		fail(c, &httpError{status: http.StatusUnauthorized, code: "unauthenticated", msg: err.Error()})
		return
	}
	c.Set(ctxKey, k)
	c.Next()
}

// allowProcess refuses (403) a key limited to other processes.
func allowProcess(c *gin.Context, process string) error {
	if k := caller(c); !k.Allows(process) {
		return &httpError{status: http.StatusForbidden, code: "forbidden", msg: fmt.Sprintf("API key %s may not touch process %s (it is limited to %s)", k.ID, process, strings.Join(k.Processes, ", "))}
	}
	return nil
}

// allow admits admin keys and keys with one of roles.
func (s *server) allow(roles []string) gin.HandlerFunc {
	return func(c *gin.Context) {
		k := caller(c)
		if k.Role == store.RoleAdmin || slices.Contains(roles, k.Role) {
			if err := s.contract.check(c); err != nil {
				fail(c, err)
				return
			}
			c.Next()
			return
		}
		need := append(slices.Clone(roles), store.RoleAdmin)
		fail(c, &httpError{status: http.StatusForbidden, code: "permission_denied",
			msg: fmt.Sprintf("key %q has role %s; this route needs %s", k.Name, k.Role, strings.Join(need, " or "))})
	}
}

// limitParam reads the limit query parameter: 0 when absent, 400 naming it
// outside 1 to most.
func limitParam(c *gin.Context, most int) (int, error) {
	return intParam(c, "limit", 0, 1, most)
}

// cursorError is a listing's error as the caller should read it: a cursor
// the store cannot read is a bad "after".
func cursorError(err error) error {
	if errors.Is(err, store.ErrInvalid) {
		return badRequest("after", "is not a cursor this listing gave out")
	}
	return err
}

// intParam reads an integer query parameter: def when absent, 400 naming
// it outside lo to hi.
func intParam(c *gin.Context, name string, def, lo, hi int) (int, error) {
	v := c.Query(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, badRequest(name, "must be between %d and %d (got %q)", lo, hi, v)
	}
	return n, nil
}

// definitionVersion reads the version query parameter of a definition: 0
// (the latest) when absent.
func definitionVersion(c *gin.Context) (int, error) {
	if v := c.Query("version"); v != "" {
		return versionParam(c, "version", v)
	}
	return 0, nil
}

// agoParam reads a query parameter that is a positive duration (4h, 30d)
// as the time that long before now: the zero time when absent, 400 naming
// it otherwise.
func agoParam(c *gin.Context, name string, now time.Time) (time.Time, error) {
	v := c.Query(name)
	if v == "" {
		return time.Time{}, nil
	}
	d, err := process.ParseDuration(v)
	if err != nil || d <= 0 {
		return time.Time{}, badRequest(name, "must be a duration such as 30m, 4h or 30d (got %q)", v)
	}
	return now.Add(-d), nil
}

// processScoped refuses (403) a route about one process, the one its path
// names (:name) or its process query parameter, to a key limited to other
// processes.
func processScoped(c *gin.Context) {
	name := c.Param("name")
	if name == "" {
		name = c.Query("process")
	}
	if name != "" {
		if err := allowProcess(c, name); err != nil {
			fail(c, err)
			return
		}
	}
	c.Next()
}

// limited reports whether the caller's key is limited to processes.
func limited(c *gin.Context) bool { return len(caller(c).Processes) > 0 }

func caller(c *gin.Context) store.APIKey {
	v, _ := c.Get(ctxKey)
	k, _ := v.(store.APIKey)
	return k
}

func (s *server) whoami(c *gin.Context) {
	k := caller(c)
	c.JSON(http.StatusOK, gin.H{"id": k.ID, "name": k.Name, "role": k.Role})
}

// readBody reads the request body, answering 413 when it is too large.
func readBody(c *gin.Context) ([]byte, error) {
	b, err := io.ReadAll(c.Request.Body)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, &httpError{status: http.StatusRequestEntityTooLarge, code: "too_large", msg: fmt.Sprintf("request body is larger than %d bytes", mbe.Limit)}
	}
	if err != nil {
		return nil, badRequest("", "could not read the request body: %v", err)
	}
	return b, nil
}

// bindOptionalJSON is bindJSON for a body the route may go without: no
// body leaves v as it is.
func bindOptionalJSON(c *gin.Context, v any) error {
	if c.Request.ContentLength == 0 {
		return nil
	}
	return bindJSON(c, v)
}

// bindJSON decodes a JSON body strictly into v.
func bindJSON(c *gin.Context, v any) error {
	b, err := readBody(c)
	if err != nil {
		return err
	}
	if ct := c.ContentType(); ct != "" && ct != "application/json" {
		return &httpError{status: http.StatusUnsupportedMediaType, code: "unsupported_media_type", msg: "send the body as application/json (got " + ct + ")"}
	}
	return decodeJSON(b, v)
}

// KeyRequest describes a key to create.
type KeyRequest struct {
	Name string `json:"name"`
	Role string `json:"role"`
	// ExpiresIn is how long the key works ("90d"); empty: until revoked.
	ExpiresIn string `json:"expires_in,omitempty"`
	// Processes limits the key to these processes; empty: all.
	Processes []string `json:"processes,omitempty"`
}

// maxKeyLife bounds expires_in.
const maxKeyLife = 5 * 365 * 24 * time.Hour

// NewKeyFrom checks req and makes its key with a fresh secret; a problem is
// a *process.FieldError naming the field (name, role, expires_in,
// processes[i]). The API and `adaptflow keys create` both use it.
func NewKeyFrom(req KeyRequest, now time.Time) (store.APIKey, string, error) {
	bad := func(field, format string, args ...any) (store.APIKey, string, error) {
		return store.APIKey{}, "", &process.FieldError{Path: field, Message: fmt.Sprintf(format, args...)}
	}
	if strings.TrimSpace(req.Name) == "" || len(req.Name) > 100 {
		return bad("name", "is required (at most 100 characters)")
	}
	if !store.ValidRole(req.Role) {
		return bad("role", "must be one of system, reviewer, engineer, admin (got %q)", req.Role)
	}
	k, secret := NewKey(req.Name, req.Role, now)
	if req.ExpiresIn != "" {
		d, err := process.ParseDuration(req.ExpiresIn)
		if err != nil || d <= 0 || d > maxKeyLife {
			return bad("expires_in", "must be a duration such as 12h or 90d, at most 5 years (got %q)", req.ExpiresIn)
		}
		exp := now.Add(d).UTC()
		k.ExpiresAt = &exp
	}
	for i, p := range req.Processes {
		if !process.ValidName(p) {
			return bad(fmt.Sprintf("processes[%d]", i), "is not a process name (got %q)", p)
		}
	}
	if len(req.Processes) > 0 && req.Role == store.RoleAdmin {
		return bad("processes", "an admin key cannot be limited to processes; give it another role")
	}
	k.Processes = req.Processes
	return k, secret, nil
}

func (s *server) createKey(c *gin.Context) {
	var req KeyRequest
	if err := bindJSON(c, &req); err != nil {
		fail(c, err)
		return
	}
	k, secret, err := NewKeyFrom(req, time.Now())
	if err == nil {
		err = s.Keys.PutKey(c.Request.Context(), k)
	}
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, keyWithSecret{APIKey: k, Key: secret})
}

// keyWithSecret is a key and its secret, shown once.
type keyWithSecret struct {
	store.APIKey
	Key string `json:"key"`
}

func (s *server) listKeys(c *gin.Context) {
	ks, err := s.KeyAdmin.Keys(c.Request.Context())
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"keys": ks})
}

// rotateKey gives a key a new secret, shown once; the old one stops working.
func (s *server) rotateKey(c *gin.Context) {
	fresh, secret := NewKey("", "", time.Now())
	k, err := s.KeyAdmin.RotateKey(c.Request.Context(), c.Param("id"), fresh.Hash, time.Now())
	s.authCache.clear() // the old secret stops working at once
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, keyWithSecret{APIKey: k, Key: secret})
}

func (s *server) revokeKey(c *gin.Context) {
	if c.Param("id") == caller(c).ID {
		fail(c, conflict("a key cannot revoke itself; use another admin key"))
		return
	}
	k, err := s.KeyAdmin.RevokeKey(c.Request.Context(), c.Param("id"), time.Now())
	s.authCache.clear() // the key stops working at once
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, k)
}
