package activities

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/adaptflow/adaptflow/ml/classify"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store/vectors"
)

// The embedded classifier of each classifier is trained once and kept by
// the worker. When its examples change, the next classification must not
// wait for a full training (seconds for thousands of examples, past the
// activity's timeout for tens of thousands):
//
//   - new examples (reviewers' corrections) are learned at once by an
//     update of the model (classify.Model.Update), and a full training on
//     every example starts in the background; its model replaces the
//     updated one, itself updated with whatever arrived meanwhile;
//   - a full training in the foreground happens only for the first model,
//     after the spec changed, or for more changed examples than an update
//     should take; callers that need the same training wait for one.

// An update takes at most updateMin changed (new or relabeled) examples,
// or a quarter of those learned when that is more.
const (
	updateMin      = 32
	updateFraction = 4
)

// classifierModel is the embedded model of one classifier and what it
// has learned.
type classifierModel struct {
	mu       sync.Mutex       // guards what follows
	spec     string           // hash of the spec the model follows
	opts     classify.Options // the spec's training options
	key      string           // hash of the spec and of the stored examples' version
	model    *classify.Model
	examples []classify.Example // what the model has learned, in order
	learned  map[string]bool    // exampleKey of each of examples
	// The hashing embeddings of examples, once asked for: aligned with
	// examples, and by exampleKey to reuse when examples change.
	vecs     [][]float32
	vecByKey map[string][]float32
	patched  bool // some examples were learned by an update only
	retrain  bool // a full training runs in the background
	// full is the full training a classification waits for, while it
	// runs: one at a time, apart from the attempts that wait for it.
	full *fullTraining
}

// fullTraining is a full training of a classifier's model that
// classifications wait for (its first model, or one for a new spec or for
// many new examples). It runs apart from the Classify attempt that started
// it: an attempt that ends (its time is up on a busy worker, with many
// examples) leaves it running, and the next attempt waits for the same
// training instead of starting it again, which would never end.
type fullTraining struct {
	key  string // what it learns (embeddedModel's key)
	done chan struct{}
	// Set before done is closed.
	model *classify.Model
	err   error
}

// trainOptions are the embedded classifier's options for spec: the
// lexicon for English texts only.
func trainOptions(spec process.ClassifySpec) classify.Options {
	return classify.Options{NoLexicon: !spec.English()}
}

func exampleKey(e classify.Example) string { return e.Label + "\x00" + e.Text }

// embeddedModel is the classifier's model for its current examples, and
// the classifier's cache.
func (a *Activities) embeddedModel(ctx context.Context, spec process.ClassifySpec) (*classify.Model, *classifierModel, error) {
	stored, version, err := a.storedExamples(ctx, spec.Name)
	if err != nil {
		return nil, nil, err
	}
	// The spec and the version of the stored examples say what the model
	// learns: no need to read or hash the examples while they stay.
	specKey := SpecDigest(spec)
	key := fmt.Sprintf("%s/%d", specKey, version)
	c := a.classifier(spec.Name)
	if m := c.modelFor(key); m != nil {
		return m, c, nil
	}
	examples := examplesOf(spec, stored)
	if m := a.current(c, spec.Name, specKey, key, examples); m != nil {
		return m, c, nil
	}
	opts := trainOptions(spec)
	for {
		tr := a.trainFull(c, opts, specKey, key, examples)
		if tr == nil { // the worker is stopping: train within the attempt
			m, err := a.trainNow(ctx, c, opts, specKey, key, examples)
			return m, c, err
		}
		if err := waitFor(ctx, tr.done); err != nil {
			return nil, nil, err
		}
		if tr.key != key {
			// It learned what an earlier classification asked for: an
			// update may now bring it to these examples.
			if m := a.current(c, spec.Name, specKey, key, examples); m != nil {
				return m, c, nil
			}
			continue
		}
		if tr.err != nil {
			return nil, nil, tr.err
		}
		return tr.model, c, nil
	}
}

// trainFull is the full training running for c, or one started on
// examples (which key names) in the background; nil once Close has
// stopped the background work.
func (a *Activities) trainFull(c *classifierModel, opts classify.Options, specKey, key string, examples []classify.Example) *fullTraining {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.full != nil {
		return c.full
	}
	tr := &fullTraining{key: key, done: make(chan struct{})}
	if !a.background(func(ctx context.Context) {
		tr.model, tr.err = a.trainNow(ctx, c, opts, specKey, key, examples)
		c.mu.Lock()
		c.full = nil
		c.mu.Unlock()
		close(tr.done)
	}) {
		return nil
	}
	c.full = tr
	return tr
}

