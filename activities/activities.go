// Package activities holds everything with side effects that the process
// workflow calls: the Decide local activity, the step executors (task, http,
// validate) and the review bookkeeping. Activities are methods on
// [Activities], which holds their dependencies; the workflow refers to them
// through a typed nil pointer and the worker registers a filled-in value.
package activities

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/adaptflow/adaptflow/ml/classify"
	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
)

// Error types of failures that retrying cannot fix. Retry policies list them
// as non-retryable.
const (
	ErrTypeInvalid         = "InvalidStep"
	ErrTypeAssertionFailed = "AssertionFailed"
	ErrTypeHTTPClient      = "HTTPClientError"
)

// NonRetryable are the error types no retry policy retries.
var NonRetryable = []string{ErrTypeInvalid, ErrTypeAssertionFailed, ErrTypeHTTPClient}

// PolicySource reads the active policies of a process.
type PolicySource interface {
	PolicyStamp(ctx context.Context, process string) (int64, error)
	ActivePolicies(ctx context.Context, process string) ([]store.PolicyRecord, int64, error)
}

// DecisionLog appends decision records, once per run and sequence number.
type DecisionLog interface {
	AppendDecision(ctx context.Context, d process.Decision) (process.Decision, error)
	// AppendDecisionWithState also saves the state projection the decision
	// carries, in the same transaction.
	AppendDecisionWithState(ctx context.Context, d process.Decision, st *store.StateSave) (process.Decision, error)
}

// ReviewBook opens and closes reviews.
type ReviewBook interface {
	CreateReview(ctx context.Context, r store.Review) (store.Review, error)
	CloseReview(ctx context.Context, r store.Review) (store.Review, error)
	EscalateReview(ctx context.Context, id string, to store.Escalation, at time.Time) (store.Review, error)
	ReassignReview(ctx context.Context, id, queue string, at time.Time) (store.Review, error)
}

// StartCounter counts instance starts per time bucket, for arrival-rate
// signals.
type StartCounter interface {
	StartCounts(ctx context.Context, process string, from, to time.Time, bucket time.Duration) ([]int, error)
}

// StateProjection keeps the state each instance's workflow saves, for
// reads that need no Temporal query; it reports the save that ended an
// instance.
type StateProjection interface {
	SaveInstanceState(ctx context.Context, id, run string, seq int64, state json.RawMessage) (*store.Finish, error)
}

// WebhookLetters keeps the webhooks given up, to be redelivered.
type WebhookLetters interface {
	AddUndeliveredWebhook(ctx context.Context, w store.UndeliveredWebhook) (store.UndeliveredWebhook, error)
}

// Activities are the activities of the process workflow.
type Activities struct {
	Env       *policies.Env
	Policies  PolicySource
	Decisions DecisionLog
	Reviews   ReviewBook
	Starts    StartCounter
	Examples  ExampleSource
	// Lessons keeps what reviewers' verdicts on classifications teach
	// (CloseReviewInput.Lesson).
	Lessons   LessonBook
	Detectors DetectorStore
	// States keeps the instances' state projections (nil: none kept).
	States StateProjection
	// StartQueuedFn starts a process's instances queued under its
	// concurrency limit while slots are free (see api.StartQueued), and
	// says how many it started; nil leaves them to the start sweep.
	StartQueuedFn func(ctx context.Context, process string) (int, error)
	// SubProcesses reads the definitions process steps run and stores
	// the instances they start (nil: process steps fail).
	SubProcesses SubProcesses
	// LLM classifies through an OpenAI-compatible API when set.
	LLM *classify.LLM
	// Embedder, when it embeds through the provider, picks the LLM's
	// few-shot examples by the embeddings stored with them; otherwise they
	// are picked by the hashing embedding in the worker.
	Embedder *classify.Embedder
	// EmbedWait is how long a classification waits for the provider's
	// embeddings of its text (default classify.DefaultWait); the hashing
	// embedding picks the few-shot examples after that, and after a
	// failure until a probe finds the provider answers again.
	EmbedWait time.Duration
	// EmbedObserve, when set, is told how each call to the embeddings
	// provider went (classify.Gate's Observe). Set it before the first
	// classification.
	EmbedObserve func(outcome string)
	Calendar     policies.Calendar
	HTTP         *http.Client
	Logger       *slog.Logger
	// Model names the classifier whose output decisions see.
	Model string
	// WebhookSecret signs webhook bodies (HMAC-SHA256) when set.
	WebhookSecret string
	// Undelivered keeps the webhooks given up, for a redelivery (nil:
	// they are only logged and counted).
	Undelivered WebhookLetters
	// Metrics counts decisions, classifications and LLM calls (nil: none).
	Metrics *Metrics
	// Evaluations keep each classifier's last evaluation (nil: none kept).
	Evaluations EvaluationKeeper

	mu     sync.Mutex
	sets   map[string]cachedSet
	rates  map[string]cachedRate
	models map[string]*classifierModel
	stored map[string]storedExamples
	// embeddings keeps the provider's embeddings of seed examples.
	embeddings classify.EmbeddingCache
	// embedGate keeps classifications from waiting on an embeddings
	// provider that does not answer: the hashing embedding picks their
	// few-shot examples meanwhile.
	embedGate classify.Gate
	gateOnce  sync.Once
	// evaluating holds the worker's one evaluation of a classifier at a
	// time (see EvaluateClassifier).
	evaluating sync.Mutex
	// bg is the work the activities leave running (full trainings of a
	// classifier), which Close stops and waits for.
	bg struct {
		once   sync.Once
		ctx    context.Context
		cancel context.CancelFunc
		wg     sync.WaitGroup
		mu     sync.Mutex
		closed bool
	}
}

