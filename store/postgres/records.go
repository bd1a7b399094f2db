package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
)

// PutKey stores an API key; a key with the same hash is left as it is.
func (s *Store) PutKey(ctx context.Context, k store.APIKey) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO api_keys (id, name, role, hash, created_at, expires_at, processes)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (hash) DO NOTHING`,
		k.ID, k.Name, k.Role, k.Hash, micros(k.CreatedAt), nullMicros(k.ExpiresAt), string(process.JSON(nonNilStrings(k.Processes))))
	if err != nil {
		return fmt.Errorf("postgres: put key: %w", err)
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
	var expires, revoked, rotated *int64
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
	k, err := scanKey(s.pool.QueryRow(ctx, `SELECT `+keyCols+` FROM api_keys WHERE `+where, arg))
	if errors.Is(err, pgx.ErrNoRows) {
		return k, fmt.Errorf("API key: %w", store.ErrNotFound)
	}
	if err != nil {
		return k, fmt.Errorf("postgres: key: %w", err)
	}
	return k, nil
}

// KeyByHash finds the key whose secret hashes to hash, whatever its state.
func (s *Store) KeyByHash(ctx context.Context, hash string) (store.APIKey, error) {
	return s.keyWhere(ctx, `hash = $1`, hash)
}

// Key finds a key by id.
func (s *Store) Key(ctx context.Context, id string) (store.APIKey, error) {
	return s.keyWhere(ctx, `id = $1`, id)
}

// Keys lists every key, oldest first (never a secret: only hashes are kept).
func (s *Store) Keys(ctx context.Context) ([]store.APIKey, error) {
	return collect(ctx, s.pool, "keys", scanKey, `SELECT `+keyCols+` FROM api_keys ORDER BY created_at, id`)
}

// RevokeKey revokes a key for good; revoking it again changes nothing.
func (s *Store) RevokeKey(ctx context.Context, id string, at time.Time) (store.APIKey, error) {
	if _, err := s.pool.Exec(ctx, `UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2`, micros(at), id); err != nil {
		return store.APIKey{}, fmt.Errorf("postgres: revoke key: %w", err)
	}
	return s.Key(ctx, id)
}

// RotateKey replaces a live key's secret (by its hash); the old secret stops
// working at once. A revoked key is ErrConflict.
func (s *Store) RotateKey(ctx context.Context, id, hash string, at time.Time) (store.APIKey, error) {
	res, err := s.pool.Exec(ctx, `UPDATE api_keys SET hash = $1, rotated_at = $2 WHERE id = $3 AND revoked_at IS NULL`, hash, micros(at), id)
	if err != nil {
		return store.APIKey{}, fmt.Errorf("postgres: rotate key: %w", err)
	}
	k, err := s.Key(ctx, id)
	if err != nil {
		return k, err
	}
	if res.RowsAffected() == 0 {
		return k, fmt.Errorf("%w: API key %s is revoked", store.ErrConflict, id)
	}
	return k, nil
}

// PutDefinition stores a definition version; see the sqlite store.
func (s *Store) PutDefinition(ctx context.Context, d store.DefinitionRecord) (bool, error) {
	tag, err := s.pool.Exec(ctx, `INSERT INTO definitions (name, version, doc, digest, author, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name, version) DO NOTHING`,
		d.Name, d.Version, string(d.Doc), d.Digest, d.Author, micros(d.CreatedAt))
	if err != nil {
		return false, fmt.Errorf("postgres: put definition: %w", err)
	}
	if tag.RowsAffected() == 1 {
		return true, nil
	}
	var digest string
	if err := s.pool.QueryRow(ctx, `SELECT digest FROM definitions WHERE name = $1 AND version = $2`, d.Name, d.Version).Scan(&digest); err != nil {
		return false, fmt.Errorf("postgres: put definition: %w", err)
	}
	if digest != d.Digest {
		return false, fmt.Errorf("%w: %s version %d exists with other content; publish a new version", store.ErrConflict, d.Name, d.Version)
	}
	return false, nil
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
	var row pgx.Row
	if version == 0 {
		row = s.pool.QueryRow(ctx, `SELECT `+defCols+` FROM definitions WHERE name = $1 ORDER BY version DESC LIMIT 1`, name)
	} else {
		row = s.pool.QueryRow(ctx, `SELECT `+defCols+` FROM definitions WHERE name = $1 AND version = $2`, name, version)
	}
	d, err := scanDef(row)
	if errors.Is(err, pgx.ErrNoRows) {
		return d, fmt.Errorf("process %q: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return d, fmt.Errorf("postgres: definition: %w", err)
	}
	return d, nil
}

// Definitions lists the latest version of every definition, by name.
func (s *Store) Definitions(ctx context.Context) ([]store.DefinitionRecord, error) {
	return collect(ctx, s.pool, "definitions", scanDef,
		`SELECT DISTINCT ON (name) `+defCols+` FROM definitions ORDER BY name, version DESC`)
}

// CreateInstance records a started instance; see the sqlite store.
func (s *Store) CreateInstance(ctx context.Context, in store.Instance) (store.Instance, bool, error) {
	tag, err := s.pool.Exec(ctx, `INSERT INTO instances (id, process, process_version, business_key, input, created_by, created_at, state, state_run, state_seq, pending_start, queued) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
		ON CONFLICT (process, business_key) DO NOTHING`,
		in.ID, in.Process, in.ProcessVersion, in.BusinessKey, string(in.Input), in.CreatedBy, micros(in.CreatedAt), nullText(in.State), in.StateRun, in.StateSeq, in.PendingStart, in.Queued)
	if err != nil {
		return in, false, fmt.Errorf("postgres: create instance: %w", err)
	}
	if tag.RowsAffected() == 1 {
		return in, true, nil
	}
	existing, err := s.instanceWhere(ctx, `process = $1 AND business_key = $2`, in.Process, in.BusinessKey)
	return existing, false, err
}

// Instance returns the instance with the id.
func (s *Store) Instance(ctx context.Context, id string) (store.Instance, error) {
	return s.instanceWhere(ctx, `id = $1`, id)
}

func (s *Store) instanceWhere(ctx context.Context, where string, args ...any) (store.Instance, error) {
	in, err := scanInstance(s.pool.QueryRow(ctx, `SELECT `+instanceColumns+` FROM instances WHERE `+where, args...))
	if errors.Is(err, pgx.ErrNoRows) {
		return in, fmt.Errorf("instance: %w", store.ErrNotFound)
	}
	if err != nil {
		return in, fmt.Errorf("postgres: instance: %w", err)
	}
	return in, nil
}

const instanceColumns = `id, process, process_version, business_key, input, created_by, created_at, state, state_run, state_seq, pending_start, COALESCE(finished_at, 0), queued, retry_queued`

// scanInstance reads the instanceColumns of a row.
func scanInstance(row pgx.Row) (store.Instance, error) {
	var in store.Instance
	var input string
	var state *string
	var at, finished int64
	if err := row.Scan(&in.ID, &in.Process, &in.ProcessVersion, &in.BusinessKey, &input, &in.CreatedBy, &at, &state, &in.StateRun, &in.StateSeq, &in.PendingStart, &finished, &in.Queued, &in.RetryQueued); err != nil {
		return in, err
	}
	in.Input, in.CreatedAt = json.RawMessage(input), fromMicros(at)
	if finished > 0 {
		in.FinishedAt = fromMicros(finished)
	}
	if state != nil {
		in.State = json.RawMessage(*state)
	}
	return in, nil
}

// Admit gives a queued instance a slot under its process's concurrency
// limit when fewer than limit of the process's instances hold one and no
// older one waits (first come, first served), and reports whether it
// holds one now (one not queued holds one already). Admissions to one
// process take turns (a transaction-scoped advisory
// lock), so two cannot both take the last slot.
func (s *Store) Admit(ctx context.Context, id string, limit int) (bool, error) {
	limit = store.SlotLimit(limit)
	admitted := false
	now := micros(time.Now())
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var process string
		var queued bool
		if err := tx.QueryRow(ctx, `SELECT process, queued FROM instances WHERE id = $1`, id).Scan(&process, &queued); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("instance %s: %w", id, store.ErrNotFound)
			}
			return err
		}
		if !queued {
			admitted = true
			return nil
		}
		if err := admissionLock(ctx, tx, process); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE instances SET queued = false, `+store.AdmitClaim("$5")+` WHERE id = $1 AND queued AND
			`+store.SlotsHeld("$2", "NOT r.queued", "$4")+` < $3 AND
			NOT EXISTS (SELECT 1 FROM instances o WHERE o.process = $2 AND o.pending_start AND o.queued AND
				(o.created_at, o.id) < (instances.created_at, instances.id))`, id, process, limit, now-store.RetryClaimStale.Microseconds(), now)
		admitted = err == nil && tag.RowsAffected() == 1
		return err
	})
	if err != nil {
		return false, fmt.Errorf("postgres: admit %s: %w", id, err)
	}
	return admitted, nil
}

