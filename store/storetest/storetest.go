// Package storetest is the conformance suite every store implementation
// passes: call [Run] from the implementation's tests.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
)

// Store is everything the suite exercises.
type Store interface {
	PutKey(ctx context.Context, k store.APIKey) error
	KeyByHash(ctx context.Context, hash string) (store.APIKey, error)
	Key(ctx context.Context, id string) (store.APIKey, error)
	Keys(ctx context.Context) ([]store.APIKey, error)
	RevokeKey(ctx context.Context, id string, at time.Time) (store.APIKey, error)
	RotateKey(ctx context.Context, id, hash string, at time.Time) (store.APIKey, error)
	PutDefinition(ctx context.Context, d store.DefinitionRecord) (bool, error)
	Definition(ctx context.Context, name string, version int) (store.DefinitionRecord, error)
	Definitions(ctx context.Context) ([]store.DefinitionRecord, error)
	PutPolicy(ctx context.Context, p store.PolicyRecord, mode string) (store.PolicyRecord, bool, error)
	ActivePolicies(ctx context.Context, process string) ([]store.PolicyRecord, int64, error)
	PolicyStamp(ctx context.Context, process string) (int64, error)
	SetPolicyMode(ctx context.Context, id string, version int, mode, author, note string) (store.PolicyState, error)
	SetPolicyCanary(ctx context.Context, id string, version, percent int, author, note string) (store.PolicyState, error)
	ChangePolicyMode(ctx context.Context, id string, ch store.PolicyModeChange) (store.PolicyState, error)
	GuardedCanaries(ctx context.Context) ([]string, error)
	PolicyState(ctx context.Context, id string) (store.PolicyState, error)
	PolicyStates(ctx context.Context, process string) ([]store.PolicyState, error)
	PolicyVersions(ctx context.Context, id string) ([]store.PolicyRecord, error)
	PolicyVersion(ctx context.Context, id string, version int) (store.PolicyRecord, error)
	ScanPolicyVersions(ctx context.Context, fn func(store.PolicyRecord) error) error
	ScanDecisions(ctx context.Context, process string, since time.Time, fn func(record []byte) error) error
	ScanChains(ctx context.Context, fn func(record []byte) error) error
	PutExample(ctx context.Context, e store.Example) error
	PutExamples(ctx context.Context, es []store.Example) error
	ExampleLabels(ctx context.Context, classifier string) (map[string]bool, error)
	ExampleCounts(ctx context.Context, classifier string) (map[string]int, error)
	ExamplesPage(ctx context.Context, f store.ExampleFilter) ([]store.Example, error)
	DeleteExamples(ctx context.Context, f store.ExampleFilter) (int, error)
	PutEvaluation(ctx context.Context, e store.Evaluation) error
	LastEvaluation(ctx context.Context, classifier, model string) (store.Evaluation, error)
	DeleteExample(ctx context.Context, classifier, id string) error
	NearestExamples(ctx context.Context, classifier string, q []float32, k int) ([]store.Neighbor, error)
	ExamplesToEmbed(ctx context.Context, limit int) ([]store.Example, error)
	SetExampleEmbedding(ctx context.Context, id, text string, v []float32) (bool, error)
	EmbeddingDim() int
	ExamplesOf(ctx context.Context, classifier string) ([]store.Example, error)
	ExamplesVersion(ctx context.Context, classifier string) (int64, error)
	AppendObservations(ctx context.Context, obs ...store.Observation) error
	Observations(ctx context.Context, process, signal string, since time.Time) ([]store.Observation, error)
	SignalHistory(ctx context.Context, q store.SignalQuery) (store.SignalHistory, error)
	InstanceObservation(ctx context.Context, process, signal, instanceID string) (store.Observation, error)
	ObservationPage(ctx context.Context, f store.ObservationFilter) ([]store.Observation, error)
	DetectorState(ctx context.Context, key string) (store.DetectorState, error)
	SaveDetectorState(ctx context.Context, st store.DetectorState) (int64, error)
	CreateInstance(ctx context.Context, in store.Instance) (store.Instance, bool, error)
	Instance(ctx context.Context, id string) (store.Instance, error)
	SaveInstanceState(ctx context.Context, id, run string, seq int64, state json.RawMessage) (*store.Finish, error)
	SaveInstanceStateAt(ctx context.Context, id, run string, seq int64, state json.RawMessage, at time.Time) (*store.Finish, error)
	MarkStarted(ctx context.Context, ids []string) error
	PendingStarts(ctx context.Context, before time.Time, limit int) ([]store.Instance, error)
	Admit(ctx context.Context, id string, limit int) (bool, error)
	Restore(ctx context.Context, id string, pending, queued bool) (store.Instance, bool, error)
	QueueRetry(ctx context.Context, id, reason string) (bool, error)
	TakeQueuedRetry(ctx context.Context, id string, now time.Time) (bool, error)
	DropQueuedRetry(ctx context.Context, id string) (bool, error)
	QueuedStarts(ctx context.Context, process string, limit int) ([]store.Instance, error)
	QueuedCounts(ctx context.Context) (map[string]int, error)
	ProcessLoads(ctx context.Context, failedSince time.Time) (map[string]store.ProcessLoad, error)
	StartCounts(ctx context.Context, process string, from, to time.Time, bucket time.Duration) ([]int, error)
	PolicyChanges(ctx context.Context, process string, from, to time.Time) ([]store.PolicyChange, error)
	Outcomes(ctx context.Context, process string, from, to time.Time, fn func(store.InstanceOutcome) error) error
	InstanceStates(ctx context.Context, process string, version int, from, to time.Time, fn func(store.StateRow) error) error
	Instances(ctx context.Context, f store.InstanceFilter) ([]store.InstanceSummary, error)
	DefinitionVersions(ctx context.Context, process string) ([]int, error)
	CountInstances(ctx context.Context, f store.InstanceFilter) (int, error)
	ClaimRetry(ctx context.Context, id, run string, now time.Time, stale time.Duration, limit int) (bool, error)
	ReleaseRetry(ctx context.Context, id, run string) error
	AppendDecision(ctx context.Context, d process.Decision) (process.Decision, error)
	AppendDecisionWithState(ctx context.Context, d process.Decision, st *store.StateSave) (process.Decision, error)
	Decision(ctx context.Context, id string) (process.Decision, error)
	Decisions(ctx context.Context, instanceID string) ([]process.Decision, error)
	CreateReview(ctx context.Context, r store.Review) (store.Review, error)
	Review(ctx context.Context, id string, now time.Time) (store.Review, error)
	Reviews(ctx context.Context, f store.ReviewFilter) ([]store.Review, error)
	CloseReview(ctx context.Context, r store.Review) (store.Review, error)
	ClaimReview(ctx context.Context, id, reviewer string, now, until time.Time) (store.Review, error)
	ReleaseReview(ctx context.Context, id, reviewer string, now time.Time) (store.Review, error)
	EscalateReview(ctx context.Context, id string, to store.Escalation, at time.Time) (store.Review, error)
	ReassignReview(ctx context.Context, id, queue string, at time.Time) (store.Review, error)
	AppendAudit(ctx context.Context, e store.AuditEntry) (int64, error)
	SettleAudit(ctx context.Context, seq int64, status int, target string) error
	Audit(ctx context.Context, f store.AuditFilter) ([]store.AuditEntry, error)
	PutVerdict(ctx context.Context, v store.Verdict) error
	Verdicts(ctx context.Context, classifier string, since time.Time) ([]store.Verdict, error)
	ReviewStats(ctx context.Context, now time.Time) ([]store.QueueStats, error)
	QueueSummaries(ctx context.Context, f store.QueueFilter) ([]store.QueueSummary, error)
	Prune(ctx context.Context, before time.Time) (store.Pruned, error)
	PruneProcess(ctx context.Context, process string, before time.Time) (store.Pruned, error)
	PruneCounts(ctx context.Context, plan store.PrunePlan) (store.Pruned, error)
	TakeLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (store.Lease, error)
	LiveLeases(ctx context.Context, prefix string, now time.Time) ([]store.Lease, error)
	Clock(ctx context.Context) (time.Time, error)
	ReleaseLease(ctx context.Context, name, holder string) error
	SetScheduleState(ctx context.Context, st store.ScheduleState) error
	SetProcessState(ctx context.Context, st store.ProcessState) error
	ProcessStates(ctx context.Context, process string) ([]store.ProcessState, error)
	ScheduleStates(ctx context.Context, process string) ([]store.ScheduleState, error)
	KeepScheduleStates(ctx context.Context, process string, keep []string) error
	AddUndeliveredWebhook(ctx context.Context, w store.UndeliveredWebhook) (store.UndeliveredWebhook, error)
	UndeliveredWebhooks(ctx context.Context, f store.WebhookFilter) ([]store.UndeliveredWebhook, error)
	UndeliveredWebhook(ctx context.Context, id int64) (store.UndeliveredWebhook, error)
	WebhookRedelivered(ctx context.Context, id int64, by string, at time.Time) (store.UndeliveredWebhook, error)
	WebhookRedeliveryFailed(ctx context.Context, id int64, reason string, at time.Time) (store.UndeliveredWebhook, error)
	ClaimWebhookRedelivery(ctx context.Context, id int64, now, until time.Time) (store.UndeliveredWebhook, error)
	PendingWebhooks(ctx context.Context) (map[string]int, error)
}

// Run runs the suite; open returns a new, empty store.
func Run(t *testing.T, open func(t *testing.T) Store) {
	t.Run("keys", func(t *testing.T) { testKeys(t, open(t)) })
	t.Run("definitions", func(t *testing.T) { testDefinitions(t, open(t)) })
	t.Run("policies", func(t *testing.T) { testPolicies(t, open(t)) })
	t.Run("policy canary", func(t *testing.T) { testPolicyCanary(t, open(t)) })
	t.Run("instances", func(t *testing.T) { testInstances(t, open(t)) })
	t.Run("instance states", func(t *testing.T) { testInstanceStates(t, open(t)) })
	t.Run("state rows", func(t *testing.T) { testStateRows(t, open(t)) })
	t.Run("pending starts", func(t *testing.T) { testPendingStarts(t, open(t)) })
	t.Run("concurrency limit", func(t *testing.T) { testConcurrencyLimit(t, open(t)) })
	t.Run("restore a process step's instance", func(t *testing.T) { testRestore(t, open(t)) })
	t.Run("outcomes", func(t *testing.T) { testOutcomes(t, open(t)) })
	t.Run("instance listing", func(t *testing.T) { testInstanceListing(t, open(t)) })
	t.Run("retry claims", func(t *testing.T) { testRetryClaims(t, open(t)) })
	t.Run("leases", func(t *testing.T) { testLeases(t, open(t)) })
	t.Run("schedule states", func(t *testing.T) { testScheduleStates(t, open(t)) })
	t.Run("decisions", func(t *testing.T) { testDecisions(t, open(t)) })
	t.Run("decision with state", func(t *testing.T) { testDecisionWithState(t, open(t)) })
	t.Run("chains of reset runs", func(t *testing.T) { testResetChains(t, open(t)) })
	t.Run("reviews", func(t *testing.T) { testReviews(t, open(t)) })
	t.Run("review claims", func(t *testing.T) { testReviewClaims(t, open(t)) })
	t.Run("inbox", func(t *testing.T) { testInbox(t, open(t)) })
	t.Run("review stats", func(t *testing.T) { testReviewStats(t, open(t)) })
	t.Run("queue summaries", func(t *testing.T) { testQueueSummaries(t, open(t)) })
	t.Run("process loads", func(t *testing.T) { testProcessLoads(t, open(t)) })
	t.Run("review escalation", func(t *testing.T) { testReviewEscalation(t, open(t)) })
	t.Run("audit log", func(t *testing.T) { testAudit(t, open(t)) })
	t.Run("undelivered webhooks", func(t *testing.T) { testUndeliveredWebhooks(t, open(t)) })
	t.Run("examples", func(t *testing.T) { testExamples(t, open(t)) })
	t.Run("example pages", func(t *testing.T) { testExamplePages(t, open(t)) })
	t.Run("evaluations", func(t *testing.T) { testEvaluations(t, open(t)) })
	t.Run("signals", func(t *testing.T) { testSignals(t, open(t)) })
	t.Run("signal history", func(t *testing.T) { testSignalHistory(t, open(t)) })
	t.Run("prune", func(t *testing.T) { testPrune(t, open(t)) })
	t.Run("process prune", func(t *testing.T) { testPruneProcess(t, open(t)) })
}

// testStateRows: reports read the saved states of a process's instances
// started in a window, of one definition version or all.
func testStateRows(t *testing.T, s Store) {
	ctx := t.Context()
	for i, in := range []struct {
		id, process string
		version     int
	}{{"s-1", "p", 1}, {"s-2", "p", 2}, {"s-3", "p", 1}, {"s-4", "q", 1}} {
		_, _, err := s.CreateInstance(ctx, store.Instance{ID: in.id, Process: in.process, ProcessVersion: in.version, BusinessKey: in.id, Input: []byte(`{}`), CreatedAt: t0.Add(time.Duration(i) * time.Minute)})
		must(t, err)
	}
	saveState(t, s, "s-1", "r", 1, json.RawMessage(`{"status":"completed"}`))
	saveState(t, s, "s-2", "r", 1, json.RawMessage(`{"status":"running"}`))
	read := func(version int, from, to time.Time) string {
		t.Helper()
		var got []string
		must(t, s.InstanceStates(ctx, "p", version, from, to, func(r store.StateRow) error {
			got = append(got, fmt.Sprintf("%s v%d %s %s", r.ID, r.Version, r.CreatedAt.Sub(t0), r.State))
			return nil
		}))
		slices.Sort(got)
		return strings.Join(got, "|")
	}
	if got, want := read(0, t0, t0.Add(time.Hour)), `s-1 v1 0s {"status":"completed"}|s-2 v2 1m0s {"status":"running"}|s-3 v1 2m0s `; got != want {
		t.Fatalf("states %q, want %q", got, want)
	}
	if got, want := read(1, t0.Add(time.Second), t0.Add(time.Hour)), `s-3 v1 2m0s `; got != want {
		t.Fatalf("states of v1 from a second on %q, want %q", got, want)
	}
}

func testSignals(t *testing.T, s Store) {
	ctx := t.Context()
	for i, v := range []float64{3, 5, 4} {
		must(t, s.AppendObservations(ctx, store.Observation{Process: "orders", Signal: "amount", At: t0.Add(time.Duration(i) * time.Minute), Value: v}))
	}
	must(t, s.AppendObservations(ctx, store.Observation{Process: "orders", Signal: "other", At: t0, Value: 9}))
	obs, err := s.Observations(ctx, "orders", "amount", t0.Add(time.Minute))
	must(t, err)
	if len(obs) != 2 || obs[0].Value != 5 || obs[1].Value != 4 || !obs[0].At.Equal(t0.Add(time.Minute)) || obs[0].Verdict != nil {
		t.Fatalf("observations %+v", obs)
	}
	// An instance's observation, and an arrival rate's of a boundary, is
	// kept once however often it is appended (a retried observer), with its
	// verdict.
	flagged := &store.SignalVerdict{Score: 0.9, Anomalous: true, Expected: 10, Low: 5, High: 15, Reason: "40 is unusual"}
	for range 2 {
		must(t, s.AppendObservations(ctx,
			store.Observation{Process: "orders", Signal: "total", At: t0, Value: 40, InstanceID: "i-1", Verdict: flagged},
			store.Observation{Process: "orders", Signal: "rate", At: t0, Value: 7, Verdict: &store.SignalVerdict{WarmingUp: true, Reason: "warming up"}},
			store.Observation{Process: "orders", Signal: "rate", At: t0.Add(10 * time.Minute), Value: 8, Verdict: &store.SignalVerdict{Score: 0.1, Recurring: true}}))
	}
	obs, err = s.Observations(ctx, "orders", "total", time.Time{})
	must(t, err)
	if len(obs) != 1 || obs[0].InstanceID != "i-1" || obs[0].Verdict == nil || *obs[0].Verdict != *flagged {
		t.Fatalf("an instance's observation appended twice: %+v", obs)
	}
	if o, err := s.InstanceObservation(ctx, "orders", "total", "i-1"); err != nil || o.Value != 40 || o.Verdict == nil || *o.Verdict != *flagged {
		t.Fatalf("the observation of instance i-1: %+v, %v", o, err)
	}
	if _, err := s.InstanceObservation(ctx, "orders", "total", "i-2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an instance that made none: %v", err)
	}
	obs, err = s.Observations(ctx, "orders", "rate", time.Time{})
	must(t, err)
	if len(obs) != 2 || !obs[0].Verdict.WarmingUp || obs[0].Verdict.Reason != "warming up" || !obs[1].Verdict.Recurring || obs[1].Verdict.Score != 0.1 || obs[1].InstanceID != "" {
		t.Fatalf("a rate's boundaries appended twice: %+v", obs)
	}
	// A large batch (a rate's five weeks) is kept whole.
	many := make([]store.Observation, 5040)
	for i := range many {
		many[i] = store.Observation{Process: "orders", Signal: "many", At: t0.Add(time.Duration(i) * time.Minute), Value: float64(i), Verdict: &store.SignalVerdict{}}
	}
	must(t, s.AppendObservations(ctx, many...))
	if obs, err = s.Observations(ctx, "orders", "many", time.Time{}); err != nil || len(obs) != len(many) || obs[len(many)-1].Value != float64(len(many)-1) {
		t.Fatalf("a batch of %d: %d kept, %v", len(many), len(obs), err)
	}
	st, err := s.DetectorState(ctx, "orders/amount")
	must(t, err)
	if st.Version != 0 || st.State != nil {
		t.Fatalf("unsaved detector %+v", st)
	}
	// Twenty workers update one detector at once, each reading, adding one
	// and saving with compare-and-swap, retrying on conflict: no update is
	// lost.
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				cur, err := s.DetectorState(ctx, "orders/amount")
				if err != nil {
					errs <- err
					return
				}
				var n int
				if cur.State != nil {
					if err := json.Unmarshal(cur.State, &n); err != nil {
						errs <- err
						return
					}
				}
				cur.State = []byte(fmt.Sprint(n + 1))
				_, err = s.SaveDetectorState(ctx, cur)
				if errors.Is(err, store.ErrConflict) {
					continue
				}
				if err != nil {
					errs <- err
				}
				return
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st, err = s.DetectorState(ctx, "orders/amount")
	must(t, err)
	if string(st.State) != "20" || st.Version != 20 {
		t.Fatalf("after 20 concurrent updates: state %s version %d", st.State, st.Version)
	}
	if _, err := s.SaveDetectorState(ctx, store.DetectorState{Key: "orders/amount", Version: 3, State: []byte("0")}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale save: %v", err)
	}
}

