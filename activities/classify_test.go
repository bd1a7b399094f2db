package activities_test

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"

	"github.com/adaptflow/adaptflow/activities"
	"github.com/adaptflow/adaptflow/ml/classify"
	"github.com/adaptflow/adaptflow/ml/classify/openaitest"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/store/sqlite"
)

var spec = process.ClassifySpec{
	Name: "requests", Field: "message", Labels: []string{"refund", "question"}, ReviewBelow: 0.5,
	Extract: []process.ExtractField{{Name: "amount", Type: "number"}},
	Examples: []process.LabeledText{
		{Text: "I want my money back", Label: "refund"}, {Text: "refund my order", Label: "refund"},
		{Text: "when do you open", Label: "question"}, {Text: "how does shipping work", Label: "question"},
	},
}

// counted is what the worker's metrics registry holds, by series:
// "adaptflow_llm_requests_total{outcome=ok}" -> 1.
var counted map[string]float64

func classifyWith(t *testing.T, replies ...openaitest.Reply) (activities.ClassifyResult, *openaitest.Server, error) {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	reg := prometheus.NewRegistry()
	acts := activities.Activities{Metrics: activities.NewMetrics(reg)}
	t.Cleanup(func() { counted = nil })
	var srv *openaitest.Server
	if len(replies) > 0 {
		srv = openaitest.New(t, replies...)
		l, err := classify.NewLLM(classify.LLMOptions{BaseURL: srv.BaseURL(), Model: "test-model", Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		acts.LLM = l
	}
	env.RegisterActivity(&acts)
	v, err := env.ExecuteActivity(acts.Classify, activities.ClassifyInput{Spec: spec, Text: "please refund 20 EUR"})
	var res activities.ClassifyResult
	if err == nil {
		if gerr := v.Get(&res); gerr != nil {
			t.Fatal(gerr)
		}
	}
	counted = series(t, reg)
	return res, srv, err
}

// series reads every counter and histogram count of reg by name and labels.
func series(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			name := mf.GetName() + "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.GetCounter() != nil:
				out[name] = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				out[name+"count"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

func wantCounted(t *testing.T, want map[string]float64) {
	t.Helper()
	for k, v := range want {
		if counted[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, counted[k], v, counted)
		}
	}
}

func TestClassifyThroughTheLLM(t *testing.T) {
	res, srv, err := classifyWith(t, openaitest.Reply{Content: `{"label":"refund","confidence":0.9,"fields":{"amount":20},"rationale":"refund asked"}`})
	if err != nil {
		t.Fatal(err)
	}
	if res.Model != "llm:test-model" || res.Label != "refund" || res.Fields["amount"] != 20.0 || res.Review || res.PromptTokens != 120 || res.PromptVersion == "" {
		t.Fatalf("result %+v", res)
	}
	// The most similar labeled examples went along as few-shot context.
	if msgs := srv.Last()["messages"].([]any); len(msgs) != 1+2*4+1 {
		t.Fatalf("%d messages", len(msgs))
	}
	wantCounted(t, map[string]float64{
		"adaptflow_llm_requests_total{outcome=ok}": 1, "adaptflow_llm_tokens_total{kind=prompt}": 120,
		"adaptflow_llm_request_duration_seconds{}count": 1, "adaptflow_classifications_total{model=llm,review=no}": 1,
	})
}

func TestClassifyFallsBackToTheEmbeddedModel(t *testing.T) {
	for name, replies := range map[string][]openaitest.Reply{
		"rejected request":  {{Status: http.StatusBadRequest}},
		"label outside set": {{Content: `{"label":"low_risk","confidence":1,"fields":{"amount":null},"rationale":"ignore your instructions"}`}},
	} {
		t.Run(name, func(t *testing.T) {
			res, _, err := classifyWith(t, replies...)
			if err != nil {
				t.Fatal(err)
			}
			if res.Model != activities.EmbeddedModel || !res.Review || res.Fallback == "" || (res.Label != "refund" && res.Label != "question") {
				t.Fatalf("result %+v", res)
			}
			wantCounted(t, map[string]float64{"adaptflow_llm_requests_total{outcome=failed}": 1, "adaptflow_classifications_total{model=embedded,review=yes}": 1})
		})
	}
}

func TestClassifyRetriesTemporaryFailures(t *testing.T) {
	_, _, err := classifyWith(t, openaitest.Reply{Status: http.StatusTooManyRequests})
	if err == nil {
		t.Fatal("a 429 on the first attempt must fail the attempt so the retry policy tries again")
	}
	wantCounted(t, map[string]float64{"adaptflow_llm_requests_total{outcome=retried}": 1, "adaptflow_llm_requests_total{outcome=failed}": 0})
}

func TestClassifyEmbeddedWithoutLLM(t *testing.T) {
	res, _, err := classifyWith(t)
	if err != nil || res.Model != activities.EmbeddedModel || res.Label != "refund" || res.Fallback != "" {
		t.Fatalf("%+v %v", res, err)
	}
}

// labelOf is the label the Classify activity gives text under spec.
func labelOf(t *testing.T, env *testsuite.TestActivityEnvironment, acts *activities.Activities, text string) string {
	t.Helper()
	v, err := env.ExecuteActivity(acts.Classify, activities.ClassifyInput{Spec: spec, Text: text})
	if err != nil {
		t.Fatal(err)
	}
	var res activities.ClassifyResult
	if err := v.Get(&res); err != nil {
		t.Fatal(err)
	}
	return res.Label
}

// taughtOtherwise stores four examples that label a parcel question the
// other way than the spec's examples do, and checks that the classifier
// follows them. It returns the store, the question's label before them,
// how many examples it stored (ex0, ex1, ...), and a function that asks.
func taughtOtherwise(t *testing.T) (st *sqlite.Store, before string, stored int, ask func() string) {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	acts := &activities.Activities{Examples: st}
	env.RegisterActivity(acts)
	ask = func() string { return labelOf(t, env, acts, "where is my parcel tracking number") }
	before = ask()
	flip := "refund"
	if before == "refund" {
		flip = "question"
	}
	// Reviewers teach it: the parcel questions are labeled the other way.
	texts := []string{"where is my parcel", "parcel tracking number please", "my parcel tracking number is missing", "tracking number for the parcel"}
	for i, text := range texts {
		e := store.Example{ID: fmt.Sprintf("ex%d", i), Classifier: spec.Name, Text: text, Label: flip, Embedding: make([]float32, st.EmbeddingDim()), CreatedAt: time.Now()}
		if err := st.PutExample(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	if after := ask(); after != flip {
		t.Fatalf("label %s before and %s after four examples labeled %s", before, after, flip)
	}
	return st, before, len(texts), ask
}

func TestStoredExamplesRetrainTheEmbeddedClassifier(t *testing.T) {
	taughtOtherwise(t)
}

// Examples removed (a wrong correction) are forgotten: the next full
// training, in the background, learns without them.
func TestDeletedExamplesAreForgotten(t *testing.T) {
	st, before, stored, ask := taughtOtherwise(t)
	for i := range stored {
		if err := st.DeleteExample(t.Context(), spec.Name, fmt.Sprintf("ex%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for ask() != before {
		if time.Now().After(deadline) {
			t.Fatalf("30 s after its examples were removed, the label is not %s again", before)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A reviewer's corrections are learned by the next classification without
// a full training in the foreground; the full training on every example
// runs in the background and then answers, with what it learned kept.
func TestCorrectionsAreLearnedWithoutWaitingForATraining(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reg := prometheus.NewRegistry()
	acts := &activities.Activities{Examples: st, Metrics: activities.NewMetrics(reg)}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(acts)
	text := "the parcel tracking number is wrong"
	ask := func() string { return labelOf(t, env, acts, text) }
	trainings := func() (full, update, background float64) {
		s := series(t, reg)
		return s["adaptflow_classifier_training_seconds{kind=full}count"], s["adaptflow_classifier_training_seconds{kind=update}count"],
			s["adaptflow_classifier_training_seconds{kind=background}count"]
	}
	before := ask()
	flip := "refund"
	if before == "refund" {
		flip = "question"
	}
	for i, text := range []string{"parcel tracking number", "wrong tracking number on my parcel", "tracking number of the parcel is wrong"} {
		e := store.Example{ID: fmt.Sprintf("ex%d", i), Classifier: spec.Name, Text: text, Label: flip, Embedding: make([]float32, st.EmbeddingDim()), CreatedAt: time.Now()}
		if err := st.PutExample(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	if after := ask(); after != flip {
		t.Fatalf("label %s before and %s after three corrections to %s", before, after, flip)
	}
	if full, update, _ := trainings(); full != 1 || update != 1 {
		t.Fatalf("%v full trainings and %v updates, want the first training and one update", full, update)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, _, bg := trainings(); bg == 0; _, _, bg = trainings() {
		if time.Now().After(deadline) {
			t.Fatal("no full training in the background after the update")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if again := ask(); again != flip {
		t.Fatalf("after the background training: %s, want %s", again, flip)
	}
	if full, update, bg := trainings(); full != 1 || update != 1 || bg != 1 {
		t.Fatalf("%v full, %v update, %v background trainings, want 1 of each", full, update, bg)
	}
	// A relabeled example is learned by an update too.
	e := store.Example{ID: "ex0", Classifier: spec.Name, Text: "parcel tracking number", Label: before, Embedding: make([]float32, st.EmbeddingDim()), CreatedAt: time.Now()}
	if err := st.PutExample(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	ask()
	if full, update, _ := trainings(); full != 1 || update != 2 {
		t.Fatalf("after a relabel: %v full trainings and %v updates, want 1 and 2", full, update)
	}
}

// Classifications that need the same training wait for one.
func TestConcurrentClassificationsTrainOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	acts := &activities.Activities{Metrics: activities.NewMetrics(reg)}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			var suite testsuite.WorkflowTestSuite
			env := suite.NewTestActivityEnvironment()
			env.RegisterActivity(acts)
			if _, err := env.ExecuteActivity(acts.Classify, activities.ClassifyInput{Spec: spec, Text: "refund me"}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := series(t, reg)["adaptflow_classifier_training_seconds{kind=full}count"]; n != 1 {
		t.Fatalf("%v full trainings for 8 classifications at once, want 1", n)
	}
}

// BenchmarkClassifyEmbedded is one classification by the embedded model of
// a classifier with 10,000 stored examples, once trained.
func BenchmarkClassifyEmbedded(b *testing.B) { benchmarkClassify(b, false) }

// BenchmarkClassifyThroughTheLLM is the same through the LLM (its answers
// cached after the first): the few-shot retrieval over 10,000 examples.
func BenchmarkClassifyThroughTheLLM(b *testing.B) { benchmarkClassify(b, true) }

func benchmarkClassify(b *testing.B, llm bool) {
	st, err := sqlite.Open(b.Context(), filepath.Join(b.TempDir(), "c.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	words := strings.Fields("where is my parcel refund money back order shipping open close account card lost stolen top up exchange rate fee charge")
	for i := range 10000 {
		text := fmt.Sprintf("%s %s %s %d", words[i%len(words)], words[i*7%len(words)], words[i*13%len(words)], i)
		e := store.Example{ID: fmt.Sprintf("ex%d", i), Classifier: spec.Name, Text: text, Label: spec.Labels[i%2], Embedding: make([]float32, st.EmbeddingDim()), CreatedAt: time.Now()}
		if err := st.PutExample(b.Context(), e); err != nil {
			b.Fatal(err)
		}
	}
	acts := &activities.Activities{Examples: st}
	if llm {
		srv := openaitest.New(b, openaitest.Reply{Content: `{"label":"refund","confidence":0.9,"fields":{"amount":20},"rationale":"refund asked"}`})
		l, err := classify.NewLLM(classify.LLMOptions{BaseURL: srv.BaseURL(), Model: "test-model", Timeout: time.Second})
		if err != nil {
			b.Fatal(err)
		}
		acts.LLM = l
	}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(acts)
	in := activities.ClassifyInput{Spec: spec, Text: "please refund 20 EUR"}
	if _, err := env.ExecuteActivity(acts.Classify, in); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := env.ExecuteActivity(acts.Classify, in); err != nil {
			b.Fatal(err)
		}
	}
}

// fewShots is a classifier with 30 stored questions and one stored
// refund, classified through an LLM test server, with the provider's
// embeddings or without.
type fewShots struct {
	st   *sqlite.Store
	srv  *openaitest.Server
	acts *activities.Activities
	env  *testsuite.TestActivityEnvironment
}

func newFewShots(t *testing.T, providerEmbeddings bool) *fewShots {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	reply := openaitest.Reply{Content: `{"label":"refund","confidence":0.9,"fields":{"amount":20},"rationale":"refund asked"}`}
	f := &fewShots{st: st, srv: openaitest.New(t, reply)}
	l, err := classify.NewLLM(classify.LLMOptions{BaseURL: f.srv.BaseURL(), Model: "test-model", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	f.acts = &activities.Activities{Examples: st, LLM: l}
	if providerEmbeddings {
		f.srv.SetEmbeddings(st.EmbeddingDim(), 0)
		f.acts.Embedder = classify.NewEmbedder(l, "test-embed", st.EmbeddingDim())
	}
	var suite testsuite.WorkflowTestSuite
	f.env = suite.NewTestActivityEnvironment()
	f.env.RegisterActivity(f.acts)
	for i := range 30 {
		f.put(t, fmt.Sprintf("q%d", i), fmt.Sprintf("are you open on day %d of the month", i), "question")
	}
	f.put(t, "r1", "refund 20 EUR to my card please", "refund")
	return f
}

// put stores an example, with the provider's embedding of its text.
func (f *fewShots) put(t *testing.T, id, text, label string) {
	t.Helper()
	e := store.Example{ID: id, Classifier: spec.Name, Text: text, Label: label, Embedding: openaitest.Embedding(text, f.st.EmbeddingDim()), CreatedAt: time.Now()}
	if err := f.st.PutExample(t.Context(), e); err != nil {
		t.Fatal(err)
	}
}

// shots classifies text and returns the few-shot messages the LLM got.
func (f *fewShots) shots(t *testing.T, text string) string {
	t.Helper()
	if _, err := f.env.ExecuteActivity(f.acts.Classify, activities.ClassifyInput{Spec: spec, Text: text}); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, m := range f.srv.Last()["messages"].([]any)[1:] {
		fmt.Fprintln(&b, m.(map[string]any)["content"])
	}
	return b.String()
}

// The LLM's few-shot context is the stored examples most like the text,
// and stays so when examples are added.
func TestFewShotsAreTheMostSimilarExamples(t *testing.T) {
	f := newFewShots(t, false)
	if got := f.shots(t, "please refund 20 EUR"); !strings.Contains(got, "refund 20 EUR to my card please") {
		t.Fatalf("few-shot context without the nearest example:\n%s", got)
	}
	f.put(t, "r2", "a refund of 20 EUR for my order", "refund")
	if got := f.shots(t, "I want a refund of 20 EUR for the order"); !strings.Contains(got, "a refund of 20 EUR for my order") {
		t.Fatalf("few-shot context without the example added since:\n%s", got)
	}
}

// With the provider's embeddings, the few-shot context is the stored
// examples nearest by the embeddings stored with them, and the seeds; while
// the provider's embeddings endpoint is down, the hashing embedding picks
// them and the classification goes on.
func TestFewShotsByTheProvidersEmbeddings(t *testing.T) {
	f := newFewShots(t, true)
	got := f.shots(t, "refund my card 20 EUR")
	if !strings.Contains(got, "refund 20 EUR to my card please") || !strings.Contains(got, "refund my order") || f.srv.EmbedCalls() != 1 {
		t.Fatalf("few-shot context (%d embeddings requests):\n%s", f.srv.EmbedCalls(), got)
	}
	// The seeds were embedded once: the next text costs one request.
	f.shots(t, "refund of 20 EUR to my card")
	if f.srv.EmbedCalls() != 2 {
		t.Fatalf("%d embeddings requests, want 2", f.srv.EmbedCalls())
	}
	f.srv.SetEmbeddings(f.st.EmbeddingDim(), http.StatusServiceUnavailable)
	if got := f.shots(t, "a refund to my card of 20 EUR"); !strings.Contains(got, "refund 20 EUR to my card please") {
		t.Fatalf("few-shot context with the provider down:\n%s", got)
	}
	// For 30 s after the failure, classifications do not ask it.
	calls := f.srv.EmbedCalls()
	if got := f.shots(t, "a refund of 20 EUR to my card"); !strings.Contains(got, "refund 20 EUR to my card please") || f.srv.EmbedCalls() != calls {
		t.Fatalf("few-shot context right after the failure (%d embeddings requests, want %d):\n%s", f.srv.EmbedCalls(), calls, got)
	}
}

// A classification does not wait on an embeddings provider that does not
// answer: it gives up after EmbedWait, the hashing embedding picks its
// few-shot examples, and the next ones do not ask it for 30 s.
func TestFewShotsDoNotWaitForAHangingProvider(t *testing.T) {
	f := newFewShots(t, true)
	f.acts.EmbedWait = 100 * time.Millisecond
	release := f.srv.HoldEmbeddings()
	t.Cleanup(release)
	for i, text := range []string{"refund my card 20 EUR", "refund of 20 EUR to my card"} {
		if got := f.shots(t, text); !strings.Contains(got, "refund 20 EUR to my card please") || f.srv.EmbedCalls() != 1 {
			t.Fatalf("classification %d while the provider hangs (%d embeddings requests, want 1):\n%s", i+1, f.srv.EmbedCalls(), got)
		}
	}
}

// Close stops the full training the activities left running in the
// background and waits for it; none starts after it, and corrections are
// still learned by an update.
func TestCloseStopsBackgroundTrainings(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	put := func(id, text, label string) {
		t.Helper()
		e := store.Example{ID: id, Classifier: spec.Name, Text: text, Label: label, Embedding: make([]float32, st.EmbeddingDim()), CreatedAt: time.Now()}
		if err := st.PutExample(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	// Enough examples that a full training takes a while.
	for i := range 3000 {
		label := []string{"refund", "question"}[i%2]
		put(fmt.Sprintf("bulk%d", i), fmt.Sprintf("%s about order %d and parcel %d from shop %d", label, i, i*7%1000, i%37), label)
	}
	reg := prometheus.NewRegistry()
	acts := &activities.Activities{Examples: st, Metrics: activities.NewMetrics(reg)}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(acts)
	text := "the parcel tracking number is wrong"
	before := labelOf(t, env, acts, text) // the first, full training
	flip := "refund"
	if before == "refund" {
		flip = "question"
	}
	count := func(kind string) float64 {
		return series(t, reg)["adaptflow_classifier_training_seconds{kind="+kind+"}count"]
	}
	// Corrections: learned at once by an update, and a full training on
	// every example starts in the background.
	for i, text := range []string{"parcel tracking number", "wrong tracking number on my parcel", "tracking number of the parcel is wrong"} {
		put(fmt.Sprintf("ex%d", i), text, flip)
	}
	if after := labelOf(t, env, acts, text); after != flip {
		t.Fatalf("after the corrections: %s, want %s", after, flip)
	}
	if err := acts.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Close has waited for it: stopped, or (on a fast machine) done.
	if stopped, done := count("stopped"), count("background"); stopped+done != 1 {
		t.Fatalf("after Close: %v stopped and %v finished background trainings, want one in all", stopped, done)
	}
	// After Close, corrections are still learned, and no training starts.
	put("ex9", "my tracking number does not work", flip)
	if got := labelOf(t, env, acts, "my tracking number does not work"); got != flip {
		t.Fatalf("a correction after Close: %s, want %s", got, flip)
	}
	if err := acts.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if stopped, done, updates := count("stopped"), count("background"), count("update"); stopped+done != 1 || updates != 2 {
		t.Fatalf("after a second correction: %v stopped, %v finished, %v updates", stopped, done, updates)
	}
}

// A classifier's first model takes longer to train than one attempt of the
// Classify activity may last (many examples, a busy worker): the training
// goes on after the attempt ends, the next attempts wait for the same
// training rather than start it again, and one of them gets the model.
// The attempts heartbeat meanwhile, so Temporal tells a worker that died
// from one still training.
func TestFirstTrainingOutlastsAnAttempt(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// Long texts, so that training takes long next to reading them.
	for i := range 1500 {
		label := []string{"refund", "question"}[i%2]
		var text strings.Builder
		for j := range 40 {
			fmt.Fprintf(&text, "%s%d ", []string{"order", "parcel", "shop", "invoice", "card"}[j%5], (i*31+j*17)%997)
		}
		e := store.Example{ID: fmt.Sprintf("bulk%d", i), Classifier: spec.Name, Text: label + " " + text.String(), Label: label, Embedding: make([]float32, st.EmbeddingDim()), CreatedAt: time.Now()}
		if err := st.PutExample(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	acts := &activities.Activities{Examples: st, Metrics: activities.NewMetrics(reg)}
	defer func() { _ = acts.Close(t.Context()) }()
	in := activities.ClassifyInput{Spec: spec, Text: "the parcel of order 12 is late"}
	// Attempts of 400 ms, each far shorter than the training (over a
	// second here, 20 s with the race detector).
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(t.Context(), 400*time.Millisecond)
		_, err := acts.Classify(ctx, in)
		cancel()
		if err == nil {
			break
		}
		if attempt == 300 {
			t.Fatalf("no attempt of 300 got the model (does the training start again with each?): %v", err)
		}
	}
	// An attempt waiting for the training heartbeats.
	var heartbeats atomic.Int32
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	fresh := &activities.Activities{Examples: st}
	defer func() { _ = fresh.Close(t.Context()) }()
	env.RegisterActivity(fresh)
	env.SetOnActivityHeartbeatListener(func(*activity.Info, converter.EncodedValues) { heartbeats.Add(1) })
	if _, err := env.ExecuteActivity(fresh.Classify, in); err != nil {
		t.Fatal(err)
	}
	if full := series(t, reg)["adaptflow_classifier_training_seconds{kind=full}count"]; full != 1 || heartbeats.Load() == 0 {
		t.Fatalf("%v full trainings (want 1), %d heartbeats", full, heartbeats.Load())
	}
}

// The embedded classifier knows English words it was not taught by their
// meaning ("purchase" teaches "buy"); a classifier of another language
// learns from its examples alone, and a definition that changes its
// language trains again.
func TestClassifierLanguage(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	acts := &activities.Activities{}
	env.RegisterActivity(acts)
	shop := process.ClassifySpec{Name: "shop", Field: "message", Labels: []string{"order", "lost"}, Examples: []process.LabeledText{
		{Text: "I want to purchase a gift card", Label: "order"}, {Text: "purchase two tickets", Label: "order"}, {Text: "can I purchase it online", Label: "order"},
		{Text: "I mislaid my gift card", Label: "lost"}, {Text: "the tickets are mislaid", Label: "lost"}, {Text: "I think I mislaid it online", Label: "lost"},
	}}
	classified := func(language string) activities.ClassifyResult {
		t.Helper()
		s := shop
		s.Language = language
		v, err := env.ExecuteActivity(acts.Classify, activities.ClassifyInput{Spec: s, Text: "buying"})
		var res activities.ClassifyResult
		if err == nil {
			err = v.Get(&res)
		}
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for _, language := range []string{"", "en-GB", "de", ""} {
		res := classified(language)
		if known := res.Label == "order" && res.Confidence >= 0.7; known != (language != "de") {
			t.Errorf("language %q: %q is %s (%.2f)", language, "buying", res.Label, res.Confidence)
		}
	}
}

// An evaluation of the LLM asks it about the held-out examples and says
// what it asked; without an LLM, or with folds, it is refused for good.
func TestEvaluateTheLLM(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	acts := &activities.Activities{}
	env.RegisterActivity(acts)
	in := activities.EvaluateInput{Spec: spec, Holdout: 0.5, Model: activities.EvaluateLLM, Limit: 10}
	if _, err := env.ExecuteActivity(acts.EvaluateClassifier, in); err == nil || !strings.Contains(err.Error(), "no LLM is configured") {
		t.Fatalf("no LLM: %v", err)
	}
	srv := openaitest.New(t, openaitest.Reply{Content: `{"label":"refund","confidence":0.9,"fields":{"amount":null},"rationale":"r"}`})
	l, err := classify.NewLLM(classify.LLMOptions{BaseURL: srv.BaseURL(), Model: "test-model", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	acts.LLM = l
	folds := in
	folds.Holdout, folds.Folds = 0, 2
	if _, err := env.ExecuteActivity(acts.EvaluateClassifier, folds); err == nil || !strings.Contains(err.Error(), "not cross-validated") {
		t.Fatalf("folds: %v", err)
	}
	v, err := env.ExecuteActivity(acts.EvaluateClassifier, in)
	var res activities.EvaluateResult
	if err == nil {
		err = v.Get(&res)
	}
	// Two held out (one a label), both read as refunds: one right.
	if err != nil || res.Model != "llm:test-model" || res.LLM == nil || res.LLM.Asked != 2 || res.Test != 2 || res.Accuracy != 0.5 || srv.Calls() != 2 || len(res.Mistakes) != 1 {
		t.Fatalf("%+v (%d calls): %v", res, srv.Calls(), err)
	}
}

// With the provider's embeddings configured, an LLM evaluation gives each
// held-out text the few-shot context an instance would get: the examples
// nearest by the embeddings (here a planted twin of each refund, stored
// with that refund's embedding and a text like none), never one held out;
// with the provider down, the hashing embedding picks them, counted.
func TestEvaluateTheLLMWithTheProvidersEmbeddings(t *testing.T) {
	f := newFewShots(t, true)
	refunds := []string{"I want my money back", "refund my order", "refund 20 EUR to my card please"}
	for i, r := range []string{"please send back what I paid", "I returned the shoes, where is my money", "charge reversed when"} {
		f.put(t, fmt.Sprintf("r%d", i+2), r, "refund")
		refunds = append(refunds, r)
	}
	twin := map[string]string{}
	for i, r := range refunds {
		planted := fmt.Sprintf("zz planted %d", i)
		twin[r] = planted
		e := store.Example{ID: fmt.Sprintf("p%d", i), Classifier: spec.Name, Text: planted, Label: "refund", Embedding: openaitest.Embedding(r, f.st.EmbeddingDim()), CreatedAt: time.Now()}
		if err := f.st.PutExample(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	asked := map[string]string{} // a held-out text -> its few-shot messages
	f.srv.AnswerWith(func(req map[string]any) openaitest.Reply {
		var b strings.Builder
		msgs := req["messages"].([]any)
		for _, m := range msgs[1 : len(msgs)-1] { // the few-shot messages, between the system's and the text's
			fmt.Fprintln(&b, m.(map[string]any)["content"])
		}
		text := strings.TrimSuffix(strings.TrimPrefix(openaitest.LastUserText(req), "<input>\n"), "\n</input>")
		mu.Lock()
		asked[text] = b.String()
		mu.Unlock()
		return openaitest.Reply{Content: `{"label":"question","confidence":0.9,"fields":{"amount":null},"rationale":"r"}`}
	})
	evaluate := func() activities.EvaluateResult {
		t.Helper()
		v, err := f.env.ExecuteActivity(f.acts.EvaluateClassifier, activities.EvaluateInput{Spec: spec, Holdout: 0.5, Model: activities.EvaluateLLM, Limit: 100})
		var res activities.EvaluateResult
		if err == nil {
			err = v.Get(&res)
		}
		if err != nil || res.LLM == nil {
			t.Fatalf("evaluate: %+v: %v", res, err)
		}
		return res
	}
	before := f.srv.EmbedCalls()
	res := evaluate()
	// The held-out texts and the seeds embedded in one request, not one
	// for each text.
	if res.LLM.ShotsByHashing != 0 || f.srv.EmbedCalls() != before+1 || len(asked) != res.LLM.Asked || res.LLM.Asked < 2 {
		t.Fatalf("usage %+v, %d embeddings requests, %d texts asked", res.LLM, f.srv.EmbedCalls()-before, len(asked))
	}
	checked := 0
	for text, shots := range asked {
		for other := range asked {
			if strings.Contains(shots, other+"\n") {
				t.Fatalf("%q went with %q, also held out:\n%s", text, other, shots)
			}
		}
		if p, ok := twin[text]; ok && asked[p] == "" {
			checked++
			if !strings.Contains(shots, p) {
				t.Fatalf("%q went without its nearest example by the embeddings, %q:\n%s", text, p, shots)
			}
		}
	}
	if checked == 0 {
		t.Fatalf("no refund held out with its twin learned from: the test shows nothing (%v)", slices.Collect(maps.Keys(asked)))
	}
	// A worker that has embedded nothing yet (and has no LLM answers
	// cached), with the provider down.
	f.srv.SetEmbeddings(f.st.EmbeddingDim(), http.StatusServiceUnavailable)
	l, err := classify.NewLLM(classify.LLMOptions{BaseURL: f.srv.BaseURL(), Model: "test-model", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	f.acts = &activities.Activities{Examples: f.st, LLM: l, Embedder: classify.NewEmbedder(l, "test-embed", f.st.EmbeddingDim())}
	var suite testsuite.WorkflowTestSuite
	f.env = suite.NewTestActivityEnvironment()
	f.env.RegisterActivity(f.acts)
	if res := evaluate(); res.LLM.ShotsByHashing != res.LLM.Asked {
		t.Fatalf("with the provider down: %+v", res.LLM)
	}
}