// QueuedStarts returns up to limit of a process's instances queued under
// its concurrency limit, oldest first; process "" lists the processes
// that have some instead (one instance each, in no order).
func (s *Store) QueuedStarts(ctx context.Context, process string, limit int) ([]store.Instance, error) {
	if process == "" {
		return s.instancesWhere(ctx, "queued starts", `id IN (SELECT DISTINCT ON (process) id FROM instances WHERE pending_start AND queued ORDER BY process) LIMIT $1`, limit)
	}
	return s.instancesWhere(ctx, "queued starts", `pending_start AND queued AND process = $1 ORDER BY created_at LIMIT $2`, process, limit)
}

// QueuedCounts counts, per process, the instances queued under its
// concurrency limit.
func (s *Store) QueuedCounts(ctx context.Context) (map[string]int, error) {
	return s.CountBy(ctx, "queued counts", `SELECT process, COUNT(*) FROM instances WHERE pending_start AND queued GROUP BY process`)
}

// ProcessLoads reads where each process's instances stand
// (store.ProcessLoad), through the partial index of those in progress.
func (s *Store) ProcessLoads(ctx context.Context, failedSince time.Time) (map[string]store.ProcessLoad, error) {
	return s.ProcessLoadsBy(ctx, `SELECT process, status, COUNT(*) FROM instances WHERE NOT queued AND finished_at IS NULL GROUP BY process, status`,
		`SELECT process, COUNT(*) FROM instances WHERE status = 'failed' AND finished_at >= $1 GROUP BY process`, failedSince)
}