func testSignalHistory(t *testing.T, s Store) {
	ctx := t.Context()
	judged := func(at time.Duration, v, expected float64, anomalous bool) store.Observation {
		return store.Observation{Process: "orders", Signal: "amount", At: t0.Add(at), Value: v, InstanceID: fmt.Sprint("i-", at),
			Verdict: &store.SignalVerdict{Anomalous: anomalous, Expected: expected, Low: expected - 2, High: expected + 2, Reason: fmt.Sprint(v)}}
	}
	must(t, s.AppendObservations(ctx,
		judged(-time.Hour, 100, 10, true), // before the window
		store.Observation{Process: "orders", Signal: "amount", At: t0.Add(5 * time.Minute), Value: 4}, // recorded before verdicts
		judged(10*time.Minute, 10, 9, false),
		judged(20*time.Minute, 30, 11, true),
		judged(2*time.Hour+5*time.Minute, 50, 12, true),
		judged(2*time.Hour+6*time.Minute, 8, 12, false),
		judged(3*time.Hour, 60, 12, true), // at the window's end: after it
		store.Observation{Process: "orders", Signal: "other", At: t0.Add(time.Minute), Value: 1, Verdict: &store.SignalVerdict{Anomalous: true}},
		store.Observation{Process: "returns", Signal: "amount", At: t0.Add(time.Minute), Value: 1, Verdict: &store.SignalVerdict{Anomalous: true}},
	))
	q := store.SignalQuery{Process: "orders", Signal: "amount", Since: t0, Until: t0.Add(3 * time.Hour), Bucket: time.Hour, Flagged: 10}
	h, err := s.SignalHistory(ctx, q)
	must(t, err)
	if h.Observations != 5 || h.Anomalous != 2 || len(h.Periods) != 2 {
		t.Fatalf("history: %d observations, %d anomalous, periods %+v", h.Observations, h.Anomalous, h.Periods)
	}
	first, second := h.Periods[0], h.Periods[1]
	if !first.Start.Equal(t0) || first.Observations != 3 || first.Anomalous != 1 || first.Min != 4 || first.Max != 30 || math.Abs(first.Mean-44.0/3) > 1e-9 ||
		first.Baseline == nil || first.Baseline.Expected != 10 || first.Baseline.Low != 8 || first.Baseline.High != 12 {
		t.Fatalf("first period (the unjudged value counts, but not in the baseline): %+v %+v", first, first.Baseline)
	}
	if !second.Start.Equal(t0.Add(2*time.Hour)) || second.Observations != 2 || second.Anomalous != 1 || second.Mean != 29 || second.Baseline.Expected != 12 {
		t.Fatalf("second period: %+v", second)
	}
	if h.Latest == nil || h.Latest.Value != 8 || h.Latest.InstanceID != fmt.Sprint("i-", 2*time.Hour+6*time.Minute) || h.Latest.Verdict.Reason != "8" {
		t.Fatalf("latest before the window's end: %+v", h.Latest)
	}
	if len(h.Flagged) != 2 || h.Flagged[0].Value != 50 || h.Flagged[1].Value != 30 || !h.Flagged[0].Verdict.Anomalous || h.Flagged[0].Verdict.High != 14 {
		t.Fatalf("flagged, newest first: %+v", h.Flagged)
	}
	q.Flagged = 1
	if h, err = s.SignalHistory(ctx, q); err != nil || len(h.Flagged) != 1 || h.Flagged[0].Value != 50 {
		t.Fatalf("one flagged: %+v, %v", h.Flagged, err)
	}
	// Before any observation in the window: the latest is still known.
	q = store.SignalQuery{Process: "orders", Signal: "amount", Since: t0.Add(10 * time.Hour), Until: t0.Add(20 * time.Hour), Bucket: time.Hour, Flagged: 10}
	if h, err = s.SignalHistory(ctx, q); err != nil || h.Observations != 0 || len(h.Periods) != 0 || len(h.Flagged) != 0 || h.Latest == nil || h.Latest.Value != 60 {
		t.Fatalf("an empty window: %+v, %v", h, err)
	}
	if h, err = s.SignalHistory(ctx, store.SignalQuery{Process: "orders", Signal: "none", Since: t0, Until: t0.Add(time.Hour), Bucket: time.Hour, Flagged: 10}); err != nil || h.Latest != nil || h.Periods == nil {
		t.Fatalf("a signal never observed: %+v, %v", h, err)
	}

	// Pages of the raw observations, oldest first; two at the same time
	// keep their order across pages.
	same := t0.Add(10 * time.Minute)
	must(t, s.AppendObservations(ctx, store.Observation{Process: "orders", Signal: "amount", At: same, Value: 11, InstanceID: "i-same", Verdict: &store.SignalVerdict{}}))
	var values []float64
	f := store.ObservationFilter{Process: "orders", Signal: "amount", Since: t0, Until: t0.Add(3 * time.Hour), Limit: 2}
	for pages := 0; ; pages++ {
		page, err := s.ObservationPage(ctx, f)
		must(t, err)
		for _, o := range page {
			values = append(values, o.Value)
		}
		if len(page) < f.Limit || pages > 5 {
			break
		}
		f.After = store.ObservationCursor(page[len(page)-1])
	}
	if fmt.Sprint(values) != "[4 10 11 30 50 8]" {
		t.Fatalf("pages of observations: %v", values)
	}
	flaggedPage, err := s.ObservationPage(ctx, store.ObservationFilter{Process: "orders", Signal: "amount", Anomalous: true})
	must(t, err)
	if len(flaggedPage) != 4 || flaggedPage[0].Value != 100 || flaggedPage[3].Value != 60 || !flaggedPage[0].Verdict.Anomalous {
		t.Fatalf("every flagged observation: %+v", flaggedPage)
	}
	if _, err := s.ObservationPage(ctx, store.ObservationFilter{Process: "orders", Signal: "amount", After: "garbage"}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("a malformed cursor: %v", err)
	}
}

// unit is a vector of the store's dimension pointing mostly along axis a,
// leaning towards axis b by w.
func unit(dim, a, b int, w float32) []float32 {
	v := make([]float32, dim)
	v[a] = 1
	v[b] += w
	return v
}

func testExamples(t *testing.T, s Store) {
	ctx := t.Context()
	dim := s.EmbeddingDim()
	if dim < 8 {
		t.Fatalf("embedding dimension %d", dim)
	}
	put := func(id, classifier, label string, v []float32) {
		t.Helper()
		must(t, s.PutExample(ctx, store.Example{ID: id, Classifier: classifier, Text: "text " + id, Label: label, Fields: []byte(`{"k":1}`), Source: "seed", Embedding: v, CreatedAt: t0}))
	}
	put("e1", "emails", "refund", unit(dim, 0, 1, 0.1))
	put("e2", "emails", "complaint", unit(dim, 0, 1, 0.9))
	put("e3", "emails", "question", unit(dim, 2, 3, 0))
	put("e4", "notes", "refund", unit(dim, 0, 1, 0)) // another classifier
	version := func(classifier string) int64 {
		t.Helper()
		v, err := s.ExamplesVersion(ctx, classifier)
		must(t, err)
		return v
	}
	emails, notes := version("emails"), version("notes")
	if emails == 0 || notes == 0 || version("nobody") != 0 {
		t.Fatalf("examples versions: emails %d, notes %d, nobody %d", emails, notes, version("nobody"))
	}
	got, err := s.NearestExamples(ctx, "emails", unit(dim, 0, 1, 0), 2)
	must(t, err)
	if len(got) != 2 || got[0].ID != "e1" || got[1].ID != "e2" || got[0].Distance > got[1].Distance || got[0].Label != "refund" {
		t.Fatalf("nearest %+v", got)
	}
	if got[0].Text != "text e1" || string(got[0].Fields) != `{"k":1}` || len(got[0].Embedding) != dim || !got[0].CreatedAt.Equal(t0) {
		t.Fatalf("example not read back whole: %+v", got[0].Example)
	}
	// Replacing an example moves it; it changes the classifier's version
	// (though its time is the same), not another's, only when it teaches
	// something new (its label here), not when it is written again alike
	// (a retried write: no retraining for it).
	put("e2", "emails", "complaint", unit(dim, 0, 1, 0))
	if v := version("emails"); v != emails || version("notes") != notes {
		t.Fatalf("versions after the same example again: emails %d (was %d), notes %d (was %d)", v, emails, version("notes"), notes)
	}
	put("e2", "emails", "question", unit(dim, 0, 1, 0))
	if v := version("emails"); v == emails || version("notes") != notes {
		t.Fatalf("versions after a new label: emails %d (was %d), notes %d (was %d)", v, emails, version("notes"), notes)
	}
	put("e2", "emails", "complaint", unit(dim, 0, 1, 0))
	emails = version("emails")
	got, err = s.NearestExamples(ctx, "emails", unit(dim, 0, 1, 0), 3)
	must(t, err)
	if len(got) != 3 || got[0].ID != "e2" || got[2].ID != "e3" {
		t.Fatalf("after replace %+v", got)
	}
	listed, err := s.ExamplesOf(ctx, "emails")
	must(t, err)
	if len(listed) != 3 || listed[0].ID != "e1" || listed[1].Label != "complaint" || listed[0].Embedding != nil {
		t.Fatalf("examples of emails: %+v", listed)
	}
	if labels, err := s.ExampleLabels(ctx, "emails"); err != nil || !maps.Equal(labels, map[string]bool{"refund": true, "complaint": true, "question": true}) {
		t.Fatalf("labels of the emails' examples: %v %v", labels, err)
	}
	if labels, err := s.ExampleLabels(ctx, "nobody"); err != nil || len(labels) != 0 {
		t.Fatalf("labels of no examples: %v %v", labels, err)
	}
	// An example moved to another classifier changes both versions.
	put("e5", "notes", "refund", unit(dim, 4, 5, 0))
	notes = version("notes")
	put("e5", "emails", "refund", unit(dim, 4, 5, 0))
	if version("emails") == emails || version("notes") == notes {
		t.Fatalf("an example moved from notes to emails: versions %d (was %d) and %d (was %d)", version("emails"), emails, version("notes"), notes)
	}
	none, err := s.NearestExamples(ctx, "nobody", unit(dim, 0, 1, 0), 5)
	must(t, err)
	if len(none) != 0 {
		t.Fatalf("unknown classifier: %+v", none)
	}
	if err := s.PutExample(ctx, store.Example{ID: "bad", Classifier: "emails", Embedding: make([]float32, dim+1), CreatedAt: t0}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("wrong dimension stored: %v", err)
	}
	if _, err := s.NearestExamples(ctx, "emails", make([]float32, 3), 1); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("wrong query dimension: %v", err)
	}
	// A batch is written whole or not at all, and bumps a classifier's
	// version once.
	emails = version("emails")
	example := func(id, label string, v []float32) store.Example {
		return store.Example{ID: id, Classifier: "emails", Text: "text " + id, Label: label, Fields: []byte(`{"k":1}`), Source: "import", Embedding: v, CreatedAt: t0}
	}
	if err := s.PutExamples(ctx, []store.Example{example("b1", "refund", unit(dim, 6, 7, 0)), example("b2", "refund", make([]float32, dim+1))}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("a batch with a wrong dimension: %v", err)
	}
	if listed, _ := s.ExamplesOf(ctx, "emails"); len(listed) != 4 || version("emails") != emails {
		t.Fatalf("a refused batch left %d examples (want 4), version %d (was %d)", len(listed), version("emails"), emails)
	}
	must(t, s.PutExamples(ctx, []store.Example{example("b2", "refund", nil), example("b1", "refund", unit(dim, 6, 7, 0)), example("b3", "question", unit(dim, 6, 7, 1))}))
	if listed, _ := s.ExamplesOf(ctx, "emails"); len(listed) != 7 || version("emails") != emails+1 {
		t.Fatalf("after a batch of 3: %d examples (want 7), version %d (want %d)", len(listed), version("emails"), emails+1)
	}
	must(t, s.PutExamples(ctx, []store.Example{example("b1", "refund", unit(dim, 6, 7, 0)), example("b3", "question", unit(dim, 6, 7, 1))}))
	if version("emails") != emails+1 {
		t.Fatalf("a batch written again alike: version %d (want %d)", version("emails"), emails+1)
	}
	for _, id := range []string{"b1", "b2", "b3"} {
		must(t, s.DeleteExample(ctx, "emails", id))
	}
	// A deleted example is gone from its classifier's examples and from
	// the nearest, and changes its classifier's version, not another's.
	emails, notes = version("emails"), version("notes")
	if err := s.DeleteExample(ctx, "notes", "e1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an example deleted through another classifier: %v", err)
	}
	must(t, s.DeleteExample(ctx, "emails", "e1"))
	if version("emails") == emails || version("notes") != notes {
		t.Fatalf("versions after a delete: emails %d (was %d), notes %d (was %d)", version("emails"), emails, version("notes"), notes)
	}
	if err := s.DeleteExample(ctx, "emails", "e1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an example deleted twice: %v", err)
	}
	listed, err = s.ExamplesOf(ctx, "emails")
	must(t, err)
	got, err = s.NearestExamples(ctx, "emails", unit(dim, 0, 1, 0.1), 5)
	must(t, err)
	for _, e := range listed {
		if e.ID == "e1" {
			t.Fatalf("a deleted example is listed: %+v", listed)
		}
	}
	if len(listed) != 3 || len(got) != 3 {
		t.Fatalf("after a delete: %d examples, %d nearest", len(listed), len(got))
	}

	// An example stored without an embedding (the provider down) is a
	// classifier's example at once, not a neighbour until it is embedded.
	emails = version("emails")
	put("e6", "emails", "refund", nil)
	if version("emails") == emails {
		t.Fatal("an example without an embedding did not change its classifier's version")
	}
	nearest := func() []string {
		t.Helper()
		got, err := s.NearestExamples(ctx, "emails", unit(dim, 6, 7, 0), 10)
		must(t, err)
		var ids []string
		for _, n := range got {
			ids = append(ids, n.ID)
		}
		return ids
	}
	listed, err = s.ExamplesOf(ctx, "emails")
	must(t, err)
	if len(listed) != 4 || slices.Contains(nearest(), "e6") {
		t.Fatalf("an example without an embedding: listed %+v, nearest %v", listed, nearest())
	}
	toEmbed, err := s.ExamplesToEmbed(ctx, 10)
	must(t, err)
	if len(toEmbed) != 1 || toEmbed[0].ID != "e6" || toEmbed[0].Text != "text e6" || toEmbed[0].Classifier != "emails" {
		t.Fatalf("examples to embed: %+v", toEmbed)
	}
	if ok, err := s.SetExampleEmbedding(ctx, "e6", "another text", unit(dim, 6, 7, 0)); err != nil || ok {
		t.Fatalf("an embedding of another text was set: %v %v", ok, err)
	}
	if _, err := s.SetExampleEmbedding(ctx, "e6", "text e6", make([]float32, dim+1)); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("an embedding of another dimension: %v", err)
	}
	if ok, err := s.SetExampleEmbedding(ctx, "e6", "text e6", unit(dim, 6, 7, 0)); err != nil || !ok {
		t.Fatalf("set the embedding: %v %v", ok, err)
	}
	if ok, err := s.SetExampleEmbedding(ctx, "e6", "text e6", unit(dim, 0, 1, 0)); err != nil || ok {
		t.Fatalf("an embedding set twice: %v %v", ok, err)
	}
	if ids := nearest(); len(ids) == 0 || ids[0] != "e6" {
		t.Fatalf("the embedded example is not the nearest: %v", ids)
	}
	// Stored again without one (a lesson while the provider is down), it
	// keeps the embedding its text has.
	put("e6", "emails", "complaint", nil)
	if ids := nearest(); len(ids) == 0 || ids[0] != "e6" {
		t.Fatalf("an example stored again without an embedding lost its own: %v", ids)
	}
	if toEmbed, err := s.ExamplesToEmbed(ctx, 10); err != nil || len(toEmbed) != 0 {
		t.Fatalf("examples to embed after: %+v %v", toEmbed, err)
	}
}

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testKeys(t *testing.T, s Store) {
	ctx := t.Context()
	k := store.APIKey{ID: "key_1", Name: "erp", Role: store.RoleSystem, Hash: "h1", CreatedAt: t0}
	must(t, s.PutKey(ctx, k))
	must(t, s.PutKey(ctx, store.APIKey{ID: "key_2", Name: "dup", Role: store.RoleAdmin, Hash: "h1", CreatedAt: t0}))
	got, err := s.KeyByHash(ctx, "h1")
	must(t, err)
	if got.ID != "key_1" || got.Role != store.RoleSystem || !got.CreatedAt.Equal(t0) {
		t.Fatalf("key %+v: a second key with the same hash must not replace the first", got)
	}
	if _, err := s.KeyByHash(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown hash: %v", err)
	}

	// A key limited to processes, with an expiry.
	exp := t0.Add(24 * time.Hour)
	must(t, s.PutKey(ctx, store.APIKey{ID: "key_3", Name: "pos", Role: store.RoleSystem, Hash: "h3", CreatedAt: t0.Add(time.Minute), ExpiresAt: &exp, Processes: []string{"orders", "returns"}}))
	k3, err := s.Key(ctx, "key_3")
	must(t, err)
	if k3.ExpiresAt == nil || !k3.ExpiresAt.Equal(exp) || fmt.Sprint(k3.Processes) != "[orders returns]" || k3.Usable(t0) != nil || k3.Usable(exp) == nil ||
		!k3.Allows("orders") || k3.Allows("payroll") {
		t.Fatalf("limited key %+v", k3)
	}
	all, err := s.Keys(ctx)
	must(t, err)
	if len(all) != 2 || all[0].ID != "key_1" || all[0].Processes != nil || !all[0].Allows("payroll") {
		t.Fatalf("keys %+v", all)
	}

	// Rotation replaces the secret: the old hash no longer finds the key.
	rot, err := s.RotateKey(ctx, "key_1", "h1b", t0.Add(time.Hour))
	must(t, err)
	if rot.RotatedAt == nil || rot.ID != "key_1" {
		t.Fatalf("rotated %+v", rot)
	}
	if _, err := s.KeyByHash(ctx, "h1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("old secret after rotation: %v", err)
	}
	if k, err := s.KeyByHash(ctx, "h1b"); err != nil || k.ID != "key_1" {
		t.Fatalf("new secret: %+v %v", k, err)
	}
	// Revocation is for good; a revoked key cannot be rotated back to life.
	rev, err := s.RevokeKey(ctx, "key_1", t0.Add(2*time.Hour))
	must(t, err)
	again, err := s.RevokeKey(ctx, "key_1", t0.Add(3*time.Hour))
	must(t, err)
	if rev.RevokedAt == nil || !again.RevokedAt.Equal(t0.Add(2*time.Hour)) || again.Usable(t0.Add(3*time.Hour)) == nil {
		t.Fatalf("revoked %+v then %+v", rev, again)
	}
	if _, err := s.RotateKey(ctx, "key_1", "h1c", t0.Add(4*time.Hour)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("rotated a revoked key: %v", err)
	}
	if _, err := s.RevokeKey(ctx, "nope", t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoked an unknown key: %v", err)
	}
}

func testDefinitions(t *testing.T, s Store) {
	ctx := t.Context()
	d := store.DefinitionRecord{Name: "orders", Version: 1, Doc: []byte(`{"name":"orders"}`), Digest: "a", Author: "eng", CreatedAt: t0}
	created, err := s.PutDefinition(ctx, d)
	must(t, err)
	if !created {
		t.Fatal("first put not created")
	}
	if created, err = s.PutDefinition(ctx, d); err != nil || created {
		t.Fatalf("same content again: created %v err %v", created, err)
	}
	d2 := d
	d2.Digest = "b"
	if _, err := s.PutDefinition(ctx, d2); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("other content, same version: %v", err)
	}
	d2.Version = 2
	_, err = s.PutDefinition(ctx, d2)
	must(t, err)
	latest, err := s.Definition(ctx, "orders", 0)
	must(t, err)
	if latest.Version != 2 {
		t.Fatalf("latest version %d", latest.Version)
	}
	v1, err := s.Definition(ctx, "orders", 1)
	must(t, err)
	if v1.Digest != "a" || string(v1.Doc) != `{"name":"orders"}` {
		t.Fatalf("v1 %+v", v1)
	}
	if _, err := s.Definition(ctx, "nope", 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
	_, err = s.PutDefinition(ctx, store.DefinitionRecord{Name: "alpha", Version: 1, Doc: []byte(`{}`), Digest: "x", CreatedAt: t0})
	must(t, err)
	all, err := s.Definitions(ctx)
	must(t, err)
	if len(all) != 2 || all[0].Name != "alpha" || all[1].Name != "orders" || all[1].Version != 2 {
		t.Fatalf("definitions %+v", all)
	}
}

