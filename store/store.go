// Package store defines what adaptflow persists and the errors its
// implementations return. Implementations live in subpackages (sqlite, the
// embedded default); the packages that use a store declare the small
// interfaces they need.
package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Errors callers test with errors.Is. The API maps them to status codes.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	// ErrNoSlot: a retry would run an instance beyond its process's
	// concurrency limit (see ClaimRetry).
	ErrNoSlot = errors.New("no free slot under the process's concurrency limit")
)

// Roles of API keys.
const (
	RoleSystem   = "system"
	RoleReviewer = "reviewer"
	RoleEngineer = "engineer"
	RoleAdmin    = "admin"
)

// ValidRole reports whether r is a known role.
func ValidRole(r string) bool {
	switch r {
	case RoleSystem, RoleReviewer, RoleEngineer, RoleAdmin:
		return true
	}
	return false
}

// APIKey is a stored key. Only the SHA-256 of the secret is kept.
type APIKey struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	Hash      string    `json:"-"`
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt, when set, is when the key stops working.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// RevokedAt is when the key was revoked; it never works again.
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	// RotatedAt is when the key's secret was last replaced.
	RotatedAt *time.Time `json:"rotated_at,omitempty"`
	// Processes, when not empty, are the only processes the key may touch.
	Processes []string `json:"processes,omitempty"`
}