// MarkStarted records that Temporal has the workflows of the instances.
func (s *Store) MarkStarted(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := s.pool.Exec(ctx, `UPDATE instances SET pending_start = false WHERE pending_start AND retry_queued = '' AND id = ANY($1)`, ids); err != nil {
		return fmt.Errorf("postgres: mark started: %w", err)
	}
	return nil
}

// ClaimRetry lets one retry of a failed run of an instance go ahead: true
// when nobody claimed retrying that run, or the claim is older than stale
// (its holder died before it reset the run); ErrNotFound for no instance.
// Under a concurrency limit (limit > 0) the retry also takes a slot, as
// a start would: ErrNoSlot when none is free or instances are queued.
// The claim holds the slot until the retry's new run saves the
// instance's state, or the claim goes stale. It takes the process's
// admission lock, as Admit does.
func (s *Store) ClaimRetry(ctx context.Context, id, run string, now time.Time, stale time.Duration, limit int) (bool, error) {
	cut := micros(now.Add(-stale))
	claimed := false
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var process string
		if err := tx.QueryRow(ctx, `SELECT process FROM instances WHERE id = $1`, id).Scan(&process); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("instance %s: %w", id, store.ErrNotFound)
			}
			return err
		}
		if limit > 0 {
			if err := admissionLock(ctx, tx, process); err != nil {
				return err
			}
		}
		tag, err := tx.Exec(ctx, claimRetryQuery, id, run, micros(now), cut, limit)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 1 {
			claimed = true
			return nil
		}
		var claimRun string
		var claimAt int64
		if err := tx.QueryRow(ctx, `SELECT retry_run, retry_at FROM instances WHERE id = $1`, id).Scan(&claimRun, &claimAt); err != nil {
			return err
		}
		_, err = store.ClaimedRetry(claimRun, claimAt, cut, run)
		return err
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrNoSlot) {
		return false, fmt.Errorf("postgres: claim retry: %w", err)
	}
	return claimed, err
}

