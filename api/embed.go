package api

import (
	"context"
	"sync"
)

// embeddingError is a failure of the embeddings provider: answered 503,
// as for any dependency that is not answering.
type embeddingError struct{ err error }

func (e embeddingError) Error() string { return "embeddings provider: " + e.err.Error() }
func (e embeddingError) Unwrap() error { return e.err }

func (s *server) embed(ctx context.Context, text string) ([]float32, error) {
	vs, err := s.Embedder.Embed(ctx, []string{text})
	if err != nil {
		return nil, embeddingError{err}
	}
	return vs[0], nil
}

// seedVectors keeps the embeddings of definitions' seed examples, which
// are not stored, so a review's similar cases do not embed them again.
type seedVectors struct {
	mu   sync.Mutex
	vecs map[string][]float32
}

const seedVectorsKept = 10000

// of is the embedding of each text, asking the embedder for those not
// kept yet in one request.
func (sv *seedVectors) of(ctx context.Context, s *server, texts []string) ([][]float32, error) {
	sv.mu.Lock()
	out := make([][]float32, len(texts))
	var missing []string
	for i, t := range texts {
		if v, ok := sv.vecs[t]; ok {
			out[i] = v
		} else {
			missing = append(missing, t)
		}
	}
	sv.mu.Unlock()
	if len(missing) == 0 {
		return out, nil
	}
	vs, err := s.Embedder.Embed(ctx, missing)
	if err != nil {
		return nil, embeddingError{err}
	}
	sv.mu.Lock()
	defer sv.mu.Unlock()
	if sv.vecs == nil || len(sv.vecs)+len(missing) > seedVectorsKept {
		sv.vecs = map[string][]float32{}
	}
	for i, t := range missing {
		sv.vecs[t] = vs[i]
	}
	for i, t := range texts {
		if out[i] == nil {
			out[i] = sv.vecs[t]
		}
	}
	return out, nil
}
