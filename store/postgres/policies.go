package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/adaptflow/adaptflow/store"
)

const policyCols = `id, version, process, doc, digest, author, note, created_at, prev_hash, hash`

func scanPolicy(row scanner, extra ...any) (store.PolicyRecord, error) {
	var p store.PolicyRecord
	var doc string
	var at int64
	dest := append([]any{&p.ID, &p.Version, &p.Process, &doc, &p.Digest, &p.Author, &p.Note, &at, &p.PrevHash, &p.Hash}, extra...)
	err := row.Scan(dest...)
	p.Doc, p.CreatedAt = json.RawMessage(doc), fromMicros(at)
	return p, err
}

// PutPolicy stores a policy version and makes it live in mode; see the
// sqlite store. Writes to the version chain are serialized by an advisory
// lock held for the transaction.
func (s *Store) PutPolicy(ctx context.Context, p store.PolicyRecord, mode string) (store.PolicyRecord, bool, error) {
	if mode != store.ModeActive && mode != store.ModeShadow {
		return p, false, fmt.Errorf("%w: mode must be active or shadow (got %q)", store.ErrConflict, mode)
	}
	created := false
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(policyLock)); err != nil {
			return err
		}
		var process string
		err := tx.QueryRow(ctx, `SELECT process FROM policy_versions WHERE id = $1 LIMIT 1`, p.ID).Scan(&process)
		switch {
		case err == nil && process != p.Process:
			return fmt.Errorf("%w: policy %s belongs to process %s", store.ErrConflict, p.ID, process)
		case err != nil && !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		var latest int
		var digest string
		err = tx.QueryRow(ctx, `SELECT version, digest FROM policy_versions WHERE id = $1 ORDER BY version DESC LIMIT 1`, p.ID).Scan(&latest, &digest)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if digest == p.Digest && latest > 0 {
			p.Version = latest
		} else {
			p.Version = latest + 1
			if err := tx.QueryRow(ctx, `SELECT COALESCE((SELECT hash FROM policy_versions ORDER BY seq DESC LIMIT 1), '')`).Scan(&p.PrevHash); err != nil {
				return err
			}
			p.CreatedAt = time.UnixMicro(p.CreatedAt.UnixMicro()).UTC()
			p.Hash = store.PolicyVersionHash(p)
			if _, err := tx.Exec(ctx, `INSERT INTO policy_versions (id, version, process, doc, digest, author, note, created_at, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
				p.ID, p.Version, p.Process, string(p.Doc), p.Digest, p.Author, p.Note, micros(p.CreatedAt), p.PrevHash, p.Hash); err != nil {
				return err
			}
			created = true
		}
		st, err := policyState(ctx, tx, p.ID, true)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if !created && ((mode == store.ModeActive && st.Active == p.Version) || (mode == store.ModeShadow && st.Shadow == p.Version)) {
			return nil
		}
		return setState(ctx, tx, p.ID, p.Process, store.PolicyModeChange{Version: p.Version, Mode: mode, Author: p.Author, Note: p.Note}, st)
	})
	if err != nil && !errors.Is(err, store.ErrConflict) {
		err = fmt.Errorf("postgres: put policy: %w", err)
	}
	p.Mode = mode
	return p, created, err
}

// setState makes version live in mode (a canary of percent), or disables
// the policy, and logs it.
func setState(ctx context.Context, tx pgx.Tx, id, process string, ch store.PolicyModeChange, st store.PolicyState) error {
	version, mode, author, note := ch.Version, ch.Mode, ch.Author, ch.Note
	st, guard, err := ch.Apply(st)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	var seq int64
	if err := tx.QueryRow(ctx, `INSERT INTO policy_events (id, version, action, percent, author, note, at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING seq`,
		id, version, mode, st.ShadowPercent, author, note, micros(now)).Scan(&seq); err != nil {
		return err
	}
	nullable := func(v int) any {
		if v == 0 {
			return nil
		}
		return v
	}
	_, err = tx.Exec(ctx, `INSERT INTO policy_state (id, process, active_version, shadow_version, shadow_percent, canary_guard, changed_seq, changed_by, changed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (id) DO UPDATE SET active_version = excluded.active_version, shadow_version = excluded.shadow_version, shadow_percent = excluded.shadow_percent,
		canary_guard = excluded.canary_guard, changed_seq = excluded.changed_seq, changed_by = excluded.changed_by, changed_at = excluded.changed_at`,
		id, process, nullable(st.Active), nullable(st.Shadow), st.ShadowPercent, guard, seq, author, micros(now))
	return err
}

func policyState(ctx context.Context, q querier, id string, forUpdate bool) (store.PolicyState, error) {
	st := store.PolicyState{ID: id}
	var active, shadow *int32
	var latest *int32
	var at int64
	lock := ""
	if forUpdate {
		lock = " FOR UPDATE"
	}
	var guard string
	err := q.QueryRow(ctx, `SELECT process, active_version, shadow_version, shadow_percent, canary_guard, changed_by, changed_at,
		(SELECT MAX(version) FROM policy_versions v WHERE v.id = s.id) FROM policy_state s WHERE id = $1`+lock, id).
		Scan(&st.Process, &active, &shadow, &st.ShadowPercent, &guard, &st.ChangedBy, &at, &latest)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, fmt.Errorf("policy %q: %w", id, store.ErrNotFound)
	}
	if err == nil {
		st.Guard, err = store.ParseGuard(guard)
	}
	if active != nil {
		st.Active = int(*active)
	}
	if shadow != nil {
		st.Shadow = int(*shadow)
	}
	if latest != nil {
		st.Latest = int(*latest)
	}
	st.ChangedAt = fromMicros(at)
	return st, err
}

// SetPolicyMode makes a stored version live or disables the policy.
func (s *Store) SetPolicyMode(ctx context.Context, id string, version int, mode, author, note string) (store.PolicyState, error) {
	return s.ChangePolicyMode(ctx, id, store.PolicyModeChange{Version: version, Mode: mode, Author: author, Note: note})
}

// SetPolicyCanary makes a stored version a canary; see the sqlite store.
func (s *Store) SetPolicyCanary(ctx context.Context, id string, version, percent int, author, note string) (store.PolicyState, error) {
	return s.ChangePolicyMode(ctx, id, store.PolicyModeChange{Version: version, Mode: store.ModeCanary, Percent: percent, Author: author, Note: note})
}

// ChangePolicyMode makes the change ch to a policy's live versions: a
// version made active, shadow or a canary (with its guard), or the policy
// disabled; with ch.Expect, only if the policy has not changed since.
func (s *Store) ChangePolicyMode(ctx context.Context, id string, ch store.PolicyModeChange) (store.PolicyState, error) {
	version, mode := ch.Version, ch.Mode
	var out store.PolicyState
	err := s.tx(ctx, func(tx pgx.Tx) error {
		st, err := policyState(ctx, tx, id, true)
		if err != nil {
			return err
		}
		if ch.Expect != nil && !st.ChangedAt.Equal(*ch.Expect) {
			return fmt.Errorf("%w: policy %s changed at %s, after the state this change was judged on", store.ErrConflict, id, st.ChangedAt.Format(time.RFC3339Nano))
		}
		if mode != store.ModeDisabled {
			var n int
			if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM policy_versions WHERE id = $1 AND version = $2`, id, version).Scan(&n); err != nil {
				return err
			}
			if n == 0 {
				return fmt.Errorf("policy %s version %d: %w", id, version, store.ErrNotFound)
			}
		}
		if err := setState(ctx, tx, id, st.Process, ch, st); err != nil {
			return err
		}
		out, err = policyState(ctx, tx, id, false)
		return err
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrConflict) {
		err = fmt.Errorf("postgres: set policy mode: %w", err)
	}
	return out, err
}

// PolicyState returns which versions of a policy are live.
func (s *Store) PolicyState(ctx context.Context, id string) (store.PolicyState, error) {
	st, err := policyState(ctx, s.pool, id, false)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		err = fmt.Errorf("postgres: policy state: %w", err)
	}
	return st, err
}

