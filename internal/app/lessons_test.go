package app_test

import (
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/adaptflow/adaptflow/activities"
	"github.com/adaptflow/adaptflow/internal/app"
	"github.com/adaptflow/adaptflow/ml/classify/openaitest"
	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/store/sqlite"
	"github.com/adaptflow/adaptflow/workflows"
)

// onboardingReview starts a customer onboarding whose message reads as a
// business account's (a policy adds the KYC review), and returns the
// instance and its review.
func onboardingReview(d *dev, key string) (id, review string) {
	d.t.Helper()
	return onboardingReviewOf(d, key, "our company needs a business account with two directors")
}

// onboardingReviewOf is onboardingReview of another message: one a lesson
// about that one does not teach another label.
func onboardingReviewOf(d *dev, key, message string) (id, review string) {
	d.t.Helper()
	id = d.start("customer-onboarding", key, map[string]any{"applicant": "Ann", "message": message})
	reviews := d.waitStatus(id, "waiting_review")["reviews"].([]any)
	return id, reviews[len(reviews)-1].(map[string]any)["id"].(string)
}

// lessonKept waits until the onboarding classifier holds an example of
// text labeled label by source, and the quality report counts verdicts
// verdicts; it fails the test after 30 s.
func (d *dev) lessonKept(text, label, source string, verdicts float64) {
	d.t.Helper()
	var ex, q resp
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		ex = d.expect(d.call("GET", "/v1/classifiers/onboarding-requests/examples", adminKey, ""), http.StatusOK)
		q = d.expect(d.call("GET", "/v1/classifiers/onboarding-requests/quality?since=1d", adminKey, ""), http.StatusOK)
		found := false
		for _, e := range ex.body["examples"].([]any) {
			if e := e.(map[string]any); e["text"] == text && e["label"] == label && e["source"] == source {
				found = true
			}
		}
		if found && q.body["overall"].(map[string]any)["verdicts"] == verdicts {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("the lesson (%q as %s by %s, %v verdicts) is not kept:\nexamples %s\nquality %s", text, label, source, verdicts, ex.raw, q.raw)
		}
	}
}