func testPolicies(t *testing.T, s Store) {
	ctx := t.Context()
	began := time.Now().Add(-time.Second)
	stamp0, err := s.PolicyStamp(ctx, "orders")
	must(t, err)
	p := store.PolicyRecord{ID: "peak", Process: "orders", Doc: []byte(`{"id":"peak"}`), Digest: "a", Author: "eng", CreatedAt: t0}
	rec, created, err := s.PutPolicy(ctx, p, store.ModeActive)
	must(t, err)
	if !created || rec.Version != 1 || rec.Hash == "" || rec.PrevHash != "" {
		t.Fatalf("first put: %+v created %v", rec, created)
	}
	rec, created, err = s.PutPolicy(ctx, p, store.ModeActive)
	must(t, err)
	if created || rec.Version != 1 {
		t.Fatalf("unchanged put: %+v created %v", rec, created)
	}
	stamp1, err := s.PolicyStamp(ctx, "orders")
	must(t, err)
	// A changed version registered in shadow mode leaves v1 active.
	p.Digest, p.Doc = "b", []byte(`{"id":"peak","v":2}`)
	rec, created, err = s.PutPolicy(ctx, p, store.ModeShadow)
	must(t, err)
	if !created || rec.Version != 2 {
		t.Fatalf("shadow put: %+v created %v", rec, created)
	}
	live, stamp2, err := s.ActivePolicies(ctx, "orders")
	must(t, err)
	if len(live) != 2 || live[0].Version != 1 || live[0].Mode != store.ModeActive || live[1].Version != 2 || live[1].Mode != store.ModeShadow {
		t.Fatalf("live %+v", live)
	}
	if stamp0 >= stamp1 || stamp1 >= stamp2 {
		t.Fatalf("stamps %d %d %d must grow with each change", stamp0, stamp1, stamp2)
	}
	// Promote v2, then roll back to v1.
	st, err := s.SetPolicyMode(ctx, "peak", 2, store.ModeActive, "lead", "promote")
	must(t, err)
	if st.Active != 2 || st.Shadow != 0 || st.ChangedBy != "lead" || st.Latest != 2 {
		t.Fatalf("after promote %+v", st)
	}
	st, err = s.SetPolicyMode(ctx, "peak", 1, store.ModeActive, "lead", "roll back")
	must(t, err)
	if st.Active != 1 || st.Mode() != store.ModeActive {
		t.Fatalf("after rollback %+v", st)
	}
	st, err = s.SetPolicyMode(ctx, "peak", 0, store.ModeDisabled, "lead", "off")
	must(t, err)
	if st.Mode() != store.ModeDisabled {
		t.Fatalf("after disable %+v", st)
	}
	live, stamp3, err := s.ActivePolicies(ctx, "orders")
	must(t, err)
	stampNow, err := s.PolicyStamp(ctx, "orders")
	must(t, err)
	if len(live) != 0 || stamp3 != stampNow || stamp3 <= stamp2 {
		t.Fatalf("disabled: live %+v, stamps %d %d (must agree and grow)", live, stamp3, stampNow)
	}
	if _, err := s.SetPolicyMode(ctx, "peak", 9, store.ModeActive, "lead", ""); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown version: %v", err)
	}
	if _, err := s.SetPolicyMode(ctx, "nope", 1, store.ModeActive, "lead", ""); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown policy: %v", err)
	}
	versions, err := s.PolicyVersions(ctx, "peak")
	must(t, err)
	if len(versions) != 2 || versions[1].PrevHash != versions[0].Hash {
		t.Fatalf("versions %+v", versions)
	}
	v1, err := s.PolicyVersion(ctx, "peak", 1)
	must(t, err)
	if string(v1.Doc) != `{"id":"peak"}` || v1.Author != "eng" || store.PolicyVersionHash(v1) != v1.Hash {
		t.Fatalf("v1 %+v", v1)
	}
	other := p
	other.Process, other.Digest = "returns", "c"
	if _, _, err := s.PutPolicy(ctx, other, store.ModeActive); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("moving a policy to another process: %v", err)
	}
	_, _, err = s.PutPolicy(ctx, store.PolicyRecord{ID: "alpha", Process: "orders", Doc: []byte(`{}`), Digest: "z", CreatedAt: t0}, store.ModeActive)
	must(t, err)
	states, err := s.PolicyStates(ctx, "orders")
	must(t, err)
	if len(states) != 2 || states[0].ID != "alpha" || states[1].ID != "peak" {
		t.Fatalf("states %+v", states)
	}
	var chain []store.PolicyRecord
	must(t, s.ScanPolicyVersions(ctx, func(p store.PolicyRecord) error { chain = append(chain, p); return nil }))
	for i, p := range chain {
		if store.PolicyVersionHash(p) != p.Hash || (i > 0 && p.PrevHash != chain[i-1].Hash) {
			t.Fatalf("policy version chain broken at %d: %+v", i, p)
		}
	}
	// Every change of what is live, in order, attributed; none elsewhere.
	changes, err := s.PolicyChanges(ctx, "orders", began, time.Now().Add(time.Second))
	must(t, err)
	var got []string
	for _, c := range changes {
		if c.At.Before(began) {
			t.Fatalf("change %+v before the test began", c)
		}
		got = append(got, fmt.Sprintf("%s@%d %s %s %s", c.PolicyID, c.Version, c.Mode, c.Author, c.Note))
	}
	want := []string{"peak@1 active eng ", "peak@2 shadow eng ", "peak@2 active lead promote", "peak@1 active lead roll back", "peak@0 disabled lead off", "alpha@1 active  "}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("changes\n%q\nwant\n%q", got, want)
	}
	if changes, err := s.PolicyChanges(ctx, "returns", began, time.Now().Add(time.Second)); err != nil || len(changes) != 0 {
		t.Fatalf("another process's changes: %+v %v", changes, err)
	}
	if changes, err := s.PolicyChanges(ctx, "orders", time.Now().Add(time.Second), time.Now().Add(time.Hour)); err != nil || len(changes) != 0 {
		t.Fatalf("changes after the window: %+v %v", changes, err)
	}
}

// testPolicyCanary: a canary is the shadow version with the share of
// instances it applies to; it is read with the live versions, logged, and
// ended by promoting it, demoting it to a plain shadow or disabling.
func testPolicyCanary(t *testing.T, s Store) {
	ctx := t.Context()
	began := time.Now().Add(-time.Second)
	p := store.PolicyRecord{ID: "c", Process: "orders", Doc: []byte(`{"id":"c"}`), Digest: "a", Author: "eng", CreatedAt: t0}
	_, _, err := s.PutPolicy(ctx, p, store.ModeActive)
	must(t, err)
	p.Digest, p.Doc = "b", []byte(`{"id":"c","v":2}`)
	_, _, err = s.PutPolicy(ctx, p, store.ModeShadow)
	must(t, err)
	stamp, err := s.PolicyStamp(ctx, "orders")
	must(t, err)
	st, err := s.SetPolicyCanary(ctx, "c", 2, 20, "lead", "try on a fifth")
	must(t, err)
	if st.Active != 1 || st.Shadow != 2 || st.ShadowPercent != 20 || st.ChangedBy != "lead" {
		t.Fatalf("canary state %+v", st)
	}
	live, stamp2, err := s.ActivePolicies(ctx, "orders")
	must(t, err)
	if len(live) != 2 || live[0].Version != 1 || live[0].Percent != 0 || live[1].Version != 2 || live[1].Mode != store.ModeShadow || live[1].Percent != 20 || stamp2 <= stamp {
		t.Fatalf("live %+v, stamp %d after %d", live, stamp2, stamp)
	}
	for _, bad := range []struct{ version, percent int }{{1, 20}, {2, 0}, {2, 100}} {
		if _, err := s.SetPolicyCanary(ctx, "c", bad.version, bad.percent, "lead", ""); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("canary of v%d at %d%%: %v, want a conflict", bad.version, bad.percent, err)
		}
	}
	if _, err := s.SetPolicyCanary(ctx, "c", 9, 20, "lead", ""); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("canary of an unknown version: %v", err)
	}
	if st, err = s.SetPolicyMode(ctx, "c", 2, store.ModeShadow, "lead", "back to shadow"); err != nil || st.Shadow != 2 || st.ShadowPercent != 0 {
		t.Fatalf("demoted: %+v %v", st, err)
	}
	_, err = s.SetPolicyCanary(ctx, "c", 2, 30, "lead", "")
	must(t, err)
	if st, err = s.SetPolicyMode(ctx, "c", 2, store.ModeActive, "lead", "promote"); err != nil || st.Active != 2 || st.Shadow != 0 || st.ShadowPercent != 0 {
		t.Fatalf("promoted: %+v %v", st, err)
	}

	// A canary with a guard keeps it until it ends; a change judged on a
	// state the policy has left since is a conflict, and changes nothing.
	p.Digest, p.Doc = "c", []byte(`{"id":"c","v":3}`)
	_, _, err = s.PutPolicy(ctx, p, store.ModeShadow)
	must(t, err)
	rise := 0.05
	guard := &store.CanaryGuard{MaxErrorRateIncrease: &rise, MinInstances: 40, PromoteAfter: "2d"}
	st, err = s.ChangePolicyMode(ctx, "c", store.PolicyModeChange{Version: 3, Mode: store.ModeCanary, Percent: 10, Guard: guard, Author: "lead", Note: "guarded"})
	must(t, err)
	if read, err := s.PolicyState(ctx, "c"); err != nil || read.Guard == nil || *read.Guard.MaxErrorRateIncrease != 0.05 || read.Guard.MinInstances != 40 || read.Guard.PromoteAfter != "2d" || read.Guard.MaxReviewRateIncrease != nil {
		t.Fatalf("a guarded canary: %+v %v", read, err)
	}
	// Another version made active meanwhile: the canary goes on, guarded.
	if st, err = s.SetPolicyMode(ctx, "c", 1, store.ModeActive, "lead", "v1 again"); err != nil || st.Active != 1 || st.Shadow != 3 || st.ShadowPercent != 10 || st.Guard == nil || st.Guard.MinInstances != 40 {
		t.Fatalf("the canary after another version was activated: %+v %v", st, err)
	}
	if ids, err := s.GuardedCanaries(ctx); err != nil || fmt.Sprint(ids) != "[c]" {
		t.Fatalf("guarded canaries %v, %v", ids, err)
	}
	stale := st.ChangedAt.Add(-time.Millisecond)
	if _, err := s.ChangePolicyMode(ctx, "c", store.PolicyModeChange{Version: 3, Mode: store.ModeShadow, Expect: &stale, Author: "canary-guard"}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a change judged on an older state: %v, want a conflict", err)
	}
	if st, err = s.ChangePolicyMode(ctx, "c", store.PolicyModeChange{Version: 3, Mode: store.ModeShadow, Expect: &st.ChangedAt, Author: "canary-guard", Note: "rolled back"}); err != nil || st.Shadow != 3 || st.ShadowPercent != 0 || st.Guard != nil || st.Active != 1 {
		t.Fatalf("rolled back by its guard: %+v %v", st, err)
	}
	if ids, err := s.GuardedCanaries(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("guarded canaries after the rollback %v, %v", ids, err)
	}
	changes, err := s.PolicyChanges(ctx, "orders", began, time.Now().Add(time.Second))
	must(t, err)
	var got []string
	for _, c := range changes {
		got = append(got, fmt.Sprintf("%d %s %d", c.Version, c.Mode, c.Percent))
	}
	if want := "1 active 0|2 shadow 0|2 canary 20|2 shadow 0|2 canary 30|2 active 0|3 shadow 0|3 canary 10|1 active 10|3 shadow 0"; strings.Join(got, "|") != want {
		t.Fatalf("changes %q, want %q", strings.Join(got, "|"), want)
	}
}

func testInstances(t *testing.T, s Store) {
	ctx := t.Context()
	in := store.Instance{ID: "i1", Process: "orders", ProcessVersion: 1, BusinessKey: "bk", Input: []byte(`{"a":1}`), CreatedBy: "erp", CreatedAt: t0}
	got, created, err := s.CreateInstance(ctx, in)
	must(t, err)
	if !created || got.ID != "i1" {
		t.Fatalf("create %+v %v", got, created)
	}
	again := in
	again.ID, again.Input = "i2", []byte(`{"a":2}`)
	got, created, err = s.CreateInstance(ctx, again)
	must(t, err)
	if created || got.ID != "i1" || string(got.Input) != `{"a":1}` {
		t.Fatalf("same business key: %+v created %v", got, created)
	}
	if _, err := s.Instance(ctx, "i2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("i2: %v", err)
	}
	for h := range 30 {
		for j := range h % 3 {
			id := fmt.Sprintf("h%d-%d", h, j)
			_, _, err := s.CreateInstance(ctx, store.Instance{ID: id, Process: "rate", ProcessVersion: 1, BusinessKey: id, Input: []byte(`{}`), CreatedAt: t0.Add(time.Duration(h)*time.Hour + time.Minute)})
			must(t, err)
		}
	}
	counts, err := s.StartCounts(ctx, "rate", t0.Add(-5*time.Hour), t0.Add(30*time.Hour), time.Hour)
	must(t, err)
	// Hour 0 has no starts (0 % 3), but the process started before the
	// window's hour 6 ... the first start is in hour 1 of the process.
	want := []int{}
	for h := 1; h < 30; h++ {
		want = append(want, h%3)
	}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Fatalf("hourly starts %v, want %v", counts, want)
	}
	counts, err = s.StartCounts(ctx, "rate", t0.Add(3*time.Hour), t0.Add(6*time.Hour), time.Hour)
	must(t, err)
	if fmt.Sprint(counts) != "[0 1 2]" {
		t.Fatalf("window after the first start: %v", counts)
	}
	// Ten-minute buckets: hour 3 has no start, hour 4 one, a minute past it.
	counts, err = s.StartCounts(ctx, "rate", t0.Add(3*time.Hour), t0.Add(5*time.Hour), 10*time.Minute)
	must(t, err)
	if fmt.Sprint(counts) != "[0 0 0 0 0 0 1 0 0 0 0 0]" {
		t.Fatalf("ten-minute buckets: %v", counts)
	}
	if _, err := s.StartCounts(ctx, "rate", t0, t0.Add(time.Hour), 0); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("a zero bucket: %v", err)
	}
}

// An instance stored with a pending start is found by PendingStarts, oldest
// first and only once old enough, until MarkStarted; the flag survives a
// reread and a repeated create.
func testPendingStarts(t *testing.T, s Store) {
	ctx := t.Context()
	for i, id := range []string{"p3", "p1", "p2", "done"} {
		_, _, err := s.CreateInstance(ctx, store.Instance{ID: id, Process: "p", ProcessVersion: 1, BusinessKey: id, Input: []byte(`{"n":1}`),
			CreatedAt: t0.Add(time.Duration(3-i) * time.Minute), PendingStart: id != "done"})
		must(t, err)
	}
	ids := func(before time.Time, limit int) string {
		got, err := s.PendingStarts(ctx, before, limit)
		must(t, err)
		var out []string
		for _, in := range got {
			if !in.PendingStart || string(in.Input) != `{"n":1}` {
				t.Fatalf("pending %+v", in)
			}
			out = append(out, in.ID)
		}
		return fmt.Sprint(out)
	}
	if got := ids(t0.Add(time.Hour), 10); got != "[p2 p1 p3]" {
		t.Fatalf("pending starts %s, want oldest first without the started one", got)
	}
	if got := ids(t0.Add(time.Hour), 2); got != "[p2 p1]" {
		t.Fatalf("limit: %s", got)
	}
	if got := ids(t0.Add(2*time.Minute+time.Second), 10); got != "[p2 p1]" {
		t.Fatalf("before: %s (p3 is not old enough)", got)
	}
	in, err := s.Instance(ctx, "p1")
	must(t, err)
	if !in.PendingStart {
		t.Fatal("Instance lost the pending flag")
	}
	must(t, s.MarkStarted(ctx, []string{"p1"}))
	must(t, s.MarkStarted(ctx, []string{"p1", "nobody"}))
	must(t, s.MarkStarted(ctx, nil))
	if got := ids(t0.Add(time.Hour), 10); got != "[p2 p3]" {
		t.Fatalf("after MarkStarted: %s", got)
	}
	// While p is paused its pending starts are held; another process's
	// are not (q's is newer than p's, so no sweep waits behind them).
	_, _, err = s.CreateInstance(ctx, store.Instance{ID: "q1", Process: "q", ProcessVersion: 1, BusinessKey: "q1", Input: []byte(`{"n":1}`), CreatedAt: t0.Add(10 * time.Minute), PendingStart: true})
	must(t, err)
	must(t, s.SetProcessState(ctx, store.ProcessState{Process: "p", Paused: true, ChangedBy: "ann", ChangedAt: t0, Note: "partner down"}))
	if got := ids(t0.Add(time.Hour), 2); got != "[q1]" {
		t.Fatalf("p paused: %s", got)
	}
	if sts, err := s.ProcessStates(ctx, ""); err != nil || len(sts) != 1 || !sts[0].Paused || sts[0].ChangedBy != "ann" || !sts[0].ChangedAt.Equal(t0) || sts[0].Note != "partner down" {
		t.Fatalf("process states %+v %v", sts, err)
	}
	// A process step's instance, held while p is paused, waits for its
	// parent's workflow to start it: the sweep never takes it.
	_, _, err = s.CreateInstance(ctx, store.Instance{ID: "child", Process: "p", ProcessVersion: 1, BusinessKey: "sub:x:kyc", Input: []byte(`{"n":1}`),
		CreatedBy: "parent:x/kyc", CreatedAt: t0, PendingStart: true})
	must(t, err)
	must(t, s.SetProcessState(ctx, store.ProcessState{Process: "p", Paused: false, ChangedBy: "bob", ChangedAt: t0.Add(time.Hour)}))
	if got := ids(t0.Add(time.Hour), 10); got != "[p2 p3 q1]" {
		t.Fatalf("p resumed: %s", got)
	}
	if sts, err := s.ProcessStates(ctx, "p"); err != nil || len(sts) != 1 || sts[0].Paused || sts[0].ChangedBy != "bob" {
		t.Fatalf("p's state %+v %v", sts, err)
	}
	must(t, s.MarkStarted(ctx, []string{"q1"}))
	// A state saved by the workflow shows that it exists.
	saveState(t, s, "p3", "run-a", 1, json.RawMessage(`{"status":"running"}`))
	if got := ids(t0.Add(time.Hour), 10); got != "[p2]" {
		t.Fatalf("after a state save: %s", got)
	}
	ids3 := []string{"p2"}
	for i := range 300 { // a long list, ids that match nothing among them
		ids3 = append(ids3, fmt.Sprintf("other-%d", i))
	}
	must(t, s.MarkStarted(ctx, ids3))
	if got := ids(t0.Add(time.Hour), 10); got != "[]" {
		t.Fatalf("after marking a batch: %s", got)
	}
	// A retried create of a started instance returns it as started.
	again, created, err := s.CreateInstance(ctx, store.Instance{ID: "p1", Process: "p", ProcessVersion: 1, BusinessKey: "p1", Input: []byte(`{}`), CreatedAt: t0, PendingStart: true})
	must(t, err)
	if created || again.PendingStart {
		t.Fatalf("retried create: %+v created %v", again, created)
	}
}

// The projection of an instance's state keeps the latest save of the
// latest run, whatever order the saves arrive in.
func testInstanceStates(t *testing.T, s Store) {
	ctx := t.Context()
	_, _, err := s.CreateInstance(ctx, store.Instance{ID: "st-1", Process: "p", ProcessVersion: 1, BusinessKey: "k", Input: []byte(`{}`), CreatedAt: time.Now(),
		State: json.RawMessage(`{"status":"starting"}`)})
	must(t, err)
	_, _, err = s.CreateInstance(ctx, store.Instance{ID: "st-old", Process: "p", ProcessVersion: 1, BusinessKey: "old", Input: []byte(`{}`), CreatedAt: time.Now()})
	must(t, err)
	state := func(id string) (string, string, int64) {
		t.Helper()
		in, err := s.Instance(ctx, id)
		must(t, err)
		return string(in.State), in.StateRun, in.StateSeq
	}
	if st, run, seq := state("st-1"); st != `{"status":"starting"}` || run != "" || seq != 0 {
		t.Fatalf("initial state %q %q %d", st, run, seq)
	}
	if st, _, _ := state("st-old"); st != "" {
		t.Fatalf("an instance without a saved state reads %q", st)
	}
	saveState(t, s, "st-1", "run-a", 2, json.RawMessage(`{"status":"running","n":2}`))
	saveState(t, s, "st-1", "run-a", 1, json.RawMessage(`{"status":"running","n":1}`))  // late: ignored
	saveState(t, s, "st-1", "run-a", 2, json.RawMessage(`{"status":"running","n":22}`)) // retried: ignored
	if st, run, seq := state("st-1"); st != `{"status":"running","n":2}` || run != "run-a" || seq != 2 {
		t.Fatalf("after saves 2 then 1: %q %q %d", st, run, seq)
	}
	saveState(t, s, "st-1", "run-b", 1, json.RawMessage(`{"status":"completed"}`)) // a new run
	if st, run, seq := state("st-1"); st != `{"status":"completed"}` || run != "run-b" || seq != 1 {
		t.Fatalf("after a new run: %q %q %d", st, run, seq)
	}
	// A final state saved with the time it was reached (a workflow that
	// ended while the store was behind it) finishes the instance then.
	_, _, err = s.CreateInstance(ctx, store.Instance{ID: "st-late", Process: "p", ProcessVersion: 1, BusinessKey: "late", Input: []byte(`{}`), CreatedAt: t0})
	must(t, err)
	f, err := s.SaveInstanceStateAt(ctx, "st-late", "run-a", 3, json.RawMessage(`{"status":"completed"}`), t0.Add(5*time.Minute))
	must(t, err)
	late, err := s.Instance(ctx, "st-late")
	must(t, err)
	if f == nil || f.Status != "completed" || f.CycleTime != 5*time.Minute || !late.FinishedAt.Equal(t0.Add(5*time.Minute)) {
		t.Fatalf("a final state saved at its time: %+v, finished %v", f, late.FinishedAt)
	}
	saveState(t, s, "nobody", "run-a", 1, json.RawMessage(`{}`))
	if _, err := s.Instance(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a save for an instance without a row made one: %v", err)
	}
}

