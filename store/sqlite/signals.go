package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/adaptflow/adaptflow/store"
)

// AppendObservations records observations of signals, each with its
// verdict; one already kept (an instance's of a signal, an arrival rate's
// of a boundary) is left as it is, so a retried observer may append again.
func (s *Store) AppendObservations(ctx context.Context, obs ...store.Observation) error {
	if len(obs) == 1 { // an instance's value, a rate's next boundary
		o := obs[0]
		if _, err := s.w.ExecContext(ctx, store.AppendObservationQuery(placeholder), append([]any{o.Process, o.Signal}, store.ObservationRow(o)...)...); err != nil {
			return fmt.Errorf("sqlite: append observation: %w", err)
		}
		return nil
	}
	// One transaction and one prepared statement: a rate's first
	// observation keeps five weeks of boundaries at once.
	err := s.tx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, store.AppendObservationQuery(placeholder))
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, o := range obs {
			if _, err := stmt.ExecContext(ctx, append([]any{o.Process, o.Signal}, store.ObservationRow(o)...)...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: append observations: %w", err)
	}
	return nil
}

// rows reads for the queries the stores share (store.Reader).
func (s *Store) rows(ctx context.Context, op, q string, args []any, row func(scan func(dest ...any) error) error) error {
	_, err := collect(ctx, s.r, op, func(r scanner) (struct{}, error) { return struct{}{}, row(r.Scan) }, q, args...)
	return err
}

// writeRows is rows on the connection that writes, for writes that return
// their rows (RETURNING), in the write gate's order.
func (s *Store) writeRows(ctx context.Context, op, q string, args []any, row func(scan func(dest ...any) error) error) error {
	return s.w.gated(ctx, func() error {
		_, err := collect(ctx, s.w, op, func(r scanner) (struct{}, error) { return struct{}{}, row(r.Scan) }, q, args...)
		return err
	})
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
