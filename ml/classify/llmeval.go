package classify

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/adaptflow/adaptflow/store/vectors"
)

// LLMUsage is what an evaluation asked of an LLM.
type LLMUsage struct {
	// Asked is how many held-out texts it was asked to classify, Failed
	// how many of those it gave no answer for (counted wrong, at
	// confidence 0), Cached how many it had answered before with the same
	// few-shot examples (the LLM's cache: asked nothing; an instance's
	// answer, given with the examples of its day, is not taken).
	Asked            int `json:"asked"`
	Failed           int `json:"failed"`
	Cached           int `json:"cached"`
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	// ShotsByHashing is how many texts had their few-shot context picked
	// by the hashing embedding because LLMHoldOut.Pick failed (the
	// embeddings provider down, say).
	ShotsByHashing int `json:"shots_by_hashing"`
}

// LLMHoldOut says how HoldOutLLM measures an LLM.
type LLMHoldOut struct {
	Frac     float64 // the held-out share of each label's examples
	Shots    int     // few-shot examples a text goes with
	Limit    int     // at most this many texts asked (0: every one held out)
	Workers  int     // requests at a time
	Mistakes int     // how many of the surest mistakes are diagnosed
	// Pick picks the n few-shot examples of a held-out text among those
	// the other examples (train holds their texts), as instances get
	// theirs: by the embeddings provider's embeddings. Nil, or when it
	// fails, the hashing embedding picks them.
	Pick func(ctx context.Context, text string, train map[string]bool, n int) ([]Shot, error)
	// Prepare, when set, is told the texts to be asked before the first
	// is (so that Pick can embed them all in a few requests, not one
	// each).
	Prepare func(ctx context.Context, texts []string)
}

// ErrLLMDown is returned by HoldOutLLM when the LLM answered none of the
// held-out texts.
var ErrLLMDown = errors.New("the LLM answered none of the held-out texts")

// HoldOutLLM measures llm on a stratified held-out share (o.Frac) of each
// label's examples as instances meet it: each held-out text is classified
// with the o.Shots most similar to it among the other examples (o.Pick's,
// else by the hashing embedding) as few-shot context. At most o.Limit
// texts are asked (a stratified sample of the held-out share, fixed),
// o.Workers at a time. A text the LLM fails on counts as a mistake at
// confidence 0. The figures are Report's (latency is the LLM's, with its
// cache), less the training's.
func HoldOutLLM(ctx context.Context, llm *LLM, spec Spec, examples []Example, o LLMHoldOut) (Report, Diagnosis, LLMUsage, error) {
	train, test := StratifiedSplit(examples, o.Frac, 1)
	if len(test) == 0 {
		return Report{}, Diagnosis{}, LLMUsage{}, ErrTooFew
	}
	if o.Limit > 0 && len(test) > o.Limit {
		test = stratifiedSample(test, o.Limit)
	}
	if o.Prepare != nil {
		texts := make([]string, len(test))
		for i, e := range test {
			texts[i] = e.Text
		}
		o.Prepare(ctx, texts)
	}
	inTrain := make(map[string]bool, len(train))
	for _, e := range train {
		inTrain[e.Text] = true
	}
	// The examples' hashing embeddings, once the first text needs them
	// (none does while o.Pick picks).
	vecs := sync.OnceValue(func() [][]float32 {
		out := make([][]float32, len(train))
		for i, e := range train {
			out[i] = HashEmbedding(e.Text, HashDim)
		}
		return out
	})
	// shotsOf is a text's few-shot context, and whether the hashing
	// embedding picked it for want of o.Pick's.
	shotsOf := func(text string) ([]Shot, bool) {
		if o.Pick != nil {
			if s, err := o.Pick(ctx, text, inTrain, o.Shots); err == nil {
				return s, false
			}
		}
		return NearestShots(train, vecs(), text, o.Shots), o.Pick != nil
	}
	preds := make([]prediction, len(test))
	usage := LLMUsage{Asked: len(test)}
	var mu sync.Mutex
	var lastErr error
	work := make(chan int)
	var wg sync.WaitGroup
	for range max(o.Workers, 1) {
		wg.Go(func() {
			for i := range work {
				e := test[i]
				shots, byHashing := shotsOf(e.Text)
				t0 := time.Now()
				r, err := llm.classify(ctx, spec, e.Text, shots, llm.shotsKey(spec, e.Text, shots))
				p := prediction{Example: e, latency: time.Since(t0)}
				if err == nil {
					p.got = Result{Label: r.Label, Confidence: r.Confidence}
				}
				mu.Lock()
				preds[i] = p
				if byHashing {
					usage.ShotsByHashing++
				}
				switch {
				case err != nil:
					usage.Failed++
					lastErr = err
				case r.Cached:
					usage.Cached++
				default:
					usage.PromptTokens += r.PromptTokens
					usage.CompletionTokens += r.CompletionTokens
				}
				mu.Unlock()
			}
		})
	}
feed:
	for i := range test {
		select {
		case work <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return Report{}, Diagnosis{}, usage, err
	}
	if usage.Failed == len(test) {
		return Report{}, Diagnosis{}, usage, fmt.Errorf("%w (%d): %w", ErrLLMDown, len(test), lastErr)
	}
	rep := measure(preds)
	rep.Train, rep.Labels = len(train), len(labelsOf(examples))
	return rep, diagnose(preds, o.Mistakes), usage, nil
}

// NearestShots are the n examples nearest to text by the hashing
// embedding (vecs are the examples', HashDim long), the nearest first:
// the LLM's few-shot context when no embeddings provider picks it.
func NearestShots(examples []Example, vecs [][]float32, text string, n int) []Shot {
	q := HashEmbedding(text, HashDim)
	qn := vectors.Norm(q)
	top := vectors.NewTopK[Example](n)
	for i, e := range examples {
		top.Push(e, vectors.CosineDistance(q, qn, vecs[i]))
	}
	items, _ := top.Sorted()
	out := make([]Shot, len(items))
	for i, e := range items {
		out[i] = Shot(e)
	}
	return out
}

// stratifiedSample keeps n of examples (fewer than them), each label's
// share as near to its share of examples as whole numbers allow (largest
// remainders), the ones kept of a label a fixed pseudo-random choice.
func stratifiedSample(examples []Example, n int) []Example {
	byLabel := map[string][]Example{}
	for _, e := range examples {
		byLabel[e.Label] = append(byLabel[e.Label], e)
	}
	labels := slices.Sorted(maps.Keys(byLabel))
	quota := make([]int, len(labels))
	rest := make([]float64, len(labels))
	left := n
	for i, l := range labels {
		exact := float64(n) * float64(len(byLabel[l])) / float64(len(examples))
		quota[i] = int(exact)
		rest[i] = exact - float64(quota[i])
		left -= quota[i]
	}
	order := make([]int, len(labels))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(rest[b], rest[a]) })
	for _, i := range order[:left] {
		quota[i]++
	}
	rng := rand.New(rand.NewPCG(2, 2^0x9e3779b97f4a7c15))
	var out []Example
	for i, l := range labels {
		list := slices.Clone(byLabel[l])
		rng.Shuffle(len(list), func(a, b int) { list[a], list[b] = list[b], list[a] })
		out = append(out, list[:quota[i]]...)
	}
	return out
}
