package classify

import (
	"context"
	"fmt"
	"maps"
	"math"
	"sync"
)

// HashDim is the dimension of the embedded hashing embedding.
const HashDim = 256

// HashEmbedding embeds text without a model: its hashed n-gram features
// folded into dim signed buckets and L2-normalized. Texts sharing words and
// phrases land near each other; it serves few-shot retrieval and "similar
// cases" when no embeddings endpoint is configured.
func HashEmbedding(text string, dim int) []float32 {
	v := make([]float32, dim)
	counts := rawCounts(text)
	for i, idx := range counts.keys {
		c := counts.counts[i]
		sign := float32(1)
		if idx&(1<<(featureBits-1)) != 0 {
			sign = -1
		}
		v[int(idx)%dim] += sign * (1 + float32(math.Log(float64(c))))
	}
	var n float64
	for _, x := range v {
		n += float64(x) * float64(x)
	}
	if n > 0 {
		inv := float32(1 / math.Sqrt(n))
		for i := range v {
			v[i] *= inv
		}
	}
	return v
}

// Embedder embeds texts for retrieval (the LLM's few-shot context, the
// similar cases a reviewer sees, the embeddings stored with examples):
// through the provider's embeddings endpoint when a model is configured,
// else with HashEmbedding. Every example of a store is embedded by one
// embedder, as their vectors are compared with each other.
type Embedder struct {
	llm   *LLM
	model string
	dim   int
}

// NewEmbedder embeds through llm's provider with model, or, when either is
// missing, with the hashing embedding; vectors have dim dimensions.
func NewEmbedder(llm *LLM, model string, dim int) *Embedder {
	if llm == nil || model == "" {
		return &Embedder{dim: dim}
	}
	return &Embedder{llm: llm, model: model, dim: dim}
}

// Provider says whether the embeddings come from the provider.
func (e *Embedder) Provider() bool { return e.llm != nil }

// Probe asks the provider whether it answers, with a one-word request
// (a Gate's Probe).
func (e *Embedder) Probe(ctx context.Context) error {
	_, err := e.Embed(ctx, []string{"probe"})
	return err
}

// Name names the embedding: "provider:MODEL" or "hashing".
func (e *Embedder) Name() string {
	if e.llm == nil {
		return "hashing"
	}
	return "provider:" + e.model
}

// EmbedBatch is the most texts one request to the provider carries.
const EmbedBatch = 256

// Embed embeds texts. A provider's failure is returned as is
// (ErrRetryable when another try may succeed); vectors of another
// dimension than the store's are refused.
func (e *Embedder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, 0, len(texts))
	if e.llm == nil {
		for _, t := range texts {
			out = append(out, HashEmbedding(t, e.dim))
		}
		return out, nil
	}
	for i := 0; i < len(texts); i += EmbedBatch {
		vs, err := e.llm.Embed(ctx, e.model, texts[i:min(i+EmbedBatch, len(texts))])
		if err != nil {
			return nil, err
		}
		for _, v := range vs {
			if len(v) != e.dim {
				return nil, fmt.Errorf("%w: embedding model %s gives %d dimensions; the store holds %d (set --embedding-dim to match)", ErrBadOutput, e.model, len(v), e.dim)
			}
		}
		out = append(out, vs...)
	}
	return out, nil
}

// EmbeddingCache keeps the embeddings of texts that are embedded again and
// again (definitions' seed examples, which are not stored), up to
// embeddingsKept of them. The zero value is ready; it is safe for
// concurrent use.
type EmbeddingCache struct {
	mu   sync.Mutex
	vecs map[string][]float32
}

const embeddingsKept = 10000

// Embed is e.Embed(texts), asking e only for the texts not kept yet, in one
// request.
func (c *EmbeddingCache) Embed(ctx context.Context, e *Embedder, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	var missing []string
	c.mu.Lock()
	for i, t := range texts {
		if v, ok := c.vecs[t]; ok {
			out[i] = v
		} else {
			missing = append(missing, t)
		}
	}
	c.mu.Unlock()
	if len(missing) == 0 {
		return out, nil
	}
	vs, err := e.Embed(ctx, missing)
	if err != nil {
		return nil, err
	}
	got := make(map[string][]float32, len(missing))
	for i, t := range missing {
		got[t] = vs[i]
	}
	c.mu.Lock()
	if c.vecs == nil || len(c.vecs)+len(missing) > embeddingsKept {
		c.vecs = map[string][]float32{}
	}
	maps.Copy(c.vecs, got)
	c.mu.Unlock()
	for i, t := range texts {
		if out[i] == nil {
			out[i] = got[t]
		}
	}
	return out, nil
}
