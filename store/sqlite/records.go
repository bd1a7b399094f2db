package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"modernc.org/sqlite"

	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
)

// PutKey stores an API key; a key with the same hash is left as it is.
func (s *Store) PutKey(ctx context.Context, k store.APIKey) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO api_keys (id, name, role, hash, created_at, expires_at, processes)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (hash) DO NOTHING`,
		k.ID, k.Name, k.Role, k.Hash, micros(k.CreatedAt), nullMicros(k.ExpiresAt), string(process.JSON(nonNilStrings(k.Processes))))
	if err != nil {
		return fmt.Errorf("sqlite: put key: %w", err)
	}
	return nil
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

const keyCols = `id, name, role, hash, created_at, expires_at, revoked_at, rotated_at, processes`

func scanKey(row scanner) (store.APIKey, error) {
	var k store.APIKey
	var at int64
	var expires, revoked, rotated sql.NullInt64
	var processes string
	err := row.Scan(&k.ID, &k.Name, &k.Role, &k.Hash, &at, &expires, &revoked, &rotated, &processes)
	if err != nil {
		return k, err
	}
	k.CreatedAt, k.ExpiresAt, k.RevokedAt, k.RotatedAt = fromMicros(at), fromNullMicros(expires), fromNullMicros(revoked), fromNullMicros(rotated)
	if err := json.Unmarshal([]byte(processes), &k.Processes); err != nil {
		return k, fmt.Errorf("key %s: processes: %w", k.ID, err)
	}
	if len(k.Processes) == 0 {
		k.Processes = nil
	}
	return k, nil
}

func (s *Store) keyWhere(ctx context.Context, where string, arg any) (store.APIKey, error) {
	k, err := scanKey(s.r.QueryRowContext(ctx, `SELECT `+keyCols+` FROM api_keys WHERE `+where, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return k, fmt.Errorf("API key: %w", store.ErrNotFound)
	}
	if err != nil {
		return k, fmt.Errorf("sqlite: key: %w", err)
	}
	return k, nil
}

// KeyByHash finds the key whose secret hashes to hash, whatever its state.
func (s *Store) KeyByHash(ctx context.Context, hash string) (store.APIKey, error) {
	return s.keyWhere(ctx, `hash = ?`, hash)
}

// Key finds a key by id.
func (s *Store) Key(ctx context.Context, id string) (store.APIKey, error) {
	return s.keyWhere(ctx, `id = ?`, id)
}

// Keys lists every key, oldest first (never a secret: only hashes are kept).
func (s *Store) Keys(ctx context.Context) ([]store.APIKey, error) {
	return collect(ctx, s.r, "keys", scanKey, `SELECT `+keyCols+` FROM api_keys ORDER BY created_at, id`)
}

// RevokeKey revokes a key for good; revoking it again changes nothing.
func (s *Store) RevokeKey(ctx context.Context, id string, at time.Time) (store.APIKey, error) {
	if _, err := s.w.ExecContext(ctx, `UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`, micros(at), id); err != nil {
		return store.APIKey{}, fmt.Errorf("sqlite: revoke key: %w", err)
	}
	return s.Key(ctx, id)
}

// RotateKey replaces a live key's secret (by its hash); the old secret stops
// working at once. A revoked key is ErrConflict.
func (s *Store) RotateKey(ctx context.Context, id, hash string, at time.Time) (store.APIKey, error) {
	res, err := s.w.ExecContext(ctx, `UPDATE api_keys SET hash = ?, rotated_at = ? WHERE id = ? AND revoked_at IS NULL`, hash, micros(at), id)
	if err != nil {
		return store.APIKey{}, fmt.Errorf("sqlite: rotate key: %w", err)
	}
	k, err := s.Key(ctx, id)
	if err != nil {
		return k, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return k, fmt.Errorf("%w: API key %s is revoked", store.ErrConflict, id)
	}
	return k, nil
}

// PutDefinition stores a definition version. The same version with the same
// content is a no-op (created false); with other content it is ErrConflict.
func (s *Store) PutDefinition(ctx context.Context, d store.DefinitionRecord) (created bool, err error) {
	err = s.tx(ctx, func(tx *sql.Tx) error {
		var digest string
		err := tx.QueryRowContext(ctx, `SELECT digest FROM definitions WHERE name = ? AND version = ?`, d.Name, d.Version).Scan(&digest)
		switch {
		case err == nil && digest == d.Digest:
			return nil
		case err == nil:
			return fmt.Errorf("%w: %s version %d exists with other content; publish a new version", store.ErrConflict, d.Name, d.Version)
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO definitions (name, version, doc, digest, author, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
			d.Name, d.Version, string(d.Doc), d.Digest, d.Author, micros(d.CreatedAt))
		created = err == nil
		return err
	})
	if err != nil && !errors.Is(err, store.ErrConflict) {
		err = fmt.Errorf("sqlite: put definition: %w", err)
	}
	return created, err
}

const defCols = `name, version, doc, digest, author, created_at`

func scanDef(row scanner) (store.DefinitionRecord, error) {
	var d store.DefinitionRecord
	var doc string
	var at int64
	err := row.Scan(&d.Name, &d.Version, &doc, &d.Digest, &d.Author, &at)
	d.Doc, d.CreatedAt = json.RawMessage(doc), fromMicros(at)
	return d, err
}

// Definition returns one version of a definition; version 0 means latest.
func (s *Store) Definition(ctx context.Context, name string, version int) (store.DefinitionRecord, error) {
	var row *sql.Row
	if version == 0 {
		row = s.r.QueryRowContext(ctx, `SELECT `+defCols+` FROM definitions WHERE name = ? ORDER BY version DESC LIMIT 1`, name)
	} else {
		row = s.r.QueryRowContext(ctx, `SELECT `+defCols+` FROM definitions WHERE name = ? AND version = ?`, name, version)
	}
	d, err := scanDef(row)
	if errors.Is(err, sql.ErrNoRows) {
		return d, fmt.Errorf("process %q: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return d, fmt.Errorf("sqlite: definition: %w", err)
	}
	return d, nil
}

// Definitions lists the latest version of every definition, by name.
func (s *Store) Definitions(ctx context.Context) ([]store.DefinitionRecord, error) {
	return collect(ctx, s.r, "definitions", scanDef,
		`SELECT `+defCols+` FROM definitions d WHERE version = (SELECT MAX(version) FROM definitions WHERE name = d.name) ORDER BY name`)
}

// CreateInstance records a started instance. When the process already has an
// instance with the business key, that one is returned with created false.
func (s *Store) CreateInstance(ctx context.Context, in store.Instance) (store.Instance, bool, error) {
	res, err := s.w.ExecContext(ctx, `INSERT INTO instances (id, process, process_version, business_key, input, created_by, created_at, state, state_run, state_seq, pending_start, queued) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (process, business_key) DO NOTHING`,
		in.ID, in.Process, in.ProcessVersion, in.BusinessKey, string(in.Input), in.CreatedBy, micros(in.CreatedAt), nullText(in.State), in.StateRun, in.StateSeq, in.PendingStart, in.Queued)
	if err != nil {
		return in, false, fmt.Errorf("sqlite: create instance: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return in, true, nil
	}
	existing, err := s.instanceWhere(ctx, s.w, `process = ? AND business_key = ?`, in.Process, in.BusinessKey)
	return existing, false, err
}

// Instance returns the instance with the id.
func (s *Store) Instance(ctx context.Context, id string) (store.Instance, error) {
	return s.instanceWhere(ctx, s.r, `id = ?`, id)
}

func (s *Store) instanceWhere(ctx context.Context, db *cachedDB, where string, args ...any) (store.Instance, error) {
	in, err := scanInstance(db.QueryRowContext(ctx, `SELECT `+instanceColumns+` FROM instances WHERE `+where, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return in, fmt.Errorf("instance: %w", store.ErrNotFound)
	}
	if err != nil {
		return in, fmt.Errorf("sqlite: instance: %w", err)
	}
	return in, nil
}

const instanceColumns = `id, process, process_version, business_key, input, created_by, created_at, state, state_run, state_seq, pending_start, COALESCE(finished_at, 0), queued, retry_queued`

// scanInstance reads the instanceColumns of a row.
func scanInstance(row interface{ Scan(...any) error }) (store.Instance, error) {
	var in store.Instance
	var input string
	var state sql.NullString
	var at, finished int64
	if err := row.Scan(&in.ID, &in.Process, &in.ProcessVersion, &in.BusinessKey, &input, &in.CreatedBy, &at, &state, &in.StateRun, &in.StateSeq, &in.PendingStart, &finished, &in.Queued, &in.RetryQueued); err != nil {
		return in, err
	}
	in.Input, in.CreatedAt = json.RawMessage(input), fromMicros(at)
	if finished > 0 {
		in.FinishedAt = fromMicros(finished)
	}
	if state.Valid {
		in.State = json.RawMessage(state.String)
	}
	return in, nil
}

// MarkStarted records that Temporal has the workflows of the instances.
func (s *Store) MarkStarted(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return fmt.Errorf("sqlite: mark started: %w", err)
	}
	// One statement for any number of ids: the list is a JSON array.
	if _, err := s.w.ExecContext(ctx, `UPDATE instances SET pending_start = 0 WHERE pending_start = 1 AND retry_queued = '' AND id IN (SELECT value FROM json_each(?))`, string(list)); err != nil {
		return fmt.Errorf("sqlite: mark started: %w", err)
	}
	return nil
}

// ClaimRetry lets one retry of a failed run of an instance go ahead: true
// when nobody claimed retrying that run, or the claim is older than stale
// (its holder died before it reset the run); ErrNotFound for no instance.
// Under a concurrency limit (limit > 0) the retry also takes a slot, as
// a start would: ErrNoSlot when none is free or instances are queued.
// The claim holds the slot until the retry's new run saves the
// instance's state, or the claim goes stale. Writes take turns in
// SQLite, so a claim and an admission cannot both take the last slot.
func (s *Store) ClaimRetry(ctx context.Context, id, run string, now time.Time, stale time.Duration, limit int) (bool, error) {
	cut := micros(now.Add(-stale))
	res, err := s.w.ExecContext(ctx, claimRetryQuery, id, run, micros(now), cut, limit)
	if err != nil {
		return false, fmt.Errorf("sqlite: claim retry: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("sqlite: claim retry: %w", err)
	}
	if n == 1 {
		return true, nil
	}
	var claimRun string
	var claimAt int64
	err = s.w.QueryRowContext(ctx, `SELECT retry_run, retry_at FROM instances WHERE id = ?`, id).Scan(&claimRun, &claimAt)
	if errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("instance %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return false, fmt.Errorf("sqlite: claim retry: %w", err)
	}
	return store.ClaimedRetry(claimRun, claimAt, cut, run)
}

// Restore stores again an instance a process step stored before and that
// never ran (store.RestoreQuery): it reads as starting, pending (the step
// starts it) and queued as given, and is returned as it is now. One a
// workflow ran is returned as it is, restored false.
func (s *Store) Restore(ctx context.Context, id string, pending, queued bool) (store.Instance, bool, error) {
	res, err := s.w.ExecContext(ctx, restoreQuery, id, pending, queued)
	if err != nil {
		return store.Instance{}, false, fmt.Errorf("sqlite: restore %s: %w", id, err)
	}
	n, _ := res.RowsAffected()
	in, err := s.Instance(ctx, id)
	return in, n == 1, err
}

// exec runs a statement on the writer: how many rows it changed
// (store.Changes).
func (s *Store) exec(ctx context.Context, op, q string, args ...any) (int64, error) {
	res, err := s.w.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	return n, nil
}

// ReleaseRetry drops a claim on retrying run whose reset failed.
func (s *Store) ReleaseRetry(ctx context.Context, id, run string) error {
	if _, err := s.w.ExecContext(ctx, releaseRetryQuery, id, run); err != nil {
		return fmt.Errorf("sqlite: release retry: %w", err)
	}
	return nil
}

// PendingStarts returns up to limit instances created before the time whose
// workflow Temporal may not have yet, oldest first; those of a paused
// process are held, not returned.
func (s *Store) PendingStarts(ctx context.Context, before time.Time, limit int) ([]store.Instance, error) {
	return s.instancesWhere(ctx, "pending starts", `pending_start = 1 AND queued = 0 AND created_at < ? AND `+store.NotHeld+` AND `+store.NotAChild+` ORDER BY created_at LIMIT ?`, micros(before), limit)
}

// instancesWhere reads the instances a condition (with its order and
// limit) keeps; what names the read in errors.
func (s *Store) instancesWhere(ctx context.Context, what, where string, args ...any) ([]store.Instance, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+instanceColumns+` FROM instances WHERE `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", what, err)
	}
	defer rows.Close()
	var out []store.Instance
	for rows.Next() {
		in, err := scanInstance(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: %s: %w", what, err)
		}
		out = append(out, in)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", what, err)
	}
	return out, nil
}

// Admit gives a queued instance a slot under its process's concurrency
// limit when fewer than limit of the process's instances hold one and no
// older one waits (first come, first served), and reports whether it
// holds one now (one not queued holds one already). Writes take turns in
// SQLite, so two admissions cannot both take the last slot.
func (s *Store) Admit(ctx context.Context, id string, limit int) (bool, error) {
	limit = store.SlotLimit(limit)
	now := micros(time.Now())
	res, err := s.w.ExecContext(ctx, `UPDATE instances SET queued = 0, `+store.AdmitClaim("?")+` WHERE id = ? AND queued = 1 AND
		`+store.SlotsHeld("instances.process", "r.queued = 0", "?")+` < ? AND
		NOT EXISTS (SELECT 1 FROM instances o WHERE o.process = instances.process AND o.pending_start = 1 AND o.queued = 1 AND
			(o.created_at, o.id) < (instances.created_at, instances.id))`, now, id, now-store.RetryClaimStale.Microseconds(), limit)
	if err != nil {
		return false, fmt.Errorf("sqlite: admit %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return true, nil
	}
	in, err := s.instanceWhere(ctx, s.w, `id = ?`, id)
	return err == nil && !in.Queued, err
}

// QueuedStarts returns up to limit of a process's instances queued under
// its concurrency limit, oldest first; process "" lists the processes
// that have some instead (one instance each, in no order).
func (s *Store) QueuedStarts(ctx context.Context, process string, limit int) ([]store.Instance, error) {
	if process == "" {
		return s.instancesWhere(ctx, "queued starts", `id IN (SELECT MIN(id) FROM instances WHERE pending_start = 1 AND queued = 1 GROUP BY process) LIMIT ?`, limit)
	}
	return s.instancesWhere(ctx, "queued starts", `pending_start = 1 AND queued = 1 AND process = ? ORDER BY created_at LIMIT ?`, process, limit)
}

// QueuedCounts counts, per process, the instances queued under its
// concurrency limit.
func (s *Store) QueuedCounts(ctx context.Context) (map[string]int, error) {
	return s.CountBy(ctx, "queued counts", `SELECT process, COUNT(*) FROM instances WHERE pending_start = 1 AND queued = 1 GROUP BY process`)
}

// ProcessLoads reads where each process's instances stand
// (store.ProcessLoad), through the partial index of those in progress.
func (s *Store) ProcessLoads(ctx context.Context, failedSince time.Time) (map[string]store.ProcessLoad, error) {
	return s.ProcessLoadsBy(ctx, `SELECT process, status, COUNT(*) FROM instances WHERE queued = 0 AND finished_at IS NULL GROUP BY process, status`,
		`SELECT process, COUNT(*) FROM instances INDEXED BY instances_failed WHERE status = 'failed' AND finished_at >= ? GROUP BY process`, failedSince)
}

// SaveInstanceState stores the state a run of the instance saved as its
// seq-th save, unless the instance holds a later save of that run. An
// instance with no row (started outside the API) keeps nothing. When the
// save is the first of a final status, it reports the instance's finish.
func (s *Store) SaveInstanceState(ctx context.Context, id, run string, seq int64, state json.RawMessage) (*store.Finish, error) {
	return s.SaveInstanceStateAt(ctx, id, run, seq, state, time.Now())
}

// SaveInstanceStateAt is SaveInstanceState with the time the state was
// reached: a final state's is the instance's finish time (that of a
// workflow that ended while the store was behind it).
func (s *Store) SaveInstanceStateAt(ctx context.Context, id, run string, seq int64, state json.RawMessage, at time.Time) (*store.Finish, error) {
	now := micros(at)
	args, status, final := saveStateArgs(store.StateSave{InstanceID: id, RunID: run, Seq: seq, State: state}, now)
	res, err := s.w.ExecContext(ctx, saveState, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: save instance state: %w", err)
	}
	if n, _ := res.RowsAffected(); !final || n == 0 {
		return nil, nil
	}
	// The finish time is set once: it is this save's only if it is now.
	var f store.Finish
	var created, finished int64
	if err := s.w.QueryRowContext(ctx, `SELECT process, created_at, COALESCE(finished_at, 0) FROM instances WHERE id = ?`, id).Scan(&f.Process, &created, &finished); err != nil {
		return nil, fmt.Errorf("sqlite: save instance state: %w", err)
	}
	if finished != now {
		return nil, nil
	}
	f.Status, f.CycleTime = status, time.Duration(finished-created)*time.Microsecond
	return &f, nil
}

func nullText(b []byte) any {
	if b == nil {
		return nil
	}
	return string(b)
}

// CountStarts counts the instances of a process started in [from, to).
func (s *Store) CountStarts(ctx context.Context, processName string, from, to time.Time) (int, error) {
	var n int
	err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM instances WHERE process = ? AND created_at >= ? AND created_at < ?`, processName, micros(from), micros(to)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("sqlite: count starts: %w", err)
	}
	return n, nil
}

