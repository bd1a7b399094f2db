package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/adaptflow/adaptflow/store"
)

// AppendObservations records observations of signals, each with its
// verdict; one already kept (an instance's of a signal, an arrival rate's
// of a boundary) is left as it is, so a retried observer may append again.
func (s *Store) AppendObservations(ctx context.Context, obs ...store.Observation) error {
	if len(obs) == 0 {
		return nil
	}
	// One statement over arrays, however many: a rate's first observation
	// keeps five weeks of boundaries at once.
	n := len(obs)
	procs, signals, instances, reasons := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	at, anomalous, warming, recurring := make([]int64, n), make([]int32, n), make([]int32, n), make([]int32, n)
	values := make([]float64, n)
	score, expected, low, high := make([]*float64, n), make([]*float64, n), make([]*float64, n), make([]*float64, n)
	flag := func(b bool) int32 {
		if b {
			return 1
		}
		return 0
	}
	for i, o := range obs {
		procs[i], signals[i], instances[i], at[i], values[i] = o.Process, o.Signal, o.InstanceID, micros(o.At), o.Value
		if v := o.Verdict; v != nil {
			score[i], expected[i], low[i], high[i] = &v.Score, &v.Expected, &v.Low, &v.High
			anomalous[i], warming[i], recurring[i], reasons[i] = flag(v.Anomalous), flag(v.WarmingUp), flag(v.Recurring), v.Reason
		}
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO observations (process, signal, `+store.ObservationColumns+`)
		SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::float8[], $5::text[], $6::float8[], $7::int[], $8::int[], $9::int[], $10::float8[], $11::float8[], $12::float8[], $13::text[])
		ON CONFLICT DO NOTHING`, procs, signals, at, values, instances, score, anomalous, warming, recurring, expected, low, high, reasons)
	if err != nil {
		return fmt.Errorf("postgres: append observations: %w", err)
	}
	return nil
}

// rows reads for the queries the stores share (store.Reader).
func (s *Store) rows(ctx context.Context, op, q string, args []any, row func(scan func(dest ...any) error) error) error {
	_, err := collect(ctx, s.pool, op, func(r scanner) (struct{}, error) { return struct{}{}, row(r.Scan) }, q, args...)
	return err
}

// DetectorState reads a detector's state; see the sqlite store.
func (s *Store) DetectorState(ctx context.Context, key string) (store.DetectorState, error) {
	st := store.DetectorState{Key: key}
	var state string
	err := s.pool.QueryRow(ctx, `SELECT version, state FROM detector_state WHERE key = $1`, key).Scan(&st.Version, &state)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("postgres: detector state: %w", err)
	}
	st.State = json.RawMessage(state)
	return st, nil
}

// SaveDetectorState saves a detector's state if it is still at the version
// st.Version names; see the sqlite store.
func (s *Store) SaveDetectorState(ctx context.Context, st store.DetectorState) (int64, error) {
	var tag pgconn.CommandTag
	var err error
	if st.Version == 0 {
		tag, err = s.pool.Exec(ctx, `INSERT INTO detector_state (key, version, state) VALUES ($1, 1, $2) ON CONFLICT (key) DO NOTHING`, st.Key, string(st.State))
	} else {
		tag, err = s.pool.Exec(ctx, `UPDATE detector_state SET version = version + 1, state = $1 WHERE key = $2 AND version = $3`, string(st.State), st.Key, st.Version)
	}
	if err != nil {
		return 0, fmt.Errorf("postgres: save detector state: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return 0, fmt.Errorf("%w: detector %s changed since version %d", store.ErrConflict, st.Key, st.Version)
	}
	return st.Version + 1, nil
}
