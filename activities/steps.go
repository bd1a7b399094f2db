package activities

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
)

// StepInput is what a step executor sees: the step, and the facts its
// templates and assertions may read.
type StepInput struct {
	Step        process.Step
	InstanceID  string
	BusinessKey string
	Input       map[string]any
	Results     map[string]any
	Vars        map[string]any
	// Events are the events other systems sent the instance so far.
	Events map[string]policies.EventFact `json:",omitempty"`
}

// StepResult is a step's result, kept by the workflow under the step's id.
type StepResult struct {
	Output any
}

func (in StepInput) vars() map[string]any {
	f := policies.Facts{
		Input:    in.Input,
		Steps:    in.Results,
		Instance: policies.InstanceFacts{ID: in.InstanceID, BusinessKey: in.BusinessKey, Step: in.Step.ID, Vars: in.Vars},
		Events:   in.Events,
	}
	return f.Vars()
}

// Tasks are the built-in tasks a task step can name.
var Tasks = []string{"reserve_stock", "charge", "qa_check", "notify", "noop"}

// RunTask runs a built-in task. The built-ins are self-contained so the
// examples run anywhere; steps that reach real systems are http steps.
func (a *Activities) RunTask(ctx context.Context, in StepInput) (StepResult, error) {
	vars := in.vars()
	params := map[string]any{}
	if in.Step.Params != nil {
		rendered, err := a.Env.Render(ctx, map[string]any(in.Step.Params), vars)
		if err != nil {
			return StepResult{}, invalid(fmt.Sprintf("step %s: params: %v", in.Step.ID, err), err)
		}
		params = rendered.(map[string]any)
	}
	ref := func(prefix string) string {
		h := sha256.Sum256([]byte(in.InstanceID + "/" + in.Step.ID))
		return prefix + hex.EncodeToString(h[:8])
	}
	switch in.Step.Task {
	case "reserve_stock":
		items, _ := in.Input["items"].([]any)
		if len(items) == 0 {
			return StepResult{}, invalid("reserve_stock: input.items must list at least one item", nil)
		}
		units := 0.0
		for i, it := range items {
			m, _ := it.(map[string]any)
			q, ok := m["qty"].(float64)
			if !ok || q <= 0 {
				return StepResult{}, invalid(fmt.Sprintf("reserve_stock: input.items[%d].qty must be a positive number", i), nil)
			}
			units += q
		}
		return StepResult{Output: map[string]any{"reservation_id": ref("rsv_"), "lines": len(items), "units": units}}, nil
	case "charge":
		amount, ok := in.Input["amount"].(float64)
		if !ok || amount < 0 {
			return StepResult{}, invalid("charge: input.amount must be a non-negative number", nil)
		}
		currency, _ := in.Input["currency"].(string)
		if currency == "" {
			currency = "EUR"
		}
		return StepResult{Output: map[string]any{"charge_id": ref("ch_"), "amount": amount, "currency": currency, "status": "captured"}}, nil
	case "qa_check":
		checks, _ := params["checks"].([]any)
		if len(checks) == 0 {
			checks = []any{"contents", "labels"}
		}
		return StepResult{Output: map[string]any{"passed": true, "checks": checks}}, nil
	case "notify":
		channel, _ := params["channel"].(string)
		if channel == "" {
			channel = "log"
		}
		msg, _ := params["message"].(string)
		activity.GetLogger(ctx).Info("notification", "channel", channel, "instance", in.InstanceID, "message", msg)
		return StepResult{Output: map[string]any{"channel": channel, "message": msg}}, nil
	case "noop":
		return StepResult{Output: map[string]any{}}, nil
	}
	return StepResult{}, invalid(fmt.Sprintf("step %s: unknown task %q (built-ins: %s)", in.Step.ID, in.Step.Task, strings.Join(Tasks, ", ")), nil)
}

// maxResponse bounds the body an http step reads.
const maxResponse = 1 << 20

