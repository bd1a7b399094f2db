package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/adaptflow/adaptflow/ml/classify"
	"github.com/adaptflow/adaptflow/store"
)

// ExampleStore keeps classifiers' labeled examples.
type ExampleStore interface {
	PutExample(ctx context.Context, e store.Example) error
	PutExamples(ctx context.Context, es []store.Example) error
	DeleteExample(ctx context.Context, classifier, id string) error
	DeleteExamples(ctx context.Context, f store.ExampleFilter) (int, error)
	ExamplesPage(ctx context.Context, f store.ExampleFilter) ([]store.Example, error)
	ExampleCounts(ctx context.Context, classifier string) (map[string]int, error)
	ExamplesVersion(ctx context.Context, classifier string) (int64, error)
	LastEvaluation(ctx context.Context, classifier, model string) (store.Evaluation, error)
	NearestExamples(ctx context.Context, classifier string, q []float32, k int) ([]store.Neighbor, error)
	ExamplesToEmbed(ctx context.Context, limit int) ([]store.Example, error)
	SetExampleEmbedding(ctx context.Context, id, text string, v []float32) (bool, error)
	EmbeddingDim() int
}

// embedPass bounds how many examples one pass of EmbedExamples embeds.
const embedPass = 256

// EmbedExamples embeds the examples stored without an embedding (a
// reviewer's lesson, or an example added through the API, kept while the
// embeddings provider did not answer),
// up to embedPass a pass, and says how many it embedded. Until then they
// teach the embedded classifier (which reads their text) but are no
// neighbour for few-shot retrieval or similar cases. A failure to embed
// leaves the rest for the next pass.
func EmbedExamples(ctx context.Context, o Options) (int, error) {
	if o.Examples == nil {
		return 0, nil
	}
	pending, err := o.Examples.ExamplesToEmbed(ctx, embedPass)
	if err != nil || len(pending) == 0 {
		return 0, err
	}
	emb := o.examplesEmbedder()
	texts := make([]string, len(pending))
	for i, e := range pending {
		texts[i] = e.Text
	}
	vs, err := emb.Embed(ctx, texts)
	if err != nil {
		return 0, fmt.Errorf("embed %d examples: %w", len(pending), err)
	}
	n := 0
	for i, e := range pending {
		ok, err := o.Examples.SetExampleEmbedding(ctx, e.ID, e.Text, vs[i])
		if err != nil {
			return n, fmt.Errorf("embedding of example %s: %w", e.ID, err)
		}
		if ok {
			n++
		}
	}
	return n, nil
}

// examplesEmbedder is the embedder of examples and of the queries for
// them: Options.Embedder, or the hashing embedding of the store's
// dimension.
func (o *Options) examplesEmbedder() *classify.Embedder {
	if o.Embedder != nil {
		return o.Embedder
	}
	return classify.NewEmbedder(nil, "", o.Examples.EmbeddingDim())
}

type exampleRequest struct {
	Text   string          `json:"text"`
	Label  string          `json:"label"`
	Fields json.RawMessage `json:"fields,omitempty"`
}

// validate says what is wrong with the example, its fields named with
// prefix ("" for the single example's route, "examples[3]." in a batch).
func (req exampleRequest) validate(prefix string) error {
	switch {
	case strings.TrimSpace(req.Text) == "" || len(req.Text) > 20000:
		return badRequest(prefix+"text", "is required (at most 20,000 characters)")
	case strings.TrimSpace(req.Label) == "" || len(req.Label) > 100:
		return badRequest(prefix+"label", "is required (at most 100 characters)")
	case len(req.Fields) > 0 && !json.Valid(req.Fields):
		return badRequest(prefix+"fields", "must be a JSON object")
	}
	return nil
}

// exampleID is the id of a classifier's stored example of text: the same
// text again, through the API or a reviewer's lesson, replaces it.
func exampleID(classifier, text string) string {
	h := sha256.Sum256([]byte(classifier + "\x00" + text))
	return "ex_" + hex.EncodeToString(h[:12])
}

// example is the stored example req makes for classifier name, embedded
// by v (nil: not yet).
func (req exampleRequest) example(c *gin.Context, name string, v []float32) store.Example {
	return store.Example{
		ID: exampleID(name, req.Text), Classifier: name, Text: req.Text, Label: req.Label, Fields: req.Fields,
		Source: "api:" + caller(c).Name, Embedding: v, CreatedAt: time.Now().UTC(),
	}
}

// addExample stores a labeled example for a classifier; the embedded
// classifier retrains with it at its next use. The same text again replaces
// its label.
func (s *server) addExample(c *gin.Context) {
	var req exampleRequest
	if err := bindJSON(c, &req); err != nil {
		fail(c, err)
		return
	}
	if err := req.validate(""); err != nil {
		fail(c, err)
		return
	}
	name := c.Param("name")
	// An example does not wait for the embeddings provider: while it does
	// not answer, the example is kept without its embedding, which the
	// example embedder (a background task) adds later (EmbedExamples).
	v, err := s.embed(c.Request.Context(), req.Text)
	if err != nil {
		loggerFrom(c).WarnContext(c.Request.Context(), "an example is kept without its embedding for now; the example embedder adds it", "classifier", name, "err", err)
		v = nil
	}
	e := req.example(c, name, v)
	if err := s.Examples.PutExample(c.Request.Context(), e); err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, addedExample{Example: e, EmbeddingPending: v == nil})
}

// maxBatchExamples bounds the examples one batch adds.
const maxBatchExamples = 1000