// admissionLock serializes, until tx ends, the admissions and limited
// retries of a process: each counts the slots held before it takes one.
func admissionLock(ctx context.Context, tx pgx.Tx, process string) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('admit/' || $1, 0))`, process)
	return err
}

// Restore stores again an instance a process step stored before and that
// never ran (store.RestoreQuery): it reads as starting, pending (the step
// starts it) and queued as given, and is returned as it is now. One a
// workflow ran is returned as it is, restored false.
func (s *Store) Restore(ctx context.Context, id string, pending, queued bool) (store.Instance, bool, error) {
	res, err := s.pool.Exec(ctx, restoreQuery, id, pending, queued)
	if err != nil {
		return store.Instance{}, false, fmt.Errorf("postgres: restore %s: %w", id, err)
	}
	n := res.RowsAffected()
	in, err := s.Instance(ctx, id)
	return in, n == 1, err
}

// exec runs a statement: how many rows it changed (store.Changes).
func (s *Store) exec(ctx context.Context, op, q string, args ...any) (int64, error) {
	tag, err := s.pool.Exec(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("postgres: %s: %w", op, err)
	}
	return tag.RowsAffected(), nil
}

// ReleaseRetry drops a claim on retrying run whose reset failed.
func (s *Store) ReleaseRetry(ctx context.Context, id, run string) error {
	if _, err := s.pool.Exec(ctx, releaseRetryQuery, id, run); err != nil {
		return fmt.Errorf("postgres: release retry: %w", err)
	}
	return nil
}

// PendingStarts returns up to limit instances created before the time whose
// workflow Temporal may not have yet, oldest first; those of a paused
// process are held, not returned.
func (s *Store) PendingStarts(ctx context.Context, before time.Time, limit int) ([]store.Instance, error) {
	return s.instancesWhere(ctx, "pending starts", `pending_start AND NOT queued AND created_at < $1 AND `+store.NotHeld+` AND `+store.NotAChild+` ORDER BY created_at LIMIT $2`, micros(before), limit)
}

// instancesWhere reads the instances a condition (with its order and
// limit) keeps; what names the read in errors.
func (s *Store) instancesWhere(ctx context.Context, what, where string, args ...any) ([]store.Instance, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+instanceColumns+` FROM instances WHERE `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", what, err)
	}
	defer rows.Close()
	var out []store.Instance
	for rows.Next() {
		in, err := scanInstance(rows)
		if err != nil {
			return nil, fmt.Errorf("postgres: %s: %w", what, err)
		}
		out = append(out, in)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", what, err)
	}
	return out, nil
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
	var f store.Finish
	var created int64
	var finished *int64
	err := s.pool.QueryRow(ctx, saveState+` RETURNING process, created_at, finished_at`, args...).Scan(&f.Process, &created, &finished)
	if errors.Is(err, pgx.ErrNoRows) { // no row, or a later save holds it
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: save instance state: %w", err)
	}
	// The finish time is set once: it is this save's only if it is now.
	if !final || finished == nil || *finished != now {
		return nil, nil
	}
	f.Status, f.CycleTime = status, time.Duration(*finished-created)*time.Microsecond
	return &f, nil
}

func nullText(b []byte) *string {
	if b == nil {
		return nil
	}
	s := string(b)
	return &s
}

// placeholder renders the n-th parameter of a query the store package
// builds, as PostgreSQL writes it.
func placeholder(n int) string { return "$" + strconv.Itoa(n) }

// The store package's shared queries, with PostgreSQL's placeholders.
var (
	outcomesQuery      = store.Numbered(store.OutcomesQuery, "$")
	claimRetryQuery    = store.Numbered(store.ClaimRetryQuery("NOT r.queued", "o.pending_start AND o.queued"), "$")
	releaseRetryQuery  = store.Numbered(store.ReleaseRetryQuery, "$")
	restoreQuery       = store.Numbered(store.RestoreQuery, "$")
	policyChangesQuery = store.Numbered(store.PolicyChangesQuery, "$")
)

// Outcomes calls fn with how each instance of a process started in
// [from, to) went, in no particular order.
func (s *Store) Outcomes(ctx context.Context, processName string, from, to time.Time, fn func(store.InstanceOutcome) error) error {
	rows, err := s.pool.Query(ctx, outcomesQuery, store.OutcomesArgs(processName, from, to)...)
	if err != nil {
		return fmt.Errorf("postgres: outcomes: %w", err)
	}
	defer rows.Close()
	if err := store.EachRow(rows, store.ScanOutcome, fn); err != nil {
		return fmt.Errorf("postgres: outcomes: %w", err)
	}
	return nil
}

// PolicyChanges are the changes of which versions of a process's policies
// are live made in [from, to), oldest first.
func (s *Store) PolicyChanges(ctx context.Context, processName string, from, to time.Time) ([]store.PolicyChange, error) {
	rows, err := s.pool.Query(ctx, policyChangesQuery, processName, micros(from), micros(to))
	if err != nil {
		return nil, fmt.Errorf("postgres: policy changes: %w", err)
	}
	defer rows.Close()
	out := []store.PolicyChange{}
	if err := store.EachRow(rows, store.ScanPolicyChange, func(c store.PolicyChange) error { out = append(out, c); return nil }); err != nil {
		return nil, fmt.Errorf("postgres: policy changes: %w", err)
	}
	return out, nil
}

// StartCounts counts the starts of a process in each whole bucket of
// [from, to), oldest first, leaving out the buckets before its first start.
func (s *Store) StartCounts(ctx context.Context, processName string, from, to time.Time, bucket time.Duration) ([]int, error) {
	if bucket < time.Microsecond {
		return nil, fmt.Errorf("%w: start counts: bucket %v", store.ErrInvalid, bucket)
	}
	n := int(to.Sub(from) / bucket)
	counts := make([]int, n)
	first := n
	rows, err := s.pool.Query(ctx, `SELECT (created_at - $1) / $2 AS h, COUNT(*) FROM instances WHERE process = $3 AND created_at >= $1 AND created_at < $4 GROUP BY h ORDER BY h`,
		micros(from), bucket.Microseconds(), processName, micros(to))
	if err != nil {
		return nil, fmt.Errorf("postgres: start counts: %w", err)
	}
	for rows.Next() {
		var h, c int64
		if err := rows.Scan(&h, &c); err != nil {
			rows.Close()
			return nil, fmt.Errorf("postgres: start counts: %w", err)
		}
		if h >= 0 && int(h) < n {
			counts[h] = int(c)
			first = min(first, int(h))
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: start counts: %w", err)
	}
	var firstAt int64
	if err := s.pool.QueryRow(ctx, `SELECT COALESCE(MIN(created_at), 0) FROM instances WHERE process = $1`, processName).Scan(&firstAt); err != nil {
		return nil, fmt.Errorf("postgres: start counts: %w", err)
	}
	if firstAt < micros(from) {
		first = 0
	}
	return counts[first:], nil
}

// AppendDecision writes a decision record once per (run, sequence); see the
// sqlite store.
func (s *Store) AppendDecision(ctx context.Context, d process.Decision) (process.Decision, error) {
	return s.AppendDecisionWithState(ctx, d, nil)
}

// insertDecision skips a decision recorded already: one of the same run
// and seq, or of the same id (the same attempt, retried while the first
// was still writing). Without a conflict target every unique index is an
// arbiter: with (run_id, seq) alone, a concurrent insert of the same id
// could fail on the primary key instead of being skipped.
const insertDecision = `INSERT INTO decisions (id, instance_id, run_id, seq, step, time, record, prev_hash, hash, process) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT DO NOTHING`

// saveState saves a projection; a saved state shows the workflow exists (or
// the instance ended before it), so it also clears the instance's pending
// start, and its place in a queue (a retry queued as another's ran it).
// It keeps the state's status beside it, and the time of the first save of
// a final status.
const saveState = `UPDATE instances SET state = $1, state_run = $2, state_seq = $3, pending_start = false, queued = false, retry_queued = '', status = $5, finished_at = CASE WHEN $6::boolean THEN COALESCE(finished_at, $7) END
	WHERE id = $4 AND (state_run <> $2 OR state_seq < $3)`

// saveStateArgs are the parameters of saveState for st at now (micros),
// with st's status and whether it is final.
func saveStateArgs(st store.StateSave, now int64) (args []any, status string, final bool) {
	status, final = store.StatusOf(st.State)
	return []any{string(st.State), st.RunID, st.Seq, st.InstanceID, status, final, now}, status, final
}

// AppendDecisionWithState is AppendDecision and, when st is not nil,
// SaveInstanceState in one transaction: the state a decision carries is
// saved with it or not at all.
func (s *Store) AppendDecisionWithState(ctx context.Context, d process.Decision, st *store.StateSave) (process.Decision, error) {
	rec, err := json.Marshal(d)
	if err != nil {
		return d, fmt.Errorf("postgres: append decision: %w", err)
	}
	var inserted bool
	write := func(exec func(ctx context.Context, q string, args ...any) (pgconn.CommandTag, error)) error {
		tag, err := exec(ctx, insertDecision, d.ID, d.InstanceID, d.RunID, d.Seq, d.Step, micros(d.Time), string(rec), d.PrevHash, d.Hash, d.Process)
		if err != nil {
			return err
		}
		inserted = tag.RowsAffected() == 1
		if st != nil {
			args, _, _ := saveStateArgs(*st, micros(time.Now()))
			_, err = exec(ctx, saveState, args...)
		}
		return err
	}
	if st == nil { // one statement: no transaction needed
		err = write(s.pool.Exec)
	} else {
		err = s.tx(ctx, func(tx pgx.Tx) error { return write(tx.Exec) })
	}
	if err != nil {
		return d, fmt.Errorf("postgres: append decision: %w", err)
	}
	if inserted {
		return d, nil
	}
	return s.decisionWhere(ctx, `run_id = $1 AND seq = $2`, d.RunID, d.Seq)
}

// Decision returns the decision record with the id.
func (s *Store) Decision(ctx context.Context, id string) (process.Decision, error) {
	return s.decisionWhere(ctx, `id = $1`, id)
}

func (s *Store) decisionWhere(ctx context.Context, where string, args ...any) (process.Decision, error) {
	var rec []byte
	var d process.Decision
	err := s.pool.QueryRow(ctx, `SELECT record FROM decisions WHERE `+where, args...).Scan(&rec)
	if errors.Is(err, pgx.ErrNoRows) {
		return d, fmt.Errorf("decision: %w", store.ErrNotFound)
	}
	if err != nil {
		return d, fmt.Errorf("postgres: decision: %w", err)
	}
	if err := json.Unmarshal(rec, &d); err != nil {
		return d, fmt.Errorf("postgres: decision: %w", err)
	}
	return d, nil
}

// Decisions lists the decision records of an instance in order.
func (s *Store) Decisions(ctx context.Context, instanceID string) ([]process.Decision, error) {
	return collect(ctx, s.pool, "decisions", func(r scanner) (process.Decision, error) {
		var rec []byte
		var d process.Decision
		if err := r.Scan(&rec); err != nil {
			return d, err
		}
		return d, json.Unmarshal(rec, &d)
	}, `SELECT record FROM decisions WHERE instance_id = $1 ORDER BY time, seq`, instanceID)
}

// ScanDecisions calls fn with the raw record of every decision of a process
// made at or after since, oldest first. It only reads.
func (s *Store) ScanDecisions(ctx context.Context, process string, since time.Time, fn func(record []byte) error) error {
	return s.scanRecords(ctx, `SELECT record FROM decisions WHERE process = $1 AND time >= $2 ORDER BY time, seq`, []any{process, micros(since)}, fn)
}

// ScanChains calls fn with every decision record, grouped by run in
// sequence order.
func (s *Store) ScanChains(ctx context.Context, fn func(record []byte) error) error {
	return s.scanRecords(ctx, `SELECT record FROM decisions ORDER BY run_id, seq`, nil, fn)
}

func (s *Store) scanRecords(ctx context.Context, q string, args []any, fn func([]byte) error) error {
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("postgres: scan decisions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var rec []byte
		if err := rows.Scan(&rec); err != nil {
			return fmt.Errorf("postgres: scan decisions: %w", err)
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
	if err := s.pool.QueryRow(ctx, `SELECT COUNT(*) FROM decisions WHERE process = $1 AND time >= $2`, process, micros(since)).Scan(&n); err != nil {
		return 0, fmt.Errorf("postgres: count decisions: %w", err)
	}
	return n, nil
}

// CreateReview opens a review once.
func (s *Store) CreateReview(ctx context.Context, r store.Review) (store.Review, error) {
	_, err := s.pool.Exec(ctx, `INSERT INTO reviews (id, instance_id, run_id, process, step, queue, reason, policy_id, decision_id, status, created_at, due_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (id) DO NOTHING`,
		r.ID, r.InstanceID, r.RunID, r.Process, r.Step, r.Queue, r.Reason, r.PolicyID, r.DecisionID, store.ReviewOpen, micros(r.CreatedAt), nullMicros(r.DueAt))
	if err != nil {
		return r, fmt.Errorf("postgres: create review: %w", err)
	}
	return s.reviewWhere(ctx, s.pool, `id = $1`, r.ID)
}

// Review returns the review with the id as it reads at now.
func (s *Store) Review(ctx context.Context, id string, now time.Time) (store.Review, error) {
	r, err := s.reviewWhere(ctx, s.pool, `id = $1`, id)
	return r.WithClaimAt(now), err
}

const reviewCols = `id, instance_id, run_id, process, step, queue, reason, policy_id, decision_id, status, verdict, reviewer, comment, created_at, due_at, decided_at, claimed_by, claim_expires_at, escalated_at, priority`

func scanReview(row scanner) (store.Review, error) {
	var r store.Review
	var created int64
	var due, decided, claimUntil, escalated *int64
	err := row.Scan(&r.ID, &r.InstanceID, &r.RunID, &r.Process, &r.Step, &r.Queue, &r.Reason, &r.PolicyID, &r.DecisionID, &r.Status, &r.Verdict, &r.Reviewer, &r.Comment, &created, &due, &decided, &r.ClaimedBy, &claimUntil, &escalated, &r.Priority)
	r.CreatedAt, r.DueAt, r.DecidedAt, r.ClaimExpiresAt, r.EscalatedAt = fromMicros(created), fromNullMicros(due), fromNullMicros(decided), fromNullMicros(claimUntil), fromNullMicros(escalated)
	return r, err
}

func (s *Store) reviewWhere(ctx context.Context, q querier, where string, args ...any) (store.Review, error) {
	r, err := scanReview(q.QueryRow(ctx, `SELECT `+reviewCols+` FROM reviews WHERE `+where, args...))
	if errors.Is(err, pgx.ErrNoRows) {
		return r, fmt.Errorf("review: %w", store.ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("postgres: review: %w", err)
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
	rs, err := collect(ctx, s.pool, "reviews", scanReview, `SELECT `+reviewCols+` FROM reviews `+tail, args...)
	return store.ReviewsAt(rs, f.Now), err
}

// ClaimReview gives reviewer a claim on an open review; see the sqlite
// store.
func (s *Store) ClaimReview(ctx context.Context, id, reviewer string, now, until time.Time) (store.Review, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE reviews SET claimed_by = $1, claim_expires_at = $2, first_claimed_at = COALESCE(first_claimed_at, $4)
		WHERE id = $3 AND status = 'open' AND (claimed_by = '' OR claimed_by = $1 OR claim_expires_at <= $4)`,
		reviewer, micros(until), id, micros(now))
	if err != nil {
		return store.Review{}, fmt.Errorf("postgres: claim review: %w", err)
	}
	return s.afterClaim(ctx, tag.RowsAffected(), id, now)
}

