package policies

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/adaptflow/adaptflow/process"
)

// Scanner feeds recorded decisions (their JSON records) to fn, in order.
type Scanner func(ctx context.Context, fn func(record []byte) error) error

// DefinitionLookup returns a version of the simulated process's definition.
type DefinitionLookup func(ctx context.Context, version int) (*process.Definition, error)

// SimulationOptions tune a simulation.
type SimulationOptions struct {
	// Examples is how many changed decisions the report lists (default 20).
	Examples int
	// Progress, when set, is called now and then with the records done.
	Progress func(done int)
	// Workers evaluate in parallel (default: the number of CPUs).
	Workers int
}

// SimulationReport says how a candidate policy set would have decided the
// recorded decision points differently.
type SimulationReport struct {
	Process           string        `json:"process"`
	Decisions         int           `json:"decisions"`
	Changed           int           `json:"changed"`
	InstancesAffected int           `json:"instances_affected"`
	Actions           []ActionDelta `json:"actions"`
	Reviews           Delta         `json:"reviews"`
	StepsRun          Delta         `json:"steps_run"`
	EvaluationErrors  int           `json:"evaluation_errors"`
	Examples          []Example     `json:"examples"`
	DurationMS        int64         `json:"duration_ms"`
	Note              string        `json:"note"`
}

// ActionDelta is how often an action was applied, and would be.
type ActionDelta struct {
	Action string `json:"action"`
	Before int    `json:"before"`
	After  int    `json:"after"`
	Delta  int    `json:"delta"`
}

// Delta compares a count before and after.
type Delta struct {
	Before int `json:"before"`
	After  int `json:"after"`
}

// Example is one decision that would change.
type Example struct {
	InstanceID string   `json:"instance_id"`
	DecisionID string   `json:"decision_id"`
	Step       string   `json:"step"`
	Before     []string `json:"before"`
	After      []string `json:"after"`
	Link       string   `json:"link"`
}

// simRecord is the part of a decision record a simulation reads.
type simRecord struct {
	ID             string                  `json:"id"`
	InstanceID     string                  `json:"instance_id"`
	Step           string                  `json:"step"`
	ProcessVersion int                     `json:"process_version"`
	Facts          json.RawMessage         `json:"facts"`
	Applied        []process.AppliedAction `json:"applied"`
	Guard          process.Guard           `json:"guard"`
	// Review marks the record of a review's outcome: no decision to replay.
	Review *process.ReviewOutcome `json:"review"`
}

type simResult struct {
	rec     simRecord
	skip    bool // a review's outcome, not a decision
	before  []string
	after   []string
	errs    int
	changed bool
	err     error
}

