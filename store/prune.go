package store

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/adaptflow/adaptflow/process"
)

// Pruned counts the rows a prune removed, by what they were.
type Pruned struct {
	Instances    int64 `json:"instances"`
	Decisions    int64 `json:"decisions"`
	Reviews      int64 `json:"reviews"`
	Verdicts     int64 `json:"verdicts"`
	Observations int64 `json:"observations"`
	AuditEntries int64 `json:"audit_entries"`
	// Webhooks are the undelivered webhooks kept of the instances pruned.
	Webhooks int64 `json:"webhooks"`
}

// Total is every row removed.
func (p Pruned) Total() int64 {
	return p.Instances + p.Decisions + p.Reviews + p.Verdicts + p.Observations + p.AuditEntries + p.Webhooks
}

// Add sums two prunes.
func (p Pruned) Add(q Pruned) Pruned {
	return Pruned{
		Instances: p.Instances + q.Instances, Decisions: p.Decisions + q.Decisions, Reviews: p.Reviews + q.Reviews,
		Verdicts: p.Verdicts + q.Verdicts, Observations: p.Observations + q.Observations, AuditEntries: p.AuditEntries + q.AuditEntries,
		Webhooks: p.Webhooks + q.Webhooks,
	}
}

// PruneTx is what a prune needs of one of a store's write transactions.
type PruneTx interface {
	// Exec runs a statement and says how many rows it changed.
	Exec(ctx context.Context, sql string, args ...any) (int64, error)
	// IDs reads the one text column a query returns.
	IDs(ctx context.Context, sql string, args ...any) ([]string, error)
}

// Pruner is how a store runs a prune: its shared reads (their reader and
// placeholders), the clause that locks the instances a transaction prunes
// (PostgreSQL's FOR UPDATE SKIP LOCKED, so that replicas pruning at once
// take other instances and an instance being retried waits; nothing for
// SQLite, whose writers take turns), and a write transaction.
type Pruner struct {
	Reads Reads
	Lock  string
	Tx    func(ctx context.Context, fn func(PruneTx) error) error
}

// pruneInstances and pruneRows bound what one transaction of a prune
// removes, so that no transaction holds the store long.
const (
	pruneInstances = 200
	pruneRows      = 5000
)

// Prune removes what is older than before, in short transactions:
//   - the instances that ended before it, each whole: its decision records
//     (every run's chain, so `audit verify` finds no gap), its reviews and
//     the verdicts given on them, its undelivered webhooks, then the
//     instance; an instance still running, or ended since, stays, however
//     old;
//   - the observations of signals made before it (a detector's state is
//     kept apart and stays: detection goes on as before; the history
//     reports start later), but those of an instance still running, or
//     whose retry is queued, which stay until it ends;
//   - the entries of the audit log made before it.
//
// Labeled examples (reviewers' corrections included), definitions,
// policies and their versions, and keys are never pruned. A prune stopped
// half-way (a crash, a canceled ctx) has removed whole instances only;
// running it again goes on.
func Prune(ctx context.Context, p Pruner, before time.Time) (Pruned, error) {
	return prune(ctx, p, "", before)
}

// PruneProcess is Prune for one process's data only: its instances that
// ended before, each whole, and its signals' observations made before
// (a process's own retention, shorter than the store's). The audit log
// is the store's.
func PruneProcess(ctx context.Context, p Pruner, process string, before time.Time) (Pruned, error) {
	if process == "" {
		return Pruned{}, fmt.Errorf("%w: prune of a process: no process", ErrInvalid)
	}
	return prune(ctx, p, process, before)
}

