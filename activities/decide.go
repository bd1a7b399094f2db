package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
)

// DecideInput is what the workflow knows at a decision point.
type DecideInput struct {
	Definition  *process.Definition
	InstanceID  string
	BusinessKey string
	RunID       string
	Seq         int
	Step        string
	Now         time.Time
	Started     time.Time
	Input       map[string]any
	StepsDone   []string
	Results     map[string]any
	Vars        map[string]any
	Reviews     []policies.ReviewFact
	// Classification is the instance's classification facts, if any.
	Classification map[string]any
	// Signals are the instance's value and duration signals, observed once
	// and carried by the workflow to the later decisions.
	Signals map[string]policies.Signal
	// Durations are the seconds each finished step took, by step id.
	Durations map[string]float64 `json:",omitempty"`
	// Events are the events other systems sent the instance so far.
	Events   map[string]policies.EventFact `json:",omitempty"`
	Point    policies.Point
	PrevHash string
	// State, when set, is the instance's state just before this decision,
	// saved to the projection as save number StateSeq of the run.
	State    json.RawMessage `json:",omitempty"`
	StateSeq int64           `json:",omitempty"`
	// HistorySize is the workflow's history's size in bytes so far: the
	// record rides in the history only while it stays within
	// RecordsInHistoryBudget.
	HistorySize int `json:",omitempty"`
}

// SaveStateInput is one save of an instance's state projection.
type SaveStateInput struct {
	InstanceID string
	RunID      string
	Seq        int64
	State      json.RawMessage
	// SLA is the definition's SLA, for the metrics of an instance that
	// ended (0: none).
	SLA time.Duration `json:",omitempty"`
}

// SaveState saves an instance's state to the projection that reads of the
// instance are served from. A save older than the stored one is dropped.
func (a *Activities) SaveState(ctx context.Context, in SaveStateInput) error {
	if a.States == nil {
		return nil
	}
	f, err := a.States.SaveInstanceState(ctx, in.InstanceID, in.RunID, in.Seq, in.State)
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	a.Metrics.ended(f, in.SLA)
	if f != nil {
		a.Metrics.compensated(f.Process, in.State)
		a.freedSlot(ctx, f.Process)
	}
	return nil
}

// freedSlot starts the instances of a process queued under its
// concurrency limit, now that one of its instances has ended: the latest
// version's limit holds for the instances of every version, and those of
// a version that declared none do not start the queue as they end (the
// workflow's StartQueued runs only from a version with a limit). Best
// effort: the start sweep catches up.
func (a *Activities) freedSlot(ctx context.Context, process string) {
	if a.StartQueuedFn == nil || a.SubProcesses == nil {
		return
	}
	// Bounded well within the save's own timeout: a queue a raised limit
	// frees at once is the sweep's to finish.
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	limit, err := a.concurrency(ctx, process)
	if err == nil && limit > 0 {
		_, err = a.StartQueuedFn(ctx, process)
	}
	if err != nil {
		a.logger().Warn("starting the instances queued for a freed slot; the start sweep will", "process", process, "err", err)
	}
}

// DecideResult is the recorded decision the workflow must apply.
type DecideResult struct {
	// Signals are the value signals observed at this decision, for the
	// workflow to pass to the later ones.
	Signals    map[string]policies.Signal
	DecisionID string
	Hash       string
	Applied    []process.AppliedAction
	Rejected   int
	// Record is the stored record itself. The result is kept in the
	// workflow's history, so a store restored from an older backup takes
	// back the records made since from there (api's catch-up and recover
	// sweeps). Nil for one larger than RecordInHistoryMax, or once the
	// history has passed RecordsInHistoryBudget: Temporal bounds a
	// payload's size and a history's.
	Record *process.Decision `json:",omitempty"`
}

// RecordInHistoryMax bounds the encoded size of a record a DecideResult
// carries into the workflow's history: well within Temporal's bound on
// one payload (a warning at 512 KB, a failure at 2 MB).
const RecordInHistoryMax = 256 << 10