// testOutcomes: an instance's status follows its saved state (through
// either save path), its finish time is that of the first save of a final
// status, and its reviews are counted; only the process's instances started
// in the window are read.
func testOutcomes(t *testing.T, s Store) {
	ctx := t.Context()
	for i, id := range []string{"o-run", "o-done", "o-failed", "o-new", "o-later"} {
		_, _, err := s.CreateInstance(ctx, store.Instance{ID: id, Process: "p", ProcessVersion: 1 + i%2, BusinessKey: id, Input: []byte(`{}`), CreatedAt: t0.Add(time.Duration(i) * time.Minute)})
		must(t, err)
	}
	_, _, err := s.CreateInstance(ctx, store.Instance{ID: "o-other", Process: "q", ProcessVersion: 1, BusinessKey: "x", Input: []byte(`{}`), CreatedAt: t0})
	must(t, err)
	if f := saveState(t, s, "o-run", "r", 1, json.RawMessage(`{"status":"waiting_review"}`)); f != nil {
		t.Fatalf("a save of a running instance reports a finish: %+v", f)
	}
	before := time.Now()
	saveState(t, s, "o-done", "r", 1, json.RawMessage(`{"status":"running"}`))
	f := saveState(t, s, "o-done", "r", 2, json.RawMessage(`{"status":"completed"}`))
	after := time.Now()
	// The first save of a final status reports the finish, with the time
	// from the start (t0 + 1m).
	if f == nil || f.Process != "p" || f.Status != store.InstanceCompleted || f.CycleTime < before.Sub(t0.Add(time.Minute))-time.Millisecond || f.CycleTime > after.Sub(t0.Add(time.Minute)) {
		t.Fatalf("finish %+v", f)
	}
	if f := saveState(t, s, "o-done", "r", 2, json.RawMessage(`{"status":"completed","retried":true}`)); f != nil {
		t.Fatalf("a retried save reports the finish again: %+v", f)
	}
	d := decision("r-failed", 1, "")
	d.InstanceID = "o-failed"
	_, err = s.AppendDecisionWithState(ctx, d, &store.StateSave{InstanceID: "o-failed", RunID: "r-failed", Seq: 1, State: json.RawMessage(`{"status":"failed","error":"x"}`)})
	must(t, err)
	if f := saveState(t, s, "o-done", "r", 3, json.RawMessage(`{"status":"completed","n":3}`)); f != nil { // a later save keeps the first finish time
		t.Fatalf("a later save of the final status reports the finish again: %+v", f)
	}
	decided := t0.Add(time.Hour)
	for _, r := range []store.Review{
		{ID: "ra", InstanceID: "o-run"},
		{ID: "rb", InstanceID: "o-done"},
		{ID: "rc", InstanceID: "o-done"},
		// Stamped by a worker whose clock is behind: before its instance,
		// and before the window.
		{ID: "rs", InstanceID: "o-failed", CreatedAt: t0.Add(-30 * time.Second)},
	} {
		r.RunID, r.Process, r.Step, r.Queue = "r", "p", "s", "q"
		if r.CreatedAt.IsZero() {
			r.CreatedAt = t0.Add(time.Minute)
		}
		_, err := s.CreateReview(ctx, r)
		must(t, err)
	}
	_, err = s.CloseReview(ctx, store.Review{ID: "rb", Status: store.ReviewDecided, Verdict: store.VerdictApprove, Reviewer: "ann", DecidedAt: &decided})
	must(t, err)
	_, err = s.CloseReview(ctx, store.Review{ID: "rc", Status: store.ReviewExpired, Reviewer: "sla", DecidedAt: &decided})
	must(t, err)

	var got []store.InstanceOutcome
	must(t, s.Outcomes(ctx, "p", t0, t0.Add(4*time.Minute), func(o store.InstanceOutcome) error { got = append(got, o); return nil }))
	if len(got) != 4 {
		t.Fatalf("%d outcomes in the window, want 4 (o-later is after it, o-other another process): %+v", len(got), got)
	}
	slices.SortFunc(got, func(a, b store.InstanceOutcome) int { return a.CreatedAt.Compare(b.CreatedAt) }) // they come in no particular order
	run, done, failed, fresh := got[0], got[1], got[2], got[3]
	if run.ID != "o-run" || done.ID != "o-done" || failed.ID != "o-failed" || fresh.ID != "o-new" {
		t.Fatalf("outcomes out of order: %+v", got)
	}
	if run.Status != "waiting_review" || !run.FinishedAt.IsZero() || run.Reviews != 1 || run.Decided != 0 || run.Expired != 0 || run.ReviewWait != 0 || run.Version != 1 || !run.CreatedAt.Equal(t0) {
		t.Fatalf("running instance: %+v", run)
	}
	if done.Status != store.InstanceCompleted || done.FinishedAt.Before(before.Truncate(time.Microsecond)) || done.FinishedAt.After(after) || done.Version != 2 {
		t.Fatalf("completed instance: %+v (finished between %v and %v)", done, before, after)
	}
	if done.Reviews != 2 || done.Decided != 1 || done.Expired != 1 || done.ReviewWait != 59*time.Minute {
		t.Fatalf("reviews of the completed instance: %+v", done)
	}
	if failed.Status != store.InstanceFailed || failed.FinishedAt.IsZero() || failed.Reviews != 1 {
		t.Fatalf("failed instance (saved with its decision): %+v", failed)
	}
	if fresh.Status != "" || !fresh.FinishedAt.IsZero() || fresh.Reviews != 0 {
		t.Fatalf("an instance not yet saved: %+v", fresh)
	}
	// A new run of a finished instance (reset) runs again.
	saveState(t, s, "o-done", "r2", 1, json.RawMessage(`{"status":"running"}`))
	got = got[:0]
	must(t, s.Outcomes(ctx, "p", t0.Add(time.Minute), t0.Add(2*time.Minute), func(o store.InstanceOutcome) error { got = append(got, o); return nil }))
	if len(got) != 1 || got[0].Status != "running" || !got[0].FinishedAt.IsZero() {
		t.Fatalf("after a reset: %+v", got)
	}
	stop := errors.New("stop")
	if err := s.Outcomes(ctx, "p", t0, t0.Add(time.Hour), func(store.InstanceOutcome) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("the callback's error: %v", err)
	}
}

// testRetryClaims: one retry of a failed run goes ahead; the next run's
// retry, a released claim and a stale one go ahead too.
func testRetryClaims(t *testing.T, s Store) {
	ctx := t.Context()
	_, _, err := s.CreateInstance(ctx, store.Instance{ID: "rt", Process: "p", ProcessVersion: 1, BusinessKey: "rt", Input: []byte(`{}`), CreatedAt: t0})
	must(t, err)
	claim := func(run string, at time.Time) bool {
		t.Helper()
		ok, err := s.ClaimRetry(ctx, "rt", run, at, time.Minute, 0)
		must(t, err)
		return ok
	}
	if !claim("run-1", t0) || claim("run-1", t0.Add(time.Second)) {
		t.Fatal("the retry of run-1 went ahead other than once")
	}
	if !claim("run-2", t0.Add(time.Second)) { // run-1's retry made run-2, which failed too
		t.Fatal("the retry of run-2 did not go ahead")
	}
	must(t, s.ReleaseRetry(ctx, "rt", "run-1")) // not the claimed run: no effect
	if claim("run-2", t0.Add(2*time.Second)) {
		t.Fatal("releasing another run dropped run-2's claim")
	}
	must(t, s.ReleaseRetry(ctx, "rt", "run-2")) // its reset failed
	if !claim("run-2", t0.Add(3*time.Second)) {
		t.Fatal("a released claim held")
	}
	if !claim("run-2", t0.Add(2*time.Minute)) { // its holder died before the reset
		t.Fatal("a stale claim held")
	}
	if _, err := s.ClaimRetry(ctx, "nobody", "run-1", t0, time.Minute, 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a claim on no instance: %v", err)
	}
}

// testLeases: one replica at a time holds a job's lease; it renews it
// while it lives, another takes it once it expires or is released, and
// several replicas taking it at once get one holder.
func testLeases(t *testing.T, s Store) {
	ctx := t.Context()
	take := func(name, holder string, at time.Time) store.Lease {
		t.Helper()
		l, err := s.TakeLease(ctx, name, holder, at, time.Minute)
		must(t, err)
		if l.Name != name {
			t.Fatalf("lease %q came back as %q", name, l.Name)
		}
		return l
	}
	if l := take("sweeper", "a", t0); !l.HeldBy("a", t0) || !l.Expires.Equal(t0.Add(time.Minute)) {
		t.Fatalf("a free lease: %+v, want a's until t0+1m", l)
	}
	if l := take("sweeper", "b", t0.Add(time.Second)); l.HeldBy("b", t0.Add(time.Second)) || l.Holder != "a" || !l.Expires.Equal(t0.Add(time.Minute)) {
		t.Fatalf("b took a's live lease: %+v", l)
	}
	if l := take("prune", "b", t0.Add(time.Second)); !l.HeldBy("b", t0.Add(time.Second)) {
		t.Fatalf("b did not get another job's lease: %+v", l)
	}
	if l := take("sweeper", "a", t0.Add(50*time.Second)); !l.HeldBy("a", t0.Add(50*time.Second)) || !l.Expires.Equal(t0.Add(110*time.Second)) {
		t.Fatalf("a's renewal: %+v, want a's until t0+110s", l)
	}
	if l := take("sweeper", "b", t0.Add(109*time.Second)); l.Holder != "a" {
		t.Fatalf("b took a's renewed lease: %+v", l)
	}
	// a died: b takes over once a's lease expires.
	at := t0.Add(110 * time.Second)
	if l := take("sweeper", "b", at); !l.HeldBy("b", at) || !l.Expires.Equal(at.Add(time.Minute)) {
		t.Fatalf("b after a's lease expired: %+v", l)
	}
	must(t, s.ReleaseLease(ctx, "sweeper", "a")) // not a's any more: no effect
	if l := take("sweeper", "c", at.Add(time.Second)); l.Holder != "b" {
		t.Fatalf("a's release dropped b's lease: %+v", l)
	}
	must(t, s.ReleaseLease(ctx, "sweeper", "b")) // b stops
	if l := take("sweeper", "c", at.Add(2*time.Second)); !l.HeldBy("c", at.Add(2*time.Second)) {
		t.Fatalf("c after b released the lease: %+v", l)
	}

	// Ten replicas start at once: one holds the lease, and all say which.
	var wg sync.WaitGroup
	got := make([]store.Lease, 10)
	errs := make([]error, 10)
	for i := range got {
		wg.Go(func() { got[i], errs[i] = s.TakeLease(ctx, "guard", fmt.Sprint("r", i), t0, time.Minute) })
	}
	wg.Wait()
	must(t, errors.Join(errs...))
	for _, l := range got {
		if l.Holder != got[0].Holder || !l.Expires.Equal(t0.Add(time.Minute)) {
			t.Fatalf("replicas taking a lease at once saw %+v and %+v", got[0], l)
		}
	}

	// The store's clock, which the replicas' leases go by: the server's
	// (here on this machine, so within moments of this clock).
	before := time.Now()
	at, err := s.Clock(ctx)
	must(t, err)
	if at.Before(before.Add(-time.Second)) || at.After(time.Now().Add(time.Second)) {
		t.Fatalf("the store's clock reads %s, at %s here", at, before)
	}

	// Live leases by prefix: the replicas that said they are alive.
	for _, h := range []string{"a", "b", "c"} {
		_, err := s.TakeLease(ctx, "replica/"+h, h, t0, time.Minute)
		must(t, err)
	}
	_, err = s.TakeLease(ctx, "replica/c", "c", t0.Add(-time.Hour), time.Minute) // c renews into the past: it stopped
	must(t, err)
	_, err = s.TakeLease(ctx, "replicas", "x", t0, time.Minute) // not under the prefix
	must(t, err)
	_, err = s.TakeLease(ctx, "replica0", "y", t0, time.Minute) // the prefix's last byte raised
	must(t, err)
	live, err := s.LiveLeases(ctx, "replica/", t0.Add(time.Second))
	must(t, err)
	var names []string
	for _, l := range live {
		names = append(names, l.Name+"@"+l.Holder)
	}
	if got := strings.Join(names, " "); got != "replica/a@a replica/b@b" {
		t.Fatalf("live replicas: %q", got)
	}
	if live, err := s.LiveLeases(ctx, "replica/", t0.Add(2*time.Minute)); err != nil || len(live) != 0 {
		t.Fatalf("after they expired: %v %v", live, err)
	}
}

// testScheduleStates: a schedule is paused and resumed, with who, when
// and why; states list by process, or all.
func testScheduleStates(t *testing.T, s Store) {
	ctx := t.Context()
	states := func(process string) string {
		t.Helper()
		sts, err := s.ScheduleStates(ctx, process)
		must(t, err)
		var out []string
		for _, st := range sts {
			out = append(out, fmt.Sprintf("%s/%s paused=%v by %s at %s (%s)", st.Process, st.Schedule, st.Paused, st.ChangedBy, st.ChangedAt.Sub(t0), st.Note))
		}
		return strings.Join(out, "; ")
	}
	if got := states(""); got != "" {
		t.Fatalf("no states: %q", got)
	}
	must(t, s.SetScheduleState(ctx, store.ScheduleState{Process: "p", Schedule: "nightly", Paused: true, ChangedBy: "ann", ChangedAt: t0, Note: "partner down"}))
	must(t, s.SetScheduleState(ctx, store.ScheduleState{Process: "q", Schedule: "weekly", Paused: true, ChangedBy: "bob", ChangedAt: t0.Add(time.Minute)}))
	must(t, s.SetScheduleState(ctx, store.ScheduleState{Process: "p", Schedule: "nightly", Paused: false, ChangedBy: "bob", ChangedAt: t0.Add(time.Hour), Note: "back"}))
	if got, want := states("p"), "p/nightly paused=false by bob at 1h0m0s (back)"; got != want {
		t.Fatalf("p: %q, want %q", got, want)
	}
	if got, want := states(""), "p/nightly paused=false by bob at 1h0m0s (back); q/weekly paused=true by bob at 1m0s ()"; got != want {
		t.Fatalf("all: %q, want %q", got, want)
	}
	// A new version of p keeps its schedule "hourly" only; q's stay.
	must(t, s.SetScheduleState(ctx, store.ScheduleState{Process: "p", Schedule: "hourly", Paused: true, ChangedBy: "ann", ChangedAt: t0}))
	must(t, s.KeepScheduleStates(ctx, "p", []string{"hourly"}))
	if got, want := states(""), "p/hourly paused=true by ann at 0s (); q/weekly paused=true by bob at 1m0s ()"; got != want {
		t.Fatalf("after a version kept p's hourly only: %q, want %q", got, want)
	}
	must(t, s.KeepScheduleStates(ctx, "p", nil))
	if got, want := states("p"), ""; got != want {
		t.Fatalf("after a version without schedules: %q, want %q", got, want)
	}
}

// saveState saves a state projection and returns the finish it reports.
// testConcurrencyLimit: an instance queued under its process's
// concurrency limit gets a slot (Admit) only while fewer than the limit
// hold one: instances not queued hold one until they end. Queued
// instances are listed oldest first and are no pending starts of the
// sweep; admissions side by side never take more slots than there are.
func testConcurrencyLimit(t *testing.T, s Store) {
	ctx := t.Context()
	create := func(id, process string, queued bool, at time.Duration) {
		t.Helper()
		_, _, err := s.CreateInstance(ctx, store.Instance{ID: id, Process: process, ProcessVersion: 1, BusinessKey: id, Input: []byte(`{}`),
			CreatedAt: t0.Add(at), PendingStart: true, Queued: queued})
		must(t, err)
	}
	create("run", "p", false, 0)
	saveState(t, s, "run", "r", 1, json.RawMessage(`{"status":"running"}`))
	create("done", "p", false, 0)
	saveState(t, s, "done", "r", 1, json.RawMessage(`{"status":"completed"}`))
	create("a", "p", true, time.Minute)
	create("b", "p", true, 2*time.Minute)
	create("c", "p", true, 3*time.Minute)
	create("q", "q", true, time.Minute)
	ids := func(in []store.Instance) string {
		var out []string
		for _, i := range in {
			out = append(out, i.ID)
		}
		return strings.Join(out, " ")
	}
	if got, err := s.QueuedStarts(ctx, "p", 10); err != nil || ids(got) != "a b c" || !got[0].Queued {
		t.Fatalf("queued starts of p: %q %v", ids(got), err)
	}
	if l, err := s.Instances(ctx, store.InstanceFilter{Process: "p", Status: store.InstanceQueued, Limit: 10}); err != nil || len(l) != 3 || l[0].ID != "c" {
		t.Fatalf("the listing of p's queued instances, newest first: %+v %v", l, err)
	}
	if got, err := s.QueuedStarts(ctx, "", 10); err != nil || len(got) != 2 {
		t.Fatalf("processes with queued starts: %q %v", ids(got), err)
	}
	if got, err := s.QueuedCounts(ctx); err != nil || len(got) != 2 || got["p"] != 3 || got["q"] != 1 {
		t.Fatalf("queued counts %v %v", got, err)
	}
	admit := func(id string, limit int, want bool) {
		t.Helper()
		if ok, err := s.Admit(ctx, id, limit); err != nil || ok != want {
			t.Fatalf("admit %s under %d: %v %v, want %v", id, limit, ok, err, want)
		}
	}
	admit("c", 2, false) // a and b came first
	admit("a", 2, true)  // "run" holds the other slot; "done" ended
	admit("b", 2, false)
	admit("a", 2, true) // holds one already
	if got, err := s.PendingStarts(ctx, t0.Add(time.Hour), 10); err != nil || ids(got) != "a" {
		t.Fatalf("pending starts: %q %v (queued ones are not the sweep's)", ids(got), err)
	}
	saveState(t, s, "run", "r", 2, json.RawMessage(`{"status":"failed"}`))
	admit("c", 2, false) // a slot is free, but b waits longer
	admit("b", 2, true)
	admit("c", 2, false)
	admit("q", 1, true)
	if _, err := s.Admit(ctx, "nobody", 1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("admit an unknown instance: %v", err)
	}
	// Side by side: ten queued instances, three slots (all created at
	// once: the first three by id come first).
	for i := range 10 {
		create(fmt.Sprint("r-", i), "r", true, 0)
	}
	// Five sweepers at once, each admitting them in order as a start
	// sweep does.
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			for i := range 10 {
				if _, err := s.Admit(ctx, fmt.Sprint("r-", i), 3); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	left, err := s.QueuedStarts(ctx, "r", 100)
	must(t, err)
	if len(left) != 7 || left[0].ID != "r-3" {
		t.Fatalf("after admissions side by side, queued %q, want r-3 to r-9", ids(left))
	}
	testRetryTakesASlot(t, s)
}

// testRestore: an instance a process step stored and that never ran
// (ended with its parent, or out of its queue) is stored again for the
// step run again: starting, pending and queued as given, and back in its
// queue; one a workflow ran is left as it is.
func testRestore(t *testing.T, s Store) {
	ctx := t.Context()
	create := func(id string) {
		t.Helper()
		_, _, err := s.CreateInstance(ctx, store.Instance{ID: id, Process: "k", ProcessVersion: 1, BusinessKey: id, Input: []byte(`{}`),
			CreatedAt: t0, CreatedBy: "parent:p-1/vet", PendingStart: true, Queued: true})
		must(t, err)
	}
	restore := func(id string, want bool) store.Instance {
		t.Helper()
		in, ok, err := s.Restore(ctx, id, true, true)
		must(t, err)
		if ok != want {
			t.Fatalf("restore %s: %v, want %v", id, ok, want)
		}
		return in
	}
	create("ended")
	saveState(t, s, "ended", store.ParentEndedRun, 1, json.RawMessage(`{"status":"canceled"}`))
	create("left")
	must(t, s.MarkStarted(ctx, []string{"left"})) // out of its queue: its parent no longer waited
	create("ran")
	saveState(t, s, "ran", "run-1", 1, json.RawMessage(`{"status":"failed"}`))
	if q, err := s.QueuedStarts(ctx, "k", 10); err != nil || len(q) != 0 {
		t.Fatalf("queued before: %v %v", q, err)
	}
	for _, id := range []string{"ended", "left"} {
		in := restore(id, true)
		if in.State != nil || in.StateSeq != 0 || !in.PendingStart || !in.Queued || !in.FinishedAt.IsZero() {
			t.Fatalf("%s restored: %+v", id, in)
		}
		if st, _ := store.StatusOf(in.State); st != "" {
			t.Fatalf("%s restored reads %q, want starting", id, st)
		}
	}
	if q, err := s.QueuedStarts(ctx, "k", 10); err != nil || len(q) != 2 {
		t.Fatalf("queued after: %v %v", q, err)
	}
	if n, err := s.QueuedCounts(ctx); err != nil || n["k"] != 2 {
		t.Fatalf("queued counts after: %v %v", n, err)
	}
	if in := restore("ran", false); in.StateRun != "run-1" || in.PendingStart {
		t.Fatalf("an instance a workflow ran was changed: %+v", in)
	}
	if _, _, err := s.Restore(ctx, "nobody", true, true); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("restore no instance: %v", err)
	}
}