// CallHTTP performs an http step. Transport errors and 5xx answers are
// retried by the activity's retry policy; 4xx answers are not. The JSON
// response becomes the step's result.
func (a *Activities) CallHTTP(ctx context.Context, in StepInput) (StepResult, error) {
	h := in.Step.HTTP
	if h == nil {
		return StepResult{}, invalid("step "+in.Step.ID+": no http call", nil)
	}
	vars := in.vars()
	render := func(field string, v any) (any, error) {
		r, err := a.Env.Render(ctx, v, vars)
		if err != nil {
			return nil, invalid(fmt.Sprintf("step %s: http.%s: %v", in.Step.ID, field, err), err)
		}
		return r, nil
	}
	u, err := render("url", h.URL)
	if err != nil {
		return StepResult{}, err
	}
	var body io.Reader
	if h.Body != nil {
		b, err := render("body", h.Body)
		if err != nil {
			return StepResult{}, err
		}
		buf, err := json.Marshal(b)
		if err != nil {
			return StepResult{}, invalid("step "+in.Step.ID+": http.body: "+err.Error(), err)
		}
		body = bytes.NewReader(buf)
	}
	req, err := http.NewRequestWithContext(ctx, strings.ToUpper(h.Method), fmt.Sprint(u), body)
	if err != nil {
		return StepResult{}, invalid("step "+in.Step.ID+": http.url: "+err.Error(), err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Idempotency-Key", in.InstanceID+"/"+in.Step.ID)
	for k, v := range h.Headers {
		r, err := render("headers."+k, v)
		if err != nil {
			return StepResult{}, err
		}
		req.Header.Set(k, fmt.Sprint(r))
	}
	resp, err := a.httpClient().Do(req)
	if err != nil {
		return StepResult{}, fmt.Errorf("step %s: %s %s: %w", in.Step.ID, req.Method, req.URL.Redacted(), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return StepResult{}, fmt.Errorf("step %s: read response: %w", in.Step.ID, err)
	}
	if len(data) > maxResponse {
		return StepResult{}, invalid(fmt.Sprintf("step %s: response larger than %d bytes", in.Step.ID, maxResponse), nil)
	}
	switch {
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusRequestTimeout:
		return StepResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("step %s: %s %s answered %s: %s", in.Step.ID, req.Method, req.URL.Redacted(), resp.Status, snippet(data)), ErrTypeHTTPClient, nil)
	case resp.StatusCode >= 400:
		return StepResult{}, fmt.Errorf("step %s: %s %s answered %s: %s", in.Step.ID, req.Method, req.URL.Redacted(), resp.Status, snippet(data))
	}
	out := map[string]any{"status": resp.StatusCode}
	if len(bytes.TrimSpace(data)) > 0 {
		var v any
		if json.Unmarshal(data, &v) == nil {
			out["body"] = v
		} else {
			out["body"] = string(data)
		}
	}
	return StepResult{Output: out}, nil
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// Validate checks a validate step's assertions. A false assertion fails the
// step, without retries, with the assertion's text and the values it read.
func (a *Activities) Validate(ctx context.Context, in StepInput) (StepResult, error) {
	vars := policies.NewActivation(in.vars()) // prepared once for every assertion
	checked := make([]string, 0, len(in.Step.Assertions))
	for _, src := range in.Step.Assertions {
		prg, err := a.Env.Compile(src, true)
		if err != nil {
			return StepResult{}, invalid(fmt.Sprintf("step %s: assertion %q: %v", in.Step.ID, src, err), err)
		}
		r := prg.Eval(ctx, vars)
		var values []string
		for _, t := range r.Trace {
			if t.Error != "" {
				values = append(values, fmt.Sprintf("%s: error %s", t.Expr, t.Error))
			} else if t.Expr != src {
				values = append(values, fmt.Sprintf("%s = %s", t.Expr, process.JSON(t.Value)))
			}
		}
		detail := ""
		if len(values) > 0 {
			detail = " (" + strings.Join(values, "; ") + ")"
		}
		if r.Err != nil {
			return StepResult{}, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("assertion could not be evaluated: %s: %v%s", src, r.Err, detail), ErrTypeAssertionFailed, nil)
		}
		if ok, _ := r.Value.(bool); !ok {
			return StepResult{}, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("assertion failed: %s%s", src, detail), ErrTypeAssertionFailed, nil)
		}
		checked = append(checked, src)
	}
	return StepResult{Output: map[string]any{"passed": true, "assertions": checked}}, nil
}

// OpenReviewInput asks for a review record.
type OpenReviewInput struct {
	ReviewID   string
	InstanceID string
	RunID      string
	Process    string
	Step       string
	Spec       process.ReviewSpec
	PolicyID   string
	DecisionID string
	Now        time.Time
}

// ReviewID is the id of the review opened by decision seq (index i) of a run.
func ReviewID(runID string, seq, i int) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%s/%d/%d", runID, seq, i))
	return "rv_" + hex.EncodeToString(h[:12])
}