// RecordsInHistoryBudget bounds the history a workflow may have for its
// decisions to carry their records: a record's facts hold the instance's
// input and every step's result so far, so a long instance with large
// ones would otherwise near Temporal's bound on a history's size (a
// warning at 10 MB, termination at 50 MB). The decisions after that keep
// their records in the store only.
const RecordsInHistoryBudget = 4 << 20

// result is the DecideResult of the stored record d, for a workflow whose
// history has historySize bytes so far.
func result(d process.Decision, historySize int) DecideResult {
	r := DecideResult{DecisionID: d.ID, Hash: d.Hash, Applied: d.Applied, Rejected: len(d.Rejected)}
	if b, err := json.Marshal(d); err == nil && len(b) <= RecordInHistoryMax && historySize+len(b) <= RecordsInHistoryBudget {
		r.Record = &d
	}
	return r
}

// DecisionID is the id of the decision with sequence number seq in a run.
func DecisionID(runID string, seq int) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%s/%d", runID, seq))
	return "dc_" + hex.EncodeToString(h[:12])
}

// Decide builds the facts of a decision point, evaluates the active policies
// of the process, resolves and guards their actions and appends the decision
// record. When the record exists already (this activity ran before and its
// result was lost), the recorded actions are returned unchanged, so every
// decision is recorded and applied exactly once.
func (a *Activities) Decide(ctx context.Context, in DecideInput) (DecideResult, error) {
	def := in.Definition
	if def == nil {
		return DecideResult{}, invalid("decide: no definition", nil)
	}
	set, err := a.policySet(ctx, def)
	if err != nil {
		return DecideResult{}, fmt.Errorf("decide: policies of %s: %w", def.Name, err)
	}
	signals, observed, err := a.signals(ctx, def, in)
	if err != nil {
		return DecideResult{}, fmt.Errorf("decide: signals: %w", err)
	}
	facts := policies.Facts{
		Input:   in.Input,
		Process: policies.ProcessFacts{Name: def.Name, Version: def.Version},
		Instance: policies.InstanceFacts{
			ID: in.InstanceID, BusinessKey: in.BusinessKey, Step: in.Step,
			StepsDone: in.StepsDone, Elapsed: in.Now.Sub(in.Started).Seconds(), Vars: in.Vars,
		},
		Steps:          in.Results,
		Signals:        signals,
		Classification: in.Classification,
		Calendar:       a.Calendar.Facts(in.Now),
		Reviews:        in.Reviews,
		Events:         in.Events,
	}
	if sla := def.SLADuration(); sla > 0 {
		facts.Instance.SLA = sla.Seconds()
		facts.Instance.Overdue = facts.Instance.Elapsed > facts.Instance.SLA
	}
	vars := facts.Vars()
	raw, err := facts.JSON()
	if err != nil {
		return DecideResult{}, invalid("decide: "+err.Error(), err)
	}
	in.Point.Step, in.Point.Instance = in.Step, in.InstanceID
	out := set.Decide(ctx, def, vars, in.Point)
	d := process.Decision{
		ID:             DecisionID(in.RunID, in.Seq),
		InstanceID:     in.InstanceID,
		RunID:          in.RunID,
		Seq:            in.Seq,
		Time:           in.Now.UTC(),
		Process:        def.Name,
		ProcessVersion: def.Version,
		Step:           in.Step,
		Facts:          raw,
		Evaluations:    out.Evaluations,
		Applied:        out.Applied,
		Rejected:       out.Rejected,
		Guard:          process.Guard{Added: nonNil(in.Point.Added), Reviews: in.Point.Reviews, Fired: nonNil(in.Point.Fired)},
		Shadow:         out.Shadow,
		Model:          modelOf(in.Classification, a.model()),
		PrevHash:       in.PrevHash,
	}
	if d.Evaluations == nil {
		d.Evaluations = []process.Evaluation{}
	}
	if d.Applied == nil {
		d.Applied = []process.AppliedAction{}
	}
	if d.Rejected == nil {
		d.Rejected = []process.Rejection{}
	}
	d.Hash = d.ComputeHash()
	// The state the workflow carries is saved with the record, in one
	// transaction.
	var st *store.StateSave
	if len(in.State) > 0 && a.States != nil {
		st = &store.StateSave{InstanceID: in.InstanceID, RunID: in.RunID, Seq: in.StateSeq, State: in.State}
	}
	stored, err := a.Decisions.AppendDecisionWithState(ctx, d, st)
	if err != nil {
		return DecideResult{}, fmt.Errorf("decide: record: %w", err)
	}
	a.Metrics.decided(def.Name, stored.Applied, len(stored.Rejected))
	res := result(stored, in.HistorySize)
	res.Signals = observed
	return res, nil
}

