package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/adaptflow/adaptflow/activities"
	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/store/vectors"
	"github.com/adaptflow/adaptflow/workflows"
)

// DefaultClaimLease is how long a claim on a review lasts by default.
const DefaultClaimLease = 30 * time.Minute

// The bounds of a lease a reviewer may ask for.
const (
	minClaimLease = time.Minute
	maxClaimLease = 24 * time.Hour
)

// VerdictCorrect fixes the classification of the instance's text (its
// label and extracted fields), then approves.
const VerdictCorrect = "correct"

// similarCases is how many similar past cases an inbox item shows.
const similarCases = 5

func (s *server) listReviews(c *gin.Context) {
	f := store.ReviewFilter{Status: c.DefaultQuery("status", store.ReviewOpen), Queue: c.Query("queue"), Process: c.Query("process"),
		Assignee: c.Query("assignee"), After: c.Query("after"), Now: s.Clock()}
	switch f.Status {
	case store.ReviewOpen, store.ReviewClaimed, store.ReviewEscalated, store.ReviewDecided, store.ReviewExpired, store.ReviewCanceled:
	case "all":
		f.Status = ""
	default:
		fail(c, badRequest("status", "must be open, claimed, escalated, decided, expired, canceled or all (got %q)", f.Status))
		return
	}
	// A key limited to processes sees only their reviews (processScoped
	// has refused it another process's).
	f.Processes = caller(c).Processes
	limit, err := limitParam(c, store.MaxReviewPage)
	if err != nil {
		fail(c, err)
		return
	}
	f.Limit = limit
	if f.CreatedBefore, err = agoParam(c, "older_than", f.Now); err != nil {
		fail(c, err)
		return
	}
	rs, err := s.Reviews.Reviews(c.Request.Context(), f)
	if err != nil {
		fail(c, cursorError(err))
		return
	}
	if limit == 0 {
		limit = 100
	}
	var next string
	if len(rs) == limit {
		next = store.ReviewCursor(rs[len(rs)-1])
	}
	out := gin.H{"reviews": rs}
	if next != "" {
		out["next"] = next
	}
	c.JSON(http.StatusOK, out)
}

// defaultQueueWindow is the window of a queue summary's closed counts.
const defaultQueueWindow = 24 * time.Hour

// listQueues summarizes the review queues: what waits in each now, and
// what was closed in each over the window (since, default 24h). A key
// limited to processes counts only theirs.
func (s *server) listQueues(c *gin.Context) {
	now := s.Clock().UTC()
	since, err := agoParam(c, "since", now)
	if err != nil {
		fail(c, err)
		return
	}
	if since.IsZero() {
		since = now.Add(-defaultQueueWindow)
	}
	f := store.QueueFilter{Process: c.Query("process"), Processes: caller(c).Processes, Since: since, Now: now}
	qs, err := s.Reviews.QueueSummaries(c.Request.Context(), f)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"as_of": now, "since": f.Since, "queues": qs})
}

// reviewItem is an inbox item: the review, why it was raised, the
// instance's input and text with the model's answer, and similar past cases.
// maxNote bounds a reassignment's note.
const maxNote = 2000

type reviewItem struct {
	store.Review
	Input          json.RawMessage          `json:"input,omitempty"`
	Explanation    *policies.Explanation    `json:"explanation,omitempty"`
	Classification *classificationForReview `json:"classification,omitempty"`
	Similar        []similarCase            `json:"similar,omitempty"`
	// Moves are the review's moves to other queues, from the instance's
	// state.
	Moves []workflows.ReviewMove `json:"moves,omitempty"`
}

type classificationForReview struct {
	Classifier string         `json:"classifier"`
	Field      string         `json:"field"` // the input field, or the fields separated by commas
	Text       string         `json:"text"`
	Labels     []string       `json:"labels"`
	Answer     map[string]any `json:"answer,omitempty"` // label, confidence, fields, model
}

type similarCase struct {
	Text     string          `json:"text"`
	Label    string          `json:"label"`
	Fields   json.RawMessage `json:"fields,omitempty"`
	Source   string          `json:"source"`
	Distance float64         `json:"distance"`
}