// background runs fn in a goroutine of its own, with a context that Close
// ends; after Close it runs nothing and reports false.
func (a *Activities) background(fn func(ctx context.Context)) bool {
	a.bgStart()
	a.bg.mu.Lock()
	defer a.bg.mu.Unlock()
	if a.bg.closed {
		return false
	}
	a.bg.wg.Add(1)
	go func() {
		defer a.bg.wg.Done()
		fn(a.bg.ctx)
	}()
	return true
}

// bgStart makes the context of the background work, once.
func (a *Activities) bgStart() {
	a.bg.once.Do(func() { a.bg.ctx, a.bg.cancel = context.WithCancel(context.Background()) })
}

// Close stops the work the activities left running and waits for it,
// until ctx ends. The worker calls it once it has stopped.
func (a *Activities) Close(ctx context.Context) error {
	a.bgStart()
	a.bg.mu.Lock()
	a.bg.closed = true
	a.bg.mu.Unlock()
	a.bg.cancel()
	done := make(chan struct{})
	go func() {
		a.bg.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("background work still running: %w", ctx.Err())
	}
}

type cachedSet struct {
	stamp int64
	set   *policies.Set
}

func (a *Activities) logger() *slog.Logger {
	if a.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Logger
}

// policySet returns the compiled active policies of a process, compiling
// again only when they changed.
func (a *Activities) policySet(ctx context.Context, def *process.Definition) (*policies.Set, error) {
	stamp, err := a.Policies.PolicyStamp(ctx, def.Name)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	c, ok := a.sets[def.Name]
	a.mu.Unlock()
	if ok && c.stamp == stamp {
		return c.set, nil
	}
	recs, stamp, err := a.Policies.ActivePolicies(ctx, def.Name)
	if err != nil {
		return nil, err
	}
	ps := make([]*process.Policy, 0, len(recs))
	for _, r := range recs {
		var p process.Policy
		if err := json.Unmarshal(r.Doc, &p); err != nil {
			return nil, temporal.NewNonRetryableApplicationError("stored policy "+r.ID+" is unreadable", ErrTypeInvalid, err)
		}
		p.Version = r.Version
		p.Mode, p.Percent = r.Mode, r.Percent
		ps = append(ps, &p)
	}
	set, err := a.Env.NewSet(def, ps)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalid, err)
	}
	a.mu.Lock()
	if a.sets == nil {
		a.sets = map[string]cachedSet{}
	}
	a.sets[def.Name] = cachedSet{stamp: stamp, set: set}
	a.mu.Unlock()
	return set, nil
}

func invalid(msg string, cause error) error {
	return temporal.NewNonRetryableApplicationError(msg, ErrTypeInvalid, cause)
}
