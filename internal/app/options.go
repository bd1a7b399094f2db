// Package app wires adaptflow together: the store, the Temporal client (and,
// in dev mode, an embedded Temporal server), the worker and the HTTP API.
// main turns flags into [Options] and calls one of the Run functions with a
// context that is cancelled on a signal; nothing here exits the process.
package app

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/adaptflow/adaptflow/api"
)

// TaskQueue is the task queue adaptflow's workers poll.
const TaskQueue = "adaptflow"

// Options configure every mode. Fields not used by a mode are ignored.
type Options struct {
	// DataDir holds the embedded store and, in dev, Temporal's database.
	DataDir string
	// Listen is the HTTP API's address.
	Listen string
	// TemporalAddress is the Temporal frontend: the embedded server listens
	// there in dev; server and worker connect to it.
	TemporalAddress string
	// Namespace is the Temporal namespace.
	Namespace string
	// TemporalTLS secures the server's and the worker's connection to
	// Temporal (not dev's embedded server, which listens on plain TCP).
	TemporalTLS TemporalTLS
	// TemporalAPIKey authenticates the server and the worker to Temporal
	// (Temporal Cloud's API keys, or a cluster's own authorizer), as a
	// bearer token on every call; it turns TLS on.
	TemporalAPIKey string
	// DatabaseURL selects the store: postgres://... for PostgreSQL, else a
	// SQLite file path (or sqlite:PATH); empty means DataDir/adaptflow.db.
	DatabaseURL string
	// EmbeddingDim is the dimension of example embeddings in the store
	// (default 256); it must match the embedding model.
	EmbeddingDim int
	// LLMBaseURL, LLMModel and LLMAPIKey configure an OpenAI-compatible
	// endpoint for classification; without them the embedded classifier
	// answers.
	LLMBaseURL, LLMModel, LLMAPIKey string
	// LLMTimeout bounds one request to the LLM (default 20s).
	LLMTimeout time.Duration
	// RequestTimeout bounds an API request (default api.DefaultTimeout).
	RequestTimeout time.Duration
	// EmbeddingModel, with LLMBaseURL, embeds examples and queries through
	// the provider's embeddings endpoint; without it the hashing embedding
	// does. Its vectors must have EmbeddingDim dimensions.
	EmbeddingModel string
	// EmbeddingWait is how long an API request, or a classification's
	// pick of few-shot examples, waits for the embeddings provider
	// (default api.DefaultEmbedWait).
	EmbeddingWait time.Duration
	// SkipMigrate leaves the store's schema as it is at start (run
	// `adaptflow migrate` separately).
	SkipMigrate bool
	// APIKey, when set, is stored as an admin key at start.
	APIKey string
	// LoadExamples registers the embedded example processes and policies.
	LoadExamples bool
	// CalendarFile overrides the embedded calendar (seasons).
	CalendarFile string
	// ShutdownTimeout bounds a clean shutdown.
	ShutdownTimeout time.Duration
	// WebhookSecret signs the bodies of webhooks (callbacks, escalations)
	// with HMAC-SHA256 when set.
	WebhookSecret string
	// RateLimit is how many requests per second one API key may make
	// (0: the API's default; negative: no limit).
	RateLimit float64
	// OTLPEndpoint, when set, sends traces there over OTLP/HTTP (e.g.
	// http://collector:4318): a span per API request, and the Temporal SDK's
	// spans for workflow starts, workflows, activities, queries and updates.
	OTLPEndpoint string
	// MetricsListen is where /metrics and /healthz are served apart from
	// the API: a worker alone (ModeWorker) serves them nowhere else (empty:
	// nowhere); in dev and server mode /metrics leaves the API's listener
	// for it (empty: it stays on the API).
	MetricsListen string
	// SweepEvery is how often the API finishes pending workflow starts and
	// records the end of instances terminated outside their workflows
	// (default 30s; tests make it shorter).
	SweepEvery time.Duration
	// CanaryGuardEvery is how often the API judges the canaries that have
	// a guard (default a minute; tests shorten it).
	CanaryGuardEvery time.Duration
	// ReplicaEvery is how often an API replica says in the store that it
	// is alive and counts the others, which share each key's rate limit
	// (default 10s).
	ReplicaEvery time.Duration
	// ScheduleEvery is how often the API starts the instances the
	// processes' schedules are due for (default 10s; tests shorten it).
	ScheduleEvery time.Duration
	// Retention is how long the embedded Temporal server (dev) keeps the
	// history of a finished workflow: a failed instance can be retried, and
	// Temporal's UI shows it, until then.
	Retention time.Duration
	// StoreRetention, when set, is how long the store keeps what is done
	// with: instances that ended (with their decisions, reviews and
	// verdicts), signal observations and audit entries older than it are
	// pruned every hour by the API (see store.Prune). Zero keeps
	// everything.
	StoreRetention time.Duration
	// PruneFirst is when the first prune runs after the start (default a
	// minute; tests make it shorter).
	PruneFirst time.Duration
	// ClaimLease is how long a reviewer's claim on a review lasts unless
	// the reviewer asks for another lease.
	ClaimLease time.Duration
	// StartWait is how long a start request waits for Temporal before it
	// answers with the instance stored and finishes the start in the
	// background (0: the API's default; negative: always wait).
	StartWait time.Duration

	Logger *slog.Logger
	// Out receives what a person must read (the generated API key).
	Out io.Writer
	// OnReady, when set, is called with the API's address once it serves.
	OnReady func(apiAddr string)
	// OnTemporal, when set, is called in dev with the embedded Temporal
	// frontend's address once it answers (TemporalAddress may name port 0).
	OnTemporal func(frontend string)
}