func (s *server) getReview(c *gin.Context) {
	ctx := c.Request.Context()
	r, err := s.allowedReview(c)
	if err != nil {
		fail(c, err)
		return
	}
	item := reviewItem{Review: r}
	if r.DecisionID != "" {
		if d, err := s.Decisions.Decision(ctx, r.DecisionID); err == nil {
			e := policies.Explain(d)
			item.Explanation = &e
		}
	}
	inst, def, err := s.instanceOf(c, r)
	if err != nil {
		fail(c, err)
		return
	}
	item.Input = inst.Input
	if st, err := s.instanceState(ctx, inst); err == nil {
		for _, rv := range st.Reviews {
			if rv.ID == r.ID {
				item.Moves = rv.Moves
			}
		}
	}
	if cl := s.classificationOf(ctx, inst, def); cl != nil {
		item.Classification = cl
		item.Similar, err = s.similarCases(ctx, cl, def)
		if err != nil {
			fail(c, err)
			return
		}
	}
	c.JSON(http.StatusOK, item)
}

// instanceOf is the instance of a review and its definition.
func (s *server) instanceOf(c *gin.Context, r store.Review) (store.Instance, *process.Definition, error) {
	inst, err := s.Instances.Instance(c.Request.Context(), r.InstanceID)
	if err != nil {
		return inst, nil, fmt.Errorf("instance of review %s: %w", r.ID, err)
	}
	def, _, err := s.definition(c.Request.Context(), inst.Process, inst.ProcessVersion)
	return inst, def, err
}

// classificationOf is the classification side of an instance: its text,
// the closed label set and the model's answer (nil when the definition
// classifies nothing or the text is missing).
func (s *server) classificationOf(ctx context.Context, inst store.Instance, def *process.Definition) *classificationForReview {
	if def == nil || def.Classify == nil {
		return nil
	}
	var input map[string]any
	if err := json.Unmarshal(inst.Input, &input); err != nil {
		return nil
	}
	text := def.Classify.Text(input)
	if text == "" {
		return nil
	}
	cl := &classificationForReview{Classifier: def.Classify.Name, Field: strings.Join(def.Classify.TextFields(), ","), Text: text, Labels: def.Classify.Labels}
	// From the state projection in the store, like a read of the instance:
	// the item shows even while no worker could answer a query.
	if st, err := s.instanceState(ctx, inst); err == nil {
		cl.Answer = st.Classification
	}
	return cl
}

// allowedReview is the review the route's id names (404 when unknown),
// refused (403) to a key limited to other processes.
func (s *server) allowedReview(c *gin.Context) (store.Review, error) {
	return s.allowedReviewID(c, c.Param("id"))
}

// allowedReviewID is the review id, refused (403) to a key limited to
// other processes.
func (s *server) allowedReviewID(c *gin.Context, id string) (store.Review, error) {
	r, err := s.Reviews.Review(c.Request.Context(), id, s.Clock())
	if err == nil {
		err = allowProcess(c, r.Process)
	}
	return r, err
}

type claimRequest struct {
	// Lease is how long the claim lasts (default the server's, 30m).
	Lease string `json:"lease,omitempty"`
}

// claimReview gives the caller a claim on an open review, or renews the
// caller's claim. Another reviewer's live claim, or a closed review, is 409.
func (s *server) claimReview(c *gin.Context) {
	var req claimRequest
	if err := bindOptionalJSON(c, &req); err != nil {
		fail(c, err)
		return
	}
	lease := s.ClaimLease
	if req.Lease != "" {
		d, err := process.ParseDuration(req.Lease)
		if err != nil || d < minClaimLease || d > maxClaimLease {
			fail(c, badRequest("lease", "must be a duration between 1m and 24h (got %q)", req.Lease))
			return
		}
		lease = d
	}
	if _, err := s.allowedReview(c); err != nil {
		fail(c, err)
		return
	}
	now := s.Clock()
	r, err := s.Claims.ClaimReview(c.Request.Context(), c.Param("id"), caller(c).Name, now, now.Add(lease))
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, r)
}

