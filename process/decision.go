package process

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"
)

// Decision is the record of one decision point: the facts a policy set saw
// before a step, what each policy made of them, and the actions applied and
// rejected. Records of one instance form a hash chain.
type Decision struct {
	ID             string          `json:"id"`
	InstanceID     string          `json:"instance_id"`
	RunID          string          `json:"run_id"`
	Seq            int             `json:"seq"`
	Time           time.Time       `json:"time"`
	Process        string          `json:"process"`
	ProcessVersion int             `json:"process_version"`
	Step           string          `json:"step"`
	Facts          json.RawMessage `json:"facts"`
	Evaluations    []Evaluation    `json:"evaluations"`
	Applied        []AppliedAction `json:"applied"`
	Rejected       []Rejection     `json:"rejected"`
	// Guard is the guardrail state at the decision point, so a replay of
	// the facts (simulation) meets the same guardrails.
	Guard Guard `json:"guard"`
	// Shadow is what the applied actions would have been with the shadow
	// versions of policies in place of their active ones; nil when the
	// process has no shadow policies.
	Shadow *ShadowOutcome `json:"shadow,omitempty"`
	Model  string         `json:"model"`
	// Review is set on the record of a review's outcome, which a reviewer
	// (or the SLA) decided between two decision points: such a record has
	// no facts or evaluations, only the verdict, in the same chain.
	Review   *ReviewOutcome `json:"review,omitempty"`
	PrevHash string         `json:"prev_hash"`
	Hash     string         `json:"hash"`
}

// ReviewOutcome is how a review ended, as the decision chain keeps it.
type ReviewOutcome struct {
	ReviewID string `json:"review_id"`
	Queue    string `json:"queue"`
	// Status is decided, or expired when the SLA ran out.
	Status    string `json:"status"`
	Verdict   string `json:"verdict,omitempty"`
	Reviewer  string `json:"reviewer"`
	Comment   string `json:"comment,omitempty"`
	Escalated bool   `json:"escalated,omitempty"`
	// PolicyID and DecisionID say what raised the review, when a policy did.
	PolicyID   string `json:"policy_id,omitempty"`
	DecisionID string `json:"decision_id,omitempty"`
}

// Evaluation is what one policy made of the facts.
type Evaluation struct {
	PolicyID      string `json:"policy_id"`
	PolicyVersion int    `json:"policy_version"`
	Mode          string `json:"mode"`
	When          string `json:"when"`
	Matched       bool   `json:"matched"`
	Error         string `json:"error,omitempty"`
	// Trace lists the values of the sub-expressions that decided the result.
	Trace []TraceStep `json:"trace,omitempty"`
	// Canary is set when the policy has a canary version applied to this
	// share (percent) of the instances: Mode then says which version this
	// instance got (active) and which one was only evaluated (shadow).
	Canary int `json:"canary,omitempty"`
}

// Policy modes of an evaluation.
const (
	ModeActive = "active"
	ModeShadow = "shadow"
)

// Guard is the state of an instance that guardrails need.
type Guard struct {
	// Added are the catalog steps already added to the instance.
	Added []string `json:"added"`
	// Reviews is how many reviews policies have opened for the instance.
	Reviews int `json:"reviews"`
	// Fired are the policies whose step-less review has already been opened.
	Fired []string `json:"fired"`
}

// ShadowOutcome is what shadow policies would have changed.
type ShadowOutcome struct {
	Applied  []AppliedAction `json:"applied"`
	Rejected []Rejection     `json:"rejected"`
}

// TraceStep is one sub-expression of a policy condition and its value.
type TraceStep struct {
	Expr  string `json:"expr"`
	Value any    `json:"value,omitempty"`
	Error string `json:"error,omitempty"`
}

// AppliedAction is an action the workflow carries out, with its origin.
type AppliedAction struct {
	Action   Action `json:"action"`
	PolicyID string `json:"policy_id"`
}

// Rejection is a proposed action that a guardrail or a conflict refused.
type Rejection struct {
	Action   Action `json:"action"`
	PolicyID string `json:"policy_id"`
	Reason   string `json:"reason"`
}

// ComputeHash returns the hash of the record chained to its PrevHash: the
// SHA-256 of the previous hash and the record's JSON without its own hash.
func (d Decision) ComputeHash() string {
	d.Hash = ""
	d.Time = d.Time.UTC()
	b, _ := json.Marshal(d) // a Decision always encodes: only RawMessage fields hold JSON
	h := sha256.New()
	h.Write([]byte(d.PrevHash))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}
