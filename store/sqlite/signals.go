package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/adaptflow/adaptflow/store"
)

// AppendObservation records one value of a signal.
func (s *Store) AppendObservation(ctx context.Context, o store.Observation) error {
	if _, err := s.w.ExecContext(ctx, `INSERT INTO observations (process, signal, at, value) VALUES (?, ?, ?, ?)`, o.Process, o.Signal, micros(o.At), o.Value); err != nil {
		return fmt.Errorf("sqlite: append observation: %w", err)
	}
	return nil
}

// Observations lists the values of a signal since a time, oldest first.
func (s *Store) Observations(ctx context.Context, process, signal string, since time.Time) ([]store.Observation, error) {
	return collect(ctx, s.r, "observations", func(r scanner) (store.Observation, error) {
		o := store.Observation{Process: process, Signal: signal}
		var at int64
		err := r.Scan(&at, &o.Value)
		o.At = fromMicros(at)
		return o, err
	}, `SELECT at, value FROM observations WHERE process = ? AND signal = ? AND at >= ? ORDER BY at, seq`, process, signal, micros(since))
}

// DetectorState reads a detector's state; a detector never saved has
// version 0 and no state.
func (s *Store) DetectorState(ctx context.Context, key string) (store.DetectorState, error) {
	st := store.DetectorState{Key: key}
	var state string
	err := s.r.QueryRowContext(ctx, `SELECT version, state FROM detector_state WHERE key = ?`, key).Scan(&st.Version, &state)
	if errors.Is(err, sql.ErrNoRows) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("sqlite: detector state: %w", err)
	}
	st.State = json.RawMessage(state)
	return st, nil
}

// SaveDetectorState saves a detector's state if it is still at the version
// st.Version names, and returns the new version; otherwise ErrConflict (read
// again, apply the observation again, save again).
func (s *Store) SaveDetectorState(ctx context.Context, st store.DetectorState) (int64, error) {
	var res sql.Result
	var err error
	if st.Version == 0 {
		res, err = s.w.ExecContext(ctx, `INSERT INTO detector_state (key, version, state) VALUES (?, 1, ?) ON CONFLICT (key) DO NOTHING`, st.Key, string(st.State))
	} else {
		res, err = s.w.ExecContext(ctx, `UPDATE detector_state SET version = version + 1, state = ? WHERE key = ? AND version = ?`, string(st.State), st.Key, st.Version)
	}
	if err != nil {
		return 0, fmt.Errorf("sqlite: save detector state: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return 0, fmt.Errorf("%w: detector %s changed since version %d", store.ErrConflict, st.Key, st.Version)
	}
	return st.Version + 1, nil
}