// reassignReview moves an open review to another queue (a case for the
// fraud desk, not the finance one): POST /v1/reviews/{id}/reassign
// {"queue"}. The instance's workflow moves it, in the inbox and in its
// state; the claim on it is released, its SLA, escalation and priority
// stay.
func (s *server) reassignReview(c *gin.Context) {
	var req struct {
		Queue string `json:"queue"`
		Note  string `json:"note"`
	}
	if err := bindJSON(c, &req); err != nil {
		fail(c, err)
		return
	}
	if !process.ValidName(req.Queue) {
		fail(c, badRequest("queue", "must be lower-case letters, digits, '-' or '_' (got %q)", req.Queue))
		return
	}
	if req.Note = strings.TrimSpace(req.Note); len(req.Note) > maxNote {
		fail(c, badRequest("note", "must be at most %d bytes (got %d)", maxNote, len(req.Note)))
		return
	}
	rv, err := s.allowedReview(c)
	if err != nil {
		fail(c, err)
		return
	}
	switch {
	case rv.Status == store.ReviewDecided || rv.Status == store.ReviewExpired || rv.Status == store.ReviewCanceled:
		fail(c, conflict("review %s is already %s", rv.ID, rv.Status))
		return
	case rv.Queue == req.Queue:
		fail(c, badRequest("queue", "review %s is in queue %s already", rv.ID, req.Queue))
		return
	}
	ctx := c.Request.Context()
	m := workflows.ReviewReassign{ReviewID: rv.ID, Queue: req.Queue, By: caller(c).Name, Note: req.Note}
	err = s.updateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: rv.InstanceID, RunID: rv.RunID, UpdateName: workflows.UpdateReassign, Args: []any{m}}, nil)
	var ae *temporal.ApplicationError
	var nf *serviceerror.NotFound
	switch {
	case errors.As(err, &ae) && ae.Type() == workflows.ErrTypeUnknownReview:
		err = &httpError{status: http.StatusNotFound, code: "not_found", msg: ae.Message()}
	case errors.As(err, &ae) && ae.Type() == workflows.ErrTypeReviewClosed:
		err = conflict("%s", ae.Message())
	case errors.As(err, &ae) && ae.Type() == workflows.ErrTypeBadDecision:
		err = badRequest("queue", "%s", ae.Message())
	case errors.As(err, &nf):
		err = conflict("the instance of review %s is no longer running", rv.ID)
	}
	if err != nil {
		fail(c, err)
		return
	}
	moved, err := s.Reviews.Review(ctx, rv.ID, s.Clock())
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, moved)
}

func (s *server) releaseReview(c *gin.Context) {
	if _, err := s.allowedReview(c); err != nil {
		fail(c, err)
		return
	}
	r, err := s.Claims.ReleaseReview(c.Request.Context(), c.Param("id"), caller(c).Name, s.Clock())
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, r)
}

type reviewDecisionRequest struct {
	Verdict string `json:"verdict"`
	Comment string `json:"comment,omitempty"`
	// Label and Fields correct the classification (verdict "correct").
	Label  string          `json:"label,omitempty"`
	Fields json.RawMessage `json:"fields,omitempty"`
}

func (req reviewDecisionRequest) validate() error {
	switch req.Verdict {
	case store.VerdictApprove, store.VerdictReject:
		if req.Label != "" || len(req.Fields) > 0 {
			return badRequest("label", "only a %q verdict carries a label or fields", VerdictCorrect)
		}
	case VerdictCorrect:
		if strings.TrimSpace(req.Label) == "" && len(req.Fields) == 0 {
			return badRequest("label", "a correction needs the right label, fields, or both")
		}
		if len(req.Fields) > 0 {
			var m map[string]any
			if json.Unmarshal(req.Fields, &m) != nil {
				return badRequest("fields", "must be a JSON object")
			}
		}
	default:
		return badRequest("verdict", "must be approve, reject or correct (got %q)", req.Verdict)
	}
	if len(req.Comment) > 4000 {
		return badRequest("comment", "is longer than 4000 characters")
	}
	return nil
}

// decideReview delivers a verdict to the waiting workflow through a Temporal
// Update. The caller must hold the review or take it now: a review another
// reviewer holds is 409, so of two reviewers deciding at once one wins. A
// rejection needs a reason (the comment). A correction becomes a labeled
// example of the classifier, then approves; an approval of a classification
// review confirms the model's label the same way.
func (s *server) decideReview(c *gin.Context) {
	var req reviewDecisionRequest
	if !bindValid(c, &req) {
		return
	}
	out, err := s.decide(c, c.Param("id"), req)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, out)
}

