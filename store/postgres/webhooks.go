package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/adaptflow/adaptflow/store"
)

var (
	addUndeliveredWebhookQuery = store.Numbered(store.AddUndeliveredWebhookQuery, "$")
	redeliveredWebhookQuery    = store.Numbered(store.RedeliveredWebhookQuery, "$")
	redeliveryFailedQuery      = store.Numbered(store.RedeliveryFailedQuery, "$")
)

// AddUndeliveredWebhook keeps a webhook given up: see store.UndeliveredWebhook.
func (s *Store) AddUndeliveredWebhook(ctx context.Context, w store.UndeliveredWebhook) (store.UndeliveredWebhook, error) {
	if err := store.ValidUndeliveredWebhook(w); err != nil {
		return w, err
	}
	return s.webhookRow(ctx, "keep undelivered webhook", addUndeliveredWebhookQuery, 0,
		w.Process, w.InstanceID, w.Event, w.URL, w.Key, string(w.Body), w.Attempts, w.Error, micros(w.FailedAt))
}

// WebhookRedelivered marks a pending webhook delivered after all, by who
// at at: ErrNotFound, or ErrConflict when it was redelivered already.
func (s *Store) WebhookRedelivered(ctx context.Context, id int64, by string, at time.Time) (store.UndeliveredWebhook, error) {
	return s.webhookRow(ctx, "mark webhook redelivered", redeliveredWebhookQuery, id, id, by, micros(at))
}

// WebhookRedeliveryFailed counts a failed redelivery of a pending webhook.
func (s *Store) WebhookRedeliveryFailed(ctx context.Context, id int64, reason string, at time.Time) (store.UndeliveredWebhook, error) {
	return s.webhookRow(ctx, "count failed redelivery", redeliveryFailedQuery, id, id, reason, micros(at))
}

// webhookRow runs a write that returns a webhook's row; none is the
// pending webhook id missing (see store.WebhookNotPending).
func (s *Store) webhookRow(ctx context.Context, op, q string, id int64, args ...any) (store.UndeliveredWebhook, error) {
	w, err := store.ScanUndeliveredWebhook(s.pool.QueryRow(ctx, q, args...).Scan)
	if errors.Is(err, pgx.ErrNoRows) {
		return w, store.WebhookNotPending(ctx, s.Reads, id)
	}
	if err != nil {
		return w, fmt.Errorf("postgres: %s: %w", op, err)
	}
	return w, nil
}
