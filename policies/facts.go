package policies

import (
	"encoding/json"
	"fmt"
	"time"
)

// Facts are what the policies of one decision point see. They are recorded
// with the decision as JSON and evaluated from that JSON form, so a replay of
// recorded facts (simulation) sees exactly what the live decision saw.
type Facts struct {
	Input          map[string]any    `json:"input"`
	Process        ProcessFacts      `json:"process"`
	Instance       InstanceFacts     `json:"instance"`
	Steps          map[string]any    `json:"steps"`
	Signals        map[string]Signal `json:"signals"`
	Classification map[string]any    `json:"classification"`
	Calendar       CalendarFacts     `json:"calendar"`
	Reviews        []ReviewFact      `json:"reviews"`
	// Events are the events other systems sent the instance, by name.
	Events map[string]EventFact `json:"events"`
}

// ProcessFacts name the definition an instance runs.
type ProcessFacts struct {
	Name    string `json:"name"`
	Version int    `json:"version"`
}

// InstanceFacts describe the instance at the decision point.
type InstanceFacts struct {
	ID          string         `json:"id"`
	BusinessKey string         `json:"business_key"`
	Step        string         `json:"step"`
	StepsDone   []string       `json:"steps_done"`
	Elapsed     float64        `json:"elapsed"` // seconds since the start
	Vars        map[string]any `json:"vars"`
	// SLA is the definition's SLA in seconds (0: none); Overdue is set
	// once Elapsed has passed it.
	SLA     float64 `json:"sla"`
	Overdue bool    `json:"overdue"`
}

// Signal is one computed signal.
type Signal struct {
	Value     float64 `json:"value"`
	Score     float64 `json:"score"`
	Anomalous bool    `json:"anomalous"`
	WarmingUp bool    `json:"warming_up"`
	// Recurring is set when the value is as far off as an anomaly but
	// misses this large have recurred lately, so it is not flagged.
	Recurring bool     `json:"recurring"`
	Baseline  Baseline `json:"baseline"`
	Reason    string   `json:"reason"`
}

// Baseline is the expected value of a signal and its normal range.
type Baseline struct {
	Expected float64 `json:"expected"`
	Low      float64 `json:"low"`
	High     float64 `json:"high"`
}

// CalendarFacts place the decision in time.
type CalendarFacts struct {
	Now     string `json:"now"`
	Month   int    `json:"month"`
	Day     int    `json:"day"`
	Weekday string `json:"weekday"`
	Hour    int    `json:"hour"`
	Season  string `json:"season"`
}

// EventFact is an event another system sent the instance: its data, when
// it came (RFC 3339) and from whom.
type EventFact struct {
	ID   string         `json:"id,omitempty"`
	Data map[string]any `json:"data"`
	At   string         `json:"at"`
	By   string         `json:"by"`
	// Count is how many distinct events of the name came (told apart by
	// their ids), All those events, oldest first; the fact itself is the
	// first.
	Count int         `json:"count,omitempty"`
	All   []EventFact `json:"all,omitempty"`
}

// ReviewFact is a review of the instance and its verdict so far.
type ReviewFact struct {
	ID      string `json:"id"`
	Queue   string `json:"queue"`
	Step    string `json:"step"`
	Verdict string `json:"verdict"`
}

// Season is a named period of the year, from one month-day to another
// (inclusive, and it may wrap around the new year).
type Season struct {
	Name string `json:"name" yaml:"name"`
	From string `json:"from" yaml:"from"` // "MM-DD"
	To   string `json:"to" yaml:"to"`     // "MM-DD"
}

// Calendar turns a time into calendar facts.
type Calendar struct {
	Location *time.Location
	Seasons  []Season
	// Default is the season outside every named one ("off").
	Default string
}

// DefaultCalendar has a retail peak season from mid-November to the end of
// the year, in UTC.
func DefaultCalendar() Calendar {
	return Calendar{
		Location: time.UTC,
		Seasons:  []Season{{Name: "peak", From: "11-15", To: "12-31"}},
		Default:  "off",
	}
}

// Validate checks the season bounds.
func (c Calendar) Validate() error {
	for i, s := range c.Seasons {
		if s.Name == "" {
			return fmt.Errorf("seasons[%d].name: is required", i)
		}
		for field, v := range map[string]string{"from": s.From, "to": s.To} {
			if _, err := time.Parse("01-02", v); err != nil {
				return fmt.Errorf("seasons[%d].%s: want MM-DD, got %q", i, field, v)
			}
		}
	}
	return nil
}

// Facts returns the calendar facts of t.
func (c Calendar) Facts(t time.Time) CalendarFacts {
	loc := c.Location
	if loc == nil {
		loc = time.UTC
	}
	t = t.In(loc)
	md := t.Format("01-02")
	season := c.Default
	if season == "" {
		season = "off"
	}
	for _, s := range c.Seasons {
		in := s.From <= md && md <= s.To
		if s.From > s.To { // wraps around the new year
			in = md >= s.From || md <= s.To
		}
		if in {
			season = s.Name
			break
		}
	}
	return CalendarFacts{
		Now:     t.Format(time.RFC3339),
		Month:   int(t.Month()),
		Day:     t.Day(),
		Weekday: t.Weekday().String(),
		Hour:    t.Hour(),
		Season:  season,
	}
}

