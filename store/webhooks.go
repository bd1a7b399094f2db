package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// UndeliveredWebhook is a webhook (an instance callback, a review
// escalation) that adaptflow gave up delivering: its receiver answered
// 4xx, or did not answer 2xx to the last of its attempts. It is kept,
// body and all, until someone redelivers it or its instance is pruned,
// so the business system can be told after all.
type UndeliveredWebhook struct {
	ID         int64  `json:"id"`
	Process    string `json:"process"`
	InstanceID string `json:"instance_id"`
	Event      string `json:"event"` // instance.completed, review.escalated, ...
	URL        string `json:"url"`
	// Key is the Idempotency-Key it is sent with, again on redelivery:
	// a receiver that had it after all drops the repeat.
	Key  string          `json:"idempotency_key"`
	Body json.RawMessage `json:"body"`
	// Attempts counts the tries so far, redeliveries included.
	Attempts int `json:"attempts"`
	// Error is why the last attempt failed.
	Error string `json:"error"`
	// FailedAt is when the last attempt failed.
	FailedAt time.Time `json:"failed_at"`
	// RedeliveredAt and RedeliveredBy, once set, say when and by whom (an
	// API key's name) it was delivered after all.
	RedeliveredAt *time.Time `json:"redelivered_at,omitempty"`
	RedeliveredBy string     `json:"redelivered_by,omitempty"`
	// SendingUntil, while set, is how long a redelivery under way holds
	// it (ClaimWebhookRedelivery).
	SendingUntil *time.Time `json:"-"`
}

// Statuses of undelivered webhooks, for WebhookFilter.Status.
const (
	WebhookPending     = "pending"     // not redelivered yet
	WebhookRedelivered = "redelivered" // delivered after all
)

// WebhookFilter selects undelivered webhooks; zero fields match
// everything. They are listed newest first.
type WebhookFilter struct {
	// Processes, when set, limits the listing to these processes (an API
	// key limited to them).
	Processes  []string
	Process    string
	InstanceID string
	Status     string // WebhookPending, WebhookRedelivered or "" for both
	Before     int64  // ids below this one (the next page)
	Limit      int    // at most MaxWebhookPage (the default)
}

// MaxWebhookPage is the most undelivered webhooks one listing returns.
const MaxWebhookPage = 500

// webhookColumns are the columns scanUndeliveredWebhook reads, in order.
const webhookColumns = `id, process, instance_id, event, url, idempotency_key, body, attempts, error, failed_at, redelivered_at, redelivered_by, sending_until`

// addUndeliveredWebhookQuery keeps a webhook given up, for SQL stores,
// with the parameters process, instance id, event, url, key, body,
// attempts, error and time (micros); see Numbered. The same event given
// up again (its instance retried) is one row, pending again.
const addUndeliveredWebhookQuery = `INSERT INTO undelivered_webhooks (process, instance_id, event, url, idempotency_key, body, attempts, error, failed_at)
	VALUES ({1}, {2}, {3}, {4}, {5}, {6}, {7}, {8}, {9})
	ON CONFLICT (idempotency_key, url) DO UPDATE SET body = excluded.body, attempts = undelivered_webhooks.attempts + excluded.attempts,
		error = excluded.error, failed_at = excluded.failed_at, redelivered_at = NULL, redelivered_by = '', sending_until = NULL
	RETURNING ` + webhookColumns

// redeliveredWebhookQuery marks a pending webhook delivered after all,
// with the parameters id, who and when (micros), counting the attempt;
// see Numbered. No row: it is not pending (or not there).
const redeliveredWebhookQuery = `UPDATE undelivered_webhooks SET redelivered_at = {3}, redelivered_by = {2}, attempts = attempts + 1, sending_until = NULL
	WHERE id = {1} AND redelivered_at IS NULL RETURNING ` + webhookColumns

// redeliveryFailedQuery counts a failed redelivery of a pending webhook,
// with the parameters id, the error and when (micros); see Numbered.
const redeliveryFailedQuery = `UPDATE undelivered_webhooks SET attempts = attempts + 1, error = {2}, failed_at = {3}, sending_until = NULL
	WHERE id = {1} AND redelivered_at IS NULL RETURNING ` + webhookColumns