// EscalateReview moves an open review to another queue; see the sqlite
// store.
func (s *Store) EscalateReview(ctx context.Context, id string, to store.Escalation, at time.Time) (store.Review, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE reviews SET queue = $1, due_at = $2, priority = GREATEST(priority, $3), escalated_at = COALESCE(escalated_at, $4),
		claimed_by = '', claim_expires_at = NULL WHERE id = $5 AND status = 'open'`, to.Queue, micros(to.Due), to.Priority, micros(at), id)
	if err != nil {
		return store.Review{}, fmt.Errorf("postgres: escalate review: %w", err)
	}
	return s.afterClaim(ctx, tag.RowsAffected(), id, at)
}

// ReassignReview moves an open review to another queue, its claim
// released; its due time and priority stay. A closed one is ErrConflict.
func (s *Store) ReassignReview(ctx context.Context, id, queue string, at time.Time) (store.Review, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE reviews SET queue = $1, claimed_by = '', claim_expires_at = NULL WHERE id = $2 AND status = 'open'`, queue, id)
	if err != nil {
		return store.Review{}, fmt.Errorf("postgres: reassign review: %w", err)
	}
	return s.afterClaim(ctx, tag.RowsAffected(), id, at)
}

// ReleaseReview gives up reviewer's live claim on a review.
func (s *Store) ReleaseReview(ctx context.Context, id, reviewer string, now time.Time) (store.Review, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE reviews SET claimed_by = '', claim_expires_at = NULL
		WHERE id = $1 AND status = 'open' AND claimed_by = $2 AND claim_expires_at > $3`, id, reviewer, micros(now))
	if err != nil {
		return store.Review{}, fmt.Errorf("postgres: release review: %w", err)
	}
	return s.afterClaim(ctx, tag.RowsAffected(), id, now)
}

func (s *Store) afterClaim(ctx context.Context, n int64, id string, now time.Time) (store.Review, error) {
	r, err := s.reviewWhere(ctx, s.pool, `id = $1`, id)
	if err != nil {
		return r, err
	}
	r = r.WithClaimAt(now)
	if n == 0 {
		return r, store.ClaimConflict(r)
	}
	return r, nil
}

// CloseReview records the verdict of an open review; see the sqlite store.
func (s *Store) CloseReview(ctx context.Context, r store.Review) (store.Review, error) {
	var out store.Review
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var status, verdict, reviewer string
		err := tx.QueryRow(ctx, `SELECT status, verdict, reviewer FROM reviews WHERE id = $1 FOR UPDATE`, r.ID).Scan(&status, &verdict, &reviewer)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("review: %w", store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if status != store.ReviewOpen {
			if status == r.Status && verdict == r.Verdict && reviewer == r.Reviewer {
				out, err = s.reviewWhere(ctx, tx, `id = $1`, r.ID)
				return err
			}
			return fmt.Errorf("%w: review %s is already %s", store.ErrConflict, r.ID, status)
		}
		if _, err := tx.Exec(ctx, `UPDATE reviews SET status = $1, verdict = $2, reviewer = $3, comment = $4, decided_at = $5 WHERE id = $6`,
			r.Status, r.Verdict, r.Reviewer, r.Comment, nullMicros(r.DecidedAt), r.ID); err != nil {
			return err
		}
		out, err = s.reviewWhere(ctx, tx, `id = $1`, r.ID)
		return err
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrConflict) {
		err = fmt.Errorf("postgres: close review: %w", err)
	}
	return out, err
}

// PutVerdict records what a reviewer said about a classification, once per
// review.
func (s *Store) PutVerdict(ctx context.Context, v store.Verdict) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO verdicts (review_id, classifier, queue, model, predicted, confidence, label, reviewer, at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (review_id) DO NOTHING`,
		v.ReviewID, v.Classifier, v.Queue, v.Model, v.Predicted, v.Confidence, v.Label, v.Reviewer, micros(v.At))
	if err != nil {
		return fmt.Errorf("postgres: put verdict: %w", err)
	}
	return nil
}