// prune is Prune, or PruneProcess when process is not empty.
func prune(ctx context.Context, p Pruner, process string, before time.Time) (Pruned, error) {
	var out Pruned
	cut := before.UnixMicro()
	ph := p.Reads.ph
	for {
		var n Pruned
		err := p.Tx(ctx, func(tx PruneTx) error {
			q, args := fmt.Sprintf(`SELECT id FROM instances WHERE finished_at < %s AND retry_queued = '' ORDER BY finished_at, id LIMIT %d%s`, ph(1), pruneInstances, p.Lock), []any{cut}
			if process != "" {
				q, args = fmt.Sprintf(`SELECT id FROM instances WHERE process = %s AND finished_at < %s AND retry_queued = '' ORDER BY finished_at, id LIMIT %d%s`, ph(1), ph(2), pruneInstances, p.Lock), []any{process, cut}
			}
			ids, err := tx.IDs(ctx, q, args...)
			if err != nil || len(ids) == 0 {
				return err
			}
			in := params{ph: ph}
			list := in.list(ids)
			for _, s := range []struct {
				n   *int64
				sql string
			}{
				{&n.Verdicts, `DELETE FROM verdicts WHERE review_id IN (SELECT id FROM reviews WHERE instance_id IN (` + list + `))`},
				{&n.Reviews, `DELETE FROM reviews WHERE instance_id IN (` + list + `)`},
				{&n.Decisions, `DELETE FROM decisions WHERE instance_id IN (` + list + `)`},
				{&n.Webhooks, `DELETE FROM undelivered_webhooks WHERE instance_id IN (` + list + `)`},
				{&n.Instances, `DELETE FROM instances WHERE id IN (` + list + `)`},
			} {
				if *s.n, err = tx.Exec(ctx, s.sql, in.args...); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return out, fmt.Errorf("prune instances: %w", err)
		}
		out = out.Add(n)
		if n.Instances < pruneInstances {
			break
		}
	}
	// Observations, signal by signal, through the index on (process,
	// signal, at): the next signal is one seek past the last.
	var signal string
	of := process // "" for every process
	for first := true; ; first = false {
		q := `SELECT process, signal FROM observations ORDER BY process, signal LIMIT 1`
		var args []any
		switch {
		case of != "" && first:
			q, args = fmt.Sprintf(`SELECT process, signal FROM observations WHERE process = %s ORDER BY process, signal LIMIT 1`, ph(1)), []any{of}
		case of != "":
			q = fmt.Sprintf(`SELECT process, signal FROM observations WHERE process = %s AND signal > %s ORDER BY process, signal LIMIT 1`, ph(1), ph(2))
			args = []any{of, signal}
		case !first:
			q = fmt.Sprintf(`SELECT process, signal FROM observations WHERE (process, signal) > (%s, %s) ORDER BY process, signal LIMIT 1`, ph(1), ph(2))
			args = []any{process, signal}
		}
		found := false
		err := p.Reads.rows(ctx, "prune: next signal", q, args, func(scan func(dest ...any) error) error {
			found = true
			return scan(&process, &signal)
		})
		if err != nil {
			return out, err
		}
		if !found {
			break
		}
		del := fmt.Sprintf(`DELETE FROM observations WHERE seq IN (SELECT seq FROM observations WHERE process = %s AND signal = %s AND at < %s AND NOT (%s) ORDER BY at LIMIT %d)`, ph(1), ph(2), ph(3), observationKept, pruneRows)
		n, err := pruneRowsOf(ctx, p, del, process, signal, cut)
		out.Observations += n
		if err != nil {
			return out, fmt.Errorf("prune observations of %s/%s: %w", process, signal, err)
		}
	}
	if of != "" {
		return out, nil // the audit log is the store's
	}
	del := fmt.Sprintf(`DELETE FROM audit_log WHERE seq IN (SELECT seq FROM audit_log WHERE at < %s ORDER BY at LIMIT %d)`, ph(1), pruneRows)
	n, err := pruneRowsOf(ctx, p, del, cut)
	out.AuditEntries += n
	if err != nil {
		return out, fmt.Errorf("prune audit log: %w", err)
	}
	return out, nil
}

// observationKept is, in SQL, whether an observation stays whatever its
// age: its instance has not ended, or has a retry queued. Such an
// instance's decisions may run again (a retry, a decision retried after
// a long wait), and find their observation kept rather than observe the
// value a second time.
const observationKept = `instance_id <> '' AND EXISTS (SELECT 1 FROM instances i WHERE i.id = observations.instance_id AND (i.finished_at IS NULL OR i.retry_queued <> ''))`

// pruneRowsOf runs a statement that deletes up to pruneRows rows until it
// deletes fewer, one transaction each, and says how many it deleted.
func pruneRowsOf(ctx context.Context, p Pruner, del string, args ...any) (int64, error) {
	var total int64
	for {
		var n int64
		err := p.Tx(ctx, func(tx PruneTx) error {
			var err error
			n, err = tx.Exec(ctx, del, args...)
			return err
		})
		total += n
		if err != nil || n < pruneRows {
			return total, err
		}
	}
}

// PrunePlan is what one prune removes: what is older than Before (zero:
// nothing by age alone), and, for each process in Processes, its own data
// older than the time given (its definition's retention).
type PrunePlan struct {
	Before    time.Time
	Processes map[string]time.Time
}

// Empty reports whether the plan removes nothing.
func (p PrunePlan) Empty() bool { return p.Before.IsZero() && len(p.Processes) == 0 }

// RetentionPlan is the plan of a prune at now: for each process whose
// latest definition (recs, one per process) declares a retention, its
// data older than that; and, with a store retention (0: none),
// everything older than it.
func RetentionPlan(recs []DefinitionRecord, retention time.Duration, now time.Time) (PrunePlan, error) {
	var plan PrunePlan
	if retention > 0 {
		plan.Before = now.Add(-retention)
	}
	for _, rec := range recs {
		var def process.Definition
		if err := json.Unmarshal(rec.Doc, &def); err != nil {
			return plan, fmt.Errorf("definition %s@%d: %w", rec.Name, rec.Version, err)
		}
		if r := def.RetentionDuration(); r > 0 {
			if plan.Processes == nil {
				plan.Processes = map[string]time.Time{}
			}
			plan.Processes[def.Name] = now.Add(-r)
		}
	}
	return plan, nil
}

// PruneStore is a store that prunes.
type PruneStore interface {
	Prune(ctx context.Context, before time.Time) (Pruned, error)
	PruneProcess(ctx context.Context, process string, before time.Time) (Pruned, error)
}

// PruneByPlan runs a plan: each process's own prune (PruneProcess), in
// the order of their names, then the store's (Prune). It stops at the
// first that fails, with what was removed until then.
func PruneByPlan(ctx context.Context, st PruneStore, plan PrunePlan) (Pruned, error) {
	var out Pruned
	for _, name := range slices.Sorted(maps.Keys(plan.Processes)) {
		n, err := st.PruneProcess(ctx, name, plan.Processes[name])
		out = out.Add(n)
		if err != nil {
			return out, fmt.Errorf("prune of %s: %w", name, err)
		}
	}
	if plan.Before.IsZero() {
		return out, nil
	}
	n, err := st.Prune(ctx, plan.Before)
	return out.Add(n), err
}

// PruneCounts counts what a prune of the plan would remove, reading only:
// a row counts once, however many of the plan's cuts it falls under.
func (r Reads) PruneCounts(ctx context.Context, plan PrunePlan) (Pruned, error) {
	var out Pruned
	if plan.Empty() {
		return out, nil
	}
	// older is the condition that a row of a process, with its time in
	// column, falls under a cut of the plan.
	older := func(in *params, column string) string {
		var ors []string
		if !plan.Before.IsZero() {
			ors = append(ors, column+" < "+in.add(plan.Before.UnixMicro()))
		}
		for _, name := range slices.Sorted(maps.Keys(plan.Processes)) {
			ors = append(ors, "(process = "+in.add(name)+" AND "+column+" < "+in.add(plan.Processes[name].UnixMicro())+")")
		}
		return "(" + strings.Join(ors, " OR ") + ")"
	}
	count := func(n *int64, build func(in *params) string) error {
		in := params{ph: r.ph}
		q := build(&in)
		return r.rows(ctx, "count what a prune removes", q, in.args, func(scan func(dest ...any) error) error { return scan(n) })
	}
	// A failed instance whose retry is queued stays (see PruneByPlan).
	ended := func(in *params) string {
		return `SELECT id FROM instances WHERE retry_queued = '' AND ` + older(in, "finished_at")
	}
	for _, c := range []struct {
		n     *int64
		build func(in *params) string
	}{
		{&out.Instances, func(in *params) string {
			return `SELECT COUNT(*) FROM instances WHERE retry_queued = '' AND ` + older(in, "finished_at")
		}},
		{&out.Decisions, func(in *params) string {
			return `SELECT COUNT(*) FROM decisions WHERE instance_id IN (` + ended(in) + `)`
		}},
		{&out.Reviews, func(in *params) string {
			return `SELECT COUNT(*) FROM reviews WHERE instance_id IN (` + ended(in) + `)`
		}},
		{&out.Webhooks, func(in *params) string {
			return `SELECT COUNT(*) FROM undelivered_webhooks WHERE instance_id IN (` + ended(in) + `)`
		}},
		{&out.Verdicts, func(in *params) string {
			return `SELECT COUNT(*) FROM verdicts WHERE review_id IN (SELECT id FROM reviews WHERE instance_id IN (` + ended(in) + `))`
		}},
		{&out.Observations, func(in *params) string {
			return `SELECT COUNT(*) FROM observations WHERE ` + older(in, "at") + ` AND NOT (` + observationKept + `)`
		}},
	} {
		if err := count(c.n, c.build); err != nil {
			return out, err
		}
	}
	if !plan.Before.IsZero() { // the audit log is the store's
		err := count(&out.AuditEntries, func(in *params) string {
			return `SELECT COUNT(*) FROM audit_log WHERE at < ` + in.add(plan.Before.UnixMicro())
		})
		if err != nil {
			return out, err
		}
	}
	return out, nil
}