// claimRedeliveryQuery holds a pending webhook for a redelivery, with the
// parameters id, until and now (micros); see Numbered. No row: it is not
// pending, or another redelivery holds it.
const claimRedeliveryQuery = `UPDATE undelivered_webhooks SET sending_until = {2}
	WHERE id = {1} AND redelivered_at IS NULL AND (sending_until IS NULL OR sending_until <= {3}) RETURNING ` + webhookColumns

// scanUndeliveredWebhook reads one row of webhookColumns.
func scanUndeliveredWebhook(scan func(dest ...any) error) (UndeliveredWebhook, error) {
	var w UndeliveredWebhook
	var body string
	var failed int64
	var redelivered, sending *int64
	if err := scan(&w.ID, &w.Process, &w.InstanceID, &w.Event, &w.URL, &w.Key, &body, &w.Attempts, &w.Error, &failed, &redelivered, &w.RedeliveredBy, &sending); err != nil {
		return w, err
	}
	if sending != nil {
		t := time.UnixMicro(*sending).UTC()
		w.SendingUntil = &t
	}
	w.Body = json.RawMessage(body)
	w.FailedAt = time.UnixMicro(failed).UTC()
	if redelivered != nil {
		t := time.UnixMicro(*redelivered).UTC()
		w.RedeliveredAt = &t
	}
	return w, nil
}

// validUndeliveredWebhook checks a webhook before it is kept.
func validUndeliveredWebhook(w UndeliveredWebhook) error {
	switch {
	case w.URL == "":
		return fmt.Errorf("%w: undelivered webhook: no url", ErrInvalid)
	case w.Key == "":
		return fmt.Errorf("%w: undelivered webhook: no idempotency key", ErrInvalid)
	case !json.Valid(w.Body):
		return fmt.Errorf("%w: undelivered webhook: its body is not JSON", ErrInvalid)
	case w.Attempts < 1:
		return fmt.Errorf("%w: undelivered webhook: no attempt", ErrInvalid)
	}
	return nil
}

// UndeliveredWebhooks lists the undelivered webhooks f selects, newest
// first.
func (r Reads) UndeliveredWebhooks(ctx context.Context, f WebhookFilter) ([]UndeliveredWebhook, error) {
	p := &params{ph: r.ph}
	var where []string
	if len(f.Processes) > 0 {
		where = append(where, "process IN ("+p.list(f.Processes)+")")
	}
	if f.Process != "" {
		where = append(where, "process = "+p.add(f.Process))
	}
	if f.InstanceID != "" {
		where = append(where, "instance_id = "+p.add(f.InstanceID))
	}
	switch f.Status {
	case "":
	case WebhookPending:
		where = append(where, "redelivered_at IS NULL")
	case WebhookRedelivered:
		where = append(where, "redelivered_at IS NOT NULL")
	default:
		return nil, fmt.Errorf("%w: undelivered webhooks: status %q is neither %s nor %s", ErrInvalid, f.Status, WebhookPending, WebhookRedelivered)
	}
	if f.Before > 0 {
		where = append(where, "id < "+p.add(f.Before))
	}
	limit := f.Limit
	if limit <= 0 || limit > MaxWebhookPage {
		limit = MaxWebhookPage
	}
	q := `SELECT ` + webhookColumns + ` FROM undelivered_webhooks`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += fmt.Sprintf(` ORDER BY id DESC LIMIT %d`, limit)
	out := []UndeliveredWebhook{}
	err := r.rows(ctx, "undelivered webhooks", q, p.args, func(scan func(dest ...any) error) error {
		w, err := scanUndeliveredWebhook(scan)
		out = append(out, w)
		return err
	})
	return out, err
}

// UndeliveredWebhook reads one undelivered webhook: ErrNotFound when
// there is none of that id.
func (r Reads) UndeliveredWebhook(ctx context.Context, id int64) (UndeliveredWebhook, error) {
	var w UndeliveredWebhook
	found := false
	p := &params{ph: r.ph}
	q := `SELECT ` + webhookColumns + ` FROM undelivered_webhooks WHERE id = ` + p.add(id)
	err := r.rows(ctx, "undelivered webhook", q, p.args, func(scan func(dest ...any) error) error {
		var err error
		w, err = scanUndeliveredWebhook(scan)
		found = true
		return err
	})
	if err == nil && !found {
		err = fmt.Errorf("undelivered webhook %d: %w", id, ErrNotFound)
	}
	return w, err
}

