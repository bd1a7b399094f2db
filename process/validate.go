package process

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// FieldError says what is wrong and where, as a path into the document
// (`steps[2].after`).
type FieldError struct {
	Path    string
	Message string
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Message
	}
	return e.Path + ": " + e.Message
}

// Errors is a list of problems found in one document.
type Errors []*FieldError

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

// Add records a problem at path.
func (es *Errors) Add(path, format string, args ...any) {
	*es = append(*es, &FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
}

// Err returns nil when there are no problems.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// DecodeStrict decodes YAML (or JSON, a subset of it) into v, refusing
// unknown fields and trailing documents; a field that is unknown or of the
// wrong kind is named by its path (`steps[0].timeout`).
func DecodeStrict(data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return &FieldError{Message: "empty document"}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		// yaml.v3 says where by line only; name the fields at fault.
		var doc yaml.Node
		if yaml.Unmarshal(data, &doc) == nil {
			if es := locate(&doc, reflect.TypeOf(v)); len(es) > 0 {
				return es
			}
		}
		return &FieldError{Message: "malformed document: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return &FieldError{Message: "malformed document: expected a single document"}
	}
	return nil
}

// ParseDefinition reads a definition from YAML or JSON and validates its
// structure. Expressions in it are checked by the policies package.
func ParseDefinition(data []byte) (*Definition, error) {
	var d Definition
	if err := DecodeStrict(data, &d); err != nil {
		return nil, err
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return &d, nil
}

// ParsePolicy reads a policy from YAML or JSON and validates its structure.
func ParsePolicy(data []byte) (*Policy, error) {
	var p Policy
	if err := DecodeStrict(data, &p); err != nil {
		return nil, err
	}
	p.When = strings.TrimSpace(p.When)
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

var identRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// languageRE is a BCP 47 tag: a language of 2 or 3 letters, then subtags
// (script, region, variant).
var languageRE = regexp.MustCompile(`^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$`)

// ValidName reports whether s can name a process, step, queue or policy.
func ValidName(s string) bool { return identRE.MatchString(s) }

var fieldRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

var propertyTypes = map[string]bool{"string": true, "number": true, "integer": true, "boolean": true, "object": true, "array": true}

// Validate checks the definition's structure: names, unique step ids, the
// fields each step kind needs, and the input schema.
func (d *Definition) Validate() error {
	var es Errors
	if !identRE.MatchString(d.Name) {
		es.Add("name", "must be lower-case letters, digits, '-' or '_', starting with a letter (got %q)", d.Name)
	}
	if d.Version < 1 {
		es.Add("version", "must be a positive integer")
	}
	if len(d.Steps) == 0 {
		es.Add("steps", "a process needs at least one step")
	}
	if d.SLA != "" {
		if v, err := ParseDuration(d.SLA); err != nil || v < time.Minute {
			es.Add("sla", "must be a duration of at least 1m, such as 48h or 5d (got %q)", d.SLA)
		}
	}
	if d.Retention != "" {
		if v, err := ParseDuration(d.Retention); err != nil || v < 24*time.Hour {
			es.Add("retention", "must be a duration of at least 1d, such as 90d (got %q)", d.Retention)
		}
	}
	if d.Concurrency < 0 || d.Concurrency > MaxConcurrency {
		es.Add("concurrency", "must be from 1 to %d instances running at once (got %d)", MaxConcurrency, d.Concurrency)
	}
	for _, r := range d.Input.Required {
		if _, ok := d.Input.Properties[r]; !ok {
			es.Add("input.required", "field %q has no entry in input.properties", r)
		}
	}
	for name, p := range d.Input.Properties {
		path := "input.properties." + name
		if !fieldRE.MatchString(name) {
			es.Add(path, "is not a valid field name")
		}
		if !propertyTypes[p.Type] {
			es.Add(path+".type", "must be one of string, number, integer, boolean, object, array (got %q)", p.Type)
		}
		if p.MaxItems != nil && (p.Type != "array" || *p.MaxItems < 0 || *p.MaxItems > MaxInputItems) {
			es.Add(path+".maxItems", "applies to arrays, from 0 to %d", MaxInputItems)
		}
	}
	seen := map[string]string{}
	checkSteps := func(list string, steps []Step) {
		for i, s := range steps {
			path := fmt.Sprintf("%s[%d]", list, i)
			if !identRE.MatchString(s.ID) {
				es.Add(path+".id", "must be lower-case letters, digits, '-' or '_', starting with a letter (got %q)", s.ID)
			} else if prev, dup := seen[s.ID]; dup {
				es.Add(path+".id", "duplicate step id %q (also at %s)", s.ID, prev)
			} else {
				seen[s.ID] = path
			}
			s.validate(path, &es)
		}
	}
	checkSteps("steps", d.Steps)
	checkSteps("catalog", d.Catalog)
	for i, c := range d.Catalog {
		if c.Mandatory {
			es.Add(fmt.Sprintf("catalog[%d].mandatory", i), "catalog steps are optional and cannot be mandatory")
		}
	}
	compensations := func(list string, steps []Step) {
		for i, s := range steps {
			if s.Compensate == "" {
				continue
			}
			path := fmt.Sprintf("%s[%d].compensate", list, i)
			c, ok := d.CatalogStep(s.Compensate)
			switch {
			case !ok:
				es.Add(path, "names the catalog step that undoes %s (got %q, not in catalog)", s.ID, s.Compensate)
			case c.ID == s.ID:
				es.Add(path, "a step cannot compensate itself")
			case c.Kind != KindTask && c.Kind != KindHTTP && c.Kind != KindValidate:
				es.Add(path, "a compensation is a task, http or validate step (%s is %s)", c.ID, c.Kind)
			case c.Compensate != "":
				es.Add(path, "%s compensates %s and has a compensation of its own; compensations do not chain", c.ID, s.ID)
			}
		}
	}
	compensations("steps", d.Steps)
	compensations("catalog", d.Catalog)
	signalAt := map[string]int{}
	for i, s := range d.Signals {
		path := fmt.Sprintf("signals[%d]", i)
		if !fieldRE.MatchString(s.Name) {
			es.Add(path+".name", "is not a valid signal name (got %q)", s.Name)
		}
		if j, ok := signalAt[s.Name]; ok {
			es.Add(path+".name", "duplicate signal name %q (also at signals[%d])", s.Name, j)
		}
		signalAt[s.Name] = i
		switch s.Kind {
		case "arrival_rate":
		case "value":
			if p, ok := d.Input.Properties[s.Field]; !ok || (p.Type != "number" && p.Type != "integer") {
				es.Add(path+".field", "a value signal names a number or integer field of input.properties (got %q)", s.Field)
			}
		case "duration":
			if _, ok := d.Step(s.Step); !ok {
				es.Add(path+".step", "a duration signal names a step of steps or catalog (got %q)", s.Step)
			}
		default:
			es.Add(path+".kind", "unknown signal kind %q (known: arrival_rate, value, duration)", s.Kind)
		}
	}
	ids := map[string]bool{}
	for i, sc := range d.Schedules {
		path := fmt.Sprintf("schedules[%d]", i)
		if !identRE.MatchString(sc.ID) || ids[sc.ID] {
			es.Add(path+".id", "must be lower-case letters, digits, '-' or '_', starting with a letter, and unique (got %q)", sc.ID)
		}
		ids[sc.ID] = true
		if strings.TrimSpace(sc.Cron) == "" {
			es.Add(path+".cron", "is required: five fields (\"0 2 * * *\") or a descriptor (@daily, @every 6h)")
		}
		if _, err := time.LoadLocation(sc.Timezone); err != nil {
			es.Add(path+".timezone", "must be an IANA time zone such as Europe/Berlin (got %q)", sc.Timezone)
		}
		if sc.CatchUp != "" {
			if c, err := ParseDuration(sc.CatchUp); err != nil || c <= 0 || c > MaxCatchUp {
				es.Add(path+".catch_up", "must be a duration from 1s to 7d, such as 24h (got %q)", sc.CatchUp)
			}
		}
		input := sc.Input
		if input == nil {
			input = map[string]any{}
		}
		if err := d.ValidateInput(input); err != nil {
			var ies Errors
			if errors.As(err, &ies) {
				for _, e := range ies {
					es.Add(path+"."+e.Path, "%s", e.Message)
				}
			} else {
				es.Add(path+".input", "%s", err.Error())
			}
		}
	}
	if cb := d.Callback; cb != nil {
		if u, err := url.Parse(cb.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			es.Add("callback.url", "must be an http(s) URL (got %q)", cb.URL)
		}
		for i, e := range cb.Events {
			if !slices.Contains(CallbackEvents, e) {
				es.Add(fmt.Sprintf("callback.events[%d]", i), "must be one of %s (got %q)", strings.Join(CallbackEvents, ", "), e)
			}
		}
	}
	if c := d.Classify; c != nil {
		if !identRE.MatchString(c.Name) {
			es.Add("classify.name", "must be lower-case letters, digits, '-' or '_' (got %q)", c.Name)
		}
		switch {
		case c.Field != "" && len(c.Fields) > 0:
			es.Add("classify.fields", "give field or fields, not both")
		case len(c.Fields) > 0:
			seen := map[string]bool{}
			for i, f := range c.Fields {
				if p, ok := d.Input.Properties[f]; !ok || p.Type != "string" || seen[f] {
					es.Add(fmt.Sprintf("classify.fields[%d]", i), "must name a string field of input.properties, once (got %q)", f)
				}
				seen[f] = true
			}
		default:
			if p, ok := d.Input.Properties[c.Field]; !ok || p.Type != "string" {
				es.Add("classify.field", "must name a string field of input.properties (got %q)", c.Field)
			}
		}
		labels := map[string]bool{}
		for i, l := range c.Labels {
			if l == "" || labels[l] {
				es.Add(fmt.Sprintf("classify.labels[%d]", i), "labels must be unique and not empty (got %q)", l)
			}
			labels[l] = true
		}
		if len(c.Labels) < 2 {
			es.Add("classify.labels", "a classifier needs at least two labels")
		}
		for i, f := range c.Extract {
			if !fieldRE.MatchString(f.Name) {
				es.Add(fmt.Sprintf("classify.extract[%d].name", i), "is not a valid field name (got %q)", f.Name)
			}
			switch f.Type {
			case "string", "number", "boolean":
			default:
				es.Add(fmt.Sprintf("classify.extract[%d].type", i), "must be string, number or boolean (got %q)", f.Type)
			}
			switch {
			case f.Decimal == "":
			case f.Type != "number":
				es.Add(fmt.Sprintf("classify.extract[%d].decimal", i), "applies to number fields")
			case f.Decimal != "." && f.Decimal != ",":
				es.Add(fmt.Sprintf("classify.extract[%d].decimal", i), `must be "." or "," (got %q)`, f.Decimal)
			}
			if f.Pattern != "" {
				if re, err := regexp.Compile(f.Pattern); err != nil {
					es.Add(fmt.Sprintf("classify.extract[%d].pattern", i), "is not a regular expression: %v", err)
				} else if re.NumSubexp() > 1 {
					es.Add(fmt.Sprintf("classify.extract[%d].pattern", i), "may have at most one capture group, the value (got %d)", re.NumSubexp())
				}
			}
		}
		if c.ReviewBelow < 0 || c.ReviewBelow > 1 {
			es.Add("classify.review_below", "must be between 0 and 1")
		}
		if c.ReviewQueue != "" && !identRE.MatchString(c.ReviewQueue) {
			es.Add("classify.review_queue", "is not a valid queue name (got %q)", c.ReviewQueue)
		}
		if c.Language != "" && !languageRE.MatchString(c.Language) {
			es.Add("classify.language", `is not a language tag such as "en" or "de-CH" (got %q)`, c.Language)
		}
		for i, e := range c.Examples {
			if !labels[e.Label] {
				es.Add(fmt.Sprintf("classify.examples[%d].label", i), "label %q is not in classify.labels", e.Label)
			}
		}
	}
	if d.Limits.MaxAddedSteps < 0 {
		es.Add("limits.max_added_steps", "must not be negative")
	}
	if d.Limits.MaxReviews < 0 {
		es.Add("limits.max_reviews", "must not be negative")
	}
	return es.Err()
}

func (s *Step) validate(path string, es *Errors) {
	if s.Timeout != "" {
		if d, err := ParseDuration(s.Timeout); err != nil || d <= 0 {
			es.Add(path+".timeout", "invalid duration %q", s.Timeout)
		}
	}
	if s.Retries != nil && (*s.Retries < 0 || *s.Retries > 100) {
		es.Add(path+".retries", "must be between 0 and 100")
	}
	switch s.Kind {
	case KindTask:
		if s.Task == "" {
			es.Add(path+".task", "a task step names its built-in task")
		}
	case KindHTTP:
		if s.HTTP == nil {
			es.Add(path+".http", "an http step needs method and url")
			return
		}
		switch strings.ToUpper(s.HTTP.Method) {
		case "GET", "POST", "PUT", "PATCH", "DELETE":
		default:
			es.Add(path+".http.method", "must be GET, POST, PUT, PATCH or DELETE (got %q)", s.HTTP.Method)
		}
		if s.HTTP.URL == "" {
			es.Add(path+".http.url", "is required")
		}
	case KindValidate:
		if len(s.Assertions) == 0 {
			es.Add(path+".assertions", "a validate step needs at least one assertion")
		}
	case KindWait:
		if d, err := ParseDuration(s.Duration); err != nil || d <= 0 {
			es.Add(path+".duration", "a wait step needs a positive duration such as \"30m\" (got %q)", s.Duration)
		}
	case KindReview:
		if s.Review == nil {
			es.Add(path+".review", "a review step needs a queue")
			return
		}
		s.Review.validate(path+".review", es)
	case KindEvent:
		if s.Event == nil {
			es.Add(path+".event", "an event step names the event it waits for")
			return
		}
		s.Event.validate(path+".event", es)
	case KindProcess:
		if s.Process == nil {
			es.Add(path+".process", "a process step names the process it runs")
			return
		}
		if !identRE.MatchString(s.Process.Name) {
			es.Add(path+".process.name", "is required: lower-case letters, digits, '-' or '_' (got %q)", s.Process.Name)
		}
		if s.Process.Version < 0 {
			es.Add(path+".process.version", "must be a positive integer (or none: the latest)")
		}
	case "":
		es.Add(path+".kind", "is required (task, http, validate, wait, review, event or process)")
	default:
		es.Add(path+".kind", "unknown step kind %q (task, http, validate, wait, review, event or process)", s.Kind)
	}
}

func (e *EventSpec) validate(path string, es *Errors) {
	if !identRE.MatchString(e.Name) {
		es.Add(path+".name", "is required: lower-case letters, digits, '-' or '_' (got %q)", e.Name)
	}
	if e.Timeout != "" {
		if d, err := ParseDuration(e.Timeout); err != nil || d <= 0 {
			es.Add(path+".timeout", "invalid duration %q", e.Timeout)
		}
	}
	switch e.OnTimeout {
	case "", TimeoutFail, TimeoutContinue:
	default:
		es.Add(path+".on_timeout", "must be fail or continue (got %q)", e.OnTimeout)
	}
	if e.OnTimeout != "" && e.Timeout == "" {
		es.Add(path+".on_timeout", "needs a timeout")
	}
	if e.Count < 0 || e.Count > MaxEventCount {
		es.Add(path+".count", "must be 1 to %d (got %d)", MaxEventCount, e.Count)
	}
}

func (r *ReviewSpec) validate(path string, es *Errors) {
	if !identRE.MatchString(r.Queue) {
		es.Add(path+".queue", "is required: lower-case letters, digits, '-' or '_' (got %q)", r.Queue)
	}
	if r.SLA != "" {
		if d, err := ParseDuration(r.SLA); err != nil || d <= 0 {
			es.Add(path+".sla", "invalid duration %q", r.SLA)
		}
	}
	switch r.OnTimeout {
	case "", TimeoutApprove, TimeoutReject, TimeoutFail:
		if r.Escalate != nil {
			es.Add(path+".escalate", "applies only with on_timeout: escalate")
		}
	case TimeoutEscalate:
		if r.Escalate == nil {
			es.Add(path+".escalate", "is required with on_timeout: escalate (queue, sla, on_timeout, notify)")
		} else {
			r.Escalate.validate(path+".escalate", 1, es)
		}
	default:
		es.Add(path+".on_timeout", "must be approve, reject, fail or escalate (got %q)", r.OnTimeout)
	}
	if r.OnTimeout != "" && r.SLA == "" {
		es.Add(path+".on_timeout", "needs an sla")
	}
}

// validate checks an escalation, the level-th of its review, and the levels
// after it.
func (e *Escalation) validate(path string, level int, es *Errors) {
	if !identRE.MatchString(e.Queue) {
		es.Add(path+".queue", "is required: lower-case letters, digits, '-' or '_' (got %q)", e.Queue)
	}
	if d, err := ParseDuration(e.SLA); err != nil || d <= 0 {
		es.Add(path+".sla", "is required: a duration such as 4h or 2d (got %q)", e.SLA)
	}
	switch e.OnTimeout {
	case TimeoutApprove, TimeoutReject, TimeoutFail:
		if e.Escalate != nil {
			es.Add(path+".escalate", "applies only with on_timeout: escalate")
		}
	case TimeoutEscalate:
		switch {
		case e.Escalate == nil:
			es.Add(path+".escalate", "is required with on_timeout: escalate (the next level: queue, sla, on_timeout)")
		case level >= MaxEscalationLevels:
			es.Add(path+".escalate", "a review escalates at most %d times", MaxEscalationLevels)
		default:
			e.Escalate.validate(path+".escalate", level+1, es)
		}
	default:
		es.Add(path+".on_timeout", "must be approve, reject, fail or escalate (got %q)", e.OnTimeout)
	}
	if e.Priority < 0 || e.Priority > 100 {
		es.Add(path+".priority", "must be between 0 and 100 (got %d)", e.Priority)
	}
	if e.Notify != "" {
		if u, err := url.Parse(e.Notify); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			es.Add(path+".notify", "must be an http(s) URL (got %q)", e.Notify)
		}
	}
}

// Validate checks the policy's structure. Whether its steps exist in the
// process and whether its condition compiles is checked against the
// definition by the policies package.
func (p *Policy) Validate() error {
	var es Errors
	if !identRE.MatchString(p.ID) {
		es.Add("id", "must be lower-case letters, digits, '-' or '_', starting with a letter (got %q)", p.ID)
	}
	if !identRE.MatchString(p.Process) {
		es.Add("process", "must name a process (got %q)", p.Process)
	}
	if strings.TrimSpace(p.When) == "" {
		es.Add("when", "is required: a CEL condition over the facts")
	}
	switch p.OnError {
	case "", OnErrorSkip, OnErrorMatch:
	default:
		es.Add("on_error", "must be skip or match (got %q)", p.OnError)
	}
	if len(p.Actions) == 0 {
		es.Add("actions", "a policy needs at least one action")
	}
	for i, a := range p.Actions {
		path := fmt.Sprintf("actions[%d]", i)
		n := 0
		for _, set := range []bool{a.Skip != "", a.Add != "", a.Review != nil, a.Set != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			es.Add(path, "exactly one of skip, add, review, set is required")
			continue
		}
		switch a.Kind() {
		case ActionSkip:
			if a.Before != "" || a.After != "" {
				es.Add(path, "skip takes no before or after")
			}
		case ActionAdd:
			if (a.Before == "") == (a.After == "") {
				es.Add(path, "add needs exactly one of before or after")
			}
		case ActionReview:
			if a.After != "" {
				es.Add(path+".after", "a review is a gate before a step; use before")
			}
			a.Review.validate(path+".review", &es)
		case ActionSet:
			if a.Before != "" || a.After != "" {
				es.Add(path, "set takes no before or after")
			}
			if !fieldRE.MatchString(a.Set.Name) {
				es.Add(path+".set.name", "is not a valid variable name (got %q)", a.Set.Name)
			}
		}
	}
	seenTests := map[string]bool{}
	for i, tc := range p.Tests {
		path := fmt.Sprintf("tests[%d]", i)
		switch {
		case strings.TrimSpace(tc.Name) == "":
			es.Add(path+".name", "is required")
		case seenTests[tc.Name]:
			es.Add(path+".name", "duplicate test name %q", tc.Name)
		}
		seenTests[tc.Name] = true
		if tc.Step == "" {
			es.Add(path+".step", "is required: the step the decision is made before")
		}
		if tc.Expect.Matched == nil && tc.Expect.Actions == nil && tc.Expect.Error == "" {
			es.Add(path+".expect", "say what to expect: matched, actions or error")
		}
		for k := range tc.Facts {
			switch k {
			case "input", "process", "instance", "steps", "signals", "classification", "calendar", "reviews":
			default:
				es.Add(path+".facts."+k, "unknown fact (input, process, instance, steps, signals, classification, calendar, reviews)")
			}
		}
	}
	return es.Err()
}

// CheckAgainst reports actions that name steps the definition lacks.
func (p *Policy) CheckAgainst(d *Definition) error {
	var es Errors
	if p.Process != d.Name {
		es.Add("process", "policy is for %q, not %q", p.Process, d.Name)
	}
	for i, a := range p.Actions {
		path := fmt.Sprintf("actions[%d]", i)
		ref := func(field, id string) {
			if id == "" {
				return
			}
			if _, ok := d.Step(id); !ok {
				es.Add(path+"."+field, "unknown step %q in process %s", id, d.Ref())
			}
		}
		ref("skip", a.Skip)
		ref("before", a.Before)
		ref("after", a.After)
		if a.Add != "" {
			if _, ok := d.CatalogStep(a.Add); !ok {
				es.Add(path+".add", "step %q is not in the catalog of %s", a.Add, d.Ref())
			}
		}
	}
	for i, tc := range p.Tests {
		if _, ok := d.Step(tc.Step); !ok && tc.Step != "" {
			es.Add(fmt.Sprintf("tests[%d].step", i), "unknown step %q in process %s", tc.Step, d.Ref())
		}
	}
	return es.Err()
}

// YAML renders a definition as the YAML a person would write.
func (d *Definition) YAML() string {
	out, err := yaml.Marshal(d)
	if err != nil {
		return string(JSON(d))
	}
	return string(out)
}

// YAML renders a policy as the YAML a person would write.
func (p *Policy) YAML() string {
	out, err := yaml.Marshal(p)
	if err != nil {
		return string(JSON(p))
	}
	return string(out)
}

// CheckExamples says which of the classifier's labels has no example to
// learn from: no seed in classify.examples, and none among the examples
// stored for the classifier (stored: their labels; those imported, or
// reviewers' corrections). A registration checks it against its store;
// Validate cannot, so a definition read offline is not refused for it.
func (d *Definition) CheckExamples(stored map[string]bool) error {
	if d.Classify == nil {
		return nil
	}
	seeded := map[string]bool{}
	for _, e := range d.Classify.Examples {
		seeded[e.Label] = true
	}
	var es Errors
	for _, l := range d.Classify.Labels {
		if !seeded[l] && !stored[l] {
			es.Add("classify.examples", "label %q has no example: give it a seed here, or store examples of it first (POST /v1/classifiers/%s/examples, or adaptflow examples import)", l, d.Classify.Name)
		}
	}
	return es.Err()
}