// trainNow trains c's model on examples and puts it in place.
func (a *Activities) trainNow(ctx context.Context, c *classifierModel, opts classify.Options, specKey, key string, examples []classify.Example) (*classify.Model, error) {
	start := time.Now()
	m, err := classify.TrainContext(ctx, examples, opts)
	if ctx.Err() != nil {
		a.Metrics.trained("stopped", time.Since(start))
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, invalid("classify: "+err.Error(), err)
	}
	a.Metrics.trained("full", time.Since(start))
	c.mu.Lock()
	c.spec, c.opts, c.key, c.model, c.patched = specKey, opts, key, m, false
	c.setExamples(examples)
	c.mu.Unlock()
	return m, nil
}

// waitFor waits until done is closed or ctx ends.
func waitFor(ctx context.Context, done <-chan struct{}) error {
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// modelFor is the model when it has learned what key says, else nil.
func (c *classifierModel) modelFor(key string) *classify.Model {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.key != key {
		return nil
	}
	return c.model
}

func (a *Activities) classifier(name string) *classifierModel {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.models == nil {
		a.models = map[string]*classifierModel{}
	}
	c, ok := a.models[name]
	if !ok {
		c = &classifierModel{}
		a.models[name] = c
	}
	return c
}

func (c *classifierModel) setExamples(examples []classify.Example) {
	c.examples, c.learned = examples, keysOf(examples)
	c.vecs = nil
}

// shots are the n examples most similar to text by the hashing embedding,
// as few-shot context for the LLM. An example is embedded once.
func (c *classifierModel) shots(text string, n int) []classify.Shot {
	c.mu.Lock()
	if c.vecs == nil {
		byKey := make(map[string][]float32, len(c.examples))
		c.vecs = make([][]float32, len(c.examples))
		for i, e := range c.examples {
			k := exampleKey(e)
			v, ok := c.vecByKey[k]
			if !ok {
				v = classify.HashEmbedding(e.Text, classify.HashDim)
			}
			c.vecs[i], byKey[k] = v, v
		}
		c.vecByKey = byKey
	}
	examples, vecs := c.examples, c.vecs
	c.mu.Unlock()
	return classify.NearestShots(examples, vecs, text, n)
}

// current is the cached model when it has learned exactly examples, or
// when an update can teach it the new ones; nil when a full training is
// needed.
func (a *Activities) current(c *classifierModel, name, specKey, key string, examples []classify.Example) *classify.Model {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.key == key {
		return c.model
	}
	if c.model == nil || c.spec != specKey {
		return nil
	}
	added, replay, removed := newSince(c.learned, examples)
	if len(added)+removed > max(updateMin, len(c.examples)/updateFraction) {
		return nil
	}
	if len(added) == 0 && removed == 0 { // written again as they were
		c.key = key
		c.setExamples(examples)
		return c.model
	}
	start := time.Now()
	m := c.model.Update(added, replay)
	a.Metrics.trained("update", time.Since(start))
	c.key, c.model, c.patched = key, m, true
	c.setExamples(examples)
	if !c.retrain {
		c.retrain = a.background(func(ctx context.Context) { a.retrainInBackground(ctx, c, name) })
	}
	return m
}

// keysOf is the set of exampleKey of examples.
func keysOf(examples []classify.Example) map[string]bool {
	keys := make(map[string]bool, len(examples))
	for _, e := range examples {
		keys[exampleKey(e)] = true
	}
	return keys
}

// newSince splits examples into those not learned and a replay of as many
// learned ones (spread over them), and counts the learned ones that are
// gone (an example relabeled: the update teaches the new label, the full
// training forgets the old one).
func newSince(learned map[string]bool, examples []classify.Example) (added, replay []classify.Example, removed int) {
	var old []classify.Example
	seen := make(map[string]bool, len(examples))
	for _, e := range examples {
		k := exampleKey(e)
		seen[k] = true
		if learned[k] {
			old = append(old, e)
		} else {
			added = append(added, e)
		}
	}
	for k := range learned {
		if !seen[k] {
			removed++
		}
	}
	if n := min(len(added), len(old)); n > 0 {
		step := len(old) / n
		for i := range n {
			replay = append(replay, old[i*step])
		}
	}
	return added, replay, removed
}

// retrainInBackground trains a model on every example while the updated
// one answers, then puts it in place, updated with the examples that came
// meanwhile; it trains again while there were some.
func (a *Activities) retrainInBackground(ctx context.Context, c *classifierModel, name string) {
	for {
		c.mu.Lock()
		if !c.patched {
			c.retrain = false // under the lock that current checks it with
			c.mu.Unlock()
			return
		}
		spec, opts, examples := c.spec, c.opts, c.examples
		c.mu.Unlock()
		start := time.Now()
		m, err := classify.TrainContext(ctx, examples, opts)
		if err != nil {
			if ctx.Err() != nil {
				a.Metrics.trained("stopped", time.Since(start))
			} else {
				a.logger().Warn("classifier not retrained", "classifier", name, "err", err)
			}
			c.mu.Lock()
			c.retrain = false
			c.mu.Unlock()
			return
		}
		a.Metrics.trained("background", time.Since(start))
		a.logger().Info("classifier retrained on every example", "classifier", name, "examples", len(examples), "seconds", time.Since(start).Seconds())
		c.mu.Lock()
		// Unless a foreground training has put a full model in place
		// meanwhile (the spec changed, or many examples came at once).
		if c.spec == spec && c.patched {
			added, replay, removed := newSince(keysOf(examples), c.examples)
			switch {
			case len(added) == 0 && removed == 0:
				c.model, c.patched = m, false
			case removed == 0:
				c.model = m.Update(added, replay)
			}
		}
		c.mu.Unlock()
	}
}

// fewShots are the examples most similar to text, as the LLM's few-shot
// context. With the provider's embeddings they are the stored examples
// nearest by the embeddings stored with them (pgvector's index on
// PostgreSQL) and the spec's seed examples, embedded once; while the
// provider does not answer (a wait of EmbedWait at most, and none after a
// failure until a probe in the background finds it answers again, 30 s
// later at the earliest: classify.Gate), and without it, they are picked by the
// hashing embedding.
func (a *Activities) fewShots(ctx context.Context, c *classifierModel, spec process.ClassifySpec, text string) []classify.Shot {
	if !a.providerShots() {
		return c.shots(text, shots)
	}
	out, err := a.nearestShots(ctx, spec, text, nil, shots)
	if err != nil {
		a.logger().WarnContext(ctx, "few-shot examples picked by the hashing embedding", "classifier", spec.Name, "err", err)
		return c.shots(text, shots)
	}
	return out
}

// providerShots says whether the embeddings provider's embeddings pick
// the LLM's few-shot examples.
func (a *Activities) providerShots() bool {
	return a.Embedder != nil && a.Embedder.Provider() && a.Examples != nil
}

// embedKept is the provider's embeddings of texts, through the gate; the
// worker keeps them (a.embeddings), so a text is asked for once.
func (a *Activities) embedKept(ctx context.Context, texts []string) ([][]float32, error) {
	var vs [][]float32
	a.gateOnce.Do(func() {
		a.embedGate.Observe, a.embedGate.Probe = a.EmbedObserve, a.Embedder.Probe
	})
	err := a.embedGate.Do(ctx, a.EmbedWait, func(ctx context.Context) (err error) {
		vs, err = a.embeddings.Embed(ctx, a.Embedder, texts)
		return err
	})
	return vs, err
}

// nearestShots are the n examples, stored or seeds, nearest to text by
// the provider's embeddings; only those whose text allowed holds, unless
// it is nil (an evaluation's: the examples not held out), and never text
// itself then.
func (a *Activities) nearestShots(ctx context.Context, spec process.ClassifySpec, text string, allowed map[string]bool, n int) ([]classify.Shot, error) {
	// The text and the seeds in one request; the seeds are embedded once.
	texts := []string{text}
	for _, e := range spec.Examples {
		texts = append(texts, e.Text)
	}
	vs, err := a.embedKept(ctx, texts)
	if err != nil {
		return nil, err
	}
	q, seeds := vs[0], vs[1:]
	// Stored examples of labels the spec no longer has are passed over,
	// and so are those allowed leaves out (held out of an evaluation: the
	// text itself among them, and more of those near it).
	k := 2 * n
	if allowed != nil {
		k = 4*n + 16
	}
	ns, err := a.Examples.NearestExamples(ctx, spec.Name, q, k)
	if err != nil {
		return nil, err
	}
	ok := func(t string) bool { return allowed == nil || (allowed[t] && t != text) }
	top := vectors.NewTopK[classify.Example](n)
	for _, nb := range ns {
		if slices.Contains(spec.Labels, nb.Label) && ok(nb.Text) {
			top.Push(classify.Example{Text: nb.Text, Label: nb.Label}, nb.Distance)
		}
	}
	qn := vectors.Norm(q)
	for i, e := range spec.Examples {
		if ok(e.Text) {
			top.Push(classify.Example{Text: e.Text, Label: e.Label}, vectors.CosineDistance(q, qn, seeds[i]))
		}
	}
	items, _ := top.Sorted()
	out := make([]classify.Shot, len(items))
	for i, e := range items {
		out[i] = classify.Shot(e)
	}
	return out, nil
}