// decide gives the review id the caller's verdict (req, validated): it
// claims the review, sends the verdict to its instance's workflow, and,
// for a correction or the approval of an unsure classification, keeps
// what the classifier learns from it.
func (s *server) decide(c *gin.Context, id string, req reviewDecisionRequest) (decisionResponse, error) {
	ctx := c.Request.Context()
	var out decisionResponse
	rv, err := s.allowedReviewID(c, id)
	if err != nil {
		return out, err
	}
	if rv.Status == store.ReviewDecided || rv.Status == store.ReviewExpired {
		return out, conflict("review %s is already %s (%s by %s)", rv.ID, rv.Status, rv.Verdict, rv.Reviewer)
	}
	if req.Verdict == store.VerdictReject && strings.TrimSpace(req.Comment) == "" {
		return out, badRequest("comment", "a rejection needs a reason")
	}
	var learn *store.Example
	var answer map[string]any
	// Only a correction, or an approval of a review an unsure classification
	// raised (no policy, no decision behind it), teaches the classifier;
	// other approvals need nothing more read.
	if req.Verdict == VerdictCorrect || (req.Verdict == store.VerdictApprove && rv.PolicyID == "" && rv.DecisionID == "") {
		inst, def, err := s.instanceOf(c, rv)
		if err != nil {
			return out, err
		}
		if req.Verdict == VerdictCorrect || classificationReview(rv, def) {
			cl := s.classificationOf(ctx, inst, def)
			if req.Verdict == VerdictCorrect && cl == nil {
				return out, badRequest("verdict", "instance %s has no classified text to correct", inst.ID)
			}
			if cl != nil {
				answer = cl.Answer
				if learn, err = s.exampleFromVerdict(c, cl, req); err != nil {
					return out, err
				}
			}
		}
	}
	now := s.Clock()
	if _, err := s.Claims.ClaimReview(ctx, rv.ID, caller(c).Name, now, now.Add(s.ClaimLease)); err != nil {
		return out, err
	}
	verdict, comment := req.Verdict, req.Comment
	if verdict == VerdictCorrect {
		verdict = store.VerdictApprove
		comment = strings.TrimSpace("corrected to " + learn.Label + ". " + comment)
	}
	d := workflows.ReviewDecision{ReviewID: rv.ID, Verdict: verdict, Reviewer: caller(c).Name, Comment: comment}
	if learn != nil {
		d.Lesson = &activities.Lesson{Example: *learn, Embedding: learn.Embedding}
		if v, ok := verdictOf(rv, learn, answer); ok {
			d.Lesson.Verdict = &v
		}
	}
	result, err := s.sendVerdict(ctx, rv, d)
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		switch ae.Type() {
		case workflows.ErrTypeUnknownReview:
			return out, &httpError{status: http.StatusNotFound, code: "not_found", msg: ae.Message()}
		case workflows.ErrTypeReviewClosed:
			return out, conflict("%s", ae.Message())
		case workflows.ErrTypeBadDecision:
			return out, badRequest("verdict", "%s", ae.Message())
		}
	}
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return out, conflict("the instance of review %s is no longer running", rv.ID)
	}
	if err != nil {
		return out, err
	}
	out.ReviewState = result
	out.Example = learn
	if d.Lesson != nil {
		// The workflow keeps the lesson as the review closes, retried
		// until the store takes it. Written here too, it reads at once,
		// and a worker of an earlier release, which does not know
		// lessons, loses none during an upgrade; the same example again
		// changes nothing (no retraining), the verdict is kept once.
		if err := d.Lesson.Keep(ctx, lessonBook{s.Examples, s.Verdicts}); err != nil {
			loggerFrom(c).WarnContext(ctx, "a reviewer's lesson is left to the workflow", "review", rv.ID, "err", err)
		}
	}
	return out, nil
}

// bindValid decodes the request body into req and validates it; on an
// error it answers it and returns false.
func bindValid[T interface{ validate() error }](c *gin.Context, req T) bool {
	err := bindJSON(c, req)
	if err == nil {
		err = req.validate()
	}
	if err != nil {
		fail(c, err)
		return false
	}
	return true
}

// maxBulkDecisions bounds the reviews one bulk decision decides.
const maxBulkDecisions = 100

// bulkDecisionConcurrency is how many reviews of a bulk decision are
// decided at once.
const bulkDecisionConcurrency = 4

type bulkDecisionRequest struct {
	IDs     []string `json:"ids"`
	Verdict string   `json:"verdict"`
	Comment string   `json:"comment,omitempty"`
}