// testRetryTakesASlot: a retry under a concurrency limit takes a free
// slot, as a start would, and holds it from its claim on; it is refused
// when none is free or older instances are queued. A stale claim holds
// none. (Admit reads the clock, so the claims are made now.)
func testRetryTakesASlot(t *testing.T, s Store) {
	ctx := t.Context()
	now := time.Now()
	create := func(id string, queued bool) {
		t.Helper()
		_, _, err := s.CreateInstance(ctx, store.Instance{ID: id, Process: "s", ProcessVersion: 1, BusinessKey: id, Input: []byte(`{}`),
			CreatedAt: now, PendingStart: true, Queued: queued})
		must(t, err)
	}
	claim := func(id, run string, at time.Time, limit int, want error) {
		t.Helper()
		ok, err := s.ClaimRetry(ctx, id, run, at, time.Minute, limit)
		if !errors.Is(err, want) || (want == nil) != ok {
			t.Fatalf("retry of %s's run %s under %d: %v %v, want %v", id, run, limit, ok, err, want)
		}
	}
	admit := func(id string, limit int, want bool) {
		t.Helper()
		if ok, err := s.Admit(ctx, id, limit); err != nil || ok != want {
			t.Fatalf("admit %s under %d: %v %v, want %v", id, limit, ok, err, want)
		}
	}
	create("s1", false)
	saveState(t, s, "s1", "r", 1, json.RawMessage(`{"status":"running"}`))
	create("s2", false)
	saveState(t, s, "s2", "f1", 1, json.RawMessage(`{"status":"failed"}`))
	claim("s2", "f1", now, 1, store.ErrNoSlot) // s1 holds the only slot
	claim("s2", "f1", now, 2, nil)
	if ok, err := s.ClaimRetry(ctx, "s2", "f1", now, time.Minute, 2); ok || err != nil {
		t.Fatalf("a second retry of the run: %v %v, want refused as claimed", ok, err)
	}
	create("s3", true)
	admit("s3", 2, false) // the retry holds the second slot from its claim
	saveState(t, s, "s2", "f2", 1, json.RawMessage(`{"status":"running"}`))
	admit("s3", 2, false) // and its new run holds it
	saveState(t, s, "s2", "f2", 2, json.RawMessage(`{"status":"failed"}`))
	claim("s2", "f2", now, 2, store.ErrNoSlot) // a slot is free, but s3 was queued first
	admit("s3", 2, true)
	claim("s2", "f2", now.Add(-2*time.Minute), 3, nil) // its holder died: stale at once
	create("s4", true)
	admit("s4", 3, true) // s1 and s3 hold slots; the stale claim does not

	// A retry with no slot free waits in the queue, in turn; admitted, it
	// holds its slot by a claim until a starter takes it, once.
	create("s5", false)
	saveState(t, s, "s5", "g1", 1, json.RawMessage(`{"status":"failed"}`))
	ok := func(v bool, err error) bool {
		t.Helper()
		must(t, err)
		return v
	}
	if !ok(s.QueueRetry(ctx, "s5", "retried by ann: back")) || ok(s.QueueRetry(ctx, "s5", "retried by bob")) {
		t.Fatal("a retry queued other than once")
	}
	if ok(s.QueueRetry(ctx, "s1", "retried by ann")) {
		t.Fatal("the retry of a running instance was queued")
	}
	// The mark of its first start, written late (marks are batched), does
	// not take the queued retry out of the queue.
	must(t, s.MarkStarted(ctx, []string{"s5"}))
	in, err := s.Instance(ctx, "s5")
	if err != nil || in.RetryQueued != "retried by ann: back" || !in.Queued || !in.PendingStart {
		t.Fatalf("a queued retry: %+v %v", in, err)
	}
	if q, err := s.QueuedStarts(ctx, "s", 10); err != nil || len(q) != 1 || q[0].ID != "s5" || q[0].RetryQueued == "" {
		t.Fatalf("the queue with a retry: %+v %v", q, err)
	}
	if l, err := s.Instances(ctx, store.InstanceFilter{Process: "s", Status: store.InstanceQueued, Limit: 10}); err != nil || len(l) != 1 || l[0].ID != "s5" {
		t.Fatalf("the listing of queued instances: %+v %v", l, err)
	}
	admit("s5", 3, false) // s1, s3 and s4 hold the slots
	admit("s5", 4, true)
	create("s6", true)
	admit("s6", 4, false) // s5's retry holds the fourth before it runs
	if p, err := s.PendingStarts(ctx, now.Add(time.Hour), 10); err != nil || !slices.ContainsFunc(p, func(i store.Instance) bool { return i.ID == "s5" && i.RetryQueued != "" }) {
		t.Fatalf("an admitted retry is no pending start to take over: %+v %v", p, err)
	}
	if !ok(s.TakeQueuedRetry(ctx, "s5", now)) || ok(s.TakeQueuedRetry(ctx, "s5", now)) {
		t.Fatal("a queued retry taken other than once")
	}
	if in, err := s.Instance(ctx, "s5"); err != nil || in.RetryQueued != "" || in.PendingStart || in.Queued {
		t.Fatalf("a queued retry taken: %+v %v", in, err)
	}
	admit("s6", 4, false) // and holds it until its new run saves
	saveState(t, s, "s5", "g2", 1, json.RawMessage(`{"status":"completed"}`))
	admit("s6", 4, true)

	// A retry still queued may be withdrawn; one admitted runs.
	create("s7", false)
	saveState(t, s, "s7", "h1", 1, json.RawMessage(`{"status":"failed"}`))
	ok(s.QueueRetry(ctx, "s7", "retried by ann"))
	if !ok(s.DropQueuedRetry(ctx, "s7")) || ok(s.DropQueuedRetry(ctx, "s7")) {
		t.Fatal("a queued retry withdrawn other than once")
	}
	if in, err := s.Instance(ctx, "s7"); err != nil || in.RetryQueued != "" || in.PendingStart || in.Queued {
		t.Fatalf("a withdrawn retry: %+v %v", in, err)
	}
	ok(s.QueueRetry(ctx, "s7", "retried by ann"))
	admit("s7", 10, true)
	if ok(s.DropQueuedRetry(ctx, "s7")) {
		t.Fatal("an admitted retry was withdrawn")
	}

	// A retry queued as another ran the instance (two replicas, one of
	// which found a slot): the run's save takes it out of the queue, so
	// the running instance holds its slot.
	create("s8", false)
	saveState(t, s, "s8", "k1", 1, json.RawMessage(`{"status":"failed"}`))
	ok(s.QueueRetry(ctx, "s8", "retried by bob"))
	saveState(t, s, "s8", "k2", 1, json.RawMessage(`{"status":"running"}`))
	if in, err := s.Instance(ctx, "s8"); err != nil || in.RetryQueued != "" || in.PendingStart || in.Queued {
		t.Fatalf("a queued retry of an instance that runs again: %+v %v", in, err)
	}
}

// testProcessLoads: per process, the instances in progress (started or
// starting, not queued), those waiting for a review, and those failed
// since a time and not retried since.
func testProcessLoads(t *testing.T, s Store) {
	ctx := t.Context()
	create := func(id, process, status string, queued bool, at time.Time) {
		t.Helper()
		_, _, err := s.CreateInstance(ctx, store.Instance{ID: id, Process: process, ProcessVersion: 1, BusinessKey: id, Input: []byte(`{}`),
			CreatedAt: at.Add(-time.Minute), PendingStart: true, Queued: queued})
		must(t, err)
		if status != "" {
			_, err := s.SaveInstanceStateAt(ctx, id, "r", 1, json.RawMessage(`{"status":"`+status+`"}`), at)
			must(t, err)
		}
	}
	if got, err := s.ProcessLoads(ctx, t0); err != nil || len(got) != 0 {
		t.Fatalf("no instances: %v %v", got, err)
	}
	create("starting", "p", "", false, t0)
	create("queued", "p", "", true, t0)
	create("running", "p", "running", false, t0)
	create("review-1", "p", "waiting_review", false, t0)
	create("review-2", "p", "waiting_review", false, t0)
	create("event", "p", "waiting_event", false, t0)
	create("done", "p", "completed", false, t0)
	create("failed-long-ago", "p", "failed", false, t0.Add(-48*time.Hour))
	create("failed", "p", "failed", false, t0)
	create("failed-q", "q", "failed", false, t0.Add(-time.Hour))
	create("retried", "q", "failed", false, t0)
	_, err := s.SaveInstanceStateAt(ctx, "retried", "r2", 1, json.RawMessage(`{"status":"running"}`), t0.Add(time.Minute))
	must(t, err)
	got, err := s.ProcessLoads(ctx, t0.Add(-24*time.Hour))
	want := map[string]store.ProcessLoad{
		"p": {InProgress: 5, WaitingReview: 2, Failed: 1},
		"q": {InProgress: 1, Failed: 1},
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("process loads %+v (%v), want %+v", got, err, want)
	}
}

func saveState(t *testing.T, s Store, id, run string, seq int64, state json.RawMessage) *store.Finish {
	t.Helper()
	f, err := s.SaveInstanceState(t.Context(), id, run, seq, state)
	must(t, err)
	return f
}

func decision(run string, seq int, prev string) process.Decision {
	d := process.Decision{
		ID: fmt.Sprintf("dc-%s-%d", run, seq), InstanceID: "i1", RunID: run, Seq: seq, Time: t0.Add(time.Duration(seq) * time.Second),
		Process: "orders", ProcessVersion: 1, Step: fmt.Sprintf("s%d", seq), Facts: []byte(`{"input":{}}`),
		Evaluations: []process.Evaluation{}, Applied: []process.AppliedAction{{Action: process.Action{Skip: "s1"}, PolicyID: "p"}}, Rejected: []process.Rejection{},
		PrevHash: prev, Model: "none",
	}
	d.Hash = d.ComputeHash()
	return d
}

// testResetChains: a run reset from another (a retry) keeps that run's
// first records and goes on from the last of them; the chains verify, and
// stop verifying once a kept record is removed.
func testResetChains(t *testing.T, s Store) {
	ctx := t.Context()
	a1 := decision("run-a", 1, "")
	a2 := decision("run-a", 2, a1.Hash)
	b2 := decision("run-b", 2, a1.Hash) // reset to before run-a's second decision
	b3 := decision("run-b", 3, b2.Hash)
	c3 := decision("run-c", 3, b2.Hash) // reset from run-b to before its third decision
	for _, d := range []process.Decision{a1, a2, b2, b3, c3} {
		_, err := s.AppendDecision(ctx, d)
		must(t, err)
	}
	rep, err := store.Verify(ctx, s)
	must(t, err)
	if !rep.OK || rep.Runs != 3 || rep.Decisions != 5 {
		t.Fatalf("chains with reset runs: %+v", rep)
	}
	// A run that starts late and goes on from nothing kept has lost records.
	orphan := decision("run-d", 3, b3.Hash) // run-b's third record, not a second one
	_, err = s.AppendDecision(ctx, orphan)
	must(t, err)
	rep, err = store.Verify(ctx, s)
	must(t, err)
	if rep.OK || len(rep.Problems) != 1 || rep.Problems[0].RunID != "run-d" || !strings.Contains(rep.Problems[0].Message, "goes on from no record 2") {
		t.Fatalf("a run that goes on from a record of the wrong sequence: %+v", rep)
	}
}

// testDecisionWithState: a decision and the state its workflow carries are
// written together; a retried append returns the recorded decision and
// leaves a later save in place.
func testDecisionWithState(t *testing.T, s Store) {
	ctx := t.Context()
	_, _, err := s.CreateInstance(ctx, store.Instance{ID: "i1", Process: "orders", ProcessVersion: 1, BusinessKey: "k1", Input: []byte(`{}`), CreatedAt: t0,
		State: json.RawMessage(`{"status":"starting"}`)})
	must(t, err)
	first := decision("r1", 1, "")
	got, err := s.AppendDecisionWithState(ctx, first, &store.StateSave{InstanceID: "i1", RunID: "r1", Seq: 1, State: json.RawMessage(`{"status":"running","n":1}`)})
	must(t, err)
	if got.Hash != first.Hash {
		t.Fatalf("append returned %+v", got)
	}
	in, err := s.Instance(ctx, "i1")
	must(t, err)
	if string(in.State) != `{"status":"running","n":1}` || in.StateRun != "r1" || in.StateSeq != 1 {
		t.Fatalf("state after the append: %s %s %d", in.State, in.StateRun, in.StateSeq)
	}
	saveState(t, s, "i1", "r1", 2, json.RawMessage(`{"status":"running","n":2}`))
	// The activity is retried after its first attempt was recorded.
	retry := first
	retry.ID = "dc-other"
	retry.Hash = retry.ComputeHash()
	got, err = s.AppendDecisionWithState(ctx, retry, &store.StateSave{InstanceID: "i1", RunID: "r1", Seq: 1, State: json.RawMessage(`{"status":"running","n":11}`)})
	must(t, err)
	if got.ID != first.ID {
		t.Fatalf("retry returned %s; the recorded decision must win", got.ID)
	}
	if in, err = s.Instance(ctx, "i1"); err != nil || string(in.State) != `{"status":"running","n":2}` || in.StateSeq != 2 {
		t.Fatalf("a retried append moved the state back: %s %d, %v", in.State, in.StateSeq, err)
	}
	// Without a state, only the decision is written.
	second := decision("r1", 2, first.Hash)
	_, err = s.AppendDecisionWithState(ctx, second, nil)
	must(t, err)
	all, err := s.Decisions(ctx, "i1")
	must(t, err)
	if len(all) != 2 {
		t.Fatalf("%d decisions, want 2", len(all))
	}
	if in, err = s.Instance(ctx, "i1"); err != nil || in.StateSeq != 2 {
		t.Fatalf("state seq %d after an append without state, %v", in.StateSeq, err)
	}
}

func testDecisions(t *testing.T, s Store) {
	ctx := t.Context()
	first := decision("r1", 1, "")
	// Twenty writers append the same decision at once: one row, and every
	// writer gets the stored record back.
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := s.AppendDecision(ctx, first)
			if err == nil && got.Hash != first.Hash {
				err = fmt.Errorf("got hash %s, want %s", got.Hash, first.Hash)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// A retry that computed different content still gets the first record.
	retry := first
	retry.ID, retry.Applied = "dc-other", nil
	retry.Hash = retry.ComputeHash()
	got, err := s.AppendDecision(ctx, retry)
	must(t, err)
	if got.ID != first.ID || len(got.Applied) != 1 {
		t.Fatalf("retry returned %+v; the recorded decision must win", got)
	}
	second := decision("r1", 2, first.Hash)
	_, err = s.AppendDecision(ctx, second)
	must(t, err)
	all, err := s.Decisions(ctx, "i1")
	must(t, err)
	if len(all) != 2 || all[0].Seq != 1 || all[1].Seq != 2 || all[1].PrevHash != all[0].Hash {
		t.Fatalf("decisions %+v", all)
	}
	for _, d := range all {
		if d.ComputeHash() != d.Hash {
			t.Fatalf("decision %s: stored content does not match its hash", d.ID)
		}
	}
	var scanned []string
	must(t, s.ScanDecisions(ctx, "orders", t0.Add(2*time.Second), func(rec []byte) error {
		var d process.Decision
		if err := json.Unmarshal(rec, &d); err != nil {
			return err
		}
		scanned = append(scanned, d.ID)
		return nil
	}))
	if len(scanned) != 1 || scanned[0] != second.ID {
		t.Fatalf("scan since the second decision: %v", scanned)
	}
	n := 0
	must(t, s.ScanChains(ctx, func([]byte) error { n++; return nil }))
	if n != 2 {
		t.Fatalf("chains scanned %d records", n)
	}
	one, err := s.Decision(ctx, second.ID)
	must(t, err)
	if one.Step != "s2" || !one.Time.Equal(second.Time) {
		t.Fatalf("decision %+v", one)
	}
	if _, err := s.Decision(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown decision: %v", err)
	}
}

func testReviews(t *testing.T, s Store) {
	ctx := t.Context()
	due := t0.Add(4 * time.Hour)
	r := store.Review{ID: "rv1", InstanceID: "i1", RunID: "r1", Process: "orders", Step: "charge", Queue: "finance", Reason: "big", CreatedAt: t0, DueAt: &due}
	got, err := s.CreateReview(ctx, r)
	must(t, err)
	if got.Status != store.ReviewOpen || got.DueAt == nil || !got.DueAt.Equal(due) {
		t.Fatalf("created %+v", got)
	}
	_, err = s.CreateReview(ctx, store.Review{ID: "rv1", InstanceID: "other", Queue: "x", CreatedAt: t0})
	must(t, err)
	_, err = s.CreateReview(ctx, store.Review{ID: "rv2", InstanceID: "i2", RunID: "r2", Process: "returns", Step: "refund", Queue: "ops", CreatedAt: t0.Add(time.Minute)})
	must(t, err)
	open, err := s.Reviews(ctx, store.ReviewFilter{Status: store.ReviewOpen})
	must(t, err)
	if len(open) != 2 || open[0].ID != "rv1" || open[0].InstanceID != "i1" {
		t.Fatalf("open reviews %+v", open)
	}
	fin, err := s.Reviews(ctx, store.ReviewFilter{Queue: "finance", Process: "orders"})
	must(t, err)
	if len(fin) != 1 {
		t.Fatalf("finance reviews %+v", fin)
	}
	at := t0.Add(time.Hour)
	verdict := store.Review{ID: "rv1", Status: store.ReviewDecided, Verdict: store.VerdictApprove, Reviewer: "ann", Comment: "ok", DecidedAt: &at}
	closed, err := s.CloseReview(ctx, verdict)
	must(t, err)
	if closed.Status != store.ReviewDecided || closed.Reviewer != "ann" || closed.DecidedAt == nil {
		t.Fatalf("closed %+v", closed)
	}
	_, err = s.CloseReview(ctx, verdict) // a retried activity
	must(t, err)
	other := verdict
	other.Reviewer, other.Verdict = "bob", store.VerdictReject
	if _, err := s.CloseReview(ctx, other); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second verdict: %v", err)
	}
	if _, err := s.CloseReview(ctx, store.Review{ID: "nope", Status: store.ReviewDecided}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown review: %v", err)
	}
	open, err = s.Reviews(ctx, store.ReviewFilter{Status: store.ReviewOpen})
	must(t, err)
	if len(open) != 1 || open[0].ID != "rv2" {
		t.Fatalf("open after verdict %+v", open)
	}
}

func testReviewClaims(t *testing.T, s Store) {
	ctx := t.Context()
	_, err := s.CreateReview(ctx, store.Review{ID: "rv1", InstanceID: "i1", RunID: "r1", Process: "orders", Step: "charge", Queue: "finance", CreatedAt: t0})
	must(t, err)
	now, lease := t0.Add(time.Minute), 30*time.Minute
	got, err := s.ClaimReview(ctx, "rv1", "ann", now, now.Add(lease))
	must(t, err)
	if got.Status != store.ReviewClaimed || got.ClaimedBy != "ann" || got.ClaimExpiresAt == nil || !got.ClaimExpiresAt.Equal(now.Add(lease)) {
		t.Fatalf("claimed %+v", got)
	}
	if _, err := s.ClaimReview(ctx, "rv1", "bob", now.Add(time.Minute), now.Add(time.Hour)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("bob claimed ann's review: %v", err)
	}
	if _, err := s.ReleaseReview(ctx, "rv1", "bob", now.Add(time.Minute)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("bob released ann's claim: %v", err)
	}
	// Ann renews her lease; once it runs out, Bob may take the review.
	renewed, err := s.ClaimReview(ctx, "rv1", "ann", now.Add(10*time.Minute), now.Add(10*time.Minute+lease))
	must(t, err)
	if !renewed.ClaimExpiresAt.Equal(now.Add(10*time.Minute + lease)) {
		t.Fatalf("renewed %+v", renewed)
	}
	later := now.Add(10*time.Minute + lease)
	bobs, err := s.ClaimReview(ctx, "rv1", "bob", later, later.Add(lease))
	must(t, err)
	if bobs.ClaimedBy != "bob" {
		t.Fatalf("after the lease ran out: %+v", bobs)
	}
	released, err := s.ReleaseReview(ctx, "rv1", "bob", later.Add(time.Minute))
	must(t, err)
	if released.Status != store.ReviewOpen || released.ClaimedBy != "" || released.ClaimExpiresAt != nil {
		t.Fatalf("released %+v", released)
	}

	// Twenty reviewers claim at once: exactly one holds it.
	_, err = s.CreateReview(ctx, store.Review{ID: "rv2", InstanceID: "i2", RunID: "r2", Process: "orders", Step: "charge", Queue: "finance", CreatedAt: t0})
	must(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var winners []string
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("reviewer-%d", i)
			_, err := s.ClaimReview(ctx, "rv2", name, now, now.Add(lease))
			switch {
			case err == nil:
				mu.Lock()
				winners = append(winners, name)
				mu.Unlock()
			case !errors.Is(err, store.ErrConflict):
				t.Errorf("%s: %v", name, err)
			}
		}()
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("claims won by %v, want exactly one", winners)
	}
	if r, err := s.Reviews(ctx, store.ReviewFilter{Assignee: winners[0], Now: now}); err != nil || len(r) != 1 || r[0].ID != "rv2" {
		t.Fatalf("assignee %s: %+v %v", winners[0], r, err)
	}

	at := now.Add(time.Minute)
	_, err = s.CloseReview(ctx, store.Review{ID: "rv2", Status: store.ReviewDecided, Verdict: store.VerdictApprove, Reviewer: winners[0], DecidedAt: &at})
	must(t, err)
	if _, err := s.ClaimReview(ctx, "rv2", winners[0], at, at.Add(lease)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("claimed a decided review: %v", err)
	}
	if _, err := s.ClaimReview(ctx, "nope", "ann", at, at.Add(lease)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("claimed an unknown review: %v", err)
	}
}

