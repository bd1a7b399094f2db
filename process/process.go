// Package process holds adaptflow's shared vocabulary: process definitions,
// steps, policy actions and decision records. Every other package may import
// it; it imports only the standard library and a YAML decoder.
package process

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// StepKind names what a step does when it runs.
type StepKind string

// The step kinds an interpreter knows.
const (
	KindTask     StepKind = "task"     // a built-in activity by name
	KindHTTP     StepKind = "http"     // a call to an external system
	KindValidate StepKind = "validate" // CEL assertions over input and results
	KindWait     StepKind = "wait"     // a durable timer
	KindReview   StepKind = "review"   // a human gate
	KindEvent    StepKind = "event"    // waits for an event from outside (POST /v1/instances/{id}/events)
	KindProcess  StepKind = "process"  // runs an instance of another process and waits for its end
)

// MaxSubProcessDepth bounds how deep process steps nest: an instance
// started by a process step of an instance started by one, and so on.
const MaxSubProcessDepth = 5

// Definition is one immutable version of a process.
type Definition struct {
	Name        string      `json:"name" yaml:"name"`
	Version     int         `json:"version" yaml:"version"`
	Description string      `json:"description,omitempty" yaml:"description,omitempty"`
	Input       InputSchema `json:"input" yaml:"input"`
	Steps       []Step      `json:"steps" yaml:"steps"`
	Catalog     []Step      `json:"catalog,omitempty" yaml:"catalog,omitempty"`
	Signals     []Signal    `json:"signals,omitempty" yaml:"signals,omitempty"`
	// Classify declares the classification of an input text field.
	Classify *ClassifySpec `json:"classify,omitempty" yaml:"classify,omitempty"`
	// Callback tells the business system that started an instance how it
	// went: a signed POST when it completes, fails, is rejected or waits
	// for a review.
	Callback *Callback `json:"callback,omitempty" yaml:"callback,omitempty"`
	// Limits bounds what policies may do to one instance.
	Limits Limits `json:"limits,omitzero" yaml:"limits,omitempty"`
	// Schedules start instances on their own at the times of a cron
	// expression: a nightly reconciliation, a weekly review. Those of the
	// latest version of a definition apply.
	Schedules []Schedule `json:"schedules,omitempty" yaml:"schedules,omitempty"`
	// SLA ("48h", "5d") is how long an instance may take from its start to
	// its end: policies read it (instance.sla, instance.overdue), and the
	// API says where each instance stands against it and how many met it.
	SLA string `json:"sla,omitempty" yaml:"sla,omitempty"`
	// Retention ("90d") is how long the store keeps the process's
	// instances after they ended, and its signals' observations: pruned
	// hourly, however long the store keeps the rest (the latest version's
	// applies to the whole process).
	Retention string `json:"retention,omitempty" yaml:"retention,omitempty"`
	// Concurrency, when set, is how many instances of the process may run
	// at once (the latest version's applies to the whole process): those
	// started beyond it are stored and held, and start, oldest first, as
	// others end. For a partner that takes so many orders at a time, say.
	Concurrency int `json:"concurrency,omitempty" yaml:"concurrency,omitempty"`
}

// MaxConcurrency bounds a definition's concurrency.
const MaxConcurrency = 100000

// ConcurrencyOf reads the concurrency limit of a stored definition's
// document (0: none), without decoding the rest.
func ConcurrencyOf(doc []byte) (int, error) {
	var def struct {
		Concurrency int `json:"concurrency"`
	}
	err := json.Unmarshal(doc, &def)
	return def.Concurrency, err
}

// RetentionDuration is the definition's retention, 0 when it has none.
func (d *Definition) RetentionDuration() time.Duration {
	if d.Retention == "" {
		return 0
	}
	v, err := ParseDuration(d.Retention)
	if err != nil || v <= 0 {
		return 0
	}
	return v
}

// SLADuration is the definition's SLA, 0 when it has none (or it does not
// parse: Validate refuses that).
func (d *Definition) SLADuration() time.Duration {
	if d.SLA == "" {
		return 0
	}
	v, err := ParseDuration(d.SLA)
	if err != nil || v <= 0 {
		return 0
	}
	return v
}