// Verdicts lists the verdicts on a classifier since a time, oldest first.
func (s *Store) Verdicts(ctx context.Context, classifier string, since time.Time) ([]store.Verdict, error) {
	return collect(ctx, s.pool, "verdicts", func(r scanner) (store.Verdict, error) {
		var v store.Verdict
		var at int64
		err := r.Scan(&v.ReviewID, &v.Classifier, &v.Queue, &v.Model, &v.Predicted, &v.Confidence, &v.Label, &v.Reviewer, &at)
		v.At = fromMicros(at)
		return v, err
	}, `SELECT review_id, classifier, queue, model, predicted, confidence, label, reviewer, at FROM verdicts
		WHERE classifier = $1 AND at >= $2 ORDER BY at, review_id`, classifier, micros(since))
}

// QueueSummaries are where the review queues stand: the reviews waiting in
// each, and those closed since f.Since.
func (s *Store) QueueSummaries(ctx context.Context, f store.QueueFilter) ([]store.QueueSummary, error) {
	q, args := store.QueueSummaryQuery(f, placeholder)
	return collect(ctx, s.pool, "queue summaries", func(r scanner) (store.QueueSummary, error) { return store.ScanQueueSummary(r.Scan) }, q, args...)
}

// ReviewStats are per-queue counts and durations of reviews at now.
func (s *Store) ReviewStats(ctx context.Context, now time.Time) ([]store.QueueStats, error) {
	return collect(ctx, s.pool, "review stats", func(r scanner) (store.QueueStats, error) { return store.ScanQueueStats(r.Scan) },
		store.StatsQuery("$1"), micros(now))
}