func testInbox(t *testing.T, s Store) {
	ctx := t.Context()
	// 25 reviews: every third without a due time, the rest due in an order
	// unlike their creation order.
	var want []string
	var dueLast []string
	for i := range 25 {
		r := store.Review{ID: fmt.Sprintf("rv%02d", i), InstanceID: fmt.Sprintf("i%d", i), RunID: "r", Process: "orders", Step: "s", Queue: "q", CreatedAt: t0.Add(time.Duration(i) * time.Minute)}
		if i%3 == 0 {
			dueLast = append(dueLast, r.ID)
		} else {
			due := t0.Add(time.Duration(100-i) * time.Hour)
			r.DueAt = &due
			want = append([]string{r.ID}, want...)
		}
		_, err := s.CreateReview(ctx, r)
		must(t, err)
	}
	want = append(want, dueLast...)
	now := t0.Add(time.Hour)
	var got []string
	after := ""
	for page := 0; page < 10; page++ {
		rs, err := s.Reviews(ctx, store.ReviewFilter{Status: store.ReviewOpen, Limit: 7, After: after, Now: now})
		must(t, err)
		if len(rs) == 0 {
			break
		}
		for _, r := range rs {
			got = append(got, r.ID)
		}
		after = store.ReviewCursor(rs[len(rs)-1])
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("pages in order %v, want %v", got, want)
	}
	_, err := s.ClaimReview(ctx, "rv01", "ann", now, now.Add(time.Hour))
	must(t, err)
	claimed, err := s.Reviews(ctx, store.ReviewFilter{Status: store.ReviewClaimed, Now: now})
	must(t, err)
	open, err := s.Reviews(ctx, store.ReviewFilter{Status: store.ReviewOpen, Limit: 100, Now: now})
	must(t, err)
	if len(claimed) != 1 || claimed[0].ID != "rv01" || claimed[0].Status != store.ReviewClaimed || len(open) != 24 {
		t.Fatalf("claimed %+v; %d open", claimed, len(open))
	}
	// Two hours on, Ann's lease has run out: the review is open again.
	open, err = s.Reviews(ctx, store.ReviewFilter{Status: store.ReviewOpen, Limit: 100, Now: now.Add(2 * time.Hour)})
	must(t, err)
	if len(open) != 25 {
		t.Fatalf("%d open after the lease ran out", len(open))
	}
	old, err := s.Reviews(ctx, store.ReviewFilter{CreatedBefore: t0.Add(3 * time.Minute), Limit: 100, Now: now})
	must(t, err)
	if len(old) != 3 {
		t.Fatalf("%d reviews created in the first three minutes", len(old))
	}
	if _, err := s.Reviews(ctx, store.ReviewFilter{After: "not a cursor!"}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("malformed cursor: %v", err)
	}
	// A key limited to processes pages through theirs only, in full pages.
	for i := range 4 {
		_, err := s.CreateReview(ctx, store.Review{ID: fmt.Sprintf("rx%02d", i), InstanceID: fmt.Sprintf("x%d", i), RunID: "r", Process: "returns", Step: "s", Queue: "q", CreatedAt: t0})
		must(t, err)
	}
	mine, err := s.Reviews(ctx, store.ReviewFilter{Processes: []string{"returns", "refunds"}, Limit: 3, Now: now})
	must(t, err)
	if len(mine) != 3 || mine[0].Process != "returns" || mine[2].Process != "returns" {
		t.Fatalf("reviews of returns, a page of 3: %+v", mine)
	}
	all, err := s.Reviews(ctx, store.ReviewFilter{Processes: []string{"orders", "returns"}, Limit: 100, Now: now})
	must(t, err)
	if len(all) != 29 {
		t.Fatalf("%d reviews of orders and returns, want 29", len(all))
	}
}

func testReviewStats(t *testing.T, s Store) {
	ctx := t.Context()
	due := t0.Add(time.Hour)
	for _, r := range []store.Review{
		{ID: "a", Queue: "kyc", CreatedAt: t0, DueAt: &due},
		{ID: "b", Queue: "kyc", CreatedAt: t0, DueAt: &due},
		{ID: "c", Queue: "kyc", CreatedAt: t0},
		{ID: "d", Queue: "ops", CreatedAt: t0},
	} {
		r.InstanceID, r.RunID, r.Process, r.Step = "i-"+r.ID, "r", "p", "s"
		_, err := s.CreateReview(ctx, r)
		must(t, err)
	}
	now := t0.Add(10 * time.Minute)
	_, err := s.ClaimReview(ctx, "a", "ann", now, now.Add(time.Hour))
	must(t, err)
	_, err = s.ClaimReview(ctx, "a", "ann", now.Add(time.Minute), now.Add(time.Hour)) // a renewal is not a first claim
	must(t, err)
	decided := t0.Add(2 * time.Hour) // after "b" was due
	_, err = s.CloseReview(ctx, store.Review{ID: "b", Status: store.ReviewDecided, Verdict: store.VerdictApprove, Reviewer: "bob", DecidedAt: &decided})
	must(t, err)
	_, err = s.CloseReview(ctx, store.Review{ID: "d", Status: store.ReviewExpired, Reviewer: "sla", DecidedAt: &decided})
	must(t, err)
	for _, v := range []store.Verdict{
		{ReviewID: "b", Classifier: "req", Queue: "kyc", Model: "m", Predicted: "business", Confidence: 0.4, Label: "personal", Reviewer: "bob", At: decided},
		{ReviewID: "b", Classifier: "req", Queue: "kyc", Model: "m", Predicted: "business", Confidence: 0.4, Label: "business", Reviewer: "eve", At: decided}, // once per review
		{ReviewID: "x", Classifier: "req", Queue: "kyc", Model: "m", Predicted: "business", Confidence: 0.9, Label: "business", Reviewer: "bob", At: decided.Add(time.Minute)},
	} {
		must(t, s.PutVerdict(ctx, v))
	}
	vs, err := s.Verdicts(ctx, "req", t0)
	must(t, err)
	if len(vs) != 2 || vs[0].Label != "personal" || vs[0].Confidence != 0.4 || vs[1].ReviewID != "x" {
		t.Fatalf("verdicts %+v", vs)
	}
	if vs, err := s.Verdicts(ctx, "req", decided.Add(time.Second)); err != nil || len(vs) != 1 {
		t.Fatalf("verdicts since: %+v %v", vs, err)
	}
	stats, err := s.ReviewStats(ctx, now.Add(2*time.Minute))
	must(t, err)
	want := []store.QueueStats{
		{Queue: "kyc", Open: 1, Claimed: 1, Decided: 1, Breached: 1, DecisionSeconds: 7200, FirstClaims: 1, FirstClaimSeconds: 600, Judged: 2, Overrides: 1},
		{Queue: "ops", Expired: 1, Breached: 1},
	}
	if fmt.Sprint(stats) != fmt.Sprint(want) {
		t.Fatalf("stats\n%+v\nwant\n%+v", stats, want)
	}
}

func testQueueSummaries(t *testing.T, s Store) {
	ctx := t.Context()
	due1, due2 := t0.Add(time.Hour), t0.Add(3*time.Hour)
	for _, r := range []store.Review{
		{ID: "a", Process: "p", Queue: "kyc", CreatedAt: t0.Add(time.Minute), DueAt: &due1},
		{ID: "b", Process: "p", Queue: "kyc", CreatedAt: t0, DueAt: &due2},
		{ID: "c", Process: "p", Queue: "kyc", CreatedAt: t0.Add(2 * time.Minute)},
		{ID: "d", Process: "p", Queue: "kyc", CreatedAt: t0},
		{ID: "e", Process: "p", Queue: "kyc", CreatedAt: t0},
		{ID: "f", Process: "q", Queue: "kyc", CreatedAt: t0.Add(-time.Hour)},
		{ID: "g", Process: "q", Queue: "ops", CreatedAt: t0},
		{ID: "h", Process: "p", Queue: "old", CreatedAt: t0.Add(-48 * time.Hour)},
	} {
		r.InstanceID, r.RunID, r.Step = "i-"+r.ID, "r", "s"
		_, err := s.CreateReview(ctx, r)
		must(t, err)
	}
	now := t0.Add(2 * time.Hour) // "a" is overdue, "b" is not yet
	_, err := s.ClaimReview(ctx, "b", "ann", t0, now.Add(time.Hour))
	must(t, err)
	_, err = s.ClaimReview(ctx, "c", "bob", t0, now.Add(-time.Minute)) // lapsed: open again
	must(t, err)
	_, err = s.EscalateReview(ctx, "g", store.Escalation{Queue: "kyc", Due: now.Add(time.Hour)}, t0)
	must(t, err)
	close := func(id, status string, at time.Time) {
		t.Helper()
		_, err := s.CloseReview(ctx, store.Review{ID: id, Status: status, Verdict: store.VerdictApprove, Reviewer: "r", DecidedAt: &at})
		must(t, err)
	}
	close("d", store.ReviewDecided, t0.Add(30*time.Minute))
	close("e", store.ReviewCanceled, t0.Add(time.Hour))
	close("f", store.ReviewDecided, t0.Add(time.Hour+30*time.Minute)) // 2.5 h after it was raised
	close("h", store.ReviewExpired, t0.Add(-24*time.Hour))            // before the window
	got, err := s.QueueSummaries(ctx, store.QueueFilter{Since: t0, Now: now})
	must(t, err)
	at := func(t time.Time) *time.Time { return &t }
	nextDue := now.Add(time.Hour)
	want := []store.QueueSummary{{Queue: "kyc", Open: 3, Claimed: 1, Escalated: 1, Overdue: 1, OldestAt: at(t0), NextDueAt: at(due1),
		Decided: 2, Canceled: 1, DecisionSeconds: (30*time.Minute + 150*time.Minute).Seconds() / 2}}
	if fmt.Sprint(got) != fmt.Sprint(want) || !got[0].OldestAt.Equal(t0) || !got[0].NextDueAt.Equal(due1) {
		t.Fatalf("summaries\n%+v\nwant\n%+v", got, want)
	}
	// A key limited to processes counts only theirs; a window that starts
	// earlier counts the expired review of the old queue.
	got, err = s.QueueSummaries(ctx, store.QueueFilter{Processes: []string{"q"}, Since: t0.Add(-72 * time.Hour), Now: now})
	must(t, err)
	if len(got) != 1 || got[0].Queue != "kyc" || got[0].Open != 1 || got[0].Escalated != 1 || got[0].Decided != 1 || got[0].DecisionSeconds != 9000 ||
		!got[0].NextDueAt.Equal(nextDue) || !got[0].OldestAt.Equal(t0) {
		t.Fatalf("summaries of q: %+v", got)
	}
	got, err = s.QueueSummaries(ctx, store.QueueFilter{Process: "p", Since: t0.Add(-72 * time.Hour), Now: now})
	must(t, err)
	if len(got) != 2 || got[0].Queue != "kyc" || got[0].Open != 2 || got[0].Claimed != 1 || got[1].Queue != "old" || got[1].Expired != 1 || got[1].Open != 0 || got[1].OldestAt != nil {
		t.Fatalf("summaries of p: %+v", got)
	}
	if got, err := s.QueueSummaries(ctx, store.QueueFilter{Process: "none", Now: now}); err != nil || len(got) != 0 {
		t.Fatalf("summaries of an unknown process: %+v %v", got, err)
	}
}

func testReviewEscalation(t *testing.T, s Store) {
	ctx := t.Context()
	due := t0.Add(4 * time.Hour)
	_, err := s.CreateReview(ctx, store.Review{ID: "rv1", InstanceID: "i1", RunID: "r1", Process: "p", Step: "s", Queue: "kyc", CreatedAt: t0, DueAt: &due})
	must(t, err)
	_, err = s.ClaimReview(ctx, "rv1", "ann", t0, t0.Add(5*time.Hour))
	must(t, err)
	at, newDue := due, due.Add(8*time.Hour)
	// Another review in the senior queue, due sooner but not escalated.
	soon := t0.Add(5 * time.Hour)
	_, err = s.CreateReview(ctx, store.Review{ID: "rv0", InstanceID: "i0", RunID: "r0", Process: "p", Step: "s", Queue: "kyc-senior", CreatedAt: t0, DueAt: &soon})
	must(t, err)
	got, err := s.EscalateReview(ctx, "rv1", store.Escalation{Queue: "kyc-senior", Due: newDue, Priority: 5}, at)
	must(t, err)
	if got.Queue != "kyc-senior" || !got.DueAt.Equal(newDue) || got.EscalatedAt == nil || !got.EscalatedAt.Equal(at) ||
		got.ClaimedBy != "" || got.Status != store.ReviewEscalated || got.Priority != 5 {
		t.Fatalf("escalated %+v", got)
	}
	again, err := s.EscalateReview(ctx, "rv1", store.Escalation{Queue: "kyc-senior", Due: newDue, Priority: 2}, at.Add(time.Minute)) // a retry, or a lower priority
	must(t, err)
	if !again.EscalatedAt.Equal(at) || again.Priority != 5 {
		t.Fatalf("escalated twice: %+v", again)
	}
	// The raised priority puts it first, though the other is due sooner;
	// the cursor pages on in that order.
	page, err := s.Reviews(ctx, store.ReviewFilter{Queue: "kyc-senior", Limit: 1, Now: at})
	must(t, err)
	next, err := s.Reviews(ctx, store.ReviewFilter{Queue: "kyc-senior", Limit: 1, After: store.ReviewCursor(page[0]), Now: at})
	must(t, err)
	if len(page) != 1 || page[0].ID != "rv1" || len(next) != 1 || next[0].ID != "rv0" {
		t.Fatalf("inbox order %+v then %+v", page, next)
	}
	esc, err := s.Reviews(ctx, store.ReviewFilter{Status: store.ReviewEscalated, Now: at})
	must(t, err)
	open, err := s.Reviews(ctx, store.ReviewFilter{Status: store.ReviewOpen, Queue: "kyc-senior", Now: at})
	must(t, err)
	if len(esc) != 1 || len(open) != 2 {
		t.Fatalf("escalated %d, open in the new queue %d", len(esc), len(open))
	}
	// A senior reviewer claims it: it reads as claimed, still escalated.
	claimed, err := s.ClaimReview(ctx, "rv1", "sam", at, at.Add(time.Hour))
	must(t, err)
	if claimed.Status != store.ReviewClaimed || claimed.EscalatedAt == nil {
		t.Fatalf("claimed after escalation %+v", claimed)
	}
	decided := at.Add(time.Hour)
	_, err = s.CloseReview(ctx, store.Review{ID: "rv1", Status: store.ReviewDecided, Verdict: store.VerdictApprove, Reviewer: "sam", DecidedAt: &decided})
	must(t, err)
	if _, err := s.EscalateReview(ctx, "rv1", store.Escalation{Queue: "x", Due: newDue}, decided); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("escalated a decided review: %v", err)
	}
	// Reassigned by hand: another queue, the claim released, its due time
	// and priority kept; not once it is closed.
	_, err = s.ClaimReview(ctx, "rv0", "ann", at, at.Add(time.Hour))
	must(t, err)
	moved, err := s.ReassignReview(ctx, "rv0", "fraud", at)
	must(t, err)
	if moved.Queue != "fraud" || moved.ClaimedBy != "" || moved.Status != store.ReviewOpen || !moved.DueAt.Equal(soon) || moved.EscalatedAt != nil {
		t.Fatalf("reassigned %+v", moved)
	}
	if inbox, err := s.Reviews(ctx, store.ReviewFilter{Queue: "fraud", Now: at}); err != nil || len(inbox) != 1 || inbox[0].ID != "rv0" {
		t.Fatalf("the new queue's inbox %+v %v", inbox, err)
	}
	if _, err := s.ReassignReview(ctx, "rv1", "fraud", decided); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("reassigned a decided review: %v", err)
	}
}

func testAudit(t *testing.T, s Store) {
	ctx := t.Context()
	// An entry is written before its change is made, with status 0, and
	// settled with the status the change ended with.
	var seqs []int64
	for i, a := range []string{"POST /v1/keys", "POST /v1/policies", "POST /v1/keys/:id/revoke", "POST /v1/keys/:id/rotate", "POST /v1/policies/:id/activate", "POST /v1/policies/:id/disable"} {
		seq, err := s.AppendAudit(ctx, store.AuditEntry{At: t0.Add(time.Duration(i) * time.Minute), KeyID: "key_1", Actor: []string{"ann", "bob", "ann", "bob", "bob", "bob"}[i],
			Role: store.RoleAdmin, Action: a, Target: "id=x", Remote: "10.0.0.1", RequestID: fmt.Sprint("r", i)})
		must(t, err)
		seqs = append(seqs, seq)
	}
	must(t, s.SettleAudit(ctx, seqs[0], 201, ""))
	must(t, s.SettleAudit(ctx, seqs[1], 200, "ids=a,b")) // the handler names what it changed
	must(t, s.SettleAudit(ctx, seqs[2], 200, ""))
	must(t, s.SettleAudit(ctx, seqs[2], 500, "id=y")) // settled once: the first status stays
	must(t, s.SettleAudit(ctx, seqs[3], 409, ""))     // refused: nothing changed, the entry goes
	must(t, s.SettleAudit(ctx, seqs[4], 503, ""))     // failed: kept, with its status
	// seqs[5] is never settled: its server stopped midway.
	all, err := s.Audit(ctx, store.AuditFilter{})
	must(t, err)
	var statuses []int
	for _, e := range all {
		statuses = append(statuses, e.Status)
	}
	if len(all) != 5 || all[0].Action != "POST /v1/keys" || all[0].Seq != seqs[0] || all[2].Seq <= all[1].Seq || all[1].Remote != "10.0.0.1" || !all[1].At.Equal(t0.Add(time.Minute)) ||
		fmt.Sprint(statuses) != "[201 200 200 503 0]" || all[3].Action != "POST /v1/policies/:id/activate" || all[1].Target != "ids=a,b" || all[0].Target != "id=x" || all[2].Target != "id=x" {
		t.Fatalf("audit %+v", all)
	}
	keys, err := s.Audit(ctx, store.AuditFilter{Action: "POST /v1/keys"})
	must(t, err)
	anns, err := s.Audit(ctx, store.AuditFilter{Actor: "ann", Since: t0.Add(time.Minute)})
	must(t, err)
	page, err := s.Audit(ctx, store.AuditFilter{After: all[0].Seq, Limit: 1})
	must(t, err)
	if len(keys) != 2 || len(anns) != 1 || anns[0].Action != "POST /v1/keys/:id/revoke" || len(page) != 1 || page[0].Seq != all[1].Seq {
		t.Fatalf("filtered: %d by action, %+v by actor, page %+v", len(keys), anns, page)
	}
}