// Schedule starts an instance of its process at each time of a cron
// expression, with a fixed input and the business key
// "schedule:ID:TIME" (the time it was due, UTC, RFC 3339): one instance
// per due time, however many servers run.
type Schedule struct {
	ID string `json:"id" yaml:"id"`
	// Cron is five fields (minute, hour, day of month, month, day of
	// week: "0 2 * * *" is 02:00 every day) or a descriptor: @hourly,
	// @daily, @weekly, @monthly, @every 6h.
	Cron string `json:"cron" yaml:"cron"`
	// Timezone is the IANA zone the times are read in (default UTC).
	Timezone string `json:"timezone,omitempty" yaml:"timezone,omitempty"`
	// Input is the input of every instance it starts; in its strings,
	// ${schedule.date}, ${schedule.time} and ${schedule.id} name the due
	// time (see api.ScheduleInput).
	Input map[string]any `json:"input,omitempty" yaml:"input,omitempty"`
	// CatchUp is how far back a start missed while no server ran is made
	// up for ("24h"; default DefaultCatchUp, at most MaxCatchUp).
	CatchUp string `json:"catch_up,omitempty" yaml:"catch_up,omitempty"`
}

// The catch-up of a schedule: by default long enough to cover a server's
// restart or a hand-over between replicas.
const (
	DefaultCatchUp = 10 * time.Minute
	MaxCatchUp     = 7 * 24 * time.Hour
)

// CatchUpWindow is how far back s makes up for missed starts.
func (s Schedule) CatchUpWindow() time.Duration {
	d, err := ParseDuration(s.CatchUp)
	if s.CatchUp == "" || err != nil || d <= 0 {
		return DefaultCatchUp
	}
	return min(d, MaxCatchUp)
}

// Limits are per-instance guardrails that no policy can exceed.
type Limits struct {
	// MaxAddedSteps caps catalog steps added to one instance (default 10).
	MaxAddedSteps int `json:"max_added_steps,omitempty" yaml:"max_added_steps,omitempty"`
	// MaxReviews caps reviews opened by policies for one instance (default 5).
	MaxReviews int `json:"max_reviews,omitempty" yaml:"max_reviews,omitempty"`
}

// Default limits applied when a definition leaves them at zero.
const (
	DefaultMaxAddedSteps = 10
	DefaultMaxReviews    = 5
)

// EffectiveLimits returns the limits with defaults applied.
func (d *Definition) EffectiveLimits() Limits {
	l := d.Limits
	if l.MaxAddedSteps <= 0 {
		l.MaxAddedSteps = DefaultMaxAddedSteps
	}
	if l.MaxReviews <= 0 {
		l.MaxReviews = DefaultMaxReviews
	}
	return l
}

// ClassifySpec says what to classify: which input field (or fields), into
// which closed set of labels, and below which confidence a person reviews.
type ClassifySpec struct {
	// Name names the classifier; its labeled examples are kept under it.
	Name string `json:"name" yaml:"name"`
	// Field is the input field holding the text; Fields, in its place,
	// names several (an applicant's message and the text of a scanned
	// form), classified together.
	Field  string   `json:"field,omitempty" yaml:"field,omitempty"`
	Fields []string `json:"fields,omitempty" yaml:"fields,omitempty"`
	Labels []string `json:"labels" yaml:"labels"`
	// Extract names the fields an LLM extracts from the text.
	Extract []ExtractField `json:"extract,omitempty" yaml:"extract,omitempty"`
	// ReviewBelow is the confidence under which the instance stops for a
	// review before its first step (0 never reviews).
	ReviewBelow float64 `json:"review_below,omitempty" yaml:"review_below,omitempty"`
	// ReviewQueue is where those reviews go (default "classification").
	ReviewQueue string `json:"review_queue,omitempty" yaml:"review_queue,omitempty"`
	// Examples seed the classifier; more come from reviewers' verdicts.
	Examples []LabeledText `json:"examples,omitempty" yaml:"examples,omitempty"`
	// Language is the language of the texts, a BCP 47 tag (default "en").
	// The embedded classifier knows English words by their meaning (its
	// lexicon); texts of another language it learns from their examples
	// alone.
	Language string `json:"language,omitempty" yaml:"language,omitempty"`
}

// English says whether the texts are in English (Language unset, "en",
// "en-…" or "eng").
func (c *ClassifySpec) English() bool {
	primary, _, _ := strings.Cut(c.Language, "-")
	return c.Language == "" || strings.EqualFold(primary, "en") || strings.EqualFold(primary, "eng")
}

