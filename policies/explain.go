package policies

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/adaptflow/adaptflow/process"
)

// Explanation says why a decision point came out as it did, for machines
// (the structured fields) and for people (Text).
type Explanation struct {
	DecisionID string              `json:"decision_id"`
	InstanceID string              `json:"instance_id"`
	Step       string              `json:"step"`
	Process    string              `json:"process"`
	Version    int                 `json:"process_version"`
	Policies   []PolicyExplanation `json:"policies"`
	Applied    []ActionExplanation `json:"applied"`
	Rejected   []ActionExplanation `json:"rejected"`
	// Shadow is what would have been applied with the shadow versions in
	// place; nil when none were evaluated.
	Shadow  *ShadowExplanation `json:"shadow,omitempty"`
	Model   string             `json:"model"`
	Text    string             `json:"text"`
	Hash    string             `json:"hash"`
	Facts   map[string]any     `json:"facts"`
	Summary map[string]int     `json:"summary"`
	// Review is set when the record is a review's outcome.
	Review *process.ReviewOutcome `json:"review,omitempty"`
}

// ShadowExplanation compares the shadow outcome with the applied one.
type ShadowExplanation struct {
	Applied []ActionExplanation `json:"applied"`
	Differs bool                `json:"differs"`
}

// PolicyExplanation is one evaluated policy and the values it read.
type PolicyExplanation struct {
	ID      string              `json:"id"`
	Version int                 `json:"version"`
	Mode    string              `json:"mode"`
	When    string              `json:"when"`
	Matched bool                `json:"matched"`
	Error   string              `json:"error,omitempty"`
	Trace   []process.TraceStep `json:"trace"`
	Reading string              `json:"reading"`
	// Canary is the share of instances the policy's canary version applies
	// to, when it has one; Mode says which version this instance got.
	Canary int `json:"canary,omitempty"`
}

// ActionExplanation is an applied or rejected action with its origin.
type ActionExplanation struct {
	Action   process.Action `json:"action"`
	Text     string         `json:"text"`
	PolicyID string         `json:"policy_id"`
	Reason   string         `json:"reason,omitempty"`
}