func testInstanceListing(t *testing.T, s Store) {
	ctx := t.Context()
	// Seven instances of p a minute apart (two at the same time, to check
	// the id breaks the tie), one of another process.
	ids := []string{"l-0", "l-1", "l-2", "l-3", "l-4", "l-5a", "l-5b"}
	for i, id := range ids {
		at := t0.Add(time.Duration(min(i, 5)) * time.Minute)
		_, _, err := s.CreateInstance(ctx, store.Instance{ID: id, Process: "p", ProcessVersion: 1, BusinessKey: "bk-" + id, Input: []byte(`{}`), CreatedBy: "erp", CreatedAt: at})
		must(t, err)
	}
	_, _, err := s.CreateInstance(ctx, store.Instance{ID: "l-other", Process: "q", ProcessVersion: 1, BusinessKey: "x", Input: []byte(`{}`), CreatedAt: t0.Add(time.Hour)})
	must(t, err)
	saveState(t, s, "l-1", "r", 1, json.RawMessage(`{"status":"waiting_event"}`))
	saveState(t, s, "l-2", "r", 1, json.RawMessage(`{"status":"waiting_review"}`))
	saveState(t, s, "l-3", "r", 1, json.RawMessage(`{"status":"completed"}`))
	saveState(t, s, "l-4", "r", 1, json.RawMessage(`{"status":"failed"}`))

	list := func(f store.InstanceFilter) []string {
		t.Helper()
		f.Process = "p"
		got, err := s.Instances(ctx, f)
		must(t, err)
		out := make([]string, len(got))
		for i, in := range got {
			out[i] = in.ID
		}
		return out
	}
	expect := func(name string, got []string, want ...string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Fatalf("%s: %v, want %v", name, got, want)
		}
	}
	expect("all, newest first", list(store.InstanceFilter{}), "l-5b", "l-5a", "l-4", "l-3", "l-2", "l-1", "l-0")
	expect("starting", list(store.InstanceFilter{Status: store.InstanceStarting}), "l-5b", "l-5a", "l-0")
	expect("in progress", list(store.InstanceFilter{Status: store.InstanceInProgress}), "l-5b", "l-5a", "l-2", "l-1", "l-0")
	expect("finished", list(store.InstanceFilter{Status: store.InstanceFinished}), "l-4", "l-3")
	expect("failed", list(store.InstanceFilter{Status: store.InstanceFailed}), "l-4")
	expect("waiting", list(store.InstanceFilter{Status: "waiting_review"}), "l-2")
	expect("waiting for an event", list(store.InstanceFilter{Status: "waiting_event"}), "l-1")
	expect("business key", list(store.InstanceFilter{BusinessKey: "bk-l-3"}), "l-3")
	// By business key across processes (another process has the key too).
	_, _, err = s.CreateInstance(ctx, store.Instance{ID: "l-q3", Process: "q", ProcessVersion: 1, BusinessKey: "bk-l-3", Input: []byte(`{}`), CreatedAt: t0.Add(2 * time.Hour)})
	must(t, err)
	byKey := func(f store.InstanceFilter) []string {
		t.Helper()
		got, err := s.Instances(ctx, f)
		must(t, err)
		var out []string
		for _, in := range got {
			out = append(out, in.Process+"/"+in.ID)
		}
		return out
	}
	expect("a business key in every process", byKey(store.InstanceFilter{BusinessKey: "bk-l-3"}), "q/l-q3", "p/l-3")
	expect("a business key in some processes", byKey(store.InstanceFilter{BusinessKey: "bk-l-3", Processes: []string{"p", "r"}}), "p/l-3")
	for _, f := range []store.InstanceFilter{{}, {Status: store.InstanceFinished}, {BusinessKey: "bk-l-3", SLA: store.SLAOverdue}} {
		if _, err := s.Instances(ctx, f); !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("%+v: %v, want ErrInvalid", f, err)
		}
	}
	expect("since", list(store.InstanceFilter{Since: t0.Add(4 * time.Minute)}), "l-5b", "l-5a", "l-4")

	// By fields of their input (as the API writes inputs: Go's JSON).
	for i, input := range []map[string]any{
		{"customer": "C-1", "amount": 20.0, "vip": true},
		{"customer": "C-2", "amount": 20.5, "vip": false},
		{"customer": "C-1", "amount": 7.0},
		{"customer": `C-"3`, "amount": 20.0, "note": map[string]any{"customer": "C-2"}},
	} {
		id := fmt.Sprintf("in-%d", i)
		b, _ := json.Marshal(input)
		_, _, err := s.CreateInstance(ctx, store.Instance{ID: id, Process: "r", ProcessVersion: 1, BusinessKey: id, Input: b, CreatedAt: t0.Add(time.Duration(i) * time.Minute)})
		must(t, err)
	}
	byInput := func(ms ...store.InputMatch) []string {
		t.Helper()
		got, err := s.Instances(ctx, store.InstanceFilter{Process: "r", Input: ms})
		must(t, err)
		out := make([]string, len(got))
		for i, in := range got {
			out[i] = in.ID
		}
		return out
	}
	expect("a string field", byInput(store.InputMatch{Field: "customer", Value: "C-1"}), "in-2", "in-0")
	expect("a number", byInput(store.InputMatch{Field: "amount", Value: 20.0}), "in-3", "in-0")
	expect("a fraction", byInput(store.InputMatch{Field: "amount", Value: 20.5}), "in-1")
	expect("a boolean", byInput(store.InputMatch{Field: "vip", Value: false}), "in-1")
	expect("two fields", byInput(store.InputMatch{Field: "customer", Value: "C-1"}, store.InputMatch{Field: "amount", Value: 7.0}), "in-2")
	expect("a quote in the value", byInput(store.InputMatch{Field: "customer", Value: `C-"3`}), "in-3")
	expect("top-level fields only", byInput(store.InputMatch{Field: "customer", Value: "C-2"}), "in-1")
	expect("no such field", byInput(store.InputMatch{Field: "region", Value: "north"}))
	for _, m := range []store.InputMatch{{Field: "note", Value: map[string]any{}}, {Field: "a' OR '1'='1", Value: "x"}} {
		if _, err := s.Instances(ctx, store.InstanceFilter{Process: "r", Input: []store.InputMatch{m}}); !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("match %+v: %v, want ErrInvalid", m, err)
		}
	}

	// By where they stand against their version's SLA (the store times an
	// instance's end when it first saves a final status: now).
	now := time.Now().UTC()
	for _, in := range []struct {
		id      string
		version int
		age     time.Duration
		status  string
	}{
		{"s-on-track", 1, 10 * time.Minute, ""},
		{"s-overdue", 1, 2 * time.Hour, "waiting_review"},
		{"s-met", 1, 30 * time.Minute, "completed"},
		{"s-missed", 1, 3 * time.Hour, "failed"},
		{"s-canceled", 1, 3 * time.Hour, "canceled"},
		{"s-v2", 2, 3 * time.Hour, "running"}, // v2 has no SLA
	} {
		_, _, err := s.CreateInstance(ctx, store.Instance{ID: in.id, Process: "sla", ProcessVersion: in.version, BusinessKey: in.id, Input: []byte(`{}`), CreatedAt: now.Add(-in.age)})
		must(t, err)
		if in.status != "" {
			saveState(t, s, in.id, "r", 1, json.RawMessage(`{"status":"`+in.status+`"}`))
		}
	}
	bySLA := func(standing string) []string {
		t.Helper()
		got, err := s.Instances(ctx, store.InstanceFilter{Process: "sla", SLA: standing, SLAs: map[int]time.Duration{1: time.Hour}, Now: now.Add(time.Second)})
		must(t, err)
		out := make([]string, len(got))
		for i, in := range got {
			out[i] = in.ID
			if standing == store.SLAMet || standing == store.SLAMissed {
				if in.FinishedAt == nil || store.SLAStanding(time.Hour, in.Status, in.CreatedAt, *in.FinishedAt, now) != standing {
					t.Fatalf("%s: %+v", standing, in)
				}
			}
		}
		return out
	}
	expect("on track", bySLA(store.SLAOnTrack), "s-on-track")
	expect("overdue", bySLA(store.SLAOverdue), "s-overdue")
	expect("met", bySLA(store.SLAMet), "s-met")
	expect("missed", bySLA(store.SLAMissed), "s-missed")
	for _, c := range []struct {
		f    store.InstanceFilter
		want int
	}{
		{store.InstanceFilter{Process: "sla", SLA: store.SLAOverdue, SLAs: map[int]time.Duration{1: time.Hour}, Now: now}, 1},
		{store.InstanceFilter{Process: "sla", Status: store.InstanceInProgress}, 3},
		{store.InstanceFilter{Process: "sla"}, 6},
		{store.InstanceFilter{Process: "sla", Since: now.Add(-time.Hour)}, 2},
	} {
		if n, err := s.CountInstances(ctx, c.f); err != nil || n != c.want {
			t.Fatalf("count %+v: %d %v, want %d", c.f, n, err, c.want)
		}
	}
	if _, err := s.CountInstances(ctx, store.InstanceFilter{Process: "sla", Input: []store.InputMatch{{Field: "a", Value: "b"}}}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("a count by input: %v", err)
	}
	if got, err := s.Instances(ctx, store.InstanceFilter{Process: "sla", SLA: store.SLAOverdue, Now: now}); err != nil || len(got) != 0 {
		t.Fatalf("no version with an SLA: %v %v", got, err)
	}
	if _, err := s.Instances(ctx, store.InstanceFilter{Process: "sla", SLA: "late", SLAs: map[int]time.Duration{1: time.Hour}, Now: now}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("an unknown standing: %v", err)
	}
	met, err := s.Instance(ctx, "s-met")
	must(t, err)
	running, err := s.Instance(ctx, "s-on-track")
	must(t, err)
	if met.FinishedAt.Before(now) || !running.FinishedAt.IsZero() {
		t.Fatalf("finished at: %v (ended), %v (running)", met.FinishedAt, running.FinishedAt)
	}
	for _, v := range []int{3, 1} {
		_, err := s.PutDefinition(ctx, store.DefinitionRecord{Name: "sla", Version: v, Doc: []byte(`{}`), Digest: fmt.Sprint(v), CreatedAt: t0})
		must(t, err)
	}
	if vs, err := s.DefinitionVersions(ctx, "sla"); err != nil || !slices.Equal(vs, []int{1, 3}) {
		t.Fatalf("definition versions: %v %v", vs, err)
	}

	// Pages of two follow one another with the cursor, across the tie.
	var paged []string
	f := store.InstanceFilter{Process: "p", Limit: 2}
	for {
		page, err := s.Instances(ctx, f)
		must(t, err)
		for _, in := range page {
			paged = append(paged, in.ID)
		}
		if len(page) < f.Limit {
			break
		}
		f.After = store.InstanceCursor(page[len(page)-1])
	}
	expect("paged", paged, "l-5b", "l-5a", "l-4", "l-3", "l-2", "l-1", "l-0")

	got, err := s.Instances(ctx, store.InstanceFilter{Process: "p", Status: store.InstanceFinished})
	must(t, err)
	failed, completed := got[0], got[1]
	if failed.Status != store.InstanceFailed || failed.FinishedAt == nil || completed.Status != store.InstanceCompleted || completed.FinishedAt == nil ||
		completed.BusinessKey != "bk-l-3" || completed.CreatedBy != "erp" || completed.Version != 1 || !completed.CreatedAt.Equal(t0.Add(3*time.Minute)) {
		t.Fatalf("finished instances: %+v", got)
	}
	starting, err := s.Instances(ctx, store.InstanceFilter{Process: "p", Status: store.InstanceStarting, Limit: 1})
	must(t, err)
	if len(starting) != 1 || starting[0].Status != store.InstanceStarting || starting[0].FinishedAt != nil {
		t.Fatalf("a starting instance: %+v", starting)
	}

	for _, bad := range []store.InstanceFilter{{Process: "p", Status: "sleeping"}, {Process: "p", After: "%%%"}, {Process: "p", After: "bm9wZQ"}} {
		if _, err := s.Instances(ctx, bad); !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("%+v: %v, want ErrInvalid", bad, err)
		}
	}
}

// testPruneProcess: a process's own retention prunes only its data: its
// ended instances, whole, and its observations; not another process's,
// nor the audit log. A plan of processes' retentions and a store cut
// prunes each row once, as its count said.
func testPruneProcess(t *testing.T, s Store) {
	ctx := t.Context()
	for _, in := range []struct{ id, process, status string }{
		{"o-1", "orders", "completed"}, {"o-2", "orders", "failed"}, {"o-3", "orders", "running"}, {"r-1", "returns", "completed"},
	} {
		_, _, err := s.CreateInstance(ctx, store.Instance{ID: in.id, Process: in.process, ProcessVersion: 1, BusinessKey: in.id, Input: []byte(`{}`), CreatedAt: t0})
		must(t, err)
		saveState(t, s, in.id, "r", 1, json.RawMessage(`{"status":"`+in.status+`"}`))
	}
	d := decision("o-1-r", 1, "")
	d.InstanceID = "o-1"
	d.Hash = d.ComputeHash()
	_, err := s.AppendDecision(ctx, d)
	must(t, err)
	must(t, s.AppendObservations(ctx, store.Observation{Process: "orders", Signal: "amount", At: t0, Value: 5},
		store.Observation{Process: "orders", Signal: "rate", At: t0, Value: 1},
		store.Observation{Process: "returns", Signal: "amount", At: t0, Value: 7}))
	_, err = s.AppendAudit(ctx, store.AuditEntry{At: t0, KeyID: "k", Actor: "ann", Role: store.RoleAdmin, Action: "POST /v1/keys", Status: 201})
	must(t, err)
	got, err := s.PruneProcess(ctx, "orders", time.Now().Add(time.Second))
	must(t, err)
	if want := (store.Pruned{Instances: 2, Decisions: 1, Observations: 2}); got != want {
		t.Fatalf("prune of orders: %+v, want %+v", got, want)
	}
	for id, kept := range map[string]bool{"o-1": false, "o-2": false, "o-3": true, "r-1": true} {
		if _, err := s.Instance(ctx, id); (err == nil) != kept {
			t.Fatalf("instance %s after the prune of orders: %v", id, err)
		}
	}
	if obs, err := s.Observations(ctx, "returns", "amount", time.Time{}); err != nil || len(obs) != 1 {
		t.Fatalf("returns' observations: %+v %v", obs, err)
	}
	if entries, err := s.Audit(ctx, store.AuditFilter{}); err != nil || len(entries) != 1 {
		t.Fatalf("the audit log: %d %v", len(entries), err)
	}
	if _, err := s.PruneProcess(ctx, "", time.Now()); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("a prune of no process: %v", err)
	}

	// Left: o-3 (running), r-1 (ended now), returns' observation and the
	// audit entry (both at t0). The observation falls under both cuts.
	plan := store.PrunePlan{Before: t0.Add(time.Second), Processes: map[string]time.Time{"returns": time.Now().Add(time.Second)}}
	counted, err := s.PruneCounts(ctx, plan)
	must(t, err)
	got, err = store.PruneByPlan(ctx, s, plan)
	must(t, err)
	if want := (store.Pruned{Instances: 1, Observations: 1, AuditEntries: 1}); got != want || counted != want {
		t.Fatalf("prune by plan: %+v (counted %+v), want %+v", got, counted, want)
	}
	if _, err := s.Instance(ctx, "o-3"); err != nil {
		t.Fatalf("the running instance after the plan's prune: %v", err)
	}
	if n, err := s.PruneCounts(ctx, store.PrunePlan{}); err != nil || n != (store.Pruned{}) {
		t.Fatalf("an empty plan counts %+v %v", n, err)
	}
}

// testPrune: a prune removes the instances that ended before its time,
// each whole (decisions of every run, reviews, verdicts), and the
// observations and audit entries made before it, in batches; what runs,
// what ended later, examples and detector state stay, and the remaining
// chains verify.
func testPrune(t *testing.T, s Store) {
	ctx := t.Context()
	create := func(id string) {
		t.Helper()
		_, _, err := s.CreateInstance(ctx, store.Instance{ID: id, Process: "orders", ProcessVersion: 1, BusinessKey: id, Input: []byte(`{}`), CreatedAt: t0})
		must(t, err)
	}
	// "done" ended, with two runs of decisions (a retry), a review and a
	// verdict; "running" has not ended, "failed" failed; 450 more ended
	// (more than one batch).
	create("done")
	d1 := decision("done-r1", 1, "")
	d1.InstanceID = "done"
	d1.Hash = d1.ComputeHash()
	d2 := decision("done-r2", 2, d1.Hash)
	d2.InstanceID = "done"
	d2.Hash = d2.ComputeHash()
	for _, d := range []process.Decision{d1, d2} {
		_, err := s.AppendDecision(ctx, d)
		must(t, err)
	}
	for _, r := range []store.Review{{ID: "rv-done", InstanceID: "done", RunID: "done-r2", Process: "orders", Step: "s", Queue: "q", CreatedAt: t0},
		{ID: "rv-running", InstanceID: "running", RunID: "run-r1", Process: "orders", Step: "s", Queue: "q", CreatedAt: t0}} {
		_, err := s.CreateReview(ctx, r)
		must(t, err)
		must(t, s.PutVerdict(ctx, store.Verdict{ReviewID: r.ID, Classifier: "c", Queue: "q", Model: "embedded", Predicted: "a", Confidence: 0.5, Label: "a", Reviewer: "ann", At: t0}))
	}
	saveState(t, s, "done", "done-r2", 3, json.RawMessage(`{"status":"completed"}`))
	for _, id := range []string{"done", "running"} {
		_, err := s.AddUndeliveredWebhook(ctx, store.UndeliveredWebhook{Process: "orders", InstanceID: id, Event: "instance.failed",
			URL: "http://erp/hook", Key: id + "/failed", Body: json.RawMessage(`{}`), Attempts: 12, Error: "503", FailedAt: t0})
		must(t, err)
	}
	create("running")
	rd := decision("run-r1", 1, "")
	rd.InstanceID = "running"
	rd.Hash = rd.ComputeHash()
	_, err := s.AppendDecisionWithState(ctx, rd, &store.StateSave{InstanceID: "running", RunID: "run-r1", Seq: 1, State: json.RawMessage(`{"status":"waiting_review"}`)})
	must(t, err)
	create("failed")
	saveState(t, s, "failed", "f-r1", 1, json.RawMessage(`{"status":"failed","error":"x"}`))
	for i := range 450 {
		id := fmt.Sprintf("bulk-%03d", i)
		create(id)
		saveState(t, s, id, "r", 1, json.RawMessage(`{"status":"completed"}`))
	}
	ended := time.Now()
	must(t, s.PutExample(ctx, store.Example{ID: "ex-1", Classifier: "c", Text: "from a review", Label: "a", Source: "review", Embedding: unit(s.EmbeddingDim(), 0, 1, 1), CreatedAt: t0}))
	_, err = s.SaveDetectorState(ctx, store.DetectorState{Key: "orders/rate", State: []byte(`{}`)})
	must(t, err)
	// Observations: a rate with 6,000 boundaries before t0 (more than one
	// batch), values observed before and after t0+1h.
	rate := make([]store.Observation, 6000)
	for i := range rate {
		rate[i] = store.Observation{Process: "orders", Signal: "rate", At: t0.Add(time.Duration(i-6000) * 10 * time.Minute), Value: 1, Verdict: &store.SignalVerdict{Score: 0.1}}
	}
	must(t, s.AppendObservations(ctx, rate...))
	must(t, s.AppendObservations(ctx, store.Observation{Process: "orders", Signal: "amount", At: t0, Value: 5, InstanceID: "done"},
		store.Observation{Process: "orders", Signal: "amount", At: t0.Add(2 * time.Hour), Value: 6, InstanceID: "running"},
		store.Observation{Process: "returns", Signal: "amount", At: t0, Value: 7, InstanceID: "r-1"}))
	for i := range 3 {
		_, err := s.AppendAudit(ctx, store.AuditEntry{At: t0.Add(time.Duration(i) * time.Hour), KeyID: "k", Actor: "ann", Role: store.RoleAdmin, Action: "POST /v1/keys", Status: 201})
		must(t, err)
	}

	// Before t0+1h: nothing has ended yet, so only old observations and
	// entries go. A count beforehand says what goes.
	counted, err := s.PruneCounts(ctx, store.PrunePlan{Before: t0.Add(time.Hour)})
	must(t, err)
	got, err := s.Prune(ctx, t0.Add(time.Hour))
	must(t, err)
	if want := (store.Pruned{Observations: 6000 + 1 + 1, AuditEntries: 1}); got != want || counted != want {
		t.Fatalf("prune before t0+1h: %+v (counted %+v), want %+v", got, counted, want)
	}
	obs, err := s.Observations(ctx, "orders", "amount", time.Time{})
	must(t, err)
	if len(obs) != 1 || obs[0].InstanceID != "running" {
		t.Fatalf("amount observations after the prune: %+v", obs)
	}
	if _, err := s.Instance(ctx, "done"); err != nil {
		t.Fatalf("an instance that ended after the prune's time went: %v", err)
	}

	// After the instances ended: they go whole, the running one stays.
	counted, err = s.PruneCounts(ctx, store.PrunePlan{Before: ended.Add(time.Millisecond)})
	must(t, err)
	got, err = s.Prune(ctx, ended.Add(time.Millisecond))
	must(t, err)
	if want := (store.Pruned{Instances: 452, Decisions: 2, Reviews: 1, Verdicts: 1, AuditEntries: 2, Webhooks: 1}); got != want || counted != want {
		t.Fatalf("prune after the ends: %+v (counted %+v), want %+v", got, counted, want)
	}
	// The running instance's observation stays, however old, until it
	// ends: a decision of it run again finds it rather than observe anew.
	if obs, err := s.Observations(ctx, "orders", "amount", time.Time{}); err != nil || len(obs) != 1 || obs[0].InstanceID != "running" {
		t.Fatalf("the running instance's observation after the prune: %+v %v", obs, err)
	}
	for _, id := range []string{"done", "failed", "bulk-000", "bulk-449"} {
		if _, err := s.Instance(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("instance %s after the prune: %v", id, err)
		}
	}
	if ds, err := s.Decisions(ctx, "done"); err != nil || len(ds) != 0 {
		t.Fatalf("decisions of a pruned instance: %d, %v", len(ds), err)
	}
	if ws, err := s.UndeliveredWebhooks(ctx, store.WebhookFilter{}); err != nil || len(ws) != 1 || ws[0].InstanceID != "running" {
		t.Fatalf("undelivered webhooks after the prune: %+v, %v (want the running instance's only)", ws, err)
	}
	if _, err := s.Review(ctx, "rv-done", time.Now()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("review of a pruned instance: %v", err)
	}
	if vs, err := s.Verdicts(ctx, "c", time.Time{}); err != nil || len(vs) != 1 || vs[0].ReviewID != "rv-running" {
		t.Fatalf("verdicts after the prune: %+v, %v", vs, err)
	}
	if in, err := s.Instance(ctx, "running"); err != nil || in.StateSeq != 1 {
		t.Fatalf("the running instance after the prune: %+v, %v", in, err)
	}
	if rv, err := s.Review(ctx, "rv-running", time.Now()); err != nil || rv.InstanceID != "running" {
		t.Fatalf("the running instance's review after the prune: %+v, %v", rv, err)
	}
	if ds, err := s.Decisions(ctx, "running"); err != nil || len(ds) != 1 {
		t.Fatalf("the running instance's decisions after the prune: %d, %v", len(ds), err)
	}
	if ex, err := s.ExamplesOf(ctx, "c"); err != nil || len(ex) != 1 {
		t.Fatalf("examples after the prune: %+v, %v", ex, err)
	}
	if st, err := s.DetectorState(ctx, "orders/rate"); err != nil || st.Version != 1 {
		t.Fatalf("detector state after the prune: %+v, %v", st, err)
	}
	rep, err := store.Verify(ctx, s)
	must(t, err)
	if !rep.OK || rep.Runs != 1 || rep.Decisions != 1 {
		t.Fatalf("chains after the prune: %+v", rep)
	}
	// Nothing more to prune: a second prune removes nothing.
	if got, err = s.Prune(ctx, ended.Add(time.Millisecond)); err != nil || got != (store.Pruned{}) {
		t.Fatalf("a second prune: %+v, %v", got, err)
	}
	// Once the running instance has ended, its old observation goes
	// with the next prune (it ended after the prune's time, so it stays).
	saveState(t, s, "running", "run-r1", 2, json.RawMessage(`{"status":"completed"}`))
	if got, err = s.Prune(ctx, ended.Add(time.Millisecond)); err != nil || got != (store.Pruned{Observations: 1}) {
		t.Fatalf("a prune after the running instance ended: %+v, %v", got, err)
	}
}