// OpenReview creates the review record (once, however often it retries).
func (a *Activities) OpenReview(ctx context.Context, in OpenReviewInput) (store.Review, error) {
	r := store.Review{
		ID: in.ReviewID, InstanceID: in.InstanceID, RunID: in.RunID, Process: in.Process,
		Step: in.Step, Queue: in.Spec.Queue, Reason: in.Spec.Reason, PolicyID: in.PolicyID,
		DecisionID: in.DecisionID, CreatedAt: in.Now.UTC(),
	}
	if in.Spec.SLA != "" {
		sla, err := process.ParseDuration(in.Spec.SLA)
		if err != nil {
			return r, invalid("review sla: "+err.Error(), err)
		}
		due := in.Now.Add(sla).UTC()
		r.DueAt = &due
	}
	return a.Reviews.CreateReview(ctx, r)
}

// CloseReviewInput records a review's outcome.
type CloseReviewInput struct {
	ReviewID string
	Status   string // decided or expired
	Verdict  string
	Reviewer string
	Comment  string
	At       time.Time
	// Lesson is what the verdict teaches the classifier, if anything: it
	// travels with the verdict, in the workflow's history, so it is kept
	// however the API that took the verdict fares after.
	Lesson *Lesson `json:",omitempty"`
}

// Lesson is what a reviewer's verdict on a classification teaches: the
// labeled example the classifier learns from (the corrected label, or the
// model's confirmed), with its embedding, and the verdict on the model's
// answer that the classifier's quality figures count.
type Lesson struct {
	Example   store.Example  `json:"example"`
	Embedding []float32      `json:"embedding"`
	Verdict   *store.Verdict `json:"verdict,omitempty"`
}

// LessonBook keeps what reviewers' verdicts teach.
type LessonBook interface {
	PutExample(ctx context.Context, e store.Example) error
	PutVerdict(ctx context.Context, v store.Verdict) error
}

// Keep writes the lesson: the example (replacing one of the same text)
// and the verdict (once per review). Both are idempotent, so a retry
// after a partial write only writes again.
func (l Lesson) Keep(ctx context.Context, to LessonBook) error {
	e := l.Example
	e.Embedding = l.Embedding
	if err := to.PutExample(ctx, e); err != nil {
		return fmt.Errorf("labeled example %s: %w", e.ID, err)
	}
	if l.Verdict != nil {
		if err := to.PutVerdict(ctx, *l.Verdict); err != nil {
			return fmt.Errorf("verdict on review %s: %w", l.Verdict.ReviewID, err)
		}
	}
	return nil
}

// CloseReview stores a review's verdict, and first what it teaches the
// classifier. A lesson the store refuses for good (an embedding of
// another dimension than the store's, after a change of embedding model)
// is logged and left: it costs a lesson, never the instance.
func (a *Activities) CloseReview(ctx context.Context, in CloseReviewInput) error {
	if in.Lesson != nil {
		switch err := a.keepLesson(ctx, *in.Lesson); {
		case errors.Is(err, store.ErrInvalid):
			a.logger().ErrorContext(ctx, "a reviewer's lesson is not kept", "review", in.ReviewID, "err", err)
		case err != nil:
			return err
		}
	}
	at := in.At.UTC()
	_, err := a.Reviews.CloseReview(ctx, store.Review{ID: in.ReviewID, Status: in.Status, Verdict: in.Verdict, Reviewer: in.Reviewer, Comment: in.Comment, DecidedAt: &at})
	if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
		return invalid("close review: "+err.Error(), err)
	}
	return err
}

func (a *Activities) keepLesson(ctx context.Context, l Lesson) error {
	if a.Lessons == nil {
		return fmt.Errorf("%w: this worker keeps no lessons", store.ErrInvalid)
	}
	return l.Keep(ctx, a.Lessons)
}

