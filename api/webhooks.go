package api

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/adaptflow/adaptflow/activities"
	"github.com/adaptflow/adaptflow/store"
)

// WebhookStore lists the webhooks given up and records their redeliveries.
type WebhookStore interface {
	UndeliveredWebhooks(ctx context.Context, f store.WebhookFilter) ([]store.UndeliveredWebhook, error)
	UndeliveredWebhook(ctx context.Context, id int64) (store.UndeliveredWebhook, error)
	WebhookRedelivered(ctx context.Context, id int64, by string, at time.Time) (store.UndeliveredWebhook, error)
	WebhookRedeliveryFailed(ctx context.Context, id int64, reason string, at time.Time) (store.UndeliveredWebhook, error)
	ClaimWebhookRedelivery(ctx context.Context, id int64, now, until time.Time) (store.UndeliveredWebhook, error)
	PendingWebhooks(ctx context.Context) (map[string]int, error)
}

// redeliveryTimeout bounds one redelivery: the receiver's answer, as a
// workflow's attempt is bounded.
const redeliveryTimeout = 30 * time.Second

// redeliveryHold is how long a redelivery holds its webhook against a
// second one at once: its timeout, and leeway for the replicas' clocks
// and the record of its outcome. A server that crashes mid-send leaves
// it held that long.
const redeliveryHold = 2 * redeliveryTimeout

// listUndeliveredWebhooks answers GET /v1/webhooks/undelivered: the
// webhooks given up, newest first, pending ones by default.
func (s *server) listUndeliveredWebhooks(c *gin.Context) {
	f := store.WebhookFilter{Processes: caller(c).Processes, Process: c.Query("process"), InstanceID: c.Query("instance_id")}
	switch st := c.DefaultQuery("status", store.WebhookPending); st {
	case store.WebhookPending, store.WebhookRedelivered:
		f.Status = st
	case "all":
	default:
		fail(c, badRequest("status", "must be pending, redelivered or all (got %q)", st))
		return
	}
	var err error
	if f.Limit, err = intParam(c, "limit", 100, 1, store.MaxWebhookPage); err != nil {
		fail(c, err)
		return
	}
	if v := c.Query("after"); v != "" {
		if f.Before, err = strconv.ParseInt(v, 10, 64); err != nil || f.Before < 1 {
			fail(c, badRequest("after", "is not a cursor this listing gave out"))
			return
		}
	}
	list, err := s.Webhooks.UndeliveredWebhooks(c.Request.Context(), f)
	if err != nil {
		fail(c, err)
		return
	}
	out := gin.H{"webhooks": list}
	if len(list) == f.Limit {
		out["next"] = strconv.FormatInt(list[len(list)-1].ID, 10)
	}
	c.JSON(http.StatusOK, out)
}

// undeliveredWebhook reads the webhook the path names, refusing (403) one
// of a process the caller's key may not touch.
func (s *server) undeliveredWebhook(c *gin.Context) (store.UndeliveredWebhook, bool) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id < 1 {
		fail(c, badRequest("id", "must be the number of an undelivered webhook (got %q)", c.Param("id")))
		return store.UndeliveredWebhook{}, false
	}
	w, err := s.Webhooks.UndeliveredWebhook(c.Request.Context(), id)
	if err == nil {
		err = allowProcess(c, w.Process)
	}
	if err != nil {
		fail(c, err)
		return w, false
	}
	return w, true
}

// getUndeliveredWebhook answers GET /v1/webhooks/undelivered/{id}.
func (s *server) getUndeliveredWebhook(c *gin.Context) {
	if w, ok := s.undeliveredWebhook(c); ok {
		c.JSON(http.StatusOK, w)
	}
}

// redeliverWebhook answers POST /v1/webhooks/undelivered/{id}/redeliver:
// it sends the webhook again, as its workflow did (the same body and
// Idempotency-Key, signed anew), once. Delivered, it is marked so (200);
// refused or unanswered, it stays pending, the attempt counted, and the
// answer is 502 with the receiver's answer. The webhook is held while it
// is sent: a second redelivery meanwhile is refused (409), not sent too.
func (s *server) redeliverWebhook(c *gin.Context) {
	w, ok := s.undeliveredWebhook(c) // 404, and a key limited to other processes
	if !ok {
		return
	}
	ctx := c.Request.Context()
	claimed := time.Now()
	// 409 once redelivered, or while another redelivery holds it.
	w, err := s.Webhooks.ClaimWebhookRedelivery(ctx, w.ID, claimed, claimed.Add(redeliveryHold))
	if err != nil {
		fail(c, err)
		return
	}
	// The outcome is recorded even when the caller goes away meanwhile:
	// the webhook is sent by then, or not.
	ctx = context.WithoutCancel(ctx)
	pctx, cancel := context.WithTimeout(ctx, redeliveryTimeout)
	sendErr := activities.PostWebhook(pctx, s.webhookClient(), s.WebhookSecret, w.URL, w.Key, w.Body)
	cancel()
	now := time.Now().UTC()
	if sendErr != nil {
		if _, err := s.Webhooks.WebhookRedeliveryFailed(ctx, w.ID, sendErr.Error(), now); err != nil {
			fail(c, err)
			return
		}
		s.Logger.Warn("webhook redelivery failed", "webhook", w.ID, "process", w.Process, "instance", w.InstanceID, "event", w.Event, "url", w.URL, "err", sendErr)
		fail(c, &httpError{status: http.StatusBadGateway, code: "webhook_not_delivered",
			msg: "undelivered webhook " + strconv.FormatInt(w.ID, 10) + " was not delivered again, and stays pending: " + sendErr.Error()})
		return
	}
	w, err = s.Webhooks.WebhookRedelivered(ctx, w.ID, caller(c).Name, now)
	if err != nil {
		fail(c, err)
		return
	}
	s.Logger.Info("webhook redelivered", "webhook", w.ID, "process", w.Process, "instance", w.InstanceID, "event", w.Event, "url", w.URL, "by", w.RedeliveredBy)
	c.JSON(http.StatusOK, w)
}

func (s *server) webhookClient() *http.Client {
	if s.WebhookClient != nil {
		return s.WebhookClient
	}
	return http.DefaultClient
}