func testUndeliveredWebhooks(t *testing.T, s Store) {
	ctx := t.Context()
	add := func(process, instance, event, key string, attempts int) store.UndeliveredWebhook {
		t.Helper()
		w, err := s.AddUndeliveredWebhook(ctx, store.UndeliveredWebhook{Process: process, InstanceID: instance, Event: event, URL: "http://erp.example/hooks",
			Key: key, Body: json.RawMessage(`{"event":"` + event + `","instance_id":"` + instance + `"}`), Attempts: attempts, Error: "webhook: 503 Service Unavailable", FailedAt: t0})
		must(t, err)
		return w
	}
	a := add("orders", "i1", "instance.completed", "i1/completed", 12)
	if a.ID == 0 || a.Attempts != 12 || a.RedeliveredAt != nil || !a.FailedAt.Equal(t0) || string(a.Body) != `{"event":"instance.completed","instance_id":"i1"}` {
		t.Fatalf("kept: %+v", a)
	}
	b := add("orders", "i2", "instance.failed", "i2/failed", 1)
	c := add("returns", "i3", "review.escalated", "rv3/escalated", 12)
	if a.ID >= b.ID || b.ID >= c.ID {
		t.Fatalf("ids not increasing: %d %d %d", a.ID, b.ID, c.ID)
	}
	for _, bad := range []store.UndeliveredWebhook{
		{Process: "orders", InstanceID: "i9", Key: "k", Body: json.RawMessage(`{}`), Attempts: 1},                  // no URL
		{Process: "orders", InstanceID: "i9", URL: "http://x", Body: json.RawMessage(`{}`), Attempts: 1},           // no key
		{Process: "orders", InstanceID: "i9", URL: "http://x", Key: "k", Body: json.RawMessage(`{`), Attempts: 1},  // not JSON
		{Process: "orders", InstanceID: "i9", URL: "http://x", Key: "k", Body: json.RawMessage(`{}`), Attempts: 0}, // no attempt
	} {
		if _, err := s.AddUndeliveredWebhook(ctx, bad); !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("kept %+v: %v, want ErrInvalid", bad, err)
		}
	}
	ids := func(f store.WebhookFilter) []int64 {
		t.Helper()
		ws, err := s.UndeliveredWebhooks(ctx, f)
		must(t, err)
		out := []int64{}
		for _, w := range ws {
			out = append(out, w.ID)
		}
		return out
	}
	for name, c2 := range map[string]struct {
		f    store.WebhookFilter
		want []int64
	}{
		"all, newest first":     {store.WebhookFilter{}, []int64{c.ID, b.ID, a.ID}},
		"one process":           {store.WebhookFilter{Process: "orders"}, []int64{b.ID, a.ID}},
		"a key's processes":     {store.WebhookFilter{Processes: []string{"returns", "other"}}, []int64{c.ID}},
		"one instance":          {store.WebhookFilter{InstanceID: "i2"}, []int64{b.ID}},
		"a page":                {store.WebhookFilter{Limit: 2}, []int64{c.ID, b.ID}},
		"the next page":         {store.WebhookFilter{Limit: 2, Before: b.ID}, []int64{a.ID}},
		"redelivered, none yet": {store.WebhookFilter{Status: store.WebhookRedelivered}, []int64{}},
	} {
		if got := ids(c2.f); !slices.Equal(got, c2.want) {
			t.Fatalf("%s: %v, want %v", name, got, c2.want)
		}
	}
	if _, err := s.UndeliveredWebhooks(ctx, store.WebhookFilter{Status: "lost"}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("status lost: %v, want ErrInvalid", err)
	}

	// A failed redelivery counts, and the webhook stays pending.
	at := t0.Add(time.Hour)
	f, err := s.WebhookRedeliveryFailed(ctx, a.ID, "webhook: 500", at)
	must(t, err)
	if f.Attempts != 13 || f.Error != "webhook: 500" || !f.FailedAt.Equal(at) || f.RedeliveredAt != nil {
		t.Fatalf("after a failed redelivery: %+v", f)
	}
	// A redelivery that worked marks it, once.
	r, err := s.WebhookRedelivered(ctx, a.ID, "ops", at.Add(time.Minute))
	must(t, err)
	if r.Attempts != 14 || r.RedeliveredAt == nil || !r.RedeliveredAt.Equal(at.Add(time.Minute)) || r.RedeliveredBy != "ops" {
		t.Fatalf("redelivered: %+v", r)
	}
	if _, err := s.WebhookRedelivered(ctx, a.ID, "ops2", at); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("redelivered twice: %v, want ErrConflict", err)
	}
	if _, err := s.WebhookRedeliveryFailed(ctx, a.ID, "x", at); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a failure counted on a redelivered webhook: %v, want ErrConflict", err)
	}
	if _, err := s.WebhookRedelivered(ctx, c.ID+100, "ops", at); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("redelivered a webhook that is not there: %v, want ErrNotFound", err)
	}
	if _, err := s.UndeliveredWebhook(ctx, c.ID+100); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("read a webhook that is not there: %v, want ErrNotFound", err)
	}
	got, err := s.UndeliveredWebhook(ctx, a.ID)
	must(t, err)
	if got.RedeliveredBy != "ops" || got.Attempts != 14 || got.Key != "i1/completed" || got.URL != "http://erp.example/hooks" || got.Event != "instance.completed" || got.Process != "orders" {
		t.Fatalf("read back: %+v", got)
	}
	if got := ids(store.WebhookFilter{Status: store.WebhookPending}); !slices.Equal(got, []int64{c.ID, b.ID}) {
		t.Fatalf("pending: %v", got)
	}
	if got := ids(store.WebhookFilter{Status: store.WebhookRedelivered}); !slices.Equal(got, []int64{a.ID}) {
		t.Fatalf("redelivered: %v", got)
	}

	// The same event given up again (its instance retried) is the same
	// row, pending again, its attempts added.
	again := add("orders", "i1", "instance.completed", "i1/completed", 12)
	if again.ID != a.ID || again.RedeliveredAt != nil || again.RedeliveredBy != "" || again.Attempts != 26 {
		t.Fatalf("given up again: %+v (first %+v)", again, a)
	}
	if got := ids(store.WebhookFilter{}); len(got) != 3 {
		t.Fatalf("rows after the same event was given up again: %v", got)
	}
	pending, err := s.PendingWebhooks(ctx)
	must(t, err)
	if fmt.Sprint(pending) != "map[orders:2 returns:1]" {
		t.Fatalf("pending by process: %v", pending)
	}
	_, err = s.WebhookRedelivered(ctx, c.ID, "ops", at)
	must(t, err)
	if pending, err := s.PendingWebhooks(ctx); err != nil || fmt.Sprint(pending) != "map[orders:2]" {
		t.Fatalf("pending by process once returns' was redelivered: %v %v", pending, err)
	}

	// A redelivery holds its webhook: a second at once is refused until
	// the first's outcome, or its hold runs out.
	now := t0.Add(2 * time.Hour)
	held, err := s.ClaimWebhookRedelivery(ctx, b.ID, now, now.Add(time.Minute))
	must(t, err)
	if held.ID != b.ID || held.SendingUntil == nil || !held.SendingUntil.Equal(now.Add(time.Minute)) {
		t.Fatalf("claimed: %+v", held)
	}
	if _, err := s.ClaimWebhookRedelivery(ctx, b.ID, now.Add(time.Second), now.Add(time.Minute)); !errors.Is(err, store.ErrConflict) || !strings.Contains(err.Error(), "being redelivered") {
		t.Fatalf("a second claim at once: %v, want ErrConflict naming the redelivery under way", err)
	}
	_, err = s.WebhookRedeliveryFailed(ctx, b.ID, "webhook: 502", now.Add(2*time.Second))
	must(t, err)
	again, err = s.ClaimWebhookRedelivery(ctx, b.ID, now.Add(3*time.Second), now.Add(time.Minute))
	must(t, err) // the failure let it go
	if _, err := s.ClaimWebhookRedelivery(ctx, b.ID, now.Add(time.Minute), now.Add(2*time.Minute)); err != nil {
		t.Fatalf("a claim once the hold ran out (its server crashed mid-send): %v", err)
	}
	done, err := s.WebhookRedelivered(ctx, b.ID, "ops", now.Add(61*time.Second))
	must(t, err)
	if done.SendingUntil != nil || done.RedeliveredAt == nil || again.SendingUntil == nil {
		t.Fatalf("redelivered after a claim: %+v", done)
	}
	if _, err := s.ClaimWebhookRedelivery(ctx, b.ID, now.Add(2*time.Minute), now.Add(3*time.Minute)); !errors.Is(err, store.ErrConflict) || !strings.Contains(err.Error(), "redelivered already") {
		t.Fatalf("a claim of a webhook redelivered: %v, want ErrConflict", err)
	}
	if _, err := s.ClaimWebhookRedelivery(ctx, c.ID+100, now, now.Add(time.Minute)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a claim of a webhook that is not there: %v, want ErrNotFound", err)
	}
}

// testExamplePages: a classifier's examples listed a page at a time,
// newest first, by label, source and a piece of their text, and counted
// by label.
func testExamplePages(t *testing.T, s Store) {
	ctx := t.Context()
	var es []store.Example
	for i := range 25 {
		e := store.Example{ID: fmt.Sprintf("x%02d", i), Classifier: "desk", Label: []string{"refund", "question"}[i%2], Source: "api:importer", CreatedAt: t0.Add(time.Duration(i/2) * time.Second)}
		e.Text = fmt.Sprintf("text %d", i)
		if i%5 == 0 {
			e.Source = "review:ann"
			e.Text = fmt.Sprintf("Where is my MONEY? (%d%% off, case_%d)", i, i)
		}
		es = append(es, e)
	}
	must(t, s.PutExamples(ctx, es))
	must(t, s.PutExample(ctx, store.Example{ID: "other", Classifier: "notes", Text: "my money", Label: "refund", Source: "review:ann", CreatedAt: t0}))
	must(t, s.PutExample(ctx, store.Example{ID: "umlaut", Classifier: "letters", Text: "ÜBERWEISUNG an Ærø, ΣΤΟ ΑΕΡΟΔΡΌΜΙΟ", Label: "transfer", Source: "api:importer", CreatedAt: t0}))
	ids := func(f store.ExampleFilter) ([]string, string) {
		t.Helper()
		f.Classifier = "desk"
		page, err := s.ExamplesPage(ctx, f)
		must(t, err)
		out := make([]string, len(page))
		for i, e := range page {
			out[i] = e.ID
			if e.Embedding != nil || e.Classifier != "desk" || e.CreatedAt.IsZero() {
				t.Fatalf("listed %+v", e)
			}
		}
		next := ""
		if len(page) > 0 {
			next = store.ExampleCursor(page[len(page)-1])
		}
		return out, next
	}
	// Newest first (by time, then id, several sharing a time), 10 a page,
	// every one once.
	var all []string
	for after := ""; ; {
		page, next := ids(store.ExampleFilter{Limit: 10, After: after})
		all = append(all, page...)
		if len(page) < 10 {
			break
		}
		after = next
	}
	if len(all) != 25 || all[0] != "x24" || all[1] != "x23" || all[2] != "x22" || all[24] != "x00" {
		t.Fatalf("pages: %v", all)
	}
	if got, _ := ids(store.ExampleFilter{Label: "refund", Source: "review"}); !slices.Equal(got, []string{"x20", "x10", "x00"}) {
		t.Fatalf("refunds from reviewers: %v", got)
	}
	if got, _ := ids(store.ExampleFilter{Source: "review:ann"}); len(got) != 5 {
		t.Fatalf("Ann's: %v", got)
	}
	if got, _ := ids(store.ExampleFilter{Source: "revie"}); len(got) != 0 {
		t.Fatalf("a source's prefix is no source: %v", got)
	}
	if got, _ := ids(store.ExampleFilter{Source: "api"}); len(got) != 20 {
		t.Fatalf("added through the API: %v", got)
	}
	if got, _ := ids(store.ExampleFilter{Text: "where is my money"}); len(got) != 5 {
		t.Fatalf("by text, any case: %v", got)
	}
	// Every letter folds, not only ASCII's (SQLite's lower() and
	// PostgreSQL's in the C locale fold ASCII only).
	for _, q := range []string{"überweisung", "ÜBERWEISUNG", "Überweisung an ærø", "αεροδρόμιο"} {
		page, err := s.ExamplesPage(ctx, store.ExampleFilter{Classifier: "letters", Text: q})
		must(t, err)
		if len(page) != 1 {
			t.Fatalf("by text %q, any case: %v", q, page)
		}
	}
	// %, _ and \ are no patterns.
	if got, _ := ids(store.ExampleFilter{Text: "5% off"}); !slices.Equal(got, []string{"x15", "x05"}) {
		t.Fatalf("a text with %%: %v", got)
	}
	if got, _ := ids(store.ExampleFilter{Text: "t_1"}); len(got) != 0 {
		t.Fatalf("_ matched a space: %v", got)
	}
	if got, _ := ids(store.ExampleFilter{Text: "case_1"}); !slices.Equal(got, []string{"x15", "x10"}) {
		t.Fatalf("a text with _: %v", got)
	}
	if _, err := s.ExamplesPage(ctx, store.ExampleFilter{Classifier: "desk", After: "not a cursor"}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("a malformed cursor: %v", err)
	}
	counts, err := s.ExampleCounts(ctx, "desk")
	must(t, err)
	if !maps.Equal(counts, map[string]int{"refund": 13, "question": 12}) {
		t.Fatalf("counts %v", counts)
	}
	// Deleted by filter, in one go: the classifier's version changes once
	// and only when some went; another classifier's stay.
	version := func() int64 {
		v, err := s.ExamplesVersion(ctx, "desk")
		must(t, err)
		return v
	}
	before := version()
	if n, err := s.DeleteExamples(ctx, store.ExampleFilter{Classifier: "desk", Source: "review", Label: "complaint"}); err != nil || n != 0 || version() != before {
		t.Fatalf("deleting none: %d %v, version %d (was %d)", n, err, version(), before)
	}
	if n, err := s.DeleteExamples(ctx, store.ExampleFilter{Classifier: "desk", Source: "review"}); err != nil || n != 5 || version() == before {
		t.Fatalf("deleting the reviewers': %d %v, version %d (was %d)", n, err, version(), before)
	}
	if got, _ := ids(store.ExampleFilter{Limit: 100}); len(got) != 20 {
		t.Fatalf("after the delete: %v", got)
	}
	if n, err := s.DeleteExamples(ctx, store.ExampleFilter{Classifier: "desk", Text: "TEXT 1"}); err != nil || n != 9 { // text 1, 11 to 19 but Ann's 15
		t.Fatalf("deleting by text: %d %v", n, err)
	}
	if n, err := s.DeleteExamples(ctx, store.ExampleFilter{Classifier: "letters", Text: "Überweisung AN ÆRØ"}); err != nil || n != 1 {
		t.Fatalf("deleting by a text of other letters than ASCII's, in another case: %d %v", n, err)
	}
	if left, _ := s.ExamplesOf(ctx, "notes"); len(left) != 1 {
		t.Fatalf("another classifier's examples: %v", left)
	}
}

// testEvaluations: a classifier's last evaluation of each model is kept,
// in place of an earlier one of that model, never of a later one.
func testEvaluations(t *testing.T, s Store) {
	ctx := t.Context()
	if _, err := s.LastEvaluation(ctx, "desk", "embedded"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("none yet: %v", err)
	}
	put := func(model, doc string, at time.Time) {
		t.Helper()
		must(t, s.PutEvaluation(ctx, store.Evaluation{Classifier: "desk", Model: model, Doc: json.RawMessage(doc), At: at}))
	}
	put("embedded", `{"accuracy":0.5}`, t0)
	put("embedded", `{"accuracy":0.75}`, t0.Add(time.Minute))
	put("embedded", `{"accuracy":0.25}`, t0.Add(time.Second)) // finished after, began before
	put("llm", `{"accuracy":0.9}`, t0.Add(2*time.Minute))
	must(t, s.PutEvaluation(ctx, store.Evaluation{Classifier: "notes", Model: "embedded", Doc: json.RawMessage(`{}`), At: t0}))
	e, err := s.LastEvaluation(ctx, "desk", "embedded")
	must(t, err)
	if string(e.Doc) != `{"accuracy":0.75}` || !e.At.Equal(t0.Add(time.Minute)) || e.Classifier != "desk" || e.Model != "embedded" {
		t.Fatalf("the last evaluation: %s at %v", e.Doc, e.At)
	}
	if e, err := s.LastEvaluation(ctx, "desk", "llm"); err != nil || string(e.Doc) != `{"accuracy":0.9}` {
		t.Fatalf("the last evaluation of the LLM: %s: %v", e.Doc, err)
	}
	if _, err := s.LastEvaluation(ctx, "notes", "llm"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("no evaluation of the LLM: %v", err)
	}
}