// AppendDecision writes a decision record once per (run, sequence). When the
// record exists already (a retried activity), the stored one is returned and
// nothing is written: the caller must apply the stored actions.
func (s *Store) AppendDecision(ctx context.Context, d process.Decision) (process.Decision, error) {
	return s.AppendDecisionWithState(ctx, d, nil)
}

const insertDecision = `INSERT INTO decisions (id, instance_id, run_id, seq, step, time, record, prev_hash, hash, process) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (run_id, seq) DO NOTHING`

// saveState saves a projection; a saved state shows the workflow exists (or
// the instance ended before it), so it also clears the instance's pending
// start, and its place in a queue (a retry queued as another's ran it).
// It keeps the state's status beside it, and the time of the first save of
// a final status.
const saveState = `UPDATE instances SET state = ?, state_run = ?, state_seq = ?, pending_start = 0, queued = 0, retry_queued = '', status = ?, finished_at = CASE WHEN ? THEN COALESCE(finished_at, ?) END
	WHERE id = ? AND (state_run <> ? OR state_seq < ?)`

// saveStateArgs are the parameters of saveState for st at now (micros),
// with st's status and whether it is final.
func saveStateArgs(st store.StateSave, now int64) (args []any, status string, final bool) {
	status, final = store.StatusOf(st.State)
	return []any{string(st.State), st.RunID, st.Seq, status, final, now, st.InstanceID, st.RunID, st.Seq}, status, final
}