// TextFields are the input fields the text is read from.
func (c *ClassifySpec) TextFields() []string {
	if len(c.Fields) > 0 {
		return c.Fields
	}
	return []string{c.Field}
}

// Text is the text to classify in an instance's input: the field's value,
// or with several fields each non-empty value after a line naming its
// field ("form_text:"), separated by blank lines (just the value when only
// one is not empty).
func (c *ClassifySpec) Text(input map[string]any) string {
	if len(c.Fields) == 0 {
		text, _ := input[c.Field].(string)
		return text
	}
	var parts, values []string
	for _, f := range c.Fields {
		if v, _ := input[f].(string); strings.TrimSpace(v) != "" {
			parts, values = append(parts, f+":\n"+v), append(values, v)
		}
	}
	if len(values) == 1 { // as if it were the only field
		return values[0]
	}
	return strings.Join(parts, "\n\n")
}

// ExtractField is a field to extract: its name and type (string, number
// or boolean).
type ExtractField struct {
	Name string `json:"name" yaml:"name"`
	Type string `json:"type" yaml:"type"`
	// Pattern is a regular expression (RE2, at most one capture group)
	// that extracts the field without a model: the embedded classifier
	// extracts only fields with a pattern, and a pattern fills in a field
	// the LLM left null.
	Pattern string `json:"pattern,omitempty" yaml:"pattern,omitempty"`
	// Decimal is the decimal mark of a number field's texts, "." or ","
	// (empty: told from each number, a lone dot read as decimal).
	Decimal string `json:"decimal,omitempty" yaml:"decimal,omitempty"`
}

// LabeledText is one labeled example.
type LabeledText struct {
	Text  string `json:"text" yaml:"text"`
	Label string `json:"label" yaml:"label"`
}

// Signal declares a signal computed for every decision of the process.
type Signal struct {
	Name string `json:"name" yaml:"name"`
	// Kind is "arrival_rate" (instance starts per hour), "value" (a
	// numeric input field) or "duration" (the seconds a step took, known
	// from the decision after it). Each is observed by an online anomaly
	// detector shared by all workers; a value or duration once per
	// instance.
	Kind string `json:"kind" yaml:"kind"`
	// Field is the input field of a value signal.
	Field string `json:"field,omitempty" yaml:"field,omitempty"`
	// Step is the step of a duration signal.
	Step string `json:"step,omitempty" yaml:"step,omitempty"`
}

// InputSchema is the subset of JSON Schema adaptflow checks: required fields
// and the type (and, for numbers, bounds; for arrays, a size bound) of each
// property.
type InputSchema struct {
	Required   []string            `json:"required,omitempty" yaml:"required,omitempty"`
	Properties map[string]Property `json:"properties,omitempty" yaml:"properties,omitempty"`
}

// Property describes one input field.
type Property struct {
	Type    string   `json:"type" yaml:"type"`
	Minimum *float64 `json:"minimum,omitempty" yaml:"minimum,omitempty"`
	Maximum *float64 `json:"maximum,omitempty" yaml:"maximum,omitempty"`
	Enum    []any    `json:"enum,omitempty" yaml:"enum,omitempty"`
	// MaxItems bounds an array (at most MaxInputItems, the bound of every
	// list and object in an input).
	MaxItems *int `json:"maxItems,omitempty" yaml:"maxItems,omitempty"`
}

