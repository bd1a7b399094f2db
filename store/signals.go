package store

import (
	"context"
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

// ObservationColumns are the columns scanObservation reads, in order.
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

// scanObservation reads one row of ObservationColumns.
func scanObservation(scan func(dest ...any) error, process, signal string) (Observation, error) {
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

// query is an SQL query and its arguments.
type query struct {
	SQL  string
	Args []any
}

// signalHistoryQueries are the queries that answer q: its periods (read
// with scanSignalPeriod), its latest observation and its flagged ones
// (read with scanObservation).
func signalHistoryQueries(q SignalQuery, ph func(n int) string) (periods, latest, flagged query) {
	p := &params{ph: ph} // placeholders in the order they appear (SQLite's are positional)
	period := "(at - CAST(" + p.add(q.Since.UnixMicro()) + " AS BIGINT)) / CAST(" + p.add(q.Bucket.Microseconds()) + " AS BIGINT)"
	sql := `SELECT ` + period + ` AS period, COUNT(*), CAST(SUM(anomalous) AS BIGINT), AVG(value), MIN(value), MAX(value), AVG(expected), AVG(low), AVG(high)
		FROM observations WHERE process = ` + p.add(q.Process) + ` AND signal = ` + p.add(q.Signal)
	sql += ` AND at >= ` + p.add(q.Since.UnixMicro())
	sql += ` AND at < ` + p.add(q.Until.UnixMicro())
	periods = query{sql + ` GROUP BY period ORDER BY period`, p.args}

	p = &params{ph: ph}
	sql = `SELECT ` + ObservationColumns + ` FROM observations WHERE process = ` + p.add(q.Process) + ` AND signal = ` + p.add(q.Signal)
	sql += ` AND at < ` + p.add(q.Until.UnixMicro())
	latest = query{sql + ` ORDER BY at DESC, seq DESC LIMIT 1`, p.args}

	p = &params{ph: ph}
	sql = `SELECT ` + ObservationColumns + ` FROM observations WHERE process = ` + p.add(q.Process) + ` AND signal = ` + p.add(q.Signal)
	sql += ` AND at >= ` + p.add(q.Since.UnixMicro())
	sql += ` AND at < ` + p.add(q.Until.UnixMicro())
	sql += ` AND anomalous = 1 ORDER BY at DESC, seq DESC LIMIT ` + p.add(q.Flagged)
	flagged = query{sql, p.args}
	return periods, latest, flagged
}

// scanSignalPeriod reads one row of the periods query of q.
func scanSignalPeriod(scan func(dest ...any) error, q SignalQuery) (SignalPeriod, error) {
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

// newSignalHistory puts the answers of signalHistoryQueries together.
func newSignalHistory(periods []SignalPeriod, latest, flagged []Observation) SignalHistory {
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

// observationsQuery is the query of a page of observations (read with
// scanObservationPage); a malformed cursor is ErrInvalid.
func observationsQuery(f ObservationFilter, ph func(n int) string) (string, []any, error) {
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

// scanObservationPage reads one row of observationsQuery.
func scanObservationPage(scan func(dest ...any) error, process, signal string) (Observation, error) {
	var seq int64
	o, err := scanObservation(func(dest ...any) error { return scan(append([]any{&seq}, dest...)...) }, process, signal)
	o.Seq = seq
	return o, err
}

// Reader is a store's way to read: it runs a query and calls row with the
// Scan of each row it returns. op names the read in errors.
type Reader func(ctx context.Context, op, sql string, args []any, row func(scan func(dest ...any) error) error) error

// Reads are the reads both stores share, written once over a store's
// Reader and placeholders; each store embeds them (NewReads).
type Reads struct {
	rows Reader
	d    Dialect
}

// Dialect is what a store's SQL says differently from the other's.
type Dialect struct {
	// Placeholder renders the n-th query parameter.
	Placeholder func(n int) string
	// Lower is the SQL that lower-cases a text expression, every letter
	// (not only ASCII's, as SQLite's lower() and PostgreSQL's in the C
	// locale do): text searches fold case with it.
	Lower func(expr string) string
}

// NewReads makes the shared reads of a store.
func NewReads(rows Reader, d Dialect) Reads { return Reads{rows: rows, d: d} }

// ph renders the n-th query parameter in the store's SQL.
func (r Reads) ph(n int) string { return r.d.Placeholder(n) }

// Dialect is the store's SQL.
func (r Reads) Dialect() Dialect { return r.d }

// CountBy runs a query that returns a text and a count per row (a GROUP
// BY), as a map; what names it in errors.
func (r Reads) CountBy(ctx context.Context, what, q string, args ...any) (map[string]int, error) {
	out := map[string]int{}
	err := r.rows(ctx, what, q, args, func(scan func(dest ...any) error) error {
		var k string
		var n int
		if err := scan(&k, &n); err != nil {
			return err
		}
		out[k] = n
		return nil
	})
	return out, err
}

// readObservations reads the observations a query of ObservationColumns
// returns.
func readObservations(ctx context.Context, rows Reader, op, process, signal, sql string, args []any) ([]Observation, error) {
	out := []Observation{}
	err := rows(ctx, op, sql, args, func(scan func(dest ...any) error) error {
		o, err := scanObservation(scan, process, signal)
		out = append(out, o)
		return err
	})
	return out, err
}

// Observations lists the observations of a signal since a time, oldest
// first.
func (r Reads) Observations(ctx context.Context, process, signal string, since time.Time) ([]Observation, error) {
	rows, ph := r.rows, r.ph
	p := &params{ph: ph}
	q := `SELECT ` + ObservationColumns + ` FROM observations WHERE process = ` + p.add(process) + ` AND signal = ` + p.add(signal)
	q += ` AND at >= ` + p.add(since.UnixMicro())
	return readObservations(ctx, rows, "observations", process, signal, q+` ORDER BY at, seq`, p.args)
}

// InstanceObservation is the observation of a signal an instance's value
// (or step duration) made, if any: ErrNotFound when none is kept.
func (r Reads) InstanceObservation(ctx context.Context, process, signal, instanceID string) (Observation, error) {
	rows, ph := r.rows, r.ph
	p := &params{ph: ph}
	q := `SELECT ` + ObservationColumns + ` FROM observations WHERE process = ` + p.add(process) + ` AND signal = ` + p.add(signal)
	q += ` AND instance_id = ` + p.add(instanceID)
	obs, err := readObservations(ctx, rows, "instance observation", process, signal, q, p.args)
	if err != nil {
		return Observation{}, err
	}
	if len(obs) == 0 {
		return Observation{}, fmt.Errorf("%w: no observation of %s/%s by instance %s", ErrNotFound, process, signal, instanceID)
	}
	return obs[0], nil
}

// ObservationPage lists a page of a signal's observations, oldest first.
func (r Reads) ObservationPage(ctx context.Context, f ObservationFilter) ([]Observation, error) {
	rows, ph := r.rows, r.ph
	q, args, err := observationsQuery(f, ph)
	if err != nil {
		return nil, err
	}
	out := []Observation{}
	err = rows(ctx, "observation page", q, args, func(scan func(dest ...any) error) error {
		o, err := scanObservationPage(scan, f.Process, f.Signal)
		out = append(out, o)
		return err
	})
	return out, err
}

// SignalHistory sums up a signal's observations over a window.
func (r Reads) SignalHistory(ctx context.Context, q SignalQuery) (SignalHistory, error) {
	rows, ph := r.rows, r.ph
	pq, lq, fq := signalHistoryQueries(q, ph)
	periods := []SignalPeriod{}
	err := rows(ctx, "signal history", pq.SQL, pq.Args, func(scan func(dest ...any) error) error {
		sp, err := scanSignalPeriod(scan, q)
		periods = append(periods, sp)
		return err
	})
	if err != nil {
		return SignalHistory{}, err
	}
	latest, err := readObservations(ctx, rows, "signal history", q.Process, q.Signal, lq.SQL, lq.Args)
	if err != nil {
		return SignalHistory{}, err
	}
	flagged, err := readObservations(ctx, rows, "signal history", q.Process, q.Signal, fq.SQL, fq.Args)
	if err != nil {
		return SignalHistory{}, err
	}
	return newSignalHistory(periods, latest, flagged), nil
}
