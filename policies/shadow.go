package policies

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/adaptflow/adaptflow/process"
)

// ShadowReport says, per shadow policy, how often the outcome with it in
// place of its active version differed from what was applied.
type ShadowReport struct {
	Process       string               `json:"process"`
	Decisions     int                  `json:"decisions"`
	WithShadow    int                  `json:"with_shadow"`
	Disagreements int                  `json:"disagreements"`
	Policies      []ShadowPolicyReport `json:"policies"`
}

// ShadowPolicyReport is the record of one version of a policy evaluated
// in shadow (Versions holds that one version).
type ShadowPolicyReport struct {
	ID        string    `json:"id"`
	Versions  []int     `json:"versions"`
	Evaluated int       `json:"evaluated"`
	Matched   int       `json:"matched"`
	Disagreed int       `json:"disagreed"`
	Rate      float64   `json:"disagreement_rate"`
	Examples  []Example `json:"examples"`
}

type shadowRecord struct {
	ID          string                  `json:"id"`
	InstanceID  string                  `json:"instance_id"`
	Step        string                  `json:"step"`
	Evaluations []process.Evaluation    `json:"evaluations"`
	Applied     []process.AppliedAction `json:"applied"`
	Shadow      *process.ShadowOutcome  `json:"shadow"`
	Review      *process.ReviewOutcome  `json:"review"`
}

// BuildShadowReport reads recorded decisions and compares, where shadow
// policies were evaluated, their outcome with the applied one.
func BuildShadowReport(ctx context.Context, processName string, scan Scanner, examples int) (ShadowReport, error) {
	if examples <= 0 {
		examples = 5
	}
	rep := ShadowReport{Process: processName, Policies: []ShadowPolicyReport{}}
	byID := map[string]*ShadowPolicyReport{}
	err := scan(ctx, func(raw []byte) error {
		var r shadowRecord
		if err := json.Unmarshal(raw, &r); err != nil {
			return fmt.Errorf("decode decision record: %w", err)
		}
		if r.Review != nil {
			return nil // a review's outcome, not a decision
		}
		rep.Decisions++
		if r.Shadow == nil {
			return nil
		}
		rep.WithShadow++
		before, after := phrases(r.Applied), phrases(r.Shadow.Applied)
		differs := !slices.Equal(before, after)
		if differs {
			rep.Disagreements++
		}
		for _, ev := range r.Evaluations {
			if ev.Mode != process.ModeShadow {
				continue
			}
			// One row per version: during a canary the new version is the
			// shadow of the instances outside it, the old one of those in it.
			key := fmt.Sprintf("%s@%d", ev.PolicyID, ev.PolicyVersion)
			p := byID[key]
			if p == nil {
				p = &ShadowPolicyReport{ID: ev.PolicyID, Versions: []int{ev.PolicyVersion}, Examples: []Example{}}
				byID[key] = p
			}
			p.Evaluated++
			if ev.Matched {
				p.Matched++
			}
			if differs {
				p.Disagreed++
				if len(p.Examples) < examples {
					p.Examples = append(p.Examples, Example{InstanceID: r.InstanceID, DecisionID: r.ID, Step: r.Step, Before: before, After: after, Link: "/v1/instances/" + r.InstanceID})
				}
			}
		}
		return nil
	})
	if err != nil {
		return rep, err
	}
	for _, p := range byID {
		if p.Evaluated > 0 {
			p.Rate = float64(p.Disagreed) / float64(p.Evaluated)
		}
		rep.Policies = append(rep.Policies, *p)
	}
	slices.SortFunc(rep.Policies, func(a, b ShadowPolicyReport) int {
		return cmp.Or(strings.Compare(a.ID, b.ID), cmp.Compare(a.Versions[0], b.Versions[0]))
	})
	return rep, nil
}