// PolicyStates lists the state of every policy of a process, by id.
func (s *Store) PolicyStates(ctx context.Context, process string) ([]store.PolicyState, error) {
	ids, err := collect(ctx, s.pool, "policy states", func(r scanner) (string, error) {
		var id string
		return id, r.Scan(&id)
	}, `SELECT id FROM policy_state WHERE process = $1 ORDER BY id`, process)
	if err != nil {
		return nil, err
	}
	out := make([]store.PolicyState, 0, len(ids))
	for _, id := range ids {
		st, err := s.PolicyState(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// PolicyVersions lists every version of a policy, oldest first.
func (s *Store) PolicyVersions(ctx context.Context, id string) ([]store.PolicyRecord, error) {
	out, err := collect(ctx, s.pool, "policy versions", func(r scanner) (store.PolicyRecord, error) { return scanPolicy(r) },
		`SELECT `+policyCols+` FROM policy_versions WHERE id = $1 ORDER BY version`, id)
	if err == nil && len(out) == 0 {
		return nil, fmt.Errorf("policy %q: %w", id, store.ErrNotFound)
	}
	return out, err
}

// PolicyVersion returns one version of a policy.
func (s *Store) PolicyVersion(ctx context.Context, id string, version int) (store.PolicyRecord, error) {
	p, err := scanPolicy(s.pool.QueryRow(ctx, `SELECT `+policyCols+` FROM policy_versions WHERE id = $1 AND version = $2`, id, version))
	if errors.Is(err, pgx.ErrNoRows) {
		return p, fmt.Errorf("policy %s version %d: %w", id, version, store.ErrNotFound)
	}
	if err != nil {
		return p, fmt.Errorf("postgres: policy version: %w", err)
	}
	return p, nil
}

// ActivePolicies returns the live versions of every policy of a process and
// a stamp that changes whenever that set changes.
func (s *Store) ActivePolicies(ctx context.Context, process string) ([]store.PolicyRecord, int64, error) {
	stamp, err := s.PolicyStamp(ctx, process)
	if err != nil {
		return nil, 0, err
	}
	out, err := collect(ctx, s.pool, "active policies", func(r scanner) (store.PolicyRecord, error) {
		var mode string
		var percent int
		p, err := scanPolicy(r, &mode, &percent)
		p.Mode, p.Percent = mode, percent
		return p, err
	}, `SELECT v.id, v.version, v.process, v.doc, v.digest, v.author, v.note, v.created_at, v.prev_hash, v.hash,
			CASE WHEN v.version = s.active_version THEN 'active' ELSE 'shadow' END,
			CASE WHEN v.version = s.active_version THEN 0 ELSE s.shadow_percent END
		FROM policy_state s JOIN policy_versions v ON v.id = s.id AND (v.version = s.active_version OR v.version = s.shadow_version)
		WHERE s.process = $1 ORDER BY v.id, v.version`, process)
	return out, stamp, err
}

// PolicyStamp returns the stamp of ActivePolicies without reading them.
func (s *Store) PolicyStamp(ctx context.Context, process string) (int64, error) {
	var stamp int64
	if err := s.pool.QueryRow(ctx, `SELECT COALESCE(MAX(changed_seq), 0) FROM policy_state WHERE process = $1`, process).Scan(&stamp); err != nil {
		return 0, fmt.Errorf("postgres: policy stamp: %w", err)
	}
	return stamp, nil
}

// ScanPolicyVersions calls fn with every policy version in stored order.
func (s *Store) ScanPolicyVersions(ctx context.Context, fn func(store.PolicyRecord) error) error {
	rows, err := s.pool.Query(ctx, `SELECT `+policyCols+` FROM policy_versions ORDER BY seq`)
	if err != nil {
		return fmt.Errorf("postgres: scan policy versions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		p, err := scanPolicy(rows)
		if err != nil {
			return fmt.Errorf("postgres: scan policy versions: %w", err)
		}
		if err := fn(p); err != nil {
			return err
		}
	}
	return rows.Err()
}