// Explain turns a decision record into an explanation.
func Explain(d process.Decision) Explanation {
	e := Explanation{
		DecisionID: d.ID, InstanceID: d.InstanceID, Step: d.Step, Process: d.Process, Version: d.ProcessVersion,
		Model: d.Model, Hash: d.Hash, Policies: []PolicyExplanation{}, Applied: []ActionExplanation{}, Rejected: []ActionExplanation{},
		Summary: map[string]int{"evaluated": len(d.Evaluations), "matched": 0, "applied": len(d.Applied), "rejected": len(d.Rejected)},
	}
	if vars, err := VarsFromJSON(d.Facts); err == nil {
		e.Facts = vars
	}
	var b strings.Builder
	if rv := d.Review; rv != nil {
		e.Review = rv
		fmt.Fprintf(&b, "Review %s at step %s of %s@%d (instance %s, record %d), queue %s:\n", rv.ReviewID, d.Step, d.Process, d.ProcessVersion, d.InstanceID, d.Seq, rv.Queue)
		switch {
		case rv.Status == "expired" && rv.Verdict != "":
			fmt.Fprintf(&b, "- its SLA ran out: %s as the definition says.\n", rv.Verdict)
		case rv.Status == "expired":
			b.WriteString("- its SLA ran out: the step failed.\n")
		default:
			fmt.Fprintf(&b, "- %s by %s", rv.Verdict, rv.Reviewer)
			if rv.Comment != "" {
				fmt.Fprintf(&b, ": %s", rv.Comment)
			}
			b.WriteString(".\n")
		}
		if rv.Escalated {
			b.WriteString("- it had been escalated when its first SLA ran out.\n")
		}
		e.Text = b.String()
		return e
	}
	fmt.Fprintf(&b, "Before step %s of %s@%d (instance %s, decision %d):\n", d.Step, d.Process, d.ProcessVersion, d.InstanceID, d.Seq)
	if len(d.Evaluations) == 0 {
		b.WriteString("- no policy has an action for this step; it runs as planned.\n")
	}
	for _, ev := range d.Evaluations {
		pe := PolicyExplanation{ID: ev.PolicyID, Version: ev.PolicyVersion, Mode: ev.Mode, When: ev.When, Matched: ev.Matched, Error: ev.Error, Trace: ev.Trace, Reading: reading(ev.Trace), Canary: ev.Canary}
		if pe.Trace == nil {
			pe.Trace = []process.TraceStep{}
		}
		if ev.Matched {
			e.Summary["matched"]++
		}
		e.Policies = append(e.Policies, pe)
		verdict := "did not match"
		if ev.Matched {
			verdict = "matched"
		}
		mode := ""
		if ev.Mode == process.ModeShadow {
			mode = ", shadow"
		}
		if ev.Canary > 0 {
			mode += fmt.Sprintf(", canary split %d%%", ev.Canary)
		}
		fmt.Fprintf(&b, "- policy %s (v%d%s) %s: %s", ev.PolicyID, ev.PolicyVersion, mode, verdict, ev.When)
		if pe.Reading != "" {
			fmt.Fprintf(&b, " — %s", pe.Reading)
		}
		if ev.Error != "" {
			fmt.Fprintf(&b, " — evaluation error: %s", ev.Error)
		}
		b.WriteString("\n")
	}
	for _, line := range signalReasons(d.Evaluations, e.Facts) {
		b.WriteString(line)
	}
	for _, ap := range d.Applied {
		e.Applied = append(e.Applied, ActionExplanation{Action: ap.Action, Text: ap.Action.String(), PolicyID: ap.PolicyID})
		fmt.Fprintf(&b, "- applied: %s (policy %s)\n", ap.Action, ap.PolicyID)
	}
	for _, rj := range d.Rejected {
		e.Rejected = append(e.Rejected, ActionExplanation{Action: rj.Action, Text: rj.Action.String(), PolicyID: rj.PolicyID, Reason: rj.Reason})
		fmt.Fprintf(&b, "- rejected: %s (policy %s): %s\n", rj.Action, rj.PolicyID, rj.Reason)
	}
	if len(d.Applied) == 0 && len(d.Evaluations) > 0 {
		b.WriteString("- no action applied; the step runs as planned.\n")
	}
	if d.Shadow != nil {
		se := &ShadowExplanation{Applied: []ActionExplanation{}}
		texts := []string{}
		for _, ap := range d.Shadow.Applied {
			se.Applied = append(se.Applied, ActionExplanation{Action: ap.Action, Text: ap.Action.String(), PolicyID: ap.PolicyID})
		}
		shadowPhrases := phrases(d.Shadow.Applied)
		texts = append(texts, shadowPhrases...)
		se.Differs = strings.Join(phrases(d.Applied), "|") != strings.Join(shadowPhrases, "|")
		e.Shadow = se
		what := "nothing"
		if len(texts) > 0 {
			what = strings.Join(texts, ", ")
		}
		if se.Differs {
			fmt.Fprintf(&b, "- shadow: with the shadow versions active, this decision would have applied %s instead.\n", what)
		} else {
			b.WriteString("- shadow: the shadow versions agree with what was applied.\n")
		}
	}
	e.Text = b.String()
	return e
}

// reading renders a trace as `expr (value)` for fact reads and
// `expr → value` for comparisons and calls.
func reading(trace []process.TraceStep) string {
	parts := make([]string, 0, len(trace))
	for _, t := range trace {
		val := string(process.JSON(t.Value))
		if t.Error != "" {
			val = "error: " + t.Error
		}
		if isRead(t.Expr) {
			parts = append(parts, fmt.Sprintf("%s = %s", t.Expr, val))
		} else {
			parts = append(parts, fmt.Sprintf("%s → %s", t.Expr, val))
		}
	}
	return strings.Join(parts, "; ")
}

// isRead reports whether expr is a plain fact read like a.b.c.
func isRead(expr string) bool {
	for _, r := range expr {
		switch {
		case r == '.', r == '_', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		default:
			return false
		}
	}
	return true
}

var signalRef = regexp.MustCompile(`signals\.([A-Za-z_][A-Za-z0-9_]*)|signals\[["']([^"']+)["']\]`)

// signalReasons are the lines that say, in words, what each signal the
// evaluated policies read stood at (its detector's reason), once per
// signal, in the order the policies read them.
func signalReasons(evs []process.Evaluation, facts map[string]any) []string {
	signals, _ := facts["signals"].(map[string]any)
	var lines []string
	seen := map[string]bool{}
	for _, ev := range evs {
		for _, m := range signalRef.FindAllStringSubmatch(ev.When, -1) {
			name := m[1] + m[2]
			if seen[name] {
				continue
			}
			seen[name] = true
			sig, _ := signals[name].(map[string]any)
			reason, _ := sig["reason"].(string)
			if sig == nil {
				reason = "not available at this decision"
			}
			if reason != "" {
				lines = append(lines, fmt.Sprintf("- signal %s: %s\n", name, reason))
			}
		}
	}
	return lines
}
