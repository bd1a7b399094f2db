package store

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Observation is one value of a signal and what its anomaly detector made
// of it.
type Observation struct {
	Process string    `json:"process"`
	Signal  string    `json:"signal"`
	At      time.Time `json:"at"`
	Value   float64   `json:"value"`
	// InstanceID is the instance whose input value or step duration this
	// is; empty for an arrival rate, which is observed at each ten-minute
	// boundary (At).
	InstanceID string `json:"instance_id,omitempty"`
	// Verdict is the detector's verdict, as policies saw it; nil for an
	// observation recorded before verdicts were kept.
	Verdict *SignalVerdict `json:"verdict,omitempty"`
	// Seq orders observations kept at the same time (for cursors).
	Seq int64 `json:"-"`
}

// SignalVerdict is a detector's verdict on one observation.
type SignalVerdict struct {
	Score     float64 `json:"score"`
	Anomalous bool    `json:"anomalous"`
	WarmingUp bool    `json:"warming_up"`
	Recurring bool    `json:"recurring"`
	// Expected, Low and High are the baseline: the value expected and the
	// range of the usual.
	Expected float64 `json:"expected"`
	Low      float64 `json:"low"`
	High     float64 `json:"high"`
	Reason   string  `json:"reason"`
}

// SignalQuery asks for the history of one signal of a process over the
// window [Since, Until): counts per period of Bucket, the latest
// observation, and the latest flagged ones.
type SignalQuery struct {
	Process, Signal string
	Since, Until    time.Time
	Bucket          time.Duration
	// Flagged is how many anomalous observations to return, newest first.
	Flagged int
}

// SignalHistory is the answer to a SignalQuery.
type SignalHistory struct {
	// Observations and Anomalous count the window's observations.
	Observations int
	Anomalous    int
	// Latest is the latest observation before Until, in the window or
	// not; nil when the signal has none.
	Latest *Observation
	// Periods are the window's periods that hold an observation, oldest
	// first.
	Periods []SignalPeriod
	// Flagged are the window's latest anomalous observations, newest
	// first.
	Flagged []Observation
}

// SignalPeriod sums up the observations of one period.
type SignalPeriod struct {
	Start        time.Time `json:"start"`
	Observations int       `json:"observations"`
	Anomalous    int       `json:"anomalous"`
	Mean         float64   `json:"mean"`
	Min          float64   `json:"min"`
	Max          float64   `json:"max"`
	// Baseline is the mean baseline of the period's judged observations
	// (nil when none was judged: all recorded before verdicts were kept).
	Baseline *Baseline `json:"baseline,omitempty"`
}

// Baseline is what a detector expected, and the range of the usual.
type Baseline struct {
	Expected float64 `json:"expected"`
	Low      float64 `json:"low"`
	High     float64 `json:"high"`
}

// ObservationColumns are the columns ScanObservation reads, in order.
const ObservationColumns = `at, value, instance_id, score, anomalous, warming_up, recurring, expected, low, high, reason`

// ObservationRow is an observation's values for ObservationColumns, for an
// insert.
func ObservationRow(o Observation) []any {
	row := []any{o.At.UnixMicro(), o.Value, o.InstanceID, nil, 0, 0, 0, nil, nil, nil, ""}
	if v := o.Verdict; v != nil {
		row[3], row[4], row[5], row[6], row[7], row[8], row[9], row[10] = v.Score, flag(v.Anomalous), flag(v.WarmingUp), flag(v.Recurring), v.Expected, v.Low, v.High, v.Reason
	}
	return row
}

