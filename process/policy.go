package process

// Policy is one version of an adaptation policy: when its condition holds
// before a step, its actions are proposed for that step.
type Policy struct {
	ID          string `json:"id" yaml:"id"`
	Process     string `json:"process" yaml:"process"`
	Description string `json:"description,omitempty" yaml:"description,omitempty"`
	// Priority orders conflicting actions: higher wins, ties go to the
	// smaller id.
	Priority int `json:"priority,omitempty" yaml:"priority,omitempty"`
	// When is a CEL expression over the facts; it must yield a bool.
	When string `json:"when" yaml:"when"`
	// OnError says what an evaluation error (a missing fact) means:
	// "skip" (the default: the policy does not match, the error is
	// recorded) or "match" (the policy applies).
	OnError string   `json:"on_error,omitempty" yaml:"on_error,omitempty"`
	Actions []Action `json:"actions" yaml:"actions"`
	// Tests are cases that travel with the policy: facts in, expected
	// outcome out. A version whose cases fail is refused.
	Tests []PolicyTest `json:"tests,omitempty" yaml:"tests,omitempty"`

	// Version is assigned by the store; it is not part of a policy file.
	Version int `json:"version,omitempty" yaml:"-"`
	// Mode is active or shadow when the policy is loaded as a live version.
	Mode string `json:"-" yaml:"-"`
	// Percent, for a shadow version, is the share of instances it applies
	// to in place of the active version (a canary); 0 for a plain shadow.
	Percent int `json:"-" yaml:"-"`
}

// PolicyTest is one case of a policy: at a step, with these facts, the
// policy matches or not and these actions are applied.
type PolicyTest struct {
	Name string `json:"name" yaml:"name"`
	// Step is the decision point (the step about to run).
	Step string `json:"step" yaml:"step"`
	// Facts are the facts the case sets (input, calendar, signals, ...);
	// the others are empty.
	Facts  map[string]any `json:"facts,omitempty" yaml:"facts,omitempty"`
	Expect TestExpect     `json:"expect" yaml:"expect"`
}

// TestExpect is the expected outcome of a case. Matched and Actions are
// checked when given; Error is a substring of the expected evaluation error.
type TestExpect struct {
	Matched *bool    `json:"matched,omitempty" yaml:"matched,omitempty"`
	Actions []Action `json:"actions,omitempty" yaml:"actions,omitempty"`
	Error   string   `json:"error,omitempty" yaml:"error,omitempty"`
}

// OnError values.
const (
	OnErrorSkip  = "skip"
	OnErrorMatch = "match"
)

// ActionKind names what an action does.
type ActionKind string

// The action kinds.
const (
	ActionSkip   ActionKind = "skip"
	ActionAdd    ActionKind = "add"
	ActionReview ActionKind = "review"
	ActionSet    ActionKind = "set"
)

// Action is one effect a policy proposes. Exactly one of Skip, Add, Review
// and Set is given. An action belongs to a decision point: skip X is decided
// before step X, add with before/after X before step X, a review with
// before X before step X (without it, before the first step where the policy
// matches), a set before every step where the policy matches.
type Action struct {
	Skip   string      `json:"skip,omitempty" yaml:"skip,omitempty"`
	Add    string      `json:"add,omitempty" yaml:"add,omitempty"`
	Review *ReviewSpec `json:"review,omitempty" yaml:"review,omitempty"`
	Set    *SetVar     `json:"set,omitempty" yaml:"set,omitempty"`
	Before string      `json:"before,omitempty" yaml:"before,omitempty"`
	After  string      `json:"after,omitempty" yaml:"after,omitempty"`
}

// SetVar sets a route variable, visible to later decisions as instance.vars.
type SetVar struct {
	Name  string `json:"name" yaml:"name"`
	Value any    `json:"value" yaml:"value"`
}

// Kind reports which kind of action a is.
func (a Action) Kind() ActionKind {
	switch {
	case a.Skip != "":
		return ActionSkip
	case a.Add != "":
		return ActionAdd
	case a.Review != nil:
		return ActionReview
	case a.Set != nil:
		return ActionSet
	}
	return ""
}

// At returns the step before which the action is decided, or "" when it is
// decided at any step.
func (a Action) At() string {
	switch a.Kind() {
	case ActionSkip:
		return a.Skip
	case ActionAdd:
		if a.Before != "" {
			return a.Before
		}
		return a.After
	case ActionReview:
		return a.Before
	}
	return ""
}

// String renders the action as a short phrase for explanations.
func (a Action) String() string {
	switch a.Kind() {
	case ActionSkip:
		return "skip " + a.Skip
	case ActionAdd:
		if a.Before != "" {
			return "add " + a.Add + " before " + a.Before
		}
		return "add " + a.Add + " after " + a.After
	case ActionReview:
		s := "review in queue " + a.Review.Queue
		if a.Before != "" {
			s += " before " + a.Before
		}
		return s
	case ActionSet:
		return "set " + a.Set.Name + " = " + string(JSON(a.Set.Value))
	}
	return "unknown action"
}