// AppendAudit records a change made through the API before it is made,
// and returns the entry's seq for SettleAudit.
func (s *Store) AppendAudit(ctx context.Context, e store.AuditEntry) (int64, error) {
	var seq int64
	err := s.pool.QueryRow(ctx, `INSERT INTO audit_log (at, key_id, actor, role, action, target, status, remote, request_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING seq`,
		micros(e.At), e.KeyID, e.Actor, e.Role, e.Action, e.Target, e.Status, e.Remote, e.RequestID).Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("postgres: append audit: %w", err)
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
		_, err = s.pool.Exec(ctx, `DELETE FROM audit_log WHERE seq = $1 AND status = 0`, seq)
	} else {
		_, err = s.pool.Exec(ctx, `UPDATE audit_log SET status = $1, target = CASE WHEN $2 = '' THEN target ELSE $2 END WHERE seq = $3 AND status = 0`, status, target, seq)
	}
	if err != nil {
		return fmt.Errorf("postgres: settle audit: %w", err)
	}
	return nil
}

// Audit lists audit entries matching f, oldest first.
func (s *Store) Audit(ctx context.Context, f store.AuditFilter) ([]store.AuditEntry, error) {
	tail, args := store.AuditQuery(f, placeholder)
	return collect(ctx, s.pool, "audit", func(row scanner) (store.AuditEntry, error) {
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
		return "input::jsonb -> '" + field + "' = " + ph + "::jsonb"
	})
	if err != nil {
		return nil, err
	}
	return collect(ctx, s.pool, "instances", func(r scanner) (store.InstanceSummary, error) { return store.ScanInstanceSummary(r.Scan) }, q, args...)
}
