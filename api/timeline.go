package api

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/workflows"
)

// timelineEntry is one moment of an instance's life.
type timelineEntry struct {
	At   time.Time `json:"at"`
	Kind string    `json:"kind"` // started, decision, step, review, event, ended
	// Step is the step it concerns, if any; Ref the id of what it is about
	// (a decision, a review, an event).
	Step string `json:"step,omitempty"`
	Ref  string `json:"ref,omitempty"`
	What string `json:"what"`
}

// instanceTimeline tells an instance's life in the order it happened:
// GET /v1/instances/{id}/timeline. Its start and end, each decision and
// what it applied, each step's start and end, each review's opening,
// escalation and verdict, and each event other systems sent it.
func (s *server) instanceTimeline(c *gin.Context) {
	ctx := c.Request.Context()
	inst, st, ok := s.routeInstance(c)
	if !ok {
		return
	}
	decisions, err := s.Decisions.Decisions(ctx, inst.ID)
	if err != nil {
		fail(c, err)
		return
	}
	var out []timelineEntry
	add := func(at time.Time, kind, step, ref, what string) {
		out = append(out, timelineEntry{At: at.UTC(), Kind: kind, Step: step, Ref: ref, What: what})
	}
	add(inst.CreatedAt, "started", "", "", fmt.Sprintf("started by %s (%s v%d, business key %s)", inst.CreatedBy, inst.Process, inst.ProcessVersion, inst.BusinessKey))
	for _, d := range decisions {
		if d.Review != nil {
			continue // a review's outcome: told from the review itself
		}
		what := "decision before " + d.Step + ": "
		var parts []string
		for _, a := range d.Applied {
			parts = append(parts, a.Action.String()+" ("+a.PolicyID+")")
		}
		for _, r := range d.Rejected {
			parts = append(parts, "refused "+r.Action.String()+" ("+r.PolicyID+"): "+r.Reason)
		}
		if len(parts) == 0 {
			parts = []string{"no change"}
		}
		add(d.Time, "decision", d.Step, d.ID, what+strings.Join(parts, "; "))
	}
	for _, p := range st.Plan {
		if p.StartedAt != nil {
			add(*p.StartedAt, "step", p.ID, "", fmt.Sprintf("%s (%s) started", p.ID, p.Kind))
		}
		if p.FinishedAt != nil {
			what := fmt.Sprintf("%s %s", p.ID, p.State)
			if p.StartedAt != nil {
				what += " after " + p.FinishedAt.Sub(*p.StartedAt).Round(time.Millisecond).String()
			}
			if p.Error != "" {
				what += ": " + p.Error
			}
			add(*p.FinishedAt, "step", p.ID, "", what)
		}
	}
	for _, rs := range st.Reviews {
		rv, err := s.Reviews.Review(ctx, rs.ID, s.Clock())
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			fail(c, err)
			return
		}
		opened := "review opened (in queue " + rv.Queue + " now)"
		if len(rs.Moves) > 0 {
			opened = "review opened in queue " + rs.Moves[0].From
		}
		if rs.Reason != "" {
			opened += ": " + rs.Reason
		}
		add(rv.CreatedAt, "review", rs.Step, rs.ID, opened)
		for _, m := range rs.Moves {
			what := "review moved from queue " + m.From + " to " + m.To + " by " + m.By
			if m.By == "sla" {
				what = "review moved from queue " + m.From + " to " + m.To
			}
			if m.Note != "" {
				what += ": " + m.Note
			}
			add(m.At, "review", rs.Step, rs.ID, what)
		}
		if rv.EscalatedAt != nil && len(rs.Moves) == 0 { // saved before moves were kept
			add(*rv.EscalatedAt, "review", rs.Step, rs.ID, "review escalated to queue "+rv.Queue)
		}
		if rv.DecidedAt != nil {
			what := "review " + rv.Status
			if rv.Verdict != "" {
				what += ": " + rv.Verdict
			}
			what += " by " + rv.Reviewer
			if rv.Comment != "" {
				what += ": " + rv.Comment
			}
			add(*rv.DecidedAt, "review", rs.Step, rs.ID, what)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(st.EventLog)) {
		for _, e := range st.EventLog[name] {
			what := "event " + name
			if e.ID != "" {
				what += " " + e.ID
			}
			add(e.At, "event", "", e.ID, what+" from "+e.By)
		}
	}
	if !inst.FinishedAt.IsZero() && store.Final(st.Status) {
		what := "ended " + st.Status + " after " + inst.FinishedAt.Sub(inst.CreatedAt).Round(time.Millisecond).String()
		if st.Error != "" && st.Status != workflows.StatusCompleted {
			what += ": " + st.Error
		}
		add(inst.FinishedAt, "ended", "", "", what)
	}
	// In time order; at a tie, as added (a decision before its step's
	// start, a start before an end).
	slices.SortStableFunc(out, func(a, b timelineEntry) int { return a.At.Compare(b.At) })
	c.JSON(http.StatusOK, gin.H{"id": inst.ID, "timeline": out})
}