// Step is one unit of work on the main path or in the catalog.
type Step struct {
	ID          string   `json:"id" yaml:"id"`
	Kind        StepKind `json:"kind" yaml:"kind"`
	Description string   `json:"description,omitempty" yaml:"description,omitempty"`
	// Mandatory steps can never be skipped by a policy.
	Mandatory bool `json:"mandatory,omitempty" yaml:"mandatory,omitempty"`

	// Task names the built-in activity of a task step.
	Task string `json:"task,omitempty" yaml:"task,omitempty"`
	// Params are passed to a task step.
	Params map[string]any `json:"params,omitempty" yaml:"params,omitempty"`
	// HTTP configures an http step.
	HTTP *HTTPCall `json:"http,omitempty" yaml:"http,omitempty"`
	// Assertions are the CEL expressions of a validate step.
	Assertions []string `json:"assertions,omitempty" yaml:"assertions,omitempty"`
	// Duration is the length of a wait step ("90s", "2h").
	Duration string `json:"duration,omitempty" yaml:"duration,omitempty"`
	// Review configures a review step.
	Review *ReviewSpec `json:"review,omitempty" yaml:"review,omitempty"`
	// Event configures an event step.
	Event *EventSpec `json:"event,omitempty" yaml:"event,omitempty"`
	// Process configures a process step: the process it starts an
	// instance of.
	Process *SubProcess `json:"process,omitempty" yaml:"process,omitempty"`
	// Compensate names the catalog step that undoes this one (release the
	// stock a reserve step reserved): when the instance ends without
	// completing (failed, rejected or canceled), the compensations of the
	// steps it finished run, the latest first.
	Compensate string `json:"compensate,omitempty" yaml:"compensate,omitempty"`
	// Timeout bounds one attempt of the step ("30s"); defaults per kind.
	Timeout string `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	// Retries is how many times a failed attempt is retried (default 3).
	Retries *int `json:"retries,omitempty" yaml:"retries,omitempty"`
}

// HTTPCall describes the request of an http step. Strings in URL, headers
// and body may contain ${expr} templates: CEL expressions over the facts
// input, steps and instance. A string that is exactly one template keeps
// the type of its value.
type HTTPCall struct {
	Method  string            `json:"method" yaml:"method"`
	URL     string            `json:"url" yaml:"url"`
	Headers map[string]string `json:"headers,omitempty" yaml:"headers,omitempty"`
	Body    any               `json:"body,omitempty" yaml:"body,omitempty"`
}

// SubProcess is what a process step runs: an instance of another
// registered process (its latest version when the step runs, or Version),
// with an input whose strings may hold ${expr} templates over the facts
// input, steps and instance, as an http step's body.
type SubProcess struct {
	Name    string         `json:"name" yaml:"name"`
	Version int            `json:"version,omitempty" yaml:"version,omitempty"`
	Input   map[string]any `json:"input,omitempty" yaml:"input,omitempty"`
}

// SubProcessKey is the business key of the instance a process step of an
// instance starts: one per instance and step, so a step run again (a
// retry, a replay) finds the same one.
func SubProcessKey(parentID, step string) string { return "sub:" + parentID + ":" + step }

// SubProcessCreator is the created_by of the instance a process step of
// an instance starts.
func SubProcessCreator(parentID, step string) string { return "parent:" + parentID + "/" + step }

// SubProcessParent is the instance whose process step started an
// instance, read from the instance's created_by (see SubProcessCreator).
func SubProcessParent(createdBy string) (string, bool) {
	rest, ok := strings.CutPrefix(createdBy, "parent:")
	if !ok {
		return "", false
	}
	id, _, ok := strings.Cut(rest, "/")
	return id, ok && id != ""
}

// InstanceID is the id of the instance of a process with a business key:
// the same key always names the same instance.
func InstanceID(processName, businessKey string) string {
	h := sha256.Sum256([]byte(processName + "\x00" + businessKey))
	return processName + "-" + hex.EncodeToString(h[:10])
}

// EventSpec describes what an event step waits for: an event of that name
// sent to the instance by another system (a payment received, goods
// shipped), with its data; one that came before the step was reached
// counts.
type EventSpec struct {
	Name string `json:"name" yaml:"name"`
	// Timeout is how long the step waits ("72h"); empty: as long as it
	// takes.
	Timeout string `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	// OnTimeout is what happens when it runs out: fail the instance (the
	// default) or continue without the event.
	OnTimeout string `json:"on_timeout,omitempty" yaml:"on_timeout,omitempty"`
	// Count is how many events of the name the step waits for (default 1):
	// partial shipments, signatures, instalments. Events are told apart by
	// their id; one with no id counts once per name.
	Count int `json:"count,omitempty" yaml:"count,omitempty"`
}

// MaxEventCount bounds how many events of a name an event step waits for.
const MaxEventCount = 1000

// TimeoutContinue is what an event step whose timeout ran out does when it goes on without
// its event (the other outcome is TimeoutFail).
const TimeoutContinue = "continue"