// EscalateReviewInput moves a review whose SLA ran out.
type EscalateReviewInput struct {
	ReviewID   string
	InstanceID string
	Process    string
	Step       string
	Escalate   process.Escalation
	// Now is when the SLA ran out (the workflow's time).
	Now time.Time
}

// EscalateReview moves the review to its escalation queue with its new due
// time. It is idempotent: a retry finds the review already there.
func (a *Activities) EscalateReview(ctx context.Context, in EscalateReviewInput) (store.Review, error) {
	sla, err := process.ParseDuration(in.Escalate.SLA)
	if err != nil {
		return store.Review{}, invalid("escalation sla: "+err.Error(), err)
	}
	to := store.Escalation{Queue: in.Escalate.Queue, Due: in.Now.Add(sla).UTC(), Priority: in.Escalate.Priority}
	r, err := a.Reviews.EscalateReview(ctx, in.ReviewID, to, in.Now.UTC())
	if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
		return r, invalid("escalate review: "+err.Error(), err)
	}
	return r, err
}

// ReassignReviewInput moves an open review to another queue.
type ReassignReviewInput struct {
	ReviewID string
	Queue    string
	Now      time.Time
}

// ReassignReview moves an open review to another queue in the store (the
// inbox), its claim released. One closed meanwhile fails for good.
func (a *Activities) ReassignReview(ctx context.Context, in ReassignReviewInput) (store.Review, error) {
	r, err := a.Reviews.ReassignReview(ctx, in.ReviewID, in.Queue, in.Now.UTC())
	if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
		return r, invalid("reassign review: "+err.Error(), err)
	}
	return r, err
}

// NotifyInput is one webhook call.
type NotifyInput struct {
	URL string
	// Key identifies the event; receivers drop a repeat of a key they have
	// seen (a retried call), so each event counts once.
	Key   string
	Event ReviewEvent
}

// ReviewEvent is the body of a review webhook.
type ReviewEvent struct {
	Event       string    `json:"event"` // review.escalated
	ReviewID    string    `json:"review_id"`
	InstanceID  string    `json:"instance_id"`
	BusinessKey string    `json:"business_key"`
	Process     string    `json:"process"`
	Step        string    `json:"step"`
	FromQueue   string    `json:"from_queue"`
	Queue       string    `json:"queue"`
	Priority    int       `json:"priority"`
	Reason      string    `json:"reason,omitempty"`
	EscalatedAt time.Time `json:"escalated_at"`
	DueAt       time.Time `json:"due_at"`
	// Level is which escalation of the review this is: 1, then 2, ...
	Level int `json:"level"`
}

// Notify POSTs a review event; see post.
func (a *Activities) Notify(ctx context.Context, in NotifyInput) error {
	body := process.JSON(in.Event)
	return a.delivered(ctx, store.UndeliveredWebhook{Process: in.Event.Process, InstanceID: in.Event.InstanceID, Event: in.Event.Event,
		URL: in.URL, Key: in.Key, Body: body}, a.post(ctx, in.URL, in.Key, body))
}

// CallbackInput is one instance event for the business system's webhook.
type CallbackInput struct {
	URL   string
	Key   string
	Event InstanceEvent
}

// InstanceEvent is the body of an instance callback.
type InstanceEvent struct {
	Event       string         `json:"event"` // instance.completed, instance.failed, instance.rejected, instance.canceled, instance.waiting_review, instance.waiting_event
	InstanceID  string         `json:"instance_id"`
	BusinessKey string         `json:"business_key"`
	Process     string         `json:"process"`
	Version     int            `json:"version"`
	Status      string         `json:"status"`
	Error       string         `json:"error,omitempty"`
	Results     map[string]any `json:"results,omitempty"`
	ReviewID    string         `json:"review_id,omitempty"`
	Queue       string         `json:"queue,omitempty"`
	// WaitsFor is the event an instance.waiting_event waits for: send it
	// to POST /v1/instances/{id}/events.
	WaitsFor string    `json:"waits_for,omitempty"`
	At       time.Time `json:"at"`
}

// Callback POSTs an instance event; see post.
func (a *Activities) Callback(ctx context.Context, in CallbackInput) error {
	body := process.JSON(in.Event)
	return a.delivered(ctx, store.UndeliveredWebhook{Process: in.Event.Process, InstanceID: in.Event.InstanceID, Event: in.Event.Event,
		URL: in.URL, Key: in.Key, Body: body}, a.post(ctx, in.URL, in.Key, body))
}