// bulkDecisionResult is how one review of a bulk decision went: its status
// and state as POST /v1/reviews/{id}/decision would answer, or its error.
type bulkDecisionResult struct {
	ID     string            `json:"id"`
	Status int               `json:"status"`
	Review *decisionResponse `json:"review,omitempty"`
	Error  *ErrorDetail      `json:"error,omitempty"`
}

// decideReviews approves, or rejects, many reviews at once (the orders a
// spike in volume stopped, once the spike is understood): each is decided
// as POST /v1/reviews/{id}/decision decides it, and the answer says how
// each went, in the order asked. One that cannot be decided (another
// reviewer holds it, it was decided meanwhile) leaves the others decided.
func (s *server) decideReviews(c *gin.Context) {
	var req bulkDecisionRequest
	if !bindValid(c, &req) {
		return
	}
	c.Set(ctxAuditTarget, "ids="+strings.Join(req.IDs, ","))
	decided := make([]decisionResponse, len(req.IDs))
	errs := make([]error, len(req.IDs))
	one := reviewDecisionRequest{Verdict: req.Verdict, Comment: req.Comment}
	sem := make(chan struct{}, bulkDecisionConcurrency)
	var wg sync.WaitGroup
	for i, id := range req.IDs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			decided[i], errs[i] = s.decide(c, id, one)
		})
	}
	wg.Wait()
	results := make([]bulkDecisionResult, len(req.IDs))
	failed := 0
	for i, id := range req.IDs {
		if errs[i] != nil {
			status, d := errorDetail(c, errs[i])
			results[i] = bulkDecisionResult{ID: id, Status: status, Error: &d}
			failed++
			continue
		}
		results[i] = bulkDecisionResult{ID: id, Status: http.StatusOK, Review: &decided[i]}
	}
	c.JSON(http.StatusOK, gin.H{"decided": len(req.IDs) - failed, "failed": failed, "results": results})
}

func (req bulkDecisionRequest) validate() error {
	if len(req.IDs) == 0 || len(req.IDs) > maxBulkDecisions {
		return badRequest("ids", "names 1 to %d reviews (got %d)", maxBulkDecisions, len(req.IDs))
	}
	seen := make(map[string]bool, len(req.IDs))
	for i, id := range req.IDs {
		if id == "" {
			return badRequest(fmt.Sprintf("ids[%d]", i), "is empty")
		}
		if seen[id] {
			return badRequest(fmt.Sprintf("ids[%d]", i), "review %s is named twice", id)
		}
		seen[id] = true
	}
	switch req.Verdict {
	case store.VerdictApprove:
	case store.VerdictReject:
		if strings.TrimSpace(req.Comment) == "" {
			return badRequest("comment", "a rejection needs a reason")
		}
	default: // a correction names the label of one review: it is made by itself
		return badRequest("verdict", "must be %q or %q (got %q)", store.VerdictApprove, store.VerdictReject, req.Verdict)
	}
	return nil
}

// classificationReview reports whether rv was raised by an unsure
// classification, before any decision (not by a policy or a review step):
// approving it confirms the model.
func classificationReview(rv store.Review, def *process.Definition) bool {
	if def.Classify == nil {
		return false
	}
	queue := def.Classify.ReviewQueue
	if queue == "" {
		queue = "classification"
	}
	return rv.PolicyID == "" && rv.DecisionID == "" && rv.Queue == queue
}

// verdictOf is the verdict a decision gives on the model's answer: what it
// predicted, how sure it was, and the label the reviewer settled on.
func verdictOf(rv store.Review, learn *store.Example, answer map[string]any) (store.Verdict, bool) {
	predicted, _ := answer["label"].(string)
	confidence, ok := answer["confidence"].(float64)
	if predicted == "" || !ok {
		return store.Verdict{}, false
	}
	model, _ := answer["model"].(string)
	return store.Verdict{ReviewID: rv.ID, Classifier: learn.Classifier, Queue: rv.Queue, Model: model, Predicted: predicted,
		Confidence: confidence, Label: learn.Label, Reviewer: strings.TrimPrefix(learn.Source, "review:"), At: learn.CreatedAt}, true
}

