package policies

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/adaptflow/adaptflow/process"
)

// ActivityReport says how each policy of a process fared at the decision
// points of a window: how often it was evaluated and matched, where, the
// actions it had applied or refused by the guardrails, and its errors. Is
// a policy firing at all, too often, or failing?
type ActivityReport struct {
	Process   string           `json:"process"`
	Decisions int              `json:"decisions"`
	Policies  []PolicyActivity `json:"policies"`
}

// PolicyActivity is one version of a policy in one mode (active, or
// shadow: evaluated and recorded, never applied; a canary's versions are
// one of each).
type PolicyActivity struct {
	ID        string  `json:"id"`
	Version   int     `json:"version"`
	Mode      string  `json:"mode"`
	Evaluated int     `json:"evaluated"`
	Matched   int     `json:"matched"`
	MatchRate float64 `json:"match_rate"`
	// MatchedAt counts its matches by the step about to run.
	MatchedAt map[string]int `json:"matched_at"`
	// Applied counts the actions applied for it, by kind (skip, add,
	// review, set); Rejected those the guardrails refused.
	Applied  map[string]int `json:"applied"`
	Rejected int            `json:"rejected"`
	// Errors counts the evaluations that failed (a missing fact, say);
	// LastError is the latest one's.
	Errors        int        `json:"errors"`
	LastError     string     `json:"last_error,omitempty"`
	LastMatchedAt *time.Time `json:"last_matched_at,omitempty"`
}

type activityRecord struct {
	Time        time.Time               `json:"time"`
	Step        string                  `json:"step"`
	Evaluations []process.Evaluation    `json:"evaluations"`
	Applied     []process.AppliedAction `json:"applied"`
	Rejected    []process.Rejection     `json:"rejected"`
	Review      *process.ReviewOutcome  `json:"review"`
}

// BuildActivityReport reads a process's recorded decisions (scan) and sums
// up what each policy did, in the order of the records.
func BuildActivityReport(ctx context.Context, processName string, scan Scanner) (ActivityReport, error) {
	rep := ActivityReport{Process: processName, Policies: []PolicyActivity{}}
	byKey := map[string]*PolicyActivity{}
	err := scan(ctx, func(raw []byte) error {
		var r activityRecord
		if err := json.Unmarshal(raw, &r); err != nil {
			return fmt.Errorf("decode decision record: %w", err)
		}
		if r.Review != nil {
			return nil // a review's outcome, not a decision
		}
		rep.Decisions++
		active := map[string]*PolicyActivity{} // the version applied, by policy
		for _, ev := range r.Evaluations {
			key := fmt.Sprintf("%s@%d/%s", ev.PolicyID, ev.PolicyVersion, ev.Mode)
			p := byKey[key]
			if p == nil {
				p = &PolicyActivity{ID: ev.PolicyID, Version: ev.PolicyVersion, Mode: ev.Mode, MatchedAt: map[string]int{}, Applied: map[string]int{}}
				byKey[key] = p
			}
			p.Evaluated++
			switch {
			case ev.Error != "":
				p.Errors++
				p.LastError = ev.Error
			case ev.Matched:
				p.Matched++
				p.MatchedAt[r.Step]++
				at := r.Time.UTC()
				p.LastMatchedAt = &at
			}
			if ev.Mode == process.ModeActive {
				active[ev.PolicyID] = p
			}
		}
		for _, a := range r.Applied {
			if p := active[a.PolicyID]; p != nil {
				p.Applied[string(a.Action.Kind())]++
			}
		}
		for _, rj := range r.Rejected {
			if p := active[rj.PolicyID]; p != nil {
				p.Rejected++
			}
		}
		return nil
	})
	if err != nil {
		return rep, err
	}
	for _, p := range byKey {
		if p.Evaluated > 0 {
			p.MatchRate = float64(p.Matched) / float64(p.Evaluated)
		}
		rep.Policies = append(rep.Policies, *p)
	}
	slices.SortFunc(rep.Policies, func(a, b PolicyActivity) int {
		return cmp.Or(strings.Compare(a.ID, b.ID), cmp.Compare(a.Version, b.Version), strings.Compare(a.Mode, b.Mode))
	})
	return rep, nil
}