// AppendDecisionWithState is AppendDecision and, when st is not nil,
// SaveInstanceState in one transaction: the state a decision carries is
// saved with it or not at all.
func (s *Store) AppendDecisionWithState(ctx context.Context, d process.Decision, st *store.StateSave) (process.Decision, error) {
	rec, err := json.Marshal(d)
	if err != nil {
		return d, fmt.Errorf("sqlite: append decision: %w", err)
	}
	var inserted bool
	write := func(exec func(q string, args ...any) (sql.Result, error)) error {
		res, err := exec(insertDecision, d.ID, d.InstanceID, d.RunID, d.Seq, d.Step, micros(d.Time), string(rec), d.PrevHash, d.Hash, d.Process)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		inserted = n == 1
		if st != nil {
			args, _, _ := saveStateArgs(*st, micros(time.Now()))
			_, err = exec(saveState, args...)
		}
		return err
	}
	if st == nil { // one statement: no transaction needed
		err = write(func(q string, args ...any) (sql.Result, error) { return s.w.ExecContext(ctx, q, args...) })
	} else {
		err = s.tx(ctx, func(tx *sql.Tx) error {
			return write(func(q string, args ...any) (sql.Result, error) { return s.w.txExec(ctx, tx, q, args...) })
		})
	}
	if err != nil {
		return d, fmt.Errorf("sqlite: append decision: %w", err)
	}
	if inserted {
		return d, nil
	}
	return s.decisionWhere(ctx, s.w, `run_id = ? AND seq = ?`, d.RunID, d.Seq)
}