func flag(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ScanObservation reads one row of ObservationColumns.
func ScanObservation(scan func(dest ...any) error, process, signal string) (Observation, error) {
	o := Observation{Process: process, Signal: signal}
	var at int64
	var score, expected, low, high *float64
	var anomalous, warming, recurring int
	var reason string
	if err := scan(&at, &o.Value, &o.InstanceID, &score, &anomalous, &warming, &recurring, &expected, &low, &high, &reason); err != nil {
		return o, err
	}
	o.At = time.UnixMicro(at).UTC()
	if score != nil {
		o.Verdict = &SignalVerdict{Score: *score, Anomalous: anomalous == 1, WarmingUp: warming == 1, Recurring: recurring == 1, Reason: reason}
		if expected != nil && low != nil && high != nil {
			o.Verdict.Expected, o.Verdict.Low, o.Verdict.High = *expected, *low, *high
		}
	}
	return o, nil
}

// AppendObservationQuery inserts one observation (with ObservationRow's
// values after its process and signal), leaving it out when it is kept
// already (an instance's observation of a signal, or an arrival rate's of
// a boundary, is kept once).
func AppendObservationQuery(ph func(n int) string) string {
	p := &params{ph: ph}
	phs := make([]string, 13)
	for i := range phs {
		phs[i] = p.add(nil)
	}
	return `INSERT INTO observations (process, signal, ` + ObservationColumns + `) VALUES (` + strings.Join(phs, ", ") + `) ON CONFLICT DO NOTHING`
}

// Query is an SQL query and its arguments.
type Query struct {
	SQL  string
	Args []any
}

// SignalHistoryQueries are the queries that answer q: its periods (read
// with ScanSignalPeriod), its latest observation and its flagged ones
// (read with ScanObservation).
func SignalHistoryQueries(q SignalQuery, ph func(n int) string) (periods, latest, flagged Query) {
	p := &params{ph: ph} // placeholders in the order they appear (SQLite's are positional)
	period := "(at - CAST(" + p.add(q.Since.UnixMicro()) + " AS BIGINT)) / CAST(" + p.add(q.Bucket.Microseconds()) + " AS BIGINT)"
	sql := `SELECT ` + period + ` AS period, COUNT(*), CAST(SUM(anomalous) AS BIGINT), AVG(value), MIN(value), MAX(value), AVG(expected), AVG(low), AVG(high)
		FROM observations WHERE process = ` + p.add(q.Process) + ` AND signal = ` + p.add(q.Signal)
	sql += ` AND at >= ` + p.add(q.Since.UnixMicro())
	sql += ` AND at < ` + p.add(q.Until.UnixMicro())
	periods = Query{sql + ` GROUP BY period ORDER BY period`, p.args}

	p = &params{ph: ph}
	sql = `SELECT ` + ObservationColumns + ` FROM observations WHERE process = ` + p.add(q.Process) + ` AND signal = ` + p.add(q.Signal)
	sql += ` AND at < ` + p.add(q.Until.UnixMicro())
	latest = Query{sql + ` ORDER BY at DESC, seq DESC LIMIT 1`, p.args}

	p = &params{ph: ph}
	sql = `SELECT ` + ObservationColumns + ` FROM observations WHERE process = ` + p.add(q.Process) + ` AND signal = ` + p.add(q.Signal)
	sql += ` AND at >= ` + p.add(q.Since.UnixMicro())
	sql += ` AND at < ` + p.add(q.Until.UnixMicro())
	sql += ` AND anomalous = 1 ORDER BY at DESC, seq DESC LIMIT ` + p.add(q.Flagged)
	flagged = Query{sql, p.args}
	return periods, latest, flagged
}

// ScanSignalPeriod reads one row of the periods query of q.
func ScanSignalPeriod(scan func(dest ...any) error, q SignalQuery) (SignalPeriod, error) {
	var period int64
	var sp SignalPeriod
	var expected, low, high *float64
	if err := scan(&period, &sp.Observations, &sp.Anomalous, &sp.Mean, &sp.Min, &sp.Max, &expected, &low, &high); err != nil {
		return sp, err
	}
	sp.Start = q.Since.Add(time.Duration(period) * q.Bucket).UTC()
	if expected != nil && low != nil && high != nil {
		sp.Baseline = &Baseline{Expected: *expected, Low: *low, High: *high}
	}
	return sp, nil
}

// NewSignalHistory puts the answers of SignalHistoryQueries together.
func NewSignalHistory(periods []SignalPeriod, latest, flagged []Observation) SignalHistory {
	h := SignalHistory{Periods: periods, Flagged: flagged}
	for _, p := range periods {
		h.Observations += p.Observations
		h.Anomalous += p.Anomalous
	}
	if len(latest) > 0 {
		h.Latest = &latest[0]
	}
	return h
}

// MaxObservationPage bounds a page of observations.
const MaxObservationPage = 5000

// ObservationFilter selects a page of a signal's observations, oldest
// first.
type ObservationFilter struct {
	Process, Signal string
	// Since and Until bound the observations' times (zero: unbounded).
	Since, Until time.Time
	// Anomalous keeps only the flagged observations.
	Anomalous bool
	// After is the cursor of the last observation of the previous page.
	After string
	Limit int
}

// ObservationCursor is the cursor that continues a listing after o.
func ObservationCursor(o Observation) string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%d.%d", o.At.UnixMicro(), o.Seq))
}

// ObservationsQuery is the query of a page of observations (read with
// ScanObservationPage); a malformed cursor is ErrInvalid.
func ObservationsQuery(f ObservationFilter, ph func(n int) string) (string, []any, error) {
	p := &params{ph: ph}
	where := []string{"process = " + p.add(f.Process), "signal = " + p.add(f.Signal)}
	if !f.Since.IsZero() {
		where = append(where, "at >= "+p.add(f.Since.UnixMicro()))
	}
	if !f.Until.IsZero() {
		where = append(where, "at < "+p.add(f.Until.UnixMicro()))
	}
	if f.Anomalous {
		where = append(where, "anomalous = 1")
	}
	if f.After != "" {
		raw, err := base64.RawURLEncoding.DecodeString(f.After)
		at, seq, ok := strings.Cut(string(raw), ".")
		a, aerr := strconv.ParseInt(at, 10, 64)
		n, nerr := strconv.ParseInt(seq, 10, 64)
		if err != nil || !ok || aerr != nil || nerr != nil {
			return "", nil, fmt.Errorf("%w: malformed cursor", ErrInvalid)
		}
		where = append(where, fmt.Sprintf("(at > %s OR (at = %s AND seq > %s))", p.add(a), p.add(a), p.add(n)))
	}
	limit := f.Limit
	if limit <= 0 || limit > MaxObservationPage {
		limit = 500
	}
	q := `SELECT seq, ` + ObservationColumns + ` FROM observations WHERE ` + strings.Join(where, " AND ") + ` ORDER BY at, seq LIMIT ` + p.add(limit)
	return q, p.args, nil
}

// ScanObservationPage reads one row of ObservationsQuery.
func ScanObservationPage(scan func(dest ...any) error, process, signal string) (Observation, error) {
	var seq int64
	o, err := ScanObservation(func(dest ...any) error { return scan(append([]any{&seq}, dest...)...) }, process, signal)
	o.Seq = seq
	return o, err
}
