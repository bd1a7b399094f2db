package api

import (
	"net/http"
	"slices"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
)

// signalReport is the history of a process's signals over a window.
type signalReport struct {
	Process       string       `json:"process"`
	Version       int          `json:"version"`
	Since         time.Time    `json:"since"`
	Until         time.Time    `json:"until"`
	BucketSeconds float64      `json:"bucket_seconds"`
	Signals       []signalView `json:"signals"`
}

// signalView is one declared signal: what it saw in the window, where it
// stands now, and when it fired.
type signalView struct {
	Name  string `json:"name"`
	Kind  string `json:"kind"`
	Field string `json:"field,omitempty"`
	Step  string `json:"step,omitempty"`
	// Observations and Anomalous count the window's observations.
	Observations int `json:"observations"`
	Anomalous    int `json:"anomalous"`
	// Latest is the signal's latest observation, in the window or before
	// it (null when it has none yet): where it stands.
	Latest *signalPoint `json:"latest"`
	// Periods are the periods of the window that hold an observation,
	// oldest first.
	Periods []store.SignalPeriod `json:"periods"`
	// Flagged are the window's latest anomalous observations, newest
	// first.
	Flagged []signalPoint `json:"flagged"`
}

// signalPoint is one observation and the detector's verdict on it (none
// for one recorded before verdicts were kept).
type signalPoint struct {
	At         time.Time            `json:"at"`
	Value      float64              `json:"value"`
	InstanceID string               `json:"instance_id,omitempty"`
	Verdict    *store.SignalVerdict `json:"verdict,omitempty"`
}

func pointOf(o store.Observation) signalPoint {
	return signalPoint{At: o.At, Value: o.Value, InstanceID: o.InstanceID, Verdict: o.Verdict}
}

// processSignals reports the history of the signals a process's definition
// (the latest, or version) declares: per period of the window, the latest
// observation and the flagged ones.
func (s *server) processSignals(c *gin.Context) {
	window, bucket, err := windowParams(c, 7*24*time.Hour, time.Hour)
	if err != nil {
		fail(c, err)
		return
	}
	flagged, err := intParam(c, "flagged", 20, 0, 1000)
	if err != nil {
		fail(c, err)
		return
	}
	def, _, _, ok := s.routeDefinition(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	// The window starts at a period's boundary (a multiple of the period
	// since the zero time: whole hours, UTC days), so the periods of two
	// reports line up.
	until := time.Now().UTC()
	rep := signalReport{Process: def.Name, Version: def.Version, Since: until.Add(-window).Truncate(bucket), Until: until, BucketSeconds: bucket.Seconds(), Signals: []signalView{}}
	for _, sig := range def.Signals {
		h, err := s.Signals.SignalHistory(ctx, store.SignalQuery{Process: def.Name, Signal: sig.Name, Since: rep.Since, Until: until, Bucket: bucket, Flagged: flagged})
		if err != nil {
			fail(c, err)
			return
		}
		v := signalView{Name: sig.Name, Kind: sig.Kind, Field: sig.Field, Step: sig.Step, Observations: h.Observations, Anomalous: h.Anomalous,
			Periods: h.Periods, Flagged: make([]signalPoint, len(h.Flagged))}
		if h.Latest != nil {
			p := pointOf(*h.Latest)
			v.Latest = &p
		}
		for i, o := range h.Flagged {
			v.Flagged[i] = pointOf(o)
		}
		rep.Signals = append(rep.Signals, v)
	}
	c.JSON(http.StatusOK, rep)
}

// listObservations pages through one signal's observations, oldest first:
// every one, or the flagged ones, since a time.
func (s *server) listObservations(c *gin.Context) {
	f := store.ObservationFilter{Process: c.Param("name"), Signal: c.Param("signal"), After: c.Query("after")}
	var err error
	if f.Limit, err = intParam(c, "limit", 500, 1, store.MaxObservationPage); err != nil {
		fail(c, err)
		return
	}
	if f.Since, err = agoParam(c, "since", time.Now()); err != nil {
		fail(c, err)
		return
	}
	switch v := c.Query("anomalous"); v {
	case "", "false":
	case "true":
		f.Anomalous = true
	default:
		fail(c, badRequest("anomalous", "must be true or false (got %q)", v))
		return
	}
	def, _, _, ok := s.routeDefinition(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	if !slices.ContainsFunc(def.Signals, func(sig process.Signal) bool { return sig.Name == f.Signal }) {
		fail(c, &httpError{status: http.StatusNotFound, code: "not_found", field: "signal",
			msg: sprintf("%s v%d declares no signal %q (a signal of another version: give its version)", def.Name, def.Version, f.Signal)})
		return
	}
	list, err := s.Signals.ObservationPage(ctx, f)
	if err != nil {
		fail(c, cursorError(err))
		return
	}
	points := make([]signalPoint, len(list))
	for i, o := range list {
		points[i] = pointOf(o)
	}
	out := gin.H{"observations": points}
	if len(list) == f.Limit {
		out["next"] = store.ObservationCursor(list[len(list)-1])
	}
	c.JSON(http.StatusOK, out)
}