// Decision returns the decision record with the id.
func (s *Store) Decision(ctx context.Context, id string) (process.Decision, error) {
	return s.decisionWhere(ctx, s.r, `id = ?`, id)
}

func (s *Store) decisionWhere(ctx context.Context, db *cachedDB, where string, args ...any) (process.Decision, error) {
	var rec string
	var d process.Decision
	err := db.QueryRowContext(ctx, `SELECT record FROM decisions WHERE `+where, args...).Scan(&rec)
	if errors.Is(err, sql.ErrNoRows) {
		return d, fmt.Errorf("decision: %w", store.ErrNotFound)
	}
	if err != nil {
		return d, fmt.Errorf("sqlite: decision: %w", err)
	}
	if err := json.Unmarshal([]byte(rec), &d); err != nil {
		return d, fmt.Errorf("sqlite: decision: %w", err)
	}
	return d, nil
}

// Decisions lists the decision records of an instance in order.
func (s *Store) Decisions(ctx context.Context, instanceID string) ([]process.Decision, error) {
	return collect(ctx, s.r, "decisions", func(r scanner) (process.Decision, error) {
		var rec []byte
		var d process.Decision
		if err := r.Scan(&rec); err != nil {
			return d, err
		}
		return d, json.Unmarshal(rec, &d)
	}, `SELECT record FROM decisions WHERE instance_id = ? ORDER BY time, seq`, instanceID)
}