// Simulate replays the facts of recorded decisions through candidate and
// compares the actions it applies with the ones that were applied. It only
// reads. Each decision is replayed on its own, so effects that would ripple
// (a step added by the candidate deciding its own actions) are estimates.
func Simulate(ctx context.Context, processName string, candidate *Set, defs DefinitionLookup, scan Scanner, opts SimulationOptions) (SimulationReport, error) {
	start := time.Now()
	if opts.Examples <= 0 {
		opts.Examples = 20
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.NumCPU()
	}
	rep := SimulationReport{Process: processName, Actions: []ActionDelta{}, Examples: []Example{},
		Note: "each recorded decision is replayed on its own; steps the candidate would add or skip do not get decisions of their own, so effects on later steps are estimates"}

	var defMu sync.Mutex
	defCache := map[int]*process.Definition{}
	defFor := func(v int) (*process.Definition, error) {
		defMu.Lock()
		defer defMu.Unlock()
		if d, ok := defCache[v]; ok {
			return d, nil
		}
		d, err := defs(ctx, v)
		if err != nil {
			return nil, fmt.Errorf("definition %s@%d: %w", processName, v, err)
		}
		defCache[v] = d
		return d, nil
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in := make(chan []byte, 256)
	out := make(chan simResult, 256)
	var wg sync.WaitGroup
	for range opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for raw := range in {
				out <- replay(ctx, candidate, defFor, raw)
			}
		}()
	}
	scanErr := make(chan error, 1)
	go func() {
		err := scan(ctx, func(rec []byte) error {
			select {
			case in <- rec:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		close(in)
		wg.Wait()
		close(out)
		scanErr <- err
	}()

	counts := map[string]*ActionDelta{}
	affected := map[string]bool{}
	var firstErr error
	for r := range out {
		if r.err != nil {
			if firstErr == nil {
				firstErr = r.err
				cancel()
			}
			continue
		}
		if r.skip {
			continue
		}
		rep.Decisions++
		rep.EvaluationErrors += r.errs
		tally := func(actions []string, after bool) {
			for _, a := range actions {
				c := counts[a]
				if c == nil {
					c = &ActionDelta{Action: a}
					counts[a] = c
				}
				if after {
					c.After++
				} else {
					c.Before++
				}
			}
		}
		tally(r.before, false)
		tally(r.after, true)
		rep.Reviews.Before += countKind(r.before, "review ")
		rep.Reviews.After += countKind(r.after, "review ")
		rep.StepsRun.Before += stepsRun(r.before, r.rec.Step)
		rep.StepsRun.After += stepsRun(r.after, r.rec.Step)
		if r.changed {
			rep.Changed++
			affected[r.rec.InstanceID] = true
			if len(rep.Examples) < opts.Examples {
				rep.Examples = append(rep.Examples, Example{
					InstanceID: r.rec.InstanceID, DecisionID: r.rec.ID, Step: r.rec.Step,
					Before: r.before, After: r.after, Link: "/v1/instances/" + r.rec.InstanceID,
				})
			}
		}
		if opts.Progress != nil && rep.Decisions%1000 == 0 {
			opts.Progress(rep.Decisions)
		}
	}
	if err := <-scanErr; err != nil && firstErr == nil && !errors.Is(err, context.Canceled) {
		firstErr = err
	}
	if firstErr != nil {
		return rep, firstErr
	}
	if opts.Progress != nil {
		opts.Progress(rep.Decisions)
	}
	rep.InstancesAffected = len(affected)
	for _, c := range counts {
		c.Delta = c.After - c.Before
		rep.Actions = append(rep.Actions, *c)
	}
	slices.SortFunc(rep.Actions, func(a, b ActionDelta) int {
		if d := abs(b.Delta) - abs(a.Delta); d != 0 {
			return d
		}
		return strings.Compare(a.Action, b.Action)
	})
	rep.DurationMS = time.Since(start).Milliseconds()
	return rep, nil
}

func replay(ctx context.Context, candidate *Set, defFor func(int) (*process.Definition, error), raw []byte) simResult {
	var r simResult
	if err := json.Unmarshal(raw, &r.rec); err != nil {
		r.err = fmt.Errorf("decode decision record: %w", err)
		return r
	}
	if r.rec.Review != nil {
		r.skip = true
		return r
	}
	def, err := defFor(r.rec.ProcessVersion)
	if err != nil {
		r.err = err
		return r
	}
	vars, err := VarsFromJSON(r.rec.Facts)
	if err != nil {
		r.err = fmt.Errorf("decision %s: %w", r.rec.ID, err)
		return r
	}
	g := r.rec.Guard
	out := candidate.Decide(ctx, def, vars, Point{Step: r.rec.Step, Added: g.Added, Reviews: g.Reviews, Fired: g.Fired, Instance: r.rec.InstanceID})
	for _, ev := range out.Evaluations {
		if ev.Error != "" {
			r.errs++
		}
	}
	r.before = phrases(r.rec.Applied)
	r.after = phrases(out.Applied)
	r.changed = !slices.Equal(r.before, r.after)
	return r
}

// phrases renders applied actions as sorted phrases ("skip pack").
func phrases(as []process.AppliedAction) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.Action.String()
	}
	slices.Sort(out)
	return out
}

func countKind(actions []string, prefix string) int {
	n := 0
	for _, a := range actions {
		if strings.HasPrefix(a, prefix) {
			n++
		}
	}
	return n
}

// stepsRun estimates the steps a decision leads to: its own unless skipped,
// plus the ones it adds.
func stepsRun(actions []string, step string) int {
	n := 1
	for _, a := range actions {
		switch {
		case a == "skip "+step:
			n--
		case strings.HasPrefix(a, "add "):
			n++
		}
	}
	return n
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
