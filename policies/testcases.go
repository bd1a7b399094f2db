package policies

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/adaptflow/adaptflow/process"
)

// TestFailure is a failed test case of a policy, with what it saw.
type TestFailure struct {
	Policy  string         `json:"policy"`
	Case    string         `json:"case"`
	Message string         `json:"message"`
	Facts   map[string]any `json:"facts"`
	Trace   string         `json:"trace"`
}

func (f TestFailure) Error() string {
	return fmt.Sprintf("policy %s, case %q: %s", f.Policy, f.Case, f.Message)
}

// TestFailures is the failures of one run; it is an error.
type TestFailures []TestFailure

func (fs TestFailures) Error() string {
	msgs := make([]string, len(fs))
	for i, f := range fs {
		msgs[i] = f.Error()
	}
	return strings.Join(msgs, "; ")
}

// RunTests runs the test cases of a policy against the definition's
// guardrails, the policy alone deciding. It returns the failures, nil when
// every case passes.
func (e *Env) RunTests(ctx context.Context, def *process.Definition, p *process.Policy) (TestFailures, error) {
	alone := *p
	alone.Mode = process.ModeActive
	set, err := e.NewSet(def, []*process.Policy{&alone})
	if err != nil {
		return nil, err
	}
	var out TestFailures
	for _, tc := range p.Tests {
		raw := process.JSON(tc.Facts)
		vars, err := VarsFromJSON(raw)
		if err != nil {
			return nil, fmt.Errorf("test %q: facts: %w", tc.Name, err)
		}
		res := set.Decide(ctx, def, vars, Point{Step: tc.Step})
		fail := func(format string, args ...any) {
			f := TestFailure{Policy: p.ID, Case: tc.Name, Message: fmt.Sprintf(format, args...), Facts: vars}
			if len(res.Evaluations) > 0 {
				f.Trace = reading(res.Evaluations[0].Trace)
			}
			out = append(out, f)
		}
		var ev *process.Evaluation
		if len(res.Evaluations) > 0 {
			ev = &res.Evaluations[0]
		}
		matched, evalErr := false, ""
		if ev != nil {
			matched, evalErr = ev.Matched, ev.Error
		}
		switch {
		case ev == nil && tc.Expect.Matched != nil && *tc.Expect.Matched:
			fail("no action of the policy is decided before step %s, so it is not evaluated there", tc.Step)
			continue
		case tc.Expect.Matched != nil && *tc.Expect.Matched != matched:
			fail("matched = %v, want %v%s", matched, *tc.Expect.Matched, errSuffix(evalErr))
			continue
		case tc.Expect.Error != "" && !strings.Contains(evalErr, tc.Expect.Error):
			fail("evaluation error %q, want one containing %q", evalErr, tc.Expect.Error)
			continue
		case tc.Expect.Error == "" && evalErr != "" && tc.Expect.Matched == nil:
			fail("unexpected evaluation error: %s", evalErr)
			continue
		}
		if tc.Expect.Actions != nil {
			got := actionStrings(res.Applied)
			want := make([]string, len(tc.Expect.Actions))
			for i, a := range tc.Expect.Actions {
				want[i] = string(process.JSON(a))
			}
			slices.Sort(want)
			if !slices.Equal(got, want) {
				fail("applied %s, want %s%s", describe(got), describe(want), rejectedSuffix(res.Rejected))
			}
		}
	}
	return out, nil
}

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return " (evaluation error: " + e + ")"
}

func rejectedSuffix(rs []process.Rejection) string {
	if len(rs) == 0 {
		return ""
	}
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.Action.String() + ": " + r.Reason
	}
	return " (rejected: " + strings.Join(parts, "; ") + ")"
}

// actionStrings renders applied actions canonically, sorted.
func actionStrings(as []process.AppliedAction) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = string(process.JSON(a.Action))
	}
	slices.Sort(out)
	return out
}

func describe(actions []string) string {
	if len(actions) == 0 {
		return "nothing"
	}
	return strings.Join(actions, ", ")
}