// Events are the names of the events the definition's event steps wait
// for, main path and catalog.
func (d *Definition) Events() []string {
	var out []string
	for _, s := range slices.Concat(d.Steps, d.Catalog) {
		if s.Kind == KindEvent && s.Event != nil && !slices.Contains(out, s.Event.Name) {
			out = append(out, s.Event.Name)
		}
	}
	return out
}

// ReviewSpec describes a human gate.
type ReviewSpec struct {
	Queue  string `json:"queue" yaml:"queue"`
	Reason string `json:"reason,omitempty" yaml:"reason,omitempty"`
	// SLA is how long the review may stay open ("4h"); empty means no limit.
	SLA string `json:"sla,omitempty" yaml:"sla,omitempty"`
	// OnTimeout is what happens when the SLA runs out: approve, reject,
	// fail, or escalate (see Escalate).
	OnTimeout string `json:"on_timeout,omitempty" yaml:"on_timeout,omitempty"`
	// Escalate is where an escalated review goes and what happens there.
	Escalate *Escalation `json:"escalate,omitempty" yaml:"escalate,omitempty"`
}

// Escalation moves a review whose SLA ran out to another queue with a new
// SLA, and may notify a webhook.
type Escalation struct {
	Queue string `json:"queue" yaml:"queue"`
	SLA   string `json:"sla" yaml:"sla"`
	// OnTimeout is what happens when the escalated review's SLA runs out
	// too: approve, reject, fail, or escalate again (to Escalate).
	OnTimeout string `json:"on_timeout" yaml:"on_timeout"`
	// Notify is a URL that receives a JSON POST when the review escalates.
	Notify string `json:"notify,omitempty" yaml:"notify,omitempty"`
	// Priority raises the review in the inbox (0 to 100; higher first).
	Priority int `json:"priority,omitempty" yaml:"priority,omitempty"`
	// Escalate is the next level, with on_timeout: escalate (at most
	// MaxEscalationLevels in all).
	Escalate *Escalation `json:"escalate,omitempty" yaml:"escalate,omitempty"`
}

// MaxEscalationLevels bounds a review's chain of escalations.
const MaxEscalationLevels = 5

// Callback is a webhook for an instance's events.
type Callback struct {
	URL string `json:"url" yaml:"url"`
	// Events are the events to send (default all of CallbackEvents).
	Events []string `json:"events,omitempty" yaml:"events,omitempty"`
}

// Instance events a callback may ask for.
const (
	EventCompleted     = "completed"
	EventFailed        = "failed"
	EventRejected      = "rejected"
	EventCanceled      = "canceled"
	EventWaitingReview = "waiting_review"
	// EventWaitingEvent: an event step began to wait for its event.
	EventWaitingEvent = "waiting_event"
	// EventOverdue: the instance ran past the definition's SLA, still
	// unfinished.
	EventOverdue = "overdue"
)

// CallbackEvents are all instance events, in order.
var CallbackEvents = []string{EventCompleted, EventFailed, EventRejected, EventCanceled, EventWaitingReview, EventWaitingEvent, EventOverdue}

// Wants reports whether the callback asks for the event.
func (c *Callback) Wants(event string) bool {
	if c == nil {
		return false
	}
	return len(c.Events) == 0 || slices.Contains(c.Events, event)
}

// Review timeout outcomes.
const (
	TimeoutApprove  = "approve"
	TimeoutReject   = "reject"
	TimeoutFail     = "fail"
	TimeoutEscalate = "escalate"
)

// Step returns the main-path or catalog step with the given id.
func (d *Definition) Step(id string) (Step, bool) {
	for _, s := range d.Steps {
		if s.ID == id {
			return s, true
		}
	}
	return d.CatalogStep(id)
}

// CatalogStep returns the catalog step with the given id.
func (d *Definition) CatalogStep(id string) (Step, bool) {
	for _, s := range d.Catalog {
		if s.ID == id {
			return s, true
		}
	}
	return Step{}, false
}

// Ref is "name@version", the way decision records name a definition.
func (d *Definition) Ref() string { return fmt.Sprintf("%s@%d", d.Name, d.Version) }

// ParseDuration parses a Go duration and also accepts a "d" suffix for days.
func ParseDuration(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var days int
		if _, err := fmt.Sscanf(n, "%d", &days); err != nil || fmt.Sprint(days) != n {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q", s)
	}
	return d, nil
}

// JSON renders v as compact JSON; it is for values already known to encode.
func JSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage(`null`)
	}
	return b
}