// TestWorkflowKeepsTheReviewersLesson: the lesson of a verdict travels
// with it to the instance's workflow, which keeps it as the review
// closes. A verdict delivered (as the API delivers it), whose API then
// goes away before it writes anything more, still teaches the classifier;
// a lesson the store refuses for good (an embedding of another
// dimension) costs the lesson, not the instance.
func TestWorkflowKeepsTheReviewersLesson(t *testing.T) {
	d := startDev(t, t.TempDir(), "")
	tc, err := client.Dial(client.Options{HostPort: d.temporal, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	const text = "our company needs a business account with two directors"
	send := func(id, review, exampleID string, dim int) {
		t.Helper()
		v := make([]float32, dim)
		v[0] = 1
		now := time.Now().UTC()
		lesson := &activities.Lesson{
			Example:   store.Example{ID: exampleID, Classifier: "onboarding-requests", Text: text, Label: "account_transfer", Source: "review:kim", CreatedAt: now},
			Embedding: v,
			Verdict: &store.Verdict{ReviewID: review, Classifier: "onboarding-requests", Queue: "kyc", Model: "embedded", Predicted: "business_account",
				Confidence: 0.4, Label: "account_transfer", Reviewer: "kim", At: now},
		}
		h, err := tc.UpdateWorkflow(t.Context(), client.UpdateWorkflowOptions{WorkflowID: id, UpdateName: workflows.UpdateReviewDecision, WaitForStage: client.WorkflowUpdateStageCompleted,
			Args: []any{workflows.ReviewDecision{ReviewID: review, Verdict: store.VerdictApprove, Reviewer: "kim", Comment: "corrected to account_transfer.", Lesson: lesson}}})
		if err == nil {
			err = h.Get(t.Context(), nil)
		}
		if err != nil {
			t.Fatalf("the verdict: %v", err)
		}
	}
	id, review := onboardingReview(d, "lesson-1")
	send(id, review, "ex_from_the_workflow", store.DefaultEmbeddingDim)
	d.waitStatus(id, "completed")
	d.lessonKept(text, "account_transfer", "review:kim", 1)

	// Another business account's message: the lesson just learned (that
	// message is an account transfer) does not take it out of KYC review.
	refused, review := onboardingReviewOf(d, "lesson-2", "business banking for my shop please")
	send(refused, review, "ex_of_another_dimension", 3)
	d.waitStatus(refused, "completed")
	for _, e := range d.expect(d.call("GET", "/v1/classifiers/onboarding-requests/examples", adminKey, ""), http.StatusOK).body["examples"].([]any) {
		if e.(map[string]any)["id"] == "ex_of_another_dimension" {
			t.Fatalf("an example of another dimension was kept: %v", e)
		}
	}
}

// TestReviewersLessonsComeBack: the store is restored from a backup taken
// while an onboarding waited for its KYC review; since, a reviewer
// corrected its classification, and the instance completed. The restored
// store lacks the lesson (the labeled example, the verdict the quality
// report counts); the catch-up takes it back from the workflow's history
// with the review's record.
func TestReviewersLessonsComeBack(t *testing.T) {
	dir, start := sweepingDev(t)
	d := start(dir)
	const text = "our company needs a business account with two directors"
	id, review := onboardingReview(d, "lesson-back")
	backup := filepath.Join(t.TempDir(), "backup")
	if _, err := sqlite.Snapshot(t.Context(), filepath.Join(dir, "adaptflow.db"), nil, backup); err != nil {
		t.Fatal(err)
	}
	reviewer := d.newKey("reviewer")
	d.expect(d.call("POST", "/v1/reviews/"+review+"/decision", reviewer, `{"verdict":"correct","label":"account_transfer"}`), http.StatusOK)
	d.waitStatus(id, "completed")
	d.lessonKept(text, "account_transfer", "review:reviewer-1", 1)
	d.recordHistories(map[string]string{id: "review_lesson_v12.json"})
	d.stop()
	restoreStore(t, dir, backup)

	d = start(dir)
	d.waitStatus(id, "completed")
	d.lessonKept(text, "account_transfer", "review:reviewer-1", 1)
}

// TestLessonWaitsForTheEmbeddingsProvider: with the provider's embeddings
// configured, a reviewer corrects a classification while the embeddings
// endpoint fails. The verdict goes through all the same (before, it was
// refused with 503 until the provider answered), the lesson is kept at
// once without its embedding (the embedded classifier and the quality
// report have it), and the example embedder embeds it once the provider answers.
func TestLessonWaitsForTheEmbeddingsProvider(t *testing.T) {
	llm := openaitest.New(t, openaitest.Reply{Content: `{"label":"business_account","confidence":0.3,"fields":{"applicant_name":"Ann","account_type":"business","amount":null,"risk_hints":"none"},"rationale":"a company"}`})
	llm.SetEmbeddings(store.DefaultEmbeddingDim, 0)
	d := startDev(t, t.TempDir(), "", func(o *app.Options) {
		o.LLMBaseURL, o.LLMModel, o.EmbeddingModel = llm.BaseURL(), "test-model", "test-embed"
		o.SweepEvery = 100 * time.Millisecond
	})
	const text = "our company needs a business account with two directors"
	_, review := onboardingReview(d, "lesson-later")
	llm.SetEmbeddings(store.DefaultEmbeddingDim, http.StatusInternalServerError)
	dec := d.expect(d.call("POST", "/v1/reviews/"+review+"/decision", d.newKey("reviewer"), `{"verdict":"correct","label":"account_transfer"}`), http.StatusOK)
	if ex, _ := dec.body["example"].(map[string]any); ex == nil || ex["label"] != "account_transfer" {
		t.Fatalf("the correction's answer: %s", dec.raw)
	}
	d.lessonKept(text, "account_transfer", "review:reviewer-1", 1)
	// The metrics tell the provider's state: the worker's few-shot pick
	// asked it fine, the verdict's call failed, and the review read again
	// does not ask it (for 30 s after the failure).
	d.expect(d.call("GET", "/v1/reviews/"+review, d.newKey("reviewer"), ""), http.StatusOK)
	calls := func(caller, outcome string) string {
		m := regexp.MustCompile(`adaptflow_embeddings_requests_total\{caller="` + caller + `",outcome="` + outcome + `"\} (\d+)`).FindStringSubmatch(d.call("GET", "/metrics", "", "").raw)
		if m == nil {
			return "0"
		}
		return m[1]
	}
	if ok, failed, skipped := calls("worker", "ok"), calls("api", "failed"), calls("api", "skipped"); ok == "0" || failed != "1" || skipped != "1" {
		t.Fatalf("embeddings requests: worker ok %s, api failed %s (want 1), api skipped %s (want 1)", ok, failed, skipped)
	}
	embedded := func() string {
		return regexp.MustCompile(`adaptflow_examples_embedded_late_total (\d+)`).FindStringSubmatch(d.call("GET", "/metrics", "", "").raw + "adaptflow_examples_embedded_late_total -1")[1]
	}
	time.Sleep(500 * time.Millisecond) // a few passes of the sweeper, all failing
	if n := embedded(); n != "0" {
		t.Fatalf("examples embedded while the provider failed: %s", n)
	}
	// A provider that does not answer holds up the example embedder's
	// pass, never the sweeper's: its passes go on succeeding.
	release := llm.HoldEmbeddings()
	defer release()
	llm.SetEmbeddings(store.DefaultEmbeddingDim, 0)
	sweeperOK := func() float64 {
		return d.metric("adaptflow_background_task_last_success_timestamp_seconds", `task="sweeper"`)
	}
	for _, since := range []float64{float64(time.Now().Add(time.Second).UnixNano()) / 1e9, float64(time.Now().Add(3*time.Second).UnixNano()) / 1e9} {
		for deadline := time.Now().Add(15 * time.Second); sweeperOK() <= since; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no pass of the sweeper has succeeded since %v while the provider hangs (the last at %v)", since, sweeperOK())
			}
		}
	}
	release()
	for deadline := time.Now().Add(30 * time.Second); embedded() != "1"; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the lesson was not embedded once the provider answered: %s", embedded())
		}
	}
}