// WebhookAttempts is how often a webhook is tried (about an hour, with the
// workflows' backoff), the last attempt's failure giving it up.
const WebhookAttempts = 12

// delivered counts an attempt to deliver webhook w (err its failure),
// and keeps one given up, a final answer (4xx) or the activity's last
// attempt, in the store (Undelivered) to be redelivered: the business
// system has not heard of that event yet. It returns the activity's
// error: err, or, when a webhook given up could not be kept, a retryable
// error, so that a later attempt keeps it (at the last attempt it is
// logged with its body, the only record left).
func (a *Activities) delivered(ctx context.Context, w store.UndeliveredWebhook, err error) error {
	if err == nil {
		a.Metrics.webhook(w.Process, w.Event, "delivered")
		return nil
	}
	var ae *temporal.ApplicationError
	final := errors.As(err, &ae) && ae.NonRetryable()
	attempt, last := int32(1), int32(WebhookAttempts)
	if activity.IsActivity(ctx) {
		info := activity.GetInfo(ctx)
		attempt = info.Attempt
		if p := info.RetryPolicy; p != nil { // Temporal's test suite gives none
			last = p.MaximumAttempts
		}
	}
	if last > 0 && attempt >= last {
		final = true
	}
	if !final {
		a.Metrics.webhook(w.Process, w.Event, "retrying")
		return err
	}
	w.Attempts, w.Error, w.FailedAt = int(attempt), err.Error(), time.Now().UTC()
	kept := "not kept (no store)"
	if a.Undelivered != nil {
		stored, serr := a.Undelivered.AddUndeliveredWebhook(ctx, w)
		switch {
		case serr != nil && attempt < last:
			a.Metrics.webhook(w.Process, w.Event, "retrying")
			a.logger().Warn("webhook not delivered, and could not be kept for a redelivery; it is tried again", "process", w.Process, "instance", w.InstanceID,
				"event", w.Event, "url", w.URL, "attempts", attempt, "err", err, "store_err", serr)
			return fmt.Errorf("%s; keeping it for a redelivery: %w", err.Error(), serr)
		case serr != nil:
			kept = "NOT KEPT: " + serr.Error() + "; body: " + string(w.Body)
		default:
			kept = "kept as undelivered webhook " + strconv.FormatInt(stored.ID, 10)
		}
	}
	a.Metrics.webhook(w.Process, w.Event, "undelivered")
	a.logger().Error("webhook not delivered, given up", "process", w.Process, "instance", w.InstanceID, "event", w.Event, "url", w.URL,
		"attempts", attempt, "err", err, "redelivery", kept)
	return err
}

// post sends body as JSON with an Idempotency-Key header and, when the
// activities have a webhook secret, X-Adaptflow-Signature:
// "t=<unix seconds>,sha256=<hex HMAC-SHA256 of "<t>." + body>", so a
// receiver can check who sent it and refuse replays. A 2xx answer is
// delivery; 4xx (but 408 and 429) will not change on retry and is final;
// anything else is retried by the activity's policy.
func (a *Activities) post(ctx context.Context, url, key string, body []byte) error {
	return PostWebhook(ctx, a.httpClient(), a.WebhookSecret, url, key, body)
}

// PostWebhook is one attempt to deliver a webhook (see post): with client,
// signed with secret when it is set; a redelivery sends it as the
// workflow did.
func PostWebhook(ctx context.Context, client *http.Client, secret, url, key string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return invalid("webhook: "+err.Error(), err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	req.Header.Set("User-Agent", "adaptflow")
	if secret != "" {
		req.Header.Set("X-Adaptflow-Signature", SignWebhook(secret, time.Now(), body))
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook %s: %w", url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests:
		return invalid(fmt.Sprintf("webhook %s: %s", url, resp.Status), nil)
	}
	return fmt.Errorf("webhook %s: %s", url, resp.Status)
}

// SignWebhook is the X-Adaptflow-Signature of body sent at t.
func SignWebhook(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	return "t=" + ts + ",sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func (a *Activities) httpClient() *http.Client {
	if a.HTTP == nil {
		return http.DefaultClient
	}
	return a.HTTP
}