// Usable says why the key does not work at now, or nil when it does.
func (k APIKey) Usable(now time.Time) error {
	switch {
	case k.RevokedAt != nil:
		return fmt.Errorf("API key %s was revoked at %s", k.ID, k.RevokedAt.UTC().Format(time.RFC3339))
	case k.ExpiresAt != nil && !now.Before(*k.ExpiresAt):
		return fmt.Errorf("API key %s expired at %s", k.ID, k.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return nil
}

// Allows reports whether the key may touch the process.
func (k APIKey) Allows(process string) bool {
	return len(k.Processes) == 0 || slices.Contains(k.Processes, process)
}

// DefinitionRecord is a stored process definition version.
type DefinitionRecord struct {
	Name      string          `json:"name"`
	Version   int             `json:"version"`
	Doc       json.RawMessage `json:"definition"`
	Digest    string          `json:"digest"`
	Author    string          `json:"author"`
	CreatedAt time.Time       `json:"created_at"`
}

// PolicyRecord is a stored policy version.
type PolicyRecord struct {
	ID        string          `json:"id"`
	Version   int             `json:"version"`
	Process   string          `json:"process"`
	Doc       json.RawMessage `json:"policy"`
	Digest    string          `json:"digest"`
	Author    string          `json:"author"`
	Note      string          `json:"note,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
	// Mode is active or shadow when the record is read as a live version.
	Mode string `json:"mode,omitempty"`
	// Percent, for a shadow version read as live, is the share of
	// instances it applies to in place of the active version (a canary);
	// 0 for a plain shadow.
	Percent  int    `json:"percent,omitempty"`
	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash"`
}

// Policy modes of a live version. A canary is a shadow version applied,
// in place of the active one, to a share of the instances.
const (
	ModeActive   = "active"
	ModeShadow   = "shadow"
	ModeCanary   = "canary"
	ModeDisabled = "disabled"
)

// PolicyState is which versions of a policy are live.
type PolicyState struct {
	ID      string `json:"id"`
	Process string `json:"process"`
	Active  int    `json:"active_version,omitempty"` // 0: none
	Shadow  int    `json:"shadow_version,omitempty"` // 0: none
	// ShadowPercent is the share of instances (1 to 99) the shadow
	// version applies to as a canary; 0: it is evaluated, never applied.
	ShadowPercent int `json:"shadow_percent,omitempty"`
	// Guard, for a canary, is when it is rolled back or promoted on its
	// own; nil: only by hand.
	Guard     *CanaryGuard `json:"canary_guard,omitempty"`
	Latest    int          `json:"latest_version"`
	ChangedBy string       `json:"changed_by"`
	ChangedAt time.Time    `json:"changed_at"`
}

// CanaryGuard watches a canary: the instances it applies to against the
// rest, both started since it began. Once MinInstances of the canary's
// have finished, it is rolled back (its version stays as a plain shadow)
// when their error rate, review rate or cycle time exceeds the rest's by
// more than allowed; and promoted to active when PromoteAfter has passed since it
// began without that. One still unjudged at DecideAfter is rolled back.
type CanaryGuard struct {
	// MaxErrorRateIncrease is how far (0 to 1) the canary's error rate may
	// exceed the rest's; nil: not watched.
	MaxErrorRateIncrease *float64 `json:"max_error_rate_increase,omitempty"`
	// MaxReviewRateIncrease is how far (0 to 1) the canary's review rate
	// (the share of instances reviewed) may exceed the rest's.
	MaxReviewRateIncrease *float64 `json:"max_review_rate_increase,omitempty"`
	// MaxCycleTimeIncrease is how much longer (0.2: 20%) the canary's
	// median cycle time may be than the rest's.
	MaxCycleTimeIncrease *float64 `json:"max_cycle_time_increase,omitempty"`
	// MinInstances is how many of the canary's instances must have
	// finished before it is judged (at least 1).
	MinInstances int `json:"min_instances"`
	// PromoteAfter ("24h", "7d") is how long after it began the canary is
	// promoted; empty: never on its own.
	PromoteAfter string `json:"promote_after,omitempty"`
	// Confidence (0.5 to 0.999; 0: none) makes the guard judge the rates
	// as samples: it rolls the canary back only when a rate exceeds the
	// rest's by more than allowed with this confidence, and promotes it
	// only when its rates are shown, with this confidence, to exceed the
	// rest's by no more than allowed.
	Confidence float64 `json:"confidence,omitempty"`
	// DecideAfter ("7d") bounds how long the canary may go unjudged: a
	// canary that by then has too few finished instances, or (with a
	// confidence) a figure neither shown to breach nor shown within its
	// bound, is rolled back. Empty: it may wait for ever.
	DecideAfter string `json:"decide_after,omitempty"`
}

// With is the state after making version live in mode (a canary applies to
// percent of the instances), or after disabling the policy. Activating the
// shadow or canary version ends it; a canary of the active version is a
// conflict.
func (s PolicyState) With(version int, mode string, percent int) (PolicyState, error) {
	switch mode {
	case ModeActive:
		s.Active = version
		if s.Shadow == version {
			s.Shadow, s.ShadowPercent = 0, 0
		}
	case ModeShadow:
		s.Shadow, s.ShadowPercent = version, 0
		if s.Active == version {
			s.Active = 0
		}
	case ModeCanary:
		if percent < 1 || percent > 99 {
			return s, fmt.Errorf("%w: a canary applies to 1 to 99 percent of instances (got %d)", ErrConflict, percent)
		}
		if s.Active == version {
			return s, fmt.Errorf("%w: version %d is active; a canary tries another version beside it", ErrConflict, version)
		}
		s.Shadow, s.ShadowPercent = version, percent
	case ModeDisabled:
		s.Active, s.Shadow, s.ShadowPercent = 0, 0, 0
	default:
		return s, fmt.Errorf("%w: mode must be active, shadow, canary or disabled (got %q)", ErrConflict, mode)
	}
	// A canary's guard goes with it: a new canary comes with its own
	// (PolicyModeChange.Guard), one that goes on keeps it.
	if mode == ModeCanary || s.Shadow == 0 || s.ShadowPercent == 0 {
		s.Guard = nil
	}
	return s, nil
}

// Apply is the state after ch (see PolicyState.With), with the guard of
// a new canary, and the guard as the stores keep it: its JSON, or empty.
func (ch PolicyModeChange) Apply(s PolicyState) (PolicyState, string, error) {
	s, err := s.With(ch.Version, ch.Mode, ch.Percent)
	if err != nil {
		return s, "", err
	}
	if ch.Mode == ModeCanary {
		s.Guard = ch.Guard
	}
	if s.Guard == nil {
		return s, "", nil
	}
	b, err := json.Marshal(s.Guard)
	return s, string(b), err
}

// ParseGuard reads a guard stored by GuardColumn (nil when empty).
func ParseGuard(column string) (*CanaryGuard, error) {
	if column == "" {
		return nil, nil
	}
	var g CanaryGuard
	if err := json.Unmarshal([]byte(column), &g); err != nil {
		return nil, fmt.Errorf("canary guard: %w", err)
	}
	return &g, nil
}

// PolicyModeChange is a change of a policy's live versions, as the stores
// make it: Guard watches a new canary; Expect, when set, is when the
// state the change was judged on was made, and the change is a conflict
// if the policy changed since (a guard acting on a canary an engineer has
// just replaced).
type PolicyModeChange struct {
	Version int
	Mode    string
	Percent int
	Guard   *CanaryGuard
	Expect  *time.Time
	Author  string
	Note    string
}

// Mode reports the state as one word: active, canary (only a canary
// version applies, to its share of the instances), shadow (only a shadow
// version is live) or disabled.
func (s PolicyState) Mode() string {
	switch {
	case s.Active > 0:
		return ModeActive
	case s.Shadow > 0 && s.ShadowPercent > 0:
		return ModeCanary
	case s.Shadow > 0:
		return ModeShadow
	}
	return ModeDisabled
}

// StateSave is one save of an instance's state projection: the seq-th save
// of the run. A save older than the stored one is dropped.
type StateSave struct {
	InstanceID string
	RunID      string
	Seq        int64
	State      json.RawMessage
}

// The final statuses of an instance (the workflows package names them too):
// an instance in one of them has ended, and its store row says when.
const (
	InstanceCompleted = "completed"
	InstanceFailed    = "failed"
	InstanceCanceled  = "canceled"
	InstanceRejected  = "rejected"
)

// StatusOf is the status a saved state projection holds, and whether it is
// final.
func StatusOf(state json.RawMessage) (status string, final bool) {
	var st struct {
		Status string `json:"status"`
	}
	if json.Unmarshal(state, &st) != nil {
		return "", false
	}
	return st.Status, Final(st.Status)
}

// Numbered writes the placeholders {1} to {9} of q, shared by both
// stores, as prefix and number: ?1 for SQLite, $1 for PostgreSQL.
func Numbered(q, prefix string) string {
	pairs := make([]string, 0, 18)
	for i := 1; i <= 9; i++ {
		n := strconv.Itoa(i)
		pairs = append(pairs, "{"+n+"}", prefix+n)
	}
	return strings.NewReplacer(pairs...).Replace(q)
}

// Rows are query results as both stores' drivers give them.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// EachRow calls fn with each row of rows, read by scan, and stops at the
// first error.
func EachRow[T any](rows Rows, scan func(func(dest ...any) error) (T, error), fn func(T) error) error {
	for rows.Next() {
		v, err := scan(rows.Scan)
		if err != nil {
			return err
		}
		if err := fn(v); err != nil {
			return err
		}
	}
	return rows.Err()
}

// ClaimRetryQuery claims the retry of a failed run of an instance, for SQL
// stores, with the parameters id, run, now, the time before which a claim
// is stale (micros) and the process's concurrency limit (0 for none); see
// Numbered. It changes a row when nobody claimed retrying that run, or
// the claim is stale (its holder died before it reset the run), and the
// retry takes a free slot under the limit: fewer than the limit hold one
// (SlotsHeld, whose notQueued it takes) and none is queued (queued, the
// store's test of the column on the alias o), as a start would need.
func ClaimRetryQuery(notQueued, queued string) string {
	return `UPDATE instances SET retry_run = {2}, retry_at = {3} WHERE id = {1} AND (retry_run <> {2} OR retry_at < {4}) AND
		({5} = 0 OR (` + SlotsHeld("instances.process", notQueued, "{4}") + ` < {5} AND
			NOT EXISTS (SELECT 1 FROM instances o WHERE o.process = instances.process AND ` + queued + `)))`
}

// QueueRetryQuery queues the retry of a failed instance for a slot under
// its process's concurrency limit (ClaimRetry found none), or for its
// paused process's resume, with the
// parameters id and reason (who asked, and why); see Numbered. The
// instance becomes pending and queued, in the queue by its creation, as
// a start would be; it changes no row when a retry is queued already or
// the instance has not failed.
const QueueRetryQuery = `UPDATE instances SET retry_queued = {2}, pending_start = {3}, queued = {3}
	WHERE id = {1} AND retry_queued = '' AND status = 'failed'`

// TakeQueuedRetryQuery takes a queued retry that holds its slot (Admit)
// for one starter to run, with the parameters id and now (micros); see
// Numbered. The instance leaves the queue, and the claim it holds (on the
// run that saved its state) keeps its slot until the retry's new run
// saves (SlotsHeld). It changes no row when another took it.
const TakeQueuedRetryQuery = `UPDATE instances SET retry_queued = '', pending_start = {3}, retry_run = state_run, retry_at = {2}
	WHERE id = {1} AND retry_queued <> '' AND queued = {3}`

// DropQueuedRetryQuery withdraws a retry still waiting in the queue, with
// the parameters id and false; see Numbered. One admitted (about to run)
// is not withdrawn: it changes no row.
const DropQueuedRetryQuery = `UPDATE instances SET retry_queued = '', pending_start = {2}, queued = {2}
	WHERE id = {1} AND retry_queued <> '' AND queued <> {2}`

// AdmitClaim is what Admit sets beside the slot, with the parameter now
// (an SQL expression): a queued retry admitted holds its slot by a claim
// (SlotsHeld) until a starter takes it, as it has not run yet.
func AdmitClaim(now string) string {
	return `retry_run = CASE WHEN retry_queued <> '' THEN state_run ELSE retry_run END, retry_at = CASE WHEN retry_queued <> '' THEN ` + now + ` ELSE retry_at END`
}

// ClaimedRetry tells why a claim on the retry of run (ClaimRetryQuery)
// changed no row, from the instance's claim as it is now: another holds
// it (false), or the retry would take a slot there is not (ErrNoSlot).
func ClaimedRetry(claimRun string, claimAt, stale int64, run string) (bool, error) {
	if claimRun == run && claimAt >= stale {
		return false, nil
	}
	return false, ErrNoSlot
}

// ReleaseRetryQuery drops a claim on the retry of a run (its reset
// failed), with the parameters id and run; see Numbered.
const ReleaseRetryQuery = `UPDATE instances SET retry_run = '' WHERE id = {1} AND retry_run = {2}`

// OutcomesQuery selects the InstanceOutcome of each instance of a process
// started in a window, in no particular order, with the parameters
// process, from, to, decided status, expired status and the earliest
// creation of a review to count (micros); see Numbered. The reviews are
// summed per instance before the join, which spares sorting and grouping
// the instances.
const OutcomesQuery = `SELECT i.id, i.process_version, i.created_at, i.status, COALESCE(i.finished_at, 0),
	COALESCE(r.n, 0), COALESCE(r.decided, 0), COALESCE(r.expired, 0), COALESCE(r.wait, 0)
	FROM instances i LEFT JOIN (
		SELECT instance_id, COUNT(*) AS n, COUNT(CASE WHEN status = {4} THEN 1 END) AS decided, COUNT(CASE WHEN status = {5} THEN 1 END) AS expired,
			SUM(CASE WHEN status = {4} THEN decided_at - created_at ELSE 0 END) AS wait
		FROM reviews WHERE process = {1} AND created_at >= {6} GROUP BY instance_id
	) r ON r.instance_id = i.id
	WHERE i.process = {1} AND i.created_at >= {2} AND i.created_at < {3}`

// reviewClockSkew is how much earlier than its instance a review may be
// stamped (by a worker whose clock is behind the API's) and still count
// in the outcomes.
const reviewClockSkew = 24 * time.Hour

// OutcomesArgs are the parameters of OutcomesQuery.
func OutcomesArgs(process string, from, to time.Time) []any {
	return []any{process, from.UnixMicro(), to.UnixMicro(), ReviewDecided, ReviewExpired, from.Add(-reviewClockSkew).UnixMicro()}
}

// ScanOutcome reads a row of OutcomesQuery.
func ScanOutcome(scan func(dest ...any) error) (InstanceOutcome, error) {
	var o InstanceOutcome
	var created, finished, wait int64
	if err := scan(&o.ID, &o.Version, &created, &o.Status, &finished, &o.Reviews, &o.Decided, &o.Expired, &wait); err != nil {
		return o, err
	}
	o.CreatedAt = time.UnixMicro(created).UTC()
	if finished > 0 {
		o.FinishedAt = time.UnixMicro(finished).UTC()
	}
	o.ReviewWait = time.Duration(wait) * time.Microsecond
	return o, nil
}

// Instance statuses a listing filters by, besides the saved ones.
const (
	// InstanceStarting is an instance whose workflow has saved no state yet.
	InstanceStarting = "starting"
	// InstanceInProgress is any status that is not final.
	InstanceInProgress = "in_progress"
	// InstanceFinished is any final status.
	InstanceFinished = "finished"
	// InstanceQueued is an instance waiting under its process's
	// concurrency limit: a start, or a failed instance's retry.
	InstanceQueued = "queued"
)

// InstanceFilter selects the instances of a process, newest first; zero
// fields match everything.
type InstanceFilter struct {
	// Process is the process listed; empty lists every process's
	// instances of BusinessKey (then required), of Processes when given.
	Process   string
	Processes []string
	// Status is a saved status (starting, running, waiting_review,
	// completed, rejected, failed), in_progress or finished.
	Status      string
	BusinessKey string
	// Since keeps the instances started at or after it.
	Since time.Time
	// After is the cursor of the last instance of the previous page.
	After string
	Limit int
	// Input keeps the instances whose input has each of these top-level
	// fields at the value given (a string, number or boolean).
	Input []InputMatch
	// SLA keeps the instances by where they stand against their
	// definition version's SLA (SLAs; versions without one never match) at
	// Now: SLAOnTrack, SLAOverdue, SLAMet or SLAMissed.
	SLA  string
	SLAs map[int]time.Duration
	Now  time.Time
}

// Where an instance stands against its process's SLA: running within it
// or past it, or ended (completed, rejected or failed; a canceled one has
// no standing) within it or after it.
const (
	SLAOnTrack = "on_track"
	SLAOverdue = "overdue"
	SLAMet     = "met"
	SLAMissed  = "missed"
)

// SLAStanding is where an instance created at created, with status and
// (when it ended) finished, stands at now against sla; "" without an SLA,
// for a canceled one, and for one that ended before the store kept the
// time.
func SLAStanding(sla time.Duration, status string, created, finished, now time.Time) string {
	switch {
	case sla <= 0 || status == InstanceCanceled:
		return ""
	case !Final(status):
		if now.Sub(created) > sla {
			return SLAOverdue
		}
		return SLAOnTrack
	case finished.IsZero():
		return ""
	case finished.Sub(created) > sla:
		return SLAMissed
	}
	return SLAMet
}

// InputMatch is a field of an instance's input and the value it must have.
type InputMatch struct {
	// Field is a top-level field of the input: letters, digits and '_'.
	Field string
	Value any
}

// inputFieldRE is what an InputMatch's field may be, inlined in SQL.
var inputFieldRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// MaxInstancePage is the most instances one page holds.
const MaxInstancePage = 500

// InstanceSummary is an instance as a listing shows it.
type InstanceSummary struct {
	ID          string     `json:"id"`
	Process     string     `json:"process"`
	Version     int        `json:"version"`
	BusinessKey string     `json:"business_key"`
	Status      string     `json:"status"`
	CreatedBy   string     `json:"created_by"`
	CreatedAt   time.Time  `json:"created_at"`
	FinishedAt  *time.Time `json:"finished_at,omitempty"`
	// DueAt and SLAStatus say, for a version with an SLA, when the
	// instance is due and where it stands against it (see SLAStanding);
	// the API fills them in.
	DueAt     *time.Time `json:"due_at,omitempty"`
	SLAStatus string     `json:"sla_status,omitempty"`
}

// InstanceCursor is the cursor that continues a listing after in.
func InstanceCursor(in InstanceSummary) string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%d.%s", in.CreatedAt.UnixMicro(), in.ID))
}

// InstancesQuery is the query of an instance listing, for SQL stores; ph
// renders the n-th placeholder (1-based). A malformed cursor or an unknown
// status is ErrInvalid.
//
// inputEq writes the condition that the input's field holds the JSON
// value of the placeholder (each store reads JSON its own way).
func InstancesQuery(f InstanceFilter, ph func(n int) string, inputEq func(field, placeholder string) string) (string, []any, error) {
	p := &params{ph: ph}
	where, err := instanceConditions(f, p, inputEq)
	if err != nil {
		return "", nil, err
	}
	limit := f.Limit
	if limit <= 0 || limit > MaxInstancePage {
		limit = 50
	}
	q := `SELECT id, process, process_version, business_key, status, created_by, created_at, COALESCE(finished_at, 0) FROM instances WHERE ` +
		strings.Join(where, " AND ") + " ORDER BY created_at DESC, id DESC LIMIT " + p.add(limit)
	return q, p.args, nil
}

// CountInstances counts the instances a filter keeps (all of them, not a
// page; matches on the input are not counted: ErrInvalid).
func (r Reads) CountInstances(ctx context.Context, f InstanceFilter) (int, error) {
	if len(f.Input) > 0 || f.After != "" {
		return 0, fmt.Errorf("%w: instances are counted by status, business key, age and SLA only", ErrInvalid)
	}
	p := &params{ph: r.ph}
	where, err := instanceConditions(f, p, nil)
	if err != nil {
		return 0, err
	}
	var n int
	err = r.rows(ctx, "count instances", `SELECT count(*) FROM instances WHERE `+strings.Join(where, " AND "), p.args, func(scan func(dest ...any) error) error {
		return scan(&n)
	})
	return n, err
}

// ProcessLoad is where a process's instances stand: how many are in
// progress (started, not queued under a concurrency limit), how many of
// those wait for a review, and how many failed since a time (and were not
// retried since).
type ProcessLoad struct {
	InProgress    int `json:"in_progress"`
	WaitingReview int `json:"waiting_review"`
	Failed        int `json:"failed"`
}

// ProcessLoadsBy reads the ProcessLoad of every process that has any,
// with the store's queries (each written for its partial index): running
// gives process, status and count over the instances in progress; failed,
// process and count over those failed since its one parameter.
func (r Reads) ProcessLoadsBy(ctx context.Context, running, failed string, failedSince time.Time) (map[string]ProcessLoad, error) {
	out := map[string]ProcessLoad{}
	err := r.rows(ctx, "process loads", running, nil, func(scan func(dest ...any) error) error {
		var p, status string
		var n int
		if err := scan(&p, &status, &n); err != nil {
			return err
		}
		l := out[p]
		l.InProgress += n
		if status == "waiting_review" {
			l.WaitingReview += n
		}
		out[p] = l
		return nil
	})
	if err != nil {
		return nil, err
	}
	failures, err := r.CountBy(ctx, "failed instances", failed, failedSince.UnixMicro())
	for p, n := range failures {
		l := out[p]
		l.Failed = n
		out[p] = l
	}
	return out, err
}

// instanceConditions are the conditions of an instance filter, with
// their parameters added to p.
func instanceConditions(f InstanceFilter, p *params, inputEq func(field, placeholder string) string) ([]string, error) {
	arg := p.add
	var where []string
	switch {
	case f.Process != "":
		where = append(where, "process = "+arg(f.Process))
	case f.BusinessKey == "":
		return nil, fmt.Errorf("%w: instances are listed by process, or by business key", ErrInvalid)
	case f.SLA != "":
		return nil, fmt.Errorf("%w: instances are listed by SLA within one process", ErrInvalid)
	}
	if f.Process == "" && len(f.Processes) > 0 {
		in := make([]string, len(f.Processes))
		for i, name := range f.Processes {
			in[i] = arg(name)
		}
		where = append(where, "process IN ("+strings.Join(in, ", ")+")")
	}
	final := fmt.Sprintf("status IN ('%s', '%s', '%s', '%s')", InstanceCompleted, InstanceRejected, InstanceFailed, InstanceCanceled)
	switch f.Status {
	case "":
	case InstanceStarting:
		where = append(where, "status IN ('', '"+InstanceStarting+"')")
	case InstanceInProgress:
		where = append(where, "NOT "+final)
	case InstanceFinished:
		where = append(where, final)
	case InstanceQueued:
		where = append(where, "pending_start = "+arg(true)+" AND queued = "+arg(true))
	case "running", "waiting_review", "waiting_event", InstanceCompleted, InstanceRejected, InstanceFailed, InstanceCanceled:
		where = append(where, "status = "+arg(f.Status))
	default:
		return nil, fmt.Errorf("%w: unknown instance status %q", ErrInvalid, f.Status)
	}
	if f.BusinessKey != "" {
		where = append(where, "business_key = "+arg(f.BusinessKey))
	}
	for _, m := range f.Input {
		switch m.Value.(type) {
		case string, float64, int, int64, bool:
		default:
			return nil, fmt.Errorf("%w: input.%s: only a string, number or boolean can be matched", ErrInvalid, m.Field)
		}
		if !inputFieldRE.MatchString(m.Field) {
			return nil, fmt.Errorf("%w: input field %q", ErrInvalid, m.Field)
		}
		b, _ := json.Marshal(m.Value)
		where = append(where, inputEq(m.Field, arg(string(b))))
	}
	if !f.Since.IsZero() {
		where = append(where, "created_at >= "+arg(f.Since.UnixMicro()))
	}
	if f.SLA != "" {
		cond, err := slaCondition(f, arg)
		if err != nil {
			return nil, err
		}
		where = append(where, cond)
	}
	if f.After != "" {
		raw, err := base64.RawURLEncoding.DecodeString(f.After)
		at, id, ok := strings.Cut(string(raw), ".")
		created, perr := strconv.ParseInt(at, 10, 64)
		if err != nil || !ok || perr != nil {
			return nil, fmt.Errorf("%w: malformed cursor", ErrInvalid)
		}
		where = append(where, fmt.Sprintf("(created_at, id) < (%s, %s)", arg(created), arg(id)))
	}
	return where, nil
}

// slaCondition is the condition of an SLA filter: per definition version
// with an SLA, the instances that stand so against it (see SLAStanding).
func slaCondition(f InstanceFilter, arg func(any) string) (string, error) {
	ended := fmt.Sprintf("status IN ('%s', '%s', '%s')", InstanceCompleted, InstanceRejected, InstanceFailed)
	// The statuses of a running instance, named so that the index on
	// (process, status, created_at) serves the count of those overdue.
	running := fmt.Sprintf("status IN ('', '%s', 'running', 'waiting_review', 'waiting_event')", InstanceStarting)
	var ors []string
	for _, v := range slices.Sorted(maps.Keys(f.SLAs)) {
		sla := f.SLAs[v].Microseconds()
		if sla <= 0 {
			continue
		}
		// The version's placeholder first: SQLite's are in order.
		cond := "process_version = " + arg(v) + " AND "
		switch f.SLA {
		case SLAOnTrack:
			cond += running + " AND created_at >= " + arg(f.Now.UnixMicro()-sla)
		case SLAOverdue:
			cond += running + " AND created_at < " + arg(f.Now.UnixMicro()-sla)
		case SLAMet:
			cond += ended + " AND finished_at > 0 AND finished_at - created_at <= " + arg(sla)
		case SLAMissed:
			cond += ended + " AND finished_at - created_at > " + arg(sla)
		default:
			return "", fmt.Errorf("%w: unknown SLA standing %q", ErrInvalid, f.SLA)
		}
		ors = append(ors, "("+cond+")")
	}
	if len(ors) == 0 {
		return "1 = 0", nil
	}
	return "(" + strings.Join(ors, " OR ") + ")", nil
}

// ScanInstanceSummary reads a row of InstancesQuery.
func ScanInstanceSummary(scan func(dest ...any) error) (InstanceSummary, error) {
	var in InstanceSummary
	var created, finished int64
	if err := scan(&in.ID, &in.Process, &in.Version, &in.BusinessKey, &in.Status, &in.CreatedBy, &created, &finished); err != nil {
		return in, err
	}
	if in.Status == "" {
		in.Status = InstanceStarting
	}
	in.CreatedAt = time.UnixMicro(created).UTC()
	if finished > 0 {
		t := time.UnixMicro(finished).UTC()
		in.FinishedAt = &t
	}
	return in, nil
}

// Final reports whether an instance status is final.
func Final(status string) bool {
	switch status {
	case InstanceCompleted, InstanceFailed, InstanceRejected, InstanceCanceled:
		return true
	}
	return false
}

// Finish reports that a state save ended an instance: it was the first
// save of a final status.
type Finish struct {
	Process string
	Status  string
	// CycleTime is from the instance's start to the save.
	CycleTime time.Duration
}

// PolicyChange is one change of which version of a policy is live.
type PolicyChange struct {
	PolicyID string    `json:"policy_id"`
	Version  int       `json:"version"`
	Mode     string    `json:"mode"`              // active, shadow, canary or disabled
	Percent  int       `json:"percent,omitempty"` // of a canary
	Author   string    `json:"author"`
	Note     string    `json:"note,omitempty"`
	At       time.Time `json:"at"`
}

// PolicyChangesQuery selects the changes of a process's policies in a
// window, oldest first, with the parameters process, from and to (micros);
// see Numbered.
const PolicyChangesQuery = `SELECT e.id, e.version, e.action, e.percent, e.author, e.note, e.at FROM policy_events e JOIN policy_state s ON s.id = e.id
	WHERE s.process = {1} AND e.at >= {2} AND e.at < {3} ORDER BY e.at, e.seq`

// ScanPolicyChange reads a row of PolicyChangesQuery.
func ScanPolicyChange(scan func(dest ...any) error) (PolicyChange, error) {
	var c PolicyChange
	var at int64
	err := scan(&c.PolicyID, &c.Version, &c.Mode, &c.Percent, &c.Author, &c.Note, &at)
	c.At = time.UnixMicro(at).UTC()
	return c, err
}

// InstanceOutcome is how one instance went: what the process KPIs are
// computed from.
type InstanceOutcome struct {
	ID        string
	Version   int
	CreatedAt time.Time
	// Status is the status last saved, empty before the workflow's first
	// save (the instance is starting).
	Status string
	// FinishedAt is when the store first saw a final status; zero while
	// the instance runs, and for instances that ended before the store
	// kept it.
	FinishedAt time.Time
	// Reviews counts the reviews raised on the instance, Decided those a
	// reviewer decided and Expired those whose SLA ran out; ReviewWait is
	// the time its decided reviews waited for their verdict, summed.
	Reviews, Decided, Expired int
	ReviewWait                time.Duration
}

// Instance is a started process instance. Its live state is in Temporal;
// State is the projection of it that the workflow saves at each step, for
// reads that need no Temporal query.
type Instance struct {
	ID             string          `json:"id"`
	Process        string          `json:"process"`
	ProcessVersion int             `json:"process_version"`
	BusinessKey    string          `json:"business_key"`
	Input          json.RawMessage `json:"input"`
	CreatedBy      string          `json:"created_by"`
	CreatedAt      time.Time       `json:"created_at"`
	// State is the instance's state as last saved (JSON), nil for
	// instances started before projections; StateRun and StateSeq say
	// which run saved it and in which order.
	State    json.RawMessage `json:"-"`
	StateRun string          `json:"-"`
	StateSeq int64           `json:"-"`
	// PendingStart is true from when the API stores the instance until its
	// workflow is known to exist: the workflow saved a state, or the start
	// sweep marked it (MarkStarted).
	PendingStart bool `json:"-"`
	// FinishedAt is when the store first saw a final status (zero until
	// then, and for instances that ended before the store kept it).
	FinishedAt time.Time `json:"-"`
	// Queued is true while the instance waits for a slot under its
	// process's concurrency limit (see Admit); it then holds one until
	// it ends.
	Queued bool `json:"-"`
	// RetryQueued is, while a retry of the failed instance waits for a
	// slot under its process's concurrency limit, who asked for it and
	// why (see QueueRetry); the instance is pending and queued meanwhile.
	RetryQueued string `json:"-"`
}

// Review statuses and verdicts.
const (
	ReviewOpen    = "open"
	ReviewDecided = "decided"
	ReviewExpired = "expired"
	// ReviewCanceled: the instance was canceled while the review was open.
	ReviewCanceled = "canceled"
	// ReviewClaimed is how an open review reads while a reviewer holds a
	// live claim on it; the claim is a lease that runs out by itself.
	ReviewClaimed = "claimed"
	// ReviewEscalated is how an open review reads, unclaimed, once its SLA
	// ran out and it moved to its escalation queue.
	ReviewEscalated = "escalated"

	VerdictApprove = "approve"
	VerdictReject  = "reject"
)

// Review is a human gate of one instance.
type Review struct {
	ID         string     `json:"id"`
	InstanceID string     `json:"instance_id"`
	RunID      string     `json:"run_id"`
	Process    string     `json:"process"`
	Step       string     `json:"step"`
	Queue      string     `json:"queue"`
	Reason     string     `json:"reason"`
	PolicyID   string     `json:"policy_id,omitempty"`
	DecisionID string     `json:"decision_id,omitempty"`
	Status     string     `json:"status"`
	Verdict    string     `json:"verdict,omitempty"`
	Reviewer   string     `json:"reviewer,omitempty"`
	Comment    string     `json:"comment,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	DueAt      *time.Time `json:"due_at,omitempty"`
	DecidedAt  *time.Time `json:"decided_at,omitempty"`
	// ClaimedBy holds the review until ClaimExpiresAt; both are empty when
	// nobody holds it.
	ClaimedBy      string     `json:"claimed_by,omitempty"`
	ClaimExpiresAt *time.Time `json:"claim_expires_at,omitempty"`
	// EscalatedAt is when the review's SLA ran out and it moved to its
	// escalation queue.
	EscalatedAt *time.Time `json:"escalated_at,omitempty"`
	// Priority orders the inbox before due time (higher first); an
	// escalation may raise it.
	Priority int `json:"priority"`
}

// WithClaimAt is the review as it reads at now: an open review under a live
// claim reads as claimed; a claim that has run out is gone.
func (r Review) WithClaimAt(now time.Time) Review {
	if r.ClaimExpiresAt != nil && !r.ClaimExpiresAt.After(now) {
		r.ClaimedBy, r.ClaimExpiresAt = "", nil
	}
	switch {
	case r.Status != ReviewOpen:
	case r.ClaimedBy != "":
		r.Status = ReviewClaimed
	case r.EscalatedAt != nil:
		r.Status = ReviewEscalated
	}
	return r
}

// ClaimConflict is the error of a claim, release or decision refused on r:
// it is closed, or another reviewer holds it, or (for a release) nobody
// does.
func ClaimConflict(r Review) error {
	switch r.Status {
	case ReviewClaimed:
		return fmt.Errorf("%w: review %s is claimed by %s until %s", ErrConflict, r.ID, r.ClaimedBy, r.ClaimExpiresAt.UTC().Format(time.RFC3339))
	case ReviewOpen, ReviewEscalated:
		return fmt.Errorf("%w: review %s is not claimed", ErrConflict, r.ID)
	}
	return fmt.Errorf("%w: review %s is already %s", ErrConflict, r.ID, r.Status)
}

// Verdict is what a reviewer said about a classification: the model's
// answer and the label the reviewer settled on (one per review).
type Verdict struct {
	ReviewID   string    `json:"review_id"`
	Classifier string    `json:"classifier"`
	Queue      string    `json:"queue"`
	Model      string    `json:"model"`
	Predicted  string    `json:"predicted"`
	Confidence float64   `json:"confidence"`
	Label      string    `json:"label"`
	Reviewer   string    `json:"reviewer"`
	At         time.Time `json:"at"`
}

// QueueStats are the counts and durations of one review queue, for metrics.
// Sums only grow while reviews are kept, so they export as counters.
type QueueStats struct {
	Queue             string
	Open, Claimed     int64
	Decided, Expired  int64
	Breached          int64   // expired, or decided after they were due
	DecisionSeconds   float64 // sum over decided reviews of creation to decision
	FirstClaims       int64   // reviews ever claimed
	FirstClaimSeconds float64 // sum over them of creation to first claim
	Judged, Overrides int64   // verdicts on classifications, and those that changed the label
}

// StatsQuery is the per-queue aggregate of reviews and of verdicts on
// classifications, for SQL stores; now is the placeholder of the current
// time in microseconds (used twice). Every column is a BIGINT, in the order
// ScanQueueStats reads them.
func StatsQuery(now string) string {
	sum := func(expr string) string { return "CAST(COALESCE(SUM(" + expr + "), 0) AS BIGINT)" }
	return `SELECT r.queue,
		` + sum("CASE WHEN r.status = 'open' AND (r.claimed_by = '' OR r.claim_expires_at <= "+now+") THEN 1 ELSE 0 END") + `,
		` + sum("CASE WHEN r.status = 'open' AND r.claimed_by <> '' AND r.claim_expires_at > "+now+" THEN 1 ELSE 0 END") + `,
		` + sum("CASE WHEN r.status = 'decided' THEN 1 ELSE 0 END") + `,
		` + sum("CASE WHEN r.status = 'expired' THEN 1 ELSE 0 END") + `,
		` + sum("CASE WHEN r.status = 'expired' OR (r.status = 'decided' AND r.due_at IS NOT NULL AND r.decided_at > r.due_at) THEN 1 ELSE 0 END") + `,
		` + sum("CASE WHEN r.status = 'decided' THEN r.decided_at - r.created_at ELSE 0 END") + `,
		` + sum("CASE WHEN r.first_claimed_at IS NOT NULL THEN 1 ELSE 0 END") + `,
		` + sum("CASE WHEN r.first_claimed_at IS NOT NULL THEN r.first_claimed_at - r.created_at ELSE 0 END") + `,
		CAST(COALESCE(MAX(v.judged), 0) AS BIGINT), CAST(COALESCE(MAX(v.changed), 0) AS BIGINT)
		FROM reviews r LEFT JOIN (
			SELECT queue, COUNT(*) AS judged, SUM(CASE WHEN predicted <> label THEN 1 ELSE 0 END) AS changed FROM verdicts GROUP BY queue
		) v ON v.queue = r.queue
		GROUP BY r.queue ORDER BY r.queue`
}

// ScanQueueStats reads one row of StatsQuery.
func ScanQueueStats(scan func(dest ...any) error) (QueueStats, error) {
	var q QueueStats
	var decidedMicros, firstClaimMicros int64
	err := scan(&q.Queue, &q.Open, &q.Claimed, &q.Decided, &q.Expired, &q.Breached, &decidedMicros, &q.FirstClaims, &firstClaimMicros, &q.Judged, &q.Overrides)
	q.DecisionSeconds, q.FirstClaimSeconds = float64(decidedMicros)/1e6, float64(firstClaimMicros)/1e6
	return q, err
}

// QueueFilter selects the reviews a queue summary counts; zero fields
// match everything.
type QueueFilter struct {
	Process string
	// Processes, when set, keeps the reviews of these processes only (the
	// processes an API key is limited to).
	Processes []string
	// Since starts the window of the reviews closed; Now judges claims and
	// due times (default: the current time).
	Since, Now time.Time
}

// QueueSummary is where one review queue stands: the reviews waiting in it
// now, and those closed in it since a time.
type QueueSummary struct {
	Queue string `json:"queue"`
	// Open reviews wait for a reviewer (nobody holds a live claim); Claimed
	// ones are held by one.
	Open    int64 `json:"open"`
	Claimed int64 `json:"claimed"`
	// Escalated and Overdue are among the open and claimed: those that
	// reached the queue by escalation, and those past their due time.
	Escalated int64 `json:"escalated"`
	Overdue   int64 `json:"overdue"`
	// OldestAt is when the oldest waiting review was raised; NextDueAt is
	// the earliest due time among the waiting (overdue ones included).
	OldestAt  *time.Time `json:"oldest_at,omitempty"`
	NextDueAt *time.Time `json:"next_due_at,omitempty"`
	// Closed since the window's start: decided by a reviewer, expired at
	// their SLA, canceled with their instance; DecisionSeconds is the mean
	// time from raising to verdict of the decided ones.
	Decided         int64   `json:"decided"`
	Expired         int64   `json:"expired"`
	Canceled        int64   `json:"canceled"`
	DecisionSeconds float64 `json:"mean_decision_seconds"`
}

// QueueSummaryQuery is the query of the queue summaries of f, by queue, for
// SQL stores; ph renders the n-th placeholder (1-based). Every column
// after the queue is a BIGINT, in the order ScanQueueSummary reads them.
func QueueSummaryQuery(f QueueFilter, ph func(n int) string) (string, []any) {
	now := f.Now
	if now.IsZero() {
		now = time.Now()
	}
	p := &params{ph: ph}
	arg := p.add
	sum := func(cond, v string) string {
		return "CAST(COALESCE(SUM(CASE WHEN " + cond + " THEN " + v + " ELSE 0 END), 0) AS BIGINT)"
	}
	first := func(col string) string {
		return "CAST(COALESCE(MIN(CASE WHEN status = 'open' THEN " + col + " END), 0) AS BIGINT)"
	}
	q := `SELECT queue, ` + strings.Join([]string{
		sum("status = 'open' AND (claimed_by = '' OR claim_expires_at <= "+arg(now.UnixMicro())+")", "1"),
		sum("status = 'open' AND claimed_by <> '' AND claim_expires_at > "+arg(now.UnixMicro()), "1"),
		sum("status = 'open' AND escalated_at IS NOT NULL", "1"),
		sum("status = 'open' AND due_at <= "+arg(now.UnixMicro()), "1"),
		first("created_at"), first("due_at"),
		sum("status = 'decided'", "1"), sum("status = 'expired'", "1"), sum("status = 'canceled'", "1"),
		sum("status = 'decided'", "decided_at - created_at"),
	}, ", ") + ` FROM reviews WHERE (status = 'open' OR decided_at >= ` + arg(f.Since.UnixMicro()) + `)`
	if f.Process != "" {
		q += " AND process = " + arg(f.Process)
	}
	if len(f.Processes) > 0 {
		q += " AND process IN (" + p.list(f.Processes) + ")"
	}
	return q + " GROUP BY queue ORDER BY queue", p.args
}

// params are a query's arguments, each added with its placeholder.
type params struct {
	ph   func(n int) string
	args []any
}

// add appends v and returns its placeholder.
func (p *params) add(v any) string {
	p.args = append(p.args, v)
	return p.ph(len(p.args))
}

// list appends vs and returns their placeholders, comma-separated (for IN).
func (p *params) list(vs []string) string {
	phs := make([]string, len(vs))
	for i, v := range vs {
		phs[i] = p.add(v)
	}
	return strings.Join(phs, ", ")
}

// ScanQueueSummary reads one row of QueueSummaryQuery.
func ScanQueueSummary(scan func(dest ...any) error) (QueueSummary, error) {
	var q QueueSummary
	var oldest, due, decidedMicros int64
	err := scan(&q.Queue, &q.Open, &q.Claimed, &q.Escalated, &q.Overdue, &oldest, &due, &q.Decided, &q.Expired, &q.Canceled, &decidedMicros)
	if oldest != 0 {
		t := time.UnixMicro(oldest).UTC()
		q.OldestAt = &t
	}
	if due != 0 {
		t := time.UnixMicro(due).UTC()
		q.NextDueAt = &t
	}
	if q.Decided > 0 {
		q.DecisionSeconds = float64(decidedMicros) / 1e6 / float64(q.Decided)
	}
	return q, err
}

// Escalation is where an escalated review goes: its queue, new due time
// and the priority it is raised to (never lowered).
type Escalation struct {
	Queue    string
	Due      time.Time
	Priority int
}

// AuditEntry is one change made through the API.
type AuditEntry struct {
	Seq    int64     `json:"seq"`
	At     time.Time `json:"at"`
	KeyID  string    `json:"key_id"`
	Actor  string    `json:"actor"` // the key's name
	Role   string    `json:"role"`
	Action string    `json:"action"` // e.g. "POST /v1/policies/:id/activate"
	Target string    `json:"target"` // the route's parameters, e.g. "id=skip-small"
	// Status is the HTTP status the change ended with: 2xx done, 5xx
	// failed (it may have been made in part), 0 not known (the entry is
	// written before the change is made, and the server stopped, or the
	// store failed, before the change's end was recorded).
	Status    int    `json:"status"`
	Remote    string `json:"remote"` // the client's address
	RequestID string `json:"request_id"`
}

// AuditRefused says a change that ended with status was refused (4xx):
// nothing was changed, so its audit entry goes.
func AuditRefused(status int) bool { return status >= 400 && status < 500 }

// AuditFilter selects audit entries; zero fields match everything.
type AuditFilter struct {
	Since  time.Time
	Actor  string
	Action string // a prefix of the action, e.g. "POST /v1/keys"
	After  int64  // entries after this seq
	Limit  int
}

// AuditQuery is the WHERE and ORDER BY of an audit listing, for SQL
// stores; ph renders the n-th placeholder.
func AuditQuery(f AuditFilter, ph func(n int) string) (string, []any) {
	p := &params{ph: ph}
	arg := p.add
	where := []string{"seq > " + arg(f.After)}
	if !f.Since.IsZero() {
		where = append(where, "at >= "+arg(f.Since.UnixMicro()))
	}
	if f.Actor != "" {
		where = append(where, "actor = "+arg(f.Actor))
	}
	if f.Action != "" {
		where = append(where, "substr(action, 1, "+arg(len(f.Action))+") = "+arg(f.Action))
	}
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	q := "WHERE " + strings.Join(where, " AND ") + " ORDER BY seq LIMIT " + arg(limit)
	return q, p.args
}

// ReviewsAt is each review as it reads at now (default the current time);
// see WithClaimAt.
func ReviewsAt(rs []Review, now time.Time) []Review {
	if now.IsZero() {
		now = time.Now()
	}
	for i := range rs {
		rs[i] = rs[i].WithClaimAt(now)
	}
	return rs
}

// ReviewFilter selects reviews; zero fields match everything. Reviews come
// by priority (higher first), due time (those without one last), creation,
// then id.
type ReviewFilter struct {
	// Status is open (nobody holds a live claim, escalated or not),
	// claimed, escalated (and not claimed), decided or expired.
	Status  string
	Queue   string
	Process string
	// Processes, when set, keeps the reviews of these processes only (the
	// processes an API key is limited to).
	Processes []string
	// Assignee is the holder of a live claim.
	Assignee string
	// CreatedBefore keeps reviews created before it (older than an age).
	CreatedBefore time.Time
	// After is the cursor of the last review of the previous page.
	After string
	Limit int
	// Now judges claims (default: the current time).
	Now time.Time
}

// MaxReviewPage is the most reviews one page holds.
const MaxReviewPage = 500

// noDue sorts reviews without a due time last.
const noDue = int64(1<<63 - 1)

// ReviewCursor is the cursor that continues a listing after r.
func ReviewCursor(r Review) string {
	due := noDue
	if r.DueAt != nil {
		due = r.DueAt.UnixMicro()
	}
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%d.%d.%d.%s", -r.Priority, due, r.CreatedAt.UnixMicro(), r.ID))
}

// ReviewQuery is the WHERE and ORDER BY of a review listing, for SQL
// stores; ph renders the n-th placeholder (1-based). A malformed cursor is
// ErrInvalid.
func ReviewQuery(f ReviewFilter, ph func(n int) string) (string, []any, error) {
	now := f.Now
	if now.IsZero() {
		now = time.Now()
	}
	p := &params{ph: ph}
	arg := p.add
	where := []string{"TRUE"}
	switch f.Status {
	case "":
	case ReviewOpen:
		where = append(where, fmt.Sprintf("status = 'open' AND (claimed_by = '' OR claim_expires_at <= %s)", arg(now.UnixMicro())))
	case ReviewClaimed:
		where = append(where, fmt.Sprintf("status = 'open' AND claimed_by <> '' AND claim_expires_at > %s", arg(now.UnixMicro())))
	case ReviewEscalated:
		where = append(where, fmt.Sprintf("status = 'open' AND escalated_at IS NOT NULL AND (claimed_by = '' OR claim_expires_at <= %s)", arg(now.UnixMicro())))
	default:
		where = append(where, "status = "+arg(f.Status))
	}
	if f.Queue != "" {
		where = append(where, "queue = "+arg(f.Queue))
	}
	if f.Process != "" {
		where = append(where, "process = "+arg(f.Process))
	}
	if len(f.Processes) > 0 {
		where = append(where, "process IN ("+p.list(f.Processes)+")")
	}
	if f.Assignee != "" {
		where = append(where, fmt.Sprintf("status = 'open' AND claimed_by = %s AND claim_expires_at > %s", arg(f.Assignee), arg(now.UnixMicro())))
	}
	if !f.CreatedBefore.IsZero() {
		where = append(where, "created_at < "+arg(f.CreatedBefore.UnixMicro()))
	}
	const dueKey = "COALESCE(due_at, 9223372036854775807)"
	if f.After != "" {
		raw, err := base64.RawURLEncoding.DecodeString(f.After)
		parts := strings.SplitN(string(raw), ".", 4)
		if err != nil || len(parts) != 4 {
			return "", nil, fmt.Errorf("%w: malformed cursor", ErrInvalid)
		}
		prio, err0 := strconv.ParseInt(parts[0], 10, 64)
		due, err1 := strconv.ParseInt(parts[1], 10, 64)
		created, err2 := strconv.ParseInt(parts[2], 10, 64)
		if err0 != nil || err1 != nil || err2 != nil {
			return "", nil, fmt.Errorf("%w: malformed cursor", ErrInvalid)
		}
		where = append(where, fmt.Sprintf("(-priority, %s, created_at, id) > (%s, %s, %s, %s)", dueKey, arg(prio), arg(due), arg(created), arg(parts[3])))
	}
	limit := f.Limit
	if limit <= 0 || limit > MaxReviewPage {
		limit = 100
	}
	q := "WHERE " + strings.Join(where, " AND ") + " ORDER BY -priority, " + dueKey + ", created_at, id LIMIT " + arg(limit)
	return q, p.args, nil
}

// PolicyVersionHash chains a policy version to the one stored before it:
// the SHA-256 of the previous hash and the version's content.
func PolicyVersionHash(p PolicyRecord) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%d\n%s\n%s\n%s\n%s\n%d\n", p.PrevHash, p.ID, p.Version, p.Process, p.Digest, p.Author, p.Note, p.CreatedAt.UnixMicro())
	h.Write(p.Doc)
	return hex.EncodeToString(h.Sum(nil))
}

// Migration is one schema migration of a store and when it was applied.
type Migration struct {
	Version   int        `json:"version"`
	Name      string     `json:"name"`
	AppliedAt *time.Time `json:"applied_at,omitempty"`
}

// ErrInvalid marks a request the store refuses as malformed (an embedding
// of the wrong dimension, say). The API maps it to 422.
var ErrInvalid = errors.New("invalid")

// DefaultEmbeddingDim is the embedding dimension of a store unless
// configured otherwise.
const DefaultEmbeddingDim = 256

// Example is a labeled example for a classifier, with its embedding.
type Example struct {
	ID         string          `json:"id"`
	Classifier string          `json:"classifier"`
	Text       string          `json:"text"`
	Label      string          `json:"label"`
	Fields     json.RawMessage `json:"fields,omitempty"`
	Source     string          `json:"source"` // seed, review, ...
	Embedding  []float32       `json:"-"`
	CreatedAt  time.Time       `json:"created_at"`
}

// Neighbor is an example and its cosine distance to a query.
type Neighbor struct {
	Example
	Distance float64 `json:"distance"`
}

// ExamplesToEmbedColumns are the columns ScanExampleToEmbed reads, in
// order, of the examples ExamplesToEmbed lists.
const ExamplesToEmbedColumns = `id, classifier, text, label, created_at`

// ScanExampleToEmbed reads an example to embed (ExamplesToEmbedColumns).
func ScanExampleToEmbed(scan func(dest ...any) error) (Example, error) {
	var e Example
	var at int64
	err := scan(&e.ID, &e.Classifier, &e.Text, &e.Label, &at)
	e.CreatedAt = time.UnixMicro(at).UTC()
	return e, err
}

// CheckExampleEmbedding refuses an example's embedding whose dimension is
// not dim; an example may have none yet.
func CheckExampleEmbedding(v []float32, dim int) error {
	if len(v) == 0 {
		return nil
	}
	return CheckEmbedding(v, dim)
}

// CheckEmbedding refuses an embedding whose dimension is not dim.
func CheckEmbedding(v []float32, dim int) error {
	if len(v) != dim {
		return fmt.Errorf("%w: embedding has %d dimensions; this store holds %d-dimensional embeddings (configure the dimension to match the embedding model)", ErrInvalid, len(v), dim)
	}
	return nil
}

// DetectorState is the saved state of an online detector. Version grows by
// one with every save; a save must name the version it read, so two
// workers updating one detector at once cannot lose an update.
type DetectorState struct {
	Key     string          `json:"key"`
	Version int64           `json:"version"`
	State   json.RawMessage `json:"state"`
}

type interactiveKey struct{}

// Interactive marks ctx as a caller's request that waits for the answer
// (an API request), as opposed to background work (a worker's activity).
// A store with a single writer serves interactive writes first.
func Interactive(ctx context.Context) context.Context {
	return context.WithValue(ctx, interactiveKey{}, true)
}

// IsInteractive reports whether ctx was marked by Interactive.
func IsInteractive(ctx context.Context) bool {
	v, _ := ctx.Value(interactiveKey{}).(bool)
	return v
}

// ChangedClassifiers are the classifiers whose examples version an example
// written as e changes, was being the example stored before under its id
// (nil for a new one): e's classifier, and the one it belonged to when it
// moves; none when it teaches nothing new (the same text, label and
// fields: a retried write, or one taken back after a restore), so that its
// models do not retrain for it.
func ChangedClassifiers(e Example, was *Example) []string {
	switch {
	case was == nil:
		return []string{e.Classifier}
	case was.Classifier != e.Classifier:
		return []string{e.Classifier, was.Classifier}
	case was.Text == e.Text && was.Label == e.Label && bytes.Equal(was.Fields, e.Fields):
		return nil
	}
	return []string{e.Classifier}
}

// ExampleLabels are the labels of a classifier's stored examples.
func (r Reads) ExampleLabels(ctx context.Context, classifier string) (map[string]bool, error) {
	counts, err := r.ExampleCounts(ctx, classifier)
	out := make(map[string]bool, len(counts))
	for l := range counts {
		out[l] = true
	}
	return out, err
}

// ExampleCounts are how many examples a classifier holds of each label.
func (r Reads) ExampleCounts(ctx context.Context, classifier string) (map[string]int, error) {
	return r.CountBy(ctx, "example counts", `SELECT label, count(*) FROM examples WHERE classifier = `+r.ph(1)+` GROUP BY label`, classifier)
}

// ExampleFilter selects a page of a classifier's examples, newest first.
type ExampleFilter struct {
	Classifier string
	Label      string
	// Source keeps the examples of a source: "review" those of every
	// reviewer (review:NAME), "review:ann" Ann's, "api" those added
	// through the API by any key.
	Source string
	// Text keeps the examples whose text holds it, regardless of the case
	// of any of its letters (the store's Dialect.Lower).
	Text string
	// After is the cursor of the last example of the previous page.
	After string
	Limit int
}

// MaxExamplePage is the most examples one page holds.
const MaxExamplePage = 1000

// ExampleCursor is the cursor that continues a listing after e.
func ExampleCursor(e Example) string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%d.%s", e.CreatedAt.UnixMicro(), e.ID))
}

// exampleColumns are the columns scanExample reads.
const exampleColumns = `id, classifier, text, label, fields, source, created_at`

// scanExample reads an example of exampleColumns, without its embedding.
func scanExample(scan func(dest ...any) error) (Example, error) {
	var e Example
	var fields string
	var at int64
	err := scan(&e.ID, &e.Classifier, &e.Text, &e.Label, &fields, &e.Source, &at)
	if fields != "" {
		e.Fields = json.RawMessage(fields)
	}
	e.CreatedAt = time.UnixMicro(at).UTC()
	return e, err
}

// readExamples runs a query of exampleColumns.
func (r Reads) readExamples(ctx context.Context, what, q string, args []any) ([]Example, error) {
	out := []Example{}
	err := r.rows(ctx, what, q, args, func(scan func(dest ...any) error) error {
		e, err := scanExample(scan)
		out = append(out, e)
		return err
	})
	return out, err
}

// ExamplesOf lists the examples of a classifier, oldest first, without
// their embeddings.
func (r Reads) ExamplesOf(ctx context.Context, classifier string) ([]Example, error) {
	return r.readExamples(ctx, "examples", `SELECT `+exampleColumns+` FROM examples WHERE classifier = `+r.ph(1)+` ORDER BY created_at, id`, []any{classifier})
}

// exampleConditions are the SQL conditions of the examples a filter keeps
// (its classifier, label, source and text; not its page), with their
// parameters added to p.
func exampleConditions(f ExampleFilter, p *params, lower func(string) string) []string {
	arg := p.add
	where := []string{"classifier = " + arg(f.Classifier)}
	if f.Label != "" {
		where = append(where, "label = "+arg(f.Label))
	}
	if f.Source != "" {
		// The source itself, or one of its names (review:ann for review).
		where = append(where, fmt.Sprintf("(source = %s OR substr(source, 1, %s) = %s)", arg(f.Source), arg(len(f.Source)+1), arg(f.Source+":")))
	}
	if f.Text != "" {
		esc := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(strings.ToLower(f.Text))
		fold := lower("text")
		if isASCII(f.Text) {
			// The database's own lower() folds ASCII's letters in any
			// locale, and is the faster (twice, in SQLite, against a
			// function of Go's); only a letter or two of others lower to
			// ASCII (the Kelvin sign's "k"), not found so.
			fold = "lower(text)"
		}
		where = append(where, fold+" LIKE "+arg("%"+esc+"%")+` ESCAPE '\'`)
	}
	return where
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// ExamplesPage lists a page of a classifier's examples, newest first,
// without their embeddings. A malformed cursor is ErrInvalid.
func (r Reads) ExamplesPage(ctx context.Context, f ExampleFilter) ([]Example, error) {
	p := &params{ph: r.ph}
	where := exampleConditions(f, p, r.d.Lower)
	if f.After != "" {
		raw, err := base64.RawURLEncoding.DecodeString(f.After)
		at, id, ok := strings.Cut(string(raw), ".")
		micros, perr := strconv.ParseInt(at, 10, 64)
		if err != nil || !ok || perr != nil {
			return nil, fmt.Errorf("%w: malformed cursor", ErrInvalid)
		}
		where = append(where, fmt.Sprintf("(created_at, id) < (%s, %s)", p.add(micros), p.add(id)))
	}
	limit := f.Limit
	if limit <= 0 || limit > MaxExamplePage {
		limit = 100
	}
	q := `SELECT ` + exampleColumns + ` FROM examples WHERE ` + strings.Join(where, " AND ") + ` ORDER BY created_at DESC, id DESC LIMIT ` + p.add(limit)
	return r.readExamples(ctx, "examples page", q, p.args)
}

// DeleteExamplesQuery is the DELETE of the examples a filter keeps (its
// page aside), for SQL stores of dialect d.
func DeleteExamplesQuery(f ExampleFilter, d Dialect) (string, []any) {
	p := &params{ph: d.Placeholder}
	return `DELETE FROM examples WHERE ` + strings.Join(exampleConditions(f, p, d.Lower), " AND "), p.args
}