// TestInstanceRunsWhileClassified: while the LLM takes its time, the
// instance reads running, with its plan and no classification yet; before,
// it read starting until its first decision, after the classification.
func TestInstanceRunsWhileClassified(t *testing.T) {
	llm := openaitest.New(t, openaitest.Reply{Delay: 3 * time.Second, Content: `{"label":"personal_account","confidence":0.97,"fields":{"applicant_name":"Ann","account_type":"personal","amount":null,"risk_hints":"none"},"rationale":"a person"}`})
	d := startDev(t, t.TempDir(), "", func(o *app.Options) {
		o.LLMBaseURL, o.LLMModel = llm.BaseURL(), "test-model"
	})
	id := d.start("customer-onboarding", "slow-llm", map[string]any{"applicant": "Ann", "message": "I would like a current account for myself"})
	inst := d.waitStatus(id, "running", "completed")
	if inst["status"] != "running" || inst["classification"] != nil || plan(inst) == "" || llm.Calls() != 1 {
		t.Fatalf("while the LLM answers (%d calls): %v, plan %s", llm.Calls(), inst, plan(inst))
	}
	inst = d.waitStatus(id, "completed")
	if cls, _ := inst["classification"].(map[string]any); cls == nil || cls["label"] != "personal_account" || cls["model"] != "llm:test-model" {
		t.Fatalf("classification %v", inst["classification"])
	}
	d.recordHistories(map[string]string{id: "onboarding_classify_v13.json"})
}

// TestClassifyPreviewOutlastsTheRequest: a preview whose LLM answers after
// the request's time is up answers 503 saying it goes on; the same request
// again waits for that run (the LLM is asked once) and gets its answer.
func TestClassifyPreviewOutlastsTheRequest(t *testing.T) {
	llm := openaitest.New(t, openaitest.Reply{Delay: 3 * time.Second, Content: `{"label":"personal_account","confidence":0.97,"fields":{"applicant_name":"Ann","account_type":"personal","amount":null,"risk_hints":"none"},"rationale":"a person"}`})
	d := startDev(t, t.TempDir(), "", func(o *app.Options) {
		o.LLMBaseURL, o.LLMModel = llm.BaseURL(), "test-model"
		o.RequestTimeout = time.Second
	})
	const path, body = "/v1/processes/customer-onboarding/classify", `{"text":"I would like a current account for myself"}`
	r := d.call("POST", path, adminKey, body)
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.raw, "still running") {
		t.Fatalf("a preview past the request's time: %d %s", r.status, r.raw)
	}
	for deadline := time.Now().Add(30 * time.Second); r.status != http.StatusOK; r = d.call("POST", path, adminKey, body) {
		if time.Now().After(deadline) || r.status != http.StatusServiceUnavailable {
			t.Fatalf("the preview asked again: %d %s", r.status, r.raw)
		}
	}
	if cl := r.body["classification"].(map[string]any); cl["label"] != "personal_account" || cl["model"] != "llm:test-model" || llm.Calls() != 1 {
		t.Fatalf("the preview's answer after %d LLM calls: %s", llm.Calls(), r.raw)
	}
}