// Vars turns facts into the variables of an evaluation and their JSON form
// for the record. The variables hold exactly what decoding that JSON gives
// (numbers as float64, objects as maps), so replaying recorded facts sees
// what the live decision saw.
func (f *Facts) Vars() map[string]any {
	f.normalize()
	signals := make(map[string]any, len(f.Signals))
	for name, s := range f.Signals {
		signals[name] = map[string]any{
			"value": s.Value, "score": s.Score, "anomalous": s.Anomalous, "warming_up": s.WarmingUp, "recurring": s.Recurring, "reason": s.Reason,
			"baseline": map[string]any{"expected": s.Baseline.Expected, "low": s.Baseline.Low, "high": s.Baseline.High},
		}
	}
	done := make([]any, len(f.Instance.StepsDone))
	for i, s := range f.Instance.StepsDone {
		done[i] = s
	}
	events := make(map[string]any, len(f.Events))
	for name, e := range f.Events {
		events[name] = eventValue(e)
	}
	reviews := make([]any, len(f.Reviews))
	for i, r := range f.Reviews {
		reviews[i] = map[string]any{"id": r.ID, "queue": r.Queue, "step": r.Step, "verdict": r.Verdict}
	}
	vars := map[string]any{
		"input":   jsonValue(f.Input),
		"process": map[string]any{"name": f.Process.Name, "version": float64(f.Process.Version)},
		"instance": map[string]any{
			"id": f.Instance.ID, "business_key": f.Instance.BusinessKey, "step": f.Instance.Step,
			"steps_done": done, "elapsed": f.Instance.Elapsed, "vars": jsonValue(f.Instance.Vars),
			"sla": f.Instance.SLA, "overdue": f.Instance.Overdue,
		},
		"steps":          jsonValue(f.Steps),
		"signals":        signals,
		"classification": jsonValue(f.Classification),
		"calendar": map[string]any{
			"now": f.Calendar.Now, "month": float64(f.Calendar.Month), "day": float64(f.Calendar.Day),
			"weekday": f.Calendar.Weekday, "hour": float64(f.Calendar.Hour), "season": f.Calendar.Season,
		},
		"reviews": reviews,
		"events":  events,
	}
	return vars
}

// JSON is the form of the facts a decision record keeps.
func (f *Facts) JSON() (json.RawMessage, error) {
	f.normalize()
	raw, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("encode facts: %w", err)
	}
	return raw, nil
}

// jsonValue returns v as JSON decoding would: maps and slices of the same
// shape, numbers as float64. Values already in that shape are returned
// as they are, without copying.
func jsonValue[T any](v T) any {
	if isJSONShaped(any(v)) {
		return v
	}
	var out any
	b, err := json.Marshal(v)
	if err != nil || json.Unmarshal(b, &out) != nil {
		return v
	}
	return out
}

func isJSONShaped(v any) bool {
	switch x := v.(type) {
	case nil, string, bool, float64:
		return true
	case map[string]any:
		for _, e := range x {
			if !isJSONShaped(e) {
				return false
			}
		}
		return true
	case []any:
		for _, e := range x {
			if !isJSONShaped(e) {
				return false
			}
		}
		return true
	}
	return false
}

// VarsFromJSON turns recorded facts into the variables of an evaluation.
func VarsFromJSON(raw json.RawMessage) (map[string]any, error) {
	var vars map[string]any
	if err := json.Unmarshal(raw, &vars); err != nil {
		return nil, fmt.Errorf("decode facts: %w", err)
	}
	for _, name := range FactNames {
		if _, ok := vars[name]; !ok || vars[name] == nil {
			if name == "reviews" {
				vars[name] = []any{}
			} else {
				vars[name] = map[string]any{}
			}
		}
	}
	return vars, nil
}

func (f *Facts) normalize() {
	if f.Input == nil {
		f.Input = map[string]any{}
	}
	if f.Steps == nil {
		f.Steps = map[string]any{}
	}
	if f.Signals == nil {
		f.Signals = map[string]Signal{}
	}
	if f.Classification == nil {
		f.Classification = map[string]any{}
	}
	if f.Instance.Vars == nil {
		f.Instance.Vars = map[string]any{}
	}
	if f.Instance.StepsDone == nil {
		f.Instance.StepsDone = []string{}
	}
	if f.Reviews == nil {
		f.Reviews = []ReviewFact{}
	}
	if f.Events == nil {
		f.Events = map[string]EventFact{}
	}
}

// eventValue is an event fact as conditions read it: events.shipped.data,
// .count (1 for a record made before counts were kept) and .all.
func eventValue(e EventFact) map[string]any {
	all := make([]any, 0, len(e.All))
	for _, x := range e.All {
		all = append(all, map[string]any{"id": x.ID, "data": jsonValue(x.Data), "at": x.At, "by": x.By})
	}
	first := map[string]any{"id": e.ID, "data": jsonValue(e.Data), "at": e.At, "by": e.By}
	if len(all) == 0 {
		all = append(all, first)
	}
	first["count"] = float64(max(e.Count, 1))
	first["all"] = all
	return first
}