type batchExamplesRequest struct {
	Examples []exampleRequest `json:"examples"`
}

func (req batchExamplesRequest) validate() error {
	if len(req.Examples) == 0 || len(req.Examples) > maxBatchExamples {
		return badRequest("examples", "holds 1 to %d examples (got %d)", maxBatchExamples, len(req.Examples))
	}
	seen := make(map[string]int, len(req.Examples))
	for i, e := range req.Examples {
		if err := e.validate(fmt.Sprintf("examples[%d].", i)); err != nil {
			return err
		}
		if j, ok := seen[e.Text]; ok {
			return badRequest(fmt.Sprintf("examples[%d].text", i), "is examples[%d]'s too: each text once (an example is its text's label)", j)
		}
		seen[e.Text] = i
	}
	return nil
}

// addExamples stores many labeled examples at once (a classifier's
// examples imported from a file): each as POST .../examples would, their
// texts embedded together (the provider's requests of 256 each get the
// request's wait). Each counts against the key's rate limit. They are
// stored in one transaction: all of them, or none.
func (s *server) addExamples(c *gin.Context) {
	var req batchExamplesRequest
	if !bindValid(c, &req) {
		return
	}
	if err := s.spendBatch(c, len(req.Examples)-1, "examples", "examples"); err != nil {
		fail(c, err)
		return
	}
	name := c.Param("name")
	ctx := c.Request.Context()
	texts := make([]string, len(req.Examples))
	for i, e := range req.Examples {
		texts[i] = e.Text
	}
	vs, err := s.embedBatch(ctx, texts)
	if err != nil {
		loggerFrom(c).WarnContext(ctx, "examples are kept without their embedding for now; the example embedder adds them", "classifier", name, "examples", len(texts), "err", err)
		vs = nil
	}
	es := make([]store.Example, len(req.Examples))
	for i, e := range req.Examples {
		var v []float32
		if vs != nil {
			v = vs[i]
		}
		es[i] = e.example(c, name, v)
	}
	if err := s.Examples.PutExamples(ctx, es); err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, gin.H{"classifier": name, "examples": len(req.Examples), "embedding_pending": vs == nil})
}

// addedExample is the answer to an added example: embedding_pending while
// the embeddings provider did not answer (the example embedder embeds it; until
// then it teaches the embedded classifier but is no similar case nor
// few-shot example).
type addedExample struct {
	store.Example
	EmbeddingPending bool `json:"embedding_pending,omitempty"`
}

// deleteExample removes a stored example (a wrong correction, say): the
// classifier's models learn without it (the workers retrain in the
// background). A definition's seed examples change with a new version of
// the definition, not here.
func (s *server) deleteExample(c *gin.Context) {
	if err := s.Examples.DeleteExample(c.Request.Context(), c.Param("name"), c.Param("id")); err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// exampleFilter is the filter of the examples' listing or deletion
// (label, source, q), its parts bounded.
func exampleFilter(c *gin.Context) (store.ExampleFilter, error) {
	f := store.ExampleFilter{Classifier: c.Param("name"), Label: c.Query("label"), Source: c.Query("source"), Text: c.Query("q"), After: c.Query("after")}
	for _, p := range []struct {
		name, value string
	}{{"label", f.Label}, {"source", f.Source}, {"q", f.Text}} {
		if len(p.value) > maxExampleQuery {
			return f, badRequest(p.name, "at most %d bytes (got %d)", maxExampleQuery, len(p.value))
		}
	}
	return f, nil
}

// deleteExamples deletes the stored examples of a classifier a filter
// keeps (an import undone: source=api:KEY; a label dropped), all of them
// with all=true, in one transaction; the workers retrain without them.
// The definition's seed examples stay.
func (s *server) deleteExamples(c *gin.Context) {
	f, err := exampleFilter(c)
	if err != nil {
		fail(c, err)
		return
	}
	all := c.Query("all")
	switch {
	case all != "" && all != "true":
		fail(c, badRequest("all", "must be true (got %q)", all))
		return
	case all == "" && f.Label == "" && f.Source == "" && f.Text == "":
		fail(c, badRequest("label", "say which examples to delete: label, source or q, or all=true for every stored example"))
		return
	case all != "" && (f.Label != "" || f.Source != "" || f.Text != ""):
		fail(c, badRequest("all", "deletes every stored example: give it alone, or label, source and q without it"))
		return
	}
	n, err := s.Examples.DeleteExamples(c.Request.Context(), f)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"classifier": f.Classifier, "deleted": n})
}

func (s *server) listExamples(c *gin.Context) {
	f, err := exampleFilter(c)
	if err != nil {
		fail(c, err)
		return
	}
	name := f.Classifier
	if f.Limit, err = intParam(c, "limit", 100, 1, store.MaxExamplePage); err != nil {
		fail(c, err)
		return
	}
	ctx := c.Request.Context()
	list, err := s.Examples.ExamplesPage(ctx, f)
	if err != nil {
		fail(c, cursorError(err))
		return
	}
	counts, err := s.Examples.ExampleCounts(ctx, name)
	if err != nil {
		fail(c, err)
		return
	}
	total := 0
	for _, n := range counts {
		total += n
	}
	out := gin.H{"classifier": name, "examples": list, "labels": counts, "total": total}
	if len(list) == f.Limit {
		out["next"] = store.ExampleCursor(list[len(list)-1])
	}
	c.JSON(http.StatusOK, out)
}

// maxExampleQuery bounds a filter of the examples' listing.
const maxExampleQuery = 1000