// DefaultOptions match the flag defaults.
func DefaultOptions() Options {
	return Options{
		DataDir:         ".adaptflow",
		Listen:          "127.0.0.1:8080",
		TemporalAddress: "127.0.0.1:7233",
		Namespace:       "default",
		LoadExamples:    true,
		ShutdownTimeout: 15 * time.Second,
		ClaimLease:      30 * time.Minute,
		Retention:       DefaultRetention,
		EmbeddingWait:   api.DefaultEmbedWait,
		LLMTimeout:      DefaultLLMTimeout,
		RequestTimeout:  api.DefaultTimeout,
	}
}

// DefaultLLMTimeout bounds one request to the LLM by default.
const DefaultLLMTimeout = 20 * time.Second

// DefaultRetention is how long dev keeps finished workflows' histories.
const DefaultRetention = 7 * 24 * time.Hour

func (o *Options) validate() error {
	var errs []error
	if strings.TrimSpace(o.DataDir) == "" && o.DatabaseURL == "" {
		errs = append(errs, errors.New("--data-dir: is required"))
	}
	if _, _, err := net.SplitHostPort(o.Listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen: %q is not host:port", o.Listen))
	}
	if _, _, err := net.SplitHostPort(o.TemporalAddress); err != nil {
		errs = append(errs, fmt.Errorf("--temporal-address: %q is not host:port", o.TemporalAddress))
	}
	if o.Namespace == "" {
		errs = append(errs, errors.New("--namespace: is required"))
	}
	if (o.LLMBaseURL == "") != (o.LLMModel == "") {
		errs = append(errs, errors.New("--llm-base-url and --llm-model: give both, or neither for the embedded classifier"))
	}
	if o.EmbeddingModel != "" && o.LLMBaseURL == "" {
		errs = append(errs, errors.New("--embedding-model: needs --llm-base-url (the provider that serves it)"))
	}
	if (o.TemporalTLS.CertFile == "") != (o.TemporalTLS.KeyFile == "") {
		errs = append(errs, errors.New("--temporal-tls-cert and --temporal-tls-key: give both (a client certificate and its key), or neither"))
	}
	if o.APIKey != "" && len(o.APIKey) < 16 {
		errs = append(errs, errors.New("--api-key: must be at least 16 characters"))
	}
	if o.ClaimLease == 0 {
		o.ClaimLease = 30 * time.Minute
	}
	if o.Retention == 0 {
		o.Retention = DefaultRetention
	}
	if o.Retention < 24*time.Hour || o.Retention%time.Hour != 0 {
		errs = append(errs, fmt.Errorf("--retention: must be whole hours, at least 1d (got %s)", o.Retention))
	}
	if o.StoreRetention != 0 && o.StoreRetention < 24*time.Hour {
		errs = append(errs, fmt.Errorf("--store-retention: must be at least 1d, or 0 to keep everything (got %s)", o.StoreRetention))
	}
	if o.LLMTimeout == 0 {
		o.LLMTimeout = DefaultLLMTimeout
	}
	if o.LLMTimeout < time.Second || o.LLMTimeout > 4*time.Minute {
		errs = append(errs, fmt.Errorf("--llm-timeout: must be between 1s and 4m (got %s)", o.LLMTimeout))
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = api.DefaultTimeout
	}
	if o.RequestTimeout < time.Second || o.RequestTimeout > 10*time.Minute {
		errs = append(errs, fmt.Errorf("--request-timeout: must be between 1s and 10m (got %s)", o.RequestTimeout))
	}
	if o.EmbeddingWait == 0 {
		o.EmbeddingWait = api.DefaultEmbedWait
	}
	if o.EmbeddingWait < 100*time.Millisecond || o.EmbeddingWait > time.Minute {
		errs = append(errs, fmt.Errorf("--embedding-wait: must be between 100ms and 1m (got %s)", o.EmbeddingWait))
	}
	if o.ClaimLease < time.Minute || o.ClaimLease > 24*time.Hour {
		errs = append(errs, fmt.Errorf("--claim-lease: must be between 1m and 24h (got %s)", o.ClaimLease))
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 15 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	return errors.Join(errs...)
}