// sendVerdict sends the verdict to the instance as a Temporal Update and
// returns the review as the instance then has it. The review is in the
// store, so an instance that does not know it yet has not processed the
// event that opened it (right after a worker restart, an update can reach
// the workflow before the events of its pending task do): it is asked
// again, with backoff, until the request's deadline.
func (s *server) sendVerdict(ctx context.Context, rv store.Review, d workflows.ReviewDecision) (workflows.ReviewState, error) {
	wait := 100 * time.Millisecond
	for {
		var result workflows.ReviewState
		err := s.updateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: rv.InstanceID, RunID: rv.RunID, UpdateName: workflows.UpdateReviewDecision, Args: []any{d}}, &result)
		var ae *temporal.ApplicationError
		if !errors.As(err, &ae) || ae.Type() != workflows.ErrTypeUnknownReview {
			return result, err
		}
		select {
		case <-ctx.Done():
			return result, err
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// decisionResponse is the review as the workflow now has it, and the
// labeled example the verdict teaches the classifier, if any.
type decisionResponse struct {
	workflows.ReviewState
	Example *store.Example `json:"example,omitempty"`
}

// exampleFromVerdict is the labeled example a verdict teaches: the
// corrected label and fields, or the model's own answer confirmed.
func (s *server) exampleFromVerdict(c *gin.Context, cl *classificationForReview, req reviewDecisionRequest) (*store.Example, error) {
	label, fields := req.Label, req.Fields
	if label == "" || len(fields) == 0 {
		if l, ok := cl.Answer["label"].(string); ok && label == "" {
			label = l
		}
		if f, ok := cl.Answer["fields"]; ok && len(fields) == 0 && f != nil {
			fields, _ = json.Marshal(f)
		}
	}
	if label == "" {
		if req.Verdict == VerdictCorrect {
			return nil, badRequest("label", "the model gave no label; name the right one")
		}
		return nil, nil
	}
	if !slices.Contains(cl.Labels, label) {
		return nil, badRequest("label", "%q is not one of the classifier's labels %v", label, cl.Labels)
	}
	// A verdict does not wait for the embeddings provider: while it does
	// not answer, the lesson is kept without an embedding, which the
	// example embedder (a background task) adds later (EmbedExamples).
	v, err := s.embed(c.Request.Context(), cl.Text)
	if err != nil {
		loggerFrom(c).WarnContext(c.Request.Context(), "a reviewer's lesson is kept without its embedding for now; the example embedder adds it", "classifier", cl.Classifier, "err", err)
		v = nil
	}
	return &store.Example{
		ID: exampleID(cl.Classifier, cl.Text), Classifier: cl.Classifier, Text: cl.Text, Label: label, Fields: fields,
		Source: "review:" + caller(c).Name, Embedding: v, CreatedAt: time.Now().UTC(),
	}, nil
}

// similarCases are the stored examples and the definition's seed examples
// nearest to the classified text by the embedder, nearest first; the text
// itself is not its own case. While the embeddings provider does not
// answer, the review is shown without them.
func (s *server) similarCases(ctx context.Context, cl *classificationForReview, def *process.Definition) ([]similarCase, error) {
	q, err := s.embed(ctx, cl.Text)
	if err != nil {
		s.Logger.WarnContext(ctx, "similar cases left out", "err", err)
		return nil, nil
	}
	ns, err := s.Examples.NearestExamples(ctx, cl.Classifier, q, similarCases+1)
	if err != nil {
		return nil, err
	}
	top := vectors.NewTopK[similarCase](similarCases)
	for _, n := range ns {
		if n.Text != cl.Text {
			top.Push(similarCase{Text: n.Text, Label: n.Label, Fields: n.Fields, Source: n.Source, Distance: n.Distance}, n.Distance)
		}
	}
	var seeds []process.LabeledText
	var texts []string
	for _, e := range def.Classify.Examples {
		if e.Text != cl.Text {
			seeds, texts = append(seeds, e), append(texts, e.Text)
		}
	}
	vs, err := s.embedWithin(ctx, s.EmbedWait, func(ctx context.Context) ([][]float32, error) {
		return s.seeds.Embed(ctx, s.Embedder, texts)
	})
	if err != nil {
		s.Logger.WarnContext(ctx, "seed examples left out of the similar cases", "err", err)
		vs = nil
	}
	qn := vectors.Norm(q)
	for i, v := range vs {
		d := vectors.CosineDistance(q, qn, v)
		top.Push(similarCase{Text: seeds[i].Text, Label: seeds[i].Label, Source: "seed", Distance: d}, d)
	}
	out, _ := top.Sorted()
	return out, nil
}