// CreateReview opens a review once: a review with the same id is returned
// as it is.
func (s *Store) CreateReview(ctx context.Context, r store.Review) (store.Review, error) {
	_, err := s.w.ExecContext(ctx, `INSERT INTO reviews (id, instance_id, run_id, process, step, queue, reason, policy_id, decision_id, status, created_at, due_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
		r.ID, r.InstanceID, r.RunID, r.Process, r.Step, r.Queue, r.Reason, r.PolicyID, r.DecisionID, store.ReviewOpen, micros(r.CreatedAt), nullMicros(r.DueAt))
	if err != nil {
		return r, fmt.Errorf("sqlite: create review: %w", err)
	}
	return s.reviewWhere(ctx, s.w, `id = ?`, r.ID)
}

// Review returns the review with the id as it reads at now.
func (s *Store) Review(ctx context.Context, id string, now time.Time) (store.Review, error) {
	r, err := s.reviewWhere(ctx, s.r, `id = ?`, id)
	return r.WithClaimAt(now), err
}

const reviewCols = `id, instance_id, run_id, process, step, queue, reason, policy_id, decision_id, status, verdict, reviewer, comment, created_at, due_at, decided_at, claimed_by, claim_expires_at, escalated_at, priority`

func scanReview(row scanner) (store.Review, error) {
	var r store.Review
	var created int64
	var due, decided, claimUntil, escalated sql.NullInt64
	err := row.Scan(&r.ID, &r.InstanceID, &r.RunID, &r.Process, &r.Step, &r.Queue, &r.Reason, &r.PolicyID, &r.DecisionID, &r.Status, &r.Verdict, &r.Reviewer, &r.Comment, &created, &due, &decided, &r.ClaimedBy, &claimUntil, &escalated, &r.Priority)
	r.CreatedAt, r.DueAt, r.DecidedAt, r.ClaimExpiresAt, r.EscalatedAt = fromMicros(created), fromNullMicros(due), fromNullMicros(decided), fromNullMicros(claimUntil), fromNullMicros(escalated)
	return r, err
}

func (s *Store) reviewWhere(ctx context.Context, db *cachedDB, where string, args ...any) (store.Review, error) {
	r, err := scanReview(db.QueryRowContext(ctx, `SELECT `+reviewCols+` FROM reviews WHERE `+where, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("review: %w", store.ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("sqlite: review: %w", err)
	}
	return r, nil
}

// Reviews lists reviews matching f, by due time; claims are judged at
// f.Now.
func (s *Store) Reviews(ctx context.Context, f store.ReviewFilter) ([]store.Review, error) {
	tail, args, err := store.ReviewQuery(f, placeholder)
	if err != nil {
		return nil, err
	}
	rs, err := collect(ctx, s.r, "reviews", scanReview, `SELECT `+reviewCols+` FROM reviews `+tail, args...)
	return store.ReviewsAt(rs, f.Now), err
}

// ClaimReview gives reviewer a claim on an open review until until: when
// nobody holds a live claim at now, or reviewer holds it (the lease is
// renewed). Otherwise ErrConflict, or ErrNotFound.
func (s *Store) ClaimReview(ctx context.Context, id, reviewer string, now, until time.Time) (store.Review, error) {
	res, err := s.w.ExecContext(ctx, `UPDATE reviews SET claimed_by = ?, claim_expires_at = ?, first_claimed_at = COALESCE(first_claimed_at, ?)
		WHERE id = ? AND status = 'open' AND (claimed_by = '' OR claimed_by = ? OR claim_expires_at <= ?)`,
		reviewer, micros(until), micros(now), id, reviewer, micros(now))
	if err != nil {
		return store.Review{}, fmt.Errorf("sqlite: claim review: %w", err)
	}
	return s.afterClaim(ctx, res, id, now)
}

// EscalateReview moves an open review to another queue with a new due time,
// raises its priority to at least the escalation's, and drops any claim on
// it (its reviewers are elsewhere now). Doing it again changes nothing; a
// closed review is ErrConflict.
func (s *Store) EscalateReview(ctx context.Context, id string, to store.Escalation, at time.Time) (store.Review, error) {
	res, err := s.w.ExecContext(ctx, `UPDATE reviews SET queue = ?, due_at = ?, priority = MAX(priority, ?), escalated_at = COALESCE(escalated_at, ?),
		claimed_by = '', claim_expires_at = NULL WHERE id = ? AND status = 'open'`, to.Queue, micros(to.Due), to.Priority, micros(at), id)
	if err != nil {
		return store.Review{}, fmt.Errorf("sqlite: escalate review: %w", err)
	}
	return s.afterClaim(ctx, res, id, at)
}

// ReassignReview moves an open review to another queue, its claim
// released; its due time and priority stay. A closed one is ErrConflict.
func (s *Store) ReassignReview(ctx context.Context, id, queue string, at time.Time) (store.Review, error) {
	res, err := s.w.ExecContext(ctx, `UPDATE reviews SET queue = ?, claimed_by = '', claim_expires_at = NULL WHERE id = ? AND status = 'open'`, queue, id)
	if err != nil {
		return store.Review{}, fmt.Errorf("sqlite: reassign review: %w", err)
	}
	return s.afterClaim(ctx, res, id, at)
}

// ReleaseReview gives up reviewer's live claim on a review.
func (s *Store) ReleaseReview(ctx context.Context, id, reviewer string, now time.Time) (store.Review, error) {
	res, err := s.w.ExecContext(ctx, `UPDATE reviews SET claimed_by = '', claim_expires_at = NULL
		WHERE id = ? AND status = 'open' AND claimed_by = ? AND claim_expires_at > ?`, id, reviewer, micros(now))
	if err != nil {
		return store.Review{}, fmt.Errorf("sqlite: release review: %w", err)
	}
	return s.afterClaim(ctx, res, id, now)
}

func (s *Store) afterClaim(ctx context.Context, res sql.Result, id string, now time.Time) (store.Review, error) {
	n, err := res.RowsAffected()
	if err != nil {
		return store.Review{}, fmt.Errorf("sqlite: claim review: %w", err)
	}
	r, err := s.reviewWhere(ctx, s.w, `id = ?`, id)
	if err != nil {
		return r, err
	}
	r = r.WithClaimAt(now)
	if n == 0 {
		return r, store.ClaimConflict(r)
	}
	return r, nil
}

// CloseReview records the verdict of an open review. Recording the same
// verdict again is a no-op; a review closed otherwise is ErrConflict.
func (s *Store) CloseReview(ctx context.Context, r store.Review) (store.Review, error) {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var status, verdict, reviewer string
		err := tx.QueryRowContext(ctx, `SELECT status, verdict, reviewer FROM reviews WHERE id = ?`, r.ID).Scan(&status, &verdict, &reviewer)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("review: %w", store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if status != store.ReviewOpen {
			if status == r.Status && verdict == r.Verdict && reviewer == r.Reviewer {
				return nil
			}
			return fmt.Errorf("%w: review %s is already %s", store.ErrConflict, r.ID, status)
		}
		_, err = tx.ExecContext(ctx, `UPDATE reviews SET status = ?, verdict = ?, reviewer = ?, comment = ?, decided_at = ? WHERE id = ?`,
			r.Status, r.Verdict, r.Reviewer, r.Comment, nullMicros(r.DecidedAt), r.ID)
		return err
	})
	if err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) {
			return r, err
		}
		return r, fmt.Errorf("sqlite: close review: %w", err)
	}
	return s.reviewWhere(ctx, s.w, `id = ?`, r.ID)
}

// placeholder renders the n-th parameter of a query the store package
// builds, as SQLite writes it.
func placeholder(int) string { return "?" }

// dialect is SQLite's SQL. Its lower() folds ASCII only: "ÜBERWEISUNG"
// stays as it is, and a search for "überweisung" would miss it; text is
// lower-cased by adaptflow_lower, Go's strings.ToLower (every letter).
var dialect = store.Dialect{
	Placeholder: placeholder,
	Lower:       func(expr string) string { return "adaptflow_lower(" + expr + ")" },
}

func init() {
	sqlite.MustRegisterDeterministicScalarFunction("adaptflow_lower", 1, func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
		switch v := args[0].(type) {
		case string:
			return strings.ToLower(v), nil
		case []byte:
			return strings.ToLower(string(v)), nil
		default:
			return v, nil // NULL, a number: as lower() leaves them
		}
	})
}

// The store package's shared queries, with SQLite's placeholders.
var (
	outcomesQuery      = store.Numbered(store.OutcomesQuery, "?")
	claimRetryQuery    = store.Numbered(store.ClaimRetryQuery("r.queued = 0", "o.pending_start = 1 AND o.queued = 1"), "?")
	releaseRetryQuery  = store.Numbered(store.ReleaseRetryQuery, "?")
	restoreQuery       = store.Numbered(store.RestoreQuery, "?")
	policyChangesQuery = store.Numbered(store.PolicyChangesQuery, "?")
)

// Outcomes calls fn with how each instance of a process started in
// [from, to) went, in no particular order.
func (s *Store) Outcomes(ctx context.Context, processName string, from, to time.Time, fn func(store.InstanceOutcome) error) error {
	rows, err := s.r.QueryContext(ctx, outcomesQuery, store.OutcomesArgs(processName, from, to)...)
	if err != nil {
		return fmt.Errorf("sqlite: outcomes: %w", err)
	}
	defer rows.Close()
	if err := store.EachRow(rows, store.ScanOutcome, fn); err != nil {
		return fmt.Errorf("sqlite: outcomes: %w", err)
	}
	return nil
}

// PolicyChanges are the changes of which versions of a process's policies
// are live made in [from, to), oldest first.
func (s *Store) PolicyChanges(ctx context.Context, processName string, from, to time.Time) ([]store.PolicyChange, error) {
	rows, err := s.r.QueryContext(ctx, policyChangesQuery, processName, micros(from), micros(to))
	if err != nil {
		return nil, fmt.Errorf("sqlite: policy changes: %w", err)
	}
	defer rows.Close()
	out := []store.PolicyChange{}
	if err := store.EachRow(rows, store.ScanPolicyChange, func(c store.PolicyChange) error { out = append(out, c); return nil }); err != nil {
		return nil, fmt.Errorf("sqlite: policy changes: %w", err)
	}
	return out, nil
}

// StartCounts counts the starts of a process in each whole bucket of
// [from, to), oldest first, leaving out the buckets before its first start.
func (s *Store) StartCounts(ctx context.Context, processName string, from, to time.Time, bucket time.Duration) ([]int, error) {
	if bucket < time.Microsecond {
		return nil, fmt.Errorf("%w: start counts: bucket %v", store.ErrInvalid, bucket)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT (created_at - ?) / ? AS h, COUNT(*) FROM instances WHERE process = ? AND created_at >= ? AND created_at < ? GROUP BY h ORDER BY h`,
		micros(from), bucket.Microseconds(), processName, micros(from), micros(to))
	if err != nil {
		return nil, fmt.Errorf("sqlite: start counts: %w", err)
	}
	defer rows.Close()
	n := int(to.Sub(from) / bucket)
	counts := make([]int, n)
	first := n
	for rows.Next() {
		var h int64
		var c int
		if err := rows.Scan(&h, &c); err != nil {
			return nil, fmt.Errorf("sqlite: start counts: %w", err)
		}
		if h >= 0 && int(h) < n {
			counts[h] = c
			first = min(first, int(h))
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: start counts: %w", err)
	}
	var firstAt int64
	if err := s.r.QueryRowContext(ctx, `SELECT COALESCE(MIN(created_at), 0) FROM instances WHERE process = ?`, processName).Scan(&firstAt); err != nil {
		return nil, fmt.Errorf("sqlite: start counts: %w", err)
	}
	if firstAt < micros(from) {
		first = 0
	}
	return counts[first:], nil
}

// ScanDecisions calls fn with the raw JSON record of every decision of a
// process made at or after since, oldest first. The records are read, never
// written, so a scan can run beside live traffic.
func (s *Store) ScanDecisions(ctx context.Context, process string, since time.Time, fn func(record []byte) error) error {
	return s.scanRecords(ctx, `SELECT record FROM decisions WHERE process = ? AND time >= ? ORDER BY time, seq`, []any{process, micros(since)}, fn)
}

// ScanChains calls fn with every decision record, grouped by run in
// sequence order, for verifying their hash chains.
func (s *Store) ScanChains(ctx context.Context, fn func(record []byte) error) error {
	return s.scanRecords(ctx, `SELECT record FROM decisions ORDER BY run_id, seq`, nil, fn)
}

func (s *Store) scanRecords(ctx context.Context, q string, args []any, fn func([]byte) error) error {
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("sqlite: scan decisions: %w", err)
	}
	defer rows.Close()
	var rec []byte
	for rows.Next() {
		if err := rows.Scan(&rec); err != nil {
			return fmt.Errorf("sqlite: scan decisions: %w", err)
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
	return rows.Err()
}

// CountDecisions counts the decisions of a process made at or after since.
func (s *Store) CountDecisions(ctx context.Context, process string, since time.Time) (int, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM decisions WHERE process = ? AND time >= ?`, process, micros(since)).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlite: count decisions: %w", err)
	}
	return n, nil
}

// PutVerdict records what a reviewer said about a classification, once per
// review.
func (s *Store) PutVerdict(ctx context.Context, v store.Verdict) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO verdicts (review_id, classifier, queue, model, predicted, confidence, label, reviewer, at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (review_id) DO NOTHING`,
		v.ReviewID, v.Classifier, v.Queue, v.Model, v.Predicted, v.Confidence, v.Label, v.Reviewer, micros(v.At))
	if err != nil {
		return fmt.Errorf("sqlite: put verdict: %w", err)
	}
	return nil
}

// Verdicts lists the verdicts on a classifier since a time, oldest first.
func (s *Store) Verdicts(ctx context.Context, classifier string, since time.Time) ([]store.Verdict, error) {
	return collect(ctx, s.r, "verdicts", func(r scanner) (store.Verdict, error) {
		var v store.Verdict
		var at int64
		err := r.Scan(&v.ReviewID, &v.Classifier, &v.Queue, &v.Model, &v.Predicted, &v.Confidence, &v.Label, &v.Reviewer, &at)
		v.At = fromMicros(at)
		return v, err
	}, `SELECT review_id, classifier, queue, model, predicted, confidence, label, reviewer, at FROM verdicts
		WHERE classifier = ? AND at >= ? ORDER BY at, review_id`, classifier, micros(since))
}

// QueueSummaries are where the review queues stand: the reviews waiting in
// each, and those closed since f.Since.
func (s *Store) QueueSummaries(ctx context.Context, f store.QueueFilter) ([]store.QueueSummary, error) {
	q, args := store.QueueSummaryQuery(f, placeholder)
	return collect(ctx, s.r, "queue summaries", func(r scanner) (store.QueueSummary, error) { return store.ScanQueueSummary(r.Scan) }, q, args...)
}

// ReviewStats are per-queue counts and durations of reviews at now.
func (s *Store) ReviewStats(ctx context.Context, now time.Time) ([]store.QueueStats, error) {
	return collect(ctx, s.r, "review stats", func(r scanner) (store.QueueStats, error) { return store.ScanQueueStats(r.Scan) },
		store.StatsQuery("?"), micros(now), micros(now))
}

// AppendAudit records a change made through the API before it is made,
// and returns the entry's seq for SettleAudit.
func (s *Store) AppendAudit(ctx context.Context, e store.AuditEntry) (int64, error) {
	var seq int64
	err := s.w.writeRow(ctx, `INSERT INTO audit_log (at, key_id, actor, role, action, target, status, remote, request_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq`,
		[]any{micros(e.At), e.KeyID, e.Actor, e.Role, e.Action, e.Target, e.Status, e.Remote, e.RequestID}, &seq)
	if err != nil {
		return 0, fmt.Errorf("sqlite: append audit: %w", err)
	}
	return seq, nil
}

// SettleAudit records the status a change ended with, on its entry while
// the entry has none yet, and what the change was made to when only the
// handler knew (target; empty: as written); a change refused (4xx) made
// no change, and its entry goes.
func (s *Store) SettleAudit(ctx context.Context, seq int64, status int, target string) error {
	var err error
	if store.AuditRefused(status) {
		_, err = s.w.ExecContext(ctx, `DELETE FROM audit_log WHERE seq = ? AND status = 0`, seq)
	} else {
		_, err = s.w.ExecContext(ctx, `UPDATE audit_log SET status = ?, target = CASE WHEN ? = '' THEN target ELSE ? END WHERE seq = ? AND status = 0`, status, target, target, seq)
	}
	if err != nil {
		return fmt.Errorf("sqlite: settle audit: %w", err)
	}
	return nil
}

// Audit lists audit entries matching f, oldest first.
func (s *Store) Audit(ctx context.Context, f store.AuditFilter) ([]store.AuditEntry, error) {
	tail, args := store.AuditQuery(f, placeholder)
	return collect(ctx, s.r, "audit", func(row scanner) (store.AuditEntry, error) {
		var e store.AuditEntry
		var at int64
		err := row.Scan(&e.Seq, &at, &e.KeyID, &e.Actor, &e.Role, &e.Action, &e.Target, &e.Status, &e.Remote, &e.RequestID)
		e.At = fromMicros(at)
		return e, err
	}, `SELECT seq, at, key_id, actor, role, action, target, status, remote, request_id FROM audit_log `+tail, args...)
}

// Instances lists the instances of a process matching f, newest first.
func (s *Store) Instances(ctx context.Context, f store.InstanceFilter) ([]store.InstanceSummary, error) {
	q, args, err := store.InstancesQuery(f, placeholder, func(field, ph string) string {
		// -> gives the field as JSON text, as the value is written.
		return "input -> '$." + field + "' = " + ph
	})
	if err != nil {
		return nil, err
	}
	return collect(ctx, s.r, "instances", func(r scanner) (store.InstanceSummary, error) { return store.ScanInstanceSummary(r.Scan) }, q, args...)
}