// modelOf names the model that classified the instance, for the record.
func modelOf(classification map[string]any, def string) string {
	if m, ok := classification["model"].(string); ok && m != "" {
		return m
	}
	return def
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (a *Activities) model() string {
	if a.Model == "" {
		return "none"
	}
	return a.Model
}

// signals computes the signals the definition declares: arrival rates at
// every decision; value signals once per instance, at its first decision,
// and duration signals at the first decision after their step finished
// (returned as observed), later from what the workflow carries. A signal
// that cannot be computed (or a duration before its step finished) is left
// out, and policies that read it record an error; a value or duration that
// cannot be saved fails the decision, to be retried, so no observation is
// lost.
func (a *Activities) signals(ctx context.Context, def *process.Definition, in DecideInput) (map[string]policies.Signal, map[string]policies.Signal, error) {
	now := in.Now
	out := make(map[string]policies.Signal, len(def.Signals))
	observed := map[string]policies.Signal{}
	for _, sig := range def.Signals {
		if sig.Kind == "value" || sig.Kind == "duration" {
			if s, ok := in.Signals[sig.Name]; ok {
				out[sig.Name] = s
				continue
			}
			v, ok := in.Input[sig.Field].(float64)
			if sig.Kind == "duration" {
				v, ok = in.Durations[sig.Step]
			}
			if !ok || a.Detectors == nil {
				continue
			}
			s, err := a.observeValue(ctx, def, sig, in.InstanceID, v, now)
			if err != nil {
				return nil, nil, err
			}
			out[sig.Name], observed[sig.Name] = s, s
			continue
		}
		if sig.Kind != "arrival_rate" || a.Starts == nil || a.Detectors == nil {
			continue
		}
		s, err := a.observeRate(ctx, def, sig, now)
		if err != nil {
			a.logger().WarnContext(ctx, "signal unavailable", "signal", sig.Name, "process", def.Name, "err", err)
			continue
		}
		out[sig.Name] = s
	}
	return out, observed, nil
}

// RecordReviewInput appends a review's outcome to the instance's decision
// chain.
type RecordReviewInput struct {
	InstanceID     string
	RunID          string
	Seq            int
	PrevHash       string
	Process        string
	ProcessVersion int
	Step           string
	Outcome        process.ReviewOutcome
	Now            time.Time
}

// RecordReview appends the outcome of a review to the decision chain: who
// decided what, with their comment. Like a decision, it is written once per
// (run, sequence) however often the activity retries.
func (a *Activities) RecordReview(ctx context.Context, in RecordReviewInput) (DecideResult, error) {
	d := process.Decision{
		ID: DecisionID(in.RunID, in.Seq), InstanceID: in.InstanceID, RunID: in.RunID, Seq: in.Seq, Time: in.Now.UTC(),
		Process: in.Process, ProcessVersion: in.ProcessVersion, Step: in.Step, Facts: json.RawMessage(`{}`),
		Evaluations: []process.Evaluation{}, Applied: []process.AppliedAction{}, Rejected: []process.Rejection{},
		Guard: process.Guard{Added: []string{}, Fired: []string{}}, Model: "", Review: &in.Outcome, PrevHash: in.PrevHash,
	}
	d.Hash = d.ComputeHash()
	stored, err := a.Decisions.AppendDecision(ctx, d)
	if err != nil {
		return DecideResult{}, fmt.Errorf("record review: %w", err)
	}
	// A review's record holds no facts: a few hundred bytes, carried
	// whatever the history's size.
	return result(stored, 0), nil
}