// PendingWebhooks counts the webhooks waiting for a redelivery, by
// process.
func (r Reads) PendingWebhooks(ctx context.Context) (map[string]int, error) {
	return r.CountBy(ctx, "pending webhooks", `SELECT process, COUNT(*) FROM undelivered_webhooks WHERE redelivered_at IS NULL GROUP BY process`)
}

// AddUndeliveredWebhook keeps a webhook given up (see
// UndeliveredWebhook): the same event given up again is the same row,
// pending again.
func (c Changes) AddUndeliveredWebhook(ctx context.Context, w UndeliveredWebhook) (UndeliveredWebhook, error) {
	if err := validUndeliveredWebhook(w); err != nil {
		return w, err
	}
	return c.webhookRow(ctx, "keep undelivered webhook", c.addWebhook, 0,
		w.Process, w.InstanceID, w.Event, w.URL, w.Key, string(w.Body), w.Attempts, w.Error, w.FailedAt.UnixMicro())
}

// WebhookRedelivered marks a pending webhook delivered after all, by who
// at at: ErrNotFound, or ErrConflict when it was redelivered already.
func (c Changes) WebhookRedelivered(ctx context.Context, id int64, by string, at time.Time) (UndeliveredWebhook, error) {
	return c.webhookRow(ctx, "mark webhook redelivered", c.webhookRedelivered, id, id, by, at.UnixMicro())
}

// WebhookRedeliveryFailed counts a failed redelivery of a pending webhook.
func (c Changes) WebhookRedeliveryFailed(ctx context.Context, id int64, reason string, at time.Time) (UndeliveredWebhook, error) {
	return c.webhookRow(ctx, "count failed redelivery", c.webhookFailed, id, id, reason, at.UnixMicro())
}

// ClaimWebhookRedelivery holds a pending webhook for the caller's
// redelivery until until, so that a second one at once (another
// person's, another replica's) does not send it too: ErrConflict while
// another holds it, or once it was redelivered; ErrNotFound. Its outcome
// (WebhookRedelivered, WebhookRedeliveryFailed) lets it go; a redelivery
// that never reports one (its server crashed) holds it until until.
func (c Changes) ClaimWebhookRedelivery(ctx context.Context, id int64, now, until time.Time) (UndeliveredWebhook, error) {
	return c.webhookRow(ctx, "claim webhook redelivery", c.claimRedelivery, id, id, until.UnixMicro(), now.UnixMicro())
}

// webhookRow runs a write that returns a webhook's row; none is the
// pending webhook id missing (see webhookNotPending).
func (c Changes) webhookRow(ctx context.Context, op, q string, id int64, args ...any) (UndeliveredWebhook, error) {
	var w UndeliveredWebhook
	found := false
	err := c.writeRows(ctx, op, q, args, func(scan func(dest ...any) error) error {
		var err error
		w, err = scanUndeliveredWebhook(scan)
		found = true
		return err
	})
	if err == nil && !found {
		err = webhookNotPending(ctx, c.reads, id)
	}
	return w, err
}

// webhookNotPending is the error of a redelivery's claim or record when
// the webhook is not pending: ErrNotFound, or ErrConflict when it was
// redelivered already or another redelivery holds it.
func webhookNotPending(ctx context.Context, r Reads, id int64) error {
	w, err := r.UndeliveredWebhook(ctx, id)
	if err != nil {
		return err
	}
	if w.RedeliveredAt == nil && w.SendingUntil != nil {
		return fmt.Errorf("undelivered webhook %d is being redelivered by another request (held until %s at the latest): %w", id, w.SendingUntil.Format(time.RFC3339), ErrConflict)
	}
	if w.RedeliveredAt == nil {
		return fmt.Errorf("undelivered webhook %d is not pending: %w", id, ErrConflict)
	}
	return fmt.Errorf("undelivered webhook %d was redelivered already (%s by %s): %w", id, w.RedeliveredAt.Format(time.RFC3339), w.RedeliveredBy, ErrConflict)
}
