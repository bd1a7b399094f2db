package store

import (
	"context"
	"time"
)

// Execer runs a statement and says how many rows it changed: a store's,
// for Changes; op names the statement in its errors.
type Execer func(ctx context.Context, op, sql string, args ...any) (int64, error)

// Changes are the one-row writes both stores share, written once over a
// store's Execer, its Reader on the connection that writes (for writes
// that return their row), its shared reads, and its placeholder mark (see
// Numbered); each store embeds them (NewChanges).
type Changes struct {
	exec                                          Execer
	writeRows                                     Reader
	reads                                         Reads
	queueRetry, takeQueuedRetry, dropQueuedRetry  string
	addWebhook, webhookRedelivered, webhookFailed string
	claimRedelivery                               string
	putEvaluation                                 string
}

// NewChanges makes the shared writes of a store.
func NewChanges(exec Execer, writeRows Reader, reads Reads, mark string) Changes {
	return Changes{exec: exec, writeRows: writeRows, reads: reads,
		queueRetry:         Numbered(QueueRetryQuery, mark),
		takeQueuedRetry:    Numbered(TakeQueuedRetryQuery, mark),
		dropQueuedRetry:    Numbered(DropQueuedRetryQuery, mark),
		addWebhook:         Numbered(addUndeliveredWebhookQuery, mark),
		webhookRedelivered: Numbered(redeliveredWebhookQuery, mark),
		webhookFailed:      Numbered(redeliveryFailedQuery, mark),
		claimRedelivery:    Numbered(claimRedeliveryQuery, mark),
		putEvaluation:      Numbered(putEvaluationQuery, mark),
	}
}

// QueueRetry queues the retry of a failed instance, reason saying who
// asked and why, for a slot under its process's concurrency limit or its
// process's resume (QueueRetryQuery): false when one is queued already,
// or the instance has not failed.
func (c Changes) QueueRetry(ctx context.Context, id, reason string) (bool, error) {
	return c.one(ctx, "queue retry", c.queueRetry, id, reason, true)
}

// TakeQueuedRetry takes a queued retry that holds its slot for the
// caller to run (TakeQueuedRetryQuery): false when another took it.
func (c Changes) TakeQueuedRetry(ctx context.Context, id string, now time.Time) (bool, error) {
	return c.one(ctx, "take queued retry", c.takeQueuedRetry, id, now.UnixMicro(), false)
}

// DropQueuedRetry withdraws a retry still waiting in the queue
// (DropQueuedRetryQuery): false when none waits there.
func (c Changes) DropQueuedRetry(ctx context.Context, id string) (bool, error) {
	return c.one(ctx, "drop queued retry", c.dropQueuedRetry, id, false)
}

// one runs a statement that changes one row, or none: whether it did.
func (c Changes) one(ctx context.Context, op, q string, args ...any) (bool, error) {
	n, err := c.exec(ctx, op, q, args...)
	return n == 1, err
}
